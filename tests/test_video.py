"""Tests of lcrnet_jax.predict.video."""

import fractions
import pathlib
import re
import sys
import types

import numpy as np
import pytest
from PIL import Image

from lcrnet_jax import predict
from tests.test_predictor import HAS_AV, save


def write_gif(path, frames, duration_ms=50) -> str:
    pils = [Image.fromarray(f) for f in frames]
    pils[0].save(path, save_all=True, append_images=pils[1:], duration=duration_ms, loop=0)
    return str(path)


def color_frames(count: int, size=(24, 32)) -> list[np.ndarray]:
    colors = [(250, 0, 0), (0, 250, 0), (0, 0, 250), (250, 250, 0)]
    return [np.full((*size, 3), colors[i % 4], np.uint8) for i in range(count)]


def test_video_reader_gif(tmp_path):
    path = write_gif(tmp_path / "clip.gif", color_frames(3))
    assert predict.is_video(path) and not predict.is_video(
        save(color_frames(1)[0], tmp_path / "s.gif")
    )
    reader = predict.VideoReader(path)
    assert reader.num_frames == 3 and reader.fps == pytest.approx(20.0)
    frames = list(reader)
    assert len(frames) == 3 and frames[1].shape == (24, 32, 3)
    assert np.abs(frames[1].astype(int) - color_frames(3)[1]).max() < 10


def test_a_gif_named_in_capitals_is_read_without_pyav(tmp_path, monkeypatch):
    """CLIP.GIF is a GIF: read with PIL, not refused for want of PyAV."""
    monkeypatch.setitem(sys.modules, "av", None)  # as if PyAV were not installed
    path = write_gif(tmp_path / "CLIP.GIF", color_frames(3))
    assert predict.is_video(path)
    reader = predict.VideoReader(path)
    assert reader.num_frames == 3 and reader.fps == pytest.approx(20.0)
    assert len(list(reader)) == 3


def test_fewer_frames_than_declared_without_a_decoding_error_are_reported(tmp_path, monkeypatch):
    """A reader that stops early without an error (a container whose frames end before
    its declared count) is not a complete video."""
    path = write_gif(tmp_path / "clip.gif", color_frames(3))
    reader = predict.VideoReader(path)
    frames = []
    with monkeypatch.context() as patch:
        patch.setattr(predict.video.ImageSequence, "Iterator", lambda pil: [pil.copy()] * 2)
        with pytest.raises(ValueError) as error:
            frames.extend(reader)
    assert len(frames) == 2
    assert str(error.value) == (
        f"video {path} is truncated or damaged: read 2 frames of the 3 it declares"
    )


def test_a_gifs_fps_is_its_mean_over_the_frames_durations(tmp_path):
    path = write_gif(tmp_path / "slow_start.gif", color_frames(6), duration_ms=[1000] + [40] * 5)
    reader = predict.VideoReader(path)
    assert reader.fps == pytest.approx(6 / 1.2)
    # Each frame's own time: frame 1 comes after frame 0's second, not at 1 / fps.
    assert len(list(reader)) == 6
    np.testing.assert_allclose(reader.times, [0.0, 1.0, 1.04, 1.08, 1.12, 1.16])


def test_a_videos_frame_times_are_its_timestamps_from_the_first(tmp_path, monkeypatch):
    """A variable-rate video (a phone's): each frame's own timestamp, less the first's."""

    class Frame:
        rotation = 0

        def __init__(self, time):
            self.time = time

        def to_ndarray(self, format):
            return np.zeros((4, 6, 3), np.uint8)

    class Container:
        streams = types.SimpleNamespace(
            video=[types.SimpleNamespace(frames=4, average_rate=fractions.Fraction(10))]
        )

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            return False

        def decode(self, video):
            return (Frame(t) for t in (5.0, 5.1, 5.35, 5.4))

    error = types.SimpleNamespace(FFmpegError=RuntimeError)
    monkeypatch.setitem(sys.modules, "av", types.SimpleNamespace(open=lambda p: Container(),
                                                                 error=error))  # fmt: skip
    (tmp_path / "clip.mp4").write_bytes(b"")
    reader = predict.VideoReader(tmp_path / "clip.mp4")
    assert reader.fps == 10.0 and len(list(reader)) == 4
    np.testing.assert_allclose(reader.times, [0.0, 0.1, 0.35, 0.4])


def test_a_frame_without_a_later_timestamp_comes_one_frame_after_the_last():
    reader = object.__new__(predict.VideoReader)
    reader.fps, reader.times = 4.0, []
    for seconds in (None, 0.5, 0.5, None, 0.2, 2.0):
        reader._timed(seconds)
    np.testing.assert_allclose(reader.times, [0.0, 0.5, 0.75, 1.0, 1.25, 2.0])


def test_a_gifs_frames_of_10_ms_or_less_last_100_ms_as_browsers_show_them(tmp_path):
    assert predict.VideoReader(write_gif(tmp_path / "a.gif", color_frames(3), 10)).fps == 10.0
    assert predict.VideoReader(write_gif(tmp_path / "b.gif", color_frames(3), 20)).fps == 50.0


def test_a_gif_claiming_a_huge_size_is_reported_in_one_line(tmp_path):
    """Its header says 65535 x 65535: past PIL's decompression-bomb limit."""
    data = bytearray(pathlib.Path(write_gif(tmp_path / "ok.gif", color_frames(2))).read_bytes())
    data[6:10] = b"\xff" * 4  # the logical screen's width and height
    (tmp_path / "bomb.gif").write_bytes(bytes(data))
    inputs, errors = predict.find_inputs([str(tmp_path / "bomb.gif")])
    assert errors == [] and not inputs[0].video  # read as an image, which says why not
    with pytest.raises(ValueError, match=r"cannot read image .*bomb\.gif: .*exceeds limit"):
        predict.load_image(tmp_path / "bomb.gif")
    with pytest.raises(ValueError, match=r"cannot open video .*bomb\.gif: .*exceeds limit"):
        predict.VideoReader(tmp_path / "bomb.gif")


@pytest.mark.slow  # PyAV is optional (pip install av): run by `make test-all` where installed
@pytest.mark.skipif(not HAS_AV, reason="PyAV is optional (pip install av)")
def test_video_writer_and_reader_mp4(tmp_path):
    path = tmp_path / "clip.mp4"
    with predict.VideoWriter(path, fps=5) as writer:
        for frame in color_frames(4, size=(31, 40)):  # odd height: padded
            writer.write(frame)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["clip.mp4"]
    reader = predict.VideoReader(path)
    frames = list(reader)
    assert reader.fps == pytest.approx(5.0) and len(frames) == 4
    assert frames[2].shape == (32, 40, 3)
    assert np.abs(frames[2][:31].astype(int) - color_frames(4, size=(31, 40))[2]).mean() < 20
    for fps in (2.5, 30000 / 1001):  # a fractional rate is kept, not rounded
        with predict.VideoWriter(tmp_path / "slow.mp4", fps=fps) as writer:
            for frame in color_frames(4):
                writer.write(frame)
        assert predict.VideoReader(tmp_path / "slow.mp4").fps == pytest.approx(fps)


@pytest.mark.slow  # PyAV is optional (pip install av): run by `make test-all` where installed
@pytest.mark.skipif(not HAS_AV, reason="PyAV is optional (pip install av)")
def test_video_writer_writes_h264_and_a_stopped_one_leaves_no_file(tmp_path):
    """H.264, which browsers play, where PyAV has it; a writer stopped by an error leaves
    neither its video nor a partial file, and an earlier video of that name as it was."""
    import av

    path = tmp_path / "clip.mp4"
    with predict.VideoWriter(path, fps=5) as writer:
        for frame in color_frames(3):
            writer.write(frame)
    if "libx264" in av.codecs_available:
        with av.open(str(path)) as container:
            assert container.streams.video[0].codec_context.name == "h264"
    before = path.read_bytes()
    for name in ("clip.mp4", "stopped.mp4"):
        with pytest.raises(RuntimeError, match="stopped"):
            with predict.VideoWriter(tmp_path / name, fps=5) as writer:
                writer.write(color_frames(4)[3])
                raise RuntimeError("stopped")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["clip.mp4"]
    assert path.read_bytes() == before


@pytest.mark.slow  # PyAV is optional (pip install av): run by `make test-all` where installed
@pytest.mark.skipif(not HAS_AV, reason="PyAV is optional (pip install av)")
@pytest.mark.parametrize("degrees", [-90, 90, 180])  # -90: a phone filmed upright
def test_video_frames_come_turned_by_the_display_rotation(tmp_path, degrees):
    import av

    frame = np.zeros((32, 48, 3), np.uint8)
    frame[:12, :16] = 250  # a block in the top-left corner as stored
    with av.open(str(tmp_path / "phone.mp4"), "w") as container:
        stream = container.add_stream("mpeg4", rate=10)
        stream.height, stream.width = frame.shape[:2]
        stream.pix_fmt = "yuv420p"
        stream.set_display_rotation(degrees)  # counter-clockwise, as the display matrix
        container.mux(stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")))
        container.mux(stream.encode())
    (shown,) = predict.VideoReader(tmp_path / "phone.mp4")
    upright = np.rot90(frame, degrees // 90)
    assert shown.shape == upright.shape
    assert np.abs(shown.astype(int) - upright).mean() < 10


def test_video_errors(tmp_path, monkeypatch):
    (tmp_path / "bad.mp4").write_bytes(b"this is no video")
    with pytest.raises(FileNotFoundError, match="video .*gone.mp4: not found"):
        predict.VideoReader(tmp_path / "gone.mp4")
    if HAS_AV:
        with pytest.raises(ValueError, match="cannot open video .*bad.mp4"):
            predict.VideoReader(tmp_path / "bad.mp4")
    monkeypatch.setitem(sys.modules, "av", None)  # as if PyAV were not installed
    with pytest.raises(ValueError, match="pip install av"):
        predict.VideoReader(tmp_path / "bad.mp4")
    with pytest.raises(ValueError, match="pip install av"):
        predict.VideoWriter(tmp_path / "out.mp4", fps=5)
    assert list(predict.VideoReader(write_gif(tmp_path / "ok.gif", color_frames(2))))


def test_truncated_gif_reports_frames_read_and_declared(tmp_path):
    path = write_gif(tmp_path / "clip.gif", noise_frames(10))
    data = (tmp_path / "clip.gif").read_bytes()
    (tmp_path / "cut.gif").write_bytes(data[: len(data) // 3])
    assert len(list(predict.VideoReader(path))) == 10
    reader = predict.VideoReader(tmp_path / "cut.gif")
    declared = reader.num_frames
    frames = []
    with pytest.raises(ValueError) as error:
        frames.extend(reader)
    assert len(frames) < declared < 10
    assert str(error.value).startswith(
        f"video {tmp_path / 'cut.gif'} is truncated or damaged: "
        f"read {len(frames)} frames of the {declared} it declares ("
    )


def noise_frames(count: int, size=(32, 48)) -> list[np.ndarray]:
    """Frames that compress badly (so that a cut file loses frames)."""
    rng = np.random.default_rng(0)
    return [rng.integers(0, 256, (*size, 3), dtype=np.uint8) for _ in range(count)]


def write_avi(path, frames, fps=10) -> str:
    """An MPEG-4 AVI written with PyAV (its header declares the frame count)."""
    import av

    with av.open(str(path), "w", format="avi") as container:
        stream = container.add_stream("mpeg4", rate=fps)
        stream.height, stream.width = frames[0].shape[:2]
        stream.pix_fmt = "yuv420p"
        for frame in frames:
            container.mux(stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")))
        container.mux(stream.encode())
    return str(path)


@pytest.mark.slow  # PyAV is optional (pip install av): run by `make test-all` where installed
@pytest.mark.skipif(not HAS_AV, reason="PyAV is optional (pip install av)")
def test_truncated_avi_reports_frames_read_and_declared(tmp_path):
    data = pathlib.Path(write_avi(tmp_path / "full.avi", noise_frames(40))).read_bytes()
    (tmp_path / "cut.avi").write_bytes(data[: len(data) // 3])
    reader = predict.VideoReader(tmp_path / "cut.avi")
    assert reader.num_frames == 40
    frames = []
    with pytest.raises(ValueError) as error:
        frames.extend(reader)
    assert 0 < len(frames) < 20
    message = (
        f"video {tmp_path / 'cut.avi'} is truncated or damaged: "
        f"read {len(frames)} frames of the 40 it declares"
    )
    assert re.fullmatch(re.escape(message) + r"( \(.*\))?", str(error.value))  # (decoder error)
