"""`predict.canvas` without a network: network outputs mapped back to the original images,
batches of canvases, `PoseResult` filtering and JSON, bucket batching of `ImageModel`."""

import json

import numpy as np
import pytest

from lcrnet_jax import geometry
from lcrnet_jax.predict import canvas
from tests.test_visualize import standing_pose3d


def _prepared(height, width, scale, intrinsics, bucket=(64, 96)):
    valid = (int(height * scale), int(width * scale))
    return canvas.PreparedImage(
        pixels=np.zeros((*bucket, 3), np.uint8),
        valid_size=valid,
        scale=scale,
        original_size=(height, width),
        intrinsics=np.asarray(intrinsics, np.float32),
        camera_source="given",
    )


def test_people_of_batch_maps_each_image_back_with_its_own_scale_camera_and_people():
    """Two images of one batch (different scales, cameras, people and valid masks) and a
    padding row: each result holds its own valid people, 2D in its original pixels, and
    the camera-space pose that projects onto that 2D with its intrinsics."""
    pose = np.asarray(standing_pose3d(), np.float32)  # (13, 3) torso-centred
    batch = [
        _prepared(30, 45, 2.0, [50.0, 55.0, 22.0, 16.0]),
        _prepared(120, 180, 0.5, [200.0, 190.0, 95.0, 58.0]),
    ]
    translations = np.array(
        [[[0.3, -0.2, 4.0], [-0.5, 0.1, 6.0]], [[0.8, 0.4, 9.0], [-1.0, 0.0, 5.0]], [[0] * 3] * 2],
        np.float32,
    )  # (B=3, P=2, 3): the third row is padding
    valid = np.array([[True, False], [False, True], [False, False]])
    poses3d = np.broadcast_to(pose, (3, 2, 13, 3)).copy()
    poses3d[1] *= 1.1  # another size: the people differ between images
    poses2d = np.zeros((3, 2, 13, 2), np.float32)
    for i, item in enumerate(batch):  # network pixels: original camera scaled by the image's scale
        network_k = item.intrinsics * item.scale
        poses2d[i] = geometry.project(poses3d[i] + translations[i][:, None], network_k)
    scores = np.array([[0.9, 0.8], [0.7, 0.6], [0.0, 0.0]], np.float32)
    out = {"poses2d": poses2d, "poses3d": poses3d, "scores": scores, "valid": valid}

    results = canvas.people_of_batch(out, batch, "lcr13")
    assert len(results) == 2
    for i, (result, item) in enumerate(zip(results, batch, strict=True)):
        keep = valid[i]
        assert result.num_people == 1 and result.image_size == item.original_size
        np.testing.assert_allclose(result.scores, scores[i][keep])
        np.testing.assert_allclose(result.poses2d, poses2d[i][keep] / item.scale, rtol=1e-5)
        np.testing.assert_allclose(result.poses3d, poses3d[i][keep])
        np.testing.assert_allclose(
            result.poses3d_cam, poses3d[i][keep] + translations[i][keep][:, None], atol=1e-3
        )
        np.testing.assert_allclose(result.intrinsics, item.intrinsics)
        np.testing.assert_allclose(
            geometry.project(result.poses3d_cam, result.intrinsics), result.poses2d, atol=1e-2
        )


def test_stack_keeps_each_valid_region_and_pads_with_whole_canvases():
    batch = [_prepared(30, 45, 2.0, [1, 1, 0, 0]), _prepared(20, 40, 1.5, [1, 1, 0, 0])]
    images, sizes = canvas.stack(batch, 3)
    assert images.shape == (3, 64, 96, 3) and images.dtype == np.uint8
    assert sizes.tolist() == [[60, 90], [30, 60], [64, 96]]
    assert sizes.dtype == np.int32


def test_scoring_at_least_keeps_every_field_of_the_same_people():
    rng = np.random.default_rng(0)
    result = canvas.PoseResult(
        joint_set="lcr13",
        poses2d=rng.normal(size=(3, 13, 2)).astype(np.float32),
        poses3d=rng.normal(size=(3, 13, 3)).astype(np.float32),
        scores=np.array([0.9, 0.2, 0.5], np.float32),
        image_size=(10, 20),
        poses3d_cam=rng.normal(size=(3, 13, 3)).astype(np.float32),
        intrinsics=np.array([10, 10, 10, 5], np.float32),
    )
    kept = result.scoring_at_least(0.5)  # the threshold itself is kept
    assert kept.scores.tolist() == [pytest.approx(0.9), 0.5]
    for name in ("poses2d", "poses3d", "poses3d_cam"):
        np.testing.assert_array_equal(getattr(kept, name), getattr(result, name)[[0, 2]])


def test_to_json_is_strict_json_with_the_camera_fields_in_order():
    """A person without a camera-space pose (NaN translation) has pose3d_camera null, so
    the JSON stays strict; fx, fy, cx, cy keep their places."""
    cam = np.ones((2, 13, 3), np.float32)
    cam[1] = np.nan
    result = canvas.PoseResult(
        joint_set="lcr13",
        poses2d=np.zeros((2, 13, 2), np.float32),
        poses3d=np.zeros((2, 13, 3), np.float32),
        scores=np.array([0.9, 0.5], np.float32),
        image_size=(10, 20),
        poses3d_cam=cam,
        intrinsics=np.array([11, 12, 13, 14], np.float32),
        camera_source="given",
    )
    data = json.loads(json.dumps(result.to_json(), allow_nan=False))
    assert data["camera"] == {"fx": 11, "fy": 12, "cx": 13, "cy": 14, "source": "given"}
    assert data["people"][0]["pose3d_camera"] == cam[0].tolist()
    assert data["people"][1]["pose3d_camera"] is None
    assert data["image_size"] == {"height": 10, "width": 20}


class _FakeModel(canvas.ImageModel):
    """Images are bucket sizes; run_batch records its batches."""

    batch_size = 2
    provenance = {}

    def __init__(self):
        self.batches = []

    def preprocess(self, image):
        if image is None:
            raise ValueError("unreadable")
        return _prepared(image[0] // 2, image[1] // 2, 2.0, [1, 1, 0, 0], bucket=image)

    def run_batch(self, batch):
        self.batches.append([p.bucket for p in batch])
        return [p.bucket for p in batch]


def test_predict_stream_batches_one_bucket_and_announces_each_bucket_once():
    model = _FakeModel()
    compiled = []
    a, b = (64, 96), (96, 64)
    items = list(enumerate([a, a, a, b, None, b, a]))
    out = list(model.predict_stream(items, on_compile=compiled.append))
    assert [key for key, _ in out] == list(range(7))
    assert [r for _, r in out if not isinstance(r, Exception)] == [a, a, a, b, b, a]
    assert isinstance(out[4][1], ValueError)
    assert model.batches == [[a, a], [a], [b], [b], [a]]
    assert compiled == [a, b]  # a bucket's first call only
