import numpy as np
import pytest

from lcrnet_jax import geometry
from lcrnet_jax.metrics import pose3d


def test_mpjpe_hand_case_with_visibility():
    gt = np.zeros((2, 3, 2, 3))
    pred = gt.copy()
    pred[..., 0, :] = [3.0, 4.0, 0.0]  # joint 0 off by a 3-4-5 triangle
    np.testing.assert_allclose(pose3d.mpjpe(pred, gt), np.full((2, 3), 2.5))
    visible = np.zeros((2, 3, 2), bool)
    visible[..., 0] = True
    np.testing.assert_allclose(pose3d.mpjpe(pred, gt, visible), np.full((2, 3), 5.0))
    visible[0, 0] = False
    assert np.isnan(pose3d.mpjpe(pred, gt, visible)[0, 0])


@pytest.fixture(scope="module")
def poses17():
    rng = np.random.default_rng(0)
    return rng.normal(scale=0.3, size=(4, 17, 3))


def test_pa_mpjpe_is_invariant_to_similarity_transforms(poses17):
    gt = poses17
    rng = np.random.default_rng(1)
    rot = np.asarray(geometry.rotation_matrix([0.3, 1.0, -2.0, 2.5], [0.2, -0.4, 0.1, 0.0], 0.3))
    shift = rng.normal(size=(4, 1, 3))
    moved = 1.7 * np.einsum("njc,ndc->njd", gt, rot) + shift
    np.testing.assert_allclose(pose3d.pa_mpjpe(moved, gt), 0.0, atol=1e-5)
    assert np.all(pose3d.mpjpe(moved, gt) > 0.1)
    np.testing.assert_allclose(pose3d.pa_mpjpe(gt, gt), 0.0, atol=1e-6)
    # A noisy prediction keeps its aligned error under any similarity of itself.
    noisy = gt + rng.normal(scale=0.05, size=gt.shape)
    moved_noisy = 0.6 * np.einsum("njc,ndc->njd", noisy, rot) - shift
    err = pose3d.pa_mpjpe(noisy, gt)
    assert np.all(err > 0.01)
    np.testing.assert_allclose(pose3d.pa_mpjpe(moved_noisy, gt), err, rtol=1e-4)
    # No reflection: a mirrored pose cannot be aligned perfectly.
    mirrored = gt * np.array([-1.0, 1.0, 1.0])
    assert np.all(pose3d.pa_mpjpe(mirrored, gt) > 0.01)


def test_pa_mpjpe_fits_and_scores_only_visible_joints(poses17):
    gt = poses17
    visible = np.ones(gt.shape[:2], bool)
    visible[:, :3] = False
    pred = 2.0 * gt + 1.0
    pred[:, :3] += 5.0  # wrong, but invisible
    np.testing.assert_allclose(pose3d.pa_mpjpe(pred, gt, visible), 0.0, atol=1e-5)
    assert np.all(pose3d.pa_mpjpe(pred, gt) > 0.1)
    # A hidden joint may hold NaN (e.g. an unannotated one): the fit never reads it.
    pred[:, 0], gt = np.nan, gt.copy()
    gt[:, 1] = np.nan
    np.testing.assert_allclose(pose3d.pa_mpjpe(pred, gt, visible), 0.0, atol=1e-5)


def test_errors_reject_bad_shapes():
    with pytest.raises(ValueError, match="gt has shape"):
        pose3d.mpjpe(np.zeros((2, 13, 3)), np.zeros((2, 17, 3)))
    with pytest.raises(ValueError, match=r"\(\.\.\., J, 3\)"):
        pose3d.mpjpe(np.zeros((2, 13, 2)), np.zeros((2, 13, 2)))
    with pytest.raises(ValueError, match="visible has shape"):
        pose3d.mpjpe(np.zeros((2, 13, 3)), np.zeros((2, 13, 3)), np.ones((2, 12), bool))


def test_pck3d_and_auc_hand_cases(poses17):
    gt = poses17
    assert pose3d.pck3d(gt, gt) == 1.0
    assert pose3d.pck3d_auc(gt, gt) == pytest.approx(30 / 31)  # nothing is < 0 mm
    gt = gt.copy()
    gt[:, 1] = 0.0
    pred = gt.copy()
    pred[:, 0, 0] += 0.1
    pred[:, 1, 0] = 0.15  # on the threshold: wrong, as in the official code
    pred[:, 2, 0] += 0.2
    assert pose3d.pck3d(pred, gt) == pytest.approx(15 / 17)
    visible = np.zeros(gt.shape[:2], bool)
    visible[:, :3] = True
    assert pose3d.pck3d(pred, gt, visible) == pytest.approx(1 / 3)
    # Every joint off by 52.5 mm: correct from the 55 mm threshold on (20 of 31).
    off = gt + np.array([0.0525, 0.0, 0.0])
    assert pose3d.pck3d_auc(off, gt) == pytest.approx(20 / 31)
    assert pose3d.pck3d_auc(off, gt, thresholds=[0.05, 0.06]) == pytest.approx(0.5)


def test_absolute_errors_root_and_pck_hand_cases():
    rng = np.random.default_rng(0)
    gt = geometry.center_on_torso(rng.normal(scale=0.3, size=(3, 13, 3)))
    gt = gt + np.array([[0.0, 0.0, 3.0], [1.0, 0.5, 6.0], [-1.0, 0.0, 9.0]])[:, None]
    pred = gt.copy()
    pred[1] += [0.0, 0.0, 0.4]  # 40 cm too far: every joint wrong
    pred[2] = np.nan  # no translation found
    root, pck = pose3d.absolute_errors(pred, gt)
    np.testing.assert_allclose(root[:2], [0.0, 0.4], atol=1e-9)
    assert np.isnan(root[2])
    assert pck == pytest.approx(1 / 3)
    visible = np.zeros((3, 13), bool)
    visible[0, :2] = visible[1, :2] = True
    assert pose3d.absolute_errors(pred, gt, visible)[1] == pytest.approx(0.5)
    assert pose3d.absolute_errors(pred, gt, threshold=0.5)[1] == pytest.approx(2 / 3)


def test_absolute_3dpck_is_at_15_cm_by_default():
    """MuPoTS-3D's absolute 3DPCK counts a joint within 15 cm: 14 cm off is right, 16 cm
    off is wrong."""
    gt = np.zeros((2, 13, 3)) + [0.0, 0.0, 4.0]
    pred = gt + np.array([[0.0, 0.0, 0.14], [0.0, 0.0, 0.16]])[:, None]
    root, pck = pose3d.absolute_errors(pred, gt)
    np.testing.assert_allclose(root, [0.14, 0.16], atol=1e-9)
    assert pck == pytest.approx(0.5)


def test_auc_pools_the_joints_of_every_pose():
    """The AUC is the mean over thresholds of 3DPCK pooled over every visible joint (not
    a mean of per-pose values): one right joint of a pose and three wrong ones of
    another give 1/4 at every threshold above 0 (30 of 31)."""
    gt = np.zeros((2, 4, 3))
    pred = gt.copy()
    pred[1] += [1.0, 0.0, 0.0]
    visible = np.array([[True, False, False, False], [True, True, True, False]])
    assert pose3d.pck3d(pred, gt, visible) == pytest.approx(1 / 4)
    assert pose3d.pck3d_auc(pred, gt, visible) == pytest.approx(30 / 31 / 4)
