"""Tests of lcrnet_jax.data.atomic."""

import errno
import json
import os
import subprocess
import sys

import numpy as np
import pytest

from lcrnet_jax.data import atomic


def test_atomic_path_renames_only_complete_outputs(tmp_path):
    with atomic.atomic_path(tmp_path / "done.json") as tmp:
        assert tmp.suffix == ".json" and tmp.parent == tmp_path
        tmp.write_text("{}")
    with pytest.raises(RuntimeError), atomic.atomic_path(tmp_path / "half.json") as tmp:
        tmp.write_text("{")
        raise RuntimeError("interrupted")
    with pytest.raises(RuntimeError), atomic.atomic_path(tmp_path / "frames") as tmp:
        tmp.mkdir()
        (tmp / "000000.png").write_bytes(b"")
        raise RuntimeError("interrupted")
    assert [p.name for p in tmp_path.iterdir()] == ["done.json"]


def test_write_helpers_leave_only_complete_files(tmp_path):
    atomic.write_json(tmp_path / "m.json", {"pckh": float("nan"), "n": 3})
    atomic.write_text(tmp_path / "t.md", "| a |\n")
    atomic.write_npz(tmp_path / "a.npz", x=np.arange(3))
    assert json.loads((tmp_path / "m.json").read_text())["n"] == 3
    assert "NaN" in (tmp_path / "m.json").read_text()
    assert (tmp_path / "t.md").read_text() == "| a |\n"
    np.testing.assert_array_equal(np.load(tmp_path / "a.npz")["x"], np.arange(3))
    with pytest.raises(TypeError):
        atomic.write_json(tmp_path / "bad.json", {"x": object()})
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.npz", "m.json", "t.md"]


def test_errors_name_the_output_not_the_temporary_file(tmp_path):
    missing = tmp_path / "no_such_folder" / "m.json"
    with pytest.raises(FileNotFoundError) as error:
        atomic.write_json(missing, {})
    assert error.value.filename == str(missing) and str(missing) in str(error.value)
    assert atomic._PARTIAL not in str(error.value)
    (tmp_path / "taken").mkdir()
    (tmp_path / "taken" / "x").write_text("")
    with pytest.raises(OSError) as error:  # os.replace onto a non-empty folder
        atomic.write_text(tmp_path / "taken", "")
    assert error.value.filename == str(tmp_path / "taken")
    with pytest.raises(OSError) as error:  # other errors of the block are left as they are
        with atomic.atomic_path(tmp_path / "y.txt"):
            open(tmp_path / "elsewhere" / "z")
    assert error.value.filename == str(tmp_path / "elsewhere" / "z")


def test_a_full_disk_names_the_output_and_leaves_nothing(tmp_path):
    with pytest.raises(OSError) as error:  # a write() on a full disk names no file
        with atomic.atomic_path(tmp_path / "m.npz") as tmp:
            tmp.write_bytes(b"part")
            raise OSError(errno.ENOSPC, "No space left on device")
    assert error.value.errno == errno.ENOSPC
    assert str(error.value) == f"[Errno 28] No space left on device: '{tmp_path / 'm.npz'}'"
    assert os.listdir(tmp_path) == []
    with pytest.raises(OSError, match="^broken data stream$"):  # no errno: not a file error
        with atomic.atomic_path(tmp_path / "p.png"):
            raise OSError("broken data stream")


def dead_pid() -> int:
    """The id of a process that has exited."""
    process = subprocess.Popen([sys.executable, "-c", ""])
    process.wait()
    return process.pid


def test_remove_stale_removes_only_leftovers_of_dead_processes(tmp_path):
    pid = dead_pid()
    (tmp_path / "sub").mkdir()
    stale = [tmp_path / f".clip_2d.partial-{pid}.mp4", tmp_path / "sub" / f".a.partial-{pid}.json"]
    for path in stale:
        path.write_bytes(b"half")
    (tmp_path / f".clip_2d.partial-{pid}").mkdir()  # PNG frames of a run without PyAV
    (tmp_path / f".clip_2d.partial-{pid}" / "000000.png").write_bytes(b"")
    stale.append(tmp_path / f".clip_2d.partial-{pid}")
    kept = [tmp_path / f".b.partial-{os.getpid()}.json", tmp_path / "c.partial-1.json"]
    for path in kept:
        path.write_bytes(b"live run or not ours")
    assert sorted(atomic.remove_stale(tmp_path)) == sorted(stale)
    assert sorted(p.name for p in tmp_path.rglob("*")) == sorted(["sub"] + [p.name for p in kept])


def test_replace_folder_swaps_in_only_a_complete_folder(tmp_path):
    old = tmp_path / "out"
    old.mkdir()
    for name in ("a.txt", "keep.txt"):
        (old / name).write_text(f"old {name}")
    (old / "kept").mkdir()
    (old / "kept" / "b.txt").write_text("old b")
    keep = {"keep.txt", "kept"}.__contains__
    with pytest.raises(OSError) as error, atomic.replace_folder(old, keep=keep) as new:
        assert new.parent == tmp_path and new.name.startswith(".out.partial-")
        (new / "a.txt").write_text("new a")
        raise OSError(errno.ENOSPC, "No space left on device", str(new / "c.txt"))
    assert error.value.filename == str(old / "c.txt")  # the user's path, not the hidden one
    assert os.listdir(tmp_path) == ["out"] and (old / "a.txt").read_text() == "old a.txt"
    link = tmp_path / "link"
    link.symlink_to(old)
    with atomic.replace_folder(link, keep=keep) as new:
        (new / "a.txt").write_text("new a")
        (new / "keep.txt").write_text("new keep")  # written by the block: not carried
    assert sorted(os.listdir(tmp_path)) == ["link", "out"] and link.resolve() == old
    assert sorted(p.name for p in old.iterdir()) == ["a.txt", "keep.txt", "kept"]
    assert [(old / n).read_text() for n in ("a.txt", "keep.txt")] == ["new a", "new keep"]
    assert (old / "kept" / "b.txt").read_text() == "old b"
    with pytest.raises(NotADirectoryError, match="a.txt is a file, not a folder"):
        with atomic.replace_folder(old / "a.txt"):
            pass


def test_replace_folder_clears_what_a_killed_process_left(tmp_path):
    pid = dead_pid()
    (tmp_path / f".out.partial-{pid}").mkdir()  # killed while writing the new folder
    (tmp_path / f".out.replaced-{pid}").mkdir()  # killed between the two renames
    (tmp_path / f".out.replaced-{pid}" / "a.txt").write_text("old a")
    live = tmp_path / f".out.partial-{os.getppid()}"
    live.mkdir()  # another export still running
    with atomic.replace_folder(tmp_path / "new") as new:
        (new / "b.txt").write_text("")
    leftovers = [f".out.partial-{pid}", f".out.replaced-{pid}"]  # not those of "new"
    assert sorted(os.listdir(tmp_path)) == sorted(["new", live.name, *leftovers])
    with atomic.replace_folder(tmp_path / "out") as new:  # the previous folder put back first
        assert (tmp_path / "out" / "a.txt").read_text() == "old a"
        (new / "b.txt").write_text("")
    assert sorted(os.listdir(tmp_path)) == sorted(["new", "out", live.name])
    assert os.listdir(tmp_path / "out") == ["b.txt"]
