"""Atomic file writes: a result appears complete under its name or not at all."""

from __future__ import annotations

import contextlib
import json
import os
import pathlib
from collections.abc import Iterator

import numpy as np


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[pathlib.Path]:
    """A temporary path beside `path` that is renamed to it when the block succeeds.

    The temporary name keeps the suffix (writers that pick a format from it still
    work); it may be a file or a folder, and is removed if the block raises.
    """
    path = pathlib.Path(path)
    tmp = path.with_name(f".{path.stem}.partial-{os.getpid()}{path.suffix}")
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        if tmp.is_dir():
            for child in tmp.iterdir():
                child.unlink()
            tmp.rmdir()
        elif tmp.exists():
            tmp.unlink()


def write_text(path: str | os.PathLike, text: str) -> None:
    """`text` written to `path` atomically."""
    with atomic_path(path) as tmp:
        tmp.write_text(text)


def write_json(path: str | os.PathLike, value) -> None:
    """`value` as indented JSON (NaN written as NaN) at `path`, atomically."""
    write_text(path, json.dumps(value, indent=1))


def write_npz(path: str | os.PathLike, **arrays) -> None:
    """`np.savez(path, **arrays)` atomically; `path` should end in .npz."""
    with atomic_path(path) as tmp:
        np.savez(tmp, **arrays)
