"""Progress bars that suit both a terminal and a log file (the launchers' consoles).

`progress_bar` is tqdm on a terminal. When its stream is not a terminal (`nohup ... >
log 2>&1`, a scheduler's log), tqdm's carriage-return redraws would make the log a few
unreadable lines, each message written between them glued to a redrawn bar; there the
bar writes plain lines instead: one at most every `interval` seconds, and one when it
closes (a bar that leaves nothing, `leave=False`, ends with a line only if it wrote
one before). Lines written with `tqdm.write` come out whole between them, and
`note(text)` says something once (e.g. "compiling 96x128"): on a terminal as the bar's
postfix until its next step, in a log as one line.
"""

from __future__ import annotations

import sys
from collections.abc import Iterable
from typing import Any, TextIO

from tqdm import tqdm

LOG_INTERVAL = 30.0
"""Seconds between two lines of a bar in a log at least."""


class TerminalBar(tqdm):
    """tqdm with `note`: a postfix shown until the bar's next step."""

    _noted = False

    def note(self, text: str) -> None:
        """Shows `text` as the bar's postfix until its next step."""
        if not self.disable:
            self._noted = True
            self.set_postfix_str(text)

    def update(self, n: float = 1) -> bool | None:
        if self._noted:
            self._noted = False
            self.set_postfix_str("", refresh=False)
        return super().update(n)


class LogBar(tqdm):
    """A bar for a stream that is not a terminal: whole lines, at most one every
    `interval` seconds and one at the end, never a redraw.

    A line reads "DESC: N/TOTAL (P%) in ELAPSED, REMAINING left, RATE", e.g.
    "long.gif: 120/400 (30%) in 00:57, 02:13 left, 2.10frame/s".
    """

    def __init__(self, *args, interval: float | None = None, **kwargs):
        """As tqdm's, plus `interval`: seconds between two lines at least (None:
        `LOG_INTERVAL`)."""
        self._interval = LOG_INTERVAL if interval is None else interval
        self._lines = 0
        self._last_line = None  # set with tqdm's clock once it has one
        self._final = kwargs.get("leave", True) is not False
        kwargs.update(leave=False, mininterval=interval, miniters=1)
        super().__init__(*args, **kwargs)
        if not self.disable:
            self._last_line = self._time()

    def _line(self) -> str:
        values = self.format_dict
        values["bar_format"] = (
            "{desc}: {n_fmt}/{total_fmt} ({percentage:.0f}%) in {elapsed}, {remaining} left, "
            "{rate_fmt}{postfix}"
            if values["total"]
            else "{desc}: {n_fmt} in {elapsed}, {rate_fmt}{postfix}"
        )
        values["ncols"] = None
        return " ".join(self.format_meter(**values).split())  # tqdm pads the rate

    def _write_line(self, line: str) -> None:
        self.fp.write(line + "\n")
        getattr(self.fp, "flush", lambda: None)()

    def _write_progress(self) -> None:
        self._write_line(self._line())
        self._lines += 1
        self._last_line = self._time()

    def display(self, msg: str | None = None, pos: int | None = None) -> bool:
        """Writes the bar's line if `interval` seconds passed since the last one."""
        del pos
        if msg == "" or self._last_line is None:  # a clear, or tqdm's first display
            return False
        if self._time() - self._last_line < self._interval:
            return False
        self._write_progress()
        return True

    def clear(self, nolock: bool = False) -> None:
        """Nothing to clear: the lines written stay."""

    def note(self, text: str) -> None:
        """Writes "DESC: text" on a line of its own (the next progress line still comes
        `interval` seconds after the last)."""
        if not self.disable:
            with self.get_lock():
                self._write_line(f"{self.desc}: {text}" if self.desc else text)

    def close(self) -> None:
        """Writes the last line (overall rate) unless `leave=False` and no line came
        before."""
        if not self.disable and (self._final or self._lines):
            with self.get_lock():
                self._ema_dt = lambda: None  # the overall rate, as tqdm's last line
                self._write_progress()
        super().close()


def progress_bar(
    iterable: Iterable | None = None,
    *,
    desc: str,
    unit: str,
    total: float | None = None,
    leave: bool = True,
    disable: bool = False,
    file: TextIO | None = None,
    interval: float | None = None,
    **kwargs: Any,
) -> TerminalBar | LogBar:
    """A progress bar on `file` (None: stderr): tqdm's on a terminal, else a `LogBar`
    (plain lines, one at most every `interval` seconds, and one at the end).

    Args:
      iterable, desc, unit, total, leave, disable: as tqdm's.
      file: the stream; None for `sys.stderr` (read when called).
      interval: seconds between two lines in a log at least; None for `LOG_INTERVAL`.
      **kwargs: further tqdm arguments.
    """
    file = sys.stderr if file is None else file
    isatty = getattr(file, "isatty", None)
    options = dict(desc=desc, unit=unit, total=total, leave=leave, disable=disable, file=file)
    if isatty is not None and isatty():
        return TerminalBar(iterable, **options, **kwargs)
    return LogBar(iterable, **options, interval=interval, **kwargs)
