import contextlib
import os
import pathlib
import signal
import subprocess
import sys
import threading
import time

import pytest

from lcrnet_jax.data import workers

ROOT = pathlib.Path(__file__).resolve().parent.parent
_SIGINT_BIT = 1 << (signal.SIGINT - 1)
_SIGTERM_BIT = 1 << (signal.SIGTERM - 1)


def spawned_children(pid: int) -> list[int]:
    """The multiprocessing workers that process `pid` spawned (Linux /proc)."""
    children = []
    for stat in pathlib.Path("/proc").glob("[0-9]*/stat"):
        try:
            ppid = int(stat.read_text().rsplit(")", 1)[1].split()[1])
            spawned = b"spawn_main" in (stat.parent / "cmdline").read_bytes()
        except (OSError, IndexError, ValueError):  # a process that just ended
            continue
        if ppid == pid and spawned:
            children.append(int(stat.parent.name))
    return children


@contextlib.contextmanager
def sigint_as_in_a_terminal():
    """Processes started in the block begin with SIGINT at its default, as from a
    terminal, whatever this process inherited: a shell starts a background job
    (`make test &`) with SIGINT ignored, and its children would inherit that."""
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


def _signal_set(pid: int, field: str) -> int:
    """The SigBlk / SigIgn bit set of process `pid` (Linux /proc)."""
    for line in pathlib.Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1], 16)
    raise AssertionError(f"no {field} in /proc/{pid}/status")


@pytest.mark.skipif(not pathlib.Path("/proc/self/status").exists(), reason="needs Linux /proc")
def test_processes_started_with_interrupts_held_never_receive_them():
    sleep = [sys.executable, "-c", "import time; time.sleep(60)"]
    with workers.interrupts_held():
        held = subprocess.Popen(sleep)
    free = subprocess.Popen(sleep)
    both = _SIGINT_BIT | _SIGTERM_BIT
    try:
        assert _signal_set(held.pid, "SigBlk") & both == both
        assert not _signal_set(free.pid, "SigBlk") & both
        assert not {signal.SIGINT, signal.SIGTERM} & signal.pthread_sigmask(signal.SIG_BLOCK, set())
        os.kill(held.pid, signal.SIGINT)
        os.kill(held.pid, signal.SIGTERM)
        with pytest.raises(subprocess.TimeoutExpired):
            held.wait(timeout=1)  # still sleeping: the signals stay pending
    finally:
        held.kill()
        free.kill()
        held.wait()
        free.wait()


_SPAWNING_LAUNCHER = """
import multiprocessing, signal

import experiments.launch


def child(queue):
    queue.put(signal.getsignal(signal.SIGINT) == signal.SIG_IGN)


if __name__ == "__main__":
    context = multiprocessing.get_context("spawn")
    queue = context.Queue()
    worker = context.Process(target=child, args=(queue,))
    worker.start()
    print(queue.get(timeout=120), signal.getsignal(signal.SIGINT) is signal.default_int_handler)
    worker.join()
"""


def test_a_launchers_spawned_workers_ignore_ctrl_c_and_the_launcher_does_not(tmp_path):
    """grain starts its workers from its own threads; they import the launcher first."""
    script = tmp_path / "launcher.py"
    script.write_text(_SPAWNING_LAUNCHER)
    with sigint_as_in_a_terminal():
        done = subprocess.run(
            [sys.executable, str(script)], cwd=ROOT, capture_output=True, text=True,
            timeout=180, env={**os.environ, "PYTHONPATH": str(ROOT)},
        )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["True", "True"]


_CONFIG = """
from tests.test_loop import tiny_config


def get_config():
    config = tiny_config({data_dir!r}, 100_000)
    config.data.num_workers = 2
    return config
"""


@pytest.mark.skipif(not pathlib.Path("/proc/self/status").exists(), reason="needs Linux /proc")
def test_ctrl_c_stops_a_training_with_data_workers_in_one_clean_exit(data_dir, tmp_path):
    """Ctrl-C reaches the whole process group: grain's workers printed a traceback each
    and the resource tracker a "leaked shared_memory" warning."""
    (tmp_path / "config.py").write_text(_CONFIG.format(data_dir=data_dir))
    command = [sys.executable, str(ROOT / "experiments" / "train.py"),
               f"--config={tmp_path / 'config.py'}", f"--workdir={tmp_path / 'run'}"]  # fmt: skip
    env = {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "JAX_COMPILATION_CACHE_DIR": str(ROOT / ".jax_cache"),
    }
    with open(tmp_path / "stderr", "w") as stderr, sigint_as_in_a_terminal():
        train = subprocess.Popen(
            command, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=stderr, text=True,
            start_new_session=True,
        )  # fmt: skip
    try:
        deadline = time.monotonic() + 180
        ignoring = []
        while len(ignoring) < 2 and time.monotonic() < deadline and train.poll() is None:
            time.sleep(0.2)
            ignoring = [
                pid for pid in spawned_children(train.pid)
                if _signal_set(pid, "SigIgn") & _SIGINT_BIT
            ]  # fmt: skip
        assert len(ignoring) == 2, "grain's two workers did not come to ignore SIGINT"
        os.killpg(train.pid, signal.SIGINT)
        stdout, _ = train.communicate(timeout=120)
    finally:
        if train.poll() is None:
            os.killpg(train.pid, signal.SIGKILL)
    stderr = (tmp_path / "stderr").read_text()
    assert train.returncode == 130, stderr
    assert "stopped at step" in stdout
    assert "Traceback" not in stderr and "leaked" not in stderr, stderr


def test_a_signal_taken_by_another_thread_during_the_block_reaches_the_program_after_it():
    """A SIGTERM that a thread without the mask takes (the main thread's handler then
    runs, deferred) reaches the program once the block ends, once, not during it."""
    received = []
    previous = signal.signal(signal.SIGTERM, lambda signum, frame: received.append(signum))
    done = threading.Event()
    free = threading.Thread(target=done.wait, args=(30,))
    free.start()  # started before the block: it does not hold the signals
    try:
        with workers.interrupts_held():
            os.kill(os.getpid(), signal.SIGTERM)
            for _ in range(50):  # time for the free thread to take it
                time.sleep(0.01)
            assert received == []
        assert received == [signal.SIGTERM]
    finally:
        done.set()
        free.join()
        signal.signal(signal.SIGTERM, previous)


def test_a_block_inside_another_leaves_the_signals_held_by_the_outer_one():
    """The inner block restores the mask it found, not an unblocked one; the last block
    leaves the program its own handlers."""
    both = {signal.SIGINT, signal.SIGTERM}
    handlers = {s: signal.getsignal(s) for s in both}
    with workers.interrupts_held():
        with workers.interrupts_held():
            pass
        assert both <= signal.pthread_sigmask(signal.SIG_BLOCK, set())
    assert not both & signal.pthread_sigmask(signal.SIG_BLOCK, set())
    assert {s: signal.getsignal(s) for s in both} == handlers
