r"""Regenerates the reference fixtures of the cross-checks in tests/data/.

/work/torchenv/bin/python tests/data/make_reference_fixtures.py \
    --authors_ppi=/path/to/lcrnet-v2-improved-ppi

Needs numpy, torch and torchvision (not jax, nor lcrnet_jax); `--authors_ppi` is a folder
holding the authors' `lcr_net_ppi.py` and `lcr_net_ppi_improved.py` (a checkout of their
LCR-Net release github.com/naver/lcrnet-v2-improved-ppi; GPL: keep it outside this
repository). The inputs come from the numpy seeds of `tests/reference_cases.py`, which
the tests rebuild; each fixture stores the outputs of the reference implementation and the
fingerprint of its inputs:

  roi_align_torchvision.npz  torchvision.ops.roi_align outputs and feature gradients
  nms_torchvision.npz        torchvision.ops.nms / batched_nms kept indices
  resnet_torchvision.npz     res4 (C4) and res5 features of a torchvision ResNet
  vgg16_torchvision.npz      conv5_3 (and part of conv4_3) of torchvision's vgg16().features
  ppi_authors.npz            the authors' LCRNet_PPI (and _improved) people on `PPI_SCENES`

`--only` regenerates some of them (comma-separated: roi_align, nms, resnet, vgg16,
ppi).
"""

from __future__ import annotations

import argparse
import hashlib
import importlib.util
import pathlib
import sys

import numpy as np

_HERE = pathlib.Path(__file__).resolve().parent
sys.path.insert(0, str(_HERE.parent))  # tests/, for its numpy-only input generators

import reference_cases as cases  # noqa: E402

FIXTURES = ("roi_align", "nms", "resnet", "vgg16", "ppi")
AUTHORS_FILES = ("lcr_net_ppi.py", "lcr_net_ppi_improved.py")


def _versions() -> dict[str, np.ndarray]:
    import torch
    import torchvision

    return {
        "torch_version": np.array(torch.__version__),
        "torchvision_version": np.array(torchvision.__version__),
    }


def make_roi_align() -> dict[str, np.ndarray]:
    """torchvision RoIAlign forward and feature gradient, per (aligned, sampling ratio)."""
    import torch
    import torchvision

    case = cases.roi_align_case()
    out = {"fingerprint": cases.fingerprint(*case.values())}
    features = torch.from_numpy(case["features"]).permute(0, 3, 1, 2).contiguous()
    boxes = [torch.from_numpy(b) for b in case["boxes"]]
    cotangent = torch.from_numpy(case["cotangent"])
    batch, rois = case["boxes"].shape[:2]
    for aligned in (True, False):
        for ratio in cases.ROI_ALIGN_RATIOS:
            f = features.clone().requires_grad_(True)
            pooled = torchvision.ops.roi_align(
                f, boxes, cases.ROI_ALIGN_OUTPUT, cases.ROI_ALIGN_SCALE, ratio, aligned
            )  # (B * R, C, out_h, out_w)
            nhwc = pooled.reshape(batch, rois, -1, *cases.ROI_ALIGN_OUTPUT).permute(0, 1, 3, 4, 2)
            (nhwc * cotangent).sum().backward()
            key = f"aligned{int(aligned)}_ratio{ratio}"
            out[f"{key}_output"] = nhwc.detach().numpy()
            out[f"{key}_grad"] = f.grad.permute(0, 2, 3, 1).numpy()
    return out


def make_nms() -> dict[str, np.ndarray]:
    """torchvision NMS and class-wise NMS kept indices, per case and IoU threshold."""
    import torch
    import torchvision

    out = {}
    for name, case in cases.nms_cases().items():
        out[f"{name}_fingerprint"] = cases.fingerprint(*case.values())
        boxes, scores = torch.from_numpy(case["boxes"]), torch.from_numpy(case["scores"])
        classes = torch.from_numpy(case["classes"]).long()
        for threshold in cases.NMS_THRESHOLDS[name]:
            key = f"{name}_iou{threshold}"
            out[f"{key}_nms"] = torchvision.ops.nms(boxes, scores, threshold).numpy()
            kept = torchvision.ops.batched_nms(boxes, scores, classes, threshold)
            out[f"{key}_batched"] = kept.numpy()
    return {k: v.astype(np.int32) if v.dtype.kind == "i" else v for k, v in out.items()}


def make_resnet() -> dict[str, np.ndarray]:
    """res4 (C4) and res5 of torchvision's ResNet(Bottleneck, RESNET_BLOCKS), NCHW."""
    import torch
    from torchvision.models.resnet import Bottleneck, ResNet

    case = cases.resnet_case()
    model = ResNet(Bottleneck, list(cases.RESNET_BLOCKS), num_classes=10).eval()
    # strict: every name and shape of the numpy state dict is torchvision's own.
    model.load_state_dict({k: torch.from_numpy(v) for k, v in case["state_dict"].items()})
    with torch.no_grad():
        x = torch.from_numpy(case["image"])
        x = model.maxpool(model.relu(model.bn1(model.conv1(x))))
        res4 = model.layer3(model.layer2(model.layer1(x)))
        res5 = model.layer4(res4)
    return {
        "fingerprint": cases.resnet_fingerprint(case),
        "res4": res4.numpy(),
        "res5": res5.numpy(),
    }


def make_vgg16() -> dict[str, np.ndarray]:
    """conv4_3 (its first `VGG16_CONV4_3_CHANNELS` channels) and conv5_3 of torchvision's
    `vgg16().features`, NCHW, each after its ReLU; conv5_3 without the last max-pool."""
    import torch
    import torchvision

    case = cases.vgg16_case()
    model = torchvision.models.vgg16(weights=None).eval()
    # every name and shape of the numpy state dict is torchvision's own; only the
    # classifier is left out.
    state_dict = {k: torch.from_numpy(v) for k, v in case["state_dict"].items()}
    missing, unexpected = model.load_state_dict(state_dict, strict=False)
    assert not unexpected and all(k.startswith("classifier.") for k in missing), missing
    with torch.no_grad():
        conv4_3 = model.features[:23](torch.from_numpy(case["image"]))  # after ReLU 22
        conv5_3 = model.features[23:30](conv4_3)  # pool4 ... ReLU 29, before pool5
    return {
        "fingerprint": cases.vgg16_fingerprint(case),
        "conv4_3": conv4_3[:, : cases.VGG16_CONV4_3_CHANNELS].numpy(),
        "conv5_3": conv5_3.numpy(),
    }


def authors_candidates(scene: dict[str, np.ndarray]) -> np.ndarray:
    """(R * (C - 1),) bool: the (RoI, class) pairs the authors' detection code keeps.

    Their rule (their detection code): probability >= 0.1 / (C - 1), the threshold lowered to the
    n-th best probability if fewer than n = min(500, pairs - 1) pairs are above it.
    """
    scores = scene["probs"][:, 1:].ravel()
    threshold = 0.1 / (scene["probs"].shape[1] - 1)
    floor = min(500, scores.size - 1)
    if np.sum(scores > threshold) < floor:
        threshold = np.sort(scores)[::-1][floor - 1]
    return scores >= threshold


def _load_module(path: pathlib.Path):
    spec = importlib.util.spec_from_file_location(path.stem, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _people(out: dict, key: str, people: list[dict], score: str, joints: int) -> None:
    """Stores the authors' people, best first: `{key}_scores` (P,), `_poses2d` (P, J, 2),
    `_poses3d` (P, J, 3). The original gives flat coordinate-major poses (x of every
    joint, then y ...), the improved one (J, D) arrays."""
    out[f"{key}_scores"] = np.array([p[score] for p in people], np.float32).reshape(-1)
    for dim in (2, 3):
        poses = [np.asarray(p[f"pose{dim}d"]) for p in people]
        poses = [p.reshape(dim, joints).T if p.ndim == 1 else p for p in poses]
        out[f"{key}_poses{dim}d"] = np.array(poses, np.float32).reshape(-1, joints, dim)


def make_ppi(authors_dir: pathlib.Path) -> dict[str, np.ndarray]:
    """The authors' PPI on every `PPI_SCENES` scene with the `PPI_CONFIGS` sets.

    `LCRNet_PPI` (the original, lcr_net_ppi.py) gets the candidates of
    `authors_candidates` and every parameter set: `{scene}_{config}_*`.
    `LCRNet_PPI_improved` (lcr_net_ppi_improved.py, the later release that groups by RoI)
    gets the network outputs of the LCR-13 scenes and the "default" and "inthewild"
    sets: `{scene}_{config}_roi_*`.
    """
    sources = [authors_dir / f for f in AUTHORS_FILES]
    original, improved = (_load_module(f) for f in sources)
    out = {
        f"sha256_{f.stem}": np.array(hashlib.sha256(f.read_bytes()).hexdigest()) for f in sources
    }
    for name in cases.PPI_SCENES:
        scene = cases.ppi_scene(name)
        out[f"{name}_fingerprint"] = cases.ppi_scene_fingerprint(scene)
        kept = authors_candidates(scene)
        out[f"{name}_kept"] = kept
        rois, classes, joints = scene["poses2d"].shape[:3]
        fg = slice(1, None)
        poses2d = scene["poses2d"][:, fg].reshape(-1, joints, 2)[kept]
        poses3d = scene["poses3d"][:, fg].reshape(-1, joints, 3)[kept]
        res = {  # the authors' layout: x of every joint, then y (then z)
            "regpose2d": poses2d.transpose(0, 2, 1).reshape(-1, 2 * joints),
            "regpose3d": poses3d.transpose(0, 2, 1).reshape(-1, 3 * joints),
            "regscore": scene["probs"][:, fg].reshape(-1, 1)[kept],
            "regclass": np.tile(np.arange(1, classes, dtype=np.float32), rois)[kept, None],
        }
        image_size = tuple(int(v) for v in scene["image_size"])
        for config, kwargs in cases.PPI_CONFIGS.items():
            people = original.LCRNet_PPI(res, cases.PPI_ANCHORS, image_size, J=joints, **kwargs)
            _people(out, f"{name}_{config}", people, "cumscore", joints)
            if joints == 13 and config in ("default", "inthewild"):
                people = improved.LCRNet_PPI_improved(
                    scene["probs"],
                    scene["boxes"],
                    scene["poses2d"][:, fg],
                    scene["poses3d"][:, fg],
                    image_size,
                    K=cases.PPI_ANCHORS,
                    **kwargs,
                )
                _people(out, f"{name}_{config}_roi", people, "score", joints)
    return out


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--authors_ppi", type=pathlib.Path, help="folder with the authors PPI code")
    parser.add_argument("--only", default=",".join(FIXTURES), help="comma-separated fixtures")
    parser.add_argument("--out", type=pathlib.Path, default=_HERE, help="output folder")
    args = parser.parse_args(argv)
    only = args.only.split(",")
    unknown = sorted(set(only) - set(FIXTURES))
    if unknown:
        parser.error(f"--only: unknown fixtures {unknown}, expected some of {FIXTURES}")
    if "ppi" in only:
        if args.authors_ppi is None:
            parser.error("the ppi fixture needs --authors_ppi=FOLDER (or leave ppi out of --only)")
        missing = [f for f in AUTHORS_FILES if not (args.authors_ppi / f).is_file()]
        if missing:
            parser.error(f"--authors_ppi={args.authors_ppi} lacks the authors' {missing}")
    if set(only) - {"ppi"} and importlib.util.find_spec("torchvision") is None:
        parser.error(f"{sorted(set(only) - {'ppi'})} need torch and torchvision in this python")
    makers = {
        "roi_align": ("roi_align_torchvision.npz", make_roi_align),
        "nms": ("nms_torchvision.npz", make_nms),
        "resnet": ("resnet_torchvision.npz", make_resnet),
        "vgg16": ("vgg16_torchvision.npz", make_vgg16),
        "ppi": ("ppi_authors.npz", lambda: make_ppi(args.authors_ppi)),
    }
    for name in only:
        filename, make = makers[name]
        arrays = make()
        if name != "ppi":
            arrays.update(_versions())
        path = args.out / filename
        np.savez_compressed(path, **arrays)
        print(f"{path}: {path.stat().st_size / 1024:.1f} KiB")


if __name__ == "__main__":
    main()
