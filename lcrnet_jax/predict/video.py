"""Video I/O for prediction: frames from animated GIFs (PIL) or videos (PyAV), and
annotated videos written with PyAV (`pip install av`)."""

from __future__ import annotations

import fractions
import os
import pathlib
from collections.abc import Iterator

import numpy as np
from PIL import Image, ImageSequence

from lcrnet_jax.data.atomic import atomic_path
from lcrnet_jax.data.images import DECODE_ERRORS, decode_failure, to_rgb


def _import_av():
    try:
        import av
    except ImportError:
        raise ValueError(
            "reading or writing mp4/mov/avi/mkv/webm videos needs PyAV: pip install av "
            "(animated GIFs work without it)"
        ) from None
    return av


class VideoReader:
    """Frames of a video file as (H, W, 3) uint8 RGB arrays, decoded lazily.

    Animated GIFs are read with PIL, other formats with PyAV. A video's display rotation
    (the display matrix of phone videos filmed upright) is applied, as EXIF orientation
    is for images: frames come as the video is shown (flips in the matrix are not).

    Attributes:
      path: the video file.
      fps: frames per second (10 when the file does not say; a GIF's mean over its
        frames' durations).
      num_frames: frame count if the container says, else None.
      times: seconds from the first frame of each frame read so far, increasing (a GIF's
        frame durations, a video's timestamps: both may vary from frame to frame; a
        missing or non-increasing timestamp is the previous one plus 1 / fps).

    Raises (at construction):
      FileNotFoundError: no such file.
      ValueError: the video cannot be opened (or PyAV is missing for a non-GIF).
    """

    def __init__(self, path: str | os.PathLike):
        self.path = os.fspath(path)
        if not os.path.isfile(self.path):
            raise FileNotFoundError(f"video {self.path}: not found")
        self._gif = self.path.lower().endswith(".gif")
        self.times: list[float] = []
        try:
            if self._gif:
                with Image.open(self.path) as pil:
                    self.num_frames = getattr(pil, "n_frames", 1)
                    self.fps = _gif_fps(pil)
            else:
                av = _import_av()
                with av.open(self.path) as container:
                    if not container.streams.video:
                        raise ValueError("it has no video stream")
                    stream = container.streams.video[0]
                    self.num_frames = stream.frames or None
                    self.fps = float(stream.average_rate or 10)
        except DECODE_ERRORS as e:
            if isinstance(e, ValueError) and "PyAV" in str(e):
                raise
            raise ValueError(f"cannot open video {self.path}: {decode_failure(e)}") from None

    def __iter__(self) -> Iterator[np.ndarray]:
        """Yields the frames in order.

        Raises:
          ValueError: decoding fails, or fewer frames than the container declares were
            read (a truncated file); the message gives the frames read and declared.
        """
        read = 0
        self.times = []
        errors: tuple[type[BaseException], ...] = DECODE_ERRORS
        try:
            if self._gif:
                with Image.open(self.path) as pil:
                    elapsed = 0.0
                    for frame in ImageSequence.Iterator(pil):
                        self._timed(elapsed)
                        elapsed += _gif_duration(frame) / 1000
                        yield to_rgb(frame)
                        read += 1
            else:
                av = _import_av()
                errors += (av.error.FFmpegError,)
                with av.open(self.path) as container:
                    start = None
                    for frame in container.decode(video=0):
                        if frame.time is not None and start is None:
                            start = frame.time
                        self._timed(None if frame.time is None else frame.time - start)
                        yield _displayed(frame)
                        read += 1
        except errors as e:
            raise ValueError(f"{self._incomplete(read)} ({e})") from None
        if self.num_frames is not None and read < self.num_frames:
            raise ValueError(self._incomplete(read))

    def _timed(self, seconds: float | None) -> None:
        """Appends a frame's time to `times`: `seconds` unless missing or not after the
        previous frame's, else the previous one plus 1 / fps."""
        if self.times and not (seconds is not None and seconds > self.times[-1]):
            seconds = self.times[-1] + 1 / self.fps
        self.times.append(0.0 if seconds is None else float(seconds))

    def _incomplete(self, read: int) -> str:
        declared = "" if self.num_frames is None else f" of the {self.num_frames} it declares"
        return f"video {self.path} is truncated or damaged: read {read} frames{declared}"


def _gif_fps(pil: Image.Image) -> float:
    """An open GIF's frames per second: its frames over the sum of their durations (100 ms
    for a frame that gives none or at most 10 ms, as browsers show it); frames from a
    damaged one on are left out (the reading reports them)."""
    frames, total_ms = 0, 0.0
    try:
        for index in range(getattr(pil, "n_frames", 1)):
            pil.seek(index)
            total_ms += _gif_duration(pil)
            frames += 1
    except DECODE_ERRORS:
        pass
    return 1000.0 * frames / total_ms if frames else 10.0


def _gif_duration(pil: Image.Image) -> float:
    """The shown duration of a GIF's current frame, ms: 100 for one that gives none or at
    most 10 ms, as browsers show it."""
    duration = pil.info.get("duration") or 0
    return duration if duration > 10 else 100


def _displayed(frame) -> np.ndarray:
    """A PyAV frame as (H, W, 3) uint8 RGB, turned by its display rotation.

    `rotation` (PyAV >= 13; 0 before) is the counter-clockwise angle in degrees that
    shows the frame upright, a multiple of 90 in practice; others are rounded to one.
    """
    pixels = frame.to_ndarray(format="rgb24")
    quarter_turns = round(getattr(frame, "rotation", 0) / 90) % 4
    return np.ascontiguousarray(np.rot90(pixels, quarter_turns)) if quarter_turns else pixels


class VideoWriter:
    """Writes (H, W, 3) uint8 RGB frames to an mp4 with PyAV (H.264 when available).

    Written under a temporary name, renamed to `path` by `close()` (or the end of a
    `with` block); on an exception inside the block the partial file is removed. Odd
    frame sizes are padded by one black row/column (the codec needs even sizes).

    Raises (at construction):
      ValueError: PyAV is not installed.
    """

    def __init__(self, path: str | os.PathLike, fps: float):
        self._av = _import_av()
        self.path = pathlib.Path(path)
        self._atomic = atomic_path(self.path)
        self._tmp = self._atomic.__enter__()
        self._container = self._av.open(str(self._tmp), mode="w")
        self._fps = fps
        self._stream = None

    def write(self, frame: np.ndarray) -> None:
        frame = np.asarray(frame, np.uint8)
        frame = np.pad(frame, ((0, frame.shape[0] % 2), (0, frame.shape[1] % 2), (0, 0)))
        if self._stream is None:
            codecs = self._av.codecs_available
            codec = "libx264" if "libx264" in codecs else "mpeg4"
            # A fraction: 29.97 or a slow GIF's 2.5 fps play at their own pace.
            rate = fractions.Fraction(self._fps).limit_denominator(1001)
            self._stream = self._container.add_stream(codec, rate=rate)
            self._stream.width, self._stream.height = frame.shape[1], frame.shape[0]
            self._stream.pix_fmt = "yuv420p"
        video_frame = self._av.VideoFrame.from_ndarray(frame, format="rgb24")
        for packet in self._stream.encode(video_frame):
            self._container.mux(packet)

    def close(self, error: BaseException | None = None) -> None:
        """Finishes the file and renames it into place (removes it if `error`)."""
        if self._container is None:
            return
        try:
            if error is None and self._stream is not None:
                for packet in self._stream.encode():
                    self._container.mux(packet)
        finally:
            self._container.close()
            self._container = None
            if error is None:
                self._atomic.__exit__(None, None, None)
            else:
                self._atomic.__exit__(type(error), error, error.__traceback__)

    def __enter__(self) -> VideoWriter:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        self.close(exc)
