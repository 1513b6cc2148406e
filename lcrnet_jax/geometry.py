"""Pose boxes, IoU, cameras, torso centring and Procrustes alignment (LCR-Net++ Sec. 3).

Conventions (README "Conventions"): 2D in pixels, x right, y down, pixel (i, j) covering
[i, i+1) x [j, j+1); boxes (x1, y1, x2, y2) in pixels; 3D in metres in camera axes
(X right, Y down, Z forward). All functions are batched over leading axes and safe
under jit and vmap. Except `random_rotations` and `procrustes_align` (always jax.numpy),
they compute in numpy when no argument is a JAX array, and return numpy: the renderer
and the input pipeline's worker processes call them on the CPU without starting JAX
(eager jax.numpy costs far more per call than numpy on small arrays).
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np

from lcrnet_jax import skeleton


def _xp(*arrays):
    """jax.numpy if any argument is a JAX array (or tracer), else numpy."""
    return jnp if any(isinstance(a, jax.Array) for a in arrays) else np


def is_whole(value) -> bool:
    """Whether `value` is a whole number (of pixels, images, joints...): an int or numpy
    integer, not a bool."""
    return isinstance(value, int | np.integer) and not isinstance(value, bool)


def check_coordinates(name: str, array, size: int, axis: int = -1) -> None:
    """A one-line ValueError unless `array`'s `axis` holds `size` coordinates."""
    shape = np.shape(array)
    if len(shape) <= (axis if axis >= 0 else -axis - 1) or shape[axis] != size:
        layout = f"(..., {size})" if axis == -1 else f"{size} values on axis {axis}"
        raise ValueError(f"{name} must be {layout}, got shape {shape}")


def pose_box(joints2d, visible=None, *, margin: float = 0.1):
    """Box around the visible joints, each side pushed out by `margin` times the size.

    The paper labels RoIs by IoU with "the bounding box around all joints of the pose,
    with a fixed additional margin of 10%" (Sec. 3.1); we read it as 10% of the width
    (height) added on the left and right (top and bottom).

    Args:
      joints2d: (..., J, 2) pixels.
      visible: (..., J) bool, or None for all joints.
      margin: fraction of the joints' width/height added on each side.

    Returns:
      (..., 4) boxes x1, y1, x2, y2 in pixels; all zeros when no joint is visible.
    """
    check_coordinates("joints2d", joints2d, 2)
    xp = _xp(joints2d, visible)
    joints2d = xp.asarray(joints2d, xp.float32)
    if visible is None:
        visible = xp.ones(joints2d.shape[:-1], bool)
    vis = xp.asarray(visible, bool)[..., None]
    any_visible = xp.any(vis, axis=(-2, -1))[..., None]
    # Rows without a visible joint get 0 instead of +-inf, so no inf - inf arises.
    lo = xp.where(any_visible, xp.min(xp.where(vis, joints2d, xp.inf), axis=-2), 0.0)
    hi = xp.where(any_visible, xp.max(xp.where(vis, joints2d, -xp.inf), axis=-2), 0.0)
    pad = margin * (hi - lo)
    return xp.concatenate([lo - pad, hi + pad], axis=-1)


def box_area(boxes, *, offset: float = 0.0, coord_axis: int = -1):
    """Area of boxes: (x2 - x1 + offset) * (y2 - y1 + offset), never negative.

    `offset=1` gives the inclusive-pixel convention of the original PPI code.
    `coord_axis` is the axis holding x1, y1, x2, y2 (see `box_iou`).
    """
    check_coordinates("boxes", boxes, 4, coord_axis)
    xp = _xp(boxes)
    x1, y1, x2, y2 = xp.moveaxis(xp.asarray(boxes, xp.float32), coord_axis, 0)
    return xp.maximum(x2 - x1 + offset, 0.0) * xp.maximum(y2 - y1 + offset, 0.0)


def box_intersection(a, b, *, offset: float = 0.0, coord_axis: int = -1):
    """Element-wise area of the intersection of broadcastable boxes (see `box_iou`)."""
    check_coordinates("boxes", a, 4, coord_axis)
    check_coordinates("boxes", b, 4, coord_axis)
    xp = _xp(a, b)
    ax1, ay1, ax2, ay2 = xp.moveaxis(xp.asarray(a, xp.float32), coord_axis, 0)
    bx1, by1, bx2, by2 = xp.moveaxis(xp.asarray(b, xp.float32), coord_axis, 0)
    width = xp.maximum(xp.minimum(ax2, bx2) - xp.maximum(ax1, bx1) + offset, 0.0)
    height = xp.maximum(xp.minimum(ay2, by2) - xp.maximum(ay1, by1) + offset, 0.0)
    return width * height


def box_iou(a, b, *, offset: float = 0.0, coord_axis: int = -1):
    """Element-wise IoU of broadcastable boxes; 0 where the union is empty.

    Args:
      a, b: (..., 4) boxes x1, y1, x2, y2 in pixels (or (4, ...) with `coord_axis=0`).
      offset: 0 for continuous coordinates, 1 for the inclusive-pixel convention
        (area = (x2 - x1 + 1)(y2 - y1 + 1)).
      coord_axis: the axis of `a` and `b` holding the 4 coordinates. Coordinate-major
        (4, N) boxes (`coord_axis=0`) are several times faster on CPU for large N.

    Returns:
      IoU in [0, 1], shaped as the broadcast boxes without their coordinate axis.
    """
    xp = _xp(a, b)
    inter = box_intersection(a, b, offset=offset, coord_axis=coord_axis)
    union = (
        box_area(a, offset=offset, coord_axis=coord_axis)
        + box_area(b, offset=offset, coord_axis=coord_axis)
        - inter
    )
    return xp.where(union > 0, inter / xp.where(union > 0, union, 1.0), 0.0)


def iou_matrix(a, b, *, offset: float = 0.0):
    """IoU of every box in `a` with every box in `b`.

    Args:
      a: (..., N, 4) boxes; b: (..., M, 4) boxes (x1, y1, x2, y2 pixels).

    Returns:
      (..., N, M) IoU; 0 for empty (e.g. zero-padded) boxes.
    """
    xp = _xp(a, b)
    a = xp.asarray(a)
    b = xp.asarray(b)
    return box_iou(a[..., :, None, :], b[..., None, :, :], offset=offset)


def project(points3d, intrinsics):
    """Perspective projection of camera-coordinate points to pixels.

    Args:
      points3d: (..., N, 3) metres in camera axes (Z forward, > 0 in front).
      intrinsics: (..., 4) fx, fy, cx, cy in pixels (cx, cy: the principal point in the
        pixel-corner convention, so the image centre of a W x H image is (W/2, H/2)).

    Returns:
      (..., N, 2) pixels. Points with Z below 1 mm are projected as if at Z = 1 mm.
    """
    check_coordinates("points3d", points3d, 3)
    check_coordinates("intrinsics", intrinsics, 4)
    xp = _xp(points3d, intrinsics)
    points3d = xp.asarray(points3d, xp.float32)
    k = xp.asarray(intrinsics, xp.float32)[..., None, :]
    z = xp.maximum(points3d[..., 2], 1e-3)
    x = k[..., 0] * points3d[..., 0] / z + k[..., 2]
    y = k[..., 1] * points3d[..., 1] / z + k[..., 3]
    return xp.stack([x, y], axis=-1)


def rotation_matrix(azimuth, elevation, roll=0.0):
    """Rotations for views around a person in camera axes (Y down).

    The body turns by `azimuth` about the vertical Y axis, then the camera tilts by
    `elevation` about X and rolls by `roll` about Z (radians).

    Returns:
      (..., 3, 3) rotation matrices R, applied as `points @ R.T`.
    """
    xp = _xp(azimuth, elevation, roll)
    azimuth, elevation, roll = xp.broadcast_arrays(
        xp.asarray(azimuth, xp.float32),
        xp.asarray(elevation, xp.float32),
        xp.asarray(roll, xp.float32),
    )
    zero, one = xp.zeros_like(azimuth), xp.ones_like(azimuth)

    def mat(rows):
        return xp.stack([xp.stack(r, axis=-1) for r in rows], axis=-2)

    ca, sa = xp.cos(azimuth), xp.sin(azimuth)
    ce, se = xp.cos(elevation), xp.sin(elevation)
    cr, sr = xp.cos(roll), xp.sin(roll)
    ry = mat([[ca, zero, sa], [zero, one, zero], [-sa, zero, ca]])
    rx = mat([[one, zero, zero], [zero, ce, -se], [zero, se, ce]])
    rz = mat([[cr, -sr, zero], [sr, cr, zero], [zero, zero, one]])
    return rz @ rx @ ry


def check_view_ranges(max_elevation: float, max_roll: float = 0.0) -> None:
    """ValueError unless the `random_rotations` ranges are max_elevation in [0, pi/2] and
    max_roll in [0, pi] radians (NaN fails)."""
    if not 0.0 <= max_elevation <= np.pi / 2:
        raise ValueError(f"max_elevation must be in [0, pi/2] radians, got {max_elevation}")
    if not 0.0 <= max_roll <= np.pi:
        raise ValueError(f"max_roll must be in [0, pi] radians, got {max_roll}")


def random_rotations(key, num: int, *, max_elevation: float = 0.5, max_roll: float = 0.0):
    """Random viewpoints: azimuth uniform over the circle, elevation and roll uniform.

    Args:
      key: PRNG key.
      num: number of rotations.
      max_elevation: elevation drawn in [-max_elevation, max_elevation] radians.
      max_roll: roll drawn in [-max_roll, max_roll] radians.

    Returns:
      (num, 3, 3) rotation matrices.
    """
    ka, ke, kr = jax.random.split(key, 3)
    uniform = functools.partial(jax.random.uniform, shape=(num,), dtype=jnp.float32)  # x64 too
    azimuth = uniform(ka, minval=-jnp.pi, maxval=jnp.pi)
    elevation = uniform(ke, minval=-max_elevation, maxval=max_elevation)
    roll = uniform(kr, minval=-max_roll, maxval=max_roll)
    return rotation_matrix(azimuth, elevation, roll)


def rotate(poses3d, rotations):
    """Rotates (..., J, 3) poses by (..., 3, 3) matrices: `poses @ R.T`."""
    xp = _xp(poses3d, rotations)
    return xp.einsum("...jc,...dc->...jd", xp.asarray(poses3d, xp.float32), rotations)


def orthographic_project(poses3d, rotations):
    """Orthographic views of 3D poses: rotate, then drop Z.

    Args:
      poses3d: (..., J, 3) metres.
      rotations: (..., 3, 3), broadcast against the poses' leading axes.

    Returns:
      (..., J, 2) view-plane coordinates in metres (X right, Y down).
    """
    return rotate(poses3d, rotations)[..., :2]


def torso_center(poses3d, joint_set: str | skeleton.JointSet = "lcr13"):
    """Mean of the two hips and two shoulders (the original code's body centre).

    Args:
      poses3d: (..., J, D) poses in `joint_set` order.

    Returns:
      (..., D) torso centre.
    """
    xp = _xp(poses3d)
    poses3d = xp.asarray(poses3d)
    joint_set = skeleton.get_joint_set(joint_set)
    skeleton.check_joint_count(poses3d, joint_set)
    return xp.mean(poses3d[..., xp.asarray(joint_set.torso), :], axis=-2)


def center_on_torso(poses3d, joint_set: str | skeleton.JointSet = "lcr13"):
    """Translates (..., J, 3) poses so that their torso centre is the origin."""
    xp = _xp(poses3d)
    poses3d = xp.asarray(poses3d)
    return poses3d - torso_center(poses3d, joint_set)[..., None, :]


def procrustes_align(pred, gt, visible=None):
    """Similarity (rotation, uniform scale, translation) of `pred` best fitting `gt`.

    Least squares over the visible joints (Umeyama 1991); the rotation is proper
    (det = +1, no reflection).

    Args:
      pred: (..., J, 3) predicted poses.
      gt: (..., J, 3) target poses.
      visible: (..., J) bool, joints used for the fit; None for all.

    Returns:
      (..., J, 3) `pred` after the transform (all joints are transformed).
    """
    pred = jnp.asarray(pred, jnp.float32)
    gt = jnp.asarray(gt, jnp.float32)
    if visible is None:
        visible = jnp.ones(pred.shape[:-1], bool)
    visible = jnp.asarray(visible, bool)[..., None]  # (..., J, 1)
    w = visible.astype(jnp.float32)
    # The fit reads no hidden joint, which may hold NaN (0 * NaN is NaN).
    fit_pred, fit_gt = jnp.where(visible, pred, 0.0), jnp.where(visible, gt, 0.0)
    n = jnp.maximum(jnp.sum(w, axis=-2, keepdims=True), 1.0)
    mu_p = jnp.sum(fit_pred, axis=-2, keepdims=True) / n
    mu_g = jnp.sum(fit_gt, axis=-2, keepdims=True) / n
    p = (fit_pred - mu_p) * w
    g = (fit_gt - mu_g) * w
    cov = jnp.einsum("...ji,...jk->...ik", g, p) / n  # (..., 3, 3)
    u, s, vt = jnp.linalg.svd(cov)
    d = jnp.sign(jnp.linalg.det(u @ vt))
    sign = jnp.stack([jnp.ones_like(d), jnp.ones_like(d), d], axis=-1)
    rot = u @ (sign[..., :, None] * vt)  # (..., 3, 3)
    var_p = jnp.sum(p**2, axis=(-2, -1)) / n[..., 0, 0]
    scale = jnp.sum(s * sign, axis=-1) / jnp.maximum(var_p, 1e-12)
    return scale[..., None, None] * jnp.einsum("...ik,...jk->...ji", rot, pred - mu_p) + mu_g
