"""Timings of the detection ops at R50-C4 sizes, against torchvision's CPU kernels if present.

RoIAlign: features 1 x 50 x 75 x 1024 (an 800 x 1200 image at stride 16), 512 RoIs,
14 x 14 output, sampling_ratio 2, both backends, forward and forward+backward (gradient
of a sum of squares w.r.t. the features). NMS: 6000 boxes at IoU 0.7, random boxes (most
are kept) and boxes packed around 30 objects (few are kept); each twice: the RPN's job,
ours stopping at `max_outputs` 1000, and like for like, ours keeping every box as
torchvision's NMS does (the kept counts checked equal). Prints the first call (compile +
run) and the median steady-state time (block_until_ready) of each, and the ratio ours /
torchvision measured in the same run. torchvision's CPU roi_align and nms kernels are
single-threaded loops (torchvision/csrc/ops/cpu), while XLA's can use every core. The einsum
backend (the TPU form) is slow on CPU and timed `--einsum_repeats` times only.

python benchmarks/ops_bench.py [--repeats 3] [--einsum_repeats 1] [--rois 512] [--channels 1024]
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

import jax
import jax.numpy as jnp
import numpy as np

from lcrnet_jax import ops

# As model_bench.py: torch's idle OpenMP threads would spin and slow the XLA calls
# timed after its calls. Read when torch loads its OpenMP library.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

try:
    import torch
    import torchvision
except ImportError:
    torch = torchvision = None


def _time(fn, repeats):
    """(first-call seconds, median seconds of `repeats` further calls)."""
    start = time.perf_counter()
    jax.block_until_ready(fn())
    first = time.perf_counter() - start
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        jax.block_until_ready(fn())
        times.append(time.perf_counter() - start)
    return first, statistics.median(times)


def _random_boxes(rng, n, image_hw, min_size, max_size):
    xy = rng.uniform(0, [image_hw[1], image_hw[0]], size=(n, 2))
    wh = rng.uniform(min_size, max_size, size=(n, 2))
    return np.concatenate([xy, xy + wh], -1).astype(np.float32)


def bench_roi_align(args, rng):
    rows = []
    h, w = 50, 75
    feats = rng.standard_normal((1, h, w, args.channels), dtype=np.float32)
    boxes = _random_boxes(rng, args.rois, (16 * h, 16 * w), 16, 400)[None]
    kw = dict(spatial_scale=1 / 16, sampling_ratio=2, aligned=True)
    f_j, b_j = jnp.asarray(feats), jnp.asarray(boxes)
    tv = {}
    if torch is not None:
        f_t = torch.from_numpy(feats).permute(0, 3, 1, 2).contiguous()
        b_t = [torch.from_numpy(boxes[0])]

        def tv_fwd():
            with torch.no_grad():
                return torchvision.ops.roi_align(f_t, b_t, 14, 1 / 16, 2, True)

        def tv_fwd_bwd():
            x = f_t.detach().requires_grad_(True)
            torchvision.ops.roi_align(x, b_t, 14, 1 / 16, 2, True).square().sum().backward()
            return x.grad

        tv["forward"] = _time(lambda: torch.Tensor.numpy(tv_fwd()), args.repeats)[1]
        tv["forward+backward"] = _time(lambda: tv_fwd_bwd().numpy(), args.repeats)[1]
    for method, repeats in (("gather", args.repeats), ("einsum", args.einsum_repeats)):
        if repeats < 1:
            continue
        fwd = jax.jit(lambda f, b, m=method: ops.roi_align(f, b, 14, method=m, **kw))
        loss = lambda f, b, m=method: jnp.sum(jnp.square(ops.roi_align(f, b, 14, method=m, **kw)))
        fwd_bwd = jax.jit(jax.grad(loss))
        for name, fn in (("forward", fwd), ("forward+backward", fwd_bwd)):
            first, steady = _time(lambda fn=fn: fn(f_j, b_j), repeats)
            rows.append((f"roi_align {method} {name}", first, steady, tv.get(name)))
    return rows


def bench_nms(args, rng):
    rows = []
    random_boxes = _random_boxes(rng, 6000, (800, 1200), 10, 300)
    centres = rng.uniform(0, [1200, 800], size=(30, 2))
    sizes = rng.uniform(30, 300, size=(30, 2))
    obj = rng.integers(0, 30, 6000)
    c = centres[obj] + rng.normal(0, 0.05, (6000, 2)) * sizes[obj]
    wh = sizes[obj] * np.exp(rng.normal(0, 0.05, (6000, 2)))
    packed_boxes = np.concatenate([c - wh / 2, c + wh / 2], -1).astype(np.float32)
    scores = rng.uniform(size=6000).astype(np.float32)
    s_j = jnp.asarray(scores)
    for name, boxes in (("random", random_boxes), ("packed", packed_boxes)):
        tv = tv_kept = None
        if torch is not None:
            b_t, s_t = torch.from_numpy(boxes), torch.from_numpy(scores)
            tv_kept = len(torchvision.ops.nms(b_t, s_t, 0.7))  # every kept box
            tv = _time(
                lambda b_t=b_t, s_t=s_t: torchvision.ops.nms(b_t, s_t, 0.7).numpy(), args.repeats
            )[1]
        b_j = jnp.asarray(boxes)
        # The job (ours stops at 1000; torchvision has no limit), then like for like.
        for max_outputs, label in ((1000, "max 1000"), (len(boxes), "all")):
            fn = jax.jit(lambda b, s, m=max_outputs: ops.nms(b, s, 0.7, m))
            first, steady = _time(lambda fn=fn, b_j=b_j: fn(b_j, s_j), args.repeats)
            kept = int(fn(b_j, s_j)[1])
            if label == "all" and tv_kept is not None:
                assert kept == tv_kept, f"nms kept {kept} boxes, torchvision {tv_kept}"
            rows.append((f"nms 6000 -> {label}, kept {kept} ({name})", first, steady, tv))
    return rows


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--einsum_repeats", type=int, default=1, help="0 skips the einsum rows")
    parser.add_argument("--rois", type=int, default=512)
    parser.add_argument("--channels", type=int, default=1024)
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    print(f"jax {jax.__version__} on {jax.devices()[0].device_kind}", end="")
    print(f", torch {torch.__version__} threads {torch.get_num_threads()}" if torch else "")
    rows = bench_roi_align(args, rng) + bench_nms(args, rng)
    print(
        f"{'op':44s} {'compile+1st s':>13s} {'median s':>9s} {'torchvision s':>13s} {'ratio':>6s}"
    )
    for name, first, steady, ref in rows:
        ref_s = f"{ref:13.3f}" if ref else f"{'-':>13s}"
        ratio = f"{steady / ref:6.2f}" if ref else f"{'-':>6s}"
        print(f"{name:44s} {first:13.2f} {steady:9.3f} {ref_s} {ratio}")
    print(
        "nms: torchvision keeps every box (no limit); '-> all' has ours keep every box too "
        "(like for like), '-> max 1000' is the RPN's job."
    )
    if torch:
        print(
            f"threads: torchvision's CPU roi_align and nms kernels are single-threaded loops "
            f"(its csrc/ops/cpu); XLA's can use all {os.cpu_count()} cores."
        )


if __name__ == "__main__":
    main()
