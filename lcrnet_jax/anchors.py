"""Anchor poses, the D3D distance and anchor-relative pose coding (LCR-Net++ Sec. 3.1-3.3, 4.1-4.2).

An anchor pose k is a 2D-3D pair (a_k, A_k): A_k a torso-centred 3D pose in metres
(camera axes), a_k its 2D projection normalised in its box, so that placing the anchor
in a box B puts joint j at (x1 + a_kj.x * w, y1 + a_kj.y * h). Anchors come from
K-means on oriented (camera-view) 3D training poses. With upper-body classes (Sec. 4.2)
each anchor has a twin whose 2D is normalised so that only the upper body spans the
box, while the full-body 3D pose is kept.

Classes: 0 is background; class c >= 1 is anchor c - 1. The regression of class c is
laid out as in the original model, [x(J), y(J), X(J), Y(J), Z(J)], i.e. an array
(..., 5, J), and is divided by the per-coordinate `std` stored with the anchors.
"""

from __future__ import annotations

import os

import flax.struct
import jax
import jax.numpy as jnp
import numpy as np

from lcrnet_jax import geometry, skeleton
from lcrnet_jax.data import atomic, npz

FORMAT_VERSION = 1


@flax.struct.dataclass
class AnchorPoses:
    """K anchor poses (full-body first, then upper-body twins if any).

    Attributes:
      pose2d: (K, J, 2) 2D anchors normalised in their box (about [0, 1]).
      pose3d: (K, J, 3) torso-centred 3D anchors, metres, camera axes.
      std: (5, J) regression scale for x, y (box units) and X, Y, Z (metres).
      joint_set: name of the joint set (static).
      margin: pose-box margin used to normalise the 2D anchors (static).
      twins: the second half of the anchors are the upper-body twins of the first
        half (static).
    """

    pose2d: jnp.ndarray
    pose3d: jnp.ndarray
    std: jnp.ndarray
    joint_set: str = flax.struct.field(pytree_node=False, default="lcr13")
    margin: float = flax.struct.field(pytree_node=False, default=0.1)
    twins: bool = flax.struct.field(pytree_node=False, default=False)

    @property
    def num_anchors(self) -> int:
        return self.pose3d.shape[0]

    @property
    def num_full_body(self) -> int:
        return self.num_anchors // 2 if self.twins else self.num_anchors

    @property
    def upper_body(self) -> np.ndarray:
        """(K,) bool, True for the upper-body twins."""
        return np.arange(self.num_anchors) >= self.num_full_body

    @property
    def num_classes(self) -> int:
        """Anchors plus the background class."""
        return self.num_anchors + 1

    @property
    def num_joints(self) -> int:
        return self.pose3d.shape[1]

    @property
    def upper_body_classes(self) -> np.ndarray:
        """(C,) bool over classes (background first): the class is an upper-body anchor."""
        return np.concatenate([[False], self.upper_body])


def d3d(a, b):
    """D3D: mean over joints of the Euclidean distance between 3D poses.

    Args:
      a, b: broadcastable (..., J, 3) poses in metres.

    Returns:
      (...) distances in metres.
    """
    return jnp.mean(jnp.linalg.norm(jnp.asarray(a) - jnp.asarray(b), axis=-1), axis=-1)


def normalize_in_box(poses2d, boxes):
    """Pixels -> box units: (p - (x1, y1)) / (w, h). poses2d (..., J, 2), boxes (..., 4)."""
    boxes = jnp.asarray(boxes, jnp.float32)[..., None, :]
    size = jnp.maximum(boxes[..., 2:] - boxes[..., :2], 1e-6)
    return (jnp.asarray(poses2d, jnp.float32) - boxes[..., :2]) / size


def denormalize_in_box(poses2d, boxes):
    """Box units -> pixels, the inverse of `normalize_in_box`."""
    boxes = jnp.asarray(boxes, jnp.float32)[..., None, :]
    return boxes[..., :2] + jnp.asarray(poses2d, jnp.float32) * (boxes[..., 2:] - boxes[..., :2])


def _box_of(joints2d, visible, indices, margin: float):
    idx = np.asarray(indices)
    joints2d = jnp.asarray(joints2d)[..., idx, :]
    if visible is not None:
        visible = jnp.asarray(visible)[..., idx]
    return geometry.pose_box(joints2d, visible, margin=margin)


def full_body_box(joints2d, visible=None, *, joint_set="lcr13", margin: float = 0.1):
    """Pose box of the visible joints that span boxes (`JointSet.box_joints`), (..., 4)
    pixels."""
    return _box_of(joints2d, visible, skeleton.get_joint_set(joint_set).box_joints, margin)


def upper_body_box(joints2d, visible=None, *, joint_set="lcr13", margin: float = 0.1):
    """Pose box of the visible upper-body joints (hips and above) among those that span
    boxes, (..., 4) pixels."""
    return _box_of(joints2d, visible, skeleton.get_joint_set(joint_set).upper_box_joints, margin)


def _normalized_views(poses3d, *, joint_set, margin: float, upper: bool, jitter=None):
    """Orthographic 2D of (N, J, 3) poses normalised in their (upper-)body pose box,
    whose corners move by `jitter` (N, 4) times its size when given."""
    view = np.asarray(poses3d)[..., :2]
    box_of = upper_body_box if upper else full_body_box
    box = box_of(view, joint_set=joint_set, margin=margin)
    if jitter is not None:
        size = box[..., 2:] - box[..., :2]
        box = box + jitter * np.concatenate([size, size], axis=-1)
    return np.asarray(normalize_in_box(view, box))


def fit_anchor_poses(
    poses3d: np.ndarray,
    num_anchors: int,
    *,
    joint_set: str = "lcr13",
    upper_body: bool = False,
    margin: float = 0.1,
    normalize: bool = True,
    seed: int = 0,
    max_poses: int = 200_000,
) -> AnchorPoses:
    """K-means anchor poses from oriented 3D training poses (Sec. 4.1 "Anchor-poses").

    Args:
      poses3d: (N, J, 3) poses in metres in camera axes (they need not be centred:
        they are torso-centred here).
      num_anchors: K, the number of clusters (10, 100, 200 in the paper).
      joint_set: joint set of the poses.
      upper_body: also make the K upper-body twins (2K anchors in all).
      margin: pose-box margin of the 2D normalisation (same as the ground-truth boxes).
      normalize: compute the regression `std` from the training poses (else ones).
      seed: K-means seed; the result is deterministic for a seed.
      max_poses: K-means runs on a random subset of at most this many poses.

    Returns:
      AnchorPoses with K (or 2K) anchors; 2D anchors are the orthographic projections
      of the 3D cluster centres normalised in their pose box.
    """
    from sklearn.cluster import KMeans

    js = skeleton.get_joint_set(joint_set)
    poses3d = np.asarray(poses3d, np.float64)
    if poses3d.ndim != 3 or poses3d.shape[1:] != (js.num_joints, 3):
        raise ValueError(
            f"poses3d must be (N, {js.num_joints}, 3) for {js.name}, got {poses3d.shape}"
        )
    if not np.all(np.isfinite(poses3d)):
        raise ValueError("poses3d contains NaN or inf")
    if not (geometry.is_whole(num_anchors) and num_anchors >= 1):
        raise ValueError(f"the number of anchor poses must be an int >= 1, got {num_anchors!r}")
    if len(poses3d) < num_anchors:
        raise ValueError(
            f"need at least {num_anchors} poses for {num_anchors} anchors, got {len(poses3d)}"
        )
    centred = np.asarray(geometry.center_on_torso(poses3d, js), np.float64)
    rng = np.random.default_rng(seed)
    subset = centred[rng.permutation(len(centred))[:max_poses]]
    kmeans = KMeans(n_clusters=num_anchors, n_init=4, random_state=seed).fit(
        subset.reshape(len(subset), -1)
    )
    centres = kmeans.cluster_centers_.reshape(num_anchors, js.num_joints, 3)
    order = np.argsort(-np.bincount(kmeans.labels_, minlength=num_anchors), kind="stable")
    centres = centres[order]  # most populated cluster first

    variants = [False, True] if upper_body else [False]
    pose2d = np.concatenate(
        [_normalized_views(centres, joint_set=js, margin=margin, upper=u) for u in variants]
    )
    pose3d = np.concatenate([centres] * len(variants))
    anchors = AnchorPoses(
        pose2d=jnp.asarray(pose2d, jnp.float32),
        pose3d=jnp.asarray(pose3d, jnp.float32),
        std=jnp.ones((5, js.num_joints), jnp.float32),
        joint_set=js.name,
        margin=margin,
        twins=upper_body,
    )
    if normalize:
        anchors = anchors.replace(std=_regression_std(subset, anchors, rng))
    return anchors


# Foreground RoIs overlap their person's box by IoU >= 0.5: their corners are off by
# about this fraction of the box size, which the 2D regression targets must absorb.
ROI_JITTER = 0.1


def _regression_std(centred: np.ndarray, anchors: AnchorPoses, rng) -> jnp.ndarray:
    """Std of the full-body regression targets of orthographic views of the poses, each
    normalised in its pose box moved by up to `ROI_JITTER` of its size like a RoI."""
    k = anchors.num_full_body
    a2d, a3d = np.asarray(anchors.pose2d)[:k], np.asarray(anchors.pose3d)[:k]
    labels = np.asarray(assign_anchors(centred, anchors.replace(pose3d=a3d)))
    jitter = rng.uniform(-ROI_JITTER, ROI_JITTER, size=(len(centred), 4))
    view = _normalized_views(
        centred, joint_set=anchors.joint_set, margin=anchors.margin, upper=False, jitter=jitter
    )
    delta = np.concatenate([view - a2d[labels], centred - a3d[labels]], axis=-1)  # (N, J, 5)
    return jnp.asarray(np.maximum(delta.std(axis=0).T, 1e-3), jnp.float32)


def assign_anchors(poses3d, anchors: AnchorPoses):
    """Index of the closest anchor by D3D, over all anchors in `anchors.pose3d`.

    Args:
      poses3d: (..., J, 3) torso-centred poses in metres.

    Returns:
      (...) int32 anchor index in [0, K).
    """
    dist = d3d(jnp.asarray(poses3d)[..., None, :, :], anchors.pose3d)  # (..., K)
    return jnp.argmin(dist, axis=-1).astype(jnp.int32)


def classify_poses(poses3d, anchors: AnchorPoses, *, upper_body):
    """Class labels of ground-truth poses: 1 + the closest full-body anchor by D3D.

    With `upper_body` True the label is the upper-body twin of that anchor (its index
    + K). Needs anchors made with `upper_body=True` when any `upper_body` is True.

    Args:
      poses3d: (..., J, 3) torso-centred poses, metres.
      upper_body: (...) bool, the box is an upper-body box.

    Returns:
      (...) int32 classes in [1, C).
    """
    k = anchors.num_full_body
    best = assign_anchors(poses3d, anchors.replace(pose3d=anchors.pose3d[:k]))
    return 1 + best + _twin_offset(upper_body, anchors)


def _twin_offset(upper_body, anchors: AnchorPoses):
    """(...) K where `upper_body`, else 0: the step from an anchor's class to its twin's."""
    concrete = not isinstance(upper_body, jax.core.Tracer)
    if not anchors.twins and concrete and np.any(upper_body):
        raise ValueError(
            "upper_body is True for some poses but the anchors have no upper-body twins "
            "(fit them with upper_body=True)"
        )
    return jnp.where(jnp.asarray(upper_body), anchors.num_full_body, 0)


def _normalize_2d(poses2d, known):
    """2D poses centred on the mean of their known joints and scaled to unit norm over
    them (zeros at unknown joints), as the pseudo ground truth's D2D (Sec. 3.7).

    Args:
      poses2d: (..., J, 2) any unit; known: (..., J) bool.
    """
    w = jnp.asarray(known, jnp.float32)[..., None]
    n = jnp.maximum(jnp.sum(w, axis=-2, keepdims=True), 1.0)
    centred = (poses2d - jnp.sum(poses2d * w, axis=-2, keepdims=True) / n) * w
    norm = jnp.sqrt(jnp.sum(centred**2, axis=(-2, -1), keepdims=True))
    return centred / jnp.maximum(norm, 1e-6)


def classify_poses_2d(poses2d, known, anchors: AnchorPoses, *, upper_body):
    """Class labels of people without 3D: 1 + the full-body anchor nearest in 2D.

    The person's known 2D joints and each anchor's orthographic view (X, Y of its 3D
    pose, camera axes like the image) are both centred and scaled to unit norm over
    the person's known joints; the class is the anchor at the smallest squared
    distance, i.e. the pseudo ground truth's D2D (Sec. 3.7) restricted to the K anchors.

    Args:
      poses2d: (..., J, 2) pixels.
      known: (..., J) bool, the joint's 2D position is known.
      anchors: the anchor poses.
      upper_body: (...) bool, the box is an upper-body box (then the twin's class).

    Returns:
      (...) int32 classes in [1, C).
    """
    k = anchors.num_full_body
    known = jnp.asarray(known, bool)
    query = _normalize_2d(jnp.asarray(poses2d, jnp.float32), known)[..., None, :, :]
    views = _normalize_2d(anchors.pose3d[:k, :, :2], known[..., None, :])  # (..., K, J, 2)
    best = jnp.argmin(jnp.sum((query - views) ** 2, axis=(-2, -1)), axis=-1).astype(jnp.int32)
    return 1 + best + _twin_offset(upper_body, anchors)


def _with_background(anchors: AnchorPoses):
    """Per-class (C, ...) anchor tables with a zero background row first."""
    pad = lambda x: jnp.concatenate([jnp.zeros_like(x[:1]), x])  # noqa: E731
    return pad(anchors.pose2d), pad(anchors.pose3d)


def encode_poses(poses2d, poses3d, boxes, classes, anchors: AnchorPoses):
    """Regression targets of ground-truth poses for boxes of given classes (Sec. 3.1).

    t = ((p / box) - a_c, P - A_c) / std, zeros for background (class 0).

    Args:
      poses2d: (..., J, 2) pixels.
      poses3d: (..., J, 3) torso-centred metres.
      boxes: (..., 4) the RoI boxes, pixels.
      classes: (...) int class in [0, C).
      anchors: the anchor poses.

    Returns:
      (..., 5, J) targets in the layout [x, y, X, Y, Z].
    """
    a2d, a3d = _with_background(anchors)
    d2 = normalize_in_box(poses2d, boxes) - a2d[classes]
    d3 = jnp.asarray(poses3d, jnp.float32) - a3d[classes]
    target = jnp.concatenate([d2, d3], axis=-1)  # (..., J, 5)
    target = jnp.swapaxes(target, -1, -2) / anchors.std
    return jnp.where((jnp.asarray(classes) > 0)[..., None, None], target, 0.0)


def decode_poses(regression, boxes, anchors: AnchorPoses):
    """Pose proposals of every class from class-specific regression (Sec. 3.1, 3.3).

    Args:
      regression: (..., C, 5, J) network outputs (in units of `std`), background first.
      boxes: (..., 4) RoI boxes, pixels.
      anchors: the anchor poses, C = anchors.num_classes.

    Returns:
      (poses2d (..., C, J, 2) pixels, poses3d (..., C, J, 3) torso-centred metres); the
      background rows are the raw deltas placed in the box and carry no meaning.
    """
    a2d, a3d = _with_background(anchors)
    delta = jnp.swapaxes(jnp.asarray(regression) * anchors.std, -1, -2)  # (..., C, J, 5)
    poses2d = denormalize_in_box(a2d + delta[..., :2], jnp.asarray(boxes)[..., None, :])
    poses3d = a3d + delta[..., 2:]
    return poses2d, poses3d


def completed(anchors: AnchorPoses, joint_set: str) -> AnchorPoses:
    """`anchors` as anchors of another joint set, class by class: 2D and 3D poses made by
    `skeleton.completion_matrix` (exact for the box-normalised 2D too: its rows sum to 1),
    and the regression std of a made joint the sum of its joints' stds weighted by the
    weights' magnitudes. A run fine-tuned onto that joint set keeps its classes' poses.

    Raises ValueError if the anchors' joint set cannot make `joint_set`'s joints.
    """
    matrix = jnp.asarray(skeleton.completion_matrix(anchors.joint_set, joint_set), jnp.float32)
    complete = lambda poses: jnp.einsum("tj,kjd->ktd", matrix, poses)  # noqa: E731
    return anchors.replace(
        pose2d=complete(anchors.pose2d),
        pose3d=complete(anchors.pose3d),
        std=anchors.std @ jnp.abs(matrix).T,
        joint_set=skeleton.get_joint_set(joint_set).name,
    )


def save_anchor_poses(path: str | os.PathLike, anchors: AnchorPoses) -> None:
    """Writes anchors to a small versioned .npz, atomically."""
    atomic.write_npz(
        path,
        format_version=FORMAT_VERSION,
        joint_set=anchors.joint_set,
        margin=anchors.margin,
        twins=anchors.twins,
        pose2d=np.asarray(anchors.pose2d),
        pose3d=np.asarray(anchors.pose3d),
        std=np.asarray(anchors.std),
    )


def load_anchor_poses(path: str | os.PathLike) -> AnchorPoses:
    """Reads anchors written by `save_anchor_poses`; clear errors on bad files."""
    path = os.fspath(path)
    data = npz.read_npz(path, "anchor file")
    try:
        version = int(data["format_version"])
        fields = {k: data[k] for k in ("pose2d", "pose3d", "std")}
        joint_set, margin, twins = (
            str(data["joint_set"]),
            float(data["margin"]),
            bool(data["twins"]),
        )
    except (KeyError, ValueError) as e:  # the arrays are in memory: no I/O error here
        raise ValueError(f"{path} is not an anchor-pose file: {e}") from None
    if version != FORMAT_VERSION:
        raise ValueError(f"{path}: anchor format version {version}, expected {FORMAT_VERSION}")
    js = skeleton.get_joint_set(joint_set)
    k = fields["pose3d"].shape[0]
    if twins and k % 2:
        raise ValueError(f"{path}: {k} anchors cannot be full-body/upper-body twins")
    expected = {
        "pose2d": (k, js.num_joints, 2),
        "pose3d": (k, js.num_joints, 3),
        "std": (5, js.num_joints),
    }
    for name, shape in expected.items():
        if fields[name].shape != shape:
            raise ValueError(f"{path}: {name} has shape {fields[name].shape}, expected {shape}")
        if fields[name].dtype.kind not in "iuf" or not np.isfinite(fields[name]).all():
            raise ValueError(f"{path}: {name} holds NaN, inf or non-numbers, expected finite")
    return AnchorPoses(
        pose2d=jnp.asarray(fields["pose2d"], jnp.float32),
        pose3d=jnp.asarray(fields["pose3d"], jnp.float32),
        std=jnp.asarray(fields["std"], jnp.float32),
        joint_set=js.name,
        margin=margin,
        twins=twins,
    )


def mean_pose_path(path: str | os.PathLike) -> str:
    """The mean-pose file written next to an anchor file: `<stem>_mean_pose.npz`."""
    path = os.fspath(path)
    stem = path[: -len(".npz")] if path.endswith(".npz") else path
    return stem + "_mean_pose.npz"


def fit_anchor_file(
    corpus: str,
    output: str | os.PathLike,
    *,
    num_anchors: int,
    upper_body: bool = False,
    joint_set: str = "lcr13",
    data_dir: str | None = None,
    max_poses: int | None = None,
    normalize: bool = True,
    seed: int = 0,
    random_views: bool = False,
    max_elevation: float = 0.5,
) -> dict:
    """K-means anchor poses (+ the mean pose) of a pose corpus, written to files (Sec. 4.2).

    The released in-the-wild model's anchors are K-means centres of its MoCap corpus;
    this fits them on any corpus of `lcrnet_jax.data.corpus.load_pose_corpus` (e.g.
    `cmu_mocap`, an LCR-17 .npz, or the 3D people of TFDS sources) and writes `output`
    and `mean_pose_path(output)` (the one-anchor fit, for the mean-pose baseline), both
    only after every check passed.

    Args:
      corpus: corpus spec (comma-separated .npz paths and TFDS `NAME[/CONFIG][:SPLIT]`).
      output: anchor .npz to write (its folder is made if missing).
      num_anchors: K full-body anchors.
      upper_body: also the K upper-body twins.
      joint_set: joint set of the anchors (the run's `config.data.joint_set`).
      data_dir: TFDS data directory of the corpus datasets.
      max_poses: records read per dataset entry (None: all).
      normalize: compute the regression std from the corpus.
      seed: subset, K-means and view seed.
      random_views: first turn each pose to a random heading (uniform) and camera
        elevation (within `max_elevation` radians), as `pseudo_gt.project_corpus` sees
        a MoCap corpus: MoCap poses keep the heading they had in the capture room, and
        the paper clusters oriented poses (Sec. 3.1, 4.2). Not for poses already seen
        by cameras (a dataset's 3D people).
      max_elevation: see `random_views`, radians.

    Returns:
      {"path", "mean_path", "poses", "anchors", "joint_set"}.
    """
    from lcrnet_jax.data import corpus as corpus_lib

    output = os.fspath(output)
    if num_anchors < 1:
        raise ValueError(f"--num must be >= 1, got {num_anchors}")
    if not output.endswith(".npz"):
        raise ValueError(f"output must be an .npz path, got {output!r}")
    geometry.check_view_ranges(max_elevation)
    poses, joint_set = corpus_lib.load_pose_corpus(
        corpus, joint_set=joint_set, data_dir=data_dir, max_poses=max_poses, seed=seed
    )
    if len(poses) < num_anchors:
        raise ValueError(
            f"corpus {corpus!r} has {len(poses)} poses, fewer than the {num_anchors} anchors "
            "asked for: lower --num or use a larger corpus"
        )
    if random_views:
        rotations = geometry.random_rotations(
            jax.random.key(seed), len(poses), max_elevation=max_elevation
        )
        centred = geometry.center_on_torso(poses, joint_set)
        poses = np.asarray(geometry.rotate(centred, rotations), np.float32)
    anchors = fit_anchor_poses(
        poses, num_anchors, joint_set=joint_set, upper_body=upper_body, normalize=normalize,
        seed=seed,
    )  # fmt: skip
    mean = fit_anchor_poses(poses, 1, joint_set=joint_set, normalize=False, seed=seed)
    atomic.make_folder(os.path.dirname(os.path.abspath(output)))
    save_anchor_poses(output, anchors)
    save_anchor_poses(mean_pose_path(output), mean)
    return {
        "path": output,
        "mean_path": mean_pose_path(output),
        "poses": len(poses),
        "anchors": anchors.num_anchors,
        "joint_set": joint_set,
    }
