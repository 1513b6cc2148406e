import os
import socket
import subprocess
import sys
import textwrap

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from lcrnet_jax import anchors as anchors_lib
from lcrnet_jax.model import lcrnet
from lcrnet_jax.train import step as step_lib
from tests.test_anchors import _toy_poses

TARGETS = step_lib.TargetConfig(rpn_samples=32, roi_samples=16)


def tiny_model(dtype="float32"):
    config = lcrnet.small_config(
        dtype=dtype,
        num_classes=5,
        width=8,
        rpn_anchor_sizes=(32, 64),
        rpn_anchor_ratios=(1.0, 2.0),
        rpn_pre_nms_train=64,
        rpn_post_nms_train=32,
        rpn_pre_nms_test=64,
        rpn_post_nms_test=16,
        roi_size=4,
        fc_dim=32,
        refine_dim=32,
    )
    anchors = anchors_lib.fit_anchor_poses(
        _toy_poses()[0], 2, upper_body=True, normalize=False, seed=0
    )
    variables = lcrnet.init_variables(config, jax.random.key(0), anchors=anchors)
    return lcrnet.LCRNet(config), variables, anchors


def tiny_batch(anchors, batch_size=2, seed=0):
    """Images of 64 x 64 with one person each: an anchor pose placed in a random box."""
    rng = np.random.default_rng(seed)
    poses2d = np.zeros((batch_size, 2, 13, 2), np.float32)
    poses3d = np.zeros((batch_size, 2, 13, 3), np.float32)
    images = rng.integers(0, 60, size=(batch_size, 64, 64, 3)).astype(np.uint8)
    for b in range(batch_size):
        k = b % 2
        x1, y1 = rng.uniform(4, 24, size=2)
        box = np.array([x1, y1, x1 + 24, y1 + 36], np.float32)
        poses2d[b, 0] = anchors_lib.denormalize_in_box(anchors.pose2d[k], box)
        poses3d[b, 0] = anchors.pose3d[k]
        images[b, int(y1) : int(y1) + 36, int(x1) : int(x1) + 24] = 200
    return {
        "image": images,
        "image_size": np.full((batch_size, 2), 64, np.int32),
        "poses2d": poses2d,
        "poses3d": poses3d,
        "visible": np.ones((batch_size, 2, 13), bool),
        "has_3d": np.ones((batch_size, 2), bool),
        "person_valid": np.tile([True, False], (batch_size, 1)),
        "boxes": np.zeros((batch_size, 2, 4), np.float32),
        "ignore_boxes": np.zeros((batch_size, 2, 4), np.float32),
    }


def make_step(model, variables, mesh, kind="adamw", lr=1e-3):
    schedule = step_lib.make_learning_rate_schedule(lr, warmup_steps=5)
    mask = lcrnet.trainable_mask(variables["params"], model.config)
    tx = step_lib.make_optimizer(schedule, trainable=mask, kind=kind, weight_decay=0.0)
    state = step_lib.create_train_state(variables, tx)
    step = step_lib.make_train_step(model, tx, mesh, schedule=schedule, config=TARGETS)
    return state, step


@pytest.fixture(scope="module")
def setup():
    model, variables, anchors = tiny_model()
    mesh = step_lib.make_mesh(jax.devices()[:1])
    state, train_step = make_step(model, variables, mesh)
    return anchors, state, train_step


def test_training_lowers_the_loss_and_overfits_a_tiny_batch(setup):
    anchors, state, train_step = setup
    batch = tiny_batch(anchors)
    key = jax.random.key(1)
    state = jax.tree.map(jnp.copy, state)  # the step donates its input
    state, metrics = train_step(state, batch, key)
    first = float(metrics["loss"])
    assert set(metrics) >= {
        "loss",
        "rpn_cls",
        "rpn_box",
        "cls",
        "reg",
        "cls_accuracy",
        "foreground_fraction",
        "grad_norm",
        "learning_rate",
        "skipped",
    }
    # The loss of the same sampled targets (same step number) after one update.
    rewound = jax.tree.map(jnp.copy, state.replace(step=state.step - 1))
    _, again = train_step(rewound, batch, key)
    assert float(again["loss"]) < first, (metrics, again)
    for _ in range(40):
        state, metrics = train_step(state, batch, key)
    assert float(metrics["loss"]) < 0.5 * first
    assert int(state.step) == 41 and int(state.skipped) == 0


def test_each_step_number_draws_its_own_samples(setup):
    """The key is folded with the step: the same parameters, batch and key give the same
    loss at the same step number and another (other sampled anchors and RoIs) at the next.
    The logged rate is the one of the step's update (warm-up of 5 steps from 1e-3)."""
    anchors, state, train_step = setup
    batch, key = tiny_batch(anchors), jax.random.key(3)
    losses = []
    for number in (0, 1, 0):
        at = jax.tree.map(jnp.copy, state.replace(step=jnp.asarray(number, jnp.int32)))
        metrics = train_step(at, batch, key)[1]
        losses.append(float(metrics["loss"]))
        assert float(metrics["learning_rate"]) == pytest.approx(1e-3 * (number + 1) / 5)
    assert losses[0] == losses[2] != losses[1]


def test_a_nan_batch_is_skipped_and_counted(setup):
    anchors, state, train_step = setup
    state = jax.tree.map(jnp.copy, state)
    before = jax.tree.map(np.asarray, state.params)
    batch = tiny_batch(anchors)
    batch["poses2d"][0, 0, 3] = np.nan
    state, metrics = train_step(state, batch, jax.random.key(0))
    assert int(state.skipped) == 1 and float(metrics["skipped"]) == 1.0 and int(state.step) == 1
    jax.tree.map(np.testing.assert_array_equal, jax.tree.map(np.asarray, state.params), before)
    # The learning-rate schedule keeps to the step count: the next step's logged rate is
    # the one its update uses.
    counts = lambda: [  # noqa: E731
        int(x.count) for x in jax.tree.leaves(state.opt_state, is_leaf=_is_schedule)
        if _is_schedule(x)
    ]  # fmt: skip
    assert counts() and set(counts()) == {1}
    state, metrics = train_step(state, tiny_batch(anchors), jax.random.key(0))
    assert float(metrics["skipped"]) == 0.0 and set(counts()) == {2} == {int(state.step)}


@pytest.mark.slow
def test_bfloat16_compute_keeps_float32_losses_and_params_and_donates_the_state(setup):
    anchors, state32, step32 = setup
    model, variables, _ = tiny_model("bfloat16")
    state16, step16 = make_step(model, variables, step_lib.make_mesh(jax.devices()[:1]))
    batch, key = tiny_batch(anchors), jax.random.key(1)
    state32 = jax.tree.map(jnp.copy, state32)
    donated = jax.tree.leaves(state16.params)[0]
    new16, m16 = step16(state16, batch, key)
    _, m32 = step32(state32, batch, key)
    assert donated.is_deleted()  # the train state's buffers are donated to the step
    assert {x.dtype for x in jax.tree.leaves(new16.params)} == {jnp.dtype("float32")}
    for name in ("loss", "rpn_cls", "rpn_box", "cls", "reg"):
        assert m16[name].dtype == jnp.float32 and np.isfinite(float(m16[name])), name
        assert float(m16[name]) == pytest.approx(float(m32[name]), rel=0.05, abs=1e-3), name


def test_schedule_warms_up_and_decays():
    schedule = step_lib.make_learning_rate_schedule(1e-3, warmup_steps=10, decay_steps=(20, 30))
    np.testing.assert_allclose([schedule(s) for s in (0, 4, 9, 19, 20, 30)],
                               [1e-4, 5e-4, 1e-3, 1e-3, 1e-4, 1e-5], rtol=1e-6)  # fmt: skip
    with pytest.raises(ValueError, match="'sgd' or 'adamw'"):
        step_lib.make_optimizer(schedule, kind="adam")
    with pytest.raises(ValueError, match="learning rate must be >= 0, got -0.001"):
        step_lib.make_learning_rate_schedule(-1e-3)
    with pytest.raises(ValueError, match="warmup_steps must be >= 0, got -1"):
        step_lib.make_learning_rate_schedule(1e-3, warmup_steps=-1)
    for steps in [(30, 20), (20, 20), (-5,)]:  # (20, 20) would have decayed once, not twice
        with pytest.raises(ValueError, match=r"decay_steps must be increasing steps >= 0"):
            step_lib.make_learning_rate_schedule(1e-3, decay_steps=steps)


@pytest.mark.parametrize("kind", ["sgd", "adamw"])
def test_detectron_biases_take_twice_the_rate_and_no_decay(kind):
    """Rate 0.1, weight decay 0.5, every gradient 1 (no momentum): a weight moves by its
    rate (and decays), a bias by twice its rate without decay, a frozen leaf not at all."""
    params = {"fc": {"kernel": jnp.ones((2, 2)), "bias": jnp.ones(2)}, "bn": {"bias": jnp.ones(2)}}
    trainable = {"fc": {"kernel": True, "bias": True}, "bn": {"bias": False}}
    grads = jax.tree.map(jnp.ones_like, params)
    kwargs = dict(trainable=trainable, kind=kind, weight_decay=0.5, clip_norm=None)
    if kind == "sgd":
        kwargs["momentum"] = 0.0
    updates = {}
    for detectron in (False, True):
        tx = step_lib.make_optimizer(
            lambda step: 0.1, bias_lr_factor=2.0 if detectron else 1.0,
            bias_weight_decay=not detectron, **kwargs,
        )  # fmt: skip
        updates[detectron], _ = tx.update(grads, tx.init(params), params)
    # Adam's first step moves every leaf by its rate (times the sign); both decay as SGD.
    weight = -0.1 * (1.0 + 0.5)
    np.testing.assert_allclose(updates[True]["fc"]["kernel"], weight, rtol=1e-5)
    np.testing.assert_allclose(updates[False]["fc"]["bias"], weight, rtol=1e-5)
    np.testing.assert_allclose(updates[True]["fc"]["bias"], -0.2, rtol=1e-5)
    for detectron in (False, True):
        np.testing.assert_array_equal(updates[detectron]["bn"]["bias"], 0.0)


_SHARDED = textwrap.dedent(
    """
    import jax, numpy as np
    from lcrnet_jax.train import step as step_lib
    from tests.test_train_step import make_step, tiny_batch, tiny_model
    assert len(jax.devices()) == 8
    model, variables, anchors = tiny_model()
    batch = tiny_batch(anchors, batch_size=8, seed=3)
    results = []
    for devices in (jax.devices()[:1], jax.devices()):
        fresh = jax.tree.map(np.array, variables)  # the step donates the state's buffers
        state, train_step = make_step(model, fresh, step_lib.make_mesh(devices), kind="sgd")
        for _ in range(2):
            state, _ = train_step(state, step_lib.shard_batch(batch, step_lib.make_mesh(devices)),
                                  jax.random.key(5))
        results.append(jax.tree.map(np.asarray, state.params))
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=2e-4, atol=2e-5), *results)
    print("sharded == single")
    """
)


def run_on_8_cpu_devices(script: str, *args: str) -> str:
    """Runs `script` in a Python process with 8 simulated CPU devices, `args` its
    sys.argv[1:]; its stdout."""
    flags = f"{os.environ.get('XLA_FLAGS', '')} --xla_force_host_platform_device_count=8"
    env = dict(os.environ, XLA_FLAGS=flags.strip())
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    result = subprocess.run(
        [sys.executable, "-c", script, *args], cwd=root, env=env, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return result.stdout


def run_on_two_hosts(script: str, *args: str) -> list[str]:
    """Runs `script` in two jax.distributed processes on CPU (gloo), the hosts of a
    multi-host run; in it `process` is the host's index and `args` are sys.argv[2:].
    Returns each host's stdout."""
    with socket.socket() as free:
        free.bind(("localhost", 0))
        port = free.getsockname()[1]
    prologue = textwrap.dedent(
        f"""
        import sys
        import jax
        jax.config.update("jax_cpu_collectives_implementation", "gloo")
        process = int(sys.argv[1])
        jax.distributed.initialize("localhost:{port}", num_processes=2, process_id=process)
        """
    )
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    hosts = [
        subprocess.Popen(
            [sys.executable, "-c", prologue + textwrap.dedent(script), str(process), *args],
            cwd=root,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for process in (0, 1)
    ]
    outputs = [host.communicate(timeout=240) for host in hosts]
    for host, (_, err) in zip(hosts, outputs, strict=True):
        assert host.returncode == 0, err[-3000:]
    return [out for out, _ in outputs]


def test_sharded_step_on_8_devices_equals_the_single_device_step():
    assert "sharded == single" in run_on_8_cpu_devices(_SHARDED)


_MESH = """
import numpy as np
from lcrnet_jax.train import step
mesh = step.make_mesh(model_parallel=2)
print(dict(mesh.shape))
state = {"odd": np.zeros((1024, 1025)), "even": np.zeros((1024, 1024)), "small": np.zeros(4)}
print({name: tuple(s.spec) for name, s in sorted(step.state_shardings(state, mesh).items())})
"""


def test_a_model_axis_groups_neighbouring_devices_and_splits_only_what_divides():
    """8 devices with model_parallel=2: 4 data rows of 2 model devices; a large tensor is
    split over "model" along its last axis only where that axis divides by 2."""
    shape, specs = run_on_8_cpu_devices(_MESH).strip().splitlines()[-2:]
    assert shape == "{'data': 4, 'model': 2}"
    assert specs == "{'even': (None, 'model'), 'odd': (), 'small': ()}"


def test_zero_learning_rate_and_fractions_are_allowed():
    """The bounds are inclusive: a rate of 0 (frozen run) and sampling fractions of 0."""
    schedule = step_lib.make_learning_rate_schedule(0.0, warmup_steps=2)
    assert float(schedule(5)) == 0.0
    step_lib.TargetConfig(rpn_positive_fraction=0.0, roi_foreground_fraction=0.0)
    step_lib.TargetConfig(rpn_positive_fraction=1.0, roi_foreground_fraction=1.0)


def test_a_model_with_batch_statistics_is_refused():
    """The step never updates BatchNorm's running statistics: norm='batch' is refused."""
    model = lcrnet.LCRNet(lcrnet.small_config(norm="batch"))
    mesh = step_lib.make_mesh(jax.devices()[:1])
    with pytest.raises(ValueError, match="does not update BatchNorm statistics: use norm="):
        step_lib.make_train_step(model, optax.sgd(0.1), mesh)


def test_a_huge_update_is_skipped_and_the_state_kept():
    model, variables, anchors = tiny_model()
    mesh = step_lib.make_mesh(jax.devices()[:1])
    schedule = step_lib.make_learning_rate_schedule(1e6)
    tx = step_lib.make_optimizer(schedule, kind="adamw", weight_decay=0.0)
    state = step_lib.create_train_state(variables, tx)
    train_step = step_lib.make_train_step(
        model, tx, mesh, schedule=schedule, config=TARGETS, max_update_norm=100.0
    )
    before = jax.tree.map(np.asarray, (state.params, state.opt_state))
    state, metrics = train_step(state, tiny_batch(anchors), jax.random.key(0))
    assert float(metrics["update_norm"]) > 100.0 and float(metrics["skipped"]) == 1.0
    assert int(state.skipped) == 1 and int(state.step) == 1
    after = jax.tree.map(np.asarray, (state.params, state.opt_state))
    # Everything kept but the schedule's step count, which follows the step.
    schedules = [x for x in jax.tree.leaves(after, is_leaf=_is_schedule) if _is_schedule(x)]
    assert schedules and {int(x.count) for x in schedules} == {1}
    jax.tree.map(np.testing.assert_array_equal, _without_counts(after), _without_counts(before))


def _is_schedule(x):
    return isinstance(x, optax.ScaleByScheduleState)


def _without_counts(tree):
    return jax.tree.map(lambda x: None if _is_schedule(x) else x, tree, is_leaf=_is_schedule)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(box_extent="all"), "box_extent"),
        (dict(anchor_border=-0.5), "anchor_border"),
        (dict(hidden_2d_weight=float("nan")), "hidden_2d_weight"),
        (dict(roi_foreground_fraction=1.5), r"roi_foreground_fraction must be in \[0, 1\]"),
        (dict(rpn_positive_fraction=-0.1), "rpn_positive_fraction must be in"),
    ],
)
def test_bad_target_config_raises(kwargs, match):
    with pytest.raises(ValueError, match=match):
        step_lib.TargetConfig(**kwargs)
