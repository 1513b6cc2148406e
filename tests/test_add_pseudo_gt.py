import inspect
import os
import pathlib
import shutil
import subprocess
import sys

import jax
import numpy as np
import pytest
import tensorflow_datasets as tfds

from lcrnet_jax import pseudo_gt as pg
from lcrnet_jax.data import features, pseudo_gt_file
from tests.test_launchers import flag_defaults

ROOT = pathlib.Path(__file__).resolve().parent.parent
NUM_POSES, NUM_VIEWS, CHUNK, SEED = 60, 8, 128, 3


def _corpus_poses():
    """Random LCR-17 poses (metres): a standing skeleton plus random joint offsets."""
    rng = np.random.default_rng(0)
    height = np.linspace(0.9, -0.7, 17)[None, :, None] * np.array([0.0, 1.0, 0.0])
    return (height + rng.normal(scale=0.25, size=(NUM_POSES, 17, 3))).astype(np.float32)


class PseudoGtPoses(tfds.core.GeneratorBasedBuilder):
    """Three records in LCR-13: people with and without 3D, one with a single joint.

    Like MPII, COCO and LSP it has a per-person `annotated` mask besides `visible`.
    """

    VERSION = tfds.core.Version("1.0.0")
    PEOPLE: list = []

    def _info(self):
        return tfds.core.DatasetInfo(
            builder=self,
            features=features.pose_features(
                13,
                image_format="png",
                extra_people={"annotated": features.person_tensor(13, dtype=np.bool_)},
            ),
            metadata=tfds.core.MetadataDict(joint_set="lcr13"),
        )

    def _split_generators(self, dl_manager):
        return {"train": self._generate_examples()}

    def _generate_examples(self):
        for i, (joints2d, annotated, has_3d) in enumerate(self.PEOPLE):
            p = len(has_3d)
            yield (
                i,
                {
                    "image": features.encode_image(np.zeros((8, 8, 3), np.uint8), "png"),
                    "image_id": f"img{i}",
                    "intrinsics": np.zeros(4, np.float32),
                    "people": {
                        "joints2d": joints2d.astype(np.float32),
                        "joints3d": np.ones((p, 13, 3), np.float32),
                        "visible": annotated & (np.arange(13) != 5),  # 5 occluded
                        "annotated": annotated,
                        "has_3d": np.asarray(has_3d, bool),
                        "box": np.zeros((p, 4), np.float32),
                    },
                },
            )


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("pseudo_gt")
    poses = _corpus_poses()
    corpus_path = tmp / "mocap17.npz"
    np.savez(corpus_path, poses3d=poses, joint_set="lcr17")
    corpus = pg.project_corpus(poses, jax.random.key(SEED), num_views=NUM_VIEWS)
    entries = np.array([17, 301])
    truth3d, truth2d = (np.asarray(x) for x in corpus.views(entries))
    truth2d = truth2d * 200.0 + 300.0
    hidden = np.ones(13, bool)
    hidden[[0, 3, 7]] = False
    one_joint = np.zeros(13, bool)
    one_joint[4] = True
    PseudoGtPoses.PEOPLE = [
        (truth2d[:, :13], np.stack([np.ones(13, bool), hidden]), [True, False]),
        (np.zeros((0, 13, 2)), np.zeros((0, 13), bool), []),
        (truth2d[::-1, :13], np.stack([one_joint, np.ones(13, bool)]), [False, False]),
    ]
    PseudoGtPoses(data_dir=tmp, file_format="array_record").download_and_prepare()
    return tmp, corpus_path, truth3d, truth2d


def _launch(*args):
    env = dict(os.environ, JAX_COMPILATION_CACHE_DIR=str(ROOT / ".jax_cache"))
    env["JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS"] = "0.2"
    command = [sys.executable, str(ROOT / "experiments" / "add_pseudo_gt.py"), *args]
    return subprocess.run(command, capture_output=True, text=True, env=env, cwd=ROOT)


def test_add_pseudo_gt_end_to_end(built):
    tmp, corpus_path, truth3d, truth2d = built
    run = _launch(
        "--dataset=pseudo_gt_poses",
        f"--data_dir={tmp}",
        f"--corpus={corpus_path}",
        f"--num_views={NUM_VIEWS}",
        f"--seed={SEED}",
        f"--chunk_size={CHUNK}",
        "--split=train",
    )
    assert run.returncode == 0, run.stderr[-2000:]
    assert "3 people without 3D in 3 records: 2 matched, 1 skipped" in run.stdout

    table = pseudo_gt_file.load_pseudo_gt(tmp / "pseudo_gt_poses" / "1.0.0", "train")
    source = tfds.data_source("pseudo_gt_poses", split="train", data_dir=tmp)
    assert len(table) == len(source) == 3 and table.joint_set == "lcr17"
    assert table.corpus == "mocap17.npz" and table.split == "train"
    by_id = {table.image_id[i]: table.record(i) for i in range(3)}
    for i in range(3):  # the records pair with the dataset's in order
        assert table.image_id[i] == source[i]["image_id"].decode()
    first, empty, last = by_id["img0"], by_id["img1"], by_id["img2"]
    assert empty["joints3d"].shape == (0, 17, 3)
    np.testing.assert_array_equal(first["valid"], [False, True])  # real 3D: not replaced
    np.testing.assert_array_equal(last["valid"], [False, True])  # one joint: skipped
    np.testing.assert_allclose(first["joints3d"][1], truth3d[1], atol=1e-5)
    np.testing.assert_allclose(last["joints3d"][1], truth3d[0], atol=1e-5)
    # Hidden LCR-13 joints and the four joints LCR-13 lacks are completed from the match.
    np.testing.assert_allclose(first["joints2d"][1], truth2d[1], atol=5e-3)
    np.testing.assert_allclose(last["joints2d"][1], truth2d[0], atol=5e-3)
    assert first["annotated"][1, 13:].sum() == 0 and first["annotated"][1].sum() == 10
    assert np.isnan(first["distance"][0]) and first["distance"][1] < 2e-3


def test_people_with_fewer_than_min_joints_get_no_pseudo_gt(built, tmp_path):
    """With `min_joints=11` the person of 10 annotated joints is skipped too, the one of
    13 still matched; a bound under 2 is refused before any work."""
    tmp, corpus_path, truth3d, _ = built
    data = shutil.copytree(tmp, tmp_path / "data")
    options = dict(data_dir=str(data), corpus_path=corpus_path, num_views=NUM_VIEWS, seed=SEED,
                   chunk_size=CHUNK)  # fmt: skip
    summary = pg.add_pseudo_gt("pseudo_gt_poses", min_joints=11, **options)
    assert (summary["people_matched"], summary["people_skipped"]) == (1, 2)
    table = pseudo_gt_file.load_pseudo_gt(data / "pseudo_gt_poses" / "1.0.0", "train")
    np.testing.assert_array_equal(table.record(0)["valid"], [False, False])
    np.testing.assert_array_equal(table.record(2)["valid"], [False, True])
    np.testing.assert_allclose(table.record(2)["joints3d"][1], truth3d[0], atol=1e-5)
    with pytest.raises(ValueError, match="min_joints >= 2"):
        pg.add_pseudo_gt("pseudo_gt_poses", min_joints=1, **options)


def test_launcher_errors_are_one_line(built, tmp_path):
    tmp, _, _, _ = built
    run = _launch("--dataset=pseudo_gt_poses", f"--data_dir={tmp}", "--corpus=missing.npz")
    assert run.returncode == 1
    assert run.stderr.strip().splitlines() == [
        "error: corpus file not found: missing.npz (expected an .npz with poses3d and joint_set)"
    ]


def test_missing_files_and_bad_names_raise(built, tmp_path):
    tmp, corpus_path, _, _ = built
    with pytest.raises(FileNotFoundError, match="unknown dataset .nope.: .*datasets: "):
        pg.add_pseudo_gt("nope", data_dir=str(tmp), corpus_path=corpus_path)
    # Bad options fail before the corpus or the dataset is read.
    for options, message in [
        ({"chunk_size": 0}, "chunk_size >= 1"),
        ({"query_block": -1}, "query_block >= 1"),
        ({"method": "faiss"}, "method must be one of"),
        ({"max_elevation": -0.5}, "max_elevation must be in"),
    ]:
        with pytest.raises(ValueError, match=message):
            pg.add_pseudo_gt("nope", data_dir=str(tmp), corpus_path="missing.npz", **options)
    with pytest.raises(FileNotFoundError, match=r"pseudo_gt_test\.npz.*add_pseudo_gt"):
        pseudo_gt_file.load_pseudo_gt(tmp / "pseudo_gt_poses" / "1.0.0", "test")
    with pytest.raises(ValueError, match="plain split name"):
        pseudo_gt_file.load_pseudo_gt(tmp, "train[:10%]")
    np.savez(tmp_path / "bad.npz", poses3d=np.zeros((2, 13, 3)), joint_set="coco17")
    with pytest.raises(ValueError, match="'lcr13' or 'lcr17'"):
        pg.load_corpus_file(tmp_path / "bad.npz")


def test_the_launchers_defaults_are_the_librarys():
    """add_pseudo_gt.py without a flag annotates as `add_pseudo_gt` without the argument:
    the train split, 32 views per MoCap pose, the same seed, view ranges and search."""
    names = ("split", "corpus_joint_set", "num_views", "seed", "max_elevation", "max_roll",
             "method", "chunk_size", "query_block", "min_joints")  # fmt: skip
    params = inspect.signature(pg.add_pseudo_gt).parameters
    assert flag_defaults("add_pseudo_gt", names) == {n: params[n].default for n in names}
