"""Orbax checkpoints of the training state and the data iterator position.

One `ocp.CheckpointManager` per run directory saves the TrainState and, when given,
the grain iterator together (`ocp.args.Composite`), asynchronously, keeping the last
few steps. Restoring takes an abstract target (`jax.eval_shape`), so no real state
needs to be built first; `restore_variables` reads just the model variables for
evaluation and prediction.
"""

from __future__ import annotations

import os

import grain
import orbax.checkpoint as ocp


def _pytree_restore(abstract, *, partial: bool = False) -> ocp.args.PyTreeRestore:
    """Restore arguments placing every array like its abstract twin (default device
    when the twin has no sharding)."""
    restore_args = ocp.checkpoint_utils.construct_restore_args(abstract)
    return ocp.args.PyTreeRestore(item=abstract, restore_args=restore_args, partial_restore=partial)


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
        self._manager = ocp.CheckpointManager(self.directory, options=options)

    def all_steps(self) -> list[int]:
        return sorted(self._manager.all_steps())

    def latest_step(self) -> int | None:
        return self._manager.latest_step()

    def save(self, step: int, state, data_iterator=None, *, force: bool = True) -> bool:
        """Saves `state` (and the grain iterator's position) as checkpoint `step`."""
        items = {"state": ocp.args.PyTreeSave(state)}
        if data_iterator is not None:
            items["data"] = grain.checkpoint.CheckpointSave(data_iterator)
        return self._manager.save(step, args=ocp.args.Composite(**items), force=force)

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

    def restore(self, abstract_state, *, step: int | None = None, data_iterator=None):
        """Restores the state (to the structure, shapes and shardings of
        `abstract_state`, e.g. from `jax.eval_shape`) and, if given, moves
        `data_iterator` to the saved position. Returns (step, state)."""
        step = self._check_step(step)
        items = {"state": _pytree_restore(abstract_state)}
        if data_iterator is not None:
            items["data"] = grain.checkpoint.CheckpointRestore(data_iterator)
        restored = self._manager.restore(step, args=ocp.args.Composite(**items))
        return step, restored["state"]

    def restore_variables(self, abstract_variables: dict, *, step: int | None = None):
        """Only the model variables of a saved TrainState, for evaluation.

        Args:
          abstract_variables: {"params": ..., other collections...} with the shapes of
            the model's variables (e.g. `jax.eval_shape(model.init, ...)`).

        Returns:
          (step, variables) with the same structure.
        """
        step = self._check_step(step)
        target = {
            "params": abstract_variables["params"],
            "constants": {k: v for k, v in abstract_variables.items() if k != "params"},
        }
        restored = self._manager.restore(
            step, args=ocp.args.Composite(state=_pytree_restore(target, partial=True))
        )["state"]
        return step, {"params": restored["params"], **restored["constants"]}

    def wait(self) -> None:
        """Blocks until pending asynchronous saves are written."""
        self._manager.wait_until_finished()

    def close(self) -> None:
        self._manager.close()
