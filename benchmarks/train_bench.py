r"""Training benchmark: steps/s and images/s of the sharded training step (Sec. 3.5, 4.1).

python benchmarks/train_bench.py [--quick] [--steps=6] [--r50_steps=2] [--r50_rois=512]

Rows:
  - the CPU demo config (experiments/configs/synthetic_tiny.py: small ResNet, 128x128 at
    stride 8, batch 8, 32 RoIs, K = 4 full-body + 4 upper-body anchors): one training step,
    `lcrnet_jax.train.step.make_train_step`;
  - R50-C4 (experiments/configs/synthetic.py: `resnet50_c4_config`, K = 10 + 10,
    512x512, 512 sampled RoIs) at batch 1 (skipped with --quick: on a loaded 2-core CPU
    a step takes 2-3 minutes, 90% of it res5 on the RoIs, forward and backward);
  - the evaluation forward of the demo config: the network's `__call__` and the
    post-processing (PPI, NMS and the baselines) of `lcrnet_jax.evaluation.make_detector`;
  - the evaluation loop of the demo config (`lcrnet_jax.evaluation.evaluate` on the same
    batches, decoded images given): its images/s over the forward's, printed below the
    table, is the share of the evaluation time spent in the model (issue #17 asks >= 0.8).

The model and optimizer come from the configs as in `lcrnet_jax.train.loop`; the
batches are random but shaped like the pipeline's: noise images holding 1-4 people each,
procedural 3D poses (`lcrnet_jax.data.poses`) turned to random headings, scaled to 30-90%
of the image height and placed inside it (2D = their scaled orthographic view, so that
boxes, anchor classes and regression targets are those of real people). The training
batch is sharded over every device (`make_mesh()`); the global batch is rounded up to a
multiple of the device count. A step's time includes putting the host batch on the
devices (`shard_batch`), as in the training loop; "compile s" is the step's lowering and
compilation (for the evaluation: its first call). Times are medians over the timed calls
(the evaluation's: of 3 rounds' mean per batch, `--steps` batches a round);
"fg RoIs" is the foreground fraction of the sampled RoIs in the last step (the paper
samples up to 25%), a check that the random people give real targets. "MFU" estimates
model FLOPs utilisation: the compiled step's FLOPs (XLA `cost_analysis`, per device) per
second over `--peak_tflops` (a device's peak; set it for the machine at hand).
"""

from __future__ import annotations

import argparse
import time

import jax
import numpy as np
from ppi_bench import _median_time  # benchmarks/ppi_bench.py, beside this script

from experiments.configs import synthetic, synthetic_tiny
from lcrnet_jax import anchors as anchors_lib
from lcrnet_jax import evaluation, geometry, losses, skeleton
from lcrnet_jax.data import poses as poses_lib
from lcrnet_jax.evaluation import generic
from lcrnet_jax.model import lcrnet, weights
from lcrnet_jax.train import loop
from lcrnet_jax.train import step as step_lib

MAX_PEOPLE_PER_IMAGE = 4


def pose_pool(num: int, joint_set: str, seed: int = 0) -> np.ndarray:
    """(num, J, 3) torso-centred procedural poses with random headings, metres."""
    rng = np.random.default_rng(seed)
    body = poses_lib.sample_poses(rng, num).poses
    turned = geometry.rotate(body, poses_lib.random_orientations(rng, num, max_tilt=0.1))
    return skeleton.convert(np.asarray(turned), None, "lcr17", joint_set)[0].astype(np.float32)


def random_batch(
    rng: np.random.Generator, pool: np.ndarray, *, batch_size: int, image_size, max_people: int
) -> dict[str, np.ndarray]:
    """A training batch like the pipeline's (the keys the step reads), people from `pool`.

    Returns:
      image (B, H, W, 3) uint8, image_size (B, 2) int32, poses2d (B, P, J, 2) pixels,
      poses3d (B, P, J, 3) metres, visible (B, P, J), has_3d (B, P), person_valid (B, P).
    """
    height, width = image_size
    shape = (batch_size, max_people)
    chosen = pool[rng.integers(0, len(pool), shape)]  # (B, P, J, 3)
    extent = np.ptp(chosen[..., 1], axis=-1)  # (B, P) body heights, metres
    pixels_per_metre = rng.uniform(0.3, 0.9, shape) * height / extent
    view = chosen[..., :2] * pixels_per_metre[..., None, None]
    low, high = view.min(axis=-2), view.max(axis=-2)  # (B, P, 2) the pose's 2D extent
    corner = rng.uniform(0.0, 1.0, low.shape) * np.maximum([width, height] - (high - low), 0.0)
    poses2d = (view - low[..., None, :] + corner[..., None, :]).astype(np.float32)
    count = rng.integers(1, min(MAX_PEOPLE_PER_IMAGE, max_people) + 1, batch_size)
    person_valid = np.arange(max_people) < count[:, None]
    inside = ((poses2d >= 0) & (poses2d < [width, height])).all(-1)
    visible = person_valid[..., None] & inside & (rng.random(inside.shape) > 0.1)
    return {
        "image": rng.integers(0, 256, (batch_size, height, width, 3), dtype=np.uint8),
        "image_size": np.tile(np.asarray([height, width], np.int32), (batch_size, 1)),
        "poses2d": np.where(person_valid[..., None, None], poses2d, 0.0).astype(np.float32),
        "poses3d": np.where(person_valid[..., None, None], chosen, 0.0).astype(np.float32),
        "visible": visible,
        "has_3d": person_valid,
        "person_valid": person_valid,
        "boxes": np.zeros((*shape, 4), np.float32),
        "ignore_boxes": np.zeros((*shape, 4), np.float32),
    }


def _setup(config, pool: np.ndarray, *, random_init: bool):
    """(model, variables, mean pose) of a config, its anchors fitted (K-means) on `pool`."""
    anchors = anchors_lib.fit_anchor_poses(
        pool, config.anchor_poses.num, joint_set=config.data.joint_set,
        upper_body=config.anchor_poses.upper_body, normalize=config.anchor_poses.normalize,
    )  # fmt: skip
    mean_pose = anchors_lib.fit_anchor_poses(
        pool, 1, joint_set=config.data.joint_set, normalize=False
    )
    net_config = loop.model_config(config)
    if random_init:  # no initialiser to compile (tens of seconds for R50 on CPU)
        shapes = lcrnet.variable_shapes(net_config)
        variables = lcrnet.with_anchor_poses(weights.random_weights(shapes, scale=0.02), anchors)
    else:
        variables = lcrnet.init_variables(net_config, jax.random.key(0), anchors=anchors)
    return lcrnet.LCRNet(net_config), variables, mean_pose


def _flops(compiled) -> float:
    """FLOPs per call of a compiled function (per device), from XLA's cost analysis."""
    cost = compiled.cost_analysis()
    cost = cost[0] if isinstance(cost, (list, tuple)) else cost
    return float((cost or {}).get("flops", float("nan")))


def train_row(name: str, config, *, steps: int, random_init: bool, peak: float) -> list:
    """Times `steps` training steps of `config` right after compiling the step."""
    print(f"timing {name} ...", flush=True)
    mesh = step_lib.make_mesh()
    devices = mesh.devices.size
    batch_size = -(-config.data.batch_size // devices) * devices
    pool = pose_pool(2000, config.data.joint_set)
    model, variables, _ = _setup(config, pool, random_init=random_init)
    schedule, tx = loop.optimizer(config, variables, model)
    state = step_lib.create_train_state(variables, tx)
    shardings = step_lib.state_shardings(state, mesh)
    state = jax.device_put(state, shardings)
    train_step = step_lib.make_train_step(
        model, tx, mesh, schedule=schedule, config=step_lib.TargetConfig(**config.targets),
        loss_config=losses.loss_config(config.loss), state_sharding=shardings,
    )  # fmt: skip
    rng = np.random.default_rng(1)
    size = tuple(config.data.image_size)
    batches = [
        random_batch(rng, pool, batch_size=batch_size, image_size=size,
                     max_people=config.data.max_people)
        for _ in range(2)
    ]  # fmt: skip
    key = jax.random.key(0)
    start = time.perf_counter()
    compiled = train_step.lower(state, step_lib.shard_batch(batches[0], mesh), key).compile()
    compile_s = time.perf_counter() - start
    calls, metrics = iter(range(steps)), {}

    def one_step():
        nonlocal state, metrics
        batch = step_lib.shard_batch(batches[next(calls) % 2], mesh)
        state, metrics = compiled(state, batch, key)
        jax.block_until_ready(metrics)

    step_s = _median_time(one_step, steps)
    foreground = f"{float(metrics['foreground_fraction']):.2f}"
    mfu = _flops(compiled) / step_s / (1e12 * peak)
    return _row(name, devices, batch_size, compile_s, step_s) + [foreground, f"{mfu:.2%}"]


def _row(name: str, devices: int, batch_size: int, compile_s: float, step_s: float) -> list:
    kind = jax.devices()[0].device_kind
    return [name, kind, devices, batch_size, f"{compile_s:.1f}", f"{step_s:.3f}",
            f"{1 / step_s:.3g}", f"{batch_size / step_s:.3g}"]  # fmt: skip


def eval_rows(name: str, config, *, calls: int) -> tuple[list[list], float]:
    """Times the evaluation forward (network + PPI/NMS/baselines) of `config`, then the
    whole evaluation loop (`evaluation.evaluate`: forward, matching, metrics) per batch.

    Both times are the same statistic: the median over 3 rounds of a round's mean time
    per batch, `calls` batches a round. Returns the two rows and forward s / loop s."""
    print(f"timing {name} ...", flush=True)
    pool = pose_pool(2000, config.data.joint_set)
    model, variables, mean_pose = _setup(config, pool, random_init=False)
    detect = evaluation.make_detector(
        model, ppi_config=loop.ppi_config(config), mean_pose=mean_pose
    )  # fmt: skip
    batch_size = config.eval.batch_size
    batch = random_batch(
        np.random.default_rng(2), pool, batch_size=batch_size,
        image_size=tuple(config.data.image_size), max_people=config.data.max_people,
    )  # fmt: skip

    def forward():
        jax.block_until_ready(detect(variables, batch["image"], batch["image_size"]))

    def forward_round():
        for _ in range(calls):
            forward()

    start = time.perf_counter()
    forward()
    first_s = time.perf_counter() - start
    forward_s = _median_time(forward_round, 3) / calls
    forward_row = _row(name, 1, batch_size, first_s, forward_s) + ["-", "-"]
    # The whole evaluation loop on the same batch: the model, then matching and metrics.
    batch = dict(
        batch, index=np.arange(batch_size), offset=np.zeros((batch_size, 2), np.float32),
        scale=np.ones(batch_size, np.float32), people_beyond_slots=np.zeros(batch_size, np.int32),
    )  # fmt: skip

    def loop_once():
        evaluators = [generic.GenericEvaluator(joint_set=config.data.joint_set)]
        evaluation.evaluate(detect, variables, [batch] * calls, evaluators, batch_size=batch_size)

    loop_once()  # compiles the metrics' own jitted functions
    loop_s = _median_time(loop_once, 3) / calls
    loop_row = _row(name.replace("forward", "loop"), 1, batch_size, 0.0, loop_s) + ["-", "-"]
    return [forward_row, loop_row], forward_s / loop_s


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="skip the R50-C4 row")
    parser.add_argument("--steps", type=int, default=6, help="timed calls of the small rows")
    parser.add_argument("--r50_steps", type=int, default=2, help="timed R50-C4 steps")
    parser.add_argument("--r50_rois", type=int, default=512, help="R50-C4 sampled RoIs")
    parser.add_argument(
        "--peak_tflops", type=float, default=0.2,
        help="peak float32 TFLOP/s of one device for the MFU estimate; the default 0.2 is "
        "a 2-core AVX2 CPU (2 cores x 3 GHz x 32 FLOP/cycle); H100 bf16 dense: 989",
    )  # fmt: skip
    args = parser.parse_args()

    print(f"jax {jax.__version__}, backend {jax.default_backend()}, devices {jax.devices()}")
    tiny = synthetic_tiny.get_config()
    size = "x".join(map(str, tiny.data.image_size))
    rows = [train_row(f"train step, synthetic_tiny (small, {size})", tiny, steps=args.steps,
                      random_init=False, peak=args.peak_tflops)]  # fmt: skip
    if not args.quick:
        r50 = synthetic.get_config()
        r50.data.batch_size = 1
        r50.targets.roi_samples = args.r50_rois
        rows.append(train_row(f"train step, R50-C4 (512x512, {args.r50_rois} RoIs)", r50,
                              steps=args.r50_steps, random_init=True,
                              peak=args.peak_tflops))  # fmt: skip
    eval_table, eval_ratio = eval_rows("eval forward + PPI, synthetic_tiny", tiny, calls=args.steps)
    rows += eval_table

    header = ["what", "device", "devices", "batch", "compile s", "median s", "steps/s",
              "images/s", "fg RoIs", "MFU"]  # fmt: skip
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    for row in [header, ["-" * w for w in widths], *rows]:
        print("  ".join(str(c).ljust(w) for c, w in zip(row, widths, strict=True)))
    print(
        f"evaluation loop / forward + PPI, images/s: {eval_ratio:.2f} (issue #17 asks >= 0.8; "
        "both the median of 3 rounds' mean per batch)"
    )


if __name__ == "__main__":
    main()
