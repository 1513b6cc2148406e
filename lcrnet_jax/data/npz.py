"""Reading .npz array files: a damaged file is named in one line."""

from __future__ import annotations

import os
import zipfile

import numpy as np

_ZIP_HEADERS = (b"PK\x03\x04", b"PK\x05\x06")  # a first member; an empty archive


def read_npz(path: str | os.PathLike, what: str = "array file") -> dict[str, np.ndarray]:
    """Every array of the .npz file at `path`, read at once.

    Args:
      path: an .npz file (`np.savez`).
      what: what the file is, for the messages (e.g. "anchor-pose file").

    Raises:
      FileNotFoundError: no file at `path`.
      ValueError: the file is not a readable .npz (truncated, another format).
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{what} not found: {path}")
    with open(path, "rb") as file:
        if file.read(4) not in _ZIP_HEADERS:
            raise ValueError(f"{what} {path} is not an .npz file (no zip archive header)")
    try:
        with np.load(path) as data:
            return {name: data[name] for name in data.files}
    except (zipfile.BadZipFile, EOFError, ValueError, OSError) as error:
        reason = " ".join(str(error).split()) or type(error).__name__
        raise ValueError(f"{what} {path} cannot be read as an .npz file: {reason}") from None
