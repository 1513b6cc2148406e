"""Per-image work on each device's own images when the batch is split over a mesh.

RoIAlign reads a flat map over the whole batch (`roi_align`, `sample_grids`), and the
proposals' NMS loops until the last image of the batch is done (`nms` under `jax.vmap`).
Both are per-image work, but XLA's partitioner cannot see it: over a data-parallel mesh it
gathers the whole batch's feature map onto every device (and all-reduces its gradient),
and makes every device sync on every NMS iteration. `per_image` runs such work under
`jax.shard_map` over the "data" mesh axis, so that each device computes its own images;
`under_mesh` makes a mesh current for it while a jitted step traces. Without a mesh (one
device, `jax.export`, tests) the work runs as it is, so the model stays mesh-agnostic.
"""

from __future__ import annotations

import functools
from collections.abc import Callable

import jax
from jax.sharding import Mesh
from jax.sharding import PartitionSpec as P

DATA_AXIS = "data"


def per_image(fn: Callable, *images, shared: tuple = ()):
    """`fn(*images, *shared)`, each device computing its own images' rows where a mesh
    splits them.

    When the current mesh (`under_mesh`) has a "data" axis of size > 1 that divides the
    batch, `fn` runs under `jax.shard_map` on each device's block of images (replicated
    over any other axis, e.g. "model"); otherwise it is called directly. The results are
    the same either way.

    Args:
      fn: a function of `images` and `shared` whose results are arrays (B, ...) (any
        pytree of them), row b computed from row b of each of `images` (and `shared`)
        only. It must not close over traced arrays: pass them in `shared`.
      *images: arrays (B, ...) (or pytrees of them), B the batch.
      shared: arrays every image reads whole (e.g. the anchors), replicated.

    Returns:
      `fn(*images, *shared)`.
    """
    mesh = jax.sharding.get_abstract_mesh()
    shards = dict(zip(mesh.axis_names, mesh.axis_sizes, strict=True)).get(DATA_AXIS, 1)
    batch = jax.tree.leaves(images)[0].shape[0]
    if shards <= 1 or batch % shards or DATA_AXIS in mesh.manual_axes:
        return fn(*images, *shared)
    specs = (P(DATA_AXIS),) * len(images) + (P(),) * len(shared)
    # Unchecked: the NMS loops carry per-device values from replicated initial ones, which
    # the check refuses; `fn` has no collectives, so each device's rows are its own. (The
    # gradient is then summed over the other axes: a no-op all-reduce where they have one
    # device. Manual over "data" alone left 6 of 8 devices out of a collective's
    # rendezvous in the detector over a ("data", "model") = (4, 2) mesh.)
    sharded = jax.shard_map(fn, mesh=mesh, in_specs=specs, out_specs=P(DATA_AXIS), check_vma=False)
    return sharded(*images, *shared)


def under_mesh(fn: Callable, mesh: Mesh | None) -> Callable:
    """`fn` tracing with `mesh` current, for `per_image` (to be jitted over `mesh`); `fn`
    itself when `mesh` is None."""
    if mesh is None:
        return fn

    @functools.wraps(fn)
    def traced(*args, **kwargs):
        with jax.sharding.use_abstract_mesh(mesh.abstract_mesh):
            return fn(*args, **kwargs)

    return traced
