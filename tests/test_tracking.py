"""Tests of lcrnet_jax.predict.tracking on a synthetic clip of walking people."""

import json

import numpy as np
import pytest

from lcrnet_jax.predict import tracking

FPS = 25.0
PIXELS_PER_METRE = 100.0

# A standing LCR-13 pose, torso-centred metres (X right, Y down): ankles, knees, hips,
# wrists, elbows, shoulders (right, left), head.
STANDING = np.array(
    [
        [-0.1, 0.95, 0], [0.1, 0.95, 0], [-0.1, 0.5, 0], [0.1, 0.5, 0], [-0.1, 0.05, 0],
        [0.1, 0.05, 0], [-0.25, 0.05, 0], [0.25, 0.05, 0], [-0.22, -0.25, 0], [0.22, -0.25, 0],
        [-0.18, -0.55, 0], [0.18, -0.55, 0], [0.0, -0.8, 0],
    ]
)  # fmt: skip
SWINGING = [0, 1, 2, 3, 6, 7, 8, 9]  # ankles, knees, wrists, elbows move forward and back
SIDE = np.array([1, -1, 1, -1, 1, -1, 1, -1])  # right and left limbs in opposite phase


def walking_clip(frames: int, starts, speeds, scales=None, y=300.0):
    """Ground-truth poses of people walking along x: (frames, people, J, 2) pixels and
    (frames, people, J, 3) metres. `speeds` in pixels per frame; `scales`: image size
    of each person relative to 100 pixels per metre (people farther away are smaller)."""
    t = np.arange(frames)[:, None] / FPS  # (F, 1)
    swing = 0.15 * np.sin(2 * np.pi * 1.0 * t)[..., None] * SIDE  # (F, 1, 8) metres
    poses3d = np.repeat(STANDING[None, None], frames, 0).repeat(len(starts), 1)
    poses3d[:, :, SWINGING, 2] += swing  # limbs swing forward (Z) ...
    poses3d[:, :, SWINGING, 0] += 0.3 * swing  # ... and a little sideways
    centres = np.asarray(starts) + np.asarray(speeds) * np.arange(frames)[:, None]  # (F, P)
    scales = np.ones(len(starts)) if scales is None else np.asarray(scales)
    poses2d = poses3d[..., :2] * PIXELS_PER_METRE * scales[:, None, None]
    poses2d[..., 0] += centres[..., None]
    poses2d[..., 1] += y
    return poses2d, poses3d


def detections(poses2d, poses3d, *, noise2d=3.0, noise3d=0.02, missed=(), seed=0):
    """Per frame: (order, noisy 2D, noisy 3D) with the people in a random order and the
    (frame, person) pairs of `missed` left out."""
    rng = np.random.default_rng(seed)
    for f in range(len(poses2d)):
        people = [p for p in rng.permutation(poses2d.shape[1]) if (f, p) not in missed]
        yield (
            np.array(people, int),
            poses2d[f, people] + rng.normal(0, noise2d, poses2d[f, people].shape),
            poses3d[f, people] + rng.normal(0, noise3d, poses3d[f, people].shape),
        )


def run(config, poses2d, poses3d, **kwargs):
    """Tracks the clip; returns (ids, smoothed 2D, smoothed 3D, raw 2D, raw 3D) per
    ground-truth person: (F, P) ids (-1 where missed) and (F, P, J, D) poses (NaN)."""
    tracker = tracking.Tracker(config, fps=FPS)
    frames, people = poses2d.shape[:2]
    ids = np.full((frames, people), -1)
    out = [np.full(poses2d.shape, np.nan), np.full(poses3d.shape, np.nan)]
    raw = [np.full(poses2d.shape, np.nan), np.full(poses3d.shape, np.nan)]
    for f, (order, noisy2d, noisy3d) in enumerate(detections(poses2d, poses3d, **kwargs)):
        tracked = tracker.update(f, poses2d=noisy2d, poses3d=noisy3d, scores=np.ones(len(order)))
        ids[f, order] = tracked.ids
        out[0][f, order], out[1][f, order] = tracked.poses2d, tracked.poses3d
        raw[0][f, order], raw[1][f, order] = noisy2d, noisy3d
    return ids, *out, *raw, tracker


def jitter(poses, truth):
    """Mean frame-to-frame change error, per joint: |(x_t - x_t-1) - (g_t - g_t-1)|."""
    error = np.diff(poses, axis=0) - np.diff(truth, axis=0)
    return np.nanmean(np.linalg.norm(error, axis=-1))


def test_ids_are_stable_through_order_swaps_a_crossing_and_missed_frames():
    # Person 0 walks right and person 1, farther away (smaller), left: they cross around
    # frame 31, where person 1 is missed for two frames; person 2 stands.
    poses2d, poses3d = walking_clip(
        60, starts=[100, 500, 800], speeds=[7.0, -6.0, 0.0], scales=[1.0, 0.75, 1.0]
    )
    missed = {(10, 0), (31, 1), (32, 1), (40, 2), (41, 2), (42, 2)}
    ids, *_, tracker = run(tracking.TrackingConfig(), poses2d, poses3d, missed=missed)
    track_ids = []
    for person in range(3):
        seen = ids[:, person][ids[:, person] >= 0]
        assert len(seen) == 60 - sum(p == person for _, p in missed)
        assert len(set(seen)) == 1, f"person {person} got ids {sorted(set(seen))}"
        track_ids.append(int(seen[0]))
    assert sorted(track_ids) == [0, 1, 2]
    tracks = tracker.tracks_json()
    assert [t["id"] for t in tracks] == [0, 1, 2]
    walking_left = tracks[track_ids[1]]
    assert walking_left["frames"] == [f for f in range(60) if f not in (31, 32)]
    assert np.shape(walking_left["pose2d"]) == (58, 13, 2)
    assert np.shape(walking_left["pose3d"]) == (58, 13, 3)


def test_frame_times_set_the_smoothing_step():
    """Given as times (a variable-rate video's), frames 10x farther apart in time are
    smoothed less: the filter's step is the time between them, not 1 / fps."""
    poses2d, poses3d = walking_clip(10, starts=[100], speeds=[5.0])
    smoothed = {}
    for stretch in (1.0, 10.0):
        tracker = tracking.Tracker(tracking.TrackingConfig(), fps=FPS)
        for f in range(10):
            out = tracker.update(f, poses2d=poses2d[f], poses3d=poses3d[f], scores=[1.0],
                                 time=None if stretch == 1 else stretch * f / FPS)  # fmt: skip
        smoothed[stretch] = np.abs(out.poses2d - poses2d[9]).mean()
    assert smoothed[10.0] < 0.5 * smoothed[1.0]


def test_a_track_ends_after_max_age_missed_frames():
    poses2d, poses3d = walking_clip(20, starts=[100], speeds=[2.0])
    config = tracking.TrackingConfig(max_age=3)
    gone_4 = {(f, 0) for f in range(5, 9)}  # 4 frames missed: a new track
    ids, *_ = run(config, poses2d, poses3d, missed=gone_4)
    assert set(ids[:5, 0]) == {0} and set(ids[9:, 0]) == {1}
    gone_3 = {(f, 0) for f in range(5, 8)}  # 3 frames: the same track
    ids, *_ = run(config, poses2d, poses3d, missed=gone_3)
    assert set(ids[ids >= 0]) == {0}


def test_smoothing_lowers_jitter_with_a_bounded_lag():
    speed = 5.0  # pixels per frame: 125 px/s, 0.6 person sizes (box diagonals) per second
    poses2d, poses3d = walking_clip(100, starts=[100], speeds=[speed])
    config = tracking.TrackingConfig()
    ids, smooth2d, smooth3d, raw2d, raw3d, _ = run(config, poses2d, poses3d)
    assert set(ids.ravel()) == {0}
    assert jitter(smooth2d, poses2d) < 0.5 * jitter(raw2d, poses2d)
    assert jitter(smooth3d, poses3d) < 0.5 * jitter(raw3d, poses3d)
    # Lag along the walk, in frames: the mean 2D offset behind the true pose / speed.
    lag = np.mean(poses2d[20:, ..., 0] - smooth2d[20:, ..., 0]) / speed
    size = np.linalg.norm(np.ptp(poses2d[0, 0], axis=0))  # box diagonal, pixels
    bound = FPS / (2 * np.pi * (config.min_cutoff + config.beta * speed * FPS / size))
    assert -0.2 < lag < bound, (lag, bound)
    without = tracking.TrackingConfig(smooth=False)
    _, plain2d, *_ = run(without, poses2d, poses3d)
    np.testing.assert_allclose(plain2d, raw2d)


def test_one_euro_follows_a_step_and_rejects_bad_settings():
    f = tracking.OneEuroFilter(min_cutoff=1.0, beta=0.0, d_cutoff=1.0)
    assert f(np.zeros((1, 2)), 0.0, 1.0).tolist() == [[0.0, 0.0]]
    alpha = 1 / (1 + FPS / (2 * np.pi))  # first-order low-pass at 1 Hz, 25 fps
    np.testing.assert_allclose(f(np.ones((1, 2)), 1 / FPS, 1.0), [[alpha, alpha]])
    with pytest.raises(ValueError, match="tracking: max_age must be >= 0"):
        tracking.TrackingConfig(max_age=-1)
    with pytest.raises(ValueError, match=r"^tracking: min_cutoff must be finite and > 0, got 0.0$"):
        tracking.TrackingConfig(min_cutoff=0.0)


@pytest.mark.parametrize(
    "setting",
    [{"min_cutoff": np.nan}, {"beta": np.nan}, {"d_cutoff": np.nan}, {"oks_sigma": np.nan},
     {"min_cutoff": np.inf}, {"beta": np.inf}],
)  # fmt: skip
def test_non_finite_smoothing_settings_are_refused(setting):
    ((name, value),) = setting.items()
    with pytest.raises(
        ValueError, match=rf"^tracking: {name} must be finite and >=? 0, got {value}$"
    ):
        tracking.TrackingConfig(**setting)


def test_places_in_camera_space_are_smoothed_and_unknown_ones_skipped():
    """A person walking away at 1 m/s, whose fitted depth jitters by 0.2 m."""
    poses2d, poses3d = walking_clip(60, starts=[100], speeds=[0.0])
    truth = np.zeros((60, 3))
    truth[:, 2] = 4.0 + np.arange(60) / FPS  # metres
    config = tracking.TrackingConfig()

    def smoothed(places):
        tracker = tracking.Tracker(config, fps=FPS)
        out = [
            tracker.update(
                f, poses2d=poses2d[f], poses3d=poses3d[f], scores=np.ones(1),
                places=places[f, None],
            ).places[0]
            for f in range(60)
        ]  # fmt: skip
        return np.array(out), tracker

    noisy = truth + np.random.default_rng(1).normal(0, 0.2, truth.shape) * [0.1, 0.1, 1.0]
    noisy[30] = np.nan  # a frame where the 2D pose could not place the person
    smooth, tracker = smoothed(noisy)
    assert np.isnan(smooth[30]).all() and np.isfinite(np.delete(smooth, 30, 0)).all()
    known = np.delete(np.arange(60), 30)
    assert jitter(smooth[known], truth[known]) < 0.5 * jitter(noisy[known], truth[known])
    (track,) = tracker.tracks_json()
    assert track["place"][30] is None and len(track["place"]) == 60
    np.testing.assert_allclose(track["place"][59], smooth[59], atol=1e-4)
    # Without noise: the lag behind the walk, in seconds, within the filter's at 1 m/s.
    lag = np.mean(truth[40:, 2] - smoothed(truth)[0][40:, 2])
    size = np.linalg.norm(np.ptp(poses3d[0, 0], axis=0))  # metres
    assert 0 < lag < 1 / (2 * np.pi * (config.min_cutoff + config.beta * 1.0 / size))
    plain = tracking.Tracker(config, fps=FPS)
    assert plain.update(0, poses2d=poses2d[0], poses3d=poses3d[0], scores=np.ones(1)).places is None
    assert "place" not in plain.tracks_json()[0]
    plain.update(1, poses2d=poses2d[1], poses3d=poses3d[1], scores=np.ones(1), places=truth[1:2])
    assert plain.tracks_json()[0]["place"] == [None, truth[1].tolist()]  # one per frame


def test_an_unknown_joint_keeps_its_track_and_its_filter_and_frames_must_increase():
    """Two walkers; person 0's left wrist unknown (NaN) in frames 5-6, its head in 9."""
    poses2d, poses3d = walking_clip(12, starts=[100, 500], speeds=[4.0, -4.0])
    poses2d[5:7, 0, 7] = poses3d[5:7, 0, 7] = np.nan
    poses2d[9, 0, 12] = np.nan
    tracker = tracking.Tracker(tracking.TrackingConfig(), fps=FPS)
    for f in range(12):
        tracked = tracker.update(f, poses2d=poses2d[f], poses3d=poses3d[f], scores=np.ones(2))
        assert list(tracked.ids) == [0, 1], f
        unknown = np.isnan(poses2d[f, 0]).any(-1)
        assert (np.isnan(tracked.poses2d[0]).any(-1) == unknown).all(), f
        assert np.isnan(tracked.poses3d[0, 7]).any() == (f in (5, 6))
    np.testing.assert_allclose(tracked.poses2d[0], poses2d[11, 0], atol=25.0)
    walker = json.loads(json.dumps(tracker.tracks_json(), allow_nan=False))[0]
    assert walker["pose2d"][5][7] == [None, None] and None not in walker["pose2d"][4][7]
    with pytest.raises(ValueError, match="tracking: frame 11 after frame 11: frames must increase"):
        tracker.update(11, poses2d=poses2d[11], poses3d=poses3d[11], scores=np.ones(2))


def test_pairs_below_min_similarity_do_not_steer_the_assignment():
    """Track 0 fits both detections, track 1 only the second, and a pair below the
    threshold (track 1, detection 0) would make the crossed pairing's total larger."""
    poses2d, poses3d = walking_clip(2, starts=[100, 500], speeds=[0.0, 0.0])
    tracker = tracking.Tracker(tracking.TrackingConfig(min_similarity=0.1), fps=FPS)
    first = tracker.update(0, poses2d=poses2d[0], poses3d=poses3d[0], scores=np.ones(2))
    assert list(first.ids) == [0, 1]
    tracker._similarity = lambda predicted, detected: np.array([[0.5, 0.6], [0.09, 0.15]])
    tracked = tracker.update(1, poses2d=poses2d[1], poses3d=poses3d[1], scores=np.ones(2))
    assert list(tracked.ids) == [0, 1]  # not [2, 0]: track 1 lost, a new track started


def test_a_low_scoring_mode_beside_a_person_cannot_take_its_track():
    """PPI may return a low-scoring second mode where a person stands: the person, paired
    first, keeps its track even when the mode fits the track's prediction better."""
    poses2d, poses3d = walking_clip(2, starts=[100], speeds=[0.0])
    tracker = tracking.Tracker(tracking.TrackingConfig(), fps=FPS)  # match_score 0.1
    assert list(tracker.update(0, poses2d=poses2d[0], poses3d=poses3d[0], scores=[0.9]).ids) == [0]
    person, mode = poses2d[1, 0] + 12.0, poses2d[1, 0] + 1.0  # the mode nearer the track
    both2d, both3d = np.stack([mode, person]), np.stack([poses3d[1, 0]] * 2)
    tracked = tracker.update(1, poses2d=both2d, poses3d=both3d, scores=np.array([0.02, 0.9]))
    assert list(tracked.ids) == [-1, 0]  # the person keeps track 0; the mode, no track
    np.testing.assert_array_equal(tracked.poses2d[0], mode)  # as detected, not smoothed
    with pytest.raises(ValueError, match="match_score must be finite and >= 0, got nan"):
        tracking.TrackingConfig(match_score=float("nan"))


def test_a_low_scoring_mode_never_starts_a_track_that_takes_the_person_later():
    """A mode under `match_score` beside a still person every third frame: it started a
    track of its own, which then took the person's detection in the frames where it lay
    nearer (29 id changes in 200 frames of a helper's replay); now the person keeps
    track 0 throughout and the history holds that track only."""
    poses2d, poses3d = walking_clip(30, starts=[100], speeds=[0.0])
    rng = np.random.default_rng(0)
    tracker = tracking.Tracker(tracking.TrackingConfig(), fps=FPS)
    for f in range(30):
        person = poses2d[f, 0] + rng.normal(0, 3.0, 2)
        found2d, found3d, scores = [person], [poses3d[f, 0]], [0.9]
        if f % 3 == 1:
            found2d.append(poses2d[f, 0] + rng.normal(0, 3.0, 2))
            found3d.append(poses3d[f, 0])
            scores.append(0.05)
        tracked = tracker.update(
            f, poses2d=np.stack(found2d), poses3d=np.stack(found3d), scores=np.array(scores)
        )
        assert list(tracked.ids) == [0, -1][: len(scores)]
    (track,) = tracker.tracks()
    assert track["id"] == 0 and list(track["frames"]) == list(range(30))


def test_inputs_of_another_shape_are_refused_and_leave_the_tracker_as_it_was():
    """Checked before any state changes: a failed frame can be given again, corrected."""
    poses2d, poses3d = walking_clip(2, starts=[100, 500], speeds=[4.0, -4.0])
    tracker = tracking.Tracker(tracking.TrackingConfig(), fps=FPS)
    bad = [
        ({"scores": np.ones(1)}, r"scores must be \(2,\) for poses2d of shape \(2, 13, 2\), got"),
        ({"poses3d": poses3d[0, :1]}, r"poses3d must be \(2, 13, 3\) for poses2d of shape"),
        ({"places": np.ones(2)}, r"places must be \(2, 3\) for poses2d .*, got shape \(2,\)"),
        ({"poses2d": poses2d[0, 0]}, r"poses2d must be \(P, J, 2\), got shape \(13, 2\)"),
    ]
    for frame in range(2):  # without tracks, then with
        good = {"poses2d": poses2d[frame], "poses3d": poses3d[frame], "scores": np.ones(2)}
        for change, message in bad:
            with pytest.raises(ValueError, match=f"^tracking: {message}"):
                tracker.update(frame, **{**good, **change})
        tracked = tracker.update(frame, **good, places=np.zeros((2, 3)))
        assert list(tracked.ids) == [0, 1]
    assert [t["frames"] for t in tracker.tracks_json()] == [[0, 1], [0, 1]]
    assert [len(t["scores"]) for t in tracker.tracks_json()] == [2, 2]


def test_the_history_read_in_chunks_is_the_same_and_the_joints_cannot_change(monkeypatch):
    poses2d, poses3d = walking_clip(5, starts=[100, 500], speeds=[4.0, -4.0])
    tracker = tracking.Tracker(tracking.TrackingConfig(), fps=FPS)
    for f in range(5):
        tracker.update(f, poses2d=poses2d[f], poses3d=poses3d[f], scores=np.ones(2))
    whole = tracker.tracks_json()
    assert [t["frames"] for t in whole] == [list(range(5))] * 2
    monkeypatch.setattr(tracker, "chunk", 2)  # rows read at a time
    assert tracker.tracks_json() == whole
    with pytest.raises(ValueError, match=r"must have the 13 joints of the frames before, got"):
        tracker.update(5, poses2d=poses2d[4, :, :12], poses3d=poses3d[4, :, :12], scores=[1, 1])
    assert tracker.tracks_json() == whole


def test_a_pair_below_min_similarity_is_never_kept():
    """One person leaves at x=100 and another enters at x=900: the only pair is far
    below `min_similarity`, so the newcomer starts a new track instead of taking id 0."""
    left, left3d = walking_clip(1, starts=[100], speeds=[0.0])
    right, right3d = walking_clip(1, starts=[900], speeds=[0.0])
    tracker = tracking.Tracker(tracking.TrackingConfig(), fps=FPS)
    assert list(tracker.update(0, poses2d=left[0], poses3d=left3d[0], scores=np.ones(1)).ids) == [0]
    tracked = tracker.update(1, poses2d=right[0], poses3d=right3d[0], scores=np.ones(1))
    assert list(tracked.ids) == [1]


def test_the_prediction_moves_by_the_velocity_per_frame_averaged_with_the_last():
    """Mean joint at +10 px in frame 1 and +70 px in frame 4 (3 frames later): the
    velocity is (10 + 60 / 3) / 2 = 15 px per frame, so frame 5 is predicted at +85."""
    poses2d, poses3d = walking_clip(1, starts=[100], speeds=[0.0])
    tracker = tracking.Tracker(tracking.TrackingConfig(), fps=FPS)
    similarity, predictions = tracker._similarity, []

    def recording(predicted, detected):
        predictions.append(predicted)
        return similarity(predicted, detected)

    tracker._similarity = recording
    for frame, shift in [(0, 0.0), (1, 10.0), (4, 70.0), (5, 85.0)]:
        moved = poses2d[0] + [shift, 0.0]
        assert list(tracker.update(frame, poses2d=moved, poses3d=poses3d[0], scores=[1]).ids) == [0]
    expected = [poses2d[0, 0] + [shift, 0.0] for shift in (0.0, 10.0 + 10.0 * 3, 85.0)]
    np.testing.assert_allclose(np.concatenate(predictions), expected)


@pytest.mark.parametrize("oks_weight, same_track", [(1.0, False), (0.0, True)])
def test_oks_weight_weighs_the_oks_and_one_minus_it_the_iou(oks_weight, same_track):
    """The pose turned upside down in its own box: IoU 1 but OKS about 0.3, so it keeps
    its track (min_similarity 0.5) by the IoU alone and loses it by the OKS alone."""
    poses2d, poses3d = walking_clip(1, starts=[100], speeds=[0.0])
    pose = poses2d[0, 0]
    upside_down = pose * [1, -1] + [0, pose[:, 1].min() + pose[:, 1].max()]
    config = tracking.TrackingConfig(min_similarity=0.5, oks_weight=oks_weight)
    tracker = tracking.Tracker(config, fps=FPS)
    tracker.update(0, poses2d=pose[None], poses3d=poses3d[0], scores=np.ones(1))
    tracked = tracker.update(1, poses2d=upside_down[None], poses3d=poses3d[0], scores=np.ones(1))
    assert list(tracked.ids) == ([0] if same_track else [1])
