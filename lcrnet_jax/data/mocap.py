"""BVH and ASF/AMC motion-capture readers: 3D poses in LCR-17 joints, metres (Sec. 3.7, 4.1).

The paper takes 3D poses from the CMU MoCap database twice: as the pose source of the
pseudo ground truth of 2D-only datasets (Sec. 3.7) and as the poses of its synthetic
training images (Sec. 4.1). CMU ships ASF skeletons with AMC motions; the widely used
BVH conversions of the same data store joint offsets in the same units. Both readers
run forward kinematics with numpy and return `(frames, 17, 3)` poses in LCR-17 order.

Axes and units: metres (lengths times `scale`), Y down. MoCap worlds are Y up, so the
world is turned by 180 degrees about X, (x, y, z) -> (x, -y, -z): a rotation (never a
mirror), so left stays left. Positions stay in the world frame (not torso-centred; use
`lcrnet_jax.geometry.center_on_torso`).

Joint mapping (a bone's start is its parent joint; ASF bones / BVH joints):
  pelvis                 midpoint of the hips, as Human3.6M's root (a MoCap root lies
                         elsewhere: CMU's about 10 cm above the hips)
  hips, knees, ankles    starts of the thighs, shins, feet (femur, tibia, foot /
                         UpLeg, Leg, Foot)
  shoulders, elbows,     starts of the upper arms, forearms, hands (humerus, radius,
  wrists                 wrist / Arm, ForeArm, Hand)
  spine                  start of the upper back (upperback / Spine)
  thorax                 midpoint of the two clavicles' starts (lclavicle, rclavicle /
                         LeftShoulder, RightShoulder)
  neck                   start of the bone below the head (upperneck / Head's parent)
  head                   midpoint of the head bone: its start and its end (its end site
                         in BVH)
BVH joint names match case-insensitively after any "prefix:" (Mixamo's "mixamorig:").
"""

from __future__ import annotations

import dataclasses
import os
import pathlib
import re

import numpy as np

from lcrnet_jax import skeleton

# CMU lengths are inches times the ASF `:units length` (0.45); the BVH conversions of
# CMU keep those numbers, so this is metres per unit for both.
CMU_SCALE = 0.0254 / 0.45

_Y_DOWN = np.array([1.0, -1.0, -1.0])


def _axis_rotation(axis: str, angles: np.ndarray) -> np.ndarray:
    """(F, 3, 3) rotations by `angles` (F,) radians about the x, y or z axis."""
    c, s = np.cos(angles), np.sin(angles)
    one, zero = np.ones_like(angles), np.zeros_like(angles)
    rows = {
        "x": [[one, zero, zero], [zero, c, -s], [zero, s, c]],
        "y": [[c, zero, s], [zero, one, zero], [-s, zero, c]],
        "z": [[c, -s, zero], [s, c, zero], [zero, zero, one]],
    }[axis]
    return np.stack([np.stack(r, axis=-1) for r in rows], axis=-2)


def _euler(axes: str, angles: np.ndarray, *, moving: bool) -> np.ndarray:
    """Rotation applying `angles` (F, n) radians about `axes` in the listed order.

    `moving=True` turns about the rotated (moving) axes, R = R1 @ R2 @ ... (BVH);
    `moving=False` about the fixed axes, R = ... @ R2 @ R1 (ASF/AMC).
    """
    out = np.broadcast_to(np.eye(3), (angles.shape[0], 3, 3))
    for axis, a in zip(axes, angles.T, strict=True):
        r = _axis_rotation(axis, a)
        out = out @ r if moving else r @ out
    return out


def _assemble(points: dict[str, np.ndarray]) -> np.ndarray:
    """(F, 17, 3) LCR-17 poses, Y down, from named (F, 3) world points."""
    named = dict(points)
    named["pelvis"] = 0.5 * (points["left_hip"] + points["right_hip"])
    named["thorax"] = 0.5 * (points["left_clavicle"] + points["right_clavicle"])
    named["head"] = 0.5 * (points["head_start"] + points["head_end"])
    poses = np.stack([named[j] for j in skeleton.LCR17.joints], axis=1)
    return (poses * _Y_DOWN).astype(np.float32)


# ----------------------------------------------------------------------------- BVH

# LCR point -> BVH joint whose position (its bone's start) it is.
_BVH_POINTS = {
    "right_hip": "rightupleg",
    "right_knee": "rightleg",
    "right_ankle": "rightfoot",
    "left_hip": "leftupleg",
    "left_knee": "leftleg",
    "left_ankle": "leftfoot",
    "right_shoulder": "rightarm",
    "right_elbow": "rightforearm",
    "right_wrist": "righthand",
    "left_shoulder": "leftarm",
    "left_elbow": "leftforearm",
    "left_wrist": "lefthand",
    "spine": "spine",
    "right_clavicle": "rightshoulder",
    "left_clavicle": "leftshoulder",
    "head_start": "head",
}


@dataclasses.dataclass
class _BvhJoint:
    name: str
    parent: int
    offset: np.ndarray
    channels: list[str] = dataclasses.field(default_factory=list)
    end_site: np.ndarray | None = None


def _parse_bvh(text: str, path: str) -> tuple[list[_BvhJoint], np.ndarray]:
    """Hierarchy and (F, C) motion values of a BVH file."""
    head, sep, motion = text.partition("MOTION")
    if not sep:
        raise ValueError(f"BVH file {path} has no MOTION section")
    tokens = head.split()
    if not tokens or tokens[0] != "HIERARCHY":
        raise ValueError(f"BVH file {path} does not start with HIERARCHY")
    joints: list[_BvhJoint] = []
    stack: list[int] = []
    i = 1
    try:
        while i < len(tokens):
            t = tokens[i]
            if t in ("ROOT", "JOINT"):
                parent = stack[-1] if stack else -1
                joints.append(_BvhJoint(tokens[i + 1], parent, np.zeros(3)))
                stack.append(len(joints) - 1)
                i += 3  # name and "{"
            elif t == "OFFSET":
                joints[stack[-1]].offset = np.array(tokens[i + 1 : i + 4], float)
                i += 4
            elif t == "CHANNELS":
                n = int(tokens[i + 1])
                joints[stack[-1]].channels = [c.lower() for c in tokens[i + 2 : i + 2 + n]]
                i += 2 + n
            elif t == "End":
                # "End Site { OFFSET x y z }"
                joints[stack[-1]].end_site = np.array(tokens[i + 4 : i + 7], float)
                i += 8
            elif t == "}":
                stack.pop()
                i += 1
            else:
                raise ValueError(f"unexpected token {t!r}")
    except (IndexError, ValueError) as error:
        raise ValueError(f"BVH file {path} has a malformed HIERARCHY: {error}") from None
    if not joints or stack:
        raise ValueError(f"BVH file {path} has an unbalanced or empty HIERARCHY")

    match = re.match(r"\s*Frames:\s*(\d+)\s*Frame Time:\s*\S+", motion)
    if match is None:
        raise ValueError(f"BVH file {path} lacks 'Frames:' / 'Frame Time:' after MOTION")
    num_frames = int(match.group(1))
    num_channels = sum(len(j.channels) for j in joints)
    try:
        values = np.array(motion[match.end() :].split(), float)
    except ValueError:
        raise ValueError(f"BVH file {path} has non-numeric motion values") from None
    if values.size != num_frames * num_channels:
        raise ValueError(
            f"BVH file {path} has {values.size} motion values, expected "
            f"{num_frames} frames x {num_channels} channels"
        )
    return joints, values.reshape(num_frames, num_channels)


def _is_reference_frame(root: _BvhJoint, values: np.ndarray) -> bool:
    """Whether frame 0 of (F, C) `values` is the T-pose that the CMU BVH conversions put
    before the captured motion: root rotation all zero, root position that of frame 1."""
    rotation = np.array([name.endswith("rotation") for name in root.channels], bool)
    if values.shape[0] < 2 or not rotation.any():
        return False
    root_values = values[:2, : len(root.channels)]  # (2, root channels)
    return not root_values[0, rotation].any() and np.array_equal(
        root_values[0, ~rotation], root_values[1, ~rotation]
    )


def read_bvh(
    path: str | os.PathLike, *, scale: float = CMU_SCALE, frame_step: int = 1
) -> np.ndarray:
    """Reads a BVH file into LCR-17 poses (joint mapping in the module docstring).

    Args:
      path: the .bvh file.
      scale: metres per BVH unit (CMU conversions: `CMU_SCALE`; centimetre files: 0.01).
      frame_step: keep every `frame_step`-th frame, starting with the first captured one.

    Returns:
      (F, 17, 3) float32 metres, world frame turned to Y down. A leading reference T-pose
      (frame 0 with zero root rotation at frame 1's root position, as the CMU conversions
      write it) is dropped, so pose i is frame i + 1 of such a file, the take's AMC frame i
      (numbered i + 1 in the AMC).
    """
    path = os.fspath(path)
    joints, values = _parse_bvh(pathlib.Path(path).read_text(), path)
    if _is_reference_frame(joints[0], values):
        values = values[1:]
    values = values[::frame_step]
    num_frames = values.shape[0]
    rotations, positions = [], []
    column = 0
    for joint in joints:
        local = values[:, column : column + len(joint.channels)]
        column += len(joint.channels)
        translation = np.broadcast_to(joint.offset, (num_frames, 3)).copy()
        axes = ""
        angles = []
        for name, value in zip(joint.channels, local.T, strict=True):
            if name.endswith("position"):
                translation[:, "xyz".index(name[0])] += value
            else:
                axes += name[0]
                angles.append(np.deg2rad(value))
        rotation = _euler(
            axes, np.stack(angles, -1) if angles else np.zeros((num_frames, 0)), moving=True
        )
        if joint.parent < 0:
            rotations.append(rotation)
            positions.append(translation)
        else:
            parent_rotation = rotations[joint.parent]
            positions.append(
                positions[joint.parent] + np.einsum("fij,fj->fi", parent_rotation, translation)
            )
            rotations.append(parent_rotation @ rotation)

    index = {j.name.split(":")[-1].lower(): i for i, j in enumerate(joints)}
    points = {}
    for point, name in _BVH_POINTS.items():
        if name not in index:
            known = ", ".join(j.name for j in joints)
            raise ValueError(
                f"BVH file {path} has no joint {name!r} (case-insensitive); joints: {known}"
            )
        points[point] = positions[index[name]]
    head = joints[index["head"]]
    points["neck"] = positions[head.parent]
    points["head_end"] = points["head_start"]
    if head.end_site is not None:
        points["head_end"] = points["head_start"] + np.einsum(
            "fij,j->fi", rotations[index["head"]], head.end_site
        )
    return _assemble({k: v * scale for k, v in points.items()})


# ------------------------------------------------------------------------- ASF/AMC

# LCR point -> ASF bone whose start it is.
_ASF_POINTS = {
    "right_hip": "rfemur",
    "right_knee": "rtibia",
    "right_ankle": "rfoot",
    "left_hip": "lfemur",
    "left_knee": "ltibia",
    "left_ankle": "lfoot",
    "right_shoulder": "rhumerus",
    "right_elbow": "rradius",
    "right_wrist": "rwrist",
    "left_shoulder": "lhumerus",
    "left_elbow": "lradius",
    "left_wrist": "lwrist",
    "spine": "upperback",
    "right_clavicle": "rclavicle",
    "left_clavicle": "lclavicle",
    "neck": "upperneck",
    "head_start": "head",
}


@dataclasses.dataclass
class _AsfBone:
    name: str
    direction: np.ndarray
    length: float
    axis: np.ndarray  # (3,) angles
    axis_order: str
    dofs: list[str]
    parent: str = "root"


@dataclasses.dataclass
class _Asf:
    length_unit: float
    degrees: bool
    root_order: list[str]
    root_axis: str
    root_position: np.ndarray
    root_orientation: np.ndarray
    bones: dict[str, _AsfBone]
    children: dict[str, list[str]]


def _sections(text: str) -> dict[str, list[str]]:
    """ASF lines grouped by their ':section' keyword (comments dropped)."""
    sections: dict[str, list[str]] = {}
    current = None
    for raw in text.splitlines():
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        if line.startswith(":"):
            keyword, _, rest = line[1:].partition(" ")
            current = sections.setdefault(keyword.lower(), [])
            if rest.strip():
                current.append(rest.strip())
        elif current is not None:
            current.append(line)
    return sections


def _parse_asf(text: str, path: str) -> _Asf:
    sections = _sections(text)
    for needed in ("root", "bonedata", "hierarchy"):
        if needed not in sections:
            raise ValueError(f"ASF file {path} has no :{needed} section")
    units = dict(line.split()[:2] for line in sections.get("units", []) if len(line.split()) >= 2)
    try:
        root = {line.split()[0].lower(): line.split()[1:] for line in sections["root"]}
        bones: dict[str, _AsfBone] = {}
        block: dict[str, list[str]] = {}
        for line in sections["bonedata"]:
            words = line.split()
            if words[0] == "begin":
                block = {}
            elif words[0] == "end":
                axis = block.get("axis", ["0", "0", "0", "XYZ"])
                bone = _AsfBone(
                    name=block["name"][0],
                    direction=np.array(block["direction"], float),
                    length=float(block["length"][0]),
                    axis=np.array(axis[:3], float),
                    axis_order=axis[3].lower() if len(axis) > 3 else "xyz",
                    dofs=[d.lower() for d in block.get("dof", [])],
                )
                if not set(bone.dofs) <= {"rx", "ry", "rz"}:
                    raise ValueError(f"bone {bone.name!r} has dofs {bone.dofs}; only rx ry rz")
                bones[bone.name] = bone
            elif words[0] in ("id", "name", "direction", "length", "axis", "dof"):
                block[words[0]] = words[1:]
        children: dict[str, list[str]] = {}
        for line in sections["hierarchy"]:
            words = line.split()
            if words[0] in ("begin", "end"):
                continue
            children[words[0]] = words[1:]
            for child in words[1:]:
                bones[child].parent = words[0]
        return _Asf(
            length_unit=float(units.get("length", 1.0)),
            degrees=units.get("angle", "deg").lower().startswith("deg"),
            root_order=[o.lower() for o in root.get("order", "TX TY TZ RX RY RZ".split())],
            root_axis=root.get("axis", ["XYZ"])[0].lower(),
            root_position=np.array(root.get("position", [0, 0, 0]), float),
            root_orientation=np.array(root.get("orientation", [0, 0, 0]), float),
            bones=bones,
            children=children,
        )
    except (KeyError, IndexError, ValueError) as error:
        raise ValueError(f"ASF file {path} is malformed: {error!r}") from None


def _parse_amc(text: str, path: str, asf: _Asf) -> dict[str, np.ndarray]:
    """Per-bone (F, n) motion values of an AMC file ('root' included)."""
    frames: list[dict[str, list[float]]] = []
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", ":")):
            continue
        words = line.split()
        if len(words) == 1 and words[0].isdigit():
            frames.append({})
            continue
        if not frames:
            raise ValueError(f"AMC file {path} has values before its first frame number")
        try:
            frames[-1][words[0]] = [float(w) for w in words[1:]]
        except ValueError:
            raise ValueError(f"AMC file {path} has non-numeric values: {line!r}") from None
    if not frames:
        raise ValueError(f"AMC file {path} has no frames")
    sizes = {"root": len(asf.root_order)} | {n: len(b.dofs) for n, b in asf.bones.items()}
    motion = {}
    for name, size in sizes.items():
        rows = [f.get(name, [0.0] * size) for f in frames]
        if any(len(r) != size for r in rows):
            raise ValueError(f"AMC file {path}: bone {name!r} needs {size} values per frame")
        motion[name] = np.array(rows, float).reshape(len(frames), size)
    return motion


def read_asf_amc(
    asf_path: str | os.PathLike,
    amc_path: str | os.PathLike,
    *,
    scale: float | None = None,
    frame_step: int = 1,
) -> np.ndarray:
    """Reads an ASF skeleton and an AMC motion into LCR-17 poses (mapping: module docstring).

    Args:
      asf_path: the .asf skeleton.
      amc_path: an .amc motion of that skeleton.
      scale: metres per ASF length unit; None reads it as CMU does: lengths are inches
        times the `:units length` value, so scale = 0.0254 / that value.
      frame_step: keep every `frame_step`-th frame, starting with the first.

    Returns:
      (F, 17, 3) float32 metres, world frame turned to Y down.
    """
    asf_path, amc_path = os.fspath(asf_path), os.fspath(amc_path)
    asf = _parse_asf(pathlib.Path(asf_path).read_text(), asf_path)
    motion = _parse_amc(pathlib.Path(amc_path).read_text(), amc_path, asf)
    motion = {k: v[::frame_step] for k, v in motion.items()}
    if scale is None:
        scale = 0.0254 / asf.length_unit
    to_rad = np.deg2rad if asf.degrees else np.asarray
    num_frames = motion["root"].shape[0]

    def conjugated(axis_angles, order, axes, angles):
        c = _euler(order, to_rad(axis_angles)[None], moving=False)[0]
        return c @ _euler(axes, to_rad(angles), moving=False) @ c.T

    root = motion["root"]
    t_columns = [i for i, o in enumerate(asf.root_order) if o.startswith("t")]
    r_columns = [i for i, o in enumerate(asf.root_order) if o.startswith("r")]
    position = np.broadcast_to(asf.root_position, (num_frames, 3)).copy()
    for i in t_columns:
        position[:, "xyz".index(asf.root_order[i][1])] += root[:, i]
    root_axes = "".join(asf.root_order[i][1] for i in r_columns)
    rotation = {
        "root": conjugated(asf.root_orientation, asf.root_axis, root_axes, root[:, r_columns])
    }
    start, end = {}, {"root": position}
    queue = list(asf.children.get("root", []))
    while queue:
        name = queue.pop(0)
        bone = asf.bones[name]
        axes = "".join(d[1] for d in bone.dofs)
        local = conjugated(bone.axis, bone.axis_order, axes, motion[name])
        rotation[name] = rotation[bone.parent] @ local
        start[name] = end[bone.parent]
        end[name] = start[name] + bone.length * np.einsum(
            "fij,j->fi", rotation[name], bone.direction
        )
        queue.extend(asf.children.get(name, []))

    points = {}
    for point, bone in _ASF_POINTS.items():
        if bone not in start:
            raise ValueError(f"ASF file {asf_path} has no bone {bone!r} (needed for {point})")
        points[point] = start[bone]
    points["head_end"] = end["head"]
    return _assemble({k: v * scale for k, v in points.items()})
