"""Model benchmark: compile and forward times, parameter counts (LCR-Net++ Sec. 3.5).

Prints one table: the R50-C4 LCRNet (released configuration, random weights) at short
sides 512 and 800, the small model at 256 (inference, and a training step: forward +
backward through trunk, RPN and head), and the ResNet-50 backbone alone at 512x683 and
800x1216; when torch and torchvision are installed, torchvision's ResNet-50
(channels_last, no_grad, its frozen BatchNorm folded into the convolutions by
`torch.fx.experimental.optimization.fuse` as ours is, checked against the unfused model
to 1e-4) runs on the same input in the same process and the ratio ours / torch is
printed. With torch, `--per_layer` instead prints each distinct
convolution layer of our ResNet-50 at 512x683 timed alone against torch's (channels_last)
on the same shapes: where the backbone's ratio comes from.

python benchmarks/model_bench.py [--rois 100] [--reps 3] [--skip_800] [--per_layer]
"""

from __future__ import annotations

import argparse
import collections
import os
import time

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from lcrnet_jax.model import backbones, lcrnet, weights
from lcrnet_jax.model.lcrnet import LCRNet

# torch's idle OpenMP threads otherwise spin on the cores after each of its calls and
# slow the XLA calls timed next (ResNet-50 at 800x1216: 1.27-1.39 s right after torch's
# calls against 1.14-1.26 s before them, 2-core CPU, 2026-12-04); torch's own times do
# not change. Set before torch starts its threads.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")


def _time(fn, *args, reps: int) -> tuple[float, float]:
    """(compile time of jitted `fn`, median time of `reps` calls after a warm-up), s.

    The arguments go on the device first: numpy ones would be copied in on every call.
    """
    args = jax.device_put(args)
    start = time.perf_counter()
    compiled = jax.jit(fn).lower(*args).compile()
    compile_s = time.perf_counter() - start
    jax.block_until_ready(compiled(*args))
    times = []
    for _ in range(reps):
        start = time.perf_counter()
        jax.block_until_ready(compiled(*args))
        times.append(time.perf_counter() - start)
    return compile_s, float(np.median(times))


def _time_torch(fn, reps: int) -> float:
    fn()
    times = []
    for _ in range(reps):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return float(np.median(times))


def _random_variables(config):
    """Random variables of the right shapes, without compiling an initialiser."""
    return weights.random_weights(lcrnet.variable_shapes(config), scale=0.02)


def _random_variables_of(module, x):
    shapes = jax.eval_shape(module.init, jax.random.key(0), x)
    return weights.random_weights(shapes, scale=0.02)


def _count(tree) -> float:
    return sum(np.prod(x.shape) for x in jax.tree_util.tree_leaves(tree)) / 1e6


def _inference_row(name, config, hw, reps, batch=1):
    variables = _random_variables(config)
    images = jnp.asarray(np.random.default_rng(0).integers(0, 255, (batch, *hw, 3)), jnp.uint8)
    sizes = jnp.asarray([hw] * batch, jnp.int32)
    compile_s, steady = _time(LCRNet(config).apply, variables, images, sizes, reps=reps)
    return [name, f"{hw[0]}x{hw[1]}", f"{compile_s:.1f}", f"{steady / batch:.3f}",
            f"{_count(variables['params']):.1f}", ""]  # fmt: skip


def _train_row(config, hw, reps, batch=2, rois=128):
    model = LCRNet(config)
    variables = jax.device_put(_random_variables(config))  # the non-params are closed over
    images = jnp.asarray(np.random.default_rng(0).integers(0, 255, (batch, *hw, 3)), jnp.uint8)
    sizes = jnp.asarray([hw] * batch, jnp.int32)

    def loss(params):
        v = {**variables, "params": params}
        feats = model.apply(v, images, train=True, method=LCRNet.features)
        obj, deltas = model.apply(v, feats, method=LCRNet.rpn)
        props = model.apply(
            v, obj, deltas, sizes, feature_size=feats.shape[1:3], train=True,
            method=LCRNet.proposals,
        )  # fmt: skip
        outs = model.apply(v, feats, props.boxes[:, :rois], train=True, method=LCRNet.head)
        head = sum(jnp.mean(o.logits**2) + jnp.mean(o.regression**2) for o in outs)
        return head + jnp.mean(obj**2) + jnp.mean(deltas**2)

    compile_s, steady = _time(jax.grad(loss), variables["params"], reps=reps)
    return [f"small train step ({rois} RoIs/img)", f"{hw[0]}x{hw[1]}", f"{compile_s:.1f}",
            f"{steady / batch:.3f}", f"{_count(variables['params']):.1f}",
            f"{batch / steady:.1f} img/s"]  # fmt: skip


def _resnet_rows(hw, reps):
    """ResNet-50 to res5 (frozen BN folded into the convs) vs torchvision, same input."""
    rng = np.random.default_rng(0)
    x = rng.normal(size=(1, *hw, 3)).astype(np.float32)
    try:
        import torch
        import torchvision
    except ImportError:
        torch = None
    if torch is not None:
        torch.manual_seed(0)
        tv = torchvision.models.resnet50().eval()
        with torch.no_grad():  # BatchNorm other than the identity, so that folding matters
            for bn in (m for m in tv.modules() if isinstance(m, torch.nn.BatchNorm2d)):
                bn.weight.uniform_(0.5, 1.5)
                bn.bias.normal_(0.0, 0.1)
                bn.running_mean.normal_(0.0, 0.1)
                bn.running_var.uniform_(0.5, 2.0)
        sd = {k: v.numpy() for k, v in tv.state_dict().items()}
        params = weights.resnet_params_from_torchvision(sd, 50)
    else:
        params = _random_variables_of(backbones.ResNet(depth=50), x)["params"]
    model = backbones.ResNet(depth=50)
    fn = jax.jit(lambda p, im: model.apply({"params": p}, im)["res5"])
    compile_s, ours = _time(fn, params, x, reps=reps)
    rows = [["ResNet-50 to res5 (ours, BN folded)", f"{hw[0]}x{hw[1]}", f"{compile_s:.1f}",
             f"{ours:.3f}", f"{_count(params):.1f}", ""]]  # fmt: skip
    if torch is not None:
        from torch.fx.experimental.optimization import fuse

        unfused = torch.nn.Sequential(*list(tv.children())[:-2])
        # BN folded into the convolutions, as ours: no separate BatchNorm op after each.
        body = fuse(unfused).to(memory_format=torch.channels_last)
        unfused = unfused.to(memory_format=torch.channels_last)
        xt = torch.from_numpy(x.transpose(0, 3, 1, 2).copy()).to(memory_format=torch.channels_last)
        with torch.no_grad():
            ref = body(xt).numpy().transpose(0, 2, 3, 1)
            unfused_ref = unfused(xt).numpy().transpose(0, 2, 3, 1)
            fold_err = float(np.abs(ref - unfused_ref).max() / np.abs(unfused_ref).max())
            assert fold_err < 1e-4, f"torch's BN folding changed the output by {fold_err:.1e}"
            err = float(np.abs(np.asarray(fn(params, x)) - ref).max() / np.abs(ref).max())
            theirs = _time_torch(lambda: body(xt), reps=reps)
            _, ours = _time(fn, params, x, reps=reps)  # again, right after torch's run
        note = f"ours/torch {ours / theirs:.2f} (ours {ours:.3f}), rel.err {err:.1e}"
        rows.append(["ResNet-50 torchvision (BN folded)", f"{hw[0]}x{hw[1]}", "-", f"{theirs:.3f}",
                     f"{_count(params):.1f}", note])  # fmt: skip
    return rows


def _resnet_convs(hw) -> collections.Counter:
    """{(input shape (1, H, W, C_in), kernel size, C_out, stride): count} of every
    `ConvNorm` layer of our ResNet-50's forward at `hw`."""
    x = jax.ShapeDtypeStruct((1, *hw, 3), jnp.float32)
    model = backbones.ResNet(depth=50)
    shapes = jax.eval_shape(model.init, jax.random.key(0), x)
    convs = collections.Counter()

    def record(call, args, kwargs, context):
        layer = context.module
        if isinstance(layer, backbones.ConvNorm) and context.method_name == "__call__":
            convs[(args[0].shape, layer.kernel_size, layer.features, layer.strides)] += 1
        return call(*args, **kwargs)

    with nn.intercept_methods(record):
        jax.eval_shape(model.apply, shapes, x)
    return convs


def _per_layer_rows(hw, reps):
    """Each distinct `ConvNorm` layer (convolution, frozen BN folded in, ReLU) alone,
    against torch's convolution with a bias and ReLU (channels_last)."""
    import torch  # only with --per_layer, which needs it

    rows, total_ours, total_torch = [], 0.0, 0.0
    rng = np.random.default_rng(0)
    for (shape, k, c_out, stride), count in _resnet_convs(hw).items():
        x = rng.normal(size=shape).astype(np.float32)
        layer = backbones.ConvNorm(c_out, kernel_size=k, strides=stride)
        variables = _random_variables_of(layer, x)
        _, ours = _time(layer.apply, variables, x, reps=reps)
        xt = torch.from_numpy(x.transpose(0, 3, 1, 2).copy()).contiguous(
            memory_format=torch.channels_last
        )
        conv = torch.nn.Conv2d(shape[-1], c_out, k, stride, (k - 1) // 2).eval()
        conv = conv.to(memory_format=torch.channels_last)
        with torch.no_grad():
            theirs = _time_torch(lambda xt=xt, conv=conv: torch.relu(conv(xt)), reps=reps)
        total_ours, total_torch = total_ours + count * ours, total_torch + count * theirs
        rows.append([f"{k}x{k} conv {shape[-1]}->{c_out}, stride {stride} (x{count})",
                     f"{shape[1]}x{shape[2]}", f"{ours:.4f}", f"{theirs:.4f}",
                     f"{ours / theirs:.2f}"])  # fmt: skip
    rows.append(["all layers, each timed alone", f"{hw[0]}x{hw[1]}", f"{total_ours:.3f}",
                 f"{total_torch:.3f}", f"{total_ours / total_torch:.2f}"])  # fmt: skip
    return ["layer", "input", "ours s", "torch s", "ours/torch"], rows


def _print_table(header, rows):
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    for row in [header, ["-" * w for w in widths], *rows]:
        print("  ".join(str(c).ljust(w) for c, w in zip(row, widths, strict=True)))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rois", type=int, default=100, help="R50-C4 test proposals")
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--skip_800", action="store_true")
    parser.add_argument(
        "--per_layer", action="store_true", help="each ResNet-50 convolution vs torch"
    )
    args = parser.parse_args()

    print(f"jax {jax.__version__}, backend {jax.default_backend()}, devices {jax.devices()}")
    if args.per_layer:
        _print_table(*_per_layer_rows((512, 683), args.reps))
        return
    released = lcrnet.released_config(rpn_post_nms_test=args.rois)
    rows = _resnet_rows((512, 683), args.reps)
    if not args.skip_800:
        rows += _resnet_rows((800, 1216), args.reps)
    rows.append(
        _inference_row(f"R50-C4 LCRNet ({args.rois} RoIs)", released, (512, 683), args.reps)
    )
    if not args.skip_800:
        rows.append(
            _inference_row(f"R50-C4 LCRNet ({args.rois} RoIs)", released, (800, 1067), args.reps)
        )
    small = lcrnet.small_config()
    rows.append(_inference_row("small LCRNet (100 RoIs)", small, (256, 256), args.reps, batch=2))
    rows.append(_train_row(small, (256, 256), args.reps))

    _print_table(["model", "input", "compile s", "s / image", "params M", "note"], rows)


if __name__ == "__main__":
    main()
