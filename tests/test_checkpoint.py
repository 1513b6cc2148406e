import errno
import json
import shutil

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from lcrnet_jax.train import checkpoint, step
from tests.test_train_step import run_on_two_hosts


def _state(seed):
    variables = {
        "params": {"w": jnp.full((3, 2), float(seed)), "b": jnp.arange(2.0)},
        "anchor_poses": {"pose3d": jnp.ones((4, 13, 3)) * seed},
    }
    return step.create_train_state(variables, optax.sgd(0.1, momentum=0.9))


def test_save_restore_round_trip_and_step_errors(tmp_path):
    ckpt = checkpoint.Checkpointer(tmp_path / "ckpt", max_to_keep=2)
    for s in (1, 2, 3):
        state = _state(s).replace(step=jnp.asarray(s, jnp.int32))
        ckpt.save(s, state)
    ckpt.wait()
    assert ckpt.all_steps() == [2, 3]
    abstract = jax.eval_shape(lambda: _state(0))
    restored_step, restored = ckpt.restore(abstract)
    assert restored_step == 3 and int(restored.step) == 3
    np.testing.assert_array_equal(restored.params["w"], np.full((3, 2), 3.0))
    np.testing.assert_array_equal(restored.constants["anchor_poses"]["pose3d"], 3.0)
    with pytest.raises(FileNotFoundError, match=r"available steps: \[2, 3\]"):
        ckpt.restore(abstract, step=1)
    variables_step, variables = ckpt.restore_variables(
        jax.eval_shape(lambda: _state(0).variables), step=2
    )
    assert variables_step == 2 and set(variables) == {"params", "anchor_poses"}
    np.testing.assert_array_equal(variables["params"]["w"], np.full((3, 2), 2.0))
    ckpt.close()


def test_a_step_removed_while_being_read_says_so(tmp_path, monkeypatch):
    # A training's max_to_keep deleting the step an evaluation reads: not "damaged".
    ckpt = checkpoint.Checkpointer(tmp_path / "ckpt")
    for s in (1, 2):
        ckpt.save(s, _state(s))
    ckpt.wait()

    def rotated(step, args):
        checkpoint.shutil.rmtree(tmp_path / "ckpt" / str(step))
        raise ValueError("NOT_FOUND: Error reading local file: Truncated Zstd-compressed strea")

    monkeypatch.setattr(ckpt._manager, "restore", rotated)
    message = (
        r"step 1 was removed while being read \(a training keeps only its latest steps\); "
        r"steps now: \[2\]"
    )
    with pytest.raises(FileNotFoundError, match=message):
        ckpt.restore_variables(jax.eval_shape(lambda: _state(0).variables), step=1)
    ckpt.close()


def test_opening_a_live_run_survives_a_step_removed_during_the_scan(tmp_path, monkeypatch):
    ckpt = checkpoint.Checkpointer(tmp_path / "ckpt")
    ckpt.save(1, _state(1))
    ckpt.wait()
    ckpt.close()
    manager, calls = checkpoint.ocp.CheckpointManager, []

    def scanned_while_rotated(*args, **kwargs):  # orbax's error as a training rotates
        calls.append(1)
        if len(calls) == 1:
            raise NotADirectoryError(f"Path is not a directory: {tmp_path / 'ckpt' / '0'}")
        return manager(*args, **kwargs)

    monkeypatch.setattr(checkpoint.ocp, "CheckpointManager", scanned_while_rotated)
    with checkpoint.Checkpointer(tmp_path / "ckpt") as reopened:
        assert reopened.all_steps() == [1] and len(calls) == 2


def test_empty_directory_says_so(tmp_path):
    ckpt = checkpoint.Checkpointer(tmp_path / "empty")
    with pytest.raises(FileNotFoundError, match="no checkpoint in"):
        ckpt.restore(jax.eval_shape(lambda: _state(0)))


def _three_steps(tmp_path, *, nan_at=None):
    ckpt = checkpoint.Checkpointer(tmp_path / "checkpoints", max_to_keep=None)
    for s in (1, 2, 3):
        state = _state(s)
        if s == nan_at:
            state = state.replace(params={**state.params, "w": state.params["w"] * jnp.nan})
        ckpt.save(s, state)
    ckpt.wait()
    return ckpt


def _largest_file(folder):
    files = [p for p in folder.rglob("*") if p.is_file()]
    return max(files, key=lambda p: p.stat().st_size)


def test_a_truncated_latest_step_is_set_aside_and_training_falls_back(tmp_path, caplog):
    ckpt = _three_steps(tmp_path)
    array_file = _largest_file(tmp_path / "checkpoints" / "3" / "state")
    array_file.write_bytes(array_file.read_bytes()[:10])
    restored_step, restored = ckpt.restore(jax.eval_shape(lambda: _state(0)))
    assert restored_step == 2
    np.testing.assert_array_equal(restored.params["w"], np.full((3, 2), 2.0))
    assert ckpt.all_steps() == [1, 2]
    assert (tmp_path / "checkpoints_damaged" / "3").is_dir()
    (warning,) = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert "step 3 cannot be read" in warning and "\n" not in warning
    ckpt.close()


def test_a_step_damaged_again_after_a_resume_is_set_aside_again(tmp_path):
    """The resumed run writes the set-aside step anew; damaged again (a disk that keeps
    failing), it replaces the older copy in checkpoints_damaged/."""
    ckpt = _three_steps(tmp_path)
    abstract = jax.eval_shape(lambda: _state(0))
    for attempt in (1, 2):
        array_file = _largest_file(tmp_path / "checkpoints" / "3" / "state")
        array_file.write_bytes(array_file.read_bytes()[:10])
        assert ckpt.restore(abstract)[0] == 2
        assert ckpt.all_steps() == [1, 2]
        ckpt.save(3, _state(30 + attempt))  # the resumed run reaches step 3 again
        ckpt.wait()
    assert ckpt.restore(abstract)[0] == 3
    assert [p.name for p in (tmp_path / "checkpoints_damaged").iterdir()] == ["3"]
    ckpt.close()


def test_a_damaged_step_asked_for_is_refused_and_left_in_place(tmp_path):
    """restore(step=3) of a damaged step 3 raises naming it; only the newest-first
    search of a resume sets damaged steps aside."""
    ckpt = _three_steps(tmp_path)
    array_file = _largest_file(tmp_path / "checkpoints" / "3" / "state")
    array_file.write_bytes(array_file.read_bytes()[:10])
    with pytest.raises(checkpoint.CheckpointError, match=r"^checkpoint .* step 3 cannot be read"):
        ckpt.restore(jax.eval_shape(lambda: _state(0)), step=3)
    assert ckpt.all_steps() == [1, 2, 3]
    assert not (tmp_path / "checkpoints_damaged").exists()
    ckpt.close()


def test_a_truncated_array_file_is_named_in_one_short_line(tmp_path, caplog):
    ckpt = checkpoint.Checkpointer(tmp_path / "checkpoints", max_to_keep=None)
    big = {"params": {"w": jnp.asarray(np.random.default_rng(0).normal(size=(256, 256)))}}
    for s in (1, 2):
        ckpt.save(s, step.create_train_state(big, optax.sgd(0.1)))
    ckpt.wait()
    array_file = _largest_file(tmp_path / "checkpoints" / "2" / "state")
    assert "ocdbt" in str(array_file)  # the arrays, not the metadata
    array_file.write_bytes(array_file.read_bytes()[:1000])
    abstract = jax.eval_shape(lambda: step.create_train_state(big, optax.sgd(0.1)))
    assert ckpt.restore(abstract)[0] == 1
    (warning,) = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert "step 2 cannot be read (" in warning and "\n" not in warning
    ckpt.close()
    # orbax's read errors end in a dump of the TensorStore spec: cut.
    error = Exception(
        "Encountered error while reading array index: (slice(0, 13, 1),). See full "
        "TensorStore details: <bound method spec of TensorStore({\n  'base': {...}"
    )
    assert checkpoint._first_line(error) == (
        "Exception: Encountered error while reading array index: (slice(0, 13, 1),)."
    )


@pytest.mark.parametrize("damaged", ["state/d", "state/ocdbt.process_0/d"])
def test_a_failed_read_prints_no_closed_event_loop_tracebacks(tmp_path, monkeypatch, damaged):
    # With many arrays, tensorstore's reads pending when one fails call back into
    # orbax's closed asyncio loop, from other threads, before the error reaches us.
    printed = []
    monkeypatch.setattr("sys.unraisablehook", lambda unraisable: printed.append(unraisable))
    rng = np.random.default_rng(0)
    variables = {"params": {f"w{i}": jnp.asarray(rng.normal(size=1000)) for i in range(100)}}
    ckpt = checkpoint.Checkpointer(tmp_path / "checkpoints", max_to_keep=None)
    for s in (1, 2):
        ckpt.save(s, step.create_train_state(variables, optax.sgd(0.1)))
    ckpt.wait()
    for data_file in (tmp_path / "checkpoints" / "2" / damaged).iterdir():
        data_file.write_bytes(b"")
    with pytest.raises(checkpoint.CheckpointError, match="step 2 cannot be read"):
        ckpt.restore_variables(jax.eval_shape(lambda: variables))
    ckpt.close()
    assert [str(u.exc_value) for u in printed] == []


def test_a_step_without_metadata_is_refused_naming_the_good_steps(tmp_path):
    ckpt = _three_steps(tmp_path)
    (tmp_path / "checkpoints" / "3" / "state" / "_METADATA").unlink()
    abstract = jax.eval_shape(lambda: _state(0).variables)
    with pytest.raises(checkpoint.CheckpointError) as error:
        ckpt.restore_variables(abstract)
    assert str(error.value) == (
        f"checkpoint {tmp_path / 'checkpoints'} step 3: state/_METADATA is missing; steps that "
        "restore: [1, 2]; pass --step=2"
    )
    ckpt.close()


def test_non_finite_parameters_are_refused(tmp_path):
    ckpt = _three_steps(tmp_path, nan_at=3)
    with pytest.raises(checkpoint.CheckpointError, match=r"step 3: non-finite parameters; steps"):
        ckpt.restore_variables(jax.eval_shape(lambda: _state(0).variables))
    assert not checkpoint.all_finite({"a": jnp.array([1.0, jnp.inf])})
    ckpt.close()


def test_another_models_run_is_refused_naming_an_absent_array(tmp_path):
    ckpt = _three_steps(tmp_path)
    other = jax.eval_shape(lambda: _state(0).variables)
    other["params"]["head"] = jax.ShapeDtypeStruct((5,), jnp.float32)
    with pytest.raises(checkpoint.ModelMismatchError) as error:
        ckpt.restore_variables(other)
    assert str(error.value) == (
        f"checkpoint {tmp_path / 'checkpoints'} step 3 does not fit the config's model: 1 of "
        "the config's arrays are not in the checkpoint, the first params.head: the run of "
        "another config; pass that run's --config"
    )
    ckpt.close()


def _wider_state():
    variables = {
        "params": {"w": jnp.zeros((3, 4)), "b": jnp.arange(2.0)},
        "anchor_poses": {"pose3d": jnp.ones((4, 13, 3))},
    }
    return step.create_train_state(variables, optax.sgd(0.1, momentum=0.9))


def test_resuming_with_another_config_is_refused_and_sets_nothing_aside(tmp_path):
    ckpt = _three_steps(tmp_path)
    with pytest.raises(checkpoint.ModelMismatchError) as error:
        ckpt.restore(jax.eval_shape(_wider_state))
    assert str(error.value) == (
        f"checkpoint {tmp_path / 'checkpoints'} step 3 does not fit the config's model: "
        "params.w is (3, 2) in the checkpoint and (3, 4) in the config: the run of another "
        "config; resume it with its own config, or train this one in a new --workdir"
    )
    narrower = jax.eval_shape(lambda: _state(0))
    narrower = narrower.replace(params={"w": narrower.params["w"]})
    with pytest.raises(checkpoint.ModelMismatchError, match="holds 1 arrays the config's lacks"):
        ckpt.restore(narrower)
    assert ckpt.all_steps() == [1, 2, 3]
    assert not (tmp_path / "checkpoints_damaged").exists()
    assert ckpt.restore(jax.eval_shape(lambda: _state(0)))[0] == 3  # the right config resumes
    ckpt.close()


class _Position:
    """A stand-in for a grain iterator: its position saved under the name `kind` (grain's
    iterators with and without worker processes save unlike states)."""

    def __init__(self, kind, index=0):
        self.kind, self.index = kind, index

    def get_state(self):
        return json.dumps({self.kind: self.index}).encode()

    def set_state(self, state):
        self.index = json.loads(state)[self.kind]

    def start_prefetch(self):
        pass


def test_a_data_position_of_another_input_pipeline_is_refused_and_sets_nothing_aside(tmp_path):
    ckpt = checkpoint.Checkpointer(tmp_path / "checkpoints", max_to_keep=None)
    for s in (1, 2):
        ckpt.save(s, _state(s), _Position("next_index", 10 * s))
    ckpt.wait()
    abstract = jax.eval_shape(lambda: _state(0))
    with pytest.raises(checkpoint.DataMismatchError, match=r"step 2: its data-iterator position "
                       r"was saved by another input pipeline .*data.num_workers"):  # fmt: skip
        ckpt.restore(abstract, data_iterator=_Position("workers_state"))
    assert ckpt.all_steps() == [1, 2] and not (tmp_path / "checkpoints_damaged").exists()
    position = _Position("next_index")
    assert ckpt.restore(abstract, data_iterator=position)[0] == 2 and position.index == 20
    # The position of 2 hosts (grain writes a file per host), resumed on 1: refused; every
    # step was set aside as damaged, and training could not resume at all.
    for s in (1, 2):
        data = tmp_path / "checkpoints" / str(s) / "data"
        (data / "process_0-of-1.json").rename(data / "process_0-of-2.json")
        shutil.copy(data / "process_0-of-2.json", data / "process_1-of-2.json")
    with pytest.raises(checkpoint.DataMismatchError, match=r"step 2: its data-iterator position "
                       r"was saved by 2 host\(s\), this run has 1 \(resume on 2\)"):  # fmt: skip
        ckpt.restore(abstract, data_iterator=_Position("next_index"))
    assert ckpt.all_steps() == [1, 2] and not (tmp_path / "checkpoints_damaged").exists()
    for s in (1, 2):
        data = tmp_path / "checkpoints" / str(s) / "data"
        (data / "process_1-of-2.json").unlink()
        (data / "process_0-of-2.json").rename(data / "process_0-of-1.json")
    # A position file that does not read is damage: the step is set aside.
    (tmp_path / "checkpoints" / "2" / "data" / "process_0-of-1.json").write_text('{"next_in')
    position = _Position("next_index")
    assert ckpt.restore(abstract, data_iterator=position)[0] == 1 and position.index == 10
    assert ckpt.all_steps() == [1] and (tmp_path / "checkpoints_damaged" / "2").is_dir()
    ckpt.close()


def _step_folders(directory):
    return sorted(p.name for p in directory.iterdir())


def test_a_disk_too_full_for_the_next_checkpoint_stops_before_writing(tmp_path, monkeypatch):
    ckpt = checkpoint.Checkpointer(tmp_path / "ckpt")
    ckpt.save(1, _state(1))
    ckpt.wait()
    size = sum(f.stat().st_size for f in (tmp_path / "ckpt" / "1").rglob("*") if f.is_file())
    usage = checkpoint.shutil.disk_usage(tmp_path)
    monkeypatch.setattr(checkpoint.shutil, "disk_usage", lambda path: usage._replace(free=size - 1))
    with pytest.raises(OSError, match=r"for a checkpoint \(checkpoint 2 needs about") as caught:
        ckpt.save(2, _state(2))
    assert caught.value.errno == errno.ENOSPC
    assert str(caught.value).endswith(
        "saved steps: [1]; free some space and run the same command to resume from step 1"
    )
    assert _step_folders(tmp_path / "ckpt") == ["1"]
    ckpt.close()


def test_a_write_that_fills_the_disk_leaves_no_partial_step(tmp_path, monkeypatch):
    ckpt = checkpoint.Checkpointer(tmp_path / "ckpt")
    partial = tmp_path / "ckpt" / "1.orbax-checkpoint-tmp" / "state.orbax-checkpoint-tmp"

    def fill_the_disk(step, args, force):  # how tensorstore reports it, after a partial write
        partial.mkdir(parents=True)
        (partial / "d").write_bytes(b"x" * 100)
        raise ValueError(
            "RESOURCE_EXHAUSTED: Error writing ... Failed to write 10231808 bytes to file 13: "
            "No space left on device [os_error_code='28']"
        )

    monkeypatch.setattr(ckpt._manager, "save", fill_the_disk)
    with pytest.raises(OSError, match=r"\(a write failed\); saved steps: \[\]; .* start again"):
        ckpt.save(1, _state(1))
    assert _step_folders(tmp_path / "ckpt") == []
    monkeypatch.undo()
    ckpt.save(1, _state(1))  # with space again, the same step saves
    ckpt.wait()
    assert ckpt.all_steps() == [1]
    ckpt.close()


def test_a_full_disk_reported_without_an_error_code_is_still_a_full_disk(tmp_path, monkeypatch):
    """A write error that only says "No space left on device" in its text (no errno, no
    os_error_code) stops the run as a full disk, not as an unexplained error."""
    ckpt = checkpoint.Checkpointer(tmp_path / "ckpt")

    def fill_the_disk(step, args, force):
        raise RuntimeError("Failed to write chunk: No space left on device")

    monkeypatch.setattr(ckpt._manager, "save", fill_the_disk)
    with pytest.raises(OSError, match=r"no space left on the device of .* saved steps: \[\]"):
        ckpt.save(1, _state(1))
    monkeypatch.undo()
    ckpt.close()


def test_any_failed_write_leaves_no_partial_step_and_names_its_cause(tmp_path, monkeypatch):
    ckpt = checkpoint.Checkpointer(tmp_path / "ckpt")
    ckpt.save(1, _state(1))
    ckpt.wait()
    partial = tmp_path / "ckpt" / "2.orbax-checkpoint-tmp" / "state.orbax-checkpoint-tmp"

    def too_large(step, args, force):  # tensorstore's report under `ulimit -f`
        partial.mkdir(parents=True)
        raise ValueError(
            'OUT_OF_RANGE: Error writing "params.a/0" in OCDBT database at local file '
            f"\"{partial}/d/x\": File too large [os_error_code='27']"
        )

    monkeypatch.setattr(ckpt._manager, "save", too_large)
    with pytest.raises(OSError) as caught:
        ckpt.save(2, _state(2))
    assert caught.value.errno == errno.EFBIG
    assert str(caught.value) == (
        f"[Errno 27] a checkpoint could not be written in {tmp_path / 'ckpt'}: File too "
        "large; saved steps: [1]; fix the cause and run the same command to resume from step 1"
    )
    assert _step_folders(tmp_path / "ckpt") == ["1"]

    def a_bug(step, args, force):  # not a write failure: raised as it is
        raise TypeError("unexpected argument")

    monkeypatch.setattr(ckpt._manager, "save", a_bug)
    with pytest.raises(TypeError, match="unexpected argument"):
        ckpt.save(2, _state(2))
    ckpt.close()


def test_a_folder_inside_a_run_points_to_the_run(tmp_path):
    run = tmp_path / "run"
    (run / "checkpoints" / "40").mkdir(parents=True)
    (tmp_path / "export").mkdir()
    (tmp_path / "export" / "model_128x128.jaxexport").write_bytes(b"")
    assert checkpoint.run_checkpoints(run) == str(run / "checkpoints")
    hints = {
        run / "checkpoints": f"it is the checkpoints/ folder of run {run}, pass that",
        run / "checkpoints" / "40": f"it is step 40 of run {run}, pass that (with --step=40)",
        tmp_path / "export": "an exported model (lcrnet_jax.predict.exported.ExportedModel)",
        tmp_path / "none": "(no checkpoints/)",
    }
    for folder, hint in hints.items():
        with pytest.raises(FileNotFoundError) as caught:
            checkpoint.run_checkpoints(folder)
        assert str(caught.value).startswith(f"{folder} holds no training run")
        assert str(caught.value).endswith(hint)


def test_two_hosts_set_a_damaged_step_aside_once(tmp_path):
    """Both hosts of a multi-host run find step 5 damaged: process 0 moves it, whole,
    while the other waits (each used to move it: one failed and removed the other's)."""
    (tmp_path / "checkpoints" / "5").mkdir(parents=True)
    (tmp_path / "checkpoints" / "5" / "array").write_text("damaged")
    script = """
        from lcrnet_jax.train import checkpoint
        ckpt = checkpoint.Checkpointer(sys.argv[2])
        print(ckpt._set_aside(5))
        ckpt.close()
    """
    outputs = run_on_two_hosts(script, str(tmp_path / "checkpoints"))
    aside = tmp_path / "checkpoints_damaged" / "5"
    assert [out.strip().splitlines()[-1] for out in outputs] == [str(aside)] * 2
    assert (aside / "array").read_text() == "damaged"
    assert not (tmp_path / "checkpoints" / "5").exists()
