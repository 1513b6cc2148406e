import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from lcrnet_jax.train import checkpoint, step


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


def test_empty_directory_says_so(tmp_path):
    ckpt = checkpoint.Checkpointer(tmp_path / "empty")
    with pytest.raises(FileNotFoundError, match="no checkpoint in"):
        ckpt.restore(jax.eval_shape(lambda: _state(0)))
