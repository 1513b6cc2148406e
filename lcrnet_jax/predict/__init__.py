"""Prediction on the user's images and videos (LCR-Net++ Sec. 3, 3.6).

`predictor`: the `Predictor` (preprocessing, batched jit network + PPI, results);
`inputs`: images and the files, folders and globs to read; `video`: video frames in and
annotated videos out; `tracking`: people tracked through videos (ids, smoothed poses);
`outputs`: prediction on files, with JSON and picture outputs.
"""

from lcrnet_jax.predict.inputs import (
    InputFile,
    exif_focal_35mm,
    find_inputs,
    is_video,
    load_image,
)
from lcrnet_jax.predict.predictor import PoseResult, Predictor, PreparedImage
from lcrnet_jax.predict.tracking import Tracker, TrackingConfig
from lcrnet_jax.predict.video import VideoReader, VideoWriter

__all__ = [
    "InputFile",
    "PoseResult",
    "Predictor",
    "PreparedImage",
    "Tracker",
    "TrackingConfig",
    "VideoReader",
    "VideoWriter",
    "exif_focal_35mm",
    "find_inputs",
    "is_video",
    "load_image",
]
