"""Pose sources for synthetic data: procedural 3D poses, orientations, density subsampling.

LCR-Net++ Sec. 4.1 augments its training set with multi-person images rendered from CMU
MoCap poses, sampled "in areas of the pose space that are less populated" (Fig. 8c-d).
This module provides the poses for our version of that generator without MoCap files:

  - `sample_poses`: a kinematic model (bone lengths from the body height, 27 joint
    angles with anatomical limits) driven by pose families (standing, walking, sitting,
    arms up, crouching, bending, kneeling), giving LCR-17 poses in metres.
  - `random_orientations`: global body rotations (yaw over the full circle, small tilt);
    `canonical_yaw` removes the heading of any poses (e.g. MoCap) to compare them.
  - `subsample_poses`: greedy thinning of any (N, J, 3) pose set (procedural or MoCap)
    so that no two kept poses are closer than a distance: dense regions of the pose
    space are thinned, sparse ones kept whole.

Body frame: the camera axes of a person standing upright and facing the camera, i.e.
X towards the person's left, Y down, Z from the chest to the back; the origin is the
torso centre (mean of hips and shoulders). Everything here is numpy and deterministic
for a seed (`np.random.Generator`).
"""

from __future__ import annotations

import dataclasses

import numpy as np
from scipy import spatial

from lcrnet_jax import geometry, skeleton

FAMILIES = ("standing", "walking", "sitting", "arms_up", "crouching", "bending", "kneeling")
FAMILY_WEIGHTS = (0.24, 0.2, 0.12, 0.12, 0.1, 0.1, 0.12)

# Segment lengths as fractions of the body height (after Drillis & Contini's
# anthropometric table, adjusted to Human3.6M-like joint centres).
BONE_FRACTIONS = {
    "shank": 0.246,  # knee -> ankle
    "thigh": 0.245,  # hip -> knee
    "hip_offset": 0.075,  # pelvis -> hip, sideways
    "lumbar": 0.13,  # pelvis -> spine
    "thoracic": 0.13,  # spine -> thorax
    "neck": 0.06,  # thorax -> neck
    "head": 0.065,  # neck -> head centre
    "shoulder_offset": 0.105,  # thorax -> shoulder, sideways
    "upper_arm": 0.186,  # shoulder -> elbow
    "forearm": 0.146,  # elbow -> wrist
}

# Degrees of freedom (degrees). Sided ones exist as `<name>_r` and `<name>_l`.
# Trunk and neck: flex leans forward, lat bends towards the body's left, twist turns the
# front towards the left. Hips and shoulders point the limb by spherical angles in the
# parent (pelvis, chest) frame: elevation from hanging straight down (90 = horizontal,
# negative = backwards) and azimuth about the vertical (0 = in front, 90 = sideways
# outwards, negative = across the body); twist turns the limb about its own axis (it
# sets the plane in which the knee or elbow bends). Knee/elbow flex: 0 = straight.
TRUNK_DOFS = (
    "pelvis_flex",
    "pelvis_lat",
    "pelvis_twist",
    "spine_flex",
    "spine_lat",
    "spine_twist",
    "chest_flex",
    "chest_lat",
    "chest_twist",
    "neck_flex",
    "neck_lat",
)
SIDED_DOFS = (
    "hip_elevation",
    "hip_azimuth",
    "hip_twist",
    "knee_flex",
    "shoulder_elevation",
    "shoulder_azimuth",
    "shoulder_twist",
    "elbow_flex",
)
DOFS = TRUNK_DOFS + tuple(f"{d}_{s}" for s in "rl" for d in SIDED_DOFS)

# Anatomical limits applied to every sampled pose.
JOINT_LIMITS = {
    "pelvis_flex": (-20, 100),
    "pelvis_lat": (-15, 15),
    "pelvis_twist": (-30, 30),
    "spine_flex": (-20, 45),
    "spine_lat": (-20, 20),
    "spine_twist": (-25, 25),
    "chest_flex": (-15, 35),
    "chest_lat": (-15, 15),
    "chest_twist": (-25, 25),
    "neck_flex": (-40, 50),
    "neck_lat": (-30, 30),
    "hip_elevation": (-30, 140),
    "hip_azimuth": (-30, 100),
    "hip_twist": (-40, 45),
    "knee_flex": (0, 155),
    "shoulder_elevation": (-60, 180),
    "shoulder_azimuth": (-45, 135),
    "shoulder_twist": (-70, 90),
    "elbow_flex": (0, 150),
}

# Family ranges (degrees). `thigh_elevation` is the thigh's elevation in the body frame
# (hip_elevation = thigh_elevation + pelvis_flex), so a bent-over trunk keeps vertical
# legs.
# A sided key (`..._r`, `..._l`) overrides one side only.
_BASE = {
    "pelvis_flex": (-5, 10),
    "pelvis_lat": (-5, 5),
    "pelvis_twist": (-10, 10),
    "spine_flex": (-5, 10),
    "spine_lat": (-6, 6),
    "spine_twist": (-12, 12),
    "chest_flex": (-5, 10),
    "chest_lat": (-6, 6),
    "chest_twist": (-12, 12),
    "neck_flex": (-15, 25),
    "neck_lat": (-10, 10),
    "thigh_elevation": (-8, 12),
    "hip_azimuth": (-10, 100),
    "hip_twist": (-10, 25),
    "knee_flex": (0, 20),
    "shoulder_elevation": (-15, 60),
    "shoulder_azimuth": (-20, 100),
    "shoulder_twist": (-20, 50),
    "elbow_flex": (0, 80),
}
_FAMILY_RANGES = {
    "standing": {
        "shoulder_elevation": (-20, 110),
        "shoulder_azimuth": (-30, 110),
        "elbow_flex": (0, 120),
    },
    "walking": {"knee_flex": (0, 50), "shoulder_azimuth": (-10, 15), "elbow_flex": (5, 50)},
    "sitting": {
        "pelvis_flex": (-15, 15),
        "spine_flex": (0, 20),
        "thigh_elevation": (75, 100),
        "hip_azimuth": (-5, 25),
        "knee_flex": (60, 120),
        "shoulder_elevation": (0, 70),
        "shoulder_azimuth": (-30, 40),
        "elbow_flex": (30, 110),
    },
    "arms_up": {
        "shoulder_elevation": (110, 175),
        "shoulder_azimuth": (-10, 90),
        "elbow_flex": (0, 60),
        "neck_flex": (-30, 10),
    },
    "crouching": {
        "pelvis_flex": (15, 45),
        "spine_flex": (5, 30),
        "thigh_elevation": (70, 110),
        "hip_azimuth": (10, 40),
        "knee_flex": (100, 145),
        "shoulder_elevation": (10, 80),
        "shoulder_azimuth": (-30, 40),
        "elbow_flex": (10, 100),
    },
    "bending": {
        "pelvis_flex": (40, 90),
        "spine_flex": (0, 25),
        "thigh_elevation": (-10, 15),
        "hip_azimuth": (-10, 60),
        "knee_flex": (0, 30),
        "shoulder_elevation": (-20, 40),
        "shoulder_azimuth": (-20, 30),
        "elbow_flex": (0, 40),
        "neck_flex": (-40, 0),
    },
    "kneeling": {
        "thigh_elevation": (-10, 20),
        "hip_azimuth": (-10, 30),
        "knee_flex": (80, 110),
        "shoulder_elevation": (-20, 80),
        "elbow_flex": (0, 90),
    },
}
# Families whose arms hang under gravity: the trunk's forward bend is added to the
# shoulder elevation so that the arm ranges are with respect to the vertical.
_ARMS_HANG = ("bending",)


@dataclasses.dataclass(frozen=True)
class SampledPoses:
    """Procedural poses and how they were drawn.

    Attributes:
      poses: (N, 17, 3) float32 LCR-17 joints, metres, body frame, torso-centred.
      heights: (N,) float32 body heights in metres (soles to top of the head).
      families: (N,) int32 index into `FAMILIES`.
      angles: (N, len(DOFS)) float32 joint angles in degrees, in `DOFS` order, after
        the limits (before the random left/right mirroring).
      mirrored: (N,) bool, the pose was mirrored left/right after the kinematics.
    """

    poses: np.ndarray
    heights: np.ndarray
    families: np.ndarray
    angles: np.ndarray
    mirrored: np.ndarray


def _family_tables() -> tuple[np.ndarray, np.ndarray]:
    """(F, D) low and high bounds of every DOF for every family."""
    lo = np.zeros((len(FAMILIES), len(DOFS)), np.float32)
    hi = np.zeros_like(lo)
    for f, family in enumerate(FAMILIES):
        ranges = {**_BASE, **_FAMILY_RANGES[family]}
        for d, dof in enumerate(DOFS):
            key = dof.replace("hip_elevation", "thigh_elevation")
            generic = key[:-2] if d >= len(TRUNK_DOFS) else key
            lo[f, d], hi[f, d] = ranges.get(key, ranges[generic])
    return lo, hi


def _limits() -> tuple[np.ndarray, np.ndarray]:
    sided = len(TRUNK_DOFS)
    names = [d if i < sided else d[:-2] for i, d in enumerate(DOFS)]
    bounds = np.array([JOINT_LIMITS[n] for n in names], np.float32)
    return bounds[:, 0], bounds[:, 1]


def _couple(angles: np.ndarray, families: np.ndarray, rng: np.random.Generator) -> None:
    """Family-specific couplings between DOFs, in place (angles in degrees)."""
    col = {d: i for i, d in enumerate(DOFS)}
    n = len(families)
    walking = families == FAMILIES.index("walking")
    swing = rng.uniform(-35, 35, n).astype(np.float32)
    opposite = rng.uniform(0.8, 1.0, n).astype(np.float32)
    arm_swing = rng.uniform(0.4, 0.9, n).astype(np.float32)
    for dof, value in (
        ("hip_elevation_r", swing),
        ("hip_elevation_l", -opposite * swing),
        ("shoulder_elevation_r", -arm_swing * swing),
        ("shoulder_elevation_l", arm_swing * opposite * swing),
    ):
        angles[:, col[dof]] = np.where(walking, value, angles[:, col[dof]])

    # Half of the kneeling people kneel on one knee, the right foot planted in front.
    one_knee = (families == FAMILIES.index("kneeling")) & (rng.random(n) < 0.5)
    angles[:, col["hip_elevation_r"]] = np.where(
        one_knee, rng.uniform(70, 95, n), angles[:, col["hip_elevation_r"]]
    )
    angles[:, col["knee_flex_r"]] = np.where(
        one_knee, rng.uniform(75, 100, n), angles[:, col["knee_flex_r"]]
    )
    # Some "arms up" people raise one arm only.
    one_arm = (families == FAMILIES.index("arms_up")) & (rng.random(n) < 0.4)
    for dof, (low, high) in (("shoulder_elevation_l", (-20, 50)), ("elbow_flex_l", (0, 70))):
        angles[:, col[dof]] = np.where(one_arm, rng.uniform(low, high, n), angles[:, col[dof]])

    # Thigh angles are drawn in the body frame: the hip joint angle adds the pelvis tilt.
    for side in "rl":
        angles[:, col[f"hip_elevation_{side}"]] += angles[:, col["pelvis_flex"]]
    hang = np.isin(families, [FAMILIES.index(f) for f in _ARMS_HANG])
    trunk = angles[:, [col["pelvis_flex"], col["spine_flex"], col["chest_flex"]]].sum(-1)
    for side in "rl":
        angles[:, col[f"shoulder_elevation_{side}"]] += np.where(hang, trunk, 0.0)


def _rotations(azimuth, elevation, roll) -> np.ndarray:
    """geometry.rotation_matrix (Rz(roll) Rx(elevation) Ry(azimuth)) as numpy, degrees."""
    rad = [np.deg2rad(np.asarray(a, np.float32)) for a in (azimuth, elevation, roll)]
    return np.asarray(geometry.rotation_matrix(*rad), np.float32)


def forward_kinematics(angles: np.ndarray, bones: dict[str, np.ndarray]) -> np.ndarray:
    """LCR-17 joint positions from joint angles and bone lengths.

    Segment rotations are built with `geometry.rotation_matrix` (Rz(roll) Rx(elevation)
    Ry(azimuth)) in each segment's parent frame. A limb (at rest hanging along +Y)
    twists about its own axis, is raised to its elevation in the sagittal plane (about
    X), then swung to its azimuth about the parent's vertical axis. At zero angles the
    body stands upright with the arms hanging, facing -Z.

    Args:
      angles: (N, len(DOFS)) degrees in `DOFS` order.
      bones: name -> (N,) lengths in metres, with the keys of `BONE_FRACTIONS`.

    Returns:
      (N, 17, 3) float32 joints in the body frame (Y down), origin at the pelvis.
    """
    angles = np.asarray(angles, np.float32)
    if angles.ndim != 2 or angles.shape[1] != len(DOFS):
        raise ValueError(f"angles must have shape (N, {len(DOFS)}), got {angles.shape}")
    missing = set(BONE_FRACTIONS) - set(bones)
    if missing:
        raise ValueError(f"bones lacks lengths for {sorted(missing)}")
    a = {d: angles[:, i] for i, d in enumerate(DOFS)}
    n = angles.shape[0]
    zero = np.zeros(n, np.float32)
    b = {k: np.broadcast_to(np.asarray(v, np.float32), (n,)) for k, v in bones.items()}

    def vec(x, y, z):  # (N, 3) from scalars or (N,) arrays
        return np.stack(np.broadcast_arrays(x, y, z, zero), axis=-1)[:, :3]

    def apply(rot, v):
        return np.einsum("nij,nj->ni", rot, v)

    # Positive "lat" bends towards the body's left (+X): a positive roll about Z.
    # Positive trunk "flex" leans forward (up -> -Z): a positive rotation about X.
    # Positive "twist" turns the front towards the left: a negative rotation about Y.
    pelvis_rot = _rotations(-a["pelvis_twist"], a["pelvis_flex"], a["pelvis_lat"])
    lumbar_rot = pelvis_rot @ _rotations(-a["spine_twist"], a["spine_flex"], a["spine_lat"])
    chest_rot = lumbar_rot @ _rotations(-a["chest_twist"], a["chest_flex"], a["chest_lat"])
    neck_rot = chest_rot @ _rotations(zero, a["neck_flex"], a["neck_lat"])

    pelvis = np.zeros((n, 3), np.float32)
    spine = pelvis + apply(lumbar_rot, vec(0, -b["lumbar"], 0))
    thorax = spine + apply(chest_rot, vec(0, -b["thoracic"], 0))
    neck = thorax + apply(neck_rot, vec(0, -b["neck"], 0))
    head = neck + apply(neck_rot, vec(0, -b["head"], 0))

    joints = {"pelvis": pelvis, "spine": spine, "thorax": thorax, "neck": neck, "head": head}
    for side, sign, name in (("r", -1.0, "right"), ("l", 1.0, "left")):
        # Raising a hanging limb to the front (-Z) is a negative rotation about X; the
        # azimuth swings it outwards (towards sign * X) about the vertical.
        hip = pelvis + apply(pelvis_rot, vec(sign * b["hip_offset"], 0, 0))
        thigh_rot = (
            pelvis_rot
            @ _rotations(-sign * a[f"hip_azimuth_{side}"], zero, zero)
            @ _rotations(sign * a[f"hip_twist_{side}"], -a[f"hip_elevation_{side}"], zero)
        )
        knee = hip + apply(thigh_rot, vec(0, b["thigh"], 0))
        shank_rot = thigh_rot @ _rotations(zero, a[f"knee_flex_{side}"], zero)
        ankle = knee + apply(shank_rot, vec(0, b["shank"], 0))

        shoulder = thorax + apply(chest_rot, vec(sign * b["shoulder_offset"], 0, 0))
        arm_rot = (
            chest_rot
            @ _rotations(-sign * a[f"shoulder_azimuth_{side}"], zero, zero)
            @ _rotations(sign * a[f"shoulder_twist_{side}"], -a[f"shoulder_elevation_{side}"], zero)
        )
        elbow = shoulder + apply(arm_rot, vec(0, b["upper_arm"], 0))
        forearm_rot = arm_rot @ _rotations(zero, -a[f"elbow_flex_{side}"], zero)
        wrist = elbow + apply(forearm_rot, vec(0, b["forearm"], 0))
        joints.update(
            {
                f"{name}_hip": hip,
                f"{name}_knee": knee,
                f"{name}_ankle": ankle,
                f"{name}_shoulder": shoulder,
                f"{name}_elbow": elbow,
                f"{name}_wrist": wrist,
            }
        )
    return np.stack([joints[j] for j in skeleton.LCR17.joints], axis=1).astype(np.float32)


def sample_poses(
    rng: np.random.Generator,
    num: int,
    *,
    families: tuple[str, ...] = FAMILIES,
    family_weights: tuple[float, ...] | None = None,
    height_range: tuple[float, float] = (1.45, 2.0),
    proportion_jitter: float = 0.04,
) -> SampledPoses:
    """Random plausible full-body LCR-17 poses.

    Each pose: a family (weights `FAMILY_WEIGHTS` by default), a body height (normal,
    mean 1.72 m, sd 0.09 m, clipped to `height_range`), bone lengths from
    `BONE_FRACTIONS` times the height, each jittered by a log-normal factor
    (left and right alike), joint angles uniform in the family's ranges plus the
    family's couplings (walking swings opposite arm and leg, ...), clipped to
    `JOINT_LIMITS`, forward kinematics, and a left/right mirror with probability 1/2.

    Args:
      rng: numpy random generator (the only source of randomness).
      num: number of poses N >= 0.
      families: names from `FAMILIES` to draw from.
      family_weights: relative weights of `families`; None for the defaults (or
        uniform over a custom subset).
      height_range: (min, max) body height in metres.
      proportion_jitter: standard deviation of the log of each bone's length factor.

    Returns:
      `SampledPoses` with (N, 17, 3) float32 torso-centred poses, body frame (Y down).
    """
    unknown = [f for f in families if f not in FAMILIES]
    if unknown or not families:
        raise ValueError(f"families must be a non-empty subset of {FAMILIES}, got {families}")
    if num < 0:
        raise ValueError(f"num must be >= 0, got {num}")
    if family_weights is None:
        family_weights = (
            FAMILY_WEIGHTS if tuple(families) == FAMILIES else tuple(1.0 for _ in families)
        )
    if len(family_weights) != len(families) or min(family_weights) < 0:
        raise ValueError(
            f"family_weights must be {len(families)} non-negative numbers, got {family_weights}"
        )
    p = np.asarray(family_weights, np.float64)
    chosen = rng.choice(len(families), size=num, p=p / p.sum())
    family_ids = np.array([FAMILIES.index(f) for f in families], np.int32)[chosen]

    lo, hi = _family_tables()
    angles = (lo[family_ids] + rng.random((num, len(DOFS))) * (hi - lo)[family_ids]).astype(
        np.float32
    )
    _couple(angles, family_ids, rng)
    lim_lo, lim_hi = _limits()
    angles = np.clip(angles, lim_lo, lim_hi).astype(np.float32)

    heights = np.clip(rng.normal(1.72, 0.09, num), *height_range).astype(np.float32)
    bones = {
        name: heights * frac * np.exp(rng.normal(0.0, proportion_jitter, num))
        for name, frac in BONE_FRACTIONS.items()
    }
    poses = forward_kinematics(angles, bones)
    mirrored = rng.random(num) < 0.5
    poses = np.where(mirrored[:, None, None], skeleton.flip_poses(poses, "lcr17"), poses)
    poses = geometry.center_on_torso(poses.astype(np.float32), "lcr17")
    return SampledPoses(
        poses=poses.astype(np.float32),
        heights=heights,
        families=family_ids,
        angles=angles,
        mirrored=mirrored,
    )


def random_orientations(
    rng: np.random.Generator, num: int, *, max_tilt: float = 0.0, max_yaw: float = np.pi
) -> np.ndarray:
    """Random global body orientations: yaw uniform, small tilts.

    Built with `geometry.rotation_matrix`: yaw about the vertical (Y) axis, then a
    forward/backward tilt (about X) and a sideways tilt (about Z), each uniform in
    [-max_tilt, max_tilt].

    Args:
      rng: numpy random generator.
      num: number of rotations.
      max_tilt: largest tilt in radians.
      max_yaw: yaw uniform in [-max_yaw, max_yaw] radians, 0 facing the camera (the body
        frame faces -Z); pi gives every direction.

    Returns:
      (num, 3, 3) float32 rotations, applied to body-frame poses as `poses @ R.T`
      (`geometry.rotate`).
    """
    yaw = rng.uniform(-max_yaw, max_yaw, num)
    tilt = rng.uniform(-max_tilt, max_tilt, (2, num))
    return np.asarray(geometry.rotation_matrix(yaw, tilt[0], tilt[1]), np.float32)


def canonical_yaw(poses: np.ndarray, joint_set: str = "lcr17") -> np.ndarray:
    """Torso-centred poses turned about the vertical so that they face -Z.

    Each pose is rotated about Y until its hip line (right hip -> left hip) points along
    +X, the body frame of `sample_poses`. Use it on MoCap poses (Y down, any heading)
    before `subsample_poses`, so that the heading does not count as a difference.

    Args:
      poses: (N, J, 3) metres, Y down, in `joint_set` order.
      joint_set: a joint set with hips and shoulders.

    Returns:
      (N, J, 3) float32 poses.
    """
    poses = np.asarray(poses, np.float32)
    js = skeleton.get_joint_set(joint_set)
    if poses.ndim != 3 or poses.shape[1:] != (js.num_joints, 3):
        raise ValueError(f"poses must have shape (N, {js.num_joints}, 3), got {poses.shape}")
    hips = poses[:, js.index("left_hip")] - poses[:, js.index("right_hip")]
    yaw = np.arctan2(hips[:, 2], hips[:, 0])
    turned = geometry.rotate(poses, geometry.rotation_matrix(yaw, np.zeros_like(yaw)))
    return geometry.center_on_torso(turned, js).astype(np.float32)


def subsample_poses(
    poses: np.ndarray,
    *,
    min_distance: float,
    reference: np.ndarray | None = None,
    seed: int = 0,
) -> np.ndarray:
    """Thins a pose set so that no two kept poses are closer than `min_distance`.

    The distance between two poses is the root-mean-square of their per-joint
    Euclidean distances after moving each pose's centroid to the origin (metres for
    metric poses). Poses are visited in a random order (fixed by `seed`); a pose is kept
    unless it lies within `min_distance` of an already kept pose or of any `reference`
    pose. Dense regions of the pose space are thus thinned to about one pose per ball of
    radius `min_distance` while sparse regions keep all their poses, as LCR-Net++
    samples CMU poses where Human3.6M is sparse (Sec. 4.1): pass the Human3.6M poses as
    `reference` to do exactly that.

    Args:
      poses: (N, J, D) poses (any joint set, e.g. MoCap frames), already in a common
        body frame (`canonical_yaw`) if the heading should not count.
      min_distance: radius in the poses' units (e.g. 0.05 for 5 cm RMS).
      reference: optional (M, J, D) poses that candidates must stay away from.
      seed: seed of the visiting order.

    Returns:
      (K,) int64 sorted indices of the kept poses.
    """
    poses = np.asarray(poses, np.float64)
    if poses.ndim != 3:
        raise ValueError(f"poses must have shape (N, J, D), got {poses.shape}")
    if not np.isfinite(poses).all():
        raise ValueError("poses contain NaN or infinite values; expected finite coordinates")
    if min_distance <= 0:
        raise ValueError(f"min_distance must be > 0, got {min_distance}")
    num, num_joints = poses.shape[:2]

    def flat(x):
        return (x - x.mean(axis=1, keepdims=True)).reshape(len(x), -1)

    radius = min_distance * np.sqrt(num_joints)
    points = flat(poses)
    suppressed = np.zeros(num, bool)
    if reference is not None:
        reference = np.asarray(reference, np.float64)
        if reference.ndim != 3 or reference.shape[1:] != poses.shape[1:]:
            raise ValueError(
                f"reference must have shape (M, {num_joints}, {poses.shape[2]}), "
                f"got {reference.shape}"
            )
        if len(reference):
            dist, _ = spatial.cKDTree(flat(reference)).query(points, distance_upper_bound=radius)
            suppressed |= dist < radius
    tree = spatial.cKDTree(points)
    kept = []
    for i in np.random.default_rng(seed).permutation(num):
        if suppressed[i]:
            continue
        kept.append(i)
        # Strictly closer than the radius: query_ball_point includes the boundary.
        near = np.asarray(tree.query_ball_point(points[i], radius), np.int64)
        near = near[np.linalg.norm(points[near] - points[i], axis=1) < radius]
        suppressed[near] = True
    return np.sort(np.asarray(kept, np.int64))
