"""Orbax checkpoints of the training state and the data iterator position.

One `ocp.CheckpointManager` per run directory saves the TrainState and, when given,
the grain iterator together (`ocp.args.Composite`), asynchronously, keeping the last
few steps. Restoring takes an abstract target (`jax.eval_shape`), so no real state
needs to be built first; `restore_run_variables` reads just the model variables for
evaluation, prediction and fine-tuning. Restoring checks orbax's metadata files and
that the parameters are finite: training falls back to the newest good step with one
warning line, evaluation and prediction refuse with one line listing the good steps. A
checkpoint of another model (arrays of other names or shapes, seen in its metadata
before any array is read) is refused in one line and never set aside as damaged, as is a
data-iterator position that another input pipeline saved (e.g. another number of grain
workers). A disk too full for the next checkpoint stops the run in one line naming the
saved steps, before writing where the last checkpoint's size tells, else after the
failed write, whose partial step folder is removed.
"""

from __future__ import annotations

import contextlib
import errno
import json
import logging
import os
import pathlib
import re
import shutil
import sys

import grain
import jax
import jax.numpy as jnp
import orbax.checkpoint as ocp
from jax.experimental import multihost_utils

from lcrnet_jax.data import atomic

# Written by orbax in every complete step folder; a step without them does not restore.
_REQUIRED_FILES = ("_CHECKPOINT_METADATA", "state/_METADATA")


class CheckpointError(ValueError):
    """A checkpoint that cannot be restored (damaged, unlike the model, or non-finite)."""


class ModelMismatchError(CheckpointError):
    """A checkpoint of another model: its arrays' names or shapes are not the config's.
    Not damage: training never sets such a step aside."""


class DataMismatchError(CheckpointError):
    """A checkpoint whose data-iterator position another input pipeline saved (e.g.
    another `data.num_workers`). Not damage: training never sets such a step aside."""


def _first_line(error: BaseException) -> str:
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    text = lines[0].split(" See full TensorStore details")[0] if lines else ""
    return f"{type(error).__name__}: {text[:200]}"


def _silence_closed_event_loop() -> None:
    """When an orbax read or write fails (of the metadata or of the arrays), tensorstore's
    pending operations call back into orbax's closed asyncio loop and print "Event loop is
    closed" tracebacks (through `sys.unraisablehook`), from tensorstore's threads and
    before the error reaches the caller: installed before the first read or save, this
    drops exactly those and passes anything else on."""
    previous = sys.unraisablehook
    if getattr(previous, "closed_loop_filter", False):
        return

    def hook(unraisable):
        error = unraisable.exc_value
        if not (isinstance(error, RuntimeError) and str(error) == "Event loop is closed"):
            previous(unraisable)

    hook.closed_loop_filter = True
    sys.unraisablehook = hook


def _array_shapes(tree) -> dict[str, tuple[int, ...]]:
    """{orbax's dotted name of each array: its shape} of a tree of arrays or metadata."""
    flat = ocp.tree.to_flat_dict(tree, sep=".")
    return {name: tuple(leaf.shape) for name, leaf in flat.items() if leaf is not None}


def _stored_shapes(folder: str) -> dict[str, tuple[int, ...]]:
    """The arrays saved in a step folder's "state" item, from its metadata only."""
    handler = ocp.PyTreeCheckpointHandler()
    try:
        return _array_shapes(handler.metadata(pathlib.Path(folder) / "state").tree)
    finally:
        handler.close()


def _mismatch(stored: dict, target, *, partial: bool) -> str | None:
    """How the arrays of `target` differ from the `stored` ones, in words; None if they
    fit. With `partial`, stored arrays the target lacks are allowed."""
    wanted = _array_shapes(target)
    absent = [name for name in wanted if name not in stored]
    if absent:
        return (
            f"{len(absent)} of the config's arrays are not in the checkpoint, the first {absent[0]}"
        )
    extra = [] if partial else [name for name in stored if name not in wanted]
    if extra:
        return f"the checkpoint holds {len(extra)} arrays the config's lacks, the first {extra[0]}"
    for name, shape in wanted.items():
        if stored[name] != shape:
            return f"{name} is {stored[name]} in the checkpoint and {shape} in the config"
    return None


def _megabytes(size: int) -> str:
    return f"{size / 2**20:.1f} MB"


def all_finite(tree) -> bool:
    """Whether every element of every array in `tree` is finite (NaN/inf free)."""
    leaves = jax.tree.leaves(tree)
    return all(bool(jnp.all(jnp.isfinite(x))) for x in leaves)


def _pytree_restore(abstract, *, partial: bool = False) -> ocp.args.PyTreeRestore:
    """Restore arguments placing every array like its abstract twin (default device
    when the twin has no sharding)."""
    restore_args = ocp.checkpoint_utils.construct_restore_args(abstract)
    return ocp.args.PyTreeRestore(item=abstract, restore_args=restore_args, partial_restore=partial)


# Scans of a live run's checkpoints/ (a step may vanish during one).
_OPEN_ATTEMPTS = 3


class Checkpointer:
    """Saves and restores a run's checkpoints under `directory`.

    Args:
      directory: where the step folders live (created if missing).
      max_to_keep: how many recent checkpoints to keep (None keeps all).
      asynchronous: write in a background thread (call `wait` before exiting).
    """

    def __init__(self, directory: str | os.PathLike, *, max_to_keep: int | None = 3,
                 asynchronous: bool = True):  # fmt: skip
        self.directory = os.path.abspath(os.fspath(directory))
        options = ocp.CheckpointManagerOptions(
            max_to_keep=max_to_keep, create=True, enable_async_checkpointing=asynchronous
        )
        for attempt in range(_OPEN_ATTEMPTS):
            try:
                self._manager = ocp.CheckpointManager(self.directory, options=options)
                break
            except (FileNotFoundError, NotADirectoryError):
                # A step folder removed during orbax's scan (a live training's
                # max_to_keep): the next scan no longer sees it.
                if attempt == _OPEN_ATTEMPTS - 1 or not os.path.isdir(self.directory):
                    raise

    def all_steps(self) -> list[int]:
        return sorted(self._manager.all_steps())

    def latest_step(self) -> int | None:
        return self._manager.latest_step()

    def save(self, step: int, state, data_iterator=None, *, force: bool = True) -> bool:
        """Saves `state` (and the grain iterator's position) as checkpoint `step`.

        Raises:
          OSError (ENOSPC): the disk cannot hold the checkpoint, found before writing
            from the size of the last one where there is one, else from the failed
            write (this save's or an earlier asynchronous one's); the partial step
            folder is then removed.
          OSError: another failed write (a file size limit, a quota, a read-only or
            failing disk), with its errno; the partial step folder is removed.
        """
        needed = self._last_checkpoint_bytes()
        free = shutil.disk_usage(self.directory).free
        if needed is not None and free < needed:
            raise self._disk_full(f"checkpoint {step} needs about {_megabytes(needed)}, "
                                  f"{_megabytes(free)} free")  # fmt: skip
        items = {"state": ocp.args.PyTreeSave(state)}
        if data_iterator is not None:
            items["data"] = grain.checkpoint.CheckpointSave(data_iterator)
        _silence_closed_event_loop()
        with self._reporting_write_failures():
            return self._manager.save(step, args=ocp.args.Composite(**items), force=force)

    def _last_checkpoint_bytes(self) -> int | None:
        """The size on disk of the newest complete step folder (arrays are compressed:
        the state's own size would overestimate it); None before the first."""
        for step in reversed(self.all_steps()):
            folder = pathlib.Path(self.directory, str(step))
            if folder.is_dir():
                return sum(f.stat().st_size for f in folder.rglob("*") if f.is_file())
        return None

    @contextlib.contextmanager
    def _reporting_write_failures(self):
        try:
            yield
        except Exception as error:
            code, disk_full = atomic.write_errno(error), atomic.is_disk_full(error)
            if code is None and not disk_full:
                raise
            for partial in pathlib.Path(self.directory).glob("*.orbax-checkpoint-tmp*"):
                shutil.rmtree(partial, ignore_errors=True)
            if disk_full:
                raise self._disk_full("a write failed") from error
            latest = self.latest_step()
            resume = "start again" if latest is None else f"resume from step {latest}"
            raise OSError(
                code,
                f"a checkpoint could not be written in {self.directory}: "
                f"{os.strerror(code)}; saved steps: {self.all_steps()}; "
                f"fix the cause and run the same command to {resume}",
            ) from error

    def _disk_full(self, detail: str) -> OSError:
        latest = self.latest_step()
        resume = "start again" if latest is None else f"resume from step {latest}"
        return OSError(
            errno.ENOSPC,
            f"no space left on the device of {self.directory} for a checkpoint ({detail}); "
            f"saved steps: {self.all_steps()}; free some space and run the same command "
            f"to {resume}",
        )

    def _check_step(self, step: int | None) -> int:
        steps = self.all_steps()
        if step is None:
            if not steps:
                raise FileNotFoundError(f"no checkpoint in {self.directory}")
            return steps[-1]
        if step not in steps:
            raise FileNotFoundError(
                f"no checkpoint at step {step} in {self.directory}; available steps: {steps}"
            )
        return step

    def _read(self, step: int, items: dict, *, check_params: bool, missing_ok=False) -> dict:
        """Restores checkpoint `step`; any failure (a missing orbax metadata file, a
        truncated array file, non-finite parameters) is a `CheckpointError` whose message
        is one line, and arrays unlike the target's a `ModelMismatchError`, found from
        the metadata before any array is read. With `missing_ok`, the target's arrays
        that the checkpoint lacks are left out of the result."""
        folder = os.path.join(self.directory, str(step))
        for name in _REQUIRED_FILES:
            if not os.path.isfile(os.path.join(folder, name)):
                raise CheckpointError(f"step {step}: {name} is missing")
        state_args = items["state"]
        _silence_closed_event_loop()
        try:
            stored = _stored_shapes(folder)
        except Exception as error:  # orbax and tensorstore raise many kinds
            raise CheckpointError(
                f"step {step} cannot be read (its metadata: {_first_line(error)})"
            ) from error
        if missing_ok:
            flat = ocp.tree.to_flat_dict(state_args.item, sep=".")
            kept = {name: leaf for name, leaf in flat.items() if name in stored}
            state_args = _pytree_restore(ocp.tree.from_flat_dict(kept, sep="."), partial=True)
            items = {**items, "state": state_args}
        mismatch = _mismatch(stored, state_args.item, partial=state_args.partial_restore)
        if mismatch:
            raise ModelMismatchError(f"step {step} does not fit the config's model: {mismatch}")
        try:
            restored = self._manager.restore(step, args=ocp.args.Composite(**items))
        except Exception as error:  # orbax and tensorstore raise many kinds
            raise CheckpointError(f"step {step} cannot be read ({_first_line(error)})") from error
        state = restored["state"]
        params = state.get("params", {}) if isinstance(state, dict) else state.params
        if check_params and not all_finite(params):
            raise CheckpointError(f"step {step}: non-finite parameters")
        return restored

    def _restorable_steps(self, items_fn, *, skip: int, missing_ok=False) -> list[int]:
        """The steps other than `skip` that restore with finite parameters."""
        good = []
        for step in self.all_steps():
            if step != skip:
                try:
                    self._read(step, items_fn(), check_params=True, missing_ok=missing_ok)
                    good.append(step)
                except CheckpointError:
                    pass
        return good

    def restore(self, abstract_state, *, step: int | None = None, data_iterator=None):
        """Restores the state (to the structure, shapes and shardings of
        `abstract_state`, e.g. from `jax.eval_shape`) and, if given, moves
        `data_iterator` to the saved position. Returns (step, state).

        With `step` None, the newest checkpoint that restores with finite parameters:
        a damaged newer one is reported in one warning line and skipped (training
        resumes from the last good state). A given `step` must restore.

        Raises:
          FileNotFoundError: no checkpoint (at `step`).
          ModelMismatchError: the newest step (or `step`) holds another model's arrays;
            nothing is set aside.
          DataMismatchError: its data-iterator position is another input pipeline's;
            nothing is set aside.
          CheckpointError: no checkpoint restores, or `step` does not.
        """

        def items():
            return {"state": _pytree_restore(abstract_state)}

        candidates = [self._check_step(step)] if step is not None else self.all_steps()[::-1]
        if not candidates:
            raise FileNotFoundError(f"no checkpoint in {self.directory}")
        errors = []
        for candidate in candidates:
            try:
                restored = self._read(candidate, items(), check_params=True)
                if data_iterator is not None:
                    self._read_position(candidate, data_iterator)
            except DataMismatchError as error:
                raise DataMismatchError(
                    f"checkpoint {self.directory} {error}: resume with the data settings it "
                    "was saved with (e.g. data.num_workers), or train in a new --workdir"
                ) from error
            except ModelMismatchError as error:
                raise ModelMismatchError(
                    f"checkpoint {self.directory} {error}: the run of another config; resume "
                    "it with its own config, or train this one in a new --workdir"
                ) from error
            except CheckpointError as error:
                if step is not None:
                    raise CheckpointError(f"checkpoint {self.directory} {error}") from error
                errors.append(str(error))
                aside = self._set_aside(candidate)
                logging.warning(
                    "checkpoint %s %s; moved to %s, trying an older step",
                    self.directory,
                    error,
                    aside,
                )
                continue
            return candidate, restored["state"]
        raise CheckpointError(
            f"no checkpoint in {self.directory} restores ({'; '.join(errors)}); delete the "
            "folder to start over"
        )

    def _read_position(self, step: int, data_iterator) -> None:
        """Moves `data_iterator` to `step`'s saved position (its own item, after the
        state). A position file that reads as JSON but does not fit the iterator is
        another input pipeline's (`DataMismatchError`); one that does not read is damage
        (`CheckpointError`)."""
        restore = grain.checkpoint.CheckpointRestore(data_iterator)
        try:
            self._manager.restore(step, args=ocp.args.Composite(data=restore))
        except Exception as error:  # orbax and grain raise many kinds
            folder = pathlib.Path(self.directory, str(step), "data")
            names = (re.fullmatch(r"process_\d+-of-(\d+)\.json", p.name) for p in folder.glob("*"))
            hosts = sorted({int(m[1]) for m in names if m})  # grain writes a file per host
            if hosts and jax.process_count() not in hosts:
                raise DataMismatchError(
                    f"step {step}: its data-iterator position was saved by {hosts[0]} host(s), "
                    f"this run has {jax.process_count()} (resume on {hosts[0]})"
                ) from error
            name = f"process_{jax.process_index()}-of-{jax.process_count()}.json"
            try:
                json.loads((folder / name).read_text())
            except (OSError, ValueError):
                raise CheckpointError(
                    f"step {step}: its data-iterator position cannot be read ({_first_line(error)})"
                ) from error
            raise DataMismatchError(
                f"step {step}: its data-iterator position was saved by another input "
                f"pipeline ({_first_line(error)})"
            ) from error

    def _set_aside(self, step: int) -> str:
        """Moves a damaged step folder to <directory>_damaged/ (so that training can
        write that step again) and returns where. With several processes (hosts sharing
        the folder), process 0 moves it while the others wait."""
        aside = os.path.join(f"{self.directory}_damaged", str(step))
        if jax.process_index() == 0:
            shutil.rmtree(aside, ignore_errors=True)
            os.makedirs(os.path.dirname(aside), exist_ok=True)
            os.replace(os.path.join(self.directory, str(step)), aside)
        if jax.process_count() > 1:
            multihost_utils.sync_global_devices(f"checkpoint {step} set aside")
        self._manager.reload()
        return aside

    def restore_variables(
        self, abstract_variables: dict, *, step: int | None = None, missing_ok: bool = False
    ):
        """Only the model variables of a saved TrainState, for evaluation.

        Args:
          abstract_variables: {"params": ..., other collections...} with the shapes of
            the model's variables (e.g. `jax.eval_shape(model.init, ...)`).
          step: the checkpoint; None for the latest.
          missing_ok: the arrays the checkpoint lacks (a part added to the model, as
            when fine-tuning) are left out of the result instead of refused.

        Returns:
          (step, variables) with the same structure (less what `missing_ok` left out).

        Raises:
          FileNotFoundError: no checkpoint (at `step`), or it was removed while being
            read (a training rotating its checkpoints).
          ModelMismatchError: the checkpoint holds another model's arrays.
          CheckpointError: the checkpoint does not restore or holds non-finite
            parameters; the message lists the steps that restore and names --step.
        """

        def items():
            target = {
                "params": abstract_variables["params"],
                "constants": {k: v for k, v in abstract_variables.items() if k != "params"},
            }
            return {"state": _pytree_restore(target, partial=True)}

        step = self._check_step(step)
        try:
            restored = self._read(step, items(), check_params=True, missing_ok=missing_ok)
            restored = restored["state"]
        except ModelMismatchError as error:
            raise ModelMismatchError(
                f"checkpoint {self.directory} {error}: the run of another config; pass that "
                "run's --config"
            ) from error
        except CheckpointError as error:
            if not os.path.isdir(os.path.join(self.directory, str(step))):
                on_disk = sorted(int(n) for n in os.listdir(self.directory) if n.isdigit())
                raise FileNotFoundError(
                    f"checkpoint {self.directory} step {step} was removed while being read "
                    f"(a training keeps only its latest steps); steps now: {on_disk}"
                ) from None
            good = self._restorable_steps(items, skip=step, missing_ok=missing_ok)
            hint = f"; pass --step={good[-1]}" if good else ""
            raise CheckpointError(
                f"checkpoint {self.directory} {error}; steps that restore: {good}{hint}"
            ) from error
        return step, {"params": restored.get("params", {}), **restored.get("constants", {})}

    def wait(self) -> None:
        """Blocks until pending asynchronous saves are written (OSError as `save`)."""
        with self._reporting_write_failures():
            self._manager.wait_until_finished()

    def close(self) -> None:
        self._manager.close()

    def __enter__(self) -> Checkpointer:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def restore_run_variables(workdir: str | os.PathLike, abstract_variables: dict, *,
                          step: int | None = None, missing_ok: bool = False):  # fmt: skip
    """(step, variables) of a training run's checkpoint (`Checkpointer.restore_variables`
    on `workdir`/checkpoints): the one path of evaluation, prediction and fine-tuning.

    Raises:
      FileNotFoundError: `workdir` holds no run, or no checkpoint at `step`.
      CheckpointError: see `Checkpointer.restore_variables`.
    """
    with Checkpointer(run_checkpoints(workdir), asynchronous=False) as ckpt:
        return ckpt.restore_variables(abstract_variables, step=step, missing_ok=missing_ok)


def run_checkpoints(workdir: str | os.PathLike) -> str:
    """The checkpoints/ folder of a training run; FileNotFoundError if `workdir` holds
    none, pointing to the run where `workdir` is its checkpoints/ or a step folder."""
    workdir = pathlib.Path(workdir).absolute()
    directory = workdir / "checkpoints"
    if directory.is_dir():
        return os.fspath(directory)
    hint = ""
    if workdir.name == "checkpoints" and workdir.is_dir():
        hint = f": it is the checkpoints/ folder of run {workdir.parent}, pass that"
    elif workdir.parent.name == "checkpoints" and workdir.name.isdigit():
        hint = (
            f": it is step {workdir.name} of run {workdir.parent.parent}, pass that "
            f"(with --step={workdir.name})"
        )
    elif any(workdir.glob("*.jaxexport")):
        hint = ": it holds an exported model (lcrnet_jax.predict.exported.ExportedModel)"
    raise FileNotFoundError(f"{workdir} holds no training run (no checkpoints/){hint}")
