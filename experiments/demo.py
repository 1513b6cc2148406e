r"""`make demo`: the whole chain on embedded synthetic data, on a CPU, in minutes.

python experiments/demo.py [--out_dir=demo_out] [--steps=N]

1. builds the `synthetic_people/tiny` dataset (2,000 + 200 rendered images);
2. trains the `synthetic_tiny` config (a small LCR-Net from scratch) and evaluates it
   on the test split: PPI and the NMS baseline next to two trivial baselines;
3. runs `experiments/predict.py` on a few test images (JSON + pictures), and plots the
   first one's people in camera space next to the ground truth (`truth_3d.png`).
Everything lands in `--out_dir`, with `summary.json` (minutes, speeds, metrics, the
bar's checks); rerunning resumes or reuses what is there.
"""

import datetime
import io
import json
import os
import platform
import subprocess
import sys
import time

import numpy as np
from absl import flags
from PIL import Image

from experiments import build_dataset, launch
from experiments.configs import synthetic_tiny
from lcrnet_jax import skeleton, visualize
from lcrnet_jax.data import atomic, pipeline
from lcrnet_jax.postprocess import camera
from lcrnet_jax.train import loop

_OUT_DIR = flags.DEFINE_string("out_dir", "demo_out", "Where the demo writes everything.")
_STEPS = flags.DEFINE_integer("steps", None, "Training steps (default: the config's).")
_PREDICT_IMAGES = 4
CONFIG = "experiments/configs/synthetic_tiny.py"


def learned(results: dict) -> tuple[bool, str]:
    """The demo's bar, a little below what its recipe reaches (docs/demo_recipe.md), so that
    a regression fails `make demo`: PPI finds at least 80% of the people, with PCKh@0.5 at
    least 0.62, OKS AP at least 0.31, and MPJPE at most 0.7 x the mean-pose baseline's and
    0.85 x the anchor-pose baseline's (both computed in the same evaluation)."""
    ppi, anchor, mean = results["ppi"], results["anchor"], results["mean_pose"]
    mpjpe = ppi["mpjpe_mm"]
    checks = {
        f"recall {ppi['recall']:.2f} >= 0.80": ppi["recall"] >= 0.80,
        f"PCKh {ppi['pckh']:.2f} >= 0.62": ppi["pckh"] >= 0.62,
        f"AP {ppi['AP']:.3f} >= 0.31": ppi["AP"] >= 0.31,
        f"MPJPE {mpjpe:.0f} mm <= 0.7 x {mean['mpjpe_mm']:.0f} mm (mean pose)": mpjpe
        <= 0.7 * mean["mpjpe_mm"],
        f"MPJPE {mpjpe:.0f} mm <= 0.85 x {anchor['mpjpe_mm']:.0f} mm (anchor pose)": mpjpe
        <= 0.85 * anchor["mpjpe_mm"],
    }
    text = "; ".join(f"{name}: {'yes' if ok else 'NO'}" for name, ok in checks.items())
    return all(checks.values()), text


def _export_test_images(test, folder: str) -> list[str]:
    """The first test images as files of the records' own bytes (`test`: the split,
    images left encoded): the prediction decodes them as the evaluation did."""
    os.makedirs(folder, exist_ok=True)
    paths = []
    for i in range(_PREDICT_IMAGES):
        encoded = test[i]["image"]
        with Image.open(io.BytesIO(encoded)) as image:
            suffix = {"JPEG": "jpg"}.get(image.format, image.format.lower())
        path = os.path.join(folder, f"test_{i:03d}.{suffix}")
        with atomic.atomic_path(path) as tmp:
            tmp.write_bytes(encoded)
        paths.append(path)
    return paths


def plot_against_truth(record: dict, src_joint_set: str, found: dict, *, min_score=0.0):
    """A figure of one image's predicted people over its ground truth, in camera space.

    Args:
      record: the image's dataset record (intrinsics, people/joints3d).
      src_joint_set: the dataset's joint set.
      found: the image's NAME.json written by `experiments/predict.py`; its torso-centred
        poses are placed with the record's true intrinsics (`camera.fit_translation`).
      min_score: draws the people scoring at least this.
    """
    joints = len(found["joint_names"])
    people = [p for p in found["people"] if p["score"] >= min_score]
    poses3d = np.reshape([p["pose3d"] for p in people], (-1, joints, 3))
    poses2d = np.reshape([p["pose2d"] for p in people], (-1, joints, 2))
    translation, _ = camera.fit_translation(poses3d, poses2d, record["intrinsics"])
    truth, _ = skeleton.convert(
        record["people"]["joints3d"], None, src_joint_set, found["joint_set"]
    )
    return visualize.plot_poses_3d(
        poses3d + translation[:, None],
        joint_set=found["joint_set"],
        scores=[p["score"] for p in people],
        camera_space=True,
        ground_truth=truth,
    )


def main(argv):
    del argv
    out = os.path.abspath(_OUT_DIR.value)
    data_dir, workdir = os.path.join(out, "tensorflow_datasets"), os.path.join(out, "run")
    start = time.perf_counter()

    print("[1/3] Building synthetic_people/tiny ...", flush=True)
    build_dataset.build("synthetic_people/tiny", data_dir=data_dir)

    config = synthetic_tiny.get_config()
    config.data.data_dir = data_dir
    if _STEPS.value is not None:
        config.train.num_steps = _STEPS.value
    print(f"[2/3] Training {CONFIG} for {config.train.num_steps} steps in {workdir} ...")
    result = loop.train_and_evaluate(config, workdir)
    launch.exit_if_stopped(result)
    train_speed = result["train_images_per_s"]  # None when the run had finished before
    report = json.load(open(result["metrics_path"]))
    eval_speed = report["methods"]["ppi"]["num_images"] / report["seconds"]

    print("[3/3] Predicting on test images ...", flush=True)
    # Images left encoded: TFDS's decoder would warn that OpenCV is missing.
    test = pipeline.open_source("synthetic_people/tiny", split="test", data_dir=data_dir)
    inputs = _export_test_images(test, os.path.join(out, "inputs"))
    predictions = os.path.join(out, "predictions")
    command = [
        sys.executable, "experiments/predict.py", f"--checkpoint={workdir}",
        f"--config={CONFIG}", f"--output_dir={predictions}", *(f"--input={p}" for p in inputs),
    ]  # fmt: skip
    subprocess.run(command, check=True)
    found = json.load(open(os.path.join(predictions, "test_000.json")))
    fig = plot_against_truth(
        test[0], pipeline.source_joint_set(test), found, min_score=config.predict.min_score
    )
    with atomic.atomic_path(os.path.join(out, "truth_3d.png")) as tmp:
        fig.savefig(tmp, format="png")

    ok, checks = learned(report["methods"])
    minutes = (time.perf_counter() - start) / 60
    atomic.write_json(
        os.path.join(out, "summary.json"),
        {
            "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
            "machine": f"{platform.machine()}, {os.cpu_count()} CPU cores, load average "
            f"{os.getloadavg()[0]:.1f}",
            "minutes": round(minutes, 2),  # without the venv set-up of `make demo`
            "steps": result["step"],
            "train_images_per_s": train_speed,
            "eval_images_per_s": eval_speed,
            "metrics": report["methods"],
            "learned": ok,
            "checks": checks,
        },
    )
    print(f"\nEvaluation on {report['methods']['ppi']['num_images']} test images "
          f"(step {result['step']}):\n{result['table']}\n")  # fmt: skip
    train = f"{train_speed:.1f} images/s" if train_speed else "no step run (finished before)"
    print(f"train: {train}; evaluation: {eval_speed:.1f} images/s; "
          f"demo: {minutes:.1f} min")  # fmt: skip
    print(f"metrics: {os.path.join(workdir, 'eval')}; pictures: {predictions}, "
          f"{out}/truth_3d.png; summary: {out}/summary.json")  # fmt: skip
    print(("The model learned: " if ok else "WARNING, the model did not learn enough: ") + checks)
    if not ok:
        sys.exit(1)


if __name__ == "__main__":
    launch.run(main, log_dir_flag="out_dir")
