"""The evaluation's detector sharded over 8 simulated CPU devices equals one device (the
sharded one reading the RoIs in chunks, `LCRNetConfig.roi_chunk`)."""

import textwrap

from tests.test_train_step import run_on_8_cpu_devices

_SHARDED = textwrap.dedent(
    """
    import dataclasses, jax, numpy as np
    from lcrnet_jax import evaluation
    from lcrnet_jax.model import lcrnet
    from lcrnet_jax.postprocess import ppi
    from lcrnet_jax.train import step as step_lib
    from tests.test_train_step import tiny_batch, tiny_model
    assert len(jax.devices()) == 8
    model, variables, anchors = tiny_model()
    batch = tiny_batch(anchors, batch_size=8, seed=3)
    config = ppi.PPIConfig(person_threshold=0.0, max_people=4)
    chunked = lcrnet.LCRNet(dataclasses.replace(model.config, roi_chunk=6))  # 16 RoIs: 3 x 6
    results = []
    for mesh, net in ((None, model), (step_lib.make_mesh(), chunked)):
        detect = evaluation.make_detector(net, ppi_config=config, mesh=mesh)
        out = detect(variables, batch["image"], batch["image_size"])
        if mesh is not None:
            assert len(out["ppi"].poses2d.sharding.device_set) == 8
        results.append(jax.tree.map(np.asarray, out))
    # The variables split over a "model" axis, as a training state with model_parallel=2.
    mesh = step_lib.make_mesh(model_parallel=2)
    split = jax.device_put(
        variables, step_lib.state_shardings(variables, mesh, min_model_shard_size=1)
    )
    assert any(len(x.sharding.spec) for x in jax.tree.leaves(split))
    detect = evaluation.make_detector(chunked, ppi_config=config, mesh=mesh)
    results.append(jax.tree.map(np.asarray, detect(split, batch["image"], batch["image_size"])))
    assert results[0]["ppi"].valid.any()
    for other in results[1:]:
        jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-3),
                     results[0], other)
    print("sharded == single")
    """
)


def test_sharded_detector_on_8_devices_equals_the_single_device_one():
    assert "sharded == single" in run_on_8_cpu_devices(_SHARDED)
