"""Pose proposal integration (PPI, LCR-Net++ Sec. 3.6).

`ppi` is Eq. 7-8 as the authors' original code runs them (`LCRNet_PPI` in lcr_net_ppi.py
of github.com/naver/lcrnet-v2-improved-ppi): candidates are grouped greedily by the IoU
of their pose boxes with the best remaining one; inside a group, modes are found greedily
by the 3D distance D3D to the best unused candidate; the group yields its best mode,
averaged with the scores as weights. The NMS baseline (`postprocess.nms_baseline`) shares
its candidate layout; `postprocess.candidates` makes the flat candidate list both take.

Everything is jit- and vmap-compatible with static shapes: candidates are padded to a
fixed count M with a `valid` mask, the output to `PPIConfig.max_people`. The greedy loops
are `lax.while_loop`s: one iteration per group, doing O(M) vector work (IoU with the
leader), with an inner loop over the group's modes (D3D with the mode's leader); a
running top-P keeps the best people, and no M x M matrix is ever built. Two compactions
keep the loops fast without changing the result: the candidates not yet grouped move to
smaller static buffers (M, M/4, M/16, ...) as groups remove them, and in buffers of
8,192 or more a group's mode search runs on a copy of its members in the smallest
buffer that holds them (sizes halving from the current buffer's: each mode is a D3D pass
over the buffer).
The grouping stops early once the remaining candidates' scores sum to no more than the
P-th person's score (or the person threshold): no later group could enter the output;
by the same bound, a group whose own scores sum to no more skips its mode search.
"""

from __future__ import annotations

import dataclasses
import functools
import math

import flax.struct
import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from lcrnet_jax import geometry, skeleton

_LCR13 = skeleton.get_joint_set("lcr13")
BOX_JOINTS = ("all", "torso_head", "shoulder_head")
GROUP_BY = ("pose", "roi")

_SHRINK = 4  # ratio between consecutive buffer sizes of the grouping
_MODE_SHRINK = 2  # and of the mode search, which does more work per candidate
# A group's copy costs more than the D3D passes it saves in smaller buffers: at 5k
# candidates, searching in place is 1.3-1.45x faster, at 10k-40k 1.0-1.15x (benchmarks/
# ppi_bench.py scenes, 2-core CPU, 2026-12-04; 4,096 and 16,384 were slower at 5k / 40k).
_MODE_COMPACT_FROM = 8192
_KEY_NONE = jnp.iinfo(jnp.int32).min
_HIGHEST = lax.Precision.HIGHEST


def box_joint_indices(box_joints: str) -> tuple[int, ...] | None:
    """LCR joints whose 2D box groups candidates: None for all joints.

    "torso_head" = hips, shoulders and head [4, 5, 10, 11, 12]; "shoulder_head" =
    shoulders and head [10, 11, 12]; the same indices in LCR-13, LCR-14 and LCR-17.
    """
    if box_joints == "all":
        return None
    if box_joints == "torso_head":
        return _LCR13.torso + (_LCR13.index("head"),)
    if box_joints == "shoulder_head":
        return _LCR13.indices(("right_shoulder", "left_shoulder", "head"))
    raise ValueError(f"box_joints must be one of {BOX_JOINTS}, got {box_joints!r}")


@dataclasses.dataclass(frozen=True)
class PPIConfig:
    """PPI parameters; defaults are those of the authors' code (LCRNet_PPI).

    Frozen and hashable, so it can be a static argument of `jax.jit`.

    Attributes:
      iou_threshold: candidates join the leader's group if the IoU of their boxes with
        the leader's is > this (strict), in [0, 1).
      t3d: a mode holds the group's candidates whose D3D (mean per-joint 3D distance, in
        metres) to the mode's leader is < this (strict); > 0.
      box_joints: joints of the pose boxes: "all", "torso_head" or "shoulder_head".
      min_mode_score: after the first mode, the mode search stops when the best unused
        candidate's score is < this (strict).
      person_threshold: a group yields a person if its best mode's score is > this
        (strict).
      max_people: P, the output size; the P best people are kept.
      group_by: "pose" groups by the pose boxes clipped to the image (the paper and the
        original code), "roi" by the unclipped RoI boxes (the authors' later "improved
        PPI" release).
      lower_limb_weight: factor on the weight of upper-body candidates for the
        lower-limb joints (0-3) of a mode's averaged pose, in [0, 1]; with 0, a mode of
        upper-body candidates only averages their lower limbs with the plain weights.
      min_buffer: speed only, the results do not depend on it: the smallest buffer the
        candidates are compacted into (see the module docstring). Under `jax.vmap` every
        buffer size runs for every group (`lax.switch` becomes a select): there, a
        `min_buffer` >= M, which turns compaction off, is faster.
      candidate_threshold: a (RoI, class) pair is a candidate if its score is >= this /
        (C - 1), C - 1 non-background classes (the authors' code: 0.1).
      min_candidates: if fewer pairs pass that threshold, it is lowered to keep the
        `min(min_candidates, n - 1)` best of the n valid pairs (the authors' code: 500;
        0 turns the floor off).
      rescore_sigma: Eq. 6 rescoring of the scores before the threshold, in the pixels of
        the network's input (the image scaled to the model's short side: the paper's 25
        is at 800); 0 for none (the released code does not rescore).
    """

    iou_threshold: float = 0.2
    t3d: float = 0.3
    box_joints: str = "all"
    min_mode_score: float = 0.05
    person_threshold: float = 0.002
    max_people: int = 32
    group_by: str = "pose"
    lower_limb_weight: float = 0.1
    min_buffer: int = 128
    candidate_threshold: float = 0.1
    min_candidates: int = 500
    rescore_sigma: float = 0.0

    def __post_init__(self):
        for field in dataclasses.fields(self):
            value = getattr(self, field.name)
            number = isinstance(value, int | float | np.integer | np.floating)
            if field.type == "float" and (isinstance(value, bool) or not number):
                raise ValueError(f"{field.name} must be a number, got {value!r}")
            if field.type == "int" and isinstance(value, np.integer):
                object.__setattr__(self, field.name, int(value))  # e.g. from a numpy array
        if not 0.0 <= self.iou_threshold < 1.0:
            raise ValueError(f"iou_threshold must be in [0, 1), got {self.iou_threshold}")
        if not self.t3d > 0.0:
            raise ValueError(f"t3d must be > 0 metres, got {self.t3d}")
        box_joint_indices(self.box_joints)
        if not (math.isfinite(self.min_mode_score) and math.isfinite(self.person_threshold)):
            raise ValueError(
                "min_mode_score and person_threshold must be finite, got "
                f"{self.min_mode_score} and {self.person_threshold}"
            )
        if not (geometry.is_whole(self.max_people) and self.max_people >= 1):
            raise ValueError(f"max_people must be an int >= 1, got {self.max_people!r}")
        if self.group_by not in GROUP_BY:
            raise ValueError(f"group_by must be one of {GROUP_BY}, got {self.group_by!r}")
        if not 0.0 <= self.lower_limb_weight <= 1.0:
            raise ValueError(f"lower_limb_weight must be in [0, 1], got {self.lower_limb_weight}")
        if not (geometry.is_whole(self.min_buffer) and self.min_buffer >= 1):
            raise ValueError(f"min_buffer must be an int >= 1, got {self.min_buffer!r}")
        if not 0.0 <= self.candidate_threshold <= 1.0:
            raise ValueError(
                f"candidate_threshold must be in [0, 1], got {self.candidate_threshold}"
            )
        if not (geometry.is_whole(self.min_candidates) and self.min_candidates >= 0):
            raise ValueError(f"min_candidates must be an int >= 0, got {self.min_candidates!r}")
        if not (math.isfinite(self.rescore_sigma) and self.rescore_sigma >= 0.0):
            raise ValueError(
                f"rescore_sigma must be >= 0 pixels (0: off), got {self.rescore_sigma}"
            )


IN_THE_WILD_R50 = PPIConfig(
    iou_threshold=0.14,
    t3d=0.04,
    box_joints="torso_head",
    min_mode_score=0.05,
    person_threshold=0.5,
)
"""Parameters released with the in-the-wild ResNet-50 model."""

DEMO = PPIConfig(
    iou_threshold=0.1,
    t3d=0.3,
    box_joints="shoulder_head",
    min_mode_score=0.1,
    person_threshold=0.2,
)
"""Parameters released with the authors' demo model."""

PRESETS: dict[str, PPIConfig] = {
    "default": PPIConfig(),
    "inthewild": IN_THE_WILD_R50,
    "demo": DEMO,
}
"""Named parameter sets: the authors' code defaults, the in-the-wild ResNet-50 model's
and the demo model's, as the authors' released code sets them."""


@flax.struct.dataclass
class PPIResult:
    """People found in one image, best first; rows past the last valid one are zeros.

    Attributes:
      poses2d: (P, J, 2) pixels.
      poses3d: (P, J, 3) metres, torso-centred as the candidates.
      scores: (P,) sum of the scores of the candidates averaged into each pose.
      valid: (P,) bool, True for real people.
    """

    poses2d: jax.Array
    poses3d: jax.Array
    scores: jax.Array
    valid: jax.Array


def checked_entry(integrate):
    """`integrate(poses2d, poses3d, scores, *, image_size, ..., config)` jitted with a
    static `config`, behind the checks that need values: a `PPIConfig` (a dict is not
    hashable, so jit would fail on it first) and, outside jit, an image size of at least
    1 pixel. `.lower` lowers the jitted function."""
    jitted = jax.jit(integrate, static_argnames=("config",))

    @functools.wraps(integrate)
    def entry(*args, image_size, config: PPIConfig = PPIConfig(), **kwargs):
        if not isinstance(config, PPIConfig):
            raise ValueError(f"config must be a PPIConfig, got {type(config).__name__}")
        if not isinstance(image_size, jax.core.Tracer):
            size = np.asarray(image_size, np.float64)
            if size.shape == (2,) and not np.all(size >= 1.0):  # NaN too
                raise ValueError(f"image_size must be >= 1 pixel, got {size.tolist()}")
        return jitted(*args, image_size=image_size, config=config, **kwargs)

    entry.lower = jitted.lower
    return entry


@checked_entry
def ppi(
    poses2d,
    poses3d,
    scores,
    *,
    image_size,
    upper_body=None,
    valid=None,
    rois=None,
    config: PPIConfig = PPIConfig(),
) -> PPIResult:
    """Pose proposal integration (Sec. 3.6, Eq. 7-8) of one image's candidates.

    Candidates with a non-finite score or coordinate (or coordinates summing past the
    float32 range) count as invalid.

    Args:
      poses2d: (M, J, 2) pixels, LCR joint order (J >= 13).
      poses3d: (M, J, 3) metres.
      scores: (M,) scores (class probabilities, possibly rescored).
      image_size: (height, width) pixels; pose boxes are clipped to the image.
      upper_body: (M,) bool, the candidate comes from an upper-body class; its weight on
        the lower-limb joints (0-3) of a mode's pose is multiplied by
        `config.lower_limb_weight`. None: all False.
      valid: (M,) bool, real candidates; None for all.
      rois: (M, 4) RoI boxes, needed for `config.group_by == "roi"` only.
      config: static `PPIConfig`.

    Returns:
      `PPIResult` with P = config.max_people rows, by descending score (ties in the
      order the groups were formed).
    """
    data = _prepare(poses2d, poses3d, scores, image_size, upper_body, valid, rois, config)
    return _integrate(data, config)


def _prepare(poses2d, poses3d, scores, image_size, upper_body, valid, rois, config):
    """Validates the candidates and lays them out for the loops (see `_integrate`)."""
    poses2d = jnp.asarray(poses2d, jnp.float32)
    poses3d = jnp.asarray(poses3d, jnp.float32)
    scores = jnp.asarray(scores, jnp.float32)
    if poses2d.ndim != 3 or poses2d.shape[-1] != 2 or poses2d.shape[1] < 13:
        raise ValueError(f"poses2d must be (M, J, 2) with J >= 13, got {poses2d.shape}")
    num, joints = poses2d.shape[:2]
    upper_body = jnp.zeros(num, bool) if upper_body is None else jnp.asarray(upper_body, bool)
    valid = jnp.ones(num, bool) if valid is None else jnp.asarray(valid, bool)
    expected = {
        "poses3d": (poses3d, (num, joints, 3)),
        "scores": (scores, (num,)),
        "upper_body": (upper_body, (num,)),
        "valid": (valid, (num,)),
    }
    if config.group_by == "roi":
        if rois is None:
            raise ValueError('rois (M, 4) are needed with group_by="roi"')
        rois = jnp.asarray(rois, jnp.float32)
        expected["rois"] = (rois, (num, 4))
    for name, (array, shape) in expected.items():
        if array.shape != shape:
            raise ValueError(f"{name} must have shape {shape}, got {array.shape}")
    image_size = jnp.asarray(image_size, jnp.float32)
    if image_size.shape != (2,):
        raise ValueError(f"image_size must be (height, width), got shape {image_size.shape}")

    if config.group_by == "roi":
        boxes = rois
    else:
        subset = box_joint_indices(config.box_joints) or range(joints)
        boxes = _joint_box(poses2d, subset)
        limit = jnp.tile(image_size[::-1] - 1.0, 2)
        boxes = jnp.minimum(jnp.maximum(boxes, 0.0), limit)
    pose2d = poses2d.reshape(num, 2 * joints)  # x0, y0, x1, ...
    pose3d_rows = poses3d.reshape(num, 3 * joints)  # X0, Y0, Z0, X1, ...
    # A NaN or inf anywhere in a row makes its sum non-finite; XLA:CPU sums rows much
    # faster as a matrix-vector product than as a reduction.
    row_sum = pose2d @ jnp.ones(2 * joints) + pose3d_rows @ jnp.ones(3 * joints)
    finite = jnp.isfinite(scores) & jnp.isfinite(row_sum) & jnp.isfinite(boxes @ jnp.ones(4))
    # Zeros for the non-finite rows: their weight is 0 in every mean, and 0 * NaN is NaN.
    pose2d = jnp.where(finite[:, None], pose2d, 0.0)
    pose3d_rows = jnp.where(finite[:, None], pose3d_rows, 0.0)
    return {
        "key": _order_keys(scores),
        "score": scores,
        "upper": upper_body,
        "valid": valid & finite,
        "box": boxes.T,  # (4, M)
        "pose2d": pose2d,  # (M, 2J)
        "pose3d_rows": pose3d_rows,  # (M, 3J), gathered by the compactions
        "pose3d": pose3d_rows.reshape(num, joints, 3).transpose(2, 1, 0),  # (3, J, M), for D3D
    }


def _joint_box(poses2d, subset):
    """(M, 4) boxes x1, y1, x2, y2 around the joints `subset` of (M, J, 2) poses.

    `geometry.pose_box` without margin, written as a chain of elementwise min/max over
    the joints: XLA:CPU fuses it into one loop, many times faster than a reduction over
    the joint axis.
    """
    lo = hi = poses2d[:, subset[0]]
    for joint in subset[1:]:
        lo = jnp.minimum(lo, poses2d[:, joint])
        hi = jnp.maximum(hi, poses2d[:, joint])
    return jnp.concatenate([lo, hi], axis=1)


def _order_keys(scores):
    """int32 keys with the order (and ties) of float32 scores.

    The loops pick maxima over these: on CPU, XLA's integer max is many times faster
    than a float argmax.
    """
    bits = lax.bitcast_convert_type(jnp.where(scores == 0, 0.0, scores), jnp.int32)
    return bits ^ ((bits >> 31) & jnp.int32(0x7FFFFFFF))


def _first_max(keys, mask):
    """(index of the largest key where mask, lowest index among ties; whether any)."""
    masked = jnp.where(mask, keys, _KEY_NONE)
    best = jnp.max(masked)
    index = jnp.min(jnp.where(masked == best, jnp.arange(keys.shape[0]), keys.shape[0]))
    return index, best > _KEY_NONE


def _d3d(poses3d, pose):
    """(N,) D3D, mean per-joint 3D distance, of (3, J, N) poses to one (3, J) pose.

    Written joint by joint as one chain of elementwise ops (J <= 17 static): XLA:CPU
    fuses it into a single vectorised loop over N, 2-4x faster than the same arithmetic
    on a (3, J, N) difference and many times faster than a reduction over joints. D3D
    is the innermost computation of PPI.
    """
    total = 0.0
    for joint in range(poses3d.shape[1]):
        x, y, z = (poses3d[axis, joint] - pose[axis, joint] for axis in range(3))
        total = total + jnp.sqrt(x * x + y * y + z * z)
    return total / poses3d.shape[1]


def _buffer_sizes(num: int, min_buffer: int, shrink: int = _SHRINK) -> tuple[int, ...]:
    """Static buffer sizes M, M/4, M/16, ... (rounded up), none below `min_buffer`.

    `shrink` is the ratio between consecutive sizes.
    """
    sizes = [num]
    while -(-sizes[-1] // shrink) >= min_buffer and sizes[-1] > 1:
        sizes.append(-(-sizes[-1] // shrink))
    return tuple(sizes)


def _compact(data, mask, size: int):
    """The entries of `data` where mask, in order, in buffers of static `size`.

    Returns the compacted data and its (size,) mask of real entries; the padding repeats
    the last candidate, and every use of the data is masked.
    """
    num = mask.shape[0]
    index = jnp.nonzero(mask, size=size, fill_value=num)[0]
    compact = {
        name: jnp.take(array, index, axis=0 if name.startswith("pose") else -1, mode="clip")
        for name, array in data.items()
        if name != "pose3d"
    }
    # Gathering rows and transposing is much faster than gathering along the last axis.
    joints = data["pose3d"].shape[1]
    compact["pose3d"] = compact["pose3d_rows"].reshape(size, joints, 3).transpose(2, 1, 0)
    return compact, index < num


def _integrate(data, config: PPIConfig) -> PPIResult:
    """Greedy grouping with a running top-P of the people found.

    The candidates not yet grouped are compacted into smaller buffers as their count
    drops (`_buffer_sizes`), which does not change the order of the loop.
    """
    num = data["score"].shape[0]
    joints = data["pose3d"].shape[1]
    people = config.max_people
    top = {
        "score": jnp.full(people, -jnp.inf, jnp.float32),
        "pose": jnp.zeros((people, 5 * joints), jnp.float32),
    }
    if num:
        sizes = _buffer_sizes(num, config.min_buffer)
        top = _group_stages(data, data["valid"], top, sizes, config)
    return _result(top["score"], top["pose"], jnp.isfinite(top["score"]))


def _result(scores, pose, valid) -> PPIResult:
    """`PPIResult` from (P,) scores and (P, 5J) poses, `_prepare`'s "pose2d" then "pose3d_rows"."""
    joints = pose.shape[1] // 5
    pose = jnp.where(valid[:, None], pose, 0.0)
    return PPIResult(
        poses2d=pose[:, : 2 * joints].reshape(-1, joints, 2),
        poses3d=pose[:, 2 * joints :].reshape(-1, joints, 3),
        scores=jnp.where(valid, scores, 0.0),
        valid=valid,
    )


def _group_stages(data, remaining, top, sizes, config: PPIConfig):
    """Forms groups in buffers of size sizes[0] until at most sizes[1] candidates remain."""
    size = sizes[0]
    stop_at = sizes[1] if len(sizes) > 1 else 0
    iota = jnp.arange(size)

    def body(carry):
        remaining, count, top = carry
        leader, _ = _first_max(data["key"], remaining)
        iou = geometry.box_iou(data["box"], data["box"][:, leader, None], offset=1.0, coord_axis=0)
        # The leader joins its group even if its IoU with itself overflowed to NaN.
        group = remaining & ((iou > config.iou_threshold) | (iota == leader))
        top = lax.cond(
            _may_add(data["score"], group, top, config),
            lambda top: _insert(top, *_best_mode(data, group, leader, config), config),
            lambda top: top,
            top,
        )
        return remaining & ~group, count - jnp.sum(group, dtype=jnp.int32), top

    def going(carry):
        remaining, count, top = carry
        return (count > stop_at) & _may_add(data["score"], remaining, top, config)

    carry = (remaining, jnp.sum(remaining, dtype=jnp.int32), top)
    remaining, _, top = lax.while_loop(going, body, carry)
    if len(sizes) == 1:
        return top
    data, remaining = _compact(data, remaining, sizes[1])
    return _group_stages(data, remaining, top, sizes[1:], config)


def _may_add(score, candidates, top, config: PPIConfig):
    """Whether a group of the `candidates` (mask) can still enter the top-P.

    A mode's score is a sum of its candidates' scores, so no group can beat the sum of
    their positive scores; once that bound is <= the P-th person's score (a tie is
    inserted after it, so dropped) or the person threshold, no group of them changes
    the result: the loop stops when this holds for the remaining candidates, and skips
    the mode search of a group for which it holds. The bound gets 1e-4 relative slack
    for float32 sums taken in another order.
    """
    bound = jnp.sum(jnp.where(candidates, jnp.maximum(score, 0.0), 0.0))
    floor = jnp.maximum(top["score"][-1], config.person_threshold)
    return bound * (1.0 + 1e-4) + 1e-30 > floor


def _insert(top, score, pose, config: PPIConfig):
    """Inserts a person into the running top-P, after the people with a score >= its.

    Only if the score is > the person threshold.
    """
    keep = score > config.person_threshold
    position = jnp.sum(top["score"] >= score)
    slot = jnp.arange(top["score"].shape[0])

    def put(old, new):
        shifted = jnp.concatenate([old[:1], old[:-1]])
        at = (slot == position).reshape((-1,) + (1,) * (old.ndim - 1))
        after = (slot > position).reshape(at.shape)
        out = jnp.where(at, new, jnp.where(after, shifted, old))
        return jnp.where(keep, out, old)

    return {"score": put(top["score"], score), "pose": put(top["pose"], pose)}


def _best_mode(data, group, leader, config: PPIConfig):
    """PPI of one group, in the smallest buffer that holds the group.

    The buffer sizes halve from the size of `data`'s (`_MODE_SHRINK`): the group's
    modes each take a D3D pass over the buffer. Buffers smaller than
    `_MODE_COMPACT_FROM` are searched in place.
    """
    if group.shape[0] < _MODE_COMPACT_FROM:
        return _modes(data, group, leader, config)
    sizes = _buffer_sizes(group.shape[0], config.min_buffer, _MODE_SHRINK)

    def in_buffer(size):
        if size == sizes[0]:
            return lambda: _modes(data, group, leader, config)
        return lambda: _modes(*_compact(data, group, size), None, config)

    if len(sizes) == 1:
        return in_buffer(sizes[0])()
    branch = jnp.sum(jnp.asarray(sizes) >= jnp.sum(group, dtype=jnp.int32)) - 1
    return lax.switch(branch, [in_buffer(size) for size in sizes])


def _modes(data, group, leader, config: PPIConfig):
    """Greedy mode search inside one group (Eq. 7) and the best mode's pose (Eq. 8).

    `leader` is the group's best candidate, None to find it.

    Returns (score, pose (5J,)) of the mode with the highest score (the first among
    ties): the sum of its candidates' scores and their weighted mean pose.
    """
    poses3d = data["pose3d"]  # (3, J, N)
    joints = poses3d.shape[1]
    group_scores = jnp.where(group, data["score"], 0.0)

    def members(leader):  # the leader itself is at D3D 0 < t3d
        return group & (_d3d(poses3d, poses3d[:, :, leader]) < config.t3d)

    def body(carry):
        unused, leader, best_score, best_mode, _ = carry
        mode = members(leader)
        score = jnp.dot(mode.astype(jnp.float32), group_scores, precision=_HIGHEST)
        better = score > best_score
        unused = unused & ~mode
        following, any_left = _first_max(data["key"], unused)
        going = any_left & (data["score"][following] >= config.min_mode_score)
        return (
            unused,
            following,
            jnp.where(better, score, best_score),
            jnp.where(better, mode, best_mode),
            going,
        )

    if leader is None:
        leader, _ = _first_max(data["key"], group)
    carry = (group, leader, jnp.float32(-jnp.inf), group, jnp.bool_(True))
    _, _, best_score, best_mode, _ = lax.while_loop(lambda c: c[-1], body, carry)

    weight = jnp.where(best_mode, data["score"], 0.0)
    weight_lower = jnp.where(data["upper"], config.lower_limb_weight * weight, weight)
    weights = jnp.stack([weight, weight_lower, best_mode.astype(jnp.float32)])  # (3, N)
    sums = [jnp.dot(weights, data[k], precision=_HIGHEST) for k in ("pose2d", "pose3d_rows")]
    totals = jnp.sum(weights, axis=1, keepdims=True)  # (3, 1)
    means = jnp.concatenate(sums, axis=1) / totals  # (3, 5J)
    # Weights summing to 0 take the limit of vanishing weights, not 0 / 0: a mode whose
    # scores sum to 0 (kept by a person_threshold < 0) the plain mean of its candidates,
    # and with a lower_limb_weight of 0 a mode of upper-body candidates only its
    # score-weighted mean on the lower limbs too.
    means_all = jnp.where(totals[0] != 0, means[0], means[2])
    means_lower = jnp.where(totals[1] != 0, means[1], means_all)
    lower = np.isin(np.arange(joints), _LCR13.lower_limbs)
    lower = np.concatenate([np.repeat(lower, 2), np.repeat(lower, 3)])
    return best_score, jnp.where(lower, means_lower, means_all)
