"""Tests of lcrnet_jax.data.atomic."""

import errno
import functools
import json
import os
import re
import subprocess
import sys
import threading

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


def test_a_name_near_the_file_systems_limit_gets_a_temporary_name_within_it(tmp_path):
    """The temporary name adds ".partial-PID" to the output's: a legal name of 240 bytes
    (80 Japanese characters) failed with "File name too long"."""
    for stem in ("日" * 80, "a" * 246, "b" * 246):
        with atomic.atomic_path(tmp_path / f"{stem}.json") as tmp:
            assert len(os.fsencode(tmp.name)) <= 255 and atomic.is_partial(tmp)
            tmp.write_text("{}")
    names = sorted(p.name for p in tmp_path.iterdir())
    assert names == sorted(f"{stem}.json" for stem in ("日" * 80, "a" * 246, "b" * 246))


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


def test_remove_stale_keeps_a_locked_folder_whatever_its_pid(tmp_path):
    # A prediction in another PID namespace (a container on the same volume): its PID
    # means nothing here, its staged folder's lock does.
    live = tmp_path / f".staged.partial-{dead_pid()}"
    live.mkdir()
    with atomic.exclusive(live, busy="in use"):
        assert atomic.remove_stale(tmp_path) == [] and live.is_dir()
    assert atomic.remove_stale(tmp_path) == [live] and not live.exists()


def test_staged_files_appear_together_or_not_at_all(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    for name in ("a.txt", "mine.txt", "done"):
        (out / name).write_text(f"old {name}")
    (out / f".staged.partial-{dead_pid()}").mkdir()  # left by a killed process
    ours = {"a.txt", "b.txt", "done"}.__contains__
    staged = functools.partial(atomic.staged_files, replaces=ours, last="done")
    with pytest.raises(OSError) as error, staged(out) as new:
        assert new.parent == out and new.name.startswith(".staged.partial-")
        (new / "a.txt").write_text("new a")
        raise OSError(errno.ENOSPC, "No space left on device", str(new / "b.txt"))
    assert error.value.filename == str(out / "b.txt")  # the user's path, not the hidden one
    assert sorted(os.listdir(out)) == ["a.txt", "done", "mine.txt"]  # the stale stage too
    assert (out / "a.txt").read_text() == "old a.txt"
    with staged(out) as new:
        (new / "b.txt").write_text("new b")
        (new / "done").write_text("new done")
    assert sorted(os.listdir(out)) == ["b.txt", "done", "mine.txt"]  # a.txt: not written
    assert [(out / n).read_text() for n in ("done", "mine.txt")] == ["new done", "old mine.txt"]
    with pytest.raises(KeyboardInterrupt), staged(tmp_path / "new" / "x"):
        raise KeyboardInterrupt
    assert os.listdir(tmp_path / "new") == []  # the folder it made is gone, its parent kept
    with pytest.raises(NotADirectoryError, match="done is a file, not a folder"):
        with staged(out / "done"):
            pass


def test_staged_files_removes_the_last_file_first_and_moves_it_in_last(tmp_path, monkeypatch):
    """`last` marks a complete set: it goes before any other old file and comes after
    every new one, so that a crash midway never leaves it beside a mixed set."""
    out = tmp_path / "out"
    out.mkdir()
    for name in ("a.txt", "b.txt", "z.txt", "done"):
        (out / name).write_text(f"old {name}")
    events = []
    for name, verb in (("unlink", "removed"), ("replace", "placed")):
        real = getattr(os, name)

        def record(path, *rest, real=real, verb=verb, **options):
            events.append((verb, os.path.basename(rest[0] if rest else path)))
            return real(path, *rest, **options)

        monkeypatch.setattr(atomic.os, name, record)
    ours = {"a.txt", "b.txt", "z.txt"}.__contains__  # "done" is not among them
    with atomic.staged_files(out, replaces=ours, last="done") as new:
        for name in ("z.txt", "done", "a.txt"):
            (new / name).write_text(f"new {name}")
    monkeypatch.undo()
    removed = [name for verb, name in events if verb == "removed"]
    placed = [name for verb, name in events if verb == "placed"]
    assert removed[0] == "done" and sorted(removed) == ["a.txt", "b.txt", "done", "z.txt"]
    assert placed[-1] == "done" and sorted(placed) == ["a.txt", "done", "z.txt"]
    assert events.index(("placed", placed[0])) > events.index(("removed", removed[-1]))
    assert sorted(os.listdir(out)) == ["a.txt", "done", "z.txt"]
    assert (out / "done").read_text() == "new done"


def test_staged_files_keeps_the_folder_it_made_when_the_block_succeeds(tmp_path):
    """A folder made for the files stays with them (only a failed block removes it)."""
    with atomic.staged_files(tmp_path / "new" / "x", replaces=bool, last="done") as new:
        (new / "done").write_text("complete")
    assert os.listdir(tmp_path / "new" / "x") == ["done"]


def test_is_partial_holds_for_a_file_inside_a_temporary_folder():
    """Frames written inside an unfinished (PNG) folder are partial as the folder is."""
    assert atomic.is_partial("out/.clip.partial-12/000000.png")
    assert atomic.is_partial(".clip.partial-12.mp4")
    assert not atomic.is_partial("out/clip/000000.png")


def test_exclusive_refuses_a_held_folder_at_once_or_waits_for_it(tmp_path):
    """With `busy`, a second holder fails at once with that message; with None, it
    waits until the first lets go."""
    outcome = []

    def second(busy):
        try:
            with atomic.exclusive(tmp_path, busy=busy):
                outcome.append("entered")
        except OSError as error:
            outcome.append(str(error))

    for busy, expected_while_held in (("in use", ["in use"]), (None, [])):
        outcome.clear()
        with atomic.exclusive(tmp_path, busy="held"):
            thread = threading.Thread(target=second, args=(busy,), daemon=True)
            thread.start()
            thread.join(2)
            assert outcome == expected_while_held
        thread.join(10)
        assert outcome == expected_while_held or outcome == ["entered"]
        assert not thread.is_alive()
    assert outcome == ["entered"]  # the waiting one entered once the lock was let go


def test_make_folder_names_the_file_that_stands_where_a_folder_must_be(tmp_path):
    """A file on the way (or at the place) of the folder is named, not "[Errno 17]"."""
    (tmp_path / "f").write_text("")
    for target in (tmp_path / "f", tmp_path / "f" / "sub" / "deeper"):
        with pytest.raises(
            NotADirectoryError, match=f"^{re.escape(str(tmp_path / 'f'))} is a file, not a"
        ):
            atomic.make_folder(target)
    atomic.make_folder(tmp_path / "a" / "b")
    atomic.make_folder(tmp_path / "a" / "b")  # existing: nothing to do
    assert (tmp_path / "a" / "b").is_dir()
