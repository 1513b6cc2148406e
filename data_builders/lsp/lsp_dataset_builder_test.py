import json
import logging
import sys

import numpy as np
import pytest

from data_builders.lsp import lsp_dataset_builder as lsp
from lcrnet_jax import skeleton
from lcrnet_jax.data import features
from tests import fake_datasets as fake

TINY = lsp.LspConfig(name="tiny", num_train=2)


def _build(data_dir, manual_dir, config):
    return fake.build(lsp.Lsp, config, data_dir, manual_dir)


def test_builds_lsp_and_lsp_extended_from_their_joints_mat(tmp_path, caplog):
    manual = tmp_path / "manual"
    xy, occluded = fake.write_lsp(manual, num_images=4)
    xy_et, visible_et = fake.write_lspet(manual, num_images=3)
    fake.corrupt_image(manual / "lsp_dataset" / "images" / "im0002.jpg")
    with caplog.at_level(logging.WARNING):
        original = _build(tmp_path / "data", manual, TINY)
    assert "skipped 1 corrupt or missing file(s), first: " in caplog.text
    assert "im0002.jpg" in caplog.text
    assert "tensorflow" not in sys.modules
    corrupt = str(manual / "lsp_dataset" / "images" / "im0002.jpg")
    (metadata,) = (tmp_path / "data").glob("lsp/tiny/*/metadata.json")
    assert json.loads(metadata.read_text())["skipped"] == {
        "train": {"count": 1, "first": [corrupt]},
        "test": {"count": 0, "first": []},
    }
    assert fake.skipped(tmp_path / "data", "lsp/tiny", "train[:1]") == (1, [corrupt])
    assert fake.skipped(tmp_path / "data", "lsp/tiny", "test") == (0, [])

    assert len(original["train"]) == 1 and len(original["test"]) == 2
    assert original["train"].dataset_info.metadata["joint_set"] == "lsp14"
    assert set(fake.records(original["test"])) == {"images/im0003.jpg", "images/im0004.jpg"}
    records = fake.records(original["train"])
    first = records["images/im0001.jpg"]
    assert first["image"].shape == (*fake.LSP_SIZE, 3)
    np.testing.assert_allclose(first["people"]["joints2d"][0], xy[0] - 0.5, atol=1e-5)
    vis = first["people"]["visible"][0]
    # joint 0 lies outside the image, joint 1 is flagged occluded; all are annotated.
    assert not vis[0] and not vis[1] and vis[2:].all()
    assert first["people"]["annotated"].all() and not first["people"]["has_3d"].any()

    lcr, lcr_vis = skeleton.convert(first["people"]["joints2d"], vis[None], "lsp14", "lcr13")
    head = skeleton.LCR13.index("head")
    expected_head = 0.5 * (xy[0, 12] + xy[0, 13]) - 0.5
    np.testing.assert_allclose(lcr[0, head], expected_head, atol=1e-5)
    assert not lcr_vis[0, skeleton.LCR13.index("right_ankle")] and lcr_vis[0, head]

    extended = _build(tmp_path / "data", manual, lsp.Lsp.builder_configs["extended"])
    assert len(extended["train"]) == 3 and set(extended) == {"train"}
    second = fake.records(extended["train"])["images/im00002.jpg"]
    np.testing.assert_allclose(second["people"]["joints2d"][0], xy_et[1] - 0.5, atol=1e-5)
    # LSP-extended: a 0 flag means neither visible nor annotated.
    np.testing.assert_array_equal(second["people"]["annotated"][0], visible_et[1] == 1)
    assert not second["people"]["visible"][0, 5]


def test_missing_manual_folder_names_expected_files(tmp_path):
    with pytest.raises(FileNotFoundError, match="lsp_dataset/joints.mat.*sam.johnson.io"):
        _build(tmp_path / "data", tmp_path / "absent", TINY)
    fake.write_lspet(tmp_path / "manual", num_images=1)
    with pytest.raises(FileNotFoundError, match="lacks lsp_dataset/joints.mat, lsp_dataset/images"):
        _build(tmp_path / "data", tmp_path / "manual", TINY)


def test_bad_joints_mat_is_named(tmp_path):
    fake.write_lsp(tmp_path / "manual", num_images=2)
    (tmp_path / "manual" / "lsp_dataset" / "joints.mat").write_bytes(b"not a mat file")
    with pytest.raises(ValueError, match="corrupt MATLAB file .*joints.mat"):
        _build(tmp_path / "data", tmp_path / "manual", TINY)


def test_failure_during_generation_leaves_no_dataset(tmp_path, monkeypatch):
    fake.write_lsp(tmp_path / "manual", num_images=4)
    calls = []
    read_image = features.read_image

    def failing(path, *args, **kwargs):
        calls.append(path)
        if len(calls) == 3:
            raise RuntimeError("disk gone")
        return read_image(path, *args, **kwargs)

    monkeypatch.setattr(features, "read_image", failing)
    with pytest.raises(RuntimeError, match="disk gone"):
        _build(tmp_path / "data", tmp_path / "manual", TINY)
    left = [p for p in (tmp_path / "data").rglob("*") if p.is_file()]
    assert not [p for p in left if "dataset_info.json" in p.name or "array_record" in p.name]
    assert not [p for p in (tmp_path / "data").rglob("incomplete*")]
