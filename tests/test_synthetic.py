import dataclasses
import re

import numpy as np
import pytest
from PIL import Image

from lcrnet_jax import geometry, skeleton
from lcrnet_jax.data import poses, synthetic
from lcrnet_jax.data.synthetic import body

J = {name: i for i, name in enumerate(skeleton.LCR17.joints)}
K = np.array([150.0, 150.0, 80.0, 80.0], np.float32)


def _upright(height=1.75):
    bones = {k: np.array([height * v]) for k, v in poses.BONE_FRACTIONS.items()}
    pose = poses.forward_kinematics(np.zeros((1, len(poses.DOFS))), bones)[0]
    return geometry.center_on_torso(pose, "lcr17")


@pytest.fixture(scope="module")
def hand_scene():
    """A in front at 3 m, B right behind it at 5 m, C at the right border at 4 m."""
    pose = _upright()  # body frame = camera frame for a person facing the camera
    scene = np.stack([pose + [0, 0, 3.0], pose + [0, 0, 5.0], pose + [2.0, 0, 4.0]])
    image, ann = synthetic.render_people(scene, K, height=160, width=160)
    return scene, image, ann


def test_hand_scene_annotations_are_exact(hand_scene):
    scene, image, ann = hand_scene
    assert image.shape == (160, 160, 3) and image.dtype == np.uint8
    assert ann.joint_set == "lcr17" and ann.joints2d.shape == (3, 17, 2)
    expected = K[:2] * scene[..., :2] / scene[..., 2:] + K[2:]
    np.testing.assert_allclose(ann.joints2d, expected, atol=1e-4)
    np.testing.assert_array_equal(ann.joints3d, scene.astype(np.float32))
    np.testing.assert_allclose(
        ann.joints3d_centered, geometry.center_on_torso(scene, "lcr17"), atol=1e-6
    )


def test_a_person_behind_another_has_occluded_joints(hand_scene):
    _, _, ann = hand_scene
    assert ann.visible[0].all()
    torso = [J[n] for n in ("right_hip", "left_hip", "right_shoulder", "left_shoulder", "pelvis")]
    assert ann.in_image[1, torso].all() and not ann.visible[1, torso].any()
    x, y = np.floor(ann.joints2d[1, torso]).astype(int).T
    assert (ann.segmentation[y, x] == 0).all()  # person A is what the camera sees there
    # Every visible joint sees its own body at its pixel.
    p, j = np.nonzero(ann.visible)
    x, y = np.floor(ann.joints2d[p, j]).astype(int).T
    np.testing.assert_array_equal(ann.segmentation[y, x], p)


def test_joints_outside_the_image_are_marked(hand_scene):
    _, _, ann = hand_scene
    outside = ann.joints2d[2, :, 0] >= 160
    assert outside[J["left_shoulder"]] and outside[J["left_wrist"]]
    assert not outside[J["right_shoulder"]]
    np.testing.assert_array_equal(ann.in_image[2], ~outside)
    assert not ann.visible[2, outside].any() and ann.visible[2, J["right_shoulder"]]
    assert ann.boxes[2, 2] == 160  # clipped at the border
    box = ann.boxes[0]
    inside = ann.joints2d[0]
    assert (box[:2] <= inside.min(0)).all() and (inside.max(0) <= box[2:]).all()


def test_depth_buffer_holds_the_front_surface(hand_scene):
    _, image, ann = hand_scene
    x, y = np.floor(geometry.project(np.array([[0.0, 0.0, 3.0]]), K)[0]).astype(int)
    assert 2.7 < ann.depth[y, x] < 3.0 and ann.segmentation[y, x] == 0
    assert np.isinf(ann.depth[0, 0]) and ann.segmentation[0, 0] == -1
    np.testing.assert_array_equal(image[0, 0], [128, 128, 128])  # default grey background
    assert (image[y, x] != 128).any()


def test_lcr13_input_and_bad_input():
    pose13 = _upright()[:13] + [0, 0, 4.0]
    _, ann = synthetic.render_people(pose13[None], K, height=160, width=160)
    assert ann.joint_set == "lcr13" and ann.joints2d.shape == (1, 13, 2) and ann.visible.all()
    with pytest.raises(ValueError, match="13 or 17"):
        synthetic.render_people(np.zeros((1, 12, 3)), K, height=8, width=8)
    with pytest.raises(ValueError, match="intrinsics"):
        synthetic.render_people(pose13[None], K[:3], height=8, width=8)
    with pytest.raises(ValueError, match="NaN"):
        synthetic.render_scene([np.full((17, 3), np.nan)], np.random.default_rng(0))
    with pytest.raises(ValueError, match="all"):
        synthetic.render_scene([np.zeros((17, 3)), np.zeros((13, 3))], np.random.default_rng(0))
    assert body.complete_lcr17(pose13).shape == (17, 3)


def test_complete_lcr17_adds_the_four_joints_lcr13_lacks_in_lcr17_order():
    """pelvis = mid-hips, thorax = mid-shoulders, spine = their midpoint, neck = 30% of
    the way from the thorax to the head; the 13 given joints are kept."""
    pose13 = _upright()[:13] + [0.1, 0.2, 4.0]
    full = body.complete_lcr17(pose13)
    np.testing.assert_array_equal(full[:13], pose13.astype(np.float32))
    pelvis = 0.5 * (pose13[J["right_hip"]] + pose13[J["left_hip"]])
    thorax = 0.5 * (pose13[J["right_shoulder"]] + pose13[J["left_shoulder"]])
    expected = {
        "pelvis": pelvis,
        "thorax": thorax,
        "spine": 0.5 * (pelvis + thorax),
        "neck": thorax + 0.3 * (pose13[J["head"]] - thorax),
    }
    for name, point in expected.items():
        np.testing.assert_allclose(full[J[name]], point, atol=1e-6, err_msg=name)


def test_estimate_height_ignores_a_few_odd_bones():
    """The median of the bones' estimates: one stretched forearm leaves the height as is."""
    pose = _upright(height=1.75)
    assert body.estimate_height(pose) == pytest.approx(1.75, abs=1e-4)
    odd = pose.copy()
    odd[J["left_wrist"]] += [0.0, 0.5, 0.0]  # the forearm 0.5 m longer
    assert body.estimate_height(odd) == pytest.approx(1.75, abs=1e-4)


@pytest.fixture(scope="module")
def random_scenes():
    config = synthetic.RenderConfig(height=96, width=128)
    out = []
    for seed in range(6):
        rng = np.random.default_rng(seed)
        sampled = poses.sample_poses(rng, int(rng.integers(1, 7)))
        out.append((sampled, *synthetic.render_scene(list(sampled.poses), rng, config)))
    return out


def test_render_scene_places_people_rigidly_and_annotates_them(random_scenes):
    for sampled, image, ann in random_scenes:
        assert image.shape == (96, 128, 3)
        assert 1 <= len(ann.source_index) <= len(sampled.poses)
        src = sampled.poses[ann.source_index]
        # Placement is a rotation plus a translation: distances between joints are kept.
        d_in = np.linalg.norm(src[:, :, None] - src[:, None], axis=-1)
        d_out = np.linalg.norm(ann.joints3d[:, :, None] - ann.joints3d[:, None], axis=-1)
        np.testing.assert_allclose(d_out, d_in, atol=1e-4)
        assert (ann.joints3d[..., 2] > 0).all()
        np.testing.assert_allclose(ann.joints2d, geometry.project(ann.joints3d, ann.intrinsics))
        assert not (ann.visible & ~ann.in_image).any()
        assert (ann.boxes[:, :2] <= ann.boxes[:, 2:]).all()
        assert (ann.boxes >= 0).all() and (ann.boxes[:, [2, 3]] <= [128, 96]).all()
        assert ann.in_image.any(axis=1).all()  # placed people are at least partly in view


def test_render_scene_is_deterministic_for_a_seed(random_scenes):
    sampled, image, ann = random_scenes[2]
    rng = np.random.default_rng(2)
    poses.sample_poses(rng, int(rng.integers(1, 7)))  # same draws as the fixture
    again, ann2 = synthetic.render_scene(
        list(sampled.poses), rng, synthetic.RenderConfig(height=96, width=128)
    )
    np.testing.assert_array_equal(image, again)
    np.testing.assert_array_equal(ann.joints2d, ann2.joints2d)
    np.testing.assert_array_equal(ann.visible, ann2.visible)


def test_user_background_images(tmp_path):
    Image.new("RGB", (50, 40), (200, 10, 10)).save(tmp_path / "red.png")
    config = synthetic.RenderConfig(
        height=48, width=64, background_dir=str(tmp_path), background_image_probability=1.0,
        noise_std=(0.0, 0.0),
    )  # fmt: skip
    image, ann = synthetic.render_scene([], np.random.default_rng(0), config)
    assert ann.joints2d.shape == (0, 17, 2)
    np.testing.assert_array_equal(image, np.broadcast_to([200, 10, 10], image.shape))
    (tmp_path / "wide").mkdir()
    Image.fromarray(np.full((40, 50), 100 * 257, np.uint16)).save(tmp_path / "wide" / "16.png")
    config = dataclasses.replace(config, background_dir=str(tmp_path / "wide"))
    image, _ = synthetic.render_scene([], np.random.default_rng(0), config)
    np.testing.assert_array_equal(image, np.full(image.shape, 100))  # not clipped to white
    (tmp_path / "empty").mkdir()
    for folder, message in (("none", "does not exist"), ("empty", "no images")):
        config = synthetic.RenderConfig(
            background_dir=str(tmp_path / folder), background_image_probability=1.0
        )
        with pytest.raises(FileNotFoundError, match=message):
            synthetic.render_scene([], np.random.default_rng(0), config)


@pytest.mark.parametrize(
    "name, reason",
    [("cut.png", "image file is truncated.*"),
     ("text.jpg", "not an image file PIL can identify")],
)  # fmt: skip
def test_a_damaged_background_image_is_named(tmp_path, name, reason):
    if name == "cut.png":
        noise = np.random.default_rng(0).integers(0, 256, (64, 64, 3), np.uint8)
        Image.fromarray(noise).save(tmp_path / name)
        (tmp_path / name).write_bytes((tmp_path / name).read_bytes()[:2000])
    else:
        (tmp_path / name).write_text("not an image")
    config = synthetic.RenderConfig(
        height=48, width=64, background_dir=str(tmp_path), background_image_probability=1.0
    )
    message = f"cannot read background image {re.escape(str(tmp_path / name))}: {reason}$"
    with pytest.raises(ValueError, match=message):
        synthetic.render_scene([], np.random.default_rng(0), config)


def _capsule(x, y0, y1, z, radius):
    """One vertical capsule (x, y0 .. y1 at depth z, metres) of person 0, plain."""
    one = np.ones(1, np.float32)
    return body.Capsules(
        start=np.array([[x, y0, z]], np.float32), end=np.array([[x, y1, z]], np.float32),
        radius_start=radius * one, radius_end=radius * one, person=np.zeros(1, np.int32),
        material=np.zeros(1, np.int32), stripe_material=np.zeros(1, np.int32),
        stripes=0 * one,
    )  # fmt: skip


def test_rasterize_covers_the_pixels_whose_centres_are_within_the_projected_radius():
    """Pixel (i, j) has its centre at (j + 0.5, i + 0.5); the projected radius is f r / Z.
    An axis at x = 40 px, y = 25-35 px, with a 3 px radius covers the columns 37-42 and
    the rows 22-37, mirrored about it; lit from the camera, the axis faces the light
    (full shade), the rims do not."""
    intrinsics = np.array([100.0, 100.0, 40.0, 30.0], np.float32)
    capsule = _capsule(0.0, -0.1, 0.1, 2.0, radius=0.06)  # 100 * 0.06 / 2 = 3 px
    buffers = synthetic.raster.rasterize(
        capsule, intrinsics, height=60, width=80, light=np.array([0.0, 0.0, -1.0]), ambient=0.4
    )
    row = 30  # the axis spans rows 25-35 (y = 30 -+ 5 px)
    np.testing.assert_array_equal(np.flatnonzero(buffers.person[row] == 0), np.arange(37, 43))
    # Down column 40, the round ends reach 3 px beyond rows 25 and 35: rows 22-37.
    np.testing.assert_array_equal(np.flatnonzero(buffers.person[:, 40] == 0), np.arange(22, 38))
    assert buffers.shade[row, 39] > 0.95 and buffers.shade[row, 37] < buffers.shade[row, 39]
    assert buffers.shade[row, 37] == pytest.approx(buffers.shade[row, 42])


def test_rasterize_draws_the_bottom_of_a_portrait_image():
    """In an image taller than wide, a capsule low in the frame is drawn whole."""
    intrinsics = np.array([100.0, 100.0, 20.0, 60.0], np.float32)
    capsule = _capsule(0.0, 0.5, 1.0, 2.0, radius=0.05)  # rows 85-110, columns 17-22
    buffers = synthetic.raster.rasterize(capsule, intrinsics, height=120, width=40)
    rows = np.flatnonzero((buffers.person == 0).any(1))
    assert rows.min() < 85 < 110 < rows.max() + 1 <= 120


def test_user_backgrounds_are_found_in_subfolders_and_cropped_without_stretching(tmp_path):
    """The folder is searched recursively, and a crop keeps the output's aspect ratio: a
    checkerboard's squares stay squares (as many colour changes per pixel across as down)."""
    rows, cols = np.indices((200, 200)) // 10  # 10 px squares
    checker = np.where((rows + cols) % 2 == 1, 255, 0).astype(np.uint8)
    (tmp_path / "deep" / "er").mkdir(parents=True)
    Image.fromarray(np.stack([checker] * 3, -1)).save(tmp_path / "deep" / "er" / "board.png")
    config = synthetic.RenderConfig(
        height=48, width=64, background_dir=str(tmp_path), background_image_probability=1.0,
        noise_std=(0.0, 0.0),
    )  # fmt: skip
    for seed in range(4):
        image, _ = synthetic.render_scene([], np.random.default_rng(seed), config)
        bright = image[..., 0] > 127
        across = np.abs(np.diff(bright.astype(int), axis=1)).sum() / (48 * 63)
        down = np.abs(np.diff(bright.astype(int), axis=0)).sum() / (47 * 64)
        assert across == pytest.approx(down, rel=0.2), seed


def test_sample_intrinsics_takes_the_field_of_view_across_the_width():
    """fov_deg is horizontal: fx = fy = (W / 2) / tan(fov / 2); no jitter, centred."""
    config = synthetic.RenderConfig(height=48, width=128, fov_deg=(60.0, 60.0))
    config = dataclasses.replace(config, principal_jitter=0.0)
    fx, fy, cx, cy = synthetic.sample_intrinsics(np.random.default_rng(0), config)
    assert fx == fy == pytest.approx(64 / np.tan(np.deg2rad(30)), rel=1e-5)
    assert (cx, cy) == (64, 24)


def test_render_scene_ignores_where_the_input_poses_origin_is():
    """Input poses may have any origin: shifting one changes nothing in the scene."""
    pose = _upright()
    config = synthetic.RenderConfig(height=96, width=128)
    _, ann = synthetic.render_scene([pose], np.random.default_rng(3), config)
    _, moved = synthetic.render_scene([pose + [3.0, -2.0, 10.0]], np.random.default_rng(3), config)
    np.testing.assert_allclose(moved.joints3d, ann.joints3d, atol=1e-4)
    np.testing.assert_allclose(moved.joints2d, ann.joints2d, atol=1e-2)
