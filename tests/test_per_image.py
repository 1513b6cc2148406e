"""ops.per_image: over a data-parallel mesh each device pools its own images' RoIs and runs
its own images' NMS and PPI; the compiled programs show it (no feature map gathered, no
device sync inside a loop)."""

import json
import re
import textwrap

import jax.numpy as jnp
import numpy as np

from lcrnet_jax import ops
from tests.test_train_step import run_on_8_cpu_devices


def test_without_a_mesh_the_function_is_called_as_it_is():
    images = jnp.arange(6.0).reshape(3, 2)
    out = ops.per_image(lambda x, s: x * s, images, shared=(jnp.float32(2),))
    np.testing.assert_array_equal(out, images * 2)
    assert ops.under_mesh(len, None) is len


# The tiny model (RoIAlign by gathers) over 2 of the 8 simulated devices, 2 images each:
# the training step's and the evaluation detector's optimized HLO, written to argv[1].
_COMPILE = textwrap.dedent(
    """
    import dataclasses, json, pathlib, sys
    import jax, numpy as np
    from lcrnet_jax import evaluation
    from lcrnet_jax.model import lcrnet
    from lcrnet_jax.postprocess import ppi
    from lcrnet_jax.train import step as step_lib
    from tests.test_train_step import make_step, tiny_batch, tiny_model
    out = pathlib.Path(sys.argv[1])
    model, variables, anchors = tiny_model()
    # RoIAlign's gathers (the small preset's einsum has a batch axis XLA splits); the
    # detector's head reads its 16 RoIs an image in a loop over 3 chunks.
    model = lcrnet.LCRNet(dataclasses.replace(model.config, roi_method="gather", roi_chunk=6))
    mesh = step_lib.make_mesh(jax.devices()[:2])
    batch = step_lib.shard_batch(tiny_batch(anchors, batch_size=4), mesh)
    state, train_step = make_step(model, variables, mesh, kind="sgd")
    compiled = train_step.lower(state, batch, jax.random.key(0)).compile()
    (out / "train.hlo").write_text(compiled.as_text())
    config = ppi.PPIConfig(person_threshold=0.0, max_people=4)
    detect = evaluation.make_detector(model, ppi_config=config, mesh=mesh)
    compiled = detect.lower(variables, batch["image"], batch["image_size"]).compile()
    (out / "detect.hlo").write_text(compiled.as_text())
    features = jax.eval_shape(
        lambda v, x: model.apply(v, x, method="features"), variables, batch["image"]
    )
    (out / "features.json").write_text(json.dumps(features.shape))
    """
)
_COLLECTIVE = re.compile(
    r"\b(all-reduce|all-gather|reduce-scatter|all-to-all|collective-permute)(-start)?\("
)
_CALLED = re.compile(
    r"(?:condition|body|calls|to_apply|true_computation|false_computation)=%?([\w.\-]+)"
    r"|branch_computations=\{([^}]*)\}"
)


def _computations(hlo: str) -> dict[str, list[str]]:
    """{computation name: its instruction lines, metadata cut off} of an HLO module's text."""
    bodies, name = {}, None
    for line in hlo.splitlines():
        header = re.match(r"^(?:ENTRY )?%?([\w.\-]+) .*\{$", line)
        if header:
            name = header.group(1)
            bodies[name] = []
        elif name is not None:
            bodies[name].append(line.split(", metadata=")[0].strip())
    return bodies


def _called(line: str) -> list[str]:
    """The computations an instruction calls (a while's condition and body, ...)."""
    return [c.strip().lstrip("%") for pair in _CALLED.findall(line) for part in pair
            for c in part.split(",") if c.strip()]  # fmt: skip


def _collectives_in_loops(bodies: dict[str, list[str]]) -> tuple[int, list[str]]:
    """(number of computations run by while loops, the collectives among their lines)."""
    todo = [c for lines in bodies.values() for line in lines if " while(" in line
            for c in _called(line)]  # fmt: skip
    seen = set()
    while todo:
        name = todo.pop()
        if name not in seen and name in bodies:
            seen.add(name)
            todo.extend(c for line in bodies[name] for c in _called(line))
    return len(seen), [line for c in seen for line in bodies[c] if _COLLECTIVE.search(line)]


def _collectives_of_size(bodies: dict[str, list[str]], size: int) -> list[str]:
    """The collectives with an array of `size` elements among their operands or results."""
    return [
        line for lines in bodies.values() for line in lines if _COLLECTIVE.search(line)
        and any(np.prod([int(d) for d in dims.split(",") if d], dtype=int) == size
                for dims in re.findall(r"\b[a-z]\w*\[([\d,]*)\]", line))
    ]  # fmt: skip


def test_over_a_data_mesh_no_feature_map_is_gathered_and_no_loop_syncs(tmp_path):
    run_on_8_cpu_devices(_COMPILE, str(tmp_path))
    whole_map = int(np.prod(json.loads((tmp_path / "features.json").read_text())))
    for program in ("train", "detect"):
        bodies = _computations((tmp_path / f"{program}.hlo").read_text())
        loops, synced = _collectives_in_loops(bodies)
        assert loops, f"{program}: no while loop (its NMS loops)"
        assert not synced, f"{program}: the devices sync inside a loop: {synced[:3]}"
        gathered = _collectives_of_size(bodies, whole_map)
        assert not gathered, f"{program}: the whole batch's feature map moves: {gathered[:3]}"
