import numpy as np
import pytest

from lcrnet_jax.evaluation import mpii
from lcrnet_jax.metrics import common, pose2d


def test_mpii_head_size_and_pckh_threshold_edges():
    head = mpii.mpii_head_size(np.array([[10.0, 20.0, 40.0, 60.0], [0.0, 0.0, 3.0, 4.0]]))
    np.testing.assert_allclose(head, [30.0, 3.0])  # 0.6 x diagonal (50 and 5)
    gt = np.zeros((2, 3, 2))
    pred = gt.copy()
    pred[0, 0] = [9.0, 12.0]  # exactly 0.5 head sizes (15 px): correct
    pred[0, 1] = [9.0, 12.001]  # just above: wrong
    pred[0, 2] = [1000.0, 0.0]  # wrong, but not visible
    pred[1, :] = [1.8, 2.4]  # 3 px = 1 head size: wrong at 0.5, right at 1.0
    visible = np.array([[True, True, False], [True, True, True]])
    per_joint, total = pose2d.pckh(pred, gt, visible, head)
    np.testing.assert_allclose(per_joint, [0.5, 0.0, 0.0])
    assert total == pytest.approx(1 / 5)
    per_joint, total = pose2d.pckh(pred, gt, visible, head, threshold=1.0)
    np.testing.assert_allclose(per_joint, [1.0, 1.0, 1.0])
    assert total == 1.0
    per_joint, _ = pose2d.pckh(pred, gt, np.zeros((2, 3), bool), head)
    assert np.all(np.isnan(per_joint))
    for bad in (0.0, np.inf, np.nan):
        with pytest.raises(ValueError, match="head_size must be positive and finite"):
            pose2d.pckh(pred, gt, visible, np.array([30.0, bad]))


def test_per_image_inputs_must_match_the_number_of_images():
    """A per-image list longer or shorter than the images is refused, naming it."""
    assert common.count_images(("pred", [1, 2]), ("gt", [3, 4])) == 2
    with pytest.raises(ValueError, match="the same number of images"):
        common.count_images(("pred", [1, 2, 3]), ("gt", [3, 4]))
    assert common.per_image(None, 2, "pred_valid") == [None, None]
    for entries in ([True], [True, True, True]):
        with pytest.raises(ValueError, match=f"pred_valid has {len(entries)} entries, expected 2"):
            common.per_image(entries, 2, "pred_valid")


def test_nanmean_skips_nan_and_is_nan_without_values():
    """The mean over sequences or joints skips NaN entries (nothing counted there) and is
    NaN, not 0, when nothing is left: a benchmark without a counted person has no score."""
    assert common.nanmean([0.5, np.nan, 1.0]) == 0.75
    assert np.isnan(common.nanmean([np.nan, np.nan]))
    assert np.isnan(common.nanmean([]))
