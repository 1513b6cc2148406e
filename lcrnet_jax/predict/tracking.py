"""People tracked through a video: stable ids and smoothed 2D/3D poses (beyond the paper).

LCR-Net++ detects the people of each frame independently (Sec. 3.6); this module links
the detections of consecutive frames into tracks and smooths each track's poses. It runs
on the host in numpy: a frame holds a few people.

Matching (`Tracker.update`, once per frame):
  1. Each live track predicts its 2D pose at this frame: its last detected pose moved
     at constant velocity, the velocity of its mean joint between detections averaged
     with the previous velocity (no move while it has one detection).
  2. Similarity of track t and detection d: `oks_weight * OKS + (1 - oks_weight) * IoU`,
     OKS (COCO's formula, `metrics.coco.oks`) with one `oks_sigma` for every joint and
     the area of the predicted pose's box, IoU of the two poses' boxes
     (`geometry.pose_box`, 10% margin).
  3. The Hungarian algorithm (`scipy.optimize.linear_sum_assignment`) pairs tracks and
     detections with the largest total similarity over the pairs at or above
     `min_similarity`; a pair below it weighs nothing and is left unpaired. It pairs
     the detections scoring at least `match_score` first, then the others with the
     tracks left (as ByteTrack does): a low-scoring mode that PPI returns beside a
     person cannot take that person's track.
  4. An unpaired detection scoring at least `match_score` starts a new track (ids 0, 1,
     2, ... in order of first appearance, never reused); an unpaired one below it is
     left untracked (id -1, its poses as detected, not in the tracks' history), so that
     such a mode cannot start a track that takes the person's detections later. A track
     unpaired for more than `max_age` frames ends.
There is no appearance model: two people of the same image size crossing the same spot
may exchange ids in the frames where their poses coincide (a difference in size, i.e.
in depth, or in motion usually keeps them apart).

Smoothing: each track's 2D and 3D poses, and its place in camera space when given (the
torso centre's, `PoseResult.poses3d_cam` less `poses3d`, whose depth, fitted to the 2D
pose, jitters most), go through a One-Euro filter (Casiez et al., CHI 2012), per joint:
a low-pass filter whose cutoff rises with the joint's speed,
`cutoff = min_cutoff + beta * speed` (Hz), so slow poses lose their jitter and fast
ones keep up. The speed is measured in person sizes per second (the diagonal of the
pose's box in 2D, of its 3D extent in 3D and in camera space), so one `beta` fits every
image size, 2D and 3D. For a joint moving at a constant speed v (sizes/s) the filter
lags by about 1 / (2 pi (min_cutoff + beta v)) seconds: with the defaults, 53 ms (1.3
frames at 25 fps) at 1 size/s, and the lag shrinks as the speed grows. A frame where a
track is missed leaves it unchanged; its next detection is filtered with the longer time
step, as is its next known place after a frame where it had none.

The tracks' history (every tracked person of every frame) goes to a temporary file as
float64 rows, so a long video's tracking holds only its live tracks in memory.
"""

from __future__ import annotations

import dataclasses
import os
import tempfile
import weakref
from collections.abc import Iterator

import numpy as np
from scipy.optimize import linear_sum_assignment

from lcrnet_jax import geometry
from lcrnet_jax.metrics.coco import oks


@dataclasses.dataclass(frozen=True)
class TrackingConfig:
    """Tracking and smoothing parameters (see the module docstring).

    Attributes:
      max_age: frames a track survives without a detection.
      min_similarity: least OKS/IoU similarity in [0, 1] of a track and a detection.
      match_score: detections scoring at least this are paired with tracks first and
        may start a track; the others only continue one.
      oks_weight: weight of the OKS in the similarity (the IoU has 1 - oks_weight).
      oks_sigma: OKS constant of every joint (COCO's are 0.025-0.107).
      smooth: One-Euro smoothing of the poses (False: the detections' poses).
      min_cutoff: One-Euro cutoff at rest, Hz (lower: smoother, more lag).
      beta: cutoff increase per unit of speed, Hz per (person size / s).
      d_cutoff: cutoff of the speed estimate, Hz.
    """

    max_age: int = 10
    min_similarity: float = 0.1
    match_score: float = 0.1
    oks_weight: float = 0.5
    oks_sigma: float = 0.08
    smooth: bool = True
    min_cutoff: float = 1.0
    beta: float = 2.0
    d_cutoff: float = 1.0

    def __post_init__(self):
        # Written so that NaN fails: a NaN cutoff would null every smoothed pose.
        rules = (
            ("max_age", 0 <= self.max_age, ">= 0"),
            ("min_similarity", 0 <= self.min_similarity <= 1, "in [0, 1]"),
            ("oks_weight", 0 <= self.oks_weight <= 1, "in [0, 1]"),
            ("match_score", 0 <= self.match_score < np.inf, "finite and >= 0"),
            ("oks_sigma", 0 < self.oks_sigma < np.inf, "finite and > 0"),
            ("min_cutoff", 0 < self.min_cutoff < np.inf, "finite and > 0"),
            ("d_cutoff", 0 < self.d_cutoff < np.inf, "finite and > 0"),
            ("beta", 0 <= self.beta < np.inf, "finite and >= 0"),
        )
        for name, holds, rule in rules:
            if not holds:
                raise ValueError(f"tracking: {name} must be {rule}, got {getattr(self, name)}")


def _alpha(cutoff, dt: float):
    """Smoothing factor of a first-order low-pass filter at `cutoff` Hz, step `dt` s."""
    return 1.0 / (1.0 + 1.0 / (2 * np.pi * cutoff * dt))


class OneEuroFilter:
    """One-Euro filter of a (J, D) pose signal, speed measured per joint in sizes/s.

    A joint unknown in a frame (NaN) is NaN in that frame's output and keeps its state;
    a joint unknown so far starts from its first known value.
    """

    def __init__(self, *, min_cutoff: float, beta: float, d_cutoff: float):
        self.min_cutoff, self.beta, self.d_cutoff = min_cutoff, beta, d_cutoff
        self._x = self._dx = self._t = None

    def __call__(self, x: np.ndarray, t: float, scale: float) -> np.ndarray:
        """The filtered value of `x` (J, D) at time `t` (s); `scale`: the size unit."""
        x = np.asarray(x, np.float64)
        if self._x is None or t <= self._t:
            self._x, self._dx, self._t = x, np.zeros_like(x), t
            return x
        known = np.isfinite(x)
        previous = np.where(np.isfinite(self._x), self._x, x)
        dt = t - self._t
        dx = np.where(known, (x - previous) / dt, 0.0)
        self._dx = self._dx + _alpha(self.d_cutoff, dt) * (dx - self._dx)
        speed = np.linalg.norm(self._dx, axis=-1, keepdims=True) / max(scale, 1e-9)  # (J, 1)
        alpha = _alpha(self.min_cutoff + self.beta * speed, dt)
        smoothed = previous + alpha * (x - previous)
        self._x, self._t = np.where(known, smoothed, previous), t
        return smoothed


def _size(pose: np.ndarray) -> float:
    """Diagonal of the box around a (J, D) pose's finite joints."""
    finite = pose[np.isfinite(pose).all(-1)]
    return float(np.linalg.norm(finite.max(0) - finite.min(0))) if len(finite) else 0.0


def _filled(poses: np.ndarray) -> np.ndarray:
    """(N, J, D) poses with each unknown (non-finite) joint at its pose's mean known
    joint (0 for a pose without any)."""
    known = np.isfinite(poses).all(-1, keepdims=True)
    count = known.sum(-2, keepdims=True)
    mean = np.where(known, poses, 0.0).sum(-2, keepdims=True) / np.maximum(count, 1)
    return np.where(known, poses, mean)


@dataclasses.dataclass
class _Track:
    id: int
    last: np.ndarray  # (J, 2) last detected 2D pose
    last_frame: int
    velocity: np.ndarray | None  # (2,) pixels per frame of the pose's mean joint
    filter2d: OneEuroFilter
    filter3d: OneEuroFilter
    filter_place: OneEuroFilter

    def predicted(self, frame: int) -> np.ndarray:
        if self.velocity is None:
            return self.last
        return self.last + self.velocity * (frame - self.last_frame)

    def move(self, pose2d: np.ndarray, frame: int) -> None:
        """A new detection: the velocity is the mean joint's, averaged with the last."""
        velocity = np.nanmean(pose2d - self.last, axis=0) / (frame - self.last_frame)
        if self.velocity is not None:
            velocity = 0.5 * (velocity + self.velocity)
        self.velocity, self.last, self.last_frame = velocity, pose2d, frame


@dataclasses.dataclass(frozen=True)
class TrackedPeople:
    """One frame's people with their track ids, in the order of the detections.

    Attributes:
      ids: (P,) int track ids, -1 for a detection left untracked (scoring under
        `match_score`, paired with no track); its poses are the detected ones.
      poses2d: (P, J, 2) smoothed 2D poses, pixels.
      poses3d: (P, J, 3) smoothed 3D poses, metres.
      places: (P, 3) smoothed torso centres in camera space, metres (NaN where the
        detection had none); None when `update` was given none.
    """

    ids: np.ndarray
    poses2d: np.ndarray
    poses3d: np.ndarray
    places: np.ndarray | None = None


class Tracker:
    """Links the people of consecutive frames into tracks and smooths their poses.

    Feed every frame in order with `update`; `tracks` (one track at a time) and
    `tracks_json` give the whole history, kept in a temporary file (unnamed, removed
    with the tracker): (6 + 5 J) float64 numbers per tracked person and frame.

    Args:
      config: the parameters.
      fps: frames per second of the video (the filters' time step).
    """

    chunk = 256  # rows of the history that `tracks` reads at a time

    def __init__(self, config: TrackingConfig, fps: float):
        if not fps > 0:
            raise ValueError(f"tracking: fps must be > 0, got {fps}")
        self.config, self.fps = config, float(fps)
        self._tracks: list[_Track] = []
        self._next_id = 0
        # Rows of id, frame, score, pose2d (J x 2), pose3d (J x 3), place (3).
        self._history = tempfile.TemporaryFile()
        weakref.finalize(self, self._history.close)
        self._joints: int | None = None  # J, fixed by the first frame
        self._with_places = False  # whether `update` was given places
        self._frame = -1  # the last frame given to `update`

    def _similarity(self, predicted: np.ndarray, poses2d: np.ndarray) -> np.ndarray:
        """(T, P) OKS/IoU similarity of predicted track poses (T, J, 2) and detections
        (unknown joints, NaN, at their pose's mean joint)."""
        c = self.config
        predicted, poses2d = _filled(predicted), _filled(poses2d)
        boxes_t = geometry.pose_box(predicted, margin=0.0)
        area = np.asarray(geometry.box_area(boxes_t))
        sigmas = np.full(poses2d.shape[1], c.oks_sigma)
        visible = np.ones(predicted.shape[:2], bool)
        similarity_oks = oks(poses2d, predicted, visible, area, sigmas=sigmas).T  # (T, P)
        iou = np.asarray(
            geometry.iou_matrix(geometry.pose_box(predicted), geometry.pose_box(poses2d))
        )
        return c.oks_weight * similarity_oks + (1 - c.oks_weight) * iou

    def update(
        self,
        frame: int,
        *,
        poses2d: np.ndarray,
        poses3d: np.ndarray,
        scores: np.ndarray,
        places: np.ndarray | None = None,
        time: float | None = None,
    ) -> TrackedPeople:
        """Tracks one frame's detections.

        Args:
          frame: the frame index (increasing; gaps are frames without detections).
          time: the frame's time in seconds, increasing (`VideoReader.times`: frame
            durations may vary); None: frame / fps.
          poses2d: (P, J, 2) pixels; poses3d: (P, J, 3) metres; scores: (P,); NaN
            where a joint is unknown.
          places: (P, 3) metres, each torso centre in camera space (NaN where unknown),
            or None.

        Returns:
          The detections' track ids and smoothed poses.

        Raises:
          ValueError: a frame not after the last one, or an argument of another shape
            (the tracker is then left as it was).
        """
        c = self.config
        if frame <= self._frame:
            raise ValueError(
                f"tracking: frame {frame} after frame {self._frame}: frames must increase"
            )
        poses2d = np.asarray(poses2d, np.float64)
        poses3d = np.asarray(poses3d, np.float64)
        if poses2d.ndim != 3 or poses2d.shape[-1] != 2:
            raise ValueError(f"tracking: poses2d must be (P, J, 2), got shape {poses2d.shape}")
        people, joints = poses2d.shape[:2]
        if people and self._joints not in (None, joints):
            raise ValueError(
                f"tracking: poses2d must have the {self._joints} joints of the frames before, "
                f"got shape {poses2d.shape}"
            )
        expected = {"poses3d": (poses3d, (people, joints, 3)), "scores": (scores, (people,))}
        if places is not None:
            expected["places"] = (places, (people, 3))
        for name, (value, shape) in expected.items():
            if np.shape(value) != shape:
                raise ValueError(
                    f"tracking: {name} must be {shape} for poses2d of shape {poses2d.shape}, "
                    f"got shape {np.shape(value)}"
                )
        scores = np.asarray(scores, np.float64)
        self._frame = frame
        self._joints = joints if people else self._joints
        self._tracks = [t for t in self._tracks if frame - t.last_frame <= c.max_age + 1]
        pairs = {}
        if self._tracks and len(poses2d):
            predicted = np.stack([t.predicted(frame) for t in self._tracks])
            similarity = self._similarity(predicted, poses2d)
            confident = scores >= c.match_score
            for detections in (np.flatnonzero(confident), np.flatnonzero(~confident)):
                taken = {track.id for track in pairs.values()}
                free = [t for t, track in enumerate(self._tracks) if track.id not in taken]
                pairs |= self._pair(similarity, free, detections)
        ids = np.zeros(len(poses2d), np.int64)
        out2d, out3d = poses2d.copy(), poses3d.copy()
        out_places = None if places is None else np.array(places, np.float64)
        self._with_places |= out_places is not None
        t_seconds = frame / self.fps if time is None else float(time)
        for p in range(len(poses2d)):
            track = pairs.get(p)
            if track is None and scores[p] < c.match_score:
                ids[p] = -1
                continue
            if track is None:
                track = self._new_track(poses2d[p], frame)
            else:
                track.move(poses2d[p], frame)
            ids[p] = track.id
            if c.smooth:
                out2d[p] = track.filter2d(poses2d[p], t_seconds, _size(poses2d[p]))
                out3d[p] = track.filter3d(poses3d[p], t_seconds, _size(poses3d[p]))
                if out_places is not None and np.isfinite(out_places[p]).all():
                    place = track.filter_place(out_places[p][None], t_seconds, _size(poses3d[p]))
                    out_places[p] = place[0]
        rows = np.concatenate(
            [
                np.stack([ids, np.full(people, frame), scores], -1),
                out2d.reshape(people, 2 * joints),
                out3d.reshape(people, 3 * joints),
                np.full((people, 3), np.nan) if out_places is None else out_places,
            ],
            -1,
            dtype=np.float64,
        )
        self._history.seek(0, os.SEEK_END)  # `tracks` reads it
        self._history.write(rows[ids >= 0].tobytes())
        return TrackedPeople(ids=ids, poses2d=out2d, poses3d=out3d, places=out_places)

    def _pair(self, similarity: np.ndarray, tracks: list[int], detections: np.ndarray) -> dict:
        """{detection: track} of the Hungarian pairing of `tracks` and `detections`
        (indices into the (T, P) `similarity`) over the pairs at or above
        `min_similarity`; pairs below it weigh nothing, so they cannot take a valid pair's
        place."""
        sub = similarity[np.ix_(tracks, detections)]
        gated = np.where(sub >= self.config.min_similarity, sub, 0.0)
        rows, cols = linear_sum_assignment(gated, maximize=True)
        return {
            int(detections[p]): self._tracks[tracks[t]]
            for t, p in zip(rows, cols, strict=True)
            if sub[t, p] >= self.config.min_similarity
        }

    def _new_track(self, pose2d: np.ndarray, frame: int) -> _Track:
        c = self.config
        options = {"min_cutoff": c.min_cutoff, "beta": c.beta, "d_cutoff": c.d_cutoff}
        track = _Track(
            id=self._next_id,
            last=pose2d,
            last_frame=frame,
            velocity=None,
            filter2d=OneEuroFilter(**options),
            filter3d=OneEuroFilter(**options),
            filter_place=OneEuroFilter(**options),
        )
        self._next_id += 1
        self._tracks.append(track)
        return track

    def tracks(self) -> Iterator[dict]:
        """Every track so far, one at a time, by id: {"id", "frames", "scores", "pose2d",
        "pose3d"}, the poses smoothed (frames x J x 2 pixels, frames x J x 3 metres, null
        where a joint was unknown); once `update` was given places, also "place": frames x
        [X, Y, Z] metres, the smoothed torso centre in camera space (null where unknown).
        All but "id" are iterators over the track's frames that read the history `chunk`
        rows at a time, so that a long track is never all in memory (`tracks_json` gives
        them as lists)."""
        if self._joints is None:
            return
        file, width = self._history, 6 + 5 * self._joints  # numbers per row
        file.seek(0)
        blocks = iter(lambda: file.read(8 * width * self.chunk), b"")
        ids = [np.frombuffer(b, np.float64)[::width].astype(np.int64) for b in blocks]
        if not ids:  # every detection left untracked
            return
        ids = np.concatenate(ids)  # copies: a view would keep its whole block
        order = np.argsort(ids, kind="stable")  # by id, then frame
        for rows in np.split(order, np.flatnonzero(np.diff(ids[order])) + 1):
            yield self._track(int(ids[rows[0]]), rows)

    def _track(self, track_id: int, rows: np.ndarray) -> dict:
        """One track of `tracks`, its `rows` in the history."""
        file, joints = self._history, self._joints
        size = 8 * (6 + 5 * joints)  # bytes per row

        def field(convert):
            for start in range(0, len(rows), self.chunk):
                data = []
                for row in rows[start : start + self.chunk]:
                    file.seek(int(row) * size)
                    data.append(file.read(size))
                yield from convert(np.frombuffer(b"".join(data), np.float64).reshape(len(data), -1))

        pose2d, pose3d = slice(3, 3 + 2 * joints), slice(3 + 2 * joints, 3 + 5 * joints)
        track = {
            "id": track_id,
            "frames": field(lambda h: h[:, 1].astype(np.int64).tolist()),
            "scores": field(lambda h: [round(s, 4) for s in h[:, 2].tolist()]),
            "pose2d": field(lambda h: _json_numbers(h[:, pose2d].reshape(-1, joints, 2), 2)),
            "pose3d": field(lambda h: _json_numbers(h[:, pose3d].reshape(-1, joints, 3), 4)),
        }
        if self._with_places:
            track["place"] = field(
                lambda h: [
                    np.round(x, 4).tolist() if np.isfinite(x).all() else None for x in h[:, -3:]
                ]
            )
        return track

    def tracks_json(self) -> list[dict]:
        """Every track so far (`tracks`), with lists."""
        return [
            {key: value if key == "id" else list(value) for key, value in track.items()}
            for track in self.tracks()
        ]


def _json_numbers(values, digits: int) -> list:
    """Nested lists of rounded numbers, None where not finite (JSON has no NaN)."""
    values = np.asarray(values, np.float64)
    out = np.round(values, digits).astype(object)
    out[~np.isfinite(values)] = None
    return out.tolist()
