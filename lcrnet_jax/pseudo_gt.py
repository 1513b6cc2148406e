r"""Pseudo ground-truth 3D poses by nearest-neighbour search in projected MoCap (Sec. 3.7).

In-the-wild datasets only annotate some 2D joints. LCR-Net++ projects a large MoCap
corpus orthographically on many random views, giving pairs M = {(p_m, P_m)} of 2D views
and oriented 3D poses, and gives each annotated 2D pose p the 3D pose (and the missing
2D joints) of the entry whose 2D view is nearest after normalisation (Eq. 9).

Corpus. `project_corpus` torso-centres the N MoCap poses; pose i is seen through the V
rotations `geometry.random_rotations(jax.random.fold_in(key, i), V)` (azimuth over the
circle, bounded elevation and roll) and entry m = i * V + v is its view v: the oriented
3D pose and its orthographic 2D view. Entries are generated chunk by chunk whenever they
are needed, so a corpus of 1M or more entries costs only the memory of its N poses.

Normalisation (the paper's p / ||p|| "computed using the annotated joints only"). For a
2D pose p (J, 2) and its set A of annotated joints (n = |A|):

    mu(p) = (1 / n) sum_{j in A} p_j,   s(p) = sqrt(sum_{j in A} ||p_j - mu(p)||^2),
    pbar_j = (p_j - mu(p)) / s(p)  for j in A  (0 elsewhere).

So pbar is invariant to translation and uniform scale, and has unit norm over A.
D2D(p, p_m) = sqrt(sum_{j in A} ||pbar_j - pbar_m,j||^2) in [0, 2], where the corpus
view p_m is normalised over the same A as the query.

Exact search with matrix products (method "jnp"). With unit norms,
D2D^2 = 2 - 2 <pbar, pbar_m>_A, so the nearest entry maximises the cosine
<pbar, pbar_m>_A = sum_{j in A} pbar_j . c_j / s_A(c) (the centring of c drops out
because sum_{j in A} pbar_j = 0), and with w = 1_A:

    s_A(c)^2 = w . |c|^2 - ((w . c_x)^2 + (w . c_y)^2) / n.

The numerator is a (Q, 2J) x (2J, C) product of the normalised queries with a corpus
chunk, the three sums a (U, J) x (J, 3C) product over the U distinct masks of a block of
queries (sorted by mask), so every query, whatever its mask, is searched in one
jit-compiled pass over the corpus (`lax.fori_loop` over chunks generated on the fly,
running maximum; the argmax is taken in two levels because XLA's is slow on CPU).
Method "sklearn" instead normalises the whole corpus over each distinct mask and asks
scikit-learn's `NearestNeighbors`; both are exact and give the same matches (ties
aside); `benchmarks/pseudo_gt_bench.py` measures both ("jnp" is the faster).

Completion. The normalisation implies the similarity p_j ~ mu(p) + s(p) pbar_m,j, so a
missing joint j is filled with mu(p) + (s(p) / s_A(p_m)) (p_m,j - mu_A(p_m)).
"""

from __future__ import annotations

import functools
import math
import os

import flax.struct
import jax
import jax.numpy as jnp
import numpy as np

from lcrnet_jax import geometry, skeleton
from lcrnet_jax.data import atomic
from lcrnet_jax.data import corpus as corpus_lib
from lcrnet_jax.data.progress import progress_bar
from lcrnet_jax.data.pseudo_gt_file import FORMAT_VERSION, pseudo_gt_path
from lcrnet_jax.data.records import open_split, read_record

METHODS = ("jnp", "sklearn")
# Default corpus entries per search step and queries per jit call (benchmarks/pseudo_gt_bench.py).
CHUNK_SIZE = 8192
QUERY_BLOCK = 1024
# Corpus views whose annotated joints spread less than this (m^2, s_A^2) never match.
_MIN_SPREAD2 = 1e-5
# Normalised corpus rows that must never be returned by scikit-learn (far from any unit vector).
_FAR = 10.0
# Entries per group of the two-level argmax of the "jnp" search.
_LANES = 128


@flax.struct.dataclass
class Corpus:
    """MoCap poses and the random views that turn them into 2D-3D pairs (lazily).

    Pose i is seen through the `num_views` rotations drawn by
    `geometry.random_rotations(fold_in(key, i), num_views, ...)`; entry
    m = i * num_views + v is its view v. Views are generated on demand.

    Attributes:
      poses3d: (N, J, 3) torso-centred MoCap poses, metres, upright in camera axes.
      key: PRNG key of the views.
      num_views: views per pose, V (static).
      max_elevation: camera elevation range, radians (static).
      max_roll: camera roll range, radians (static).
      joint_set: LCR joint set name (static).
    """

    poses3d: jnp.ndarray
    key: jnp.ndarray
    num_views: int = flax.struct.field(pytree_node=False, default=1)
    max_elevation: float = flax.struct.field(pytree_node=False, default=0.5)
    max_roll: float = flax.struct.field(pytree_node=False, default=0.0)
    joint_set: str = flax.struct.field(pytree_node=False, default="lcr13")

    @property
    def size(self) -> int:
        """Number of entries, N * V."""
        return self.poses3d.shape[0] * self.num_views

    @property
    def num_joints(self) -> int:
        return self.poses3d.shape[1]

    def pose_views(self, pose_indices):
        """All V views of some MoCap poses.

        Args:
          pose_indices: (P,) int pose indices in [0, N).

        Returns:
          (poses3d (P, V, J, 3) torso-centred oriented poses in metres (camera axes),
           poses2d (P, V, J, 2) their orthographic views in metres, x right, y down).
        """
        return _pose_views(self, jnp.asarray(pose_indices, jnp.int32))

    def views(self, indices):
        """Oriented 3D poses and orthographic 2D views of corpus entries.

        Args:
          indices: (E,) int entry indices in [0, size).

        Returns:
          (poses3d (E, J, 3) torso-centred oriented poses in metres (camera axes),
           poses2d (E, J, 2) their orthographic views in metres, x right, y down).
        """
        return _views(self, jnp.asarray(indices, jnp.int32))


@jax.jit
def _pose_views(corpus: Corpus, pose_indices):
    keys = jax.vmap(jax.random.fold_in, in_axes=(None, 0))(corpus.key, pose_indices)
    draw = lambda k: geometry.random_rotations(  # noqa: E731
        k, corpus.num_views, max_elevation=corpus.max_elevation, max_roll=corpus.max_roll
    )
    rotations = jax.vmap(draw)(keys)  # (P, V, 3, 3)
    base = corpus.poses3d[pose_indices][:, None]  # (P, 1, J, 3)
    return geometry.rotate(base, rotations), geometry.orthographic_project(base, rotations)


@jax.jit
def _views(corpus: Corpus, indices):
    poses3d, poses2d = _pose_views(corpus, indices // corpus.num_views)  # (E, V, J, .)
    view = (indices % corpus.num_views)[:, None, None, None]
    pick = lambda x: jnp.take_along_axis(x, view, axis=1)[:, 0]  # noqa: E731
    return pick(poses3d), pick(poses2d)


def project_corpus(
    poses3d,
    key,
    *,
    num_views: int,
    max_elevation: float = 0.5,
    max_roll: float = 0.0,
    joint_set: str | None = None,
) -> Corpus:
    """The 2D-3D search corpus of Sec. 3.7: MoCap poses seen from random views.

    Args:
      poses3d: (N, J, 3) MoCap poses in metres in an LCR joint set (LCR-13 or LCR-17),
        upright in camera axes (Y down, the feet below the head); they need not be
        centred.
      key: PRNG key of the views (the corpus is a deterministic function of it).
      num_views: random views per pose.
      max_elevation: camera elevation drawn in [-max_elevation, max_elevation] radians;
        the azimuth is uniform over the circle.
      max_roll: camera roll drawn in [-max_roll, max_roll] radians.
      joint_set: "lcr13" or "lcr17"; None infers it from J.

    Returns:
      The lazy `Corpus` of N * num_views entries.
    """
    poses3d = np.asarray(poses3d, np.float32)
    if poses3d.ndim != 3 or poses3d.shape[-1] != 3 or len(poses3d) == 0:
        raise ValueError(f"poses3d must be a non-empty (N, J, 3) array, got {poses3d.shape}")
    lcr = {js.name: js.num_joints for js in (skeleton.LCR13, skeleton.LCR17)}
    if joint_set is None:
        joint_set = next((name for name, j in lcr.items() if j == poses3d.shape[1]), None)
    if lcr.get(joint_set) != poses3d.shape[1]:
        raise ValueError(
            f"poses3d must be LCR-13 or LCR-17 poses (N, 13|17, 3), got {poses3d.shape} "
            f"with joint set {joint_set!r}"
        )
    if not np.all(np.isfinite(poses3d)):
        raise ValueError("poses3d contains NaN or inf; expected finite MoCap poses")
    if num_views < 1 or len(poses3d) * num_views >= 2**31:
        raise ValueError(f"num_views must be >= 1 with N * num_views < 2**31, got {num_views}")
    geometry.check_view_ranges(max_elevation, max_roll)
    centred = jnp.asarray(geometry.center_on_torso(jnp.asarray(poses3d), joint_set), jnp.float32)
    return Corpus(
        poses3d=centred,
        key=key,
        num_views=int(num_views),
        max_elevation=float(max_elevation),
        max_roll=float(max_roll),
        joint_set=joint_set,
    )


def _check_search_options(method: str, min_joints: int, chunk_size: int, query_block: int):
    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}, got {method!r}")
    if min_joints < 2 or chunk_size < 1 or query_block < 1:
        raise ValueError(
            f"need min_joints >= 2, chunk_size >= 1, query_block >= 1; got {min_joints}, "
            f"{chunk_size}, {query_block}"
        )


def pose_normalization(poses2d, visible):
    """Centre and scale of 2D poses over their annotated joints.

    Args:
      poses2d: (..., J, 2) coordinates (any unit).
      visible: (..., J) bool, the annotated joints A.

    Returns:
      (center (..., 2) the mean of the annotated joints,
       scale (...) sqrt of the sum over A of the squared distances to the centre);
      both are 0 for a pose without annotated joints.
    """
    poses2d = jnp.asarray(poses2d, jnp.float32)
    w = jnp.asarray(visible, jnp.float32)[..., None]  # (..., J, 1)
    n = jnp.maximum(jnp.sum(w, axis=-2), 1.0)  # (..., 1)
    center = jnp.sum(w * poses2d, axis=-2) / n
    scale = jnp.sqrt(jnp.sum(w * (poses2d - center[..., None, :]) ** 2, axis=(-2, -1)))
    return center, scale


def normalize_pose(poses2d, visible):
    """pbar = (p - mu) / s over the annotated joints (see the module docstring).

    Args:
      poses2d: (..., J, 2) coordinates.
      visible: (..., J) bool annotated joints.

    Returns:
      (..., J, 2) normalised poses: unit norm over the annotated joints, zeros at the
      other joints, and all zeros when the annotated joints coincide (s = 0).
    """
    center, scale = pose_normalization(poses2d, visible)
    out = (jnp.asarray(poses2d, jnp.float32) - center[..., None, :]) / jnp.where(
        scale > 0, scale, 1.0
    )[..., None, None]
    keep = jnp.asarray(visible, bool)[..., None] & (scale > 0)[..., None, None]
    return jnp.where(keep, out, 0.0)


@flax.struct.dataclass
class NearestPoses:
    """Nearest corpus entries of Q query poses.

    Attributes:
      index: (Q,) int64 corpus entry; -1 where not valid.
      distance: (Q,) D2D in [0, 2] (module docstring); NaN where not valid.
      valid: (Q,) bool: the query has at least `min_joints` annotated joints that do not
        all coincide, and a corpus entry was found.
    """

    index: np.ndarray
    distance: np.ndarray
    valid: np.ndarray


@flax.struct.dataclass
class PseudoGT:
    """Pseudo ground truth of Q query poses (Sec. 3.7).

    Attributes:
      poses3d: (Q, J, 3) matched oriented 3D poses, torso-centred, metres, camera axes;
        zeros where not valid.
      poses2d: (Q, J, 2) completed 2D poses in the query's units: annotated joints as
        given, the others from the match through the normalisation's similarity; where
        not valid, the query with zeros at its unannotated joints.
      distance: (Q,) D2D of the match in [0, 2]; NaN where not valid.
      index: (Q,) int64 matched corpus entry; -1 where not valid.
      valid: (Q,) bool, as in `NearestPoses`.
    """

    poses3d: np.ndarray
    poses2d: np.ndarray
    distance: np.ndarray
    index: np.ndarray
    valid: np.ndarray


def _check_queries(query2d, query_visible, corpus: Corpus) -> tuple[np.ndarray, np.ndarray]:
    query2d = np.asarray(query2d, np.float32)
    j = corpus.num_joints
    if query2d.ndim != 3 or query2d.shape[1:] != (j, 2):
        raise ValueError(
            f"query2d must be (Q, {j}, 2) in the corpus joint set {corpus.joint_set}, "
            f"got {query2d.shape}"
        )
    visible = np.asarray(query_visible)
    if visible.shape != query2d.shape[:2]:
        raise ValueError(f"query_visible must be {query2d.shape[:2]} bool, got {visible.shape}")
    visible = visible.astype(bool)
    bad = visible & ~np.all(np.isfinite(query2d), axis=-1)
    if bad.any():
        q = int(np.argwhere(bad)[0, 0])
        raise ValueError(f"query2d[{q}] has NaN or inf at annotated joints; expected finite")
    return np.where(visible[..., None], query2d, 0.0).astype(np.float32), visible


def _bucket(num: int, low: int, high: int, base: int = 2) -> int:
    """The smallest power of `base` >= num, clipped to [low, high] (few compiled shapes)."""
    size = 1
    while size < num:
        size *= base
    return min(high, max(low, size))


def _blocks(num: int, rows: int):
    for start in range(0, num, rows):
        yield start, min(start + rows, num)


def _pad(x: np.ndarray, rows: int) -> np.ndarray:
    return np.concatenate([x, np.zeros((rows - len(x),) + x.shape[1:], x.dtype)])


def _poses_per_step(corpus: Corpus, chunk_size: int) -> int:
    """Poses per search step: about chunk_size entries, a multiple of _LANES entries."""
    unit = _LANES // math.gcd(_LANES, corpus.num_views)
    return unit * max(1, round(chunk_size / (corpus.num_views * unit)))


def _chunk_views(corpus: Corpus, step, poses_per_step: int):
    """2D views of chunk `step`: (C, J, 2) metres and (C,) entry index, -1 past the end."""
    num_poses = corpus.poses3d.shape[0]
    pose = step * poses_per_step + jnp.arange(poses_per_step, dtype=jnp.int32)
    _, c = corpus.pose_views(jnp.minimum(pose, num_poses - 1))  # (P, V, J, 2)
    entry = pose[:, None] * corpus.num_views + jnp.arange(corpus.num_views, dtype=jnp.int32)
    entry = jnp.where(pose[:, None] < num_poses, entry, -1)
    return c.reshape(-1, corpus.num_joints, 2), entry.reshape(-1)


@functools.partial(jax.jit, static_argnames=("poses_per_step",))
def _search_jnp_block(corpus: Corpus, query2d, group, masks, *, poses_per_step: int):
    """Exact search for R queries whose masks are among U: (R,) best entry, (R,) found.

    Args:
      query2d: (R, J, 2) queries; group: (R,) int row of each query's mask in masks;
      masks: (U, J) bool annotated joints.
    """
    rows, j = query2d.shape[0], corpus.num_joints
    qbar = normalize_pose(query2d, masks[group]).reshape(rows, 2 * j)
    w = masks.astype(jnp.float32)
    n = jnp.maximum(jnp.sum(w, axis=-1), 1.0)  # (U,)

    def body(step, carry):
        best, best_entry = carry
        c, entry = _chunk_views(corpus, step, poses_per_step)  # (C, J, 2), (C,)
        size = entry.shape[0]
        feats = jnp.concatenate([c[..., 0], c[..., 1], jnp.sum(c**2, axis=-1)]).T  # (J, 3C)
        sums = (w @ feats).reshape(-1, 3, size)  # (U, 3, C)
        spread2 = sums[:, 2] - (sums[:, 0] ** 2 + sums[:, 1] ** 2) / n[:, None]
        ok = (spread2 > _MIN_SPREAD2) & (entry >= 0)
        inv = jnp.where(ok, jax.lax.rsqrt(jnp.where(ok, spread2, 1.0)), 0.0)  # (U, C)
        bias = jnp.where(ok, 0.0, -jnp.inf)
        cosine = (qbar @ c.reshape(size, 2 * j).T) * inv[group] + bias[group]  # (R, C)
        # argmax is slow on CPU: max per group of _LANES entries, then argmax within the
        # best group, all read from one buffer so that the maxima agree bitwise.
        lanes = jax.lax.optimization_barrier(cosine).reshape(rows, -1, _LANES)
        group_max = jnp.max(lanes, axis=2)  # (R, C / _LANES)
        best_group = jnp.argmax(group_max, axis=1)
        in_group = jnp.take_along_axis(lanes, best_group[:, None, None], axis=1)[:, 0]
        first = best_group * _LANES + jnp.argmax(in_group, axis=1)
        top = jnp.max(group_max, axis=1)
        better = top > best
        return jnp.where(better, top, best), jnp.where(better, entry[first], best_entry)

    steps = -(-corpus.poses3d.shape[0] // poses_per_step)
    init = (jnp.full((rows,), -jnp.inf), jnp.full((rows,), -1, jnp.int32))
    best, best_entry = jax.lax.fori_loop(0, steps, body, init)
    return best_entry, best > -jnp.inf


def _search_jnp(corpus, query2d, visible, *, chunk_size, query_block):
    """Queries sorted by mask, in blocks of at most query_block rows (and masks)."""
    index = np.zeros(len(query2d), np.int64)
    found = np.zeros(len(query2d), bool)
    masks, group = np.unique(visible, axis=0, return_inverse=True)
    group = group.reshape(-1)
    order = np.argsort(group, kind="stable")
    rows = _bucket(len(order), 64, query_block)
    for start, stop in _blocks(len(order), rows):
        sel = order[start:stop]
        used, local = np.unique(group[sel], return_inverse=True)
        entry, ok = _search_jnp_block(
            corpus,
            _pad(query2d[sel], rows),
            _pad(local.reshape(-1).astype(np.int32), rows),
            _pad(masks[used], _bucket(len(used), 64, rows, base=8)),
            poses_per_step=_poses_per_step(corpus, chunk_size),
        )
        index[sel] = np.asarray(entry)[: len(sel)]
        found[sel] = np.asarray(ok)[: len(sel)]
    return index, found


@functools.partial(jax.jit, static_argnames=("poses_per_step",))
def _normalized_chunk(corpus: Corpus, step, mask, *, poses_per_step: int):
    """Chunk `step` normalised over `mask`: (C, J, 2), (C,) usable, (C,) entry index."""
    c, entry = _chunk_views(corpus, step, poses_per_step)
    mask = jnp.broadcast_to(mask, c.shape[:-1])
    _, scale = pose_normalization(c, mask)
    return normalize_pose(c, mask), scale**2 > _MIN_SPREAD2, entry


def _search_sklearn(corpus, query2d, visible, *, chunk_size, algorithm):
    """Per distinct mask: the corpus normalised over it, then NearestNeighbors."""
    from sklearn.neighbors import NearestNeighbors

    qbar = np.asarray(normalize_pose(query2d, visible))
    index = np.zeros(len(query2d), np.int64)
    found = np.zeros(len(query2d), bool)
    masks, group = np.unique(visible, axis=0, return_inverse=True)
    group = group.reshape(-1)
    per_step = _poses_per_step(corpus, chunk_size)
    steps = -(-corpus.poses3d.shape[0] // per_step)
    for g, mask in enumerate(masks):
        cols = np.flatnonzero(mask)
        data = np.empty((corpus.size, 2 * len(cols)), np.float32)
        for step in range(steps):
            cbar, ok, entry = map(
                np.asarray, _normalized_chunk(corpus, step, mask, poses_per_step=per_step)
            )
            keep = entry >= 0
            rows = cbar[keep][:, cols].reshape(int(keep.sum()), -1)
            rows[~ok[keep]] = _FAR
            data[entry[keep]] = rows
        members = np.flatnonzero(group == g)
        nn = NearestNeighbors(n_neighbors=1, algorithm=algorithm).fit(data)
        dist, idx = nn.kneighbors(qbar[members][:, cols].reshape(len(members), -1))
        index[members] = idx[:, 0]
        found[members] = dist[:, 0] <= 2.0 + 1e-3
    return index, found


@jax.jit
def _match(corpus: Corpus, query2d, visible, index):
    """Matched 3D, completed 2D and D2D of queries given their corpus entries."""
    poses3d, c = corpus.views(index)
    center, scale = pose_normalization(query2d, visible)
    c_center, c_scale = pose_normalization(c, visible)
    ratio = scale / jnp.where(c_scale > 0, c_scale, 1.0)
    fitted = center[:, None] + ratio[:, None, None] * (c - c_center[:, None])
    completed = jnp.where(visible[..., None], query2d, fitted)
    diff = normalize_pose(query2d, visible) - normalize_pose(c, visible)
    distance = jnp.sqrt(jnp.sum(diff**2, axis=(-2, -1)))
    return poses3d, completed, distance


def _usable(query2d: np.ndarray, visible: np.ndarray, min_joints: int) -> np.ndarray:
    """(Q,) bool: at least `min_joints` annotated joints, not all at one point."""
    vis = visible[..., None]
    lo = np.min(np.where(vis, query2d, np.inf), axis=1)  # (Q, 2)
    hi = np.max(np.where(vis, query2d, -np.inf), axis=1)
    spread = np.any(hi > lo, axis=-1)
    return (visible.sum(axis=-1) >= min_joints) & spread


def _match_all(corpus, query2d, visible, index, valid, *, query_block) -> PseudoGT:
    q, j = visible.shape
    poses3d = np.zeros((q, j, 3), np.float32)
    poses2d = query2d.copy()
    distance = np.full(q, np.nan, np.float32)
    live = np.flatnonzero(valid)
    rows = _bucket(len(live), 64, query_block)
    for start, stop in _blocks(len(live), rows):
        sel = live[start:stop]
        out = _match(
            corpus,
            _pad(query2d[sel], rows),
            _pad(visible[sel], rows),
            _pad(index[sel].astype(np.int32), rows),
        )
        poses3d[sel], poses2d[sel], distance[sel] = (np.asarray(x)[: len(sel)] for x in out)
    return PseudoGT(poses3d=poses3d, poses2d=poses2d, distance=distance, index=index, valid=valid)


def pseudo_ground_truth(
    query2d,
    query_visible,
    corpus: Corpus,
    *,
    method: str = "jnp",
    chunk_size: int = CHUNK_SIZE,
    query_block: int = QUERY_BLOCK,
    min_joints: int = 2,
    algorithm: str = "brute",
) -> PseudoGT:
    """Full-body 2D and oriented 3D pseudo ground truth of annotated 2D poses (Sec. 3.7).

    Each query gets the corpus entry nearest by D2D over its own annotated joints (module
    docstring), that entry's oriented 3D pose, and its 2D view mapped onto the
    annotation to fill the joints that are not annotated.

    Args:
      query2d: (Q, J, 2) annotated 2D poses (pixels or any unit) in the corpus joint set;
        values at unannotated joints are ignored.
      query_visible: (Q, J) bool, the annotated joints (each query has its own mask).
      corpus: from `project_corpus`.
      method: "jnp" (one jit-compiled pass over the corpus for all masks) or "sklearn"
        (scikit-learn NearestNeighbors per distinct mask); both exact.
      chunk_size: corpus entries per step; "jnp" memory grows as query_block * chunk_size.
      query_block: queries per jit call.
      min_joints: queries with fewer annotated joints are flagged not valid (at least 2:
        one joint has no scale).
      algorithm: scikit-learn NearestNeighbors algorithm (method "sklearn").

    Returns:
      `PseudoGT` (numpy arrays); queries that cannot be matched have valid False.
    """
    query2d, visible = _check_queries(query2d, query_visible, corpus)
    _check_search_options(method, min_joints, chunk_size, query_block)
    valid = _usable(query2d, visible, min_joints)
    live = np.flatnonzero(valid)
    if method == "jnp":
        found_index, found = _search_jnp(
            corpus, query2d[live], visible[live], chunk_size=chunk_size, query_block=query_block
        )
    else:
        found_index, found = _search_sklearn(
            corpus, query2d[live], visible[live], chunk_size=chunk_size, algorithm=algorithm
        )
    valid[live] = found
    index = np.full(len(query2d), -1, np.int64)
    index[live[found]] = found_index[found]
    return _match_all(corpus, query2d, visible, index, valid, query_block=query_block)


def nearest_poses(query2d, query_visible, corpus: Corpus, **options) -> NearestPoses:
    """The corpus entries nearest to annotated 2D poses by D2D over their annotated joints.

    Args:
      query2d: (Q, J, 2) annotated 2D poses in the corpus joint set (any unit).
      query_visible: (Q, J) bool annotated joints.
      corpus: from `project_corpus`.
      **options: `method`, `chunk_size`, `query_block`, `min_joints`, `algorithm` of
        `pseudo_ground_truth`.

    Returns:
      `NearestPoses` (numpy arrays).
    """
    result = pseudo_ground_truth(query2d, query_visible, corpus, **options)
    return NearestPoses(index=result.index, distance=result.distance, valid=result.valid)


def load_corpus_file(path: str | os.PathLike) -> tuple[np.ndarray, str]:
    """Reads a MoCap corpus .npz: `poses3d` (N, J, 3) metres and its `joint_set` name.

    Returns:
      (poses3d (N, J, 3) float32 torso-centred, joint set name "lcr13" or "lcr17").
    """
    return corpus_lib.load_pose_corpus(os.fspath(path))


def add_pseudo_gt(
    dataset: str,
    *,
    data_dir: str | None,
    corpus_path: str | os.PathLike,
    split: str = "train",
    corpus_joint_set: str | None = None,
    num_views: int = 32,
    seed: int = 0,
    max_elevation: float = 0.5,
    max_roll: float = 0.0,
    method: str = "jnp",
    chunk_size: int = CHUNK_SIZE,
    query_block: int = QUERY_BLOCK,
    min_joints: int = 2,
) -> dict[str, float | int | str]:
    """Pseudo ground truth for every person without 3D of a built TFDS dataset split.

    Reads the records with `tfds.data_source` (images are not decoded), converts each
    person's annotated 2D joints (`people/annotated` where the dataset has it, so that
    occluded but annotated joints count, else `people/visible`) from the dataset's
    native joint set (its `joint_set` metadata) to the corpus joint set, searches the
    projected corpus for every person whose `has_3d` is False and writes
    `pseudo_gt_<split>.npz` next to the dataset's files (atomically); see
    `data.pseudo_gt_file.PseudoGTFile` for the contents.

    Args:
      dataset: TFDS name, "name" or "name/config".
      data_dir: TFDS data directory (None: the TFDS default).
      corpus_path: the MoCap corpus: an .npz or a built TFDS corpus such as
        `cmu_mocap`, any spec of `lcrnet_jax.data.corpus.load_pose_corpus` (the same
        corpus as the anchor poses of experiments/fit_anchors.py).
      corpus_joint_set: LCR joint set of the search; None: the richest the corpus has.
      split: plain split name.
      num_views, seed, max_elevation, max_roll: the corpus views (`project_corpus`,
        key `jax.random.key(seed)`).
      method, chunk_size, query_block: as in `nearest_poses`.
      min_joints: people with fewer annotated joints get no pseudo ground truth (the
        paper sets no bound; 2, the least with a scale, matches everyone it can). Few
        joints match closely and say little of the 3D pose; people left without 3D
        still train the 2D regression, classified from 2D (`targets.lcr_targets`).

    Returns:
      Summary: path, records, people, people_matched, people_skipped (fewer than
      `min_joints` distinct annotated joints), mean_distance.
    """
    # Bad options fail before any work.
    pseudo_gt_path("", split)
    geometry.check_view_ranges(max_elevation, max_roll)
    _check_search_options(method, min_joints, chunk_size, query_block)
    poses3d, joint_set = corpus_lib.load_pose_corpus(
        os.fspath(corpus_path), joint_set=corpus_joint_set, data_dir=data_dir
    )
    source = open_split(dataset, split, data_dir=data_dir)
    native = (source.dataset_info.metadata or {}).get("joint_set")
    if native is None:
        raise ValueError(f"dataset {dataset!r} has no 'joint_set' in its metadata")
    corpus = project_corpus(
        poses3d,
        jax.random.key(seed),
        num_views=num_views,
        max_elevation=max_elevation,
        max_roll=max_roll,
        joint_set=joint_set,
    )
    j = corpus.num_joints
    offsets, image_ids = [0], []
    joints2d, annotated, needs = [], [], []
    for i in progress_bar(range(len(source)), desc=f"{dataset} {split}", unit="record"):
        record = read_record(source, i)
        people = record["people"]
        # The paper's "annotated joints": occluded but annotated joints count where known.
        mask = people.get("annotated", people["visible"])
        points, vis = skeleton.convert(people["joints2d"], mask, native, joint_set)
        joints2d.append(points.astype(np.float32))
        annotated.append(vis)
        needs.append(~np.asarray(people["has_3d"], bool))
        offsets.append(offsets[-1] + len(points))
        image_id = record["image_id"]
        image_ids.append(image_id.decode() if isinstance(image_id, bytes) else str(image_id))
    joints2d = np.concatenate(joints2d) if joints2d else np.zeros((0, j, 2), np.float32)
    annotated = np.concatenate(annotated) if annotated else np.zeros((0, j), bool)
    needs = np.concatenate(needs) if needs else np.zeros((0,), bool)

    rows = np.flatnonzero(needs)
    joints3d = np.zeros(joints2d.shape[:-1] + (3,), np.float32)
    completed = joints2d.copy()
    valid = np.zeros(len(joints2d), bool)
    distance = np.full(len(joints2d), np.nan, np.float32)
    with progress_bar(total=len(rows), desc="nearest-neighbour search", unit="person") as bar:
        for start, stop in _blocks(len(rows), 8 * query_block):
            sel = rows[start:stop]
            result = pseudo_ground_truth(
                joints2d[sel],
                annotated[sel],
                corpus,
                method=method,
                chunk_size=chunk_size,
                query_block=query_block,
                min_joints=min_joints,
            )
            joints3d[sel], completed[sel] = result.poses3d, result.poses2d
            valid[sel], distance[sel] = result.valid, result.distance
            bar.update(len(sel))

    path = pseudo_gt_path(source.dataset_info.data_dir, split)
    atomic.write_npz(
        path,
        format_version=FORMAT_VERSION,
        offsets=np.asarray(offsets, np.int64),
        image_id=np.asarray(image_ids, dtype=str),
        joints3d=joints3d,
        joints2d=completed,
        annotated=annotated,
        valid=valid,
        distance=distance,
        joint_set=joint_set,
        corpus=os.path.basename(os.fspath(corpus_path)),
        split=split,
    )
    matched = int(valid.sum())
    return {
        "path": path,
        "records": len(image_ids),
        "people": int(len(rows)),
        "people_matched": matched,
        "people_skipped": int(len(rows)) - matched,
        "mean_distance": float(np.nanmean(distance)) if matched else float("nan"),
    }
