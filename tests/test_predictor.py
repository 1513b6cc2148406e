import importlib.util
import json
import logging
import os

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from PIL import Image

from experiments.configs import synthetic_tiny
from lcrnet_jax import geometry, predict, skeleton
from lcrnet_jax.data import resize
from lcrnet_jax.model import lcrnet, weights
from lcrnet_jax.postprocess import camera as camera_lib
from lcrnet_jax.postprocess import ppi as ppi_lib
from lcrnet_jax.predict import predictor as predictor_lib
from lcrnet_jax.train import checkpoint, loop
from lcrnet_jax.train import step as step_lib
from tests.test_visualize import standing_pose3d

LCR13 = skeleton.get_joint_set("lcr13")
SHORT, LONG = 64, 96  # tiny network sizes: buckets (64, 64), (64, 96), (96, 64)
HAS_AV = importlib.util.find_spec("av") is not None


def tiny_config() -> lcrnet.LCRNetConfig:
    return lcrnet.small_config(
        rpn_pre_nms_test=100,
        rpn_post_nms_test=16,
        joint_refinement=1,
        joint_classes=3,
        joint_repeats=2,
        joint_polish=1,
        flip_test=True,
        proposal_border=0.5,
    )


def random_variables(config: lcrnet.LCRNetConfig) -> dict:
    """Random variables of the model, compiling nothing."""
    return weights.random_weights(lcrnet.variable_shapes(config))


@pytest.fixture(scope="module")
def variables():
    return random_variables(tiny_config())


@pytest.fixture(scope="module")
def predictor(variables):
    """The random-weight small model, batches of 2 (one compile per bucket)."""
    return predict.Predictor(
        tiny_config(), variables, short_side=SHORT, max_long_side=LONG, batch_size=2
    )


def save(array: np.ndarray, path) -> str:
    Image.fromarray(array).save(path)
    return str(path)


def test_buckets_hold_every_resized_image():
    buckets = resize.size_buckets(SHORT, LONG)
    assert buckets == ((64, 64), (64, 96), (96, 64))
    rng = np.random.default_rng(0)
    for height, width in [(1, 1), (3, 500), (5000, 7), *rng.integers(1, 4000, (50, 2))]:
        scale = resize.resize_scale(height, width, SHORT, LONG)
        size = np.floor(np.array([height, width]) * scale + 1e-6)
        assert size.min() <= SHORT + 1e-6 and size.max() <= LONG
        assert any(b[0] >= size[0] and b[1] >= size[1] for b in buckets)
    assert resize.resize_scale(10, 20, SHORT, LONG) == pytest.approx(4.8)  # long side cap
    assert resize.resize_scale(1000, 1200, SHORT, LONG) == pytest.approx(0.064)
    with pytest.raises(ValueError, match="short_side <= max_long_side"):
        resize.size_buckets(100, 50)


# Predictor.


def bright_rectangle(height, width, x0, y0, x1, y1) -> np.ndarray:
    image = np.zeros((height, width, 3), np.uint8)
    image[y0:y1, x0:x1] = 255
    return image


def fake_network(variables, images, image_size):
    """A 'detector' of the bright rectangle: one RoI whose pose (every class) is the
    standing pose with its torso centre on the rectangle's centroid (network pixels)."""
    del variables
    num_classes, joints = tiny_config().num_classes, tiny_config().num_joints
    batch, height, width = images.shape[:3]
    mass = images[..., 0].astype(jnp.float32)
    total = mass.sum((1, 2))
    cx = (mass.sum(1) * (jnp.arange(width) + 0.5)).sum(1) / total
    cy = (mass.sum(2) * (jnp.arange(height) + 0.5)).sum(1) / total
    center = jnp.stack([cx, cy], -1)  # (B, 2)
    offsets = jnp.asarray(standing_pose3d()[:, :2] * 20.0)  # (J, 2) network pixels
    pose2d = center[:, None, None, None] + offsets  # (B, 1, 1, J, 2)
    pose2d = jnp.broadcast_to(pose2d, (batch, 2, num_classes, joints, 2))
    pose3d = jnp.broadcast_to(jnp.asarray(standing_pose3d()), (batch, 2, num_classes, joints, 3))
    probs = jnp.zeros((batch, 2, num_classes)).at[:, :, 0].set(0.1).at[:, :, 1].set(0.9)
    box = jnp.concatenate([center - 30.0, center + 30.0], -1)
    del image_size
    return lcrnet.PoseProposals(
        boxes=jnp.stack([box, box], 1),
        objectness=jnp.ones((batch, 2)),
        probs=probs,
        poses2d=pose2d,
        poses3d=pose3d,
        valid=jnp.broadcast_to(jnp.array([True, False]), (batch, 2)),
        mirrored=jnp.zeros((batch, 2), bool),
    )


def test_poses_are_mapped_back_to_original_pixels(variables):
    predictor = predict.Predictor(
        tiny_config(), variables, short_side=SHORT, max_long_side=LONG, apply_fn=fake_network
    )
    tiny = bright_rectangle(30, 45, 10, 5, 20, 15)  # upscaled x2.13 into (64, 96)
    huge = bright_rectangle(400, 200, 120, 300, 160, 360)  # downscaled x0.24 into (96, 64)
    cases = [(tiny, (15.0, 10.0), (30, 45)), (huge, (140.0, 330.0), (400, 200))]
    results = predictor.predict([tiny, huge, tiny])
    assert predictor.num_traces == 2, "one compile per bucket"
    for result, (_, center, size) in zip(results, cases + cases[:1], strict=True):
        scale = resize.resize_scale(*size, SHORT, LONG)
        assert result.image_size == size and result.num_people == 1
        torso = result.poses2d[0, list(LCR13.torso)].mean(0)
        np.testing.assert_allclose(torso, center, atol=0.5 / scale)
        head = result.poses2d[0, LCR13.index("head")] - torso
        np.testing.assert_allclose(head, standing_pose3d()[12, :2] * 20.0 / scale, atol=1e-4)
        np.testing.assert_allclose(result.poses3d[0], standing_pose3d(), atol=1e-6)
        assert result.scores[0] == pytest.approx(0.9)
        # Absolute 3D: 20 network pixels per metre at the default field of view.
        assert result.camera_source == "default"
        np.testing.assert_allclose(result.intrinsics[2:], (size[1] / 2, size[0] / 2))
        cam_torso = result.poses3d_cam[0, list(LCR13.torso)].mean(0)
        assert cam_torso[2] == pytest.approx(result.intrinsics[0] * scale / 20.0, rel=1e-3)
        np.testing.assert_allclose(result.poses3d_cam[0] - cam_torso, result.poses3d[0], atol=1e-5)
        reprojected = geometry.project(result.poses3d_cam[0], result.intrinsics)
        # The fake 2D is orthographic: the wrists, 5 cm in front, are off by < 0.5 network px.
        np.testing.assert_allclose(reprojected, result.poses2d[0], atol=0.5 / scale)


def test_intrinsics_given_fov_exif_and_default(variables, tmp_path):
    path = str(tmp_path / "phone.jpg")
    exif = Image.Exif()
    exif.get_ifd(0x8769)[0xA405] = 26  # FocalLengthIn35mmFilm
    Image.new("RGB", (80, 60)).save(path, exif=exif)
    plain = save(np.zeros((60, 80, 3), np.uint8), tmp_path / "plain.jpg")
    assert predict.exif_focal_35mm(path) == 26.0
    assert predict.exif_focal_35mm(Image.open(path)) == 26.0
    assert predict.exif_focal_35mm(plain) is None
    assert predict.exif_focal_35mm(np.zeros((4, 4, 3), np.uint8)) is None

    def camera(**kwargs):
        predictor = predict.Predictor(tiny_config(), variables, **kwargs)
        return {
            name: predictor.camera(image, 60, 80)
            for name, image in (("exif", path), ("plain", plain))
        }

    default = camera()
    assert default["exif"][1] == "exif" and default["plain"][1] == "default"
    # 26 mm over the 36 x 24 mm diagonal: the 80 x 60 image's diagonal, 100 px.
    exif_focal = 26 / np.hypot(36, 24) * 100
    np.testing.assert_allclose(default["exif"][0], [exif_focal] * 2 + [40, 30], rtol=1e-5)
    focal = 40 / np.tan(np.radians(camera_lib.DEFAULT_FOV_DEGREES) / 2)
    np.testing.assert_allclose(default["plain"][0], [focal, focal, 40, 30], rtol=1e-5)
    fov = camera(fov_degrees=90.0)
    assert {s for _, s in fov.values()} == {"fov"}
    np.testing.assert_allclose(fov["exif"][0], [40, 40, 40, 30], rtol=1e-5)
    given = camera(intrinsics=[100, 90, 41, 29], fov_degrees=90.0)
    np.testing.assert_allclose(given["exif"][0], [100, 90, 41, 29])
    assert given["plain"][1] == "given"
    with pytest.raises(ValueError, match="field of view"):
        predict.Predictor(tiny_config(), variables, fov_degrees=0.0)
    with pytest.raises(ValueError, match="intrinsics must be"):
        predict.Predictor(tiny_config(), variables, intrinsics=[0, 1, 2, 3])


def test_predictor_end_to_end_on_files_arrays_and_bad_inputs(predictor, tmp_path):
    rng = np.random.default_rng(0)
    photo = save(rng.integers(0, 255, (48, 80, 3), dtype=np.uint8), tmp_path / "photo.jpg")
    gray = save(rng.integers(0, 255, (90, 40), dtype=np.uint8), tmp_path / "gray.png")
    (tmp_path / "corrupt.png").write_bytes(b"\x89PNG\r\n\x1a\n garbage")
    rgba = Image.fromarray(rng.integers(0, 255, (30, 50, 4), dtype=np.uint8), "RGBA")
    items = [
        ("photo", photo),
        ("corrupt", str(tmp_path / "corrupt.png")),
        ("gray", gray),
        ("rgba", rgba),
        ("array", rng.integers(0, 255, (500, 700, 3), dtype=np.uint8)),
    ]
    out = list(predictor.predict_stream(items))
    assert [key for key, _ in out] == [key for key, _ in items], "input order is kept"
    errors = {key: r for key, r in out if isinstance(r, Exception)}
    assert list(errors) == ["corrupt"] and "cannot read image" in str(errors["corrupt"])
    sizes = {"photo": (48, 80), "gray": (90, 40), "rgba": (30, 50), "array": (500, 700)}
    for key, result in out:
        if key == "corrupt":
            continue
        assert result.image_size == sizes[key]
        p = result.num_people
        assert 1 <= p <= predictor.ppi_config.max_people
        assert result.poses2d.shape == (p, 13, 2) and result.poses3d.shape == (p, 13, 3)
        assert np.isfinite(result.poses2d).all() and np.isfinite(result.poses3d).all()
        assert (np.diff(result.scores) <= 1e-6).all(), "best first"
        data = json.loads(json.dumps(result.to_json()))
        assert data["joint_names"] == list(LCR13.joints)
        assert data["image_size"] == {"height": sizes[key][0], "width": sizes[key][1]}
        assert len(data["people"]) == p and np.shape(data["people"][0]["pose3d"]) == (13, 3)
    # Images instead of (key, image) pairs: "too many values to unpack (expected 2)".
    with pytest.raises(ValueError, match=r"^predict_stream takes \(key, image\) pairs, got an"):
        list(predictor.predict_stream([photo]))
        assert result.poses3d_cam.shape == (p, 13, 3)
        pose_cam = data["people"][0]["pose3d_camera"]
        assert pose_cam is None or np.shape(pose_cam) == (13, 3)
    assert predictor.num_traces == 2, "one compile per bucket: (64, 96) and (96, 64)"
    again = predictor.predict(photo)
    np.testing.assert_allclose(again.poses2d, out[0][1].poses2d, rtol=1e-5)
    assert predictor.num_traces == 2
    with pytest.raises(ValueError, match="cannot read image"):
        predictor.predict([photo, str(tmp_path / "corrupt.png")])


def test_predictor_argument_errors(variables):
    with pytest.raises(ValueError, match="method must be one of"):
        predict.Predictor(tiny_config(), variables, method="mean")
    with pytest.raises(ValueError, match="batch_size must be an int >= 1, got 0"):
        predict.Predictor(tiny_config(), variables, batch_size=0)
    with pytest.raises(ValueError, match="batch_size must be an int >= 1, got 2.5"):
        predict.Predictor(tiny_config(), variables, batch_size=2.5)  # failed in predict()
    with pytest.raises(ValueError, match="no 'anchor_poses' collection"):
        predict.Predictor(tiny_config(), {"params": variables["params"]})
    for sizes in [{"short_side": 64.5}, {"max_long_side": 96.0}, {"short_side": True}]:
        with pytest.raises(ValueError, match="need ints 1 <= short_side <= max_long_side"):
            predict.Predictor(tiny_config(), variables, **sizes)  # failed in predict()
    with pytest.raises(ValueError, match=r"buckets must be \(height, width\) ints >= 1 .*64\.5"):
        predict.Predictor(tiny_config(), variables, buckets=[(64.5, 96)])
    numpy_ints = predict.Predictor(tiny_config(), variables, short_side=np.int64(64))
    assert type(numpy_ints.short_side) is int and numpy_ints.buckets[0] == (64, 64)
    small = predict.Predictor(tiny_config(), variables, buckets=[(32, 32)], short_side=64)
    with pytest.raises(ValueError, match="no size bucket holds a 64x64"):
        small.preprocess(np.zeros((10, 10, 3), np.uint8))


def test_ppi_and_model_configs_from_files():
    released = {"th_pose3D": 0.04, "th_iou": 0.14, "iou_func": "bbox_torsohead",
                "min_mode_score": 0.05, "th_persondetect": 0.5}  # fmt: skip
    config = predictor_lib.ppi_config_from_released(released)
    assert config == ppi_lib.IN_THE_WILD_R50
    assert predictor_lib.ppi_config_from_released(released, max_people=3).max_people == 3
    with pytest.raises(ValueError, match="unsupported ppi_params iou_func 'mje'"):
        predictor_lib.ppi_config_from_released({"iou_func": "mje"})
    with pytest.raises(ValueError, match="unknown ppi_params entry 'th_x'"):
        predictor_lib.ppi_config_from_released({"th_x": 1})


def test_from_released_takes_the_files_ppi_parameters(variables, monkeypatch):
    """A released model file's own "ppi_params" are its PPI settings unless a
    `ppi_config` is given; a file without them gets the defaults."""
    released = {"th_pose3D": 0.04, "th_iou": 0.14, "iou_func": "bbox_torsohead",
                "min_mode_score": 0.05, "th_persondetect": 0.5}  # fmt: skip
    stored = {}
    monkeypatch.setattr(weights, "load_released", lambda path: (tiny_config(), variables, stored))
    sizes = dict(short_side=SHORT, max_long_side=LONG)
    stored.update(released)
    predictor = predict.Predictor.from_released("models/model.pkl", **sizes)
    assert predictor.ppi_config == ppi_lib.IN_THE_WILD_R50 != ppi_lib.PPIConfig()
    assert predictor.model_name == "released:model.pkl"
    given = predict.Predictor.from_released("model.pkl", ppi_config=ppi_lib.DEMO, **sizes)
    assert given.ppi_config == ppi_lib.DEMO
    stored.clear()
    assert predict.Predictor.from_released("model.pkl", **sizes).ppi_config == ppi_lib.PPIConfig()


def test_only_ppi_people_are_polished(variables, monkeypatch):
    """The network polishes PPI's people (`config.joint_polish`), as the evaluation does,
    never the NMS baseline's nor those of a given `apply_fn` (traced, not compiled)."""
    polished = []

    def polish(model, variables, images, image_size, people):
        polished.append(model.config.joint_polish)
        return people

    monkeypatch.setattr(predictor_lib, "polish", polish)
    images = jax.ShapeDtypeStruct((1, SHORT, LONG, 3), jnp.uint8)
    sizes = jax.ShapeDtypeStruct((1, 2), jnp.int32)
    network = lcrnet.LCRNet(tiny_config()).apply
    for method, apply_fn, want in (("ppi", None, [1]), ("nms", None, []), ("ppi", network, [])):
        polished.clear()
        predictor = predict.Predictor(
            tiny_config(), variables, method=method, apply_fn=apply_fn, short_side=SHORT,
            max_long_side=LONG,
        )  # fmt: skip
        jax.eval_shape(predictor._forward, predictor._variables, images, sizes)
        assert polished == want, (method, apply_fn)


def test_variables_missing_from_a_checkpoint_are_named(variables):
    """A checkpoint lacking some of the model's variables does not fit it (as one with
    variables of other shapes)."""
    lacking = {**variables, "params": dict(variables["params"])}
    removed = sorted(lacking["params"])[0]
    del lacking["params"][removed]
    with pytest.raises(ValueError, match=r"does not fit the model config: \d+ missing variables"):
        predictor_lib._check_shapes(lacking, tiny_config(), "checkpoint run step 5")
    predictor_lib._check_shapes(variables, tiny_config(), "checkpoint run step 5")


def tiny_run_config():
    """An experiment config whose model is `tiny_config()`."""
    config = synthetic_tiny.get_config()
    config.anchor_poses.num = 10  # the 10 + 10 anchor classes of random_variables(tiny_config())
    config.model.width = tiny_config().width
    config.model.joint_heatmap = tiny_config().joint_heatmap
    config.model.rpn_anchor_sizes = (32, 64, 128, 256, 512)
    config.model.feature_stride = 16
    config.model.rpn_pre_nms_test = 100
    config.model.rpn_post_nms_test = 16
    config.model.test_scales = ()  # the demo's second scale: test_lcrnet
    return config


def save_run(workdir, variables, steps=(10, 30)):
    """A training run's checkpoints of `variables` at `steps`."""
    state = step_lib.create_train_state(variables, optax.sgd(0.1))
    ckpt = checkpoint.Checkpointer(os.path.join(workdir, "checkpoints"))
    for step in steps:
        ckpt.save(step, state)
    ckpt.wait()
    ckpt.close()


def test_predictor_from_a_training_checkpoint(tmp_path, variables, caplog):
    assert loop.model_config(tiny_run_config()) == tiny_config()
    save_run(tmp_path / "run", variables)
    config = tiny_run_config()
    config.ppi.t3d, config.ppi.iou_threshold = 0.123, 0.15
    predictor = predict.Predictor.from_checkpoint(tmp_path / "run", config)
    assert predictor.model_name == f"checkpoint:{tmp_path / 'run'}@30"
    # The PPI of the run's evaluation (and of predict.py), not the preset's defaults.
    assert (predictor.ppi_config.t3d, predictor.ppi_config.iou_threshold) == (0.123, 0.15)
    assert predictor.ppi_config.max_people == config.ppi.max_people
    np.testing.assert_array_equal(
        predictor._variables["anchor_poses"]["std"], variables["anchor_poses"]["std"]
    )
    with pytest.raises(FileNotFoundError, match=r"available steps: \[10, 30\]"):
        predict.Predictor.from_checkpoint(tmp_path / "run", tiny_run_config(), step=20)
    with pytest.raises(FileNotFoundError, match="holds no training run"):
        predict.Predictor.from_checkpoint(tmp_path / "nothing", tiny_run_config())
    other = tiny_run_config()
    other.anchor_poses.num = 3
    with pytest.raises(ValueError, match="does not fit"):
        predict.Predictor.from_checkpoint(tmp_path / "run", other)
    # A model setting other than the run's (e.g. a bf16 run predicted in float32) is
    # named: the people differed from the run's evaluation without a word.
    loop.save_config(tiny_run_config(), str(tmp_path / "run"))
    bf16 = tiny_run_config()
    bf16.model.dtype = "bfloat16"
    with caplog.at_level(logging.WARNING):
        predict.Predictor.from_checkpoint(tmp_path / "run", tiny_run_config())
        assert not caplog.records
        predict.Predictor.from_checkpoint(tmp_path / "run", bf16)
    assert f"{tmp_path / 'run'} was trained with other model.dtype:" in caplog.text
