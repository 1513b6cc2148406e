"""Atomic file writes: a result appears complete under its name or not at all."""

from __future__ import annotations

import contextlib
import errno
import hashlib
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
_NAME_MAX = 255  # bytes of a file name (ext4, XFS, btrfs, APFS...)
_PARTIAL_NAME = re.compile(r"\..+\.partial-(\d+)(\.[^.]*)?")  # ".NAME.partial-PID.SUFFIX"


_TENSORSTORE_OS_ERROR = re.compile(r"os_error_code='(\d+)'")


def _chain(error: BaseException | None) -> Iterator[BaseException]:
    """`error` and its causes, outermost first."""
    while error is not None:
        yield error
        error = error.__cause__ or error.__context__


def write_errno(error: BaseException | None) -> int | None:
    """The errno of a failed write in `error` or one of its causes (an OSError's, or the
    code in tensorstore's text: ValueError "... [os_error_code='27']"); None if none."""
    for link in _chain(error):
        if isinstance(link, OSError) and link.errno:
            return link.errno
        found = _TENSORSTORE_OS_ERROR.search(str(link))
        if found:
            return int(found.group(1))
    return None


def is_disk_full(error: BaseException | None) -> bool:
    """Whether `error` or one of its causes is a full disk (tensorstore and array_record
    report it in the text of a ValueError or RuntimeError)."""
    return any(
        (isinstance(link, OSError) and link.errno == errno.ENOSPC)
        or "No space left on device" in str(link)
        for link in _chain(error)
    )


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's live process
        return True
    return True


def is_partial(path: str | os.PathLike) -> bool:
    """Whether `path`, or a folder it lies in, is a temporary file or folder of
    `atomic_path` or `staged_files` (".NAME.partial-PID.SUFFIX")."""
    return any(_PARTIAL_NAME.fullmatch(part) for part in pathlib.PurePath(path).parts)


def is_locked(folder: str | os.PathLike) -> bool:
    """Whether another process holds the `flock` of `folder` (a live `staged_files`
    folder, whatever its PID means here: another PID namespace, another host)."""
    if fcntl is None:
        return False
    try:
        handle = os.open(folder, os.O_RDONLY)
    except OSError:
        return False
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    except OSError:  # a file system without locks
        return False
    finally:
        os.close(handle)
    return False


def remove_stale(folder: str | os.PathLike) -> list[pathlib.Path]:
    """Removes the temporary files and folders of `atomic_path` that a killed process
    left in `folder` (recursively): those whose process id is no longer running, and,
    for folders, whose lock no process holds.

    Returns:
      The removed paths.
    """
    stale = []
    for path in pathlib.Path(folder).rglob(f".*{_PARTIAL}*"):
        match = _PARTIAL_NAME.fullmatch(path.name)
        if not match or _alive(int(match.group(1))) or not path.exists():
            continue
        if path.is_dir() and is_locked(path):
            continue
        if path.is_dir():
            shutil.rmtree(path)
        else:
            path.unlink()
        stale.append(path)
    return stale


@contextlib.contextmanager
def exclusive(folder: str | os.PathLike, busy: str | None) -> Iterator[None]:
    """Holds an exclusive lock (`flock`) on an existing `folder`; OSError(`busy`) at once
    if another process holds it, or with `busy` None, waits for it. The lock goes with
    the process, however it ends; on a file system without locks (or without fcntl) the
    block runs unguarded."""
    if fcntl is None:
        yield
        return
    handle = os.open(folder, os.O_RDONLY)
    try:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | (0 if busy is None else fcntl.LOCK_NB))
        except BlockingIOError:
            raise OSError(busy) from None
        except OSError:
            pass
        yield
    finally:
        os.close(handle)


def _partial_name(path: pathlib.Path) -> str:
    """The temporary name of `path`, .STEM.partial-PID.SUFFIX; the stem is cut short
    (and a hash of the whole name added) where the name would pass 255 bytes."""
    tail = f"{_PARTIAL}{os.getpid()}{path.suffix}"
    name = f".{path.stem}{tail}"
    if len(os.fsencode(name)) <= _NAME_MAX:
        return name
    digest = hashlib.sha1(os.fsencode(path.name)).hexdigest()[:8]
    room = _NAME_MAX - len(os.fsencode(f".~{digest}{tail}"))
    stem = os.fsencode(path.stem)[:room].decode(errors="ignore")  # whole characters
    return f".{stem}~{digest}{tail}"


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[pathlib.Path]:
    """A temporary path beside `path` that is renamed to it when the block succeeds.

    The temporary name keeps the suffix (writers that pick a format from it still
    work); it may be a file or a folder, and is removed if the block raises. An OSError
    about the temporary path, or naming no file (a full disk), is raised again naming
    `path`.
    """
    path = pathlib.Path(path)
    tmp = path.with_name(_partial_name(path))
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


@contextlib.contextmanager
def staged_files(
    folder: str | os.PathLike, *, replaces: Callable[[str], bool], last: str
) -> Iterator[pathlib.Path]:
    """A hidden, empty folder inside `folder` (made with its parents) for a set of files
    that appear together: when the block succeeds, the files of `folder` for which
    `replaces(name)` holds are removed (`last` first) and the new ones moved in (`last`
    last, e.g. the file that marks the set complete). Until then `folder` is untouched;
    if the block raises (a full disk, Ctrl-C), the staged files are removed, and so is
    `folder` if it was made here; what killed processes left is removed first
    (`remove_stale`). An OSError about a staged path is raised again naming its place
    in `folder`.

    Raises:
      NotADirectoryError: `folder` is a file.
    """
    folder = pathlib.Path(folder)
    if os.path.lexists(folder) and not folder.is_dir():
        raise NotADirectoryError(f"{folder} is a file, not a folder")
    created = not folder.exists()
    folder.mkdir(parents=True, exist_ok=True)
    remove_stale(folder)
    stage = folder / f".staged{_PARTIAL}{os.getpid()}"
    done = False
    try:
        stage.mkdir()
        with exclusive(stage, busy=f"{stage} is in use"):  # alive, for `remove_stale`
            yield stage
            (folder / last).unlink(missing_ok=True)
            for entry in os.scandir(folder):
                if entry.is_file() and replaces(entry.name):
                    os.unlink(entry.path)
            for name in sorted(os.listdir(stage), key=lambda name: name == last):
                os.replace(stage / name, folder / name)
        done = True
    except OSError as error:
        name = os.fspath(error.filename) if error.filename is not None else ""
        if not name.startswith(os.path.join(stage, "")):
            raise
        # The user's path, not the hidden staged one, in the message.
        inside = os.fspath(folder / os.path.relpath(name, stage))
        raise type(error)(error.errno, error.strerror, inside) from None
    finally:
        shutil.rmtree(stage, ignore_errors=True)
        if created and not done:
            shutil.rmtree(folder, ignore_errors=True)


def make_folder(path: str | os.PathLike) -> None:
    """`os.makedirs(path, exist_ok=True)`, with NotADirectoryError naming the file that
    stands where a folder must be (os.makedirs says "[Errno 17] File exists")."""
    existing = os.path.abspath(path)
    while not os.path.exists(existing):
        existing = os.path.dirname(existing)
    if not os.path.isdir(existing):
        raise NotADirectoryError(f"{existing} is a file, not a folder (to hold {path})")
    os.makedirs(path, exist_ok=True)


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
