"""The in-the-wild recipe (Sec. 4.2-4.3) end to end on fake copies of every dataset.

The commands of experiments/configs/inthewild_r50.py, run through the functions its
launchers call: build MPII, LSP-extended, COCO, Human3.6M, cmu_mocap, MuPoTS-3D with
MuCo-3DHP and MoCap-driven synthetic images; fit anchor poses on cmu_mocap; add pseudo
ground truth to the 2D sources; train inthewild_r50 (small preset, tiny images) a few
steps on the mixture; resume; evaluate on MPII validation; fine-tune it on MuCo-3DHP
onto MuPoTS-3D's joints (experiments/configs/mupots_finetune.py, slow) and evaluate
on MuPoTS-3D.
"""

import json
import os

import numpy as np
import pytest

from data_builders.cmu_mocap import cmu_mocap_dataset_builder as cmu
from data_builders.coco_keypoints import coco_keypoints_dataset_builder as coco
from data_builders.human36m import human36m_dataset_builder as h36m
from data_builders.lsp import lsp_dataset_builder as lsp
from data_builders.mpii_human_pose import mpii_human_pose_dataset_builder as mpii
from data_builders.mupots3d import mupots3d_dataset_builder as mupots
from data_builders.synthetic_people import synthetic_people_dataset_builder as synthetic
from experiments.configs import inthewild_r50, mupots_finetune
from lcrnet_jax import anchors as anchors_lib
from lcrnet_jax import pseudo_gt
from lcrnet_jax.train import loop
from tests import fake_datasets as fake
from tests.test_loop import tiny_config

CMU = cmu.CmuMocapConfig(name="tiny", frame_step=1)
H36M = h36m.Human36mConfig(name="tiny", train_subjects=(1,), train_frame_step=64)
MPII = mpii.MpiiConfig(name="tiny", val_images=2, seed=0)
SYNTHETIC = synthetic.SyntheticPeopleConfig(
    name="cmu_tiny", height=64, width=96, num_train=6, num_test=2, people=(2, 3),
    min_pose_distance=0.01, pose_corpus="cmu_mocap/tiny", max_overlap=0.5,
)  # fmt: skip


@pytest.fixture(scope="module")
def datasets(tmp_path_factory):
    """(data_dir, anchor file) with every source built, anchors fitted, pseudo-GT added."""
    root = tmp_path_factory.mktemp("wild")
    data, manual = root / "data", root / "manual"
    fake.write_cmu_mocap(manual / "cmu", num_frames=12)
    fake.build(cmu.CmuMocap, CMU, data, manual / "cmu")
    fake.write_mpii(manual / "mpii")
    fake.build(mpii.MpiiHumanPose, MPII, data, manual / "mpii")
    fake.write_lspet(manual / "lsp", num_images=3)
    fake.build(lsp.Lsp, lsp.Lsp.builder_configs["extended"], data, manual / "lsp")
    fake.write_coco(manual / "coco")
    fake.build(coco.CocoKeypoints, None, data, manual / "coco")
    fake.write_human36m(manual / "h36m")
    fake.build(h36m.Human36m, H36M, data, manual / "h36m")
    fake.write_mupots(manual / "mupots", sequences=(1,))
    fake.build(mupots.Mupots3d, mupots.MupotsConfig(name="tiny", sequences=(1,)), data,
               manual / "mupots")  # fmt: skip
    built = fake.build(synthetic.SyntheticPeople, SYNTHETIC, data, manual)
    people = [len(built["train"][i]["people"]["has_3d"]) for i in range(6)]
    assert np.mean(people) >= 1.5  # MoCap people, several per image

    anchors = root / "cmu_k2.npz"
    anchors_lib.fit_anchor_file(
        "cmu_mocap/tiny",
        anchors,
        num_anchors=2,
        upper_body=True,
        data_dir=str(data),
        random_views=True,
    )
    for name in ("mpii_human_pose/tiny", "lsp/extended", "coco_keypoints"):
        summary = pseudo_gt.add_pseudo_gt(
            name, data_dir=str(data), corpus_path="cmu_mocap/tiny", num_views=4
        )
        assert summary["people_matched"] > 0
    return str(data), str(anchors)


def _config(data_dir, anchors, num_steps):
    config = tiny_config(data_dir, num_steps)
    wild = inthewild_r50.get_config()
    config.data.sources = wild.data.sources
    for label, name in [("mpii", "mpii_human_pose/tiny"), ("h36m", "human36m/tiny"),
                        ("synthetic", "synthetic_people/cmu_tiny")]:  # fmt: skip
        config.data.sources[label].name = name
    config.data.eval_name, config.data.eval_split = "mpii_human_pose/tiny", "validation"
    config.anchor_poses.path = anchors
    config.ppi = wild.ppi
    return config


def test_a_fifth_of_the_images_drawn_are_synthetic_as_in_the_paper():
    # Sec. 4.2: 161k real images (mirrored) and 40k synthetic ones.
    weights = {k: s.weight for k, s in inthewild_r50.get_config().data.sources.items()}
    assert weights["synthetic"] / sum(weights.values()) == pytest.approx(40 / 201, abs=0.002)


def test_inthewild_recipe_trains_resumes_and_evaluates(datasets, tmp_path):
    data_dir, anchors = datasets
    workdir = str(tmp_path / "wild")
    loop.train_and_evaluate(_config(data_dir, anchors, 2), workdir)
    result = loop.train_and_evaluate(_config(data_dir, anchors, 4), workdir)  # resumed
    assert result["step"] == 4 and "ppi" in result["eval"]
    with open(os.path.join(workdir, "metrics.jsonl")) as f:
        logged = [json.loads(line) for line in f]
    train = [r for r in logged if "train/loss" in r]
    assert [r["step"] for r in train] == [2, 4]
    keys = set().union(*train)
    for label in ("mpii", "lspe", "coco", "h36m", "synthetic"):
        assert {f"train/people/{label}/{k}" for k in ("3d", "pseudo_3d", "2d_only")} <= keys
    seen = lambda kind: sum(r.get(f"train/people/{s}/{kind}", 0) for r in train  # noqa: E731
                            for s in ("mpii", "lspe", "coco", "h36m", "synthetic"))  # fmt: skip
    assert seen("pseudo_3d") > 0 and seen("3d") > 0
    evaluated = loop.evaluate_checkpoint(_config(data_dir, anchors, 4), workdir)
    assert evaluated["step"] == 4 and "| mpii_human_pose | ppi | nms |" in evaluated["table"]


@pytest.mark.slow
def test_mupots_finetuning_predicts_every_mupots_joint(datasets, tmp_path):
    data_dir, anchors = datasets
    wild = str(tmp_path / "wild")
    loop.train_and_evaluate(_config(data_dir, anchors, 2), wild)
    config = _config(data_dir, anchors, 2)
    recipe = mupots_finetune.get_config()
    config.data.sources = recipe.data.sources
    config.data.sources.muco.name = "mupots3d/tiny"
    config.data.eval_name, config.data.eval_split = "mupots3d/tiny", recipe.data.eval_split
    config.data.joint_set, config.model.iterative = recipe.data.joint_set, recipe.model.iterative
    config.model_init.workdir = wild
    tuned = str(tmp_path / "mupots")
    result = loop.train_and_evaluate(config, tuned)
    with open(os.path.join(tuned, "eval", "metrics_2.json")) as f:
        mupots3d = json.load(f)["protocols"]["mupots3d"]["ppi"]
    assert result["step"] == 2 and 0 <= mupots3d["3dpck_all"] <= mupots3d["3dpck_matched"] <= 1
    tuned_anchors = anchors_lib.load_anchor_poses(os.path.join(tuned, "anchors.npz"))
    assert tuned_anchors.joint_set == "lcr_mupots" and tuned_anchors.pose3d.shape[1] == 17

    # The in-the-wild run itself on MuPoTS-3D: not over its own MPII evaluation's files.
    config.data.joint_set, config.model.iterative = "lcr13", False
    ours = "holds the evaluation of mpii_human_pose/tiny validation"
    with pytest.raises(FileExistsError, match=ours):
        loop.evaluate_checkpoint(config, wild)
    before = loop.evaluate_checkpoint(config, wild, eval_dir=str(tmp_path / "wild_mupots3d"))
    assert before["step"] == 2 and "| mupots3d | ppi | nms |" in before["table"]


def test_a_bad_source_stops_the_run_before_anything_is_written(datasets, tmp_path):
    data_dir, anchors = datasets
    config = _config(data_dir, anchors, 2)
    config.data.sources.coco.split = "validation"  # no pseudo ground truth for it
    workdir = tmp_path / "run"
    command = (
        f"python experiments/add_pseudo_gt.py --dataset=coco_keypoints --data_dir={data_dir} "
        "--corpus=cmu_mocap --split=validation"
    )
    with pytest.raises(FileNotFoundError, match="source 'coco' has no pseudo ground truth") as e:
        loop.train_and_evaluate(config, str(workdir))
    assert str(e.value).endswith(command) and not workdir.exists()
    config = _config(data_dir, anchors, 2)
    config.data.sources.mpii.name = "mpii_humanpose"
    with pytest.raises(FileNotFoundError) as e:
        loop.train_and_evaluate(config, str(workdir))
    assert str(e.value).startswith(
        "source 'mpii': unknown dataset 'mpii_humanpose': did you mean mpii_human_pose? "
        "datasets: cmu_mocap, coco_keypoints, "
    )
    config = _config(data_dir, anchors, 2)
    config.data.sources.lspe.weight = -1.0
    with pytest.raises(ValueError, match="'lspe' has weight -1.0: weights must be > 0"):
        loop.train_and_evaluate(config, str(workdir))
    assert not workdir.exists()
