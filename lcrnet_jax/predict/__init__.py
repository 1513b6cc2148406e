"""Prediction on the user's images and videos (LCR-Net++ Sec. 3, 3.6).

`predictor`: the `Predictor` (preprocessing, batched jit network + PPI, results; an
`ImageModel`, as the exported model);
`inputs`: images and the files, folders and globs to read; `canvas`: images scaled into
the network's canvases and its people mapped back (`PoseResult`); `video`: video frames in and
annotated videos out; `tracking`: people tracked through videos (ids, smoothed poses);
`outputs`: prediction on files, with JSON and picture outputs; `export` / `exported`:
the model serialized, and run without flax.

The names below are imported on first use (PEP 562), so that `predict.exported` and
`predict.inputs` load without flax, optax or grain.
"""

import importlib

_MODULE_OF = {
    "InputFile": "inputs",
    "exif_focal_35mm": "inputs",
    "find_inputs": "inputs",
    "ImageModel": "canvas",
    "is_video": "inputs",
    "load_image": "inputs",
    "PoseResult": "canvas",
    "Predictor": "predictor",
    "PreparedImage": "canvas",
    "Tracker": "tracking",
    "TrackingConfig": "tracking",
    "VideoReader": "video",
    "VideoWriter": "video",
}

_SUBMODULES = (
    "canvas", "export", "exported", "inputs", "outputs", "predictor", "tracking", "video"
)  # fmt: skip

__all__ = sorted(_MODULE_OF)


def __getattr__(name: str):
    if name in _SUBMODULES:
        return importlib.import_module(f"{__name__}.{name}")
    if name in _MODULE_OF:
        return getattr(importlib.import_module(f"{__name__}.{_MODULE_OF[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
