import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from lcrnet_jax import anchors as anchors_lib
from lcrnet_jax import geometry, skeleton

# A standing LCR-13 pose in metres, camera axes (Y down).
_STANDING = np.array(
    [
        [-0.1, 0.9, 0.0], [0.1, 0.9, 0.0], [-0.1, 0.45, 0.0], [0.1, 0.45, 0.0],
        [-0.1, 0.0, 0.0], [0.1, 0.0, 0.0], [-0.25, 0.0, 0.0], [0.25, 0.0, 0.0],
        [-0.22, -0.25, 0.0], [0.22, -0.25, 0.0], [-0.18, -0.5, 0.0], [0.18, -0.5, 0.0],
        [0.0, -0.7, 0.0],
    ],
    np.float32,
)  # fmt: skip


def _toy_poses(num_per_view=40, views=(0.0, 1.2, 2.4, -1.5), seed=0):
    rng = np.random.default_rng(seed)
    rot = geometry.rotation_matrix(jnp.asarray(views), 0.0)
    base = np.asarray(geometry.rotate(_STANDING, rot))  # (V, 13, 3)
    noise = rng.normal(scale=0.01, size=(len(views), num_per_view, 13, 3))
    return (base[:, None] + noise).reshape(-1, 13, 3).astype(np.float32), base


@pytest.fixture(scope="module")
def toy_anchors():
    poses, _ = _toy_poses()
    return anchors_lib.fit_anchor_poses(poses, 4, upper_body=True, seed=3)


def test_kmeans_anchors_are_deterministic_and_cover_the_toy_set(toy_anchors):
    poses, base = _toy_poses()
    again = anchors_lib.fit_anchor_poses(poses, 4, upper_body=True, seed=3)
    np.testing.assert_array_equal(again.pose3d, toy_anchors.pose3d)
    assert toy_anchors.num_anchors == 8 and toy_anchors.num_classes == 9
    np.testing.assert_array_equal(toy_anchors.upper_body, [False] * 4 + [True] * 4)
    centred = geometry.center_on_torso(base)
    dist = anchors_lib.d3d(centred[:, None], toy_anchors.pose3d[None, :4])  # (V, K)
    assert float(dist.min(axis=1).max()) < 0.01  # every view has an anchor within 1 cm
    np.testing.assert_allclose(toy_anchors.pose3d[4:], toy_anchors.pose3d[:4])
    assert toy_anchors.std.shape == (5, 13) and bool(jnp.all(toy_anchors.std > 0))


def test_upper_body_twins_put_the_upper_body_in_the_box(toy_anchors):
    full, upper = toy_anchors.pose2d[:4], toy_anchors.pose2d[4:]
    margin = toy_anchors.margin
    inside = margin / (1 + 2 * margin)
    np.testing.assert_allclose(full.min(axis=(1,)), inside, atol=1e-5)
    np.testing.assert_allclose(upper[:, 4:].max(axis=1)[:, 1], 1 - inside, atol=1e-5)
    assert bool(jnp.all(upper[:, :2, 1] > 1.0))  # ankles below the upper-body box


def test_regression_std_comes_from_full_body_views(toy_anchors):
    """The 2D targets' std is that of full-body views in RoIs jittered by up to
    `ROI_JITTER`: inside the box every joint's y moves by at most about
    ROI_JITTER / sqrt(3); in an upper-body box the ankles, far below it, would move more."""
    bound = 1.2 * anchors_lib.ROI_JITTER / np.sqrt(3)
    assert float(toy_anchors.std[1].max()) < bound


def test_anchors_come_most_populated_cluster_first():
    """4 views with 5, 30, 20 and 10 poses: the anchors are in that order by size."""
    poses, _ = _toy_poses(num_per_view=30)
    views = poses.reshape(4, 30, 13, 3)
    poses = np.concatenate([views[0, :5], views[1], views[2, :20], views[3, :10]])
    anchors = anchors_lib.fit_anchor_poses(poses, 4, seed=3, normalize=False)
    sizes = np.bincount(np.asarray(anchors_lib.assign_anchors(poses, anchors)), minlength=4)
    np.testing.assert_array_equal(sizes, [30, 20, 10, 5])


def test_d3d_hand_case():
    a = np.zeros((2, 3))
    b = np.array([[3.0, 4.0, 0.0], [0.0, 0.0, 1.0]])
    np.testing.assert_allclose(anchors_lib.d3d(a, b), 3.0)


def test_classify_poses_picks_the_nearest_anchor_and_its_twin(toy_anchors):
    poses = toy_anchors.pose3d[:4] + 0.005
    classes = anchors_lib.classify_poses(
        poses, toy_anchors, upper_body=jnp.array([0, 1, 0, 1], bool)
    )
    np.testing.assert_array_equal(classes, [1, 6, 3, 8])
    # Without twins an upper-body pose has no class (it was given class C).
    full_body = toy_anchors.replace(
        pose2d=toy_anchors.pose2d[:4], pose3d=toy_anchors.pose3d[:4], twins=False
    )
    np.testing.assert_array_equal(
        anchors_lib.classify_poses(poses, full_body, upper_body=np.zeros(4, bool)), [1, 2, 3, 4]
    )
    one_upper = np.array([0, 1, 0, 0], bool)
    with pytest.raises(ValueError, match="the anchors have no upper-body twins"):
        anchors_lib.classify_poses(poses, full_body, upper_body=one_upper)
    with pytest.raises(ValueError, match="the anchors have no upper-body twins"):
        known = np.ones((4, 13), bool)
        anchors_lib.classify_poses_2d(poses[..., :2], known, full_body, upper_body=one_upper)


def test_classify_poses_2d_reads_no_unknown_joint(toy_anchors):
    """Scaled views of the 4 anchors, feet unknown: moving the feet anywhere changes no
    class."""
    views = toy_anchors.pose3d[:4, :, :2] * 250.0 + jnp.array([40.0, 70.0])  # pixels
    known = np.ones((4, 13), bool)
    known[:, :2] = False
    far = views.at[:, :2].set(jnp.array([5000.0, -3000.0]))
    for poses in (views, far):
        classes = anchors_lib.classify_poses_2d(poses, known, toy_anchors, upper_body=False)
        np.testing.assert_array_equal(classes, [1, 2, 3, 4])


def test_encoding_the_anchor_in_its_box_is_zero_and_decode_inverts_encode(toy_anchors):
    box = jnp.array([40.0, 20.0, 140.0, 220.0])
    cls = 2
    pose2d = anchors_lib.denormalize_in_box(toy_anchors.pose2d[cls - 1], box)
    target = anchors_lib.encode_poses(pose2d, toy_anchors.pose3d[cls - 1], box, cls, toy_anchors)
    np.testing.assert_allclose(target, 0.0, atol=1e-4)

    key = jax.random.key(0)
    p2 = jax.random.uniform(key, (6, 13, 2), minval=30, maxval=200)
    p3 = jax.random.normal(key, (6, 13, 3)) * 0.3
    boxes = jnp.tile(box, (6, 1))
    classes = jnp.array([1, 2, 5, 8, 3, 4])
    t = anchors_lib.encode_poses(p2, p3, boxes, classes, toy_anchors)  # (6, 5, 13)
    reg = jnp.zeros((6, 9, 5, 13)).at[jnp.arange(6), classes].set(t)
    d2, d3 = anchors_lib.decode_poses(reg, boxes, toy_anchors)
    assert d2.shape == (6, 9, 13, 2) and d3.shape == (6, 9, 13, 3)
    np.testing.assert_allclose(d2[jnp.arange(6), classes], p2, atol=1e-3)
    np.testing.assert_allclose(d3[jnp.arange(6), classes], p3, atol=1e-5)
    # A zero delta gives the class's anchor placed in the box.
    np.testing.assert_allclose(
        d2[0, 4], anchors_lib.denormalize_in_box(toy_anchors.pose2d[3], box), atol=1e-4
    )
    background = anchors_lib.encode_poses(p2[:1], p3[:1], boxes[:1], jnp.array([0]), toy_anchors)
    np.testing.assert_array_equal(background, 0.0)


def test_save_load_round_trip_and_errors(toy_anchors, tmp_path):
    path = tmp_path / "anchors.npz"
    anchors_lib.save_anchor_poses(path, toy_anchors)
    loaded = anchors_lib.load_anchor_poses(path)
    assert loaded.twins and loaded.joint_set == "lcr13" and loaded.margin == toy_anchors.margin
    for name in ("pose2d", "pose3d", "std"):
        np.testing.assert_array_equal(getattr(loaded, name), getattr(toy_anchors, name))
    with pytest.raises(FileNotFoundError, match="anchor file not found"):
        anchors_lib.load_anchor_poses(tmp_path / "missing.npz")
    np.savez(tmp_path / "bad.npz", something=np.zeros(3))
    with pytest.raises(ValueError, match="not an anchor-pose file"):
        anchors_lib.load_anchor_poses(tmp_path / "bad.npz")


def test_load_refuses_another_format_version(toy_anchors, tmp_path):
    path = tmp_path / "anchors.npz"
    anchors_lib.save_anchor_poses(path, toy_anchors)
    with np.load(path) as data:
        fields = dict(data)
    newer = anchors_lib.FORMAT_VERSION + 1
    np.savez(path, **{**fields, "format_version": np.array(newer)})
    message = f"{path}: anchor format version {newer}, expected {anchors_lib.FORMAT_VERSION}"
    with pytest.raises(ValueError, match=f"^{re.escape(message)}$"):
        anchors_lib.load_anchor_poses(path)


@pytest.mark.parametrize("name", ["pose2d", "pose3d", "std"])
def test_load_refuses_non_finite_anchors(toy_anchors, tmp_path, name):
    """A NaN anchor would skip every training step and be copied into the run."""
    path = tmp_path / "anchors.npz"
    broken = getattr(toy_anchors, name).at[0, 0].set(jnp.nan)
    anchors_lib.save_anchor_poses(path, toy_anchors.replace(**{name: broken}))
    with pytest.raises(ValueError, match=rf"^{re.escape(str(path))}: {name} holds NaN, inf"):
        anchors_lib.load_anchor_poses(path)


def test_fit_rejects_bad_input():
    with pytest.raises(ValueError, match=r"\(N, 13, 3\)"):
        anchors_lib.fit_anchor_poses(np.zeros((10, 17, 3)), 2)
    with pytest.raises(ValueError, match="NaN"):
        anchors_lib.fit_anchor_poses(np.full((10, 13, 3), np.nan), 2)
    with pytest.raises(ValueError, match="at least 5 poses"):
        anchors_lib.fit_anchor_poses(np.zeros((3, 13, 3)), 5)
    with pytest.raises(ValueError, match="number of anchor poses must be an int >= 1, got 0"):
        anchors_lib.fit_anchor_poses(np.zeros((3, 13, 3)), 0)


def test_completed_anchors_keep_their_classes_poses_on_the_new_joints(toy_anchors, tmp_path):
    done = anchors_lib.completed(toy_anchors, "lcr_mupots")
    assert (done.joint_set, done.twins, done.margin) == ("lcr_mupots", True, toy_anchors.margin)
    for name in ("pose2d", "pose3d"):
        expected = skeleton.complete(getattr(toy_anchors, name), "lcr13", "lcr_mupots")
        np.testing.assert_allclose(getattr(done, name), expected, atol=1e-6)
    np.testing.assert_array_equal(done.std[:, :13], toy_anchors.std)
    thorax = skeleton.LCR_MUPOTS.index("thorax")  # the shoulders' midpoint
    np.testing.assert_allclose(done.std[:, thorax], toy_anchors.std[:, 10:12].mean(1), rtol=1e-6)
    top = skeleton.LCR_MUPOTS.index("head_top")  # 1.5 head - 0.25 each shoulder: |weights|
    expected = 1.5 * toy_anchors.std[:, 12] + 0.25 * toy_anchors.std[:, 10:12].sum(1)
    np.testing.assert_allclose(done.std[:, top], expected, rtol=1e-6)
    anchors_lib.save_anchor_poses(tmp_path / "a.npz", done)
    assert anchors_lib.load_anchor_poses(tmp_path / "a.npz").joint_set == "lcr_mupots"
    with pytest.raises(ValueError, match="cannot make the 'lcr17' joints"):
        anchors_lib.completed(toy_anchors, "lcr17")


def test_regression_std_is_that_of_the_targets_in_jittered_rois(toy_anchors):
    """3D rows: exactly the std of each pose minus its anchor; 2D rows: at least what
    the RoI jitter alone gives a joint in the middle of the box, 0.1 / sqrt(3) / sqrt(2)
    (the toy poses' 1 cm noise adds little)."""
    poses, _ = _toy_poses()
    centred = np.asarray(geometry.center_on_torso(poses), np.float64)
    k = toy_anchors.num_full_body
    full = toy_anchors.replace(pose3d=toy_anchors.pose3d[:k])
    labels = np.asarray(anchors_lib.assign_anchors(centred, full))
    delta = centred - np.asarray(toy_anchors.pose3d, np.float64)[labels]
    np.testing.assert_allclose(toy_anchors.std[2:], delta.std(axis=0).T, rtol=1e-3)
    assert float(toy_anchors.std[:2].min()) > 0.9 * anchors_lib.ROI_JITTER / np.sqrt(6)


def test_kmeans_runs_on_a_random_subset_of_at_most_max_poses():
    """Two views, 40 poses each in that order, `max_poses` 40: a random subset holds both
    views, so each gets an anchor (the first 40 poses would hold only the first view)."""
    poses, base = _toy_poses(views=(0.0, 1.2))
    anchors = anchors_lib.fit_anchor_poses(poses, 2, seed=0, max_poses=40, normalize=False)
    dist = anchors_lib.d3d(geometry.center_on_torso(base)[:, None], anchors.pose3d[None])
    assert float(dist.min(axis=1).max()) < 0.01


def test_classify_poses_2d_centres_on_the_known_joints_only(toy_anchors):
    """Scaled views of the 4 anchors far from the image origin, feet unknown: the class
    does not depend on where in the image the person stands."""
    known = np.ones((4, 13), bool)
    known[:, :2] = False
    for origin in ([40.0, 70.0], [2e4, 2e4]):
        views = toy_anchors.pose3d[:4, :, :2] * 250.0 + jnp.array(origin)
        classes = anchors_lib.classify_poses_2d(views, known, toy_anchors, upper_body=False)
        np.testing.assert_array_equal(classes, [1, 2, 3, 4])
