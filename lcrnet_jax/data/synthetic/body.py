"""Procedural body model: capsules around the bones of an LCR pose, and clothes colours.

Our stand-in for the SMPL bodies that LCR-Net++ renders in its synthetic training images
(Sec. 4.1, Fig. 8): each person is a set of capsules (a sphere swept along a segment,
with a radius that may taper) around the bones of its LCR-17 pose, plus a head sphere,
a hair sphere set back on the head (so that front and back views differ), hands and
feet. Radii are fractions of the body height times a per-person girth factor.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from lcrnet_jax import skeleton
from lcrnet_jax.data import poses as pose_sources
from lcrnet_jax.data.synthetic.colors import random_colors

# Per-person material slots; a person's palette row has one colour per slot.
SKIN, TOP, TOP_STRIPE, BOTTOM, SHOES, HAIR = range(6)
NUM_MATERIALS = 6

# Bones whose length gives the body height, with their fraction of it in the
# procedural body (`poses.BONE_FRACTIONS`; hip and shoulder widths are two offsets).
_F = pose_sources.BONE_FRACTIONS
_HEIGHT_FRACTION = {
    ("right_knee", "right_ankle"): _F["shank"],
    ("left_knee", "left_ankle"): _F["shank"],
    ("right_hip", "right_knee"): _F["thigh"],
    ("left_hip", "left_knee"): _F["thigh"],
    ("right_shoulder", "right_elbow"): _F["upper_arm"],
    ("left_shoulder", "left_elbow"): _F["upper_arm"],
    ("right_elbow", "right_wrist"): _F["forearm"],
    ("left_elbow", "left_wrist"): _F["forearm"],
    ("right_hip", "left_hip"): 2 * _F["hip_offset"],
    ("right_shoulder", "left_shoulder"): 2 * _F["shoulder_offset"],
}

# Extra points built from the joints (indices after the 17 LCR-17 joints).
_EXTRA = ("right_toe", "left_toe", "right_hand", "left_hand", "right_flank_low",
          "left_flank_low", "right_flank_high", "left_flank_high", "hair")  # fmt: skip
_POINTS = skeleton.LCR17.joints + _EXTRA

# (from, to, radius at from, radius at to (fractions of the height), material, striped).
_CAPSULES = (
    ("right_hip", "right_knee", 0.055, 0.04, BOTTOM, False),
    ("left_hip", "left_knee", 0.055, 0.04, BOTTOM, False),
    ("right_knee", "right_ankle", 0.037, 0.026, BOTTOM, False),
    ("left_knee", "left_ankle", 0.037, 0.026, BOTTOM, False),
    ("right_ankle", "right_toe", 0.025, 0.02, SHOES, False),
    ("left_ankle", "left_toe", 0.025, 0.02, SHOES, False),
    ("right_hip", "left_hip", 0.06, 0.06, BOTTOM, False),
    ("pelvis", "thorax", 0.07, 0.075, TOP, True),
    ("right_flank_low", "right_flank_high", 0.055, 0.055, TOP, True),
    ("left_flank_low", "left_flank_high", 0.055, 0.055, TOP, True),
    ("right_shoulder", "left_shoulder", 0.042, 0.042, TOP, True),
    ("right_shoulder", "right_elbow", 0.034, 0.027, TOP, False),
    ("left_shoulder", "left_elbow", 0.034, 0.027, TOP, False),
    ("right_elbow", "right_wrist", 0.027, 0.02, TOP, False),
    ("left_elbow", "left_wrist", 0.027, 0.02, TOP, False),
    ("right_wrist", "right_hand", 0.022, 0.019, SKIN, False),
    ("left_wrist", "left_hand", 0.022, 0.019, SKIN, False),
    ("thorax", "head", 0.03, 0.028, SKIN, False),
    ("head", "head", 0.062, 0.062, SKIN, False),
    ("hair", "hair", 0.06, 0.06, HAIR, False),
)
CAPSULES_PER_PERSON = len(_CAPSULES)
_FOREARMS = (13, 14)
_SHANKS = (2, 3)


@dataclasses.dataclass(frozen=True)
class Appearance:
    """Clothes and skin of P people.

    Attributes:
      palette: (P, NUM_MATERIALS, 3) float32 RGB in [0, 255], rows indexed by the
        material slots SKIN, TOP, TOP_STRIPE, BOTTOM, SHOES, HAIR.
      girth: (P,) float32 radius factor (1 = average build).
      stripes: (P,) float32 stripes per metre on the top (0 = plain).
      short_sleeves: (P,) bool, forearms in skin colour.
      shorts: (P,) bool, shanks in skin colour.
    """

    palette: np.ndarray
    girth: np.ndarray
    stripes: np.ndarray
    short_sleeves: np.ndarray
    shorts: np.ndarray


@dataclasses.dataclass(frozen=True)
class Capsules:
    """K capsules in camera coordinates (P people times CAPSULES_PER_PERSON).

    Attributes:
      start, end: (K, 3) float32 segment end points in metres (equal for spheres).
      radius_start, radius_end: (K,) float32 radii in metres at each end.
      person: (K,) int32 index of the person the capsule belongs to.
      material: (K,) int32 row of the flattened (P * NUM_MATERIALS) palette.
      stripe_material: (K,) int32 palette row of the stripes (= material if plain).
      stripes: (K,) float32 number of stripe periods along the capsule (0 = plain).
    """

    start: np.ndarray
    end: np.ndarray
    radius_start: np.ndarray
    radius_end: np.ndarray
    person: np.ndarray
    material: np.ndarray
    stripe_material: np.ndarray
    stripes: np.ndarray


def complete_lcr17(poses: np.ndarray) -> np.ndarray:
    """LCR-17 joints from LCR-13 or LCR-17 poses (LCR-17 is returned unchanged).

    The four joints LCR-13 lacks: pelvis = mid-hips, thorax = mid-shoulders, spine =
    their midpoint, neck = 30% of the way from the thorax to the head.

    Args:
      poses: (..., 13 | 17, 3) metres.

    Returns:
      (..., 17, 3) float32 LCR-17 joints.
    """
    poses = np.asarray(poses, np.float32)
    if poses.ndim < 2 or poses.shape[-2:] not in ((13, 3), (17, 3)):
        raise ValueError(
            f"poses must have shape (..., 13 or 17, 3) in LCR order, got {poses.shape}"
        )
    if poses.shape[-2] == 17:
        return poses
    j = {name: poses[..., i, :] for i, name in enumerate(skeleton.LCR13.joints)}
    pelvis = 0.5 * (j["right_hip"] + j["left_hip"])
    thorax = 0.5 * (j["right_shoulder"] + j["left_shoulder"])
    spine = 0.5 * (pelvis + thorax)
    neck = thorax + 0.3 * (j["head"] - thorax)
    return np.concatenate([poses, np.stack([pelvis, spine, thorax, neck], axis=-2)], axis=-2)


def estimate_height(poses: np.ndarray) -> np.ndarray:
    """Body height (metres) of (..., 17, 3) LCR-17 poses from their bone lengths.

    The median over limbs, hips and shoulders of bone length divided by its fraction of
    the height in the procedural body; robust to a few odd bones (e.g. MoCap markers).
    """
    poses = np.asarray(poses, np.float32)
    estimates = [
        np.linalg.norm(
            poses[..., skeleton.LCR17.index(a), :] - poses[..., skeleton.LCR17.index(b), :],
            axis=-1,
        )
        / fraction
        for (a, b), fraction in _HEIGHT_FRACTION.items()
    ]
    return np.median(np.stack(estimates, axis=-1), axis=-1).astype(np.float32)


def _unit(v: np.ndarray) -> np.ndarray:
    return v / np.maximum(np.linalg.norm(v, axis=-1, keepdims=True), 1e-6)


def sample_appearance(rng: np.random.Generator, num: int) -> Appearance:
    """Random clothes, skin and hair for `num` people (plausible, varied colours)."""
    skin_tones = np.array(
        [[255, 224, 196], [234, 192, 160], [198, 148, 110], [160, 110, 75], [110, 72, 48]],
        np.float32,
    )
    skin = skin_tones[rng.integers(0, len(skin_tones), num)] * rng.uniform(0.9, 1.08, (num, 1))
    hair_tones = np.array([[30, 22, 18], [70, 45, 25], [140, 95, 50], [200, 170, 110]], np.float32)
    hair = hair_tones[rng.integers(0, len(hair_tones), num)]
    bald = rng.random(num) < 0.08
    hair = np.where(bald[:, None], skin * 0.95, hair)

    top, stripe, bottom, shoes = (random_colors(rng, (num,)) for _ in range(4))
    palette = np.stack([skin, top, stripe, bottom, shoes * 0.6, hair], axis=1)
    striped = rng.random(num) < 0.3
    return Appearance(
        palette=np.clip(palette, 0, 255).astype(np.float32),
        girth=rng.uniform(0.85, 1.2, num).astype(np.float32),
        stripes=np.where(striped, rng.uniform(6, 14, num), 0.0).astype(np.float32),
        short_sleeves=rng.random(num) < 0.35,
        shorts=rng.random(num) < 0.2,
    )


def body_capsules(poses_cam: np.ndarray, appearance: Appearance) -> Capsules:
    """The capsules of P bodies posed in camera coordinates.

    Args:
      poses_cam: (P, 13 | 17, 3) metres, camera axes (X right, Y down, Z forward).
      appearance: `Appearance` of the P people.

    Returns:
      `Capsules` with K = P * CAPSULES_PER_PERSON capsules, person-major.
    """
    joints = complete_lcr17(poses_cam)  # (P, 17, 3)
    num = joints.shape[0]
    if appearance.palette.shape[0] != num:
        raise ValueError(f"appearance is for {appearance.palette.shape[0]} people, poses for {num}")
    j = {name: joints[:, i] for i, name in enumerate(skeleton.LCR17.joints)}
    height = estimate_height(joints)[:, None]  # (P, 1)
    up = _unit(j["thorax"] - j["pelvis"])
    forward = _unit(np.cross(j["left_hip"] - j["right_hip"], up))
    head_up = _unit(j["head"] - j["neck"])

    extra = {}
    for side in ("right", "left"):
        shank = _unit(j[f"{side}_ankle"] - j[f"{side}_knee"])
        toe_dir = _unit(forward - np.sum(forward * shank, -1, keepdims=True) * shank)
        extra[f"{side}_toe"] = j[f"{side}_ankle"] + height * (0.1 * toe_dir + 0.025 * shank)
        hand_dir = _unit(j[f"{side}_wrist"] - j[f"{side}_elbow"])
        extra[f"{side}_hand"] = j[f"{side}_wrist"] + 0.055 * height * hand_dir
        extra[f"{side}_flank_low"] = j["pelvis"] + 0.55 * (j[f"{side}_hip"] - j["pelvis"])
        extra[f"{side}_flank_high"] = j["thorax"] + 0.55 * (j[f"{side}_shoulder"] - j["thorax"])
    extra["hair"] = j["head"] + height * (0.012 * head_up - 0.016 * forward)
    points = np.concatenate([joints, np.stack([extra[e] for e in _EXTRA], axis=1)], axis=1)

    index = {name: i for i, name in enumerate(_POINTS)}
    start = points[:, [index[c[0]] for c in _CAPSULES]]  # (P, C, 3)
    end = points[:, [index[c[1]] for c in _CAPSULES]]
    scale = height * appearance.girth[:, None]  # (P, 1)
    radius_start = scale * np.array([c[2] for c in _CAPSULES], np.float32)
    radius_end = scale * np.array([c[3] for c in _CAPSULES], np.float32)

    slot = np.broadcast_to(np.array([c[4] for c in _CAPSULES]), (num, CAPSULES_PER_PERSON)).copy()
    slot[:, list(_FOREARMS)] = np.where(appearance.short_sleeves[:, None], SKIN, TOP)
    slot[:, list(_SHANKS)] = np.where(appearance.shorts[:, None], SKIN, BOTTOM)
    base = (np.arange(num) * NUM_MATERIALS)[:, None]
    striped = np.array([c[5] for c in _CAPSULES])[None, :] & (appearance.stripes[:, None] > 0)
    length = np.linalg.norm(end - start, axis=-1)
    return Capsules(
        start=start.reshape(-1, 3).astype(np.float32),
        end=end.reshape(-1, 3).astype(np.float32),
        radius_start=radius_start.reshape(-1).astype(np.float32),
        radius_end=radius_end.reshape(-1).astype(np.float32),
        person=np.repeat(np.arange(num, dtype=np.int32), CAPSULES_PER_PERSON),
        material=(base + slot).reshape(-1).astype(np.int32),
        stripe_material=(base + np.where(striped, TOP_STRIPE, slot)).reshape(-1).astype(np.int32),
        stripes=np.where(striped, appearance.stripes[:, None] * length, 0.0)
        .reshape(-1)
        .astype(np.float32),
    )
