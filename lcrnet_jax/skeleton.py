"""Joint sets, names, bones, flips and dataset-to-LCR conversions (LCR-Net++ Sec. 3, 4).

This module is the only place that knows joint orders. Every joint set is a `JointSet`
with lower-case snake_case joint names; left/right flip permutations are derived from
the names (`left_*` <-> `right_*`), so they cannot drift from the order.

LCR joint sets (the model's outputs):
  - LCR-13: 0 R ankle, 1 L ankle, 2 R knee, 3 L knee, 4 R hip, 5 L hip, 6 R wrist,
    7 L wrist, 8 R elbow, 9 L elbow, 10 R shoulder, 11 L shoulder, 12 head (the head's
    centre, not its top).
  - LCR-14: LCR-13 plus 13 head top (the authors' 14-joint models).
  - LCR-17: LCR-13 plus 13 pelvis, 14 spine, 15 thorax, 16 neck (the paper's
    Human3.6M 17-joint model; this order of the four extra joints is ours).
  - LCR-MuPoTS: LCR-13 plus 13 head top, 14 thorax, 15 pelvis, 16 spine: every joint of
    MuPoTS-3D's skeleton in LCR order, for the fine-tuning of Sec. 4.3 ("to better fit
    the 14-joint skeleton model measured by their MoCap system"). Its 14 scored joints
    (`evaluation.mupots.MUPOTS_EVAL_JOINTS`) are that skeleton; the pelvis, root of the
    official 3DPCK, and the spine, on its bone-rescaling chain, are predicted too rather
    than made up.

Dataset joint sets: Human3.6M-17, MPII-16, COCO-17, LSP-14, MuPoTS-17. `convert` maps
any of them to an LCR joint set with a visibility mask; the rules for joints a dataset
does not have are written in `_RULES` and in `convert`'s docstring. `complete` makes the
joints a model does not predict from those it does (e.g. LCR-13 to MPII-14 or MuPoTS-17).

MPII-14 is the 14 joints that MPII's and LSP's official evaluations score, in LCR order:
LCR-13's 12 limb joints, 12 upper neck and 13 head top. LCR's head centre is not one of
them: a model's upper neck and head top are made from its joints by `complete`.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Sequence

import numpy as np


@dataclasses.dataclass(frozen=True)
class JointSet:
    """A named, ordered set of joints.

    Attributes:
      name: registry name, e.g. "lcr13".
      joints: joint names in order.
      bones: pairs of joint indices drawn as limbs.
    """

    name: str
    joints: tuple[str, ...]
    bones: tuple[tuple[int, int], ...]

    @property
    def num_joints(self) -> int:
        return len(self.joints)

    def index(self, joint: str) -> int:
        """Index of a joint name; ValueError naming the valid joints if absent."""
        try:
            return self.joints.index(joint)
        except ValueError:
            raise ValueError(
                f"joint set {self.name!r} has no joint {joint!r}; joints: {self.joints}"
            ) from None

    def indices(self, joints: Sequence[str]) -> tuple[int, ...]:
        return tuple(self.index(j) for j in joints)

    @property
    def flip_permutation(self) -> tuple[int, ...]:
        """Permutation mapping each joint to its mirror (left <-> right); an involution."""

        def mirror(name: str) -> str:
            if name.startswith("left_"):
                return "right_" + name[len("left_") :]
            if name.startswith("right_"):
                return "left_" + name[len("right_") :]
            return name

        return tuple(self.index(mirror(j)) for j in self.joints)

    @property
    def torso(self) -> tuple[int, ...]:
        """Hips and shoulders: the torso-centre joints of the original implementation."""
        return self.indices(("right_hip", "left_hip", "right_shoulder", "left_shoulder"))

    @property
    def lower_limbs(self) -> tuple[int, ...]:
        """Knees and ankles (hips count as upper body, as in the original PPI)."""
        names = ("right_ankle", "left_ankle", "right_knee", "left_knee")
        return tuple(i for i, j in enumerate(self.joints) if j in names)

    @property
    def upper_body(self) -> tuple[int, ...]:
        """Every joint that is not a lower-limb joint."""
        lower = set(self.lower_limbs)
        return tuple(i for i in range(self.num_joints) if i not in lower)

    @property
    def box_joints(self) -> tuple[int, ...]:
        """The joints that span a pose's box for training (ground-truth boxes, anchors):
        LCR-13's in every LCR joint set, so that a model's boxes and its box-normalised
        2D anchors keep the released models' convention whatever joints it adds (LCR-17's
        lie within or about that box, LCR-MuPoTS's head top above it); all joints
        otherwise."""
        if set(_LCR13_JOINTS) <= set(self.joints):
            return self.indices(_LCR13_JOINTS)
        return tuple(range(self.num_joints))

    @property
    def upper_box_joints(self) -> tuple[int, ...]:
        """The upper-body joints (hips and above) among `box_joints`: those that span an
        upper-body box."""
        return tuple(sorted(set(self.upper_body) & set(self.box_joints)))


def _bones(joints: Sequence[str], pairs: Sequence[tuple[str, str]]) -> tuple[tuple[int, int], ...]:
    present = [p for p in pairs if p[0] in joints and p[1] in joints]
    return tuple((joints.index(a), joints.index(b)) for a, b in present)


_LIMBS = (
    ("right_ankle", "right_knee"),
    ("right_knee", "right_hip"),
    ("left_ankle", "left_knee"),
    ("left_knee", "left_hip"),
    ("right_wrist", "right_elbow"),
    ("right_elbow", "right_shoulder"),
    ("left_wrist", "left_elbow"),
    ("left_elbow", "left_shoulder"),
    ("right_hip", "left_hip"),
    ("right_shoulder", "left_shoulder"),
)
_LCR_TORSO_BONES = (
    ("right_hip", "right_shoulder"),
    ("left_hip", "left_shoulder"),
    ("right_shoulder", "head"),
    ("left_shoulder", "head"),
    ("head", "head_top"),
)
_SPINE_BONES = (
    ("pelvis", "right_hip"),
    ("pelvis", "left_hip"),
    ("pelvis", "spine"),
    ("spine", "thorax"),
    ("thorax", "neck"),
    ("neck", "head"),
    ("head", "head_top"),
    ("thorax", "right_shoulder"),
    ("thorax", "left_shoulder"),
    ("upper_neck", "head_top"),
    ("thorax", "upper_neck"),
)


def _joint_set(name: str, joints: Sequence[str], extra_bones=()) -> JointSet:
    joints = tuple(joints)
    return JointSet(name, joints, _bones(joints, tuple(_LIMBS) + tuple(extra_bones)))


_LCR13_JOINTS = (
    "right_ankle",
    "left_ankle",
    "right_knee",
    "left_knee",
    "right_hip",
    "left_hip",
    "right_wrist",
    "left_wrist",
    "right_elbow",
    "left_elbow",
    "right_shoulder",
    "left_shoulder",
    "head",
)

LCR13 = _joint_set("lcr13", _LCR13_JOINTS, _LCR_TORSO_BONES)
LCR14 = _joint_set("lcr14", _LCR13_JOINTS + ("head_top",), _LCR_TORSO_BONES)
MPII14 = _joint_set(
    "mpii14",
    _LCR13_JOINTS[:-1] + ("upper_neck", "head_top"),
    _LCR_TORSO_BONES[:2]
    + (
        ("right_shoulder", "upper_neck"),
        ("left_shoulder", "upper_neck"),
        ("upper_neck", "head_top"),
    ),
)
LCR17 = _joint_set(
    "lcr17",
    _LCR13_JOINTS + ("pelvis", "spine", "thorax", "neck"),
    _SPINE_BONES,
)
LCR_MUPOTS = _joint_set(
    "lcr_mupots",
    _LCR13_JOINTS + ("head_top", "thorax", "pelvis", "spine"),
    _SPINE_BONES + (("thorax", "head"),),
)

# Human3.6M 17 joints in the order of most 3D pose work (Martinez et al. 2017).
H36M17 = _joint_set(
    "h36m17",
    (
        "pelvis",
        "right_hip",
        "right_knee",
        "right_ankle",
        "left_hip",
        "left_knee",
        "left_ankle",
        "spine",
        "thorax",
        "neck",  # "Neck/Nose" in Human3.6M
        "head",  # the head end-site
        "left_shoulder",
        "left_elbow",
        "left_wrist",
        "right_shoulder",
        "right_elbow",
        "right_wrist",
    ),
    _SPINE_BONES,
)

MPII16 = _joint_set(
    "mpii16",
    (
        "right_ankle",
        "right_knee",
        "right_hip",
        "left_hip",
        "left_knee",
        "left_ankle",
        "pelvis",
        "thorax",
        "upper_neck",
        "head_top",
        "right_wrist",
        "right_elbow",
        "right_shoulder",
        "left_shoulder",
        "left_elbow",
        "left_wrist",
    ),
    _SPINE_BONES + (("pelvis", "thorax"),),
)

COCO17 = _joint_set(
    "coco17",
    (
        "nose",
        "left_eye",
        "right_eye",
        "left_ear",
        "right_ear",
        "left_shoulder",
        "right_shoulder",
        "left_elbow",
        "right_elbow",
        "left_wrist",
        "right_wrist",
        "left_hip",
        "right_hip",
        "left_knee",
        "right_knee",
        "left_ankle",
        "right_ankle",
    ),
    (
        ("nose", "left_eye"),
        ("nose", "right_eye"),
        ("left_eye", "left_ear"),
        ("right_eye", "right_ear"),
        ("left_shoulder", "left_hip"),
        ("right_shoulder", "right_hip"),
    ),
)

LSP14 = _joint_set(
    "lsp14",
    (
        "right_ankle",
        "right_knee",
        "right_hip",
        "left_hip",
        "left_knee",
        "left_ankle",
        "right_wrist",
        "right_elbow",
        "right_shoulder",
        "left_shoulder",
        "left_elbow",
        "left_wrist",
        "neck",
        "head_top",
    ),
    (
        ("right_hip", "right_shoulder"),
        ("left_hip", "left_shoulder"),
        ("neck", "head_top"),
        ("neck", "right_shoulder"),
        ("neck", "left_shoulder"),
    ),
)

# MPI-INF-3DHP / MuPoTS-3D 17 joints. Their "neck" is the base of the neck, where the
# shoulders and the head hang in MuPoTS's bone tree: Human3.6M's and MPII's "thorax", so
# named here (LCR-17's "neck" is Human3.6M's "Neck/Nose", higher up).
MUPOTS17 = _joint_set(
    "mupots17",
    (
        "head_top",
        "thorax",
        "right_shoulder",
        "right_elbow",
        "right_wrist",
        "left_shoulder",
        "left_elbow",
        "left_wrist",
        "right_hip",
        "right_knee",
        "right_ankle",
        "left_hip",
        "left_knee",
        "left_ankle",
        "pelvis",
        "spine",
        "head",
    ),
    _SPINE_BONES + (("thorax", "head"),),
)

JOINT_SETS: dict[str, JointSet] = {
    s.name: s
    for s in (LCR13, LCR14, LCR17, LCR_MUPOTS, MPII14, H36M17, MPII16, COCO17, LSP14, MUPOTS17)
}

MODEL_JOINT_SETS = ("lcr13", "lcr17", "lcr_mupots")
"""The joint sets a model predicts: each starts with the 13 LCR joints in LCR order."""


def get_joint_set(name: str | JointSet) -> JointSet:
    """Looks up a joint set by name; ValueError listing the known names otherwise."""
    if isinstance(name, JointSet):
        return name
    try:
        return JOINT_SETS[name]
    except KeyError:
        raise ValueError(f"unknown joint set {name!r}; known: {sorted(JOINT_SETS)}") from None


# A rule builds one target joint: alternatives tried in order, each a tuple of source
# joint names whose positions are averaged; the first alternative whose joints are all
# visible wins. A target joint with no satisfied alternative is invisible (zeros).
_Rule = tuple[tuple[str, ...], ...]

_RULES: dict[tuple[str, str], dict[str, _Rule]] = {
    # MPII has no head centre: the midpoint of the upper neck and the head top.
    ("mpii16", "head"): {"head": (("upper_neck", "head_top"),)},
    ("mpii16", "spine"): {"spine": (("pelvis", "thorax"),)},
    ("mpii16", "neck"): {"neck": (("upper_neck",),)},
    # LSP: the same rule with its neck joint, which is MPII's upper neck.
    ("lsp14", "head"): {"head": (("neck", "head_top"),)},
    ("lsp14", "upper_neck"): {"upper_neck": (("neck",),)},
    # COCO has no head joint: the midpoint of the ears, else of the eyes, else the nose,
    # else a single visible ear.
    ("coco17", "head"): {
        "head": (
            ("left_ear", "right_ear"),
            ("left_eye", "right_eye"),
            ("nose",),
            ("left_ear",),
            ("right_ear",),
        )
    },
}


def _rule(src: JointSet, target: str) -> _Rule | None:
    special = _RULES.get((src.name, target))
    if special is not None:
        return special[target]
    if target in src.joints:
        return ((target,),)
    return None


def check_joint_count(array, joint_set: JointSet, name: str = "poses") -> None:
    """ValueError naming `name` unless `array` is (..., J, D) for `joint_set`'s J joints."""
    if array.ndim < 2 or array.shape[-2] != joint_set.num_joints:
        raise ValueError(
            f"{name} must have shape (..., {joint_set.num_joints}, D) for "
            f"{joint_set.name!r}, got {array.shape}"
        )


def convert(
    joints: np.ndarray,
    visible: np.ndarray | None,
    src: str | JointSet,
    dst: str | JointSet = "lcr13",
) -> tuple[np.ndarray, np.ndarray]:
    """Converts poses from one joint set to another.

    Each target joint is taken from the source joint of the same name. Joints that the
    source lacks follow these rules (a target joint whose rule cannot be met is returned
    as zeros with visible=False):
      - MPII-16 and LSP-14 `head` = midpoint of `upper_neck`/`neck` and `head_top`
        (both must be visible); MPII-16 `spine` = midpoint of `pelvis` and `thorax`;
        MPII-16 `neck` = `upper_neck`; LSP-14 `upper_neck` = `neck`.
      - COCO-17 `head` = midpoint of the two ears, else of the two eyes, else the nose,
        else whichever ear is visible (the first alternative whose joints are all
        visible is used).
      - Human3.6M-17 `head` is its head end-site, `neck` its "Neck/Nose" joint.
      - MuPoTS-17's "neck" is `thorax` (see `MUPOTS17`): LCR-17's `neck` has no MuPoTS
        source.
      - LCR-13 -> LCR-14 `head_top` and -> MPII-14 `upper_neck` are not source joints:
        predicted poses are completed by `complete`.

    Args:
      joints: (..., J_src, D) joint coordinates (any D: 2D pixels or 3D metres).
      visible: (..., J_src) bool, or None for all visible.
      src: source joint set (name or JointSet).
      dst: target joint set.

    Returns:
      (joints (..., J_dst, D), float32 for integer input, visible (..., J_dst) bool).
    """
    src, dst = get_joint_set(src), get_joint_set(dst)
    joints = np.asarray(joints)
    if not np.issubdtype(joints.dtype, np.floating):  # integer pixels: midpoints are halves
        joints = joints.astype(np.float32)
    check_joint_count(joints, src, "joints")
    if visible is None:
        visible = np.ones(joints.shape[:-1], bool)
    visible = np.asarray(visible, bool)
    if visible.shape != joints.shape[:-1]:
        raise ValueError(f"visible has shape {visible.shape}, expected {joints.shape[:-1]}")

    index, used, count = _gathers(src, dst)
    if index.shape[0] == 1 and index.shape[2] == 1:  # one source joint or none: one gather
        out_visible = visible[..., index[0, :, 0]] & used[0, :, 0]
        out = np.where(out_visible[..., None], joints[..., index[0, :, 0], :], 0)
        return out.astype(joints.dtype), out_visible
    out = np.zeros(joints.shape[:-2] + (dst.num_joints, joints.shape[-1]), joints.dtype)
    out_visible = np.zeros(joints.shape[:-2] + (dst.num_joints,), bool)
    for a in range(len(index)):  # the rules' alternatives, in order (at most 5)
        # An alternative holds if all its joints are visible; later ones only fill the
        # joints that earlier ones left unset.
        ok = (visible[..., index[a]] | ~used[a]).all(-1) & (count[a] > 0) & ~out_visible
        picked = np.where(used[a][..., None], joints[..., index[a], :], 0)  # (..., J_dst, W, D)
        mean = (picked.sum(axis=-2) / np.maximum(count[a], 1)[:, None]).astype(joints.dtype)
        out = np.where(ok[..., None], mean, out)
        out_visible |= ok
    return out, out_visible


@functools.cache
def _gathers(src: JointSet, dst: JointSet) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """`convert`'s rules as gathers, so that a data pipeline converting every record makes
    a few array operations per alternative, not a loop over joints: (A, J_dst, W) source
    indices of each target joint's a-th alternative (W joints at most), (A, J_dst, W)
    bool which of them are its joints, (A, J_dst) how many (0: no a-th alternative)."""
    rules = [_rule(src, name) or () for name in dst.joints]
    alternatives = max(1, max(len(rule) for rule in rules))
    width = max([1] + [len(alternative) for rule in rules for alternative in rule])
    index = np.zeros((alternatives, dst.num_joints, width), np.intp)
    used = np.zeros(index.shape, bool)
    for j, rule in enumerate(rules):
        for a, alternative in enumerate(rule):
            index[a, j, : len(alternative)] = src.indices(alternative)
            used[a, j, : len(alternative)] = True
    return index, used, used.sum(-1)


# Joints a model's joint set may lack, each a weighted sum of other joints (rules of
# ours: neither the paper nor the original code gives any), alternatives tried in order.
# The head top lies on the line from the shoulders' midpoint through the head centre,
# beyond the head by half their distance; the upper neck is LCR-17's neck (MPII's upper
# neck in MPII data, Human3.6M's Neck/Nose in Human3.6M's), else as far below the head
# centre as the head top is above it (LCR's head is the midpoint of MPII's and LSP's
# upper neck and head top); thorax and pelvis are the midpoints of the shoulders and of
# the hips, the spine the midpoint of pelvis and thorax. Where a model's head is another
# point (Human3.6M's head end-site), the made joints are approximate.
_COMPLETIONS: dict[str, tuple[dict[str, float], ...]] = {
    "head_top": ({"head": 1.5, "right_shoulder": -0.25, "left_shoulder": -0.25},),
    "upper_neck": ({"neck": 1.0}, {"head": 2.0, "head_top": -1.0}),
    "thorax": ({"right_shoulder": 0.5, "left_shoulder": 0.5},),
    "pelvis": ({"right_hip": 0.5, "left_hip": 0.5},),
    "spine": ({"pelvis": 0.5, "thorax": 0.5},),
}


@functools.cache
def completion_matrix(src: str | JointSet, dst: str | JointSet) -> np.ndarray:
    """(J_dst, J_src) weights making each `dst` joint from the `src` joints: a joint of
    the same name is copied (a one-hot row), the others follow `_COMPLETIONS` (every row
    sums to 1, so the map commutes with translations and scalings: it applies to pixels,
    metres and box-normalised poses alike).

    Raises ValueError naming the joints `src` cannot make.
    """
    src, dst = get_joint_set(src), get_joint_set(dst)

    def row(name: str, seen: tuple[str, ...]) -> np.ndarray | None:
        if name in src.joints:
            return np.eye(src.num_joints)[src.index(name)]
        if name in seen:
            return None
        for rule in _COMPLETIONS.get(name, ()):
            parts = [row(joint, seen + (name,)) for joint in rule]
            if all(part is not None for part in parts):
                return sum(w * part for w, part in zip(rule.values(), parts, strict=True))
        return None

    rows = {name: row(name, ()) for name in dst.joints}
    missing = [name for name, r in rows.items() if r is None]
    if missing:
        raise ValueError(f"joint set {src.name!r} cannot make the {dst.name!r} joints {missing}")
    matrix = np.stack(list(rows.values()))
    matrix.flags.writeable = False
    return matrix


def complete(poses, src: str | JointSet, dst: str | JointSet) -> np.ndarray:
    """Predicted poses of joint set `src` as poses of `dst` (`completion_matrix`), e.g. a
    model's LCR-13 poses as MPII-14 (MPII, LSP) or MuPoTS-17 (MuPoTS-3D) poses.

    Args:
      poses: (..., J_src, D) joint coordinates (pixels or metres), all predicted.
      src, dst: joint sets.

    Returns:
      (..., J_dst, D) float64 poses.
    """
    src, dst = get_joint_set(src), get_joint_set(dst)
    poses = np.asarray(poses, np.float64)
    check_joint_count(poses, src)
    return np.einsum("tj,...jd->...td", completion_matrix(src, dst), poses)


def made_joint(poses, src: str | JointSet, name: str) -> np.ndarray:
    """(..., D) joint `name` of (..., J, D) predicted poses of joint set `src`: its own,
    else made by the completion rules (`completion_matrix`), e.g. an LCR-13 pelvis."""
    return complete(poses, src, JointSet(name, (name,), ()))[..., 0, :]


def flip_poses(poses, joint_set: str | JointSet, *, image_width=None):
    """Mirrors poses left-right: swaps left/right joints and negates x.

    Works on numpy and jax arrays alike (also inside jit).

    Args:
      poses: (..., J, D); D = 2 for pixels (needs `image_width`) or 3 for metres.
      joint_set: the joint set of `poses`.
      image_width: width in pixels, a number or an array broadcastable to `poses`
        (e.g. (B, 1, 1, 1) for (B, P, J, 2) poses); 2D x becomes `image_width - x`.
        With None, x -> -x (camera-centred 3D coordinates).

    Returns:
      (..., J, D) mirrored poses. Flipping twice gives the input back.
    """
    joint_set = get_joint_set(joint_set)
    if not hasattr(poses, "shape"):
        poses = np.asarray(poses)
    check_joint_count(poses, joint_set)
    out = poses[..., list(joint_set.flip_permutation), :]
    first = np.eye(out.shape[-1], dtype=np.float32)[0]  # (D,) 1 on x
    out = out * (1 - 2 * first)
    return out if image_width is None else out + image_width * first
