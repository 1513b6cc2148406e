"""Absolute 3D: each person's camera-space translation from its 2D and 3D poses.

Beyond the paper: LCR-Net++ gives torso-centred 3D poses (Sec. 3). A person's camera-space
pose is its torso-centred pose plus a translation T, the position of its torso centre.
With intrinsics fx, fy, cx, cy (pixels) and joint j's 3D (X_j, Y_j, Z_j) (metres,
torso-centred) and 2D (u_j, v_j) (pixels), the joint X_j + T projects onto (u_j, v_j) when

  x_j (Z_j + T_z) = X_j + T_x,   y_j (Z_j + T_z) = Y_j + T_y,
  x_j = (u_j - cx) / fx,         y_j = (v_j - cy) / fy,

two equations linear in T per joint. `fit_translation` minimises their weighted squared
residuals over the joints; the minimum has a closed form (below), exact on noise-free
projections. The 2D and 3D poses of a prediction come from the same network output, so
the translation also fixes the person's scale ambiguity as the network resolved it.

Intrinsics, when no calibration is given: a pinhole camera with the principal point at
the image centre and square pixels whose field of view across the image's longer side
is `DEFAULT_FOV_DEGREES`, or the focal length of an EXIF 35 mm equivalent
(`intrinsics_from_focal_35mm`: the image's diagonal as a 36 x 24 mm frame's).
"""

from __future__ import annotations

import math

import numpy as np

from lcrnet_jax.geometry import _xp, check_coordinates

DEFAULT_FOV_DEGREES = 55.0
"""Field of view across the longer image side when nothing better is known (MeTRAbs's
default; a 35 mm equivalent focal length of about 35 mm)."""

MIN_SPREAD = 1e-8
"""Smallest weighted variance of the joints' normalised image coordinates (radians^2,
i.e. an RMS angular spread of 1e-4 rad) for which a translation is solved."""


def _check_image_size(height, width) -> None:
    if not (height >= 1 and width >= 1):  # NaN too
        raise ValueError(f"image size must be >= 1 pixel, got {height} x {width} (height x width)")


def intrinsics_from_focal_35mm(height: int, width: int, focal_35mm: float) -> np.ndarray:
    """Pinhole intrinsics of an image from its 35 mm equivalent focal length (EXIF).

    The equivalence is over the diagonal, as camera makers' crop factors are: the image's
    diagonal stands for the 43.3 mm diagonal of a 36 x 24 mm frame (for a 3:2 image, the
    same as its long side for 36 mm). Returns (4,) float32 fx, fy, cx, cy in pixels, as
    `intrinsics_from_fov`.
    """
    _check_image_size(height, width)
    if not focal_35mm > 0:
        raise ValueError(f"35 mm equivalent focal length must be > 0 mm, got {focal_35mm}")
    focal = focal_35mm * math.hypot(height, width) / math.hypot(36.0, 24.0)
    return np.array([focal, focal, width / 2.0, height / 2.0], np.float32)


def intrinsics_from_fov(height: int, width: int, fov_degrees: float) -> np.ndarray:
    """Pinhole intrinsics of an image from its field of view across the longer side.

    Args:
      height, width: image size in pixels.
      fov_degrees: field of view across max(height, width), in (0, 180) degrees.

    Returns:
      (4,) float32 fx, fy, cx, cy in pixels (square pixels, centred principal point in
      the pixel-corner convention: (width / 2, height / 2)).
    """
    _check_image_size(height, width)
    if not 0.0 < fov_degrees < 180.0:
        raise ValueError(f"field of view must be in (0, 180) degrees, got {fov_degrees}")
    focal = 0.5 * max(height, width) / math.tan(math.radians(fov_degrees) / 2.0)
    return np.array([focal, focal, width / 2.0, height / 2.0], np.float32)


def fit_translation(poses3d, poses2d, intrinsics, weights=None, *, min_joints: int = 2):
    """Camera-space translation of torso-centred poses that best explains their 2D poses.

    Weighted least squares of the module docstring's equations. With w the normalised
    weights, E the weighted mean over joints, ~ the deviation from it, and
    b_x = x Z - X, b_y = y Z - Y:
      T_z = -E[~x ~b_x + ~y ~b_y] / E[~x^2 + ~y^2],
      T_x = E[x] T_z + E[b_x],   T_y = E[y] T_z + E[b_y].
    Vectorised over the leading axes, static shapes, safe under jit (numpy in, numpy out;
    JAX in, JAX out).

    Degenerate cases give a NaN translation and `valid` False: fewer than `min_joints`
    usable joints (weight > 0 and finite 2D and 3D; other joints are ignored), a weighted
    spread of the normalised 2D joints below `MIN_SPREAD` (the joints project to one
    point), non-finite intrinsics or focal lengths <= 0, or T_z <= 0 (the torso behind
    the camera).

    Args:
      poses3d: (..., J, 3) metres, camera axes, torso-centred (any origin works: T is
        then the position of that origin).
      poses2d: (..., J, 2) pixels.
      intrinsics: (..., 4) fx, fy, cx, cy in pixels, broadcast against the leading axes
        (e.g. (B, 1, 4) for (B, P, J, 3) poses).
      weights: (..., J) non-negative joint weights (e.g. confidences or visibility); None
        for all joints equally.
      min_joints: fewest usable joints (>= 2: one joint leaves T_z free).

    Returns:
      (translation (..., 3) metres, NaN where not valid; valid (...,) bool).
    """
    if min_joints < 2:
        raise ValueError(f"min_joints must be >= 2 (one joint leaves depth free), got {min_joints}")
    check_coordinates("poses3d", poses3d, 3)
    check_coordinates("poses2d", poses2d, 2)
    check_coordinates("intrinsics", intrinsics, 4)
    xp = _xp(poses3d, poses2d, intrinsics, weights)
    poses3d = xp.asarray(poses3d, xp.float32)
    poses2d = xp.asarray(poses2d, xp.float32)
    k = xp.asarray(intrinsics, xp.float32)[..., None, :]  # (..., 1, 4)
    if weights is None:
        weights = xp.ones(poses3d.shape[:-1], xp.float32)
    finite = xp.isfinite(poses3d).all(-1) & xp.isfinite(poses2d).all(-1)  # (..., J)
    weights = xp.asarray(weights, xp.float32)
    w = xp.where(finite & (weights > 0), weights, 0.0)  # NaN weights too: ignored
    count = xp.sum(w > 0, axis=-1)  # (...)
    w = w / xp.maximum(xp.sum(w, axis=-1, keepdims=True), 1e-30)
    p3 = xp.where(finite[..., None], poses3d, 0.0)
    p2 = xp.where(finite[..., None], poses2d, 0.0)
    k_ok = xp.isfinite(k).all(-1) & (k[..., 0] > 0) & (k[..., 1] > 0)  # (..., 1)
    focal = xp.where(k_ok[..., None], k[..., :2], 1.0)
    x = (p2 - xp.where(k_ok[..., None], k[..., 2:], 0.0)) / focal  # (..., J, 2)
    b = x * p3[..., 2:] - p3[..., :2]  # (..., J, 2)

    def mean(v):  # weighted mean over joints of (..., J, 2) -> (..., 1, 2)
        return xp.sum(w[..., None] * v, axis=-2, keepdims=True)

    x_mean, b_mean = mean(x), mean(b)
    dx, db = x - x_mean, b - b_mean
    spread = xp.sum(mean(dx * dx), axis=(-2, -1))  # (...)
    ok_spread = spread > MIN_SPREAD
    tz = -xp.sum(mean(dx * db), axis=(-2, -1)) / xp.where(ok_spread, spread, 1.0)
    txy = x_mean[..., 0, :] * tz[..., None] + b_mean[..., 0, :]  # (..., 2)
    translation = xp.concatenate([txy, tz[..., None]], axis=-1)
    valid = (count >= min_joints) & ok_spread & k_ok[..., 0] & (tz > 0)
    valid = valid & xp.isfinite(translation).all(-1)
    return xp.where(valid[..., None], translation, xp.nan), valid
