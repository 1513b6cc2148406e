import io
import types

import numpy as np
import pytest
import scipy.io
import tensorflow_datasets as tfds
from PIL import Image

from lcrnet_jax.data import features, records
from tests.test_images import GRAY, sixteen_bit_png


class TinyPoses(tfds.core.GeneratorBasedBuilder):
    VERSION = tfds.core.Version("1.0.0")

    def _info(self):
        return tfds.core.DatasetInfo(
            builder=self,
            features=features.pose_features(13, image_format="png"),
            metadata=tfds.core.MetadataDict(joint_set="lcr13"),
        )

    def _split_generators(self, dl_manager):
        return {"train": self._generate_examples()}

    def _generate_examples(self):
        rng = np.random.default_rng(0)
        for i, p in enumerate([0, 2]):
            image = rng.integers(0, 255, size=(12, 16, 3), dtype=np.uint8)
            yield (
                i,
                {
                    "image": features.encode_image(image, "png"),
                    "image_id": f"img{i}",
                    "intrinsics": np.array([100, 100, 8, 6], np.float32),
                    "people": {
                        "joints2d": np.full((p, 13, 2), i, np.float32),
                        "joints3d": np.zeros((p, 13, 3), np.float32),
                        "visible": np.ones((p, 13), bool),
                        "has_3d": np.zeros((p,), bool),
                        "box": np.zeros((p, 4), np.float32),
                    },
                },
            )


def test_schema_round_trips_through_array_record_without_tensorflow(tmp_path):
    TinyPoses(data_dir=tmp_path, file_format="array_record").download_and_prepare()
    source = tfds.data_source("tiny_poses", data_dir=tmp_path)["train"]
    records = sorted((source[i] for i in range(len(source))), key=lambda r: r["image_id"])
    assert [r["people"]["joints2d"].shape for r in records] == [(0, 13, 2), (2, 13, 2)]
    assert records[1]["image"].shape == (12, 16, 3) and records[1]["image"].dtype == np.uint8
    assert records[1]["people"]["visible"].dtype == bool
    assert source.dataset_info.metadata["joint_set"] == "lcr13"


def test_encode_image_rejects_bad_arrays():
    with pytest.raises(ValueError, match="uint8"):
        features.encode_image(np.zeros((4, 4), np.uint8))
    with pytest.raises(ValueError, match="image_format"):
        features.encode_image(np.zeros((4, 4, 3), np.uint8), "gif")
    with pytest.raises(ValueError, match=r"expected an \(H, W, 3\) uint8 image, got .* float32"):
        features.encode_image(np.full((4, 4, 3), 0.5, np.float32), "png")


def test_encode_image_uses_the_jpeg_quality_asked_for():
    """A higher quality keeps more of a noisy image (PIL's own default is 75, not 92)."""
    image = np.random.default_rng(0).integers(0, 256, (32, 32, 3), dtype=np.uint8)

    def error(quality):
        data = features.encode_image(image, "jpeg", quality=quality)
        decoded = np.asarray(Image.open(io.BytesIO(data)), np.float64)
        return np.abs(decoded - image).mean()

    assert error(95) < error(75) < error(20)
    default = features.encode_image(image, "jpeg")
    assert default == features.encode_image(image, "jpeg", quality=92)
    assert default != features.encode_image(image, "jpeg", quality=75)


class _FakeDownloadManager:
    def __init__(self, path):
        self._manual_dir = path

    @property
    def manual_dir(self):
        if not self._manual_dir.exists():
            raise AssertionError("Manual directory does not exist or is empty.")
        return self._manual_dir


def test_manual_dir_names_the_missing_folder_and_patterns(tmp_path):
    missing = tmp_path / "nowhere"
    with pytest.raises(FileNotFoundError, match="nowhere is missing or empty.*a.mat, img/.*x.org"):
        features.manual_dir(
            _FakeDownloadManager(missing), dataset="d", expected=["a.mat", "img/*"], url="x.org"
        )
    (tmp_path / "img").mkdir()
    (tmp_path / "img" / "1.jpg").write_bytes(b"")
    with pytest.raises(FileNotFoundError, match=r"lacks a\.mat \(get them from x\.org"):
        features.manual_dir(
            _FakeDownloadManager(tmp_path), dataset="d", expected=["a.mat", "img/*"], url="x.org"
        )
    root = features.manual_dir(
        _FakeDownloadManager(tmp_path), dataset="d", expected=["x.bvh | img/*.jpg"], url="x.org"
    )
    assert root == tmp_path
    (tmp_path / "a.mat").write_bytes(b"")
    root = features.manual_dir(
        _FakeDownloadManager(tmp_path), dataset="d", expected=["a.mat", "img/*"], url="x.org"
    )
    assert root == tmp_path


def test_read_image_keeps_rgb_jpeg_bytes_converts_grey_and_names_corrupt_files(tmp_path):
    rgb = np.random.default_rng(0).integers(0, 255, (6, 8, 3), dtype=np.uint8)
    jpeg = features.encode_image(rgb, "jpeg")
    (tmp_path / "a.jpg").write_bytes(jpeg)
    assert features.read_image(tmp_path / "a.jpg") == (jpeg, 6, 8)

    Image.fromarray(rgb[..., 0]).save(tmp_path / "grey.png")
    data, h, w = features.read_image(tmp_path / "grey.png")
    decoded = np.asarray(Image.open(io.BytesIO(data)))
    assert (h, w) == (6, 8) and decoded.shape == (6, 8, 3) and data[:2] == b"\xff\xd8"

    data, _, _ = features.read_image(sixteen_bit_png(tmp_path / "wide.png"), "png")
    np.testing.assert_array_equal(np.asarray(Image.open(io.BytesIO(data)))[..., 0], GRAY)

    (tmp_path / "cut.jpg").write_bytes(jpeg[: len(jpeg) // 2])
    with pytest.raises(ValueError, match="cannot read image .*cut.jpg"):
        features.read_image(tmp_path / "cut.jpg")
    with pytest.raises(FileNotFoundError):
        features.read_image(tmp_path / "absent.jpg")


def test_inside_image_and_joints_box():
    joints = np.array([[[0.0, 0.0], [7.9, 5.9], [8.1, 1.0], [2.0, -0.1]]], np.float32)
    np.testing.assert_array_equal(features.inside_image(joints, 6, 8), [[True, True, False, False]])
    box = features.joints_box(joints, np.array([[True, True, False, False]]))
    np.testing.assert_allclose(box, [[0.0, 0.0, 7.9, 5.9]], rtol=1e-6)
    assert features.joints_box(np.zeros((0, 4, 2)), np.zeros((0, 4), bool)).shape == (0, 4)


def test_inside_image_is_unchanged_by_a_horizontal_flip():
    # Joints on the left and right edges, at the corners, just inside and just outside.
    x = np.array([0.0, 8.0, 0.0, 8.0, 0.01, 7.99, -0.01, 8.01], np.float32)
    y = np.array([3.0, 3.0, 0.0, 6.0, 6.0, 0.0, 3.0, 3.0], np.float32)
    joints = np.stack([x, y], axis=-1)[None]
    flipped = joints * np.array([-1.0, 1.0], np.float32) + np.array([8.0, 0.0], np.float32)
    inside = features.inside_image(joints, 6, 8)
    np.testing.assert_array_equal(inside, [[True] * 6 + [False] * 2])
    np.testing.assert_array_equal(features.inside_image(flipped, 6, 8), inside)


def test_people_fills_schema_defaults_and_extra_people_features():
    joints = np.array([[[1.0, 2.0], [3.0, 5.0]]], np.float32)
    record = features.people(joints, [[True, True]], head_box=np.ones((1, 4), np.float32))
    assert record["joints3d"].shape == (1, 2, 3) and not record["has_3d"].any()
    np.testing.assert_allclose(record["box"], [[1.0, 2.0, 3.0, 5.0]])
    with_3d = features.people(
        joints, [[True, False]], joints3d=np.ones((1, 2, 3)), box=[[0, 0, 9, 9]]
    )
    assert with_3d["has_3d"].all() and with_3d["box"].dtype == np.float32
    np.testing.assert_array_equal(with_3d["box"], [[0, 0, 9, 9]])  # the dataset's own box
    feats = features.pose_features(
        2, extra_people={"head_box": tfds.features.Tensor(shape=(None, 4), dtype=np.float32)}
    )
    assert set(feats["people"].keys()) == {
        "joints2d",
        "joints3d",
        "visible",
        "has_3d",
        "box",
        "head_box",
    }


def test_load_mat_names_corrupt_and_missing_files(tmp_path):
    scipy.io.savemat(tmp_path / "ok.mat", {"a": np.arange(3)})
    np.testing.assert_array_equal(features.load_mat(tmp_path / "ok.mat")["a"], [[0, 1, 2]])
    (tmp_path / "bad.mat").write_bytes(b"MATLAB 5.0 MAT-file" + bytes(200))
    with pytest.raises(ValueError, match="corrupt MATLAB file .*bad.mat"):
        features.load_mat(tmp_path / "bad.mat")
    with pytest.raises(FileNotFoundError, match="absent.mat"):
        features.load_mat(tmp_path / "absent.mat")


def test_skip_log_keeps_the_count_and_the_first_20_paths_in_the_metadata():
    """A split that skipped 25 files records 25 and the first 20 of them."""
    metadata = {}
    builder = types.SimpleNamespace(name="mpii", info=types.SimpleNamespace(metadata=metadata))
    log = features.SkipLog(builder, "train")
    for i in range(25):
        log.add(f"images/{i}.jpg", "truncated")
    log.report()
    entry = metadata["skipped"]["train"]
    assert entry["count"] == 25
    assert entry["first"] == [f"images/{i}.jpg" for i in range(20)]
    features.SkipLog(builder, "test").report()  # nothing skipped: recorded as 0
    assert metadata["skipped"]["test"] == {"count": 0, "first": []}


def test_skip_log_skips_missing_and_corrupt_images_and_counts_them(tmp_path):
    """A builder goes on past a missing or corrupt image: None, its path logged, counted."""
    builder = types.SimpleNamespace(name="tiny", info=types.SimpleNamespace(metadata={}))
    skipped = features.SkipLog(builder, "train")
    Image.new("RGB", (4, 3)).save(tmp_path / "good.jpg")
    (tmp_path / "corrupt.jpg").write_bytes(b"not a jpeg")
    assert skipped.read_image(tmp_path / "good.jpg")[1:] == (3, 4)
    assert skipped.read_image(tmp_path / "missing.jpg") is None
    assert skipped.read_image(tmp_path / "corrupt.jpg") is None
    skipped.report()
    paths = [str(tmp_path / "missing.jpg"), str(tmp_path / "corrupt.jpg")]
    assert builder.info.metadata[records.SKIPPED]["train"] == {"count": 2, "first": paths}
