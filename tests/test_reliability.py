"""Fault injection: a diverging run, Ctrl-C (issue #18)."""

import math
import os
import signal

import pytest

from lcrnet_jax.data import pipeline
from lcrnet_jax.model import lcrnet
from lcrnet_jax.train import checkpoint, loop, step
from tests.test_loop import tiny_config


def _steps(workdir):
    ckpt = checkpoint.Checkpointer(os.path.join(workdir, "checkpoints"))
    steps = ckpt.all_steps()
    ckpt.close()
    return list(steps)


def test_nan_learning_rate_stops_the_run_and_keeps_the_params(data_dir, tmp_path, monkeypatch):
    # The config refuses a NaN rate (test_loop): the fault enters the schedule instead.
    make_schedule = step.make_learning_rate_schedule
    monkeypatch.setattr(
        step, "make_learning_rate_schedule", lambda _, **kwargs: make_schedule(math.nan, **kwargs)
    )
    config = tiny_config(data_dir, 6)
    config.train.max_consecutive_skipped = 3
    workdir = str(tmp_path / "nan")
    message = (
        "3 steps in a row were skipped (non-finite loss or update norm nan > "
        "train.max_update_norm=100) at step 3; last checkpoint: 2; lower "
        "optimizer.learning_rate or check the data"
    )
    with pytest.raises(FloatingPointError) as error:
        loop.train_and_evaluate(config, workdir)
    assert str(error.value) == message
    assert _steps(workdir) == [2]  # skipped updates: step 2 holds the initial, finite params
    # restore_run_variables refuses non-finite parameters (CheckpointError).
    _, variables = checkpoint.restore_run_variables(
        workdir, lcrnet.variable_shapes(loop.model_config(config))
    )
    assert checkpoint.all_finite(variables["params"])


def test_ctrl_c_saves_like_sigterm(data_dir, tmp_path, monkeypatch):
    counts = pipeline.people_counts

    def interrupted(*args, **kwargs):
        os.kill(os.getpid(), signal.SIGINT)
        return counts(*args, **kwargs)

    monkeypatch.setattr(pipeline, "people_counts", interrupted)
    workdir = str(tmp_path / "interrupted")
    result = loop.train_and_evaluate(tiny_config(data_dir, 6), workdir)
    assert result == {"step": 1, "stopped": True, "signal": signal.SIGINT}
    assert _steps(workdir) == [1]
