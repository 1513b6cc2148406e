import io

import pytest
from tqdm import tqdm

from lcrnet_jax.data import progress


class Clock:
    """A stand-in for tqdm's clock, moved by hand."""

    def __init__(self):
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock(monkeypatch):
    clock = Clock()
    monkeypatch.setattr("tqdm.std.time", clock)
    return clock


def test_a_bar_in_a_log_writes_whole_lines_at_most_every_interval(clock):
    """Not on a terminal: a line 30 s after the last at most, one at the end, messages
    written between whole (before: tqdm's carriage-return redraws, the log a few
    unreadable lines and every message glued to a redrawn bar)."""
    log = io.StringIO()
    bar = progress.progress_bar(total=6, desc="long.gif", unit="frame", file=log)
    assert isinstance(bar, progress.LogBar) and log.getvalue() == ""
    for now in (10, 20, 31, 45):
        clock.now = 1000.0 + now
        bar.update()
    tqdm.write("predict: skipped: x", file=log)
    bar.note("compiling 96x128")
    for now in (62, 70):
        clock.now = 1000.0 + now
        bar.update()
    clock.now = 1075.0
    bar.close()
    assert "\r" not in log.getvalue() and "\x1b[" not in log.getvalue()
    assert log.getvalue().splitlines() == [
        "long.gif: 3/6 (50%) in 00:31, 00:31 left, 10.46s/frame",
        "predict: skipped: x",
        "long.gif: compiling 96x128",
        "long.gif: 5/6 (83%) in 01:02, 00:13 left, 13.71s/frame",
        "long.gif: 6/6 (100%) in 01:15, 00:00 left, 12.50s/frame",
    ]


def test_a_short_bar_that_leaves_nothing_writes_nothing_in_a_log(clock):
    """A nested bar (`leave=False`) done within the interval: not a line (a folder of
    short videos does not fill the log); an outer bar ends with its line; a disabled
    bar writes nothing, notes included."""
    log = io.StringIO()
    with progress.progress_bar(total=3, desc="clip", unit="frame", leave=False, file=log) as bar:
        bar.update(3)
    assert log.getvalue() == ""
    for _ in progress.progress_bar(range(2), desc="inputs", unit="input", file=log):
        clock.now += 1
    assert log.getvalue() == "inputs: 2/2 (100%) in 00:02, 00:00 left, 1.00input/s\n"
    quiet = progress.progress_bar(range(2), desc="q", unit="x", disable=True, file=log)
    quiet.note("compiling")
    assert list(quiet) == [0, 1] and log.getvalue().count("\n") == 1


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_a_bar_on_a_terminal_is_tqdms_and_shows_a_note_until_its_next_step(clock):
    screen = Terminal()
    bar = progress.progress_bar(total=4, desc="inputs", unit="input", file=screen)
    assert isinstance(bar, progress.TerminalBar)
    bar.note("compiling 96x128")
    assert screen.getvalue().endswith("0/4 [00:00<?, ?input/s, compiling 96x128]")
    clock.now += 1
    bar.update()
    assert screen.getvalue().rstrip().endswith("1/4 [00:01<00:03,  1.00input/s]")
    bar.close()
    assert "\r" in screen.getvalue()
