"""Atomic file writes: a result appears complete under its name or not at all."""

from __future__ import annotations

import contextlib
import errno
import glob
import json
import os
import pathlib
import re
import shutil
from collections.abc import Callable, Iterator

import numpy as np

try:
    import fcntl
except ImportError:  # not POSIX: folders are not locked
    fcntl = None

_PARTIAL = ".partial-"
_PARTIAL_NAME = re.compile(r"\..+\.partial-(\d+)(\.[^.]*)?")  # ".NAME.partial-PID.SUFFIX"


def is_disk_full(error: BaseException | None) -> bool:
    """Whether `error` or one of its causes is a full disk (tensorstore and array_record
    report it in the text of a ValueError or RuntimeError)."""
    while error is not None:
        if isinstance(error, OSError) and error.errno == errno.ENOSPC:
            return True
        if "No space left on device" in str(error):
            return True
        error = error.__cause__ or error.__context__
    return False


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's live process
        return True
    return True


def remove_stale(folder: str | os.PathLike) -> list[pathlib.Path]:
    """Removes the temporary files and folders of `atomic_path` that a killed process
    left in `folder` (recursively): those whose process id is no longer running.

    Returns:
      The removed paths.
    """
    stale = []
    for path in pathlib.Path(folder).rglob(f".*{_PARTIAL}*"):
        match = _PARTIAL_NAME.fullmatch(path.name)
        if not match or _alive(int(match.group(1))) or not path.exists():
            continue
        if path.is_dir():
            shutil.rmtree(path)
        else:
            path.unlink()
        stale.append(path)
    return stale


@contextlib.contextmanager
def exclusive(folder: str | os.PathLike, busy: str) -> Iterator[None]:
    """Holds an exclusive lock (`flock`) on an existing `folder`; OSError(`busy`) at once
    if another process holds it. The lock goes with the process, however it ends; on a
    file system without locks (or without fcntl) the block runs unguarded."""
    if fcntl is None:
        yield
        return
    handle = os.open(folder, os.O_RDONLY)
    try:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise OSError(busy) from None
        except OSError:
            pass
        yield
    finally:
        os.close(handle)


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[pathlib.Path]:
    """A temporary path beside `path` that is renamed to it when the block succeeds.

    The temporary name keeps the suffix (writers that pick a format from it still
    work); it may be a file or a folder, and is removed if the block raises. An OSError
    about the temporary path, or naming no file (a full disk), is raised again naming
    `path`.
    """
    path = pathlib.Path(path)
    tmp = path.with_name(f".{path.stem}{_PARTIAL}{os.getpid()}{path.suffix}")
    try:
        yield tmp
        os.replace(tmp, path)
    except OSError as error:
        about_tmp = error.filename is not None and os.fspath(error.filename) == os.fspath(tmp)
        unnamed = error.filename is None and error.errno is not None  # e.g. a full disk
        if not (about_tmp or unnamed):
            raise
        # The user's path, not the hidden temporary one (or none), in the message.
        raise type(error)(error.errno, error.strerror, os.fspath(path)) from None
    finally:
        if tmp.is_dir():
            for child in tmp.iterdir():
                child.unlink()
            tmp.rmdir()
        elif tmp.exists():
            tmp.unlink()


def _link_or_copy(source: str, target: str) -> None:
    try:
        os.link(source, target)  # no copy of the data, no space needed
    except OSError:  # a file system without hard links
        shutil.copy2(source, target)


def _clear_replace_leftovers(path: pathlib.Path) -> None:
    """What a `replace_folder` killed before its end left beside `path`: its new folder is
    removed; the previous folder, set aside in the instant of the swap, is put back
    where no folder is in place, else removed."""
    for leftover in path.parent.glob(f".{glob.escape(path.name)}.*-*"):
        kind, _, pid = leftover.name.removeprefix(f".{path.name}.").partition("-")
        if kind not in ("partial", "replaced") or not pid.isdigit() or _alive(int(pid)):
            continue
        if kind == "replaced" and not os.path.lexists(path):
            leftover.rename(path)
        else:
            shutil.rmtree(leftover, ignore_errors=True)


@contextlib.contextmanager
def replace_folder(
    path: str | os.PathLike, *, keep: Callable[[str], bool] = lambda name: False
) -> Iterator[pathlib.Path]:
    """A new, empty folder beside `path` that takes the place of the folder at `path`
    (if any) when the block succeeds.

    Until then the previous folder is untouched; if the block raises (a full disk,
    Ctrl-C), the new folder is removed and the previous one stays as it was. The swap is
    two renames (the previous folder set aside, then removed). The entries of the
    previous folder for which `keep(name)` is true and that the block did not write are
    carried into the new one (hard links, else copies). A symbolic link at `path` keeps
    pointing where it did: the folder it points to is replaced. Leftovers of a killed
    process are cleared first. The parent folder must exist. An OSError about a path in
    the new folder is raised again naming the path in `path`.

    Raises:
      NotADirectoryError: `path` is a file.
    """
    path = pathlib.Path(path)
    if path.is_symlink() and path.is_dir():
        path = path.resolve()
    if os.path.lexists(path) and not path.is_dir():
        raise NotADirectoryError(f"{path} is a file, not a folder")
    _clear_replace_leftovers(path)
    tmp = path.with_name(f".{path.name}{_PARTIAL}{os.getpid()}")
    aside = path.with_name(f".{path.name}.replaced-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        tmp.mkdir()
        yield tmp
        previous = path if path.is_dir() else None
        if previous is not None:
            for entry in os.scandir(previous):
                if not keep(entry.name) or os.path.lexists(tmp / entry.name):
                    continue
                if entry.is_symlink():
                    os.symlink(os.readlink(entry.path), tmp / entry.name)
                elif entry.is_dir():
                    shutil.copytree(
                        entry.path, tmp / entry.name, symlinks=True, copy_function=_link_or_copy
                    )
                else:
                    _link_or_copy(entry.path, os.fspath(tmp / entry.name))
            shutil.copymode(previous, tmp)
            os.rename(previous, aside)
        try:
            os.rename(tmp, path)
        except BaseException:
            if previous is not None:
                os.rename(aside, path)
            raise
    except OSError as error:
        name = os.fspath(error.filename) if error.filename is not None else ""
        if not (name == os.fspath(tmp) or name.startswith(os.path.join(tmp, ""))):
            raise
        # The user's path, not the hidden temporary one, in the message.
        inside = os.path.join(path, os.path.relpath(name, tmp)) if name != os.fspath(tmp) else path
        raise type(error)(error.errno, error.strerror, os.fspath(inside)) from None
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    shutil.rmtree(aside, ignore_errors=True)


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
