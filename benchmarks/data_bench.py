r"""Data benchmarks: synthetic renderer and input pipeline throughput (images/s).

python benchmarks/data_bench.py [--data_dir=DIR_WITH_synthetic_people/tiny] [--seconds=8] \
    [--skip_pseudo_gt] [--r50_step]

Renderer: `render_scene` in this process, wall-clock and CPU-time rates (CPU time is
what a core would give on an idle machine). Pipeline: `make_loader` training batches
from synthetic_people (the built tiny config in --data_dir, else a 256x256 copy of 200
images built in a temporary folder), with 0 and 2 worker processes. Each training
config's pipeline next to its train step, at the same batch size (1 for R50-C4 with
--r50_step), the R50-C4 one on 200 512x512 images drawn as synthetic_people/default's
(its dataset), built in the temporary folder. Nearest-neighbour
search of the pseudo ground truth (Sec. 3.7): the speed table of
benchmarks/pseudo_gt_bench.py (jnp vs scikit-learn, 100k and 1M corpus entries).
"""

from __future__ import annotations

import dataclasses
import tempfile
import time

import ml_collections
import numpy as np
import pseudo_gt_bench  # benchmarks/pseudo_gt_bench.py, beside this script
import tensorflow_datasets as tfds
import train_bench  # benchmarks/train_bench.py, beside this script
from absl import app, flags

from data_builders.synthetic_people import synthetic_people_dataset_builder as builder_lib
from experiments.configs import base, synthetic_tiny
from experiments.configs import synthetic as synthetic_r50
from lcrnet_jax.data import pipeline, poses, synthetic
from lcrnet_jax.train import loop

_DATA_DIR = flags.DEFINE_string("data_dir", None, "TFDS dir holding synthetic_people/tiny.")
_SECONDS = flags.DEFINE_float("seconds", 8.0, "Time spent on each measurement.")
_R50_STEP = flags.DEFINE_bool(
    "r50_step", False, "Also time the R50-C4 train step (minutes a step on a CPU)."
)
_SKIP_PSEUDO_GT = flags.DEFINE_bool(
    "skip_pseudo_gt", False, "Skip the nearest-neighbour search (about 45 s on 2 cores)."
)


def _rate(step, seconds: float) -> tuple[float, float]:
    """(items per wall second, items per CPU second) of `step()` (returns #items).

    A warm-up of a quarter of `seconds` first drains what worker processes prefetched
    while starting, so that the rate is the steady one.
    """
    start = time.perf_counter()
    step()
    while time.perf_counter() - start < seconds / 4:
        step()
    wall, cpu, items = time.perf_counter(), time.process_time(), 0
    while time.perf_counter() - wall < seconds:
        items += step()
    return items / (time.perf_counter() - wall), items / (time.process_time() - cpu)


def bench_renderer(seconds: float) -> list[tuple[str, float, float]]:
    rows = []
    pool = poses.sample_poses(np.random.default_rng(0), 4000).poses
    for size, people in ((256, (1, 4)), (256, (1, 6)), (512, (1, 6))):
        config = synthetic.RenderConfig(height=size, width=size)
        counter = iter(range(10**9))

        def step(config=config, people=people, counter=counter):
            rng = np.random.default_rng(next(counter))
            chosen = pool[rng.integers(0, len(pool), rng.integers(people[0], people[1] + 1))]
            synthetic.render_scene(list(chosen), rng, config)
            return 1

        rows.append(
            (f"render_scene {size}x{size}, {people[0]}-{people[1]} people", *_rate(step, seconds))
        )
    return rows


def _bench_dataset(scratch: str, size: int = 256) -> tuple[str, str]:
    """(name, data_dir) of a synthetic_people build with 256x256 images, or 512x512 ones
    drawn as the `default` config's (the R50-C4 config's dataset), 200 of them."""
    if _DATA_DIR.value and size == 256:
        return "synthetic_people/tiny", _DATA_DIR.value
    data_dir = scratch
    sizes = dict(num_train=200, num_test=8, pool_size=2000)
    if size == 256:
        config = builder_lib.SyntheticPeopleConfig(name="bench", **sizes)
    else:
        default = builder_lib.SyntheticPeople.builder_configs["default"]
        config = dataclasses.replace(default, name=f"bench{size}", **sizes)
    assert (config.height, config.width) == (size, size), (config.height, config.width)
    builder = builder_lib.SyntheticPeople(
        config=config, data_dir=data_dir, file_format="array_record"
    )
    builder.download_and_prepare(
        download_config=tfds.download.DownloadConfig(try_download_gcs=False)
    )
    return f"synthetic_people/{config.name}", data_dir


def bench_pipeline(seconds: float, scratch: str) -> list[tuple[str, float, float]]:
    name, data_dir = _bench_dataset(scratch)
    source = tfds.data_source(
        name, split="train", data_dir=data_dir, decoders={"image": tfds.decode.SkipDecoding()}
    )
    rows = []
    for workers in (0, 2):
        loader = pipeline.make_loader(
            source, batch_size=16, image_size=256, max_people=8, num_workers=workers
        )
        iterator = iter(loader)

        def step(iterator=iterator):
            return len(next(iterator)["index"])

        rows.append((f"make_loader 256x256, batch 16, {workers} workers", *_rate(step, seconds)))
    return rows


def bench_configs(seconds: float, scratch: str) -> list[tuple]:
    """(config, source image size, batch, workers, pipeline images/s, train step images/s
    or NaN) of each training config, its sources replaced by a benchmark dataset of its
    own dataset's image size; the pipeline and the step at the same batch size."""
    rows = []
    configs = (("synthetic_tiny", synthetic_tiny.get_config(), 256),
               ("synthetic (R50-C4)", synthetic_r50.get_config(), 512))  # fmt: skip
    for label, config, size in configs:
        name, data_dir = _bench_dataset(scratch, size)
        config.data.sources = ml_collections.ConfigDict({"synthetic": base.source(name)})
        config.data.data_dir = data_dir
        timed_step = label == "synthetic_tiny" or _R50_STEP.value
        if timed_step and label != "synthetic_tiny":
            config.data.batch_size = 1  # as train_bench's R50-C4 row (minutes a step on CPU)
        iterator = iter(loop.train_loader(config))
        pipe, _ = _rate(lambda iterator=iterator: len(next(iterator)["index"]), seconds)
        step = float("nan")
        if timed_step:
            timed = train_bench.train_row(
                f"train step, {label}", config, steps=6 if label == "synthetic_tiny" else 2,
                random_init=label != "synthetic_tiny", peak=0.2,
            )  # fmt: skip
            step = float(timed[7])  # images/s
        rows.append((label, size, config.data.batch_size, config.data.num_workers, pipe, step))
    return rows


def main(argv: list[str]) -> None:
    del argv
    seconds = _SECONDS.value
    with tempfile.TemporaryDirectory(prefix="data_bench_") as scratch:
        rows = bench_renderer(seconds) + bench_pipeline(seconds, scratch)
        configs = bench_configs(seconds, scratch)
    print("Data benchmarks, images/s. CPU time: images per CPU-second of this process")
    print("(its worker processes excluded, so not shown with workers).")
    print(f"{'measurement':52s} {'wall':>9s} {'CPU time':>9s}")
    for label, wall, cpu in rows:
        cpu_text = "-" if label.endswith("2 workers") else f"{cpu:9.1f}"
        print(f"{label:52s} {wall:9.1f} {cpu_text:>9s}")
    pipe = {
        label.split(", ")[-1]: wall for label, wall, _ in rows if label.startswith("make_loader")
    }
    print(f"pipeline speed-up with 2 workers (wall): {pipe['2 workers'] / pipe['0 workers']:.2f}x")

    print("\nEach config's training pipeline next to its train step, images/s (wall). With")
    print("workers the pipeline runs beside the step and keeps up when the ratio is >= 1;")
    print("with 0 workers it runs between steps and adds 1 / ratio of the step's time:")
    print("(source: the synthetic images' size, scaled to the config's input; batch: both's).")
    print(
        f"{'config':20s} {'source':>7s} {'batch':>5s} {'workers':>7s} {'pipeline':>9s} "
        f"{'step':>9s} {'ratio':>7s}"
    )
    for label, size, batch, workers, pipe_rate, step_rate in configs:
        print(
            f"{label:20s} {f'{size} px':>7s} {batch:5d} {workers:7d} {pipe_rate:9.1f} "
            f"{step_rate:9.3g} {pipe_rate / step_rate:7.3g}".replace("nan", "  -")
        )

    if not _SKIP_PSEUDO_GT.value:
        print("\nNearest-neighbour search of 2D poses in projected MoCap (pseudo-GT, Sec. 3.7):")
        pseudo_gt_bench.speed_table()


if __name__ == "__main__":
    app.run(main)
