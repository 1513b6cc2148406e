"""Synthetic multi-person scenes with exact 2D/3D annotations (LCR-Net++ Sec. 4.1, Fig. 8d).

`render_scene` places any LCR-13/LCR-17 body-frame poses (procedural, MoCap, ...) in
front of a randomly drawn perspective camera, standing on a common ground plane at
depths that give them a sampled on-screen size, renders them as capsule bodies over a
random background and returns the image with its annotations. `render_people` renders
people already posed in camera coordinates (hand-made test scenes, other generators).

Visibility: a joint is visible when it projects inside the image (and lies in front of
the camera) and the front-most surface at its pixel does not belong to another person.
A joint is always inside its own body (the capsules run along the bones), so another
person's surface winning the depth test at that pixel means that person is in front
of it; self-occlusion (an arm in front of the chest) keeps joints visible, as in the
usual 2D annotations.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence

import numpy as np

from lcrnet_jax import geometry
from lcrnet_jax.data import features
from lcrnet_jax.data import poses as pose_sources
from lcrnet_jax.data.synthetic import background as backgrounds
from lcrnet_jax.data.synthetic import body, raster


@dataclasses.dataclass(frozen=True)
class RenderConfig:
    """How `render_scene` draws cameras, placements and looks (ranges are uniform).

    Attributes:
      height, width: image size in pixels.
      fov_deg: horizontal field of view range in degrees (gives fx = fy).
      principal_jitter: principal point offset from the centre, fraction of the size.
      camera_height: camera height above the ground in metres.
      pitch_deg: camera pitch in degrees, positive looking down.
      person_size: on-screen body height as a fraction of the image height; sets
        each person's depth.
      max_tilt: largest random body tilt in radians.
      max_yaw: body yaw uniform in [-max_yaw, max_yaw] radians, 0 facing the camera.
      max_overlap: largest IoU between the joint boxes of two people; a person that
        cannot be placed within `placement_tries` is left out.
      placement_tries: position draws per person.
      border: how far outside the image (fraction of the width) a torso centre may be
        placed, which truncates people at the border.
      light_elevation_deg: light direction's elevation above the horizon.
      ambient: share of light on surfaces facing away from the light.
      noise_std: pixel noise standard deviation range (0-255 scale).
      background_dir: optional folder of background images.
      background_image_probability: share of user-image backgrounds with a folder.
    """

    height: int = 256
    width: int = 256
    fov_deg: tuple[float, float] = (45.0, 70.0)
    principal_jitter: float = 0.02
    camera_height: tuple[float, float] = (0.9, 1.8)
    pitch_deg: tuple[float, float] = (-5.0, 15.0)
    person_size: tuple[float, float] = (0.3, 0.85)
    max_tilt: float = 0.1
    max_yaw: float = math.pi
    max_overlap: float = 0.3
    placement_tries: int = 8
    border: float = 0.05
    light_elevation_deg: tuple[float, float] = (10.0, 70.0)
    ambient: tuple[float, float] = (0.35, 0.6)
    noise_std: tuple[float, float] = (0.0, 5.0)
    background_dir: str | None = None
    background_image_probability: float = 0.5


@dataclasses.dataclass(frozen=True)
class SceneAnnotations:
    """Exact annotations of a rendered scene with P people and J joints.

    Attributes:
      joint_set: "lcr13" or "lcr17", the joint set of the input poses.
      joints2d: (P, J, 2) float32 pixels (x right, y down, pixel-corner origin), the
        projection of `joints3d` by `geometry.project`.
      joints3d: (P, J, 3) float32 metres, camera coordinates (absolute).
      joints3d_centered: (P, J, 3) float32 metres, camera axes, torso-centred.
      visible: (P, J) bool, `in_image` and not occluded by another person.
      in_image: (P, J) bool, projects inside [0, W] x [0, H] (`features.inside_image`) and Z > 0.
      boxes: (P, 4) float32 x1, y1, x2, y2 pixels: the body's projected extent (all
        capsules, occluded parts included) clipped to the image.
      intrinsics: (4,) float32 fx, fy, cx, cy in pixels.
      segmentation: (H, W) int16 index of the person seen at each pixel, -1 elsewhere.
      depth: (H, W) float32 Z in metres of the front-most body surface, inf elsewhere.
      source_index: (P,) int32 index of each person's pose in the input list (people
        that could not be placed are left out).
    """

    joint_set: str
    joints2d: np.ndarray
    joints3d: np.ndarray
    joints3d_centered: np.ndarray
    visible: np.ndarray
    in_image: np.ndarray
    boxes: np.ndarray
    intrinsics: np.ndarray
    segmentation: np.ndarray
    depth: np.ndarray
    source_index: np.ndarray


def _as_poses(poses3d) -> np.ndarray:
    """(P, J, 3) float32 from a list of (J, 3) poses, J in {13, 17}."""
    arrays = [np.asarray(p, np.float32) for p in poses3d]
    if not arrays:
        return np.zeros((0, 17, 3), np.float32)
    shapes = {a.shape for a in arrays}
    if len(shapes) != 1 or shapes.pop() not in ((13, 3), (17, 3)):
        raise ValueError(
            f"poses3d must all be (13, 3) or all (17, 3) LCR poses, got {[a.shape for a in arrays]}"
        )
    stacked = np.stack(arrays)
    if not np.isfinite(stacked).all():
        raise ValueError("poses3d contain NaN or infinite coordinates")
    return stacked


def render_people(
    poses_cam: np.ndarray,
    intrinsics: np.ndarray,
    *,
    height: int,
    width: int,
    appearance: body.Appearance | None = None,
    background: np.ndarray | None = None,
    rng: np.random.Generator | None = None,
    light: Sequence[float] = (0.3, -0.6, -0.75),
    ambient: float = 0.45,
    noise_std: float = 0.0,
) -> tuple[np.ndarray, SceneAnnotations]:
    """Renders P people posed in camera coordinates.

    Args:
      poses_cam: (P, J, 3) metres, camera axes, J = 13 or 17 (LCR order), Z > 0.
      intrinsics: (4,) fx, fy, cx, cy in pixels.
      height, width: image size in pixels.
      appearance: clothes of the P people; None draws them with `rng`.
      background: (H, W, 3) uint8; None for plain grey.
      rng: generator for the appearance and the noise (default: seed 0).
      light: direction towards the light, camera axes.
      ambient: light factor of surfaces facing away from the light.
      noise_std: standard deviation of the uniform grey pixel noise (0-255 scale).

    Returns:
      image (H, W, 3) uint8 RGB and its `SceneAnnotations` (source_index = arange(P)).
    """
    poses_cam = np.asarray(poses_cam, np.float32)
    if poses_cam.ndim != 3 or poses_cam.shape[1:] not in ((13, 3), (17, 3)):
        raise ValueError(f"poses_cam must have shape (P, 13 or 17, 3), got {poses_cam.shape}")
    intrinsics = np.asarray(intrinsics, np.float32)
    if intrinsics.shape != (4,):
        raise ValueError(f"intrinsics must be (4,) fx, fy, cx, cy, got {intrinsics.shape}")
    rng = np.random.default_rng(0) if rng is None else rng
    num = poses_cam.shape[0]
    if appearance is None:
        appearance = body.sample_appearance(rng, num)
    if background is None:
        background = np.full((height, width, 3), 128, np.uint8)
    if background.shape != (height, width, 3):
        raise ValueError(f"background must be ({height}, {width}, 3), got {background.shape}")

    capsules = body.body_capsules(poses_cam, appearance)
    buffers = raster.rasterize(
        capsules, intrinsics, height=height, width=width, light=np.asarray(light), ambient=ambient
    )
    noise = None
    if noise_std > 0:
        # Uniform grey noise with standard deviation noise_std (cheaper than Gaussian).
        noise = rng.random((height, width, 1), np.float32) - 0.5
        noise *= noise_std * np.sqrt(12.0)
    image = raster.compose(buffers, appearance.palette.reshape(-1, 3), background, noise)

    joints2d = np.asarray(geometry.project(poses_cam, intrinsics), np.float32)
    in_image = features.inside_image(joints2d, height, width) & (poses_cam[..., 2] > 0)
    px = np.clip(np.floor(joints2d[..., 0]), 0, width - 1).astype(int)
    py = np.clip(np.floor(joints2d[..., 1]), 0, height - 1).astype(int)
    seen = buffers.person[py, px]  # (P, J)
    occluded = (seen >= 0) & (seen != np.arange(num)[:, None])
    extents = buffers.extents.reshape(num, body.CAPSULES_PER_PERSON, 4)
    boxes = np.concatenate([extents[..., :2].min(1), extents[..., 2:].max(1)], -1)
    boxes = np.clip(boxes, 0, [width, height, width, height]).astype(np.float32)
    centred = geometry.center_on_torso(poses_cam, f"lcr{poses_cam.shape[1]}")
    return image, SceneAnnotations(
        joint_set=f"lcr{poses_cam.shape[1]}",
        joints2d=joints2d,
        joints3d=poses_cam,
        joints3d_centered=centred.astype(np.float32),
        visible=in_image & ~occluded,
        in_image=in_image,
        boxes=boxes,
        intrinsics=intrinsics,
        segmentation=buffers.person,
        depth=buffers.depth,
        source_index=np.arange(num, dtype=np.int32),
    )


def sample_intrinsics(rng: np.random.Generator, config: RenderConfig) -> np.ndarray:
    """(4,) float32 fx, fy, cx, cy for `config`'s image size and field of view."""
    fov = np.deg2rad(rng.uniform(*config.fov_deg))
    focal = 0.5 * config.width / np.tan(0.5 * fov)
    jitter = rng.uniform(-1, 1, 2) * config.principal_jitter
    cx = 0.5 * config.width * (1 + 2 * jitter[0])
    cy = 0.5 * config.height * (1 + 2 * jitter[1])
    return np.array([focal, focal, cx, cy], np.float32)


def _place(rng, poses_body, intrinsics, config):
    """Camera-coordinate poses of the people that fit, and their input indices."""
    num = len(poses_body)
    full = body.complete_lcr17(poses_body)
    heights = body.estimate_height(full)
    rotations = pose_sources.random_orientations(
        rng, num, max_tilt=config.max_tilt, max_yaw=config.max_yaw
    )
    turned_full = np.asarray(geometry.rotate(full, rotations), np.float32)
    turned = turned_full[:, : poses_body.shape[1]]  # LCR-13 is LCR-17's first 13 joints
    camera_height = rng.uniform(*config.camera_height)
    pitch = np.asarray(
        geometry.rotation_matrix(0.0, np.deg2rad(rng.uniform(*config.pitch_deg))), np.float32
    )
    fx, _, cx, _ = intrinsics.tolist()
    placed, boxes, kept = [], [], []
    for i in range(num):
        # Soles on the ground plane Y = camera_height (before the pitch); the ankles
        # are 4% of the height above the soles.
        ground = turned_full[i, :, 1].max() + 0.04 * heights[i]
        center = geometry.torso_center(turned[i], f"lcr{turned.shape[1]}")
        for _ in range(config.placement_tries):
            size = rng.uniform(*config.person_size) * config.height
            z = fx * heights[i] / size
            u = rng.uniform(-config.border, 1 + config.border) * config.width
            offset = np.array(
                [(u - cx) * z / fx - center[0], camera_height - ground, z - center[2]]
            )
            pose = (turned[i] + offset) @ pitch.T
            if pose[:, 2].min() < 0.3:
                continue
            box = np.asarray(geometry.pose_box(geometry.project(pose, intrinsics), margin=0.0))
            if boxes and float(np.max(geometry.iou_matrix(box[None], np.stack(boxes)))) > (
                config.max_overlap
            ):
                continue
            placed.append(pose)
            boxes.append(box)
            kept.append(i)
            break
    return np.asarray(placed, np.float32).reshape(-1, *poses_body.shape[1:]), kept


def render_scene(
    poses3d: Sequence[np.ndarray] | np.ndarray,
    rng: np.random.Generator,
    config: RenderConfig = RenderConfig(),
) -> tuple[np.ndarray, SceneAnnotations]:
    """Renders a random scene with the given people.

    Draws intrinsics (`sample_intrinsics`), a camera height and pitch, then for each
    pose a random orientation (`poses.random_orientations`), an on-screen size (hence
    a depth) and a horizontal position, standing on the ground plane; a person whose
    joint box overlaps a placed one by more than `config.max_overlap` IoU is moved,
    and left out after `config.placement_tries` draws. Then appearances, a background,
    a light and the pixel noise are drawn and `render_people` renders the scene.

    Args:
      poses3d: P poses, each (J, 3) in metres with J = 13 (LCR-13) or 17 (LCR-17),
        in the body frame (Y down, facing -Z when upright; any origin), e.g.
        `poses.sample_poses(...).poses` or MoCap poses converted to LCR joints.
      rng: numpy random generator, the only source of randomness.
      config: `RenderConfig`.

    Returns:
      image (H, W, 3) uint8 RGB and its `SceneAnnotations`.
    """
    poses_body = _as_poses(poses3d)
    intrinsics = sample_intrinsics(rng, config)
    posed, kept = _place(rng, poses_body, intrinsics, config)
    elevation = np.deg2rad(rng.uniform(*config.light_elevation_deg))
    azimuth = rng.uniform(-np.pi / 2, np.pi / 2)
    light = (
        np.cos(elevation) * np.sin(azimuth),
        -np.sin(elevation),
        -np.cos(elevation) * np.cos(azimuth),
    )
    bg = backgrounds.sample_background(
        rng,
        config.height,
        config.width,
        image_dir=config.background_dir,
        image_probability=config.background_image_probability,
    )
    image, annotations = render_people(
        posed,
        intrinsics,
        height=config.height,
        width=config.width,
        background=bg,
        rng=rng,
        light=light,
        ambient=rng.uniform(*config.ambient),
        noise_std=rng.uniform(*config.noise_std),
    )
    return image, dataclasses.replace(annotations, source_index=np.asarray(kept, np.int32))
