"""Worker processes that leave a terminal's Ctrl-C, or a kill, to the program that
started them.

A Ctrl-C in a terminal sends SIGINT to every process of the foreground group: to the
data workers of grain and of the dataset builders too, which then each printed a
KeyboardInterrupt traceback (and grain's left shared memory behind) while the program
itself stopped cleanly. A kill (SIGTERM) of the program while it started spawned workers
stopped it in the middle of writing a worker's start-up data (the builder's is larger
than a pipe holds: the write waits for the worker's imports), and each such worker then
printed a traceback (a truncated pickle, a semaphore already gone). Two ways to keep
workers out of it:
- `interrupts_held`: a process inherits the signal mask of the thread that starts it,
  through spawn's exec too, so workers started in the block never receive SIGINT or
  SIGTERM, and the program handles its own after every worker has its data; for pools
  whose start the program controls (the synthetic builder's).
- `ignore_interrupts_if_spawned`: called by every launcher as it is imported, which a
  spawned worker does first of all (multiprocessing runs the parent's main script as
  `__mp_main__`); for workers that libraries start from their own threads (grain).
Either way the program stops its workers as at the end of the work.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import signal
import threading


@contextlib.contextmanager
def interrupts_held():
    """Holds SIGINT and SIGTERM in this thread for the block; the processes and threads
    started in it keep them held. A Ctrl-C or a kill meanwhile reaches this program when
    the block ends, also when another thread of it (one that does not hold them) took
    the signal: in the main thread, the Python handlers are deferred too. The workers
    started in it end when the program ends them, not by these signals."""
    signals = (signal.SIGINT, signal.SIGTERM)
    pending = []
    deferred = threading.current_thread() is threading.main_thread()
    if deferred:
        handlers = {
            s: signal.signal(s, lambda signum, frame: pending.append(signum)) for s in signals
        }
    held = signal.pthread_sigmask(signal.SIG_BLOCK, set(signals))
    try:
        yield
    finally:
        if deferred:
            for s, handler in handlers.items():
                signal.signal(s, handler)
        signal.pthread_sigmask(signal.SIG_SETMASK, held)
        for s in dict.fromkeys(pending):
            signal.raise_signal(s)


def ignore_interrupts_if_spawned() -> None:
    """Ignores SIGINT in a multiprocessing worker that is importing its parent's main
    script. Nothing changes in the program itself.

    A spawned worker gets its name before it imports the main script; the program's
    own process keeps the name "MainProcess".
    """
    if multiprocessing.current_process().name != "MainProcess":
        signal.signal(signal.SIGINT, signal.SIG_IGN)
