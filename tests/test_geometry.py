import jax
import jax.numpy as jnp
import numpy as np
import pytest

from lcrnet_jax import geometry


def test_pose_box_uses_visible_joints_and_margin():
    joints = np.array([[10.0, 20.0], [30.0, 60.0], [500.0, 500.0]])
    box = geometry.pose_box(joints, np.array([True, True, False]), margin=0.1)
    np.testing.assert_allclose(box, [8.0, 16.0, 32.0, 64.0])
    np.testing.assert_allclose(geometry.pose_box(joints[:2], margin=0.0), [10, 20, 30, 60])
    np.testing.assert_array_equal(geometry.pose_box(joints, np.zeros(3, bool)), np.zeros(4))


def test_pose_box_of_joints_left_of_and_above_the_image():
    """A person cut by the left and top borders (with an `extent`): the hidden joint at
    (100, 100) is not read, so the box ends at the rightmost, lowest visible joint."""
    joints = np.array([[-50.0, -40.0], [-10.0, -20.0], [100.0, 100.0]])
    box = geometry.pose_box(joints, np.array([True, True, False]), margin=0.1)
    np.testing.assert_allclose(box, [-54.0, -42.0, -6.0, -18.0])


def test_box_iou_hand_cases_and_offsets():
    a = np.array([0.0, 0.0, 10.0, 10.0])
    np.testing.assert_allclose(geometry.box_iou(a, a), 1.0)
    np.testing.assert_allclose(geometry.box_iou(a, [5.0, 0.0, 15.0, 10.0]), 50 / 150)
    np.testing.assert_allclose(geometry.box_iou(a, [20.0, 20.0, 30.0, 30.0]), 0.0)
    # Inclusive pixels: 11 x 11 boxes sharing a 6 x 11 strip.
    np.testing.assert_allclose(
        geometry.box_iou(a, [5.0, 0.0, 15.0, 10.0], offset=1.0), 66 / (121 + 121 - 66), rtol=1e-6
    )
    zeros = np.zeros(4)
    assert float(geometry.box_iou(zeros, zeros)) == 0.0


def test_iou_matrix_matches_pairwise():
    rng = np.random.default_rng(0)
    xy = rng.uniform(0, 50, size=(2, 7, 2))
    wh = rng.uniform(1, 30, size=(2, 7, 2))
    boxes = np.concatenate([xy, xy + wh], -1)
    m = geometry.iou_matrix(boxes[0], boxes[1])
    assert m.shape == (7, 7)
    for i in range(7):
        for j in range(7):
            expected = geometry.box_iou(boxes[0, i], boxes[1, j])
            np.testing.assert_allclose(m[i, j], expected, rtol=1e-6)


def test_projection_of_a_point_on_the_axis_hits_the_principal_point():
    k = np.array([500.0, 400.0, 128.0, 96.0])
    pts = np.array([[0.0, 0.0, 3.0], [1.0, -0.5, 2.0]])
    np.testing.assert_allclose(geometry.project(pts, k), [[128, 96], [378, -4]])


def test_rotations_are_proper_and_orthographic_projection_keeps_lengths_in_plane():
    r = geometry.random_rotations(jax.random.key(0), 16, max_elevation=0.4, max_roll=0.1)
    eye = jnp.einsum("nij,nkj->nik", r, r)
    np.testing.assert_allclose(eye, np.broadcast_to(np.eye(3), (16, 3, 3)), atol=1e-5)
    np.testing.assert_allclose(jnp.linalg.det(r), 1.0, atol=1e-5)
    # Azimuth alone keeps the vertical (Y) coordinate.
    pose = np.random.default_rng(0).normal(size=(13, 3))
    view = geometry.orthographic_project(pose, geometry.rotation_matrix(0.7, 0.0))
    np.testing.assert_allclose(view[:, 1], pose[:, 1], atol=1e-6)


def test_torso_centring():
    pose = np.random.default_rng(0).normal(size=(4, 13, 3))
    centred = geometry.center_on_torso(pose)
    np.testing.assert_allclose(geometry.torso_center(centred), 0.0, atol=1e-6)
    np.testing.assert_allclose(
        geometry.torso_center(pose), pose[:, [4, 5, 10, 11]].mean(1), rtol=1e-6
    )
    with pytest.raises(ValueError, match=r"poses must have shape \(\.\.\., 13, D\) for 'lcr13'"):
        geometry.torso_center(np.zeros((5, 3)))  # an IndexError before


@pytest.mark.parametrize("seed", range(3))
def test_procrustes_recovers_a_similarity(seed):
    rng = np.random.default_rng(seed)
    gt = rng.normal(size=(5, 13, 3)).astype(np.float32)
    rot = geometry.random_rotations(jax.random.key(seed), 5, max_elevation=1.5, max_roll=3.0)
    pred = 1.7 * geometry.rotate(gt, rot) + rng.normal(size=(5, 1, 3))
    np.testing.assert_allclose(geometry.procrustes_align(pred, gt), gt, atol=1e-4)


def _axis_rotation(axis, angle):
    """(3, 3) rotation by `angle` radians about coordinate axis `axis` (0, 1, 2)."""
    i, j = [k for k in range(3) if k != axis]
    rot = np.eye(3)
    rot[i, i] = rot[j, j] = np.cos(angle)
    rot[i, j], rot[j, i] = -np.sin(angle), np.sin(angle)
    return rot


def test_procrustes_on_noisy_poses_beats_every_nearby_similarity():
    """Optimality, not recovery: with noise no similarity fits exactly, and the aligned
    pose's summed squared error over the visible joints (what the fit minimises) must be
    below that of the aligned pose moved by any small similarity: scale x(1 +- 1%) and
    rotations of +-0.01 rad about each axis (both about the visible joints' centroid),
    translations of +-5 mm along each axis."""
    rng = np.random.default_rng(5)
    gt = rng.normal(scale=0.3, size=(4, 17, 3))
    rot = np.asarray(geometry.rotation_matrix([0.4, -1.2, 2.0, 3.0], [0.3, 0.1, -0.5, 0.2], 0.2))
    pred = 1.4 * np.einsum("njc,ndc->njd", gt, rot) + rng.normal(size=(4, 1, 3))
    pred += rng.normal(scale=0.08, size=pred.shape)
    visible = rng.random((4, 17)) > 0.2
    pred[~visible] += 3.0  # far off, but not fitted

    for vis, used in ((None, np.ones((4, 17), bool)), (visible, visible)):

        def sse(poses, used=used):  # (4,) summed squared error over the used joints
            return np.sum(used * np.sum((poses - gt) ** 2, axis=-1), axis=-1)

        aligned = np.asarray(geometry.procrustes_align(pred, gt, vis), np.float64)
        base = sse(aligned)
        assert np.all(base > 1e-3)  # the noise leaves an error
        centre = np.sum(used[..., None] * aligned, 1, keepdims=True) / used.sum(1)[:, None, None]
        moves = [centre + s * (aligned - centre) for s in (0.99, 1.01)]
        moves += [
            centre + (aligned - centre) @ _axis_rotation(axis, angle).T
            for axis in range(3)
            for angle in (-0.01, 0.01)
        ]
        moves += [aligned + step * np.eye(3)[axis] for axis in range(3) for step in (-5e-3, 5e-3)]
        for moved in moves:
            assert np.all(sse(moved) > base), (sse(moved), base)


def test_procrustes_never_reflects_and_ignores_invisible_joints():
    gt = np.random.default_rng(0).normal(size=(13, 3)).astype(np.float32)
    mirrored = gt * np.array([-1.0, 1.0, 1.0], np.float32)
    aligned = geometry.procrustes_align(mirrored, gt)
    assert float(jnp.mean(jnp.linalg.norm(aligned - gt, axis=-1))) > 0.05
    corrupted = gt.copy()
    corrupted[0] += 10.0
    visible = np.ones(13, bool)
    visible[0] = False
    aligned = geometry.procrustes_align(corrupted, gt, visible)
    np.testing.assert_allclose(aligned[1:], gt[1:], atol=1e-4)


def test_procrustes_scale_of_a_mirrored_pose_is_the_best_for_its_rotation():
    """The best fit of a mirrored pose would be a reflection; with the proper rotation
    returned instead, the scale must still be the least-squares one for it: scaling the
    aligned pose about its centroid cannot lower the error, sum(g_c . a_c) = sum(|a_c|^2)."""
    gt = np.random.default_rng(0).normal(size=(13, 3)).astype(np.float32)
    mirrored = 0.8 * gt * np.array([-1.0, 1.0, 1.0], np.float32)
    aligned = np.asarray(geometry.procrustes_align(mirrored, gt), np.float64)
    a_c, g_c = aligned - aligned.mean(0), gt - gt.mean(0)
    np.testing.assert_allclose(np.sum(g_c * a_c), np.sum(a_c**2), rtol=1e-4)


def test_box_iou_coordinate_major_matches_last_axis():
    rng = np.random.default_rng(3)
    lo = rng.uniform(0, 50, (6, 2))
    boxes = np.concatenate([lo, lo + rng.uniform(0, 30, (6, 2))], 1).astype(np.float32)
    for offset in (0.0, 1.0):
        expected = geometry.box_iou(boxes, boxes[2], offset=offset)
        got = geometry.box_iou(boxes.T, boxes[2][:, None], offset=offset, coord_axis=0)
        np.testing.assert_array_equal(got, expected)
        np.testing.assert_array_equal(
            geometry.box_area(boxes.T, offset=offset, coord_axis=0),
            geometry.box_area(boxes, offset=offset),
        )


def test_random_rotations_are_the_same_in_64_bit_mode():
    want = geometry.random_rotations(jax.random.key(3), 4, max_elevation=0.4, max_roll=0.1)
    with jax.enable_x64(True):
        got = geometry.random_rotations(jax.random.key(3), 4, max_elevation=0.4, max_roll=0.1)
    assert got.dtype == jnp.float32
    np.testing.assert_array_equal(got, want)


def test_coordinates_of_the_wrong_size_are_named():
    with pytest.raises(
        ValueError, match=r"^joints2d must be \(\.\.\., 2\), got shape \(4, 13, 3\)$"
    ):
        geometry.pose_box(np.zeros((4, 13, 3)))  # was (4, 6) "boxes"
    with pytest.raises(ValueError, match=r"^boxes must be \(\.\.\., 4\), got shape \(5,\)$"):
        geometry.box_iou(np.zeros(5), np.zeros(4))
    with pytest.raises(ValueError, match=r"^boxes must be 4 values on axis 0, got shape \(5, 2\)$"):
        geometry.box_area(np.zeros((5, 2)), coord_axis=0)
    with pytest.raises(ValueError, match=r"^intrinsics must be \(\.\.\., 4\), got shape \(3,\)$"):
        geometry.project(np.ones((2, 3)), np.ones(3))


def test_numpy_inputs_compute_in_numpy_and_match_jax():
    rng = np.random.default_rng(2)
    joints = rng.uniform(0, 50, (3, 13, 2)).astype(np.float32)
    visible = rng.random((3, 13)) < 0.7
    visible[1] = False
    boxes = np.concatenate([joints[:, :2, :].min(1), joints[:, :2, :].max(1)], -1)
    poses = rng.normal(size=(3, 17, 3)).astype(np.float32) + [0, 0, 5]
    k = np.array([500.0, 400.0, 128.0, 96.0], np.float32)
    rot = geometry.rotation_matrix(rng.uniform(size=3), rng.uniform(size=3), 0.1)
    calls = [
        lambda m: geometry.pose_box(m(joints), m(visible)),
        lambda m: geometry.box_area(m(boxes), offset=1.0),
        lambda m: geometry.box_iou(m(boxes), m(boxes[::-1])),
        lambda m: geometry.iou_matrix(m(boxes), m(boxes)),
        lambda m: geometry.project(m(poses), m(k)),
        lambda m: geometry.rotation_matrix(m(np.array([0.3, 1.0])), 0.2, 0.1),
        lambda m: geometry.rotate(m(poses), m(rot)[:, None]),
        lambda m: geometry.orthographic_project(m(poses), m(rot)[:, None]),
        lambda m: geometry.center_on_torso(m(poses), "lcr17"),
    ]
    for call in calls:
        out_np, out_jax = call(np.asarray), call(jnp.asarray)
        assert isinstance(out_np, np.ndarray) and isinstance(out_jax, jax.Array)
        np.testing.assert_allclose(out_np, out_jax, rtol=1e-5, atol=1e-5)
    assert not geometry.pose_box(joints, visible)[1].any()


def test_whole_numbers_are_ints_and_numpy_integers_not_bools_or_floats():
    assert all(geometry.is_whole(v) for v in (0, 7, np.int64(7), np.uint8(3)))
    assert not any(geometry.is_whole(v) for v in (True, np.bool_(True), 7.0, np.float32(7), "7"))


def test_sizes_and_counts_from_numpy_arrays_are_taken_and_bools_refused():
    # Sizes read from arrays or shapes are numpy integers; a bool is a mistake, not 1.
    from lcrnet_jax import ops
    from lcrnet_jax.metrics import coco

    features = jnp.arange(2 * 5 * 5 * 1, dtype=jnp.float32).reshape(2, 5, 5, 1)
    boxes = jnp.array([[[0.0, 0.0, 4.0, 4.0]], [[1.0, 1.0, 3.0, 3.0]]])
    pooled = ops.roi_align(features, boxes, np.int64(2), sampling_ratio=np.int32(2))
    np.testing.assert_array_equal(pooled, ops.roi_align(features, boxes, 2))
    anchors = ops.generate_rpn_anchors((np.int64(2), np.int64(3)), sizes=(32,))
    np.testing.assert_array_equal(anchors, ops.generate_rpn_anchors((2, 3), sizes=(32,)))
    keep = ops.nms(boxes[0], jnp.ones(1), 0.5, np.int64(1))[0]
    assert keep.shape == (1,)
    joints = [np.array([[[10.0, 10.0], [20.0, 30.0]]])]

    def ap_of_one_person(max_dets):
        return coco.oks_ap(
            joints, [np.ones(1)], joints, [np.ones((1, 2), bool)], gt_areas=[np.full(1, 400.0)],
            sigmas=np.full(2, 0.1), max_dets=max_dets,
        )["AP"]  # fmt: skip

    assert ap_of_one_person(np.int64(1)) == pytest.approx(1.0)
    with pytest.raises(ValueError, match="output_size"):
        ops.roi_align(features, boxes, True)
    with pytest.raises(ValueError, match="max_dets"):
        ap_of_one_person(True)
