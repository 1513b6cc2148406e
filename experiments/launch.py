"""The one wrapper of every launcher: quiet console, log file, compilation cache, and
every error as one line on stderr with a non-zero exit.

`run(main, log_dir_flag="workdir")` replaces `app.run(main)`:
- flags and config errors (a missing, unknown or malformed flag, a stray positional
  argument, an unknown config file or one that is not valid Python, a mistyped
  `--config.` key, with the close valid keys) and the errors of
  `main` (missing files, bad values, unwritable folders, bad model files, divergence)
  end in one `error: ...` line, exit status 1;
  Ctrl-C and SIGTERM (a kill) end in one line after the same clean-up, exit status 130
  and 143;
- library INFO logs (orbax, absl, jax) go to `<log dir>/log.txt`; the console shows
  warnings only unless `--verbosity` is given;
- JAX's persistent compilation cache is on (`--compilation_cache_dir`);
- `--help --config=FILE` also lists the config's keys with their defaults.
"""

from __future__ import annotations

import difflib
import gc
import importlib.util
import logging
import os
import pickle
import signal
import sys
import threading
import warnings

from absl import app, flags
from absl import logging as absl_logging

from lcrnet_jax.data import workers

# A data worker (grain's) importing this launcher as its parent's main script: the
# parent handles Ctrl-C and stops it. Before the launcher's heavy imports.
workers.ignore_interrupts_if_spawned()
# multiprocessing's resource tracker unlinks the shared memory of grain's batches still
# in flight at exit, with a "leaked shared_memory objects" warning (google/grain#398);
# it runs in its own process, started with this interpreter's warning options.
sys.warnoptions.append("ignore:resource_tracker:UserWarning")

_CACHE_DIR = flags.DEFINE_string(
    "compilation_cache_dir",
    os.environ.get("JAX_COMPILATION_CACHE_DIR", os.path.join("~", ".cache", "lcrnet_jax", "jax")),
    "JAX persistent compilation cache folder (default: $JAX_COMPILATION_CACHE_DIR or "
    "~/.cache/lcrnet_jax/jax); empty disables it.",
)
_CONFIGS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "configs")
# The errors a user can cause; anything else is a bug and keeps its traceback.
_EXPECTED = (OSError, ValueError, KeyError, FloatingPointError, pickle.UnpicklingError)


def one_line(error: BaseException) -> str:
    """`error`'s message on one line (KeyError's quotes removed)."""
    text = error.args[0] if isinstance(error, KeyError) and error.args else str(error)
    return " ".join(line.strip() for line in str(text).splitlines() if line.strip())


def _config_path(argv: list[str]) -> str | None:
    for arg in argv:
        if arg.startswith("--config="):
            return arg.split("=", 1)[1].split(":", 1)[0]
    return None


def _load_config(path: str):
    spec = importlib.util.spec_from_file_location("launch_config", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.get_config()


def _check_syntax(path: str) -> None:
    """Raises ValueError naming the file and line of a config that is not valid Python
    (config_flags would let the SyntaxError through with its traceback)."""
    with open(path, "rb") as f:
        source = f.read()
    try:
        compile(source, path, "exec")
    except SyntaxError as error:
        line = f" (line {error.lineno})" if error.lineno else ""
        raise ValueError(f"config {path}: {error.msg}{line}") from None
    except ValueError as error:  # null bytes, before Python 3.11.4
        raise ValueError(f"config {path}: {error}") from None


def _flat_keys(config, prefix: str = "") -> dict[str, object]:
    """{"train.num_steps": 2700000, ...} of a ConfigDict."""
    out = {}
    for key, value in config.items():
        if hasattr(value, "items"):
            out.update(_flat_keys(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


def check_config_args(argv: list[str]) -> None:
    """Raises FileNotFoundError for a missing `--config` file, ValueError naming the file
    and line of one that is not valid Python, and KeyError naming the close valid keys
    for a `--config.KEY=` override the config does not have."""
    path = _config_path(argv)
    if path is None:
        return
    if not os.path.isfile(path):
        known = sorted(n[:-3] for n in os.listdir(_CONFIGS) if n.endswith(".py") and n[0] != "_")
        raise FileNotFoundError(f"config file {path} not found; configs in {_CONFIGS}: {known}")
    _check_syntax(path)
    given = next(a for a in argv if a.startswith("--config="))[len("--config=") :]
    if given != path:  # ml_collections passes what follows ':' to get_config
        raise ValueError(f"the configs take no argument: --config={path}, not --config={given}")
    overrides = [a[len("--config.") :].split("=", 1)[0] for a in argv if a.startswith("--config.")]
    if not overrides:
        return
    repeated = sorted({key for key in overrides if overrides.count(key) > 1})
    if repeated:  # absl keeps the last value, but joins the values of a tuple field
        raise ValueError(f"--config.{repeated[0]} is given more than once: give it once")
    keys = _flat_keys(_load_config(path))
    sections = {k.rsplit(".", 1)[0] for k in keys if "." in k}
    for key in overrides:
        if key not in keys and key not in sections:
            close = difflib.get_close_matches(key, [*keys, *sections], n=3, cutoff=0.6)
            hint = f"; close keys: {', '.join(close)}" if close else ""
            raise KeyError(f"unknown config key {key} in {path}{hint}")


def _print_config_help(argv: list[str]) -> None:
    """The keys of the `--config=` file given, if any (launchers without `--config`
    take no config keys)."""
    path = _config_path(argv)
    if path and os.path.isfile(path):
        print(f"Config keys of {path} (override with --config.KEY=VALUE):")
        for key, value in _flat_keys(_load_config(path)).items():
            print(f"  {key} = {value!r}")
        print()


class _WithoutTraceback(logging.Formatter):
    """A console format of log records without their tracebacks (a library's background
    thread logs one per failure, e.g. orbax on a full disk): log.txt keeps them."""

    def __init__(self, formatter: logging.Formatter):
        super().__init__()
        self._formatter = formatter

    def format(self, record: logging.LogRecord) -> str:
        kept = record.exc_info, record.exc_text, record.stack_info
        record.exc_info = record.exc_text = record.stack_info = None
        try:
            return self._formatter.format(record)
        finally:
            record.exc_info, record.exc_text, record.stack_info = kept


class _LogFile(logging.FileHandler):
    """log.txt. A record it cannot write (a full disk) is dropped with one warning on
    the console, not logging's traceback per record; the run's own writes report the
    fault."""

    failed = False

    def handleError(self, record: logging.LogRecord) -> None:
        if not self.failed:
            self.failed = True
            error = sys.exc_info()[1]
            print(f"warning: cannot write {self.baseFilename}: {error}", file=sys.stderr)


def _one_line_warning(message, category, filename, lineno, line=None) -> str:
    """A Python warning (e.g. Pillow's on a 100-megapixel photo) in one console line,
    without the file, line and source that `warnings` adds."""
    return f"warning: {category.__name__}: {str(message).splitlines()[0]}\n"


def _setup_logging(log_dir: str | None) -> tuple[str, frozenset[str] | None] | None:
    """Console: warnings only, without tracebacks (unless --verbosity); log_dir/log.txt:
    INFO and above, unless it cannot be written (a read-only run evaluated elsewhere
    with --eval_dir): one warning, and the launcher goes on.
    Returns (log_dir, its entries before, None if this call made it), or None without
    a log_dir or log.txt, so that a failed run can leave the folder as it found it."""
    if not flags.FLAGS["verbosity"].present:
        warnings.formatwarning = _one_line_warning
        absl_logging.set_verbosity(absl_logging.INFO)
        console = absl_logging.get_absl_handler()
        console.setLevel(logging.WARNING)
        if not isinstance(console.python_handler.formatter, _WithoutTraceback):
            console.setFormatter(_WithoutTraceback(console.python_handler.formatter))
    if not log_dir:
        return None
    if os.path.exists(log_dir) and not os.path.isdir(log_dir):
        raise NotADirectoryError(f"{log_dir} is a file, not a folder for the outputs")
    before = frozenset(os.listdir(log_dir)) if os.path.isdir(log_dir) else None
    os.makedirs(log_dir, exist_ok=True)
    try:
        handler = _LogFile(os.path.join(log_dir, "log.txt"))
    except OSError as error:
        print(f"warning: library logs are not kept: {error}", file=sys.stderr)
        return None
    handler.setLevel(logging.INFO)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    logging.getLogger().addHandler(handler)
    return log_dir, before


def _leave_as_found(found: tuple[str, frozenset[str] | None] | None) -> None:
    """A run that failed or was stopped before writing anything but its log leaves its
    folder as it found it: a folder it made is removed, a log.txt it added to a folder
    of other files too. An earlier run's log.txt is kept."""
    if found is None:
        return
    folder, before = found
    if "log.txt" in (before or ()) or set(os.listdir(folder)) != {*(before or ()), "log.txt"}:
        return
    logging.shutdown()
    os.remove(os.path.join(folder, "log.txt"))
    if before is None:
        os.rmdir(folder)


def _setup_compilation_cache() -> None:
    """JAX's persistent cache in --compilation_cache_dir; one warning and no cache where
    the folder cannot be written (JAX would warn at every compiled function)."""
    if not _CACHE_DIR.value:
        return
    folder = _CACHE_DIR.value
    try:
        os.makedirs(folder, exist_ok=True)
        if not os.access(folder, os.W_OK):
            raise PermissionError(f"cannot write {folder}")
    except OSError as error:
        print(f"warning: no compilation cache: {error}", file=sys.stderr)
        return
    import jax

    jax.config.update("jax_compilation_cache_dir", folder)


def exit_if_stopped(result: dict) -> None:
    """Ends the process with 128 + the signal (143 for SIGTERM, 130 for Ctrl-C) when
    `loop.train_and_evaluate` stopped on one, saying how to resume."""
    if result.get("stopped"):
        print(
            f"stopped at step {result['step']}; checkpoint saved, rerun the same command to resume"
        )
        sys.exit(128 + result["signal"])


class _Terminated(KeyboardInterrupt):
    """SIGTERM (a kill, a scheduler's stop), cleaned up as Ctrl-C is; exit 143."""


def _dropped_here(frame) -> bool:
    """Whether Python would print and drop an exception raised in `frame`: inside a
    garbage-collector callback (jax's runs at every collection) or a `__del__`."""
    callbacks = {getattr(callback, "__code__", None) for callback in gc.callbacks}
    while frame is not None:
        if frame.f_code in callbacks or frame.f_code.co_name == "__del__":
            return True
        frame = frame.f_back
    return False


def _stop(signum, frame) -> None:
    """SIGTERM and Ctrl-C: `_Terminated` or KeyboardInterrupt where it ends the run; where
    it would be dropped (the launcher then ran to its end: 1 SIGTERM in 7 in an audit),
    the signal is sent again a moment later, to land outside."""
    if _dropped_here(frame):
        threading.Timer(0.05, os.kill, (os.getpid(), signum)).start()
        return
    raise _Terminated if signum == signal.SIGTERM else KeyboardInterrupt


def _fail(error: BaseException) -> None:
    print(f"error: {one_line(error)}", file=sys.stderr)
    sys.exit(1)


def _parse_flags(argv: list[str]) -> list[str]:
    """absl's flag parsing; a missing, unknown or malformed flag ends in one line. A
    leading `~` of a string flag (a path: the shell leaves `--flag=~/x` as it is) is the
    home folder."""
    try:
        rest = flags.FLAGS(argv)
    except (flags.Error, SyntaxError, ImportError) as error:  # from a module a config imports
        _fail(error)
    for name in flags.FLAGS:
        flag = flags.FLAGS[name]
        if isinstance(flag.value, str) and flag.value.startswith("~"):
            flag.value = os.path.expanduser(flag.value)
        elif isinstance(flag.value, list) and any(
            isinstance(v, str) and v.startswith("~") for v in flag.value
        ):
            flag.value = [os.path.expanduser(v) for v in flag.value]
    return rest


def run(main, *, log_dir_flag: str | None = None, on_interrupt: str = "") -> None:
    """`app.run(main)` with the behaviour of the module docstring.

    Args:
      main: the absl main.
      log_dir_flag: the flag naming the folder that receives log.txt (e.g. "workdir").
      on_interrupt: what to do after Ctrl-C or a kill, added to "error: interrupted".
    """
    argv = sys.argv
    try:
        check_config_args(argv)
        if "--help" in argv or "--helpfull" in argv:
            _print_config_help(argv)
    except _EXPECTED + (SyntaxError, ImportError) as error:  # from a module a config imports
        _fail(error)

    def guarded(args):
        if len(args) > 1:  # before the log folder is made
            _fail(ValueError(f"unexpected arguments: {' '.join(args[1:])}"))
        found = None
        for signum in (signal.SIGTERM, signal.SIGINT):
            signal.signal(signum, _stop)
        try:
            found = _setup_logging(flags.FLAGS[log_dir_flag].value if log_dir_flag else None)
            _setup_compilation_cache()
            return main(args)
        except _EXPECTED as error:
            _leave_as_found(found)
            _fail(error)
        except KeyboardInterrupt as stop:
            _leave_as_found(found)
            print(f"error: interrupted{'; ' + on_interrupt if on_interrupt else ''}",
                  file=sys.stderr)  # fmt: skip
            sys.exit(143 if isinstance(stop, _Terminated) else 130)

    try:
        app.run(guarded, flags_parser=_parse_flags)
    except _EXPECTED + (AttributeError,) as error:  # raised while absl parses the flags
        _fail(error)
