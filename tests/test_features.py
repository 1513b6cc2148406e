import numpy as np
import pytest
import tensorflow_datasets as tfds

from lcrnet_jax.data import features


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
