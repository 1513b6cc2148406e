"""ops.per_image: over a data-parallel mesh each device pools its own images' RoIs and runs
its own images' NMS; the compiled training step shows it (no feature map gathered, no
device sync inside a loop)."""

import json
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


# The tiny model's training step (RoIAlign by gathers) over 2 of the 8 simulated devices
# (2 images each), compiled; the HLO's collectives are read per computation.
_COMPILED_STEP = textwrap.dedent(
    """
    import dataclasses, json, re
    import jax, numpy as np
    from lcrnet_jax.model import lcrnet
    from lcrnet_jax.train import step as step_lib
    from tests.test_train_step import make_step, tiny_batch, tiny_model
    model, variables, anchors = tiny_model()
    # RoIAlign's gathers (the small preset's einsum has a batch axis XLA splits).
    model = lcrnet.LCRNet(dataclasses.replace(model.config, roi_method="gather"))
    mesh = step_lib.make_mesh(jax.devices()[:2])
    batch = step_lib.shard_batch(tiny_batch(anchors, batch_size=4), mesh)
    state, train_step = make_step(model, variables, mesh, kind="sgd")
    hlo = train_step.lower(state, batch, jax.random.key(0)).compile().as_text()
    features = jax.eval_shape(
        lambda v, x: model.apply(v, x, method="features"), variables, batch["image"]
    )
    whole_map = int(np.prod(features.shape))  # the whole batch's feature map (B, Hf, Wf, C)

    collective = re.compile(r"\\b(all-reduce|all-gather|reduce-scatter|all-to-all|"
                            r"collective-permute)(-start)?\\(")
    bodies, name = {}, None
    for line in hlo.splitlines():
        header = re.match(r"^(?:ENTRY )?%?([\\w.\\-]+) .*\\{$", line)
        if header:
            name = header.group(1)
            bodies[name] = []
        elif name is not None:
            bodies[name].append(line.split(", metadata=")[0])
    called = lambda line: re.findall(
        r"(?:condition|body|calls|to_apply|true_computation|false_computation)=%?([\\w.\\-]+)"
        r"|branch_computations=\\{([^}]*)\\}", line)
    loops = [c for lines in bodies.values() for line in lines if " while(" in line
             for pair in called(line) for c in pair if c]
    seen = set()
    while loops:
        c = loops.pop().strip().lstrip("%")
        if c in seen or c not in bodies:
            continue
        seen.add(c)
        loops.extend(x.strip().lstrip("%") for line in bodies[c] for pair in called(line)
                     for part in pair for x in part.split(",") if x.strip())
    in_loops = [line.strip() for c in seen for line in bodies[c] if collective.search(line)]
    whole = [
        line.strip() for lines in bodies.values() for line in lines if collective.search(line)
        and any(int(np.prod([int(d) for d in dims.split(",") if d])) == whole_map
                for dims in re.findall(r"[a-z]\\w*\\[([\\d,]*)\\]", line))
    ]
    print(json.dumps({"loop_computations": len(seen), "in_loops": in_loops, "whole_map": whole}))
    """
)


def test_the_data_parallel_step_gathers_no_feature_map_and_syncs_in_no_loop():
    found = json.loads(run_on_8_cpu_devices(_COMPILED_STEP).splitlines()[-1])
    assert found["loop_computations"], "no while loop in the step (its NMS loops)"
    assert not found["in_loops"], "devices sync inside a loop (the NMS)"
    assert not found["whole_map"], "the whole batch's feature map is gathered or reduced"
