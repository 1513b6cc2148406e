"""Evaluation inference: the network and every method's people on evaluation batches, fed
to the evaluators (LCR-Net++ Sec. 4).

Per image, the network's pose proposals become candidates (every (RoI, class) pair
above `ppi.candidate_threshold` / K), then people in four ways, side by side as in the
paper's tables:
  - "ppi": pose proposal integration (Sec. 3.6, Eq. 6-8);
  - "nms": the NMS baseline, the top-scoring proposal of each region;
  - "anchor": the NMS baseline on the anchor poses themselves placed in their RoIs,
    i.e. classification without regression (a trivial baseline);
  - "mean_pose": the mean training pose placed in each box the NMS baseline found
    (a trivial baseline: localisation only);
and `base.FALLBACK`, the highest-scoring candidate, for the protocols that score every
frame. `evaluate` runs them over a split and gives each batch to every evaluator
(`base.Evaluator`).
"""

from __future__ import annotations

import dataclasses
import pickle
import zlib
from collections.abc import Callable, Iterable, Iterator, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from absl import logging
from jax.experimental import multihost_utils
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

from lcrnet_jax import anchors as anchors_lib
from lcrnet_jax import ops, skeleton
from lcrnet_jax.evaluation.base import FALLBACK, METHODS, Evaluator, original_pixels
from lcrnet_jax.model import lcrnet as lcrnet_lib
from lcrnet_jax.postprocess import candidates as candidates_lib
from lcrnet_jax.postprocess import detect as detect_lib
from lcrnet_jax.postprocess import nms_baseline, ppi


def make_detector(
    model: lcrnet_lib.LCRNet,
    *,
    ppi_config: ppi.PPIConfig,
    mean_pose: anchors_lib.AnchorPoses | None = None,
    mesh: Mesh | None = None,
) -> Callable:
    """`detect(variables, images, image_size) -> {method: PPIResult (B, P, ...)}`.

    The methods are those of `base.METHODS` and `base.FALLBACK` (the best candidate);
    "ppi"'s people are polished by the network (`postprocess.detect.polish`).

    The network and the post-processing (candidates, PPI, NMS and the baselines,
    vmapped over the batch) run in one jit; with a `mesh`, sharded like the training
    step: the batch (a multiple of the "data" axis size) over "data" (each device pools
    its own images' RoIs and runs their proposals' NMS and their PPI and NMS loops,
    `ops.per_image`), the variables as they are placed (replicated, or split over
    "model" like the training state), the results keeping the batch sharding. The
    mesh holds one host's devices: the batches are that host's numpy arrays.

    Args:
      model: the network.
      ppi_config: every PPI/NMS and candidate setting (rescoring included).
      mean_pose: a single "anchor" holding the mean training pose (`fit_anchor_poses`
        with K = 1); None leaves out the "mean_pose" baseline.
      mesh: a ("data", ...) mesh of this host's devices (`train.step.make_mesh`); None:
        the default device.
    """
    # Under vmap the PPI's buffer compaction only costs (`ppi.PPIConfig.min_buffer`).
    ppi_config = dataclasses.replace(ppi_config, min_buffer=2**30)

    def post_process(out, image_size, anchors):
        cands = detect_lib.image_candidates(
            out.boxes, out.probs, out.poses2d, out.poses3d, out.valid,
            upper_body_classes=anchors.upper_body_classes, config=ppi_config,
        )  # fmt: skip
        inputs = dict(cands.ppi_inputs(), image_size=image_size, config=ppi_config)
        results = {"ppi": ppi.ppi(**inputs), "nms": nms_baseline.nms_poses(**inputs)}
        anchor2d, anchor3d = _anchor_poses_seen(anchors, cands, out.mirrored)
        anchor_inputs = dict(
            inputs,
            poses2d=anchors_lib.denormalize_in_box(anchor2d, cands.rois),
            poses3d=anchor3d,
        )
        results["anchor"] = nms_baseline.nms_poses(**anchor_inputs)
        if mean_pose is not None:
            nms = results["nms"]
            boxes = anchors_lib.full_body_box(
                nms.poses2d, joint_set=mean_pose.joint_set, margin=mean_pose.margin
            )
            people = nms.valid.shape[0]
            results["mean_pose"] = nms.replace(
                poses2d=anchors_lib.denormalize_in_box(mean_pose.pose2d[0], boxes),
                poses3d=jnp.broadcast_to(
                    mean_pose.pose3d[0], (people, *mean_pose.pose3d.shape[1:])
                ),
            )
        results[FALLBACK] = _best_candidate(cands)
        return results

    def detect(variables, images, image_size):
        out = model.apply(variables, images, image_size)
        anchors = lcrnet_lib.anchor_poses(variables, model.config)
        results = ops.per_image(
            jax.vmap(post_process, in_axes=(0, 0, None)), out, image_size, shared=(anchors,)
        )
        results["ppi"] = detect_lib.polish(model, variables, images, image_size, results["ppi"])
        return results

    if mesh is None:
        return jax.jit(detect)
    data = NamedSharding(mesh, P("data"))
    # The variables keep their own sharding (replicated, or split over "model" as the
    # training state's).
    return jax.jit(
        ops.under_mesh(detect, mesh), in_shardings=(None, data, data), out_shardings=data
    )


def _anchor_poses_seen(anchors, cands: candidates_lib.Candidates, mirrored):
    """(N, J, 2) box units and (N, J, 3) metres: each candidate's anchor pose, mirrored
    for the RoIs seen in the mirrored image (`mirrored` (R,) bool, `flip_test`)."""
    index = cands.class_index - 1
    pose2d, pose3d = anchors.pose2d[index], anchors.pose3d[index]
    flip = mirrored[cands.roi_index][:, None, None]
    return (
        jnp.where(flip, skeleton.flip_poses(pose2d, anchors.joint_set, image_width=1.0), pose2d),
        jnp.where(flip, skeleton.flip_poses(pose3d, anchors.joint_set), pose3d),
    )


def _best_candidate(cands: candidates_lib.Candidates) -> ppi.PPIResult:
    """The highest-scoring valid candidate as a one-row `PPIResult` (invalid if none)."""
    best = jnp.argmax(jnp.where(cands.valid, cands.scores, -jnp.inf))
    return ppi.PPIResult(
        poses2d=cands.poses2d[best][None], poses3d=cands.poses3d[best][None],
        scores=cands.scores[best][None], valid=cands.valid[best][None],
    )  # fmt: skip


def evaluate(
    detect: Callable,
    variables: dict,
    batches: Iterable[dict],
    evaluators: Sequence[Evaluator],
    *,
    batch_size: int,
    progress: Callable[[Iterable], Iterable] | None = None,
    over_hosts: bool = False,
) -> tuple[dict[str, dict], list]:
    """Runs `detect` over evaluation batches and gives each batch to every evaluator.

    Args:
      detect: `detect(variables, images, image_size) -> {method: PPIResult}`, e.g. from
        `make_detector`.
      variables: the model's variables.
      batches: evaluation batches of `lcrnet_jax.data.pipeline.make_loader(train=False)`,
        of any size and canvas (size buckets: one image a batch); `by_canvas` regroups
        them into batches of `batch_size` images of one canvas, and a smaller batch (the
        last of each canvas) is padded to `batch_size` with copies of its last image (one
        compile per canvas) and the padding cut off again before the evaluators see it.
      evaluators: reset first, then `process(batch, people)` per batch.
      batch_size: images per call of `detect`.
      progress: optional wrapper of the batch iterable (e.g. tqdm).
      over_hosts: `batches` hold this host's share of the split, one of several hosts
        (`jax.process_count()`, every host calling `evaluate` with its own share): once
        each host has run `detect` on its share, the people of every host are gathered
        and every host's evaluators see all of the split's images, by index (a
        collective: every host must call it).

    People left out of the batches' slots (`max_people` of the loader) are counted in a
    warning: they are not evaluated.

    Returns:
      ({evaluator name: its `evaluate()`}, the people of "ppi" (of the first method of
      `METHODS` that `detect` gives) in original-image pixels, laid out as COCO keypoint
      results: dicts with image_id (the record index, not COCO's id), category_id 1,
      keypoints [x, y, v] * J (the model's J LCR joints, in their order), score), by
      image_id, each image's people in PPI's order).
    """
    for evaluator in evaluators:
        evaluator.reset()
    coco, shares = [], []

    def score(batch, people):
        for evaluator in evaluators:
            evaluator.process(batch, people)
        coco.extend(_coco_results(people[next(m for m in METHODS if m in people)], batch))

    def take(batch, people):
        # One device-to-host copy per batch; the evaluators index numpy.
        people = jax.tree.map(lambda x: np.asarray(x)[: len(batch["index"])], people)
        if over_hosts:  # scored once every host's people are here
            shares.append(({k: v for k, v in batch.items() if k != "image"}, people))
        else:
            score(batch, people)

    previous, left_out, crowded = None, 0, 0
    for batch in by_canvas(progress(batches) if progress else batches, batch_size):
        beyond = np.asarray(batch["people_beyond_slots"])
        left_out, crowded = left_out + int(beyond.sum()), crowded + np.count_nonzero(beyond)
        padded = {k: _pad(v, batch_size) for k, v in batch.items()}
        # Dispatched asynchronously: the device works on this batch while the host
        # scores the previous one.
        people = detect(variables, padded["image"], padded["image_size"])
        if previous is not None:
            take(*previous)
        previous = (batch, people)
    if previous is not None:
        take(*previous)
    if over_hosts:
        for batch, people in _by_index(_from_every_host(shares), batch_size):
            score(batch, people)
    if left_out:
        slots = previous[0]["person_valid"].shape[-1]
        logging.warning(
            "%d people of %d image(s) did not fit in the %d people slots and are not "
            "evaluated (raise config.eval.max_people)", left_out, crowded, slots,
        )  # fmt: skip
    coco.sort(key=lambda result: result["image_id"])  # stable: people keep their order
    return {e.name: e.evaluate() for e in evaluators}, coco


def by_canvas(batches: Iterable[dict], batch_size: int) -> Iterator[dict]:
    """Batches of `batch_size` images of one canvas (H, W) from `batches` of any size and
    canvas: a canvas's images leave as soon as they fill a batch, the rest at the end (a
    smaller batch per canvas, in the order the canvases came). Batches already of
    `batch_size` images pass as they are.

    Args:
      batches: dicts of (B, ...) numpy arrays, B >= 1, "image" (B, H, W, 3).
      batch_size: images per batch, >= 1.
    """
    waiting: dict[tuple[int, ...], list[dict]] = {}  # canvas -> batches, fewer images than a batch
    for batch in batches:
        group = waiting.setdefault(np.shape(batch["image"])[1:], [])
        group.append(batch)
        if sum(len(b["image"]) for b in group) < batch_size:
            continue
        ready = _concatenate(group)
        size = len(ready["image"])
        full = size - size % batch_size
        for start in range(0, full, batch_size):
            yield {k: v[start : start + batch_size] for k, v in ready.items()}
        group[:] = [{k: v[full:] for k, v in ready.items()}] if full < size else []
    for group in waiting.values():
        if group:
            yield _concatenate(group)


def _from_every_host(shares: list) -> list:
    """The `shares` (a picklable list) of every host, host after host: its compressed
    bytes gathered over the hosts (`multihost_utils.process_allgather`, padded to the
    longest). Compressed because most of an image's slots, ground truth and people
    alike, are padding zeros."""
    data = pickle.dumps(shares, protocol=pickle.HIGHEST_PROTOCOL)
    data = np.frombuffer(zlib.compress(data, level=1), np.uint8)
    sizes = multihost_utils.process_allgather(np.int32(data.size))  # (hosts,)
    padded = np.zeros(int(sizes.max()), np.uint8)
    padded[: data.size] = data
    every = multihost_utils.process_allgather(padded)  # (hosts, longest)
    return [item for host, size in zip(every, sizes, strict=True)
            for item in pickle.loads(zlib.decompress(host[:size].tobytes()))]  # fmt: skip


def _by_index(shares: list, batch_size: int) -> Iterator[tuple[dict, dict]]:
    """(batch, people) of `batch_size` images in the order of their "index", from
    (batch, people) pairs of any sizes and canvases (the images left out: evaluators
    read the rest, whose shapes do not depend on the canvas)."""
    if not shares:
        return
    batch = _concatenate([b for b, _ in shares])
    people = jax.tree.map(lambda *x: np.concatenate(x), *[p for _, p in shares])
    order = np.argsort(batch["index"], kind="stable")
    for start in range(0, len(order), batch_size):
        rows = order[start : start + batch_size]
        yield {k: v[rows] for k, v in batch.items()}, jax.tree.map(lambda x, r=rows: x[r], people)


def _concatenate(batches: list[dict]) -> dict:
    """One batch of the images of `batches` (dicts of arrays with the same keys), in order."""
    if len(batches) == 1:
        return batches[0]
    return {k: np.concatenate([np.asarray(b[k]) for b in batches]) for k in batches[0]}


def _pad(x: np.ndarray, size: int) -> np.ndarray:
    """`x` (B, ...) with its last row repeated up to `size` rows: a real image's size, as
    an exported model requires (zeros were refused)."""
    x = np.asarray(x)
    if len(x) >= size:
        return x
    return np.concatenate([x, np.repeat(x[-1:], size - len(x), axis=0)])


def _coco_results(result: ppi.PPIResult, batch: dict) -> list:
    out = []
    for b in range(len(batch["index"])):
        people = np.flatnonzero(np.asarray(result.valid[b]))
        xy = original_pixels(result.poses2d[b, people], batch, b)  # (P, J, 2)
        keypoints = np.concatenate([xy, np.full((*xy.shape[:2], 1), 2.0)], axis=-1)
        rows = np.round(keypoints.reshape(len(people), xy.shape[-2] * 3), 2).tolist()
        for p, row in zip(people, rows, strict=True):
            out.append(
                {
                    "image_id": int(batch["index"][b]),
                    "category_id": 1,
                    "keypoints": row,
                    "score": float(result.scores[b, p]),
                }
            )
    return out
