"""RoIAlign: bilinear pooling of region features (Mask R-CNN; LCR-Net++ Sec. 3.5).

LCR-Net++ replaces RoI pooling by RoI align: each RoI is split into out_h x out_w bins,
`sampling_ratio` x `sampling_ratio` regularly spaced points per bin are read by bilinear
interpolation and pooled (the paper max-pools them; Mask R-CNN and torchvision average).

The sampling follows `torchvision.ops.roi_align` exactly (its CPU kernel):
- box corners are scaled by `spatial_scale`; with `aligned=True` half a cell is
  subtracted, so a box corner at pixel x maps to feature coordinate x * scale - 0.5 and
  the cell (i, j) centre sits at integer coordinates;
- with `aligned=False` a RoI narrower or shorter than one cell is widened to one cell
  (from its start); with `aligned=True` degenerate RoIs keep their (zero) size;
- a sample point with y < -1, y > H, x < -1 or x > W (or NaN) reads 0; otherwise
  coordinates below 0 are clamped to 0 and coordinates beyond the last cell (H - 1,
  W - 1) read the last cell.

Two backends give the same numbers: `method="gather"` reads the 4 neighbours of every
sample point with fused gathers (fastest on CPU and GPU; its gradient is a scatter-add
written as a custom VJP), and `method="einsum"` builds per-RoI separable interpolation
matrices (R, out, H) and (R, out, W) and pools with one einsum at `Precision.HIGHEST`
(dense matmuls: the TPU form). Boxes are treated as constants (no gradient), as in the
paper's approximate joint training.

`sample_grids` reads, with the same rules, lattices of samples one cell apart around
points (the joint refinement's, `model.lcr_head`) from the cells they share.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp

from lcrnet_jax.geometry import is_whole

_METHODS = ("gather", "einsum")
_POOLINGS = ("avg", "max")
# Size of one chunk of weighted scatter updates in the CPU backward pass.
_CPU_CHUNK_BYTES = 2**21


def roi_align(
    features,
    boxes,
    output_size: int | tuple[int, int],
    *,
    spatial_scale: float = 1.0,
    sampling_ratio: int = 2,
    aligned: bool = True,
    pooling: str = "avg",
    method: str = "gather",
):
    """Bilinear RoIAlign of boxes on an NHWC feature map (LCR-Net++ Sec. 3.5).

    Equal to `torchvision.ops.roi_align(features_nchw, [boxes[b] for b], output_size,
    spatial_scale, sampling_ratio, aligned)` moved to NHWC, for `sampling_ratio >= 1`.

    Padded RoIs: an all-zero box samples the feature map at its top-left corner (with
    `aligned=True` every sample reads cell (0, 0); with `aligned=False` the box is widened
    to one cell and reads the interpolation between cells (0, 0) and (1, 1)). The values
    are finite; mask such rows downstream. Boxes with NaN coordinates give zeros.

    Args:
      features: (B, H, W, C) float feature map.
      boxes: (B, R, 4) x1, y1, x2, y2 in input-image pixels.
      output_size: out_h = out_w as an int, or (out_h, out_w).
      spatial_scale: feature cells per input pixel (1/16 for a stride-16 map).
      sampling_ratio: sample points per bin along each axis (>= 1).
      aligned: subtract half a cell from the scaled box (torchvision's `aligned`).
      pooling: "avg" (mean of the sample points, as torchvision) or "max" (the paper).
      method: "gather" or "einsum" (same result).

    Returns:
      (B, R, out_h, out_w, C) pooled features, dtype of `features`.

    Raises:
      ValueError: on bad shapes or options.
    """
    features, boxes = _checked_inputs("roi_align", features, "boxes", boxes, "R", 4)
    out_h, out_w = _pair(output_size)
    if not is_whole(sampling_ratio) or sampling_ratio < 1:
        raise ValueError(
            f"roi_align: sampling_ratio must be an int >= 1 (the adaptive grid of "
            f"sampling_ratio <= 0 is not supported), got {sampling_ratio!r}"
        )
    if pooling not in _POOLINGS:
        raise ValueError(f"roi_align: pooling must be one of {_POOLINGS}, got {pooling!r}")
    if method not in _METHODS:
        raise ValueError(f"roi_align: method must be one of {_METHODS}, got {method!r}")

    batch, height, width, channels = features.shape
    if not batch * boxes.shape[1]:  # no RoI: nothing to gather from
        return jnp.zeros((batch, boxes.shape[1], out_h, out_w, channels), features.dtype)
    boxes = jax.lax.stop_gradient(boxes.astype(jnp.float32))
    offset = 0.5 if aligned else 0.0
    scaled = boxes * jnp.float32(spatial_scale) - jnp.float32(offset)  # (B, R, 4)
    y_idx, y_w = _axis_samples(
        scaled[..., 1], scaled[..., 3], height, out_h, sampling_ratio, aligned
    )
    x_idx, x_w = _axis_samples(
        scaled[..., 0], scaled[..., 2], width, out_w, sampling_ratio, aligned
    )
    if method == "gather":
        out = _gather_pool(features, y_idx, y_w, x_idx, x_w, pooling)
    else:
        out = _einsum_pool(features, y_idx, y_w, x_idx, x_w, pooling)
    return out.astype(features.dtype)


def sample_grids(features, points, grid: int, *, spatial_scale: float = 1.0):
    """Bilinear samples of an NHWC map on a grid x grid lattice around each point.

    The samples lie one feature cell apart, centred on the point: the values of
    `roi_align(features, boxes, grid, spatial_scale=spatial_scale, sampling_ratio=1)`
    (`aligned=True`, the same border rules) for boxes `grid` cells wide centred on the
    points, to float32 rounding. The lattice's samples share their bilinear neighbours,
    so it reads (grid + 1)^2 cells instead of 4 per sample, with elementwise weights: the
    demo model's evaluation forward ran 1.3x faster with it on CPU. Points are constants
    (no gradient).

    Args:
      features: (B, H, W, C) float feature map.
      points: (B, P, 2) x, y in input-image pixels.
      grid: samples per side (>= 1).
      spatial_scale: feature cells per input pixel.

    Returns:
      (B, P, grid, grid, C) samples, rows (y) then columns (x), dtype of `features`.
    """
    features, points = _checked_inputs("sample_grids", features, "points", points, "P", 2)
    points = jax.lax.stop_gradient(points.astype(jnp.float32))
    if not is_whole(grid) or grid < 1:
        raise ValueError(f"sample_grids: grid must be an int >= 1, got {grid!r}")
    b, height, width, channels = features.shape
    if not b * points.shape[1]:  # no point: nothing to gather from
        return jnp.zeros((b, points.shape[1], grid, grid, channels), features.dtype)
    first = points * jnp.float32(spatial_scale) - (0.5 + 0.5 * (grid - 1))  # aligned
    x_cells, x_low, x_high = _lattice_axis(first[..., 0], width, grid)
    y_cells, y_low, y_high = _lattice_axis(first[..., 1], height, grid)
    flat = features.reshape(b * height * width, channels)
    image_row = (jnp.arange(b, dtype=jnp.int32) * (height * width))[:, None]

    def x_samples(y_cell):  # grid arrays (B, P, C): the lattice's columns on one map row
        row = image_row + y_cell * width
        cells = [jnp.take(flat, row + x, axis=0).astype(jnp.float32) for x in x_cells]
        return [
            x_low[k][..., None] * cells[k] + x_high[k][..., None] * cells[k + 1]
            for k in range(grid)
        ]

    rows = [x_samples(y_cell) for y_cell in y_cells]
    samples = [
        jnp.stack(
            [
                y_low[k][..., None] * rows[k][col] + y_high[k][..., None] * rows[k + 1][col]
                for col in range(grid)
            ],
            axis=2,
        )
        for k in range(grid)
    ]
    return jnp.stack(samples, axis=2).astype(features.dtype)


def _checked_inputs(op: str, features, name: str, rows, count: str, width: int):
    """(features as a float array, rows as an array) once features are (B, H, W, C) and
    rows (B, count, width); otherwise a ValueError naming `op` and `name`."""
    features = jnp.asarray(features)
    if not jnp.issubdtype(features.dtype, jnp.floating):
        features = features.astype(jnp.float32)
    rows = jnp.asarray(rows)
    if features.ndim != 4 or min(features.shape[1:3]) < 1:
        raise ValueError(
            f"{op}: features must be (B, H, W, C) with H, W >= 1, got shape {features.shape}"
        )
    if rows.ndim != 3 or rows.shape[-1] != width or rows.shape[0] != features.shape[0]:
        raise ValueError(
            f"{op}: {name} must be (B, {count}, {width}) with B = {features.shape[0]}, "
            f"got shape {rows.shape}"
        )
    return features, rows


def _lattice_axis(first, size: int, grid: int):
    """Neighbour cells and weights along one axis of lattices of `sample_grids`.

    Args:
      first: (B, P) feature coordinate of each lattice's first sample.
      size: H or W of the feature map.
      grid: samples per lattice side, one cell apart.

    Returns:
      cells: grid + 1 (B, P) int32 cells in [0, size - 1] (clamped: a sample beyond the
        map's edge reads the edge cell through both neighbours, as `_axis_samples`);
      low, high: grid (B, P) weights of sample k on cells k and k + 1, both 0 for a
        sample outside [-1, size] (or NaN).
    """
    floor = jnp.floor(first)
    frac = first - floor
    base = jnp.where(jnp.isfinite(floor), floor, 0.0).astype(jnp.int32)
    cells = [jnp.clip(base + m, 0, size - 1) for m in range(grid + 1)]
    inside = [(first + k >= -1.0) & (first + k <= size) for k in range(grid)]
    low = [jnp.where(ok, 1.0 - frac, 0.0) for ok in inside]
    high = [jnp.where(ok, frac, 0.0) for ok in inside]
    return cells, low, high


def _pair(output_size) -> tuple[int, int]:
    if is_whole(output_size):
        size = (output_size, output_size)
    else:
        size = tuple(output_size) if isinstance(output_size, tuple | list) else ()
    if len(size) != 2 or not all(is_whole(s) and s >= 1 for s in size):
        raise ValueError(
            f"roi_align: output_size must be a positive int or (out_h, out_w), got {output_size!r}"
        )
    return int(size[0]), int(size[1])


def _axis_samples(start, end, size: int, out: int, ratio: int, aligned: bool):
    """Bilinear neighbours and weights of the sample points along one axis.

    Args:
      start, end: (B, R) RoI limits in feature coordinates (scaled, offset applied).
      size: H or W of the feature map.
      out: bins along this axis.
      ratio: sample points per bin along this axis.
      aligned: if False, RoIs shorter than one cell are widened to one cell.

    Returns:
      idx: (B, R, out, ratio, 2) int32 low and high neighbour, in [0, size - 1].
      w: (B, R, out, ratio, 2) float32 weights; both 0 for points outside the map.
    """
    length = end - start
    if not aligned:
        length = jnp.maximum(length, 1.0)
    bin_size = (length / out)[..., None, None]  # (B, R, 1, 1)
    p = jnp.arange(out, dtype=jnp.float32)[:, None]
    i = jnp.arange(ratio, dtype=jnp.float32)[None, :]
    # Same operation order as torchvision, so that points land in the same cells.
    coord = start[..., None, None] + p * bin_size + (i + 0.5) * bin_size / ratio
    inside = (coord >= -1.0) & (coord <= size)  # False for NaN
    coord = jnp.where(inside, jnp.maximum(coord, 0.0), 0.0)
    low = jnp.floor(coord).astype(jnp.int32)
    at_edge = low >= size - 1
    low = jnp.where(at_edge, size - 1, low)
    high = jnp.where(at_edge, size - 1, low + 1)
    frac = jnp.where(at_edge, 0.0, coord - low)
    w = jnp.stack([1.0 - frac, frac], axis=-1) * inside[..., None]
    return jnp.stack([low, high], axis=-1), w


def _flat_terms(shape, y_idx, y_w, x_idx, x_w):
    """Flat feature rows and weights of every (sample point, neighbour) term of every bin.

    Returns:
      idx: (B, R, out_h, out_w, s * s * 4) int32 rows of the (B * H * W, C) map, ordered
        by sample point (row-major over the s x s points), then neighbour (4 per point).
      w: same shape, float32 bilinear weights.
    """
    b, h, w, _ = shape
    base = (jnp.arange(b, dtype=jnp.int32) * (h * w))[:, None, None, None, None]
    rows = base + y_idx * w  # (B, R, out_h, s, 2)
    idx = rows[:, :, :, None, :, None, :, None] + x_idx[:, :, None, :, None, :, None, :]
    weight = y_w[:, :, :, None, :, None, :, None] * x_w[:, :, None, :, None, :, None, :]
    lead = idx.shape[:4]
    return idx.reshape(*lead, -1), weight.reshape(*lead, -1)


def _sample_values(flat, idx, w):
    """Bilinear values of the sample points, as one fused gather per term.

    Args:
      flat: (B * H * W, C) features.
      idx, w: (B, R, out_h, out_w, P * 4) from `_flat_terms`.

    Returns:
      P arrays (B, R, out_h, out_w, C) float32, one per sample point.
    """
    values = []
    for point in range(idx.shape[-1] // 4):
        v = 0.0
        for k in range(4 * point, 4 * point + 4):
            v = v + w[..., k, None] * jnp.take(flat, idx[..., k], axis=0).astype(jnp.float32)
        values.append(v)
    return values


def _gather_pool(features, y_idx, y_w, x_idx, x_w, pooling):
    idx, w = _flat_terms(features.shape, y_idx, y_w, x_idx, x_w)
    return _gather_pool_vjp(features, idx, w, pooling)


@functools.partial(jax.custom_vjp, nondiff_argnums=(3,))
def _gather_pool_vjp(features, idx, w, pooling):
    flat = features.reshape(-1, features.shape[-1])
    if pooling == "avg":
        return sum(_sample_values(flat, idx, w / (idx.shape[-1] // 4)))
    return functools.reduce(jnp.maximum, _sample_values(flat, idx, w))


def _gather_pool_fwd(features, idx, w, pooling):
    out = _gather_pool_vjp(features, idx, w, pooling)
    return out, (features, idx, w, out if pooling == "max" else None)


def _gather_pool_bwd(pooling, residuals, g):
    """Scatter-adds the output cotangent to the 4 neighbours of every sample point.

    On CPU the bins are processed in chunks whose weighted updates are materialised in
    cache: XLA's CPU scatter is fast on a materialised update but slow when the weighting
    is fused into it. Elsewhere one scatter takes the fused update.
    """
    features, idx, w, out = residuals
    channels = features.shape[-1]
    flat = features.reshape(-1, channels)
    g = g.astype(jnp.float32)
    terms = idx.shape[-1]
    points = terms // 4
    if pooling == "avg":
        point_of = None
        g = g / points
    else:
        # The gradient of a max goes to the first sample point holding it (per channel).
        point_of = jnp.full(g.shape, points, jnp.int16 if points < 2**15 else jnp.int32)
        for k, v in enumerate(_sample_values(flat, idx, w)):
            point_of = jnp.where((v == out) & (point_of == points), k, point_of)
        point_of = point_of.reshape(-1, channels)
    idx = idx.reshape(-1, terms)  # (N, P * 4) over the N = B * R * out_h * out_w bins
    w = w.reshape(-1, terms)
    g = g.reshape(-1, channels)
    bins = idx.shape[0]
    on_cpu = jax.default_backend() == "cpu"
    chunk = bins
    if on_cpu:
        chunk = min(bins, max(1, _CPU_CHUNK_BYTES // (4 * terms * channels)))
    pad = -bins % chunk
    if pad:
        idx, w, g = (jnp.pad(x, ((0, pad), (0, 0))) for x in (idx, w, g))
        point_of = None if point_of is None else jnp.pad(point_of, ((0, pad), (0, 0)))
    term_point = (jnp.arange(terms) // 4)[None, :, None]

    def add_chunk(i, grad):
        take = functools.partial(
            jax.lax.dynamic_slice_in_dim, start_index=i * chunk, slice_size=chunk
        )
        coeff = take(g)[:, None, :]  # (chunk, 1, C)
        if point_of is not None:
            coeff = jnp.where(take(point_of)[:, None, :] == term_point, coeff, 0.0)
        update = take(w)[..., None] * coeff  # (chunk, P * 4, C)
        if on_cpu:
            update = jax.lax.optimization_barrier(update)
        return grad.at[take(idx).reshape(-1)].add(update.reshape(-1, channels))

    grad = jax.lax.fori_loop(
        0, (bins + pad) // chunk, add_chunk, jnp.zeros(flat.shape, jnp.float32)
    )
    return grad.reshape(features.shape).astype(features.dtype), None, None


_gather_pool_vjp.defvjp(_gather_pool_fwd, _gather_pool_bwd)


def _einsum_pool(features, y_idx, y_w, x_idx, x_w, pooling):
    """Separable interpolation matrices and one einsum per image."""
    _, height, width, _ = features.shape
    # (B, R, out, s, size): sum of the one-hot neighbours weighted by bilinear weights.
    my = jnp.sum(jax.nn.one_hot(y_idx, height, dtype=jnp.float32) * y_w[..., None], axis=-2)
    mx = jnp.sum(jax.nn.one_hot(x_idx, width, dtype=jnp.float32) * x_w[..., None], axis=-2)
    feats = features.astype(jnp.float32)
    einsum = functools.partial(jnp.einsum, precision=jax.lax.Precision.HIGHEST)
    if pooling == "avg":
        my = jnp.mean(my, axis=-2)  # (B, R, out_h, H)
        mx = jnp.mean(mx, axis=-2)  # (B, R, out_w, W)
        return einsum("brph,bhwc,brqw->brpqc", my, feats, mx)
    values = einsum("brpih,bhwc,brqjw->brpqijc", my, feats, mx)  # (B, R, oh, ow, s, s, C)
    return jnp.max(values, axis=(-3, -2))
