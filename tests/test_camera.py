import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from lcrnet_jax import geometry
from lcrnet_jax.postprocess import camera


def _scene(seed, images=3, people=4, joints=13):
    """Torso-centred poses, translations, random intrinsics and exact projections."""
    rng = np.random.default_rng(seed)
    poses3d = rng.normal(scale=0.3, size=(images, people, joints, 3)).astype(np.float32)
    poses3d -= poses3d.mean(axis=-2, keepdims=True)
    translation = np.stack(
        [
            rng.uniform(-2, 2, (images, people)),
            rng.uniform(-1, 1, (images, people)),
            rng.uniform(2, 10, (images, people)),
        ],
        axis=-1,
    ).astype(np.float32)
    focal = rng.uniform(300, 2000, (images, 2))
    center = rng.uniform(200, 600, (images, 2))
    intrinsics = np.concatenate([focal, center], -1).astype(np.float32)  # (B, 4)
    poses2d = geometry.project(poses3d + translation[..., None, :], intrinsics[:, None])
    return poses3d, poses2d, intrinsics[:, None], translation


def test_exact_recovery_on_noise_free_projections():
    poses3d, poses2d, intrinsics, translation = _scene(0)
    found, valid = camera.fit_translation(poses3d, poses2d, intrinsics)
    assert isinstance(found, np.ndarray) and found.shape == (3, 4, 3)
    assert valid.all()
    np.testing.assert_allclose(found, translation, rtol=1e-4, atol=1e-4)
    # The same under jit with JAX arrays.
    jit_found, jit_valid = jax.jit(camera.fit_translation)(
        jnp.asarray(poses3d), jnp.asarray(poses2d), jnp.asarray(intrinsics)
    )
    assert jit_valid.all()
    np.testing.assert_allclose(jit_found, translation, rtol=1e-4, atol=1e-4)


def test_noisy_weighted_fit_is_the_least_squares_solution_of_both_equations():
    """With 2D noise and uneven weights, the translation is the weighted least-squares
    solution of the module's two equations per joint, solved here by `np.linalg.lstsq`:
    rows [-1, 0, x_j] T = X_j - x_j Z_j and [0, -1, y_j] T = Y_j - y_j Z_j, each scaled by
    sqrt(w_j)."""
    poses3d, poses2d, intrinsics, translation = _scene(3)
    rng = np.random.default_rng(4)
    poses2d = np.asarray(poses2d, np.float64) + rng.normal(scale=3.0, size=poses2d.shape)
    weights = rng.uniform(0.1, 3.0, poses3d.shape[:-1])
    found, valid = camera.fit_translation(
        poses3d, poses2d.astype(np.float32), intrinsics, weights.astype(np.float32)
    )
    assert valid.all()
    expected = np.zeros_like(found, np.float64)
    for b, p in np.ndindex(*poses3d.shape[:2]):
        fx, fy, cx, cy = np.asarray(intrinsics[b, 0], np.float64)
        x = (poses2d[b, p, :, 0] - cx) / fx
        y = (poses2d[b, p, :, 1] - cy) / fy
        big_x, big_y, big_z = np.asarray(poses3d[b, p], np.float64).T
        ones, zeros = np.ones_like(x), np.zeros_like(x)
        rows = np.concatenate(
            [np.stack([-ones, zeros, x], -1), np.stack([zeros, -ones, y], -1)]
        )  # (2J, 3)
        rhs = np.concatenate([big_x - x * big_z, big_y - y * big_z])
        root_w = np.sqrt(np.concatenate([weights[b, p], weights[b, p]]))
        expected[b, p] = np.linalg.lstsq(rows * root_w[:, None], rhs * root_w, rcond=None)[0]
    np.testing.assert_allclose(found, expected, rtol=2e-4, atol=2e-4)
    assert np.abs(expected - translation).max() > 0.05  # the noise matters


def test_zero_weight_and_non_finite_joints_are_ignored():
    poses3d, poses2d, intrinsics, translation = _scene(1)
    weights = np.ones(poses3d.shape[:-1], np.float32)
    weights[..., :3] = 0.0
    weights[..., 3] = np.nan  # a NaN weight counts as none
    poses2d = np.array(poses2d)
    poses2d[..., :4, :] += 500.0  # wrong 2D on the unweighted joints
    poses3d = poses3d.copy()
    poses3d[..., 5, :] = np.nan  # a weighted joint without 3D
    found, valid = camera.fit_translation(poses3d, poses2d, intrinsics, weights)
    assert valid.all()
    np.testing.assert_allclose(found, translation, rtol=1e-4, atol=1e-4)


def test_degenerate_inputs_give_nan_and_invalid():
    poses3d, poses2d, intrinsics, _ = _scene(2, images=1, people=5)
    poses2d = np.array(poses2d)
    weights = np.ones(poses3d.shape[:-1], np.float32)
    weights[0, 0, 1:] = 0.0  # person 0: one joint
    poses2d[0, 1] = poses2d[0, 1, :1]  # person 1: every joint at one pixel
    poses3d = poses3d.copy()
    poses3d[0, 2] = 0.0  # person 2: padding (all zeros)
    poses2d[0, 2] = 0.0
    # Person 3: the torso 5 m behind the camera.
    behind = poses3d[0, 3] + np.array([0.1, 0.2, -5.0], np.float32)
    fx, fy, cx, cy = intrinsics[0, 0]
    poses2d[0, 3] = np.stack(
        [fx * behind[:, 0] / behind[:, 2] + cx, fy * behind[:, 1] / behind[:, 2] + cy], -1
    )
    found, valid = camera.fit_translation(poses3d, poses2d, intrinsics, weights)
    assert valid.tolist() == [[False, False, False, False, True]]
    assert np.isnan(found[0, :4]).all() and np.isfinite(found[0, 4]).all()
    # No intrinsics (zeros) -> invalid.
    _, valid = camera.fit_translation(poses3d, poses2d, np.zeros(4, np.float32))
    assert not valid.any()
    with pytest.raises(ValueError, match="min_joints"):
        camera.fit_translation(poses3d, poses2d, intrinsics, min_joints=1)


def test_exactly_min_joints_usable_joints_are_enough():
    """A person with `min_joints` usable joints is placed; one fewer (a joint of weight 0,
    or weighted but without 3D) is not."""
    poses3d, poses2d, intrinsics, translation = _scene(5, images=1, people=1)
    for min_joints in (2, 3, 5):
        weights = np.zeros(poses3d.shape[:-1], np.float32)
        weights[..., :min_joints] = 1.0
        found, valid = camera.fit_translation(
            poses3d, poses2d, intrinsics, weights, min_joints=min_joints
        )
        assert valid.all(), min_joints
        np.testing.assert_allclose(found, translation, rtol=1e-3, atol=1e-3)
        weights[..., min_joints - 1] = 0.0
        _, valid = camera.fit_translation(
            poses3d, poses2d, intrinsics, weights, min_joints=min_joints
        )
        assert not valid.any(), min_joints
        # A weighted joint without 3D (or 2D) is not usable: it does not count either.
        unusable = poses3d.copy()
        unusable[..., min_joints - 1, :] = np.nan
        weights[..., min_joints - 1] = 1.0
        _, valid = camera.fit_translation(
            unusable, poses2d, intrinsics, weights, min_joints=min_joints
        )
        assert not valid.any(), min_joints


def test_a_focal_length_of_zero_or_below_on_either_axis_is_invalid():
    """fx and fy must both be > 0: a negative fy mirrors y, a wrong translation."""
    poses3d, poses2d, intrinsics, _ = _scene(6, images=1, people=2)
    for axis in (0, 1):
        for focal in (0.0, -np.asarray(intrinsics)[0, 0, axis]):
            bad = np.array(intrinsics)
            bad[..., axis] = focal
            found, valid = camera.fit_translation(poses3d, poses2d, bad)
            assert not valid.any() and np.isnan(found).all(), (axis, focal)


def test_a_person_whose_joints_spread_below_min_spread_is_invalid():
    """Joints projecting within a hundredth of a pixel (a person 10 km away) leave the
    depth to rounding: the spread is below `MIN_SPREAD`, the translation not solved."""
    poses3d, _, intrinsics, _ = _scene(7, images=1, people=1)
    far = np.array([0.5, -0.2, 1e4], np.float32)
    poses2d = geometry.project(poses3d + far, intrinsics)
    x = (np.asarray(poses2d, np.float64) - intrinsics[..., 2:]) / intrinsics[..., :2]
    spread = np.sum(np.var(x, axis=-2))
    assert 0 < spread < camera.MIN_SPREAD
    found, valid = camera.fit_translation(poses3d, poses2d, intrinsics)
    assert not valid.any() and np.isnan(found).all()
    near = geometry.project(poses3d + np.array([0.5, -0.2, 5.0], np.float32), intrinsics)
    assert camera.fit_translation(poses3d, near, intrinsics)[1].all()


@pytest.mark.parametrize("argument", ["poses3d", "poses2d", "intrinsics"])
def test_coordinates_of_the_wrong_size_are_named(argument):
    """Intrinsics without cy gave a wrong translation marked valid."""
    poses3d, poses2d, intrinsics, _ = _scene(4, images=1, people=1)
    inputs = {"poses3d": poses3d, "poses2d": poses2d, "intrinsics": intrinsics}
    bad = inputs[argument][..., :-1]
    message = f"{argument} must be (..., {inputs[argument].shape[-1]}), got shape {bad.shape}"
    with pytest.raises(ValueError, match=f"^{re.escape(message)}$"):
        camera.fit_translation(**(inputs | {argument: bad}))


def test_intrinsics_from_fov_and_35mm_focal():
    np.testing.assert_allclose(camera.intrinsics_from_fov(480, 640, 90.0), [320, 320, 320, 240])
    # The 35 mm equivalent is over the diagonal: a 3:2 image's long side stands for 36 mm,
    # a 4:3 image's diagonal (5,000 px here) for the 43.3 mm of a 36 x 24 mm frame.
    np.testing.assert_allclose(
        camera.intrinsics_from_focal_35mm(2000, 3000, 26.0),
        [26.0 / 36.0 * 3000] * 2 + [1500, 1000],
        rtol=1e-5,
    )
    k = camera.intrinsics_from_focal_35mm(3000, 4000, 26.0)
    np.testing.assert_allclose(k[0], 26.0 / np.hypot(36.0, 24.0) * 5000, rtol=1e-5)
    with pytest.raises(ValueError, match="field of view"):
        camera.intrinsics_from_fov(10, 10, 180.0)
    with pytest.raises(ValueError, match="focal length"):
        camera.intrinsics_from_focal_35mm(10, 10, 0.0)
    for intrinsics in (camera.intrinsics_from_fov, camera.intrinsics_from_focal_35mm):
        with pytest.raises(ValueError, match=r"^image size must be >= 1 pixel, got -10 x 10"):
            intrinsics(-10, 10, 50.0)  # gave a negative cy
        for height, width in ((0, 10), (10, 0)):  # an image without pixels
            with pytest.raises(ValueError, match=r"^image size must be >= 1 pixel"):
                intrinsics(height, width, 50.0)
