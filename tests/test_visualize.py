import dataclasses

import numpy as np
import pytest
from matplotlib.text import Text
from PIL import Image

from lcrnet_jax import predict, skeleton, visualize

LCR13 = skeleton.get_joint_set("lcr13")


def standing_pose3d() -> np.ndarray:
    """A person facing the camera, (13, 3) metres, camera axes (Y down)."""
    xyz = {
        "right_ankle": (-0.1, 0.9, 0.0),
        "left_ankle": (0.1, 0.9, 0.0),
        "right_knee": (-0.1, 0.45, 0.0),
        "left_knee": (0.1, 0.45, 0.0),
        "right_hip": (-0.1, 0.0, 0.0),
        "left_hip": (0.1, 0.0, 0.0),
        "right_wrist": (-0.3, -0.1, 0.05),
        "left_wrist": (0.3, -0.1, 0.05),
        "right_elbow": (-0.25, -0.3, 0.0),
        "left_elbow": (0.25, -0.3, 0.0),
        "right_shoulder": (-0.2, -0.5, 0.0),
        "left_shoulder": (0.2, -0.5, 0.0),
        "head": (0.0, -0.75, 0.0),
    }
    pose = np.array([xyz[name] for name in LCR13.joints], np.float32)
    return pose - pose[list(LCR13.torso)].mean(0)


def pose2d_at(x: float, y: float, pixels_per_metre: float = 40.0) -> np.ndarray:
    """The standing pose seen from the front, torso centre at (x, y) pixels."""
    return standing_pose3d()[:, :2] * pixels_per_metre + np.array([x, y], np.float32)


def test_limb_sides_follow_joint_names():
    sides = dict(zip(LCR13.bones, visualize.limb_sides("lcr13"), strict=True))
    bone = {tuple(LCR13.joints[i] for i in b): side for b, side in sides.items()}
    assert bone["right_ankle", "right_knee"] == "right"
    assert bone["left_elbow", "left_shoulder"] == "left"
    assert bone["right_hip", "left_hip"] == "center"
    assert bone["right_shoulder", "head"] == "center"
    assert list(sides.values()).count("left") == list(sides.values()).count("right") == 5
    assert visualize.side_color((100, 100, 100), "left") > (100, 100, 100)
    assert visualize.side_color((100, 100, 100), "right") < (100, 100, 100)


def test_draw_poses_2d_draws_limbs_in_side_colours():
    image = np.full((100, 120, 3), 255, np.uint8)
    poses = pose2d_at(60, 50)[None]
    out = visualize.draw_poses_2d(image, poses, line_width=3, joint_radius=2)
    assert out.shape == image.shape and out.dtype == np.uint8
    assert (image == 255).all(), "the input is not modified"
    color = visualize.PERSON_COLORS[0]
    right, left = (LCR13.index(f"{s}_knee") for s in ("right", "left"))
    for joint, side in ((right, "right"), (left, "left")):
        ankle = LCR13.index(LCR13.joints[joint].replace("knee", "ankle"))
        mid = np.round((poses[0, joint] + poses[0, ankle]) / 2).astype(int)
        assert tuple(out[mid[1], mid[0]]) == visualize.side_color(color, side)
    assert (out[:5, :5] == 255).all(), "far from the person nothing changes"


def test_draw_poses_2d_masks_people_and_skips_non_finite_joints():
    image = np.zeros((60, 80), np.uint8)  # grayscale is converted
    poses = np.stack([pose2d_at(20, 30), pose2d_at(60, 30)])
    poses[0, LCR13.index("head")] = np.nan
    out = visualize.draw_poses_2d(image, poses, valid=np.array([True, False]), scores=[0.9, 0.1])
    assert out.shape == (60, 80, 3)
    assert out[:, :40].any(), "the first person is drawn"
    assert not out[:, 45:].any(), "the second (invalid) person is not"
    with pytest.raises(ValueError, match="poses2d must be"):
        visualize.draw_poses_2d(image, poses[..., :1])
    with pytest.raises(ValueError, match="valid must be"):
        visualize.draw_poses_2d(image, poses, valid=[True])


def _lines_by_color(fig):
    lines = {}
    for line in fig.axes[0].lines:
        x, y, z = line.get_data_3d()
        key = tuple(np.round(np.asarray(line.get_color()) * 255).astype(int))
        lines.setdefault(key, []).append(np.stack([x, y, z]))
    return {k: np.concatenate(v, axis=1) for k, v in lines.items()}


def test_plot_poses_3d_head_up_and_people_ordered_by_image_x():
    poses = np.stack([standing_pose3d(), standing_pose3d()])
    fig = visualize.plot_poses_3d(poses, scores=[2.0, 1.0], image_x=[300.0, 100.0])
    lines = _lines_by_color(fig)
    first = lines[visualize.PERSON_COLORS[0]]  # torso bones of person 0 (centre colour)
    second = lines[visualize.PERSON_COLORS[1]]
    assert first[0].min() > second[0].max(), "person 0 is right of person 1 (image_x)"
    head_up = -standing_pose3d()[LCR13.index("head"), 1]
    assert np.isclose(first[2].max(), head_up), "plot z is -Y: the head on top"
    image = visualize.figure_to_array(fig)
    assert image.shape == (400, 500, 3) and image.dtype == np.uint8
    colored = np.abs(image.astype(int) - image.mean(-1, keepdims=True)).max(-1) > 60
    assert colored.sum() > 50, "coloured skeleton pixels are drawn"


def test_plot_poses_3d_in_camera_space_keeps_positions():
    near = standing_pose3d() + np.array([1.0, 0.0, 3.0], np.float32)
    far = standing_pose3d() + np.array([-2.0, 0.5, 8.0], np.float32)
    lost = np.full((13, 3), np.nan, np.float32)  # a person without translation
    fig = visualize.plot_poses_3d(
        np.stack([near, far, lost]), image_x=[0.0, 1.0, 2.0], camera_space=True
    )
    lines = _lines_by_color(fig)
    assert visualize.PERSON_COLORS[2] not in lines
    for color, pose in ((visualize.PERSON_COLORS[0], near), (visualize.PERSON_COLORS[1], far)):
        plotted = lines[color].T  # (N, 3) plot axes: X, Z, -Y
        joints = pose[:, [0, 2, 1]] * np.array([1, 1, -1])
        distance = np.linalg.norm(plotted[:, None] - joints[None], axis=-1).min(1)
        assert len(plotted) and distance.max() < 1e-5, "drawn where the joints are"


def test_plot_poses_3d_draws_the_ground_truth_dashed_grey_in_the_same_scene():
    truth = standing_pose3d() + np.array([0.5, 0.0, 4.0], np.float32)
    predicted = truth + np.array([0.2, 0.0, 0.3], np.float32)
    fig = visualize.plot_poses_3d(predicted[None], camera_space=True, ground_truth=truth[None])
    grey = [
        line
        for line in fig.axes[0].get_lines()
        if np.array_equal(line.get_color(), visualize.GROUND_TRUTH_COLOR)
    ]
    assert len(grey) == len(LCR13.bones) and all(line.get_linestyle() == "--" for line in grey)
    drawn = np.concatenate([np.stack(line.get_data_3d()) for line in grey], axis=1).T
    expected = truth[:, [0, 2, 1]] * np.array([1, 1, -1])
    assert np.abs(drawn[:, None] - expected[None]).sum(-1).min(1).max() < 1e-5
    assert "ground truth" in fig.axes[0].get_title()
    with pytest.raises(ValueError, match="camera space"):
        visualize.plot_poses_3d(predicted[None], ground_truth=truth[None])


def test_plot_poses_3d_without_people():
    fig = visualize.plot_poses_3d(np.zeros((0, 13, 3)))
    assert visualize.figure_to_array(fig).shape == (400, 500, 3)
    assert fig.axes[0].get_title() == "0 people"


def _one_person_on_grey() -> tuple[np.ndarray, predict.PoseResult]:
    """A 48 x 64 grey image and a result with one person standing in its middle."""
    result = predict.PoseResult(
        joint_set="lcr13",
        poses2d=pose2d_at(32, 24)[None],
        poses3d=standing_pose3d()[None],
        scores=np.array([1.5], np.float32),
        image_size=(48, 64),
    )
    return np.full((48, 64, 3), 200, np.uint8), result


def test_save_visualizations_writes_two_pngs(tmp_path):
    image, result = _one_person_on_grey()
    path_2d, path_3d = visualize.save_visualizations(tmp_path / "photo", image, result)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["photo_2d.png", "photo_3d.png"]
    overlay = np.asarray(Image.open(path_2d))
    assert overlay.shape == image.shape and (overlay != image).any()
    assert Image.open(path_3d).size == (500, 400)
    cam = dataclasses.replace(result, poses3d_cam=result.poses3d + np.float32([0, 0, 4]))
    visualize.save_visualizations(tmp_path / "cam", image, cam)
    assert Image.open(tmp_path / "cam_3d.png").size == (500, 400)


def test_a_large_photos_overlay_is_drawn_scaled_down(tmp_path, monkeypatch):
    """A 95-megapixel photo's overlay took 2.3 GB and made a 7.8 MB PNG (an audit): the
    overlay's longest side is at most MAX_OVERLAY_SIDE, the skeleton scaled with it."""
    image, result = _one_person_on_grey()
    monkeypatch.setattr(visualize, "MAX_OVERLAY_SIDE", 32)
    path_2d, _ = visualize.save_visualizations(tmp_path / "photo", image, result)
    overlay = np.asarray(Image.open(path_2d))
    small = np.full((24, 32, 3), 200, np.uint8)
    scaled = dataclasses.replace(result, poses2d=result.poses2d / 2, image_size=(24, 32))
    np.testing.assert_array_equal(overlay, visualize.draw_result(small, scaled))


def test_a_result_is_drawn_only_on_its_own_image_with_transparency_white():
    result = predict.PoseResult(
        joint_set="lcr13",
        poses2d=np.zeros((0, 13, 2), np.float32),
        poses3d=np.zeros((0, 13, 3), np.float32),
        scores=np.zeros(0, np.float32),
        image_size=(48, 64),
    )
    # An image of another size (e.g. a photo not turned by its EXIF orientation) was drawn.
    with pytest.raises(ValueError, match="image is 64x48 pixels, but the result is of a 48x64"):
        visualize.draw_result(np.zeros((64, 48, 3), np.uint8), result)
    # Transparent pixels are white, as `load_image` gives them to the network (they were
    # drawn with their RGB, here black).
    clear = np.zeros((48, 64, 4), np.uint8)
    np.testing.assert_array_equal(visualize.draw_result(clear, result), 255)


def test_people_below_a_display_score_are_left_out():
    poses3d = np.stack([standing_pose3d(), standing_pose3d() + 1])
    result = predict.PoseResult(
        joint_set="lcr13",
        poses2d=np.stack([pose2d_at(20, 20), pose2d_at(40, 20)]),
        poses3d=poses3d,
        scores=np.array([0.5, 0.01], np.float32),
        image_size=(48, 64),
        poses3d_cam=poses3d + 4,
    )
    shown = result.scoring_at_least(0.1)
    assert shown.num_people == 1 and shown.scores.tolist() == [0.5]
    np.testing.assert_array_equal(shown.poses2d, result.poses2d[:1])
    np.testing.assert_array_equal(shown.poses3d_cam, result.poses3d_cam[:1])
    assert result.scoring_at_least(1.0).num_people == 0


def test_draw_poses_2d_colours_and_labels_people_by_track_id():
    image = np.full((100, 120, 3), 255, np.uint8)
    poses = pose2d_at(60, 50)[None]
    hip = np.round(poses[0, [LCR13.index("right_hip"), LCR13.index("left_hip")]].mean(0))
    x, y = hip.astype(int)
    by_index = visualize.draw_poses_2d(image, poses, line_width=3)
    by_id = visualize.draw_poses_2d(image, poses, ids=[3], line_width=3)
    assert tuple(by_index[y, x]) == visualize.PERSON_COLORS[0]
    assert tuple(by_id[y, x]) == visualize.PERSON_COLORS[3]
    untracked = visualize.draw_poses_2d(image, poses, ids=[-1], line_width=3)
    assert tuple(untracked[y, x]) == visualize.UNTRACKED_COLOR

    def label_pixels(**kwargs) -> int:  # non-white pixels above the head
        out = visualize.draw_poses_2d(image, poses, line_width=3, **kwargs)
        return int((out[: int(poses[0, :, 1].min()) - 4] != 255).any(-1).sum())

    assert label_pixels() == 0 == label_pixels(ids=[-1]) and label_pixels(ids=[3]) > 0
    assert label_pixels(ids=[3], scores=[0.5]) > label_pixels(scores=[0.5]) > 0
    with pytest.raises(ValueError, match=r"ids must be \(1,\)"):
        visualize.draw_poses_2d(image, poses, ids=[1, 2])


def test_a_label_that_would_cover_an_earlier_persons_is_left_out():
    """Two people at one spot (PPI's duplicates): "0.25" was written over "0.50"."""
    image = np.full((100, 120, 3), 255, np.uint8)
    poses = np.stack([pose2d_at(60, 50)] * 2)
    both = visualize.draw_poses_2d(image, poses, scores=[0.5, 0.25], line_width=3)
    first = visualize.draw_poses_2d(image, poses, scores=[0.5, 0.5], line_width=3)
    np.testing.assert_array_equal(both, first)
    apart = np.stack([pose2d_at(30, 50), pose2d_at(90, 50)])
    two = visualize.draw_poses_2d(image, apart, scores=[0.5, 0.25], line_width=3)
    one = visualize.draw_poses_2d(image, apart, scores=[0.5, 0.5], line_width=3)
    assert (two != one).any()  # labels apart are both written


def test_plot_poses_3d_checks_scores_as_draw_poses_2d():
    """One score for two people ended in an IndexError; extra scores were ignored."""
    poses = np.stack([standing_pose3d(), standing_pose3d()])
    image = np.zeros((60, 80, 3), np.uint8)
    for scores, shape in (([0.9], r"\(1,\)"), ([0.9, 0.8, 0.7], r"\(3,\)"), (0.9, r"\(\)")):
        message = rf"^scores must be \(2,\), got shape {shape}$"
        with pytest.raises(ValueError, match=message):
            visualize.draw_poses_2d(image, pose2d_at(40, 30)[None].repeat(2, 0), scores=scores)
        with pytest.raises(ValueError, match=message):
            visualize.plot_poses_3d(poses, scores=scores)


def test_drawing_sizes_are_checked_at_the_call():
    """A negative joint radius failed inside PIL, a negative line width drew another
    width, and a page of width 0 or of JPEG quality 500 was accepted."""
    image, poses = np.zeros((60, 80, 3), np.uint8), pose2d_at(40, 30)[None]
    for size in (-3, 0, 2.5, True):
        for name in ("line_width", "joint_radius"):
            with pytest.raises(ValueError, match=rf"^{name} must be an int >= 1, got {size}$"):
                visualize.draw_poses_2d(image, poses, **{name: size})
    assert visualize.draw_poses_2d(image, poses, line_width=np.int64(1), joint_radius=1).any()
    for options, message in [
        ({"width": 0}, "width must be an int >= 1, got 0"),
        ({"width": -5}, "width must be an int >= 1, got -5"),
        ({"quality": 0}, "quality must be an int from 1 to 95, got 0"),
        ({"quality": 500}, "quality must be an int from 1 to 95, got 500"),
    ]:
        with pytest.raises(ValueError, match=f"^{message}$"):
            visualize.VideoPage(fps=25.0, **options)
    visualize.VideoPage(fps=25.0, width=1, quality=95)


def _label_pixels(image, poses, **kwargs) -> int:
    """Pixels that the scores or ids change in `draw_poses_2d(image, poses)`."""
    bare = visualize.draw_poses_2d(image, poses)
    return int((visualize.draw_poses_2d(image, poses, **kwargs) != bare).any(-1).sum())


def test_labels_stay_inside_the_image_at_its_borders():
    """A person whose top joint was within 14 px of the top had no visible score; at the
    right border the label was cut."""
    image = np.full((120, 160, 3), 255, np.uint8)
    head = np.full((1, 13, 2), np.nan)  # only the head: the label's pixels are its own
    head[0, LCR13.index("head")] = 0.0
    inside = _label_pixels(image, head + [[80, 60]], scores=[12.34], ids=[3])
    for x, y in ((80, 0), (159, 60), (159, 0), (0, 0), (80, 119), (0, 119)):
        drawn = _label_pixels(image, head + [[x, y]], scores=[12.34], ids=[3])
        assert drawn > 0.9 * inside, (x, y, drawn, inside)


def test_labels_grow_with_the_image_and_are_outlined():
    """Labels were Pillow's 10-px font whatever the image: 8 px tall over 20-px bones on a
    4000x3000 photo; and in the person's colour only, unreadable on a background of it."""
    head = np.full((1, 13, 2), np.nan)
    head[0, LCR13.index("head")] = 0.5
    heights = {}
    for size in (600, 3000):
        image = np.full((size, size * 4 // 3, 3), 255, np.uint8)
        bare = visualize.draw_poses_2d(image, head * size)
        label = (visualize.draw_poses_2d(image, head * size, scores=[0.9]) != bare).any(-1)
        rows = np.flatnonzero(label.any(-1))
        heights[size] = rows.max() - rows.min() + 1
    assert heights[3000] > 2 * max(2, round(3000 / 150)), "taller than two bone widths"
    assert heights[3000] > 0.8 * 5 * heights[600], heights
    image = np.full((120, 160, 3), visualize.PERSON_COLORS[0], np.uint8)
    assert _label_pixels(image, head * 120, scores=[0.9]) > 30, "on its own colour"


def test_joints_not_visible_are_not_drawn_nor_their_bones():
    """Records and `skeleton.convert` store unknown joints as zeros: a COCO person without
    its left arm was drawn with a bone to the image's corner (0, 0)."""
    coco = skeleton.get_joint_set("coco17")
    lcr = {n: p for n, p in zip(LCR13.joints, pose2d_at(100, 60), strict=True)}
    joints = np.zeros((1, 17, 2), np.float32)
    known = np.zeros((1, 17), bool)
    for j, name in enumerate(coco.joints):
        if name in lcr and name not in ("left_wrist", "left_elbow"):
            joints[0, j], known[0, j] = lcr[name], True
    joints[0, coco.index("nose")], known[0, coco.index("nose")] = lcr["head"], True
    poses, visible = skeleton.convert(joints, known, "coco17", "lcr13")
    image = np.full((120, 160, 3), 255, np.uint8)
    out = visualize.draw_poses_2d(image, poses, visible=visible)
    assert (out[:30, :30] == 255).all(), "no bone to the corner"
    everyone = visualize.draw_poses_2d(image, np.where(visible[..., None], poses, np.nan))
    np.testing.assert_array_equal(out, everyone)
    assert (visualize.draw_poses_2d(image, poses)[:30, :30] != 255).any(), "unchanged default"
    with pytest.raises(ValueError, match=r"^visible must be \(1, 13\) bool, got shape \(13,\)$"):
        visualize.draw_poses_2d(image, poses, visible=visible[0])

    pose3d = standing_pose3d() + np.float32([0, 0, 4])
    hidden = np.ones((1, 13), bool)
    hidden[0, LCR13.index("left_wrist")] = False
    lost = np.zeros((2, 13, 3))  # a true person at the camera centre and one without 3D
    lost[0] = pose3d
    fig = visualize.plot_poses_3d(
        pose3d[None], visible=hidden, camera_space=True, ground_truth=lost,
        ground_truth_visible=[[True] * 13, [False] * 13],
    )  # fmt: skip
    lines = fig.axes[0].lines
    grey = [np.array_equal(line.get_color(), visualize.GROUND_TRUTH_COLOR) for line in lines]
    bones = [b for b in LCR13.bones if LCR13.index("left_wrist") not in b]
    assert len(lines) - sum(grey) == len(bones), "the bones of the hidden wrist are not drawn"
    assert sum(grey) == len(LCR13.bones), "the true person without 3D is not drawn"
    drawn = np.concatenate([np.stack(line.get_data_3d()) for line in lines], axis=1)
    assert drawn[1].min() > 3, "nothing at the camera centre (depth 0)"
    with pytest.raises(ValueError, match=r"^ground_truth_visible must be \(2, 13\) bool"):
        visualize.plot_poses_3d(
            pose3d[None], camera_space=True, ground_truth=lost, ground_truth_visible=[True]
        )


@pytest.fixture
def drawn_text_boxes(monkeypatch) -> dict:
    """{text: its box in display pixels} of the texts drawn from then on (3D axes place
    their texts only while drawing)."""
    boxes = {}
    draw = Text.draw

    def draw_and_record(text, renderer):
        draw(text, renderer)
        if text.get_visible() and text.get_text():
            boxes[text] = text.get_window_extent(renderer)

    monkeypatch.setattr(Text, "draw", draw_and_record)
    return boxes


def test_3d_tick_labels_do_not_overlap(drawn_text_boxes):
    """One adult's scene (~1.5 m) had 8-9 ticks per axis with two decimals: the X labels
    ran together and the depth ticks covered "Z (m)"."""
    boxes = drawn_text_boxes
    pose = standing_pose3d()
    for poses in (np.stack([pose + [-0.5, 0, 1.3], pose + [0.5, 0, 2.1]]), pose[None] + 4):
        fig = visualize.plot_poses_3d(poses, camera_space=True)
        visualize.figure_to_array(fig)
        ax = fig.axes[0]
        for axis in (ax.xaxis, ax.yaxis, ax.zaxis):
            ticks = [boxes[t] for t in axis.get_ticklabels() if t in boxes]
            assert 3 <= len(ticks) <= 5, axis.label.get_text()
            for i, box in enumerate(ticks + [boxes[axis.label]]):
                assert not any(box.overlaps(other) for other in ticks[i + 1 :]), (
                    axis.label.get_text(), [t.get_text() for t in axis.get_ticklabels()]
                )  # fmt: skip


def test_3d_score_labels_do_not_overlap(drawn_text_boxes):
    """Side by side, each label was over the person's top joint, often a raised wrist on
    the neighbour's side: "0.90" and "0.50" printed as "0.90.50"; 30 people's labels were
    one smear."""
    raised = standing_pose3d() * [0.4, 1, 1]  # a slim person
    raised[LCR13.index("left_wrist")] = raised[LCR13.index("head")] + [0.15, -0.2, 0]
    mirrored = raised * [-1, 1, 1]  # the raised wrist towards the first person
    crowd = np.repeat(standing_pose3d()[None], 30, axis=0)
    for poses, scores in (([raised, mirrored], [0.9, 0.5]), (crowd, np.linspace(9, 0.1, 30))):
        fig = visualize.plot_poses_3d(np.stack(poses), scores=scores)
        drawn_text_boxes.clear()
        visualize.figure_to_array(fig)
        labels = [drawn_text_boxes[t] for t in fig.axes[0].texts if t in drawn_text_boxes]
        for i, box in enumerate(labels):
            assert not any(box.overlaps(other) for other in labels[i + 1 :])
        assert len(labels) == 2 if len(poses) == 2 else len(labels) >= 4, len(labels)
        assert fig.axes[0].texts[0].get_visible(), "the highest score is labelled"


def test_people_without_a_finite_3d_joint_are_not_placed_and_said_so():
    """A person whose camera-space pose is NaN (no translation) was drawn nowhere, yet
    counted in the title ("3 people") and the page's legend, and kept an empty slot; then
    the title said "2 people" of the 3 of the 2D overlay."""
    poses = np.stack([np.full((13, 3), np.nan), standing_pose3d(), standing_pose3d()])
    fig = visualize.plot_poses_3d(poses, scores=[3.0, 2.0, 1.0])
    assert fig.axes[0].get_title() == "2 people, 1 not placed"
    people, placed = visualize.scene_poses_3d(poses)
    assert people.tolist() == [1, 2] and placed[0, :, 0].mean() == pytest.approx(0, abs=1e-6)
    result = predict.PoseResult(
        joint_set="lcr13",
        poses2d=np.stack([pose2d_at(20, 20), pose2d_at(40, 20), pose2d_at(60, 20)]),
        poses3d=poses,
        scores=np.float32([3.0, 2.0, 1.0]),
        image_size=(48, 80),
        poses3d_cam=poses + [0, 0, 4],
    )
    page = visualize.html_page(np.zeros((48, 80, 3), np.uint8), result)
    assert "person 0" not in page and "person 1" in page and "person 2" in page


def test_joints_take_their_sides_colour():
    """A left joint is drawn lighter than the person's colour, a right one darker, the
    head in the colour itself (the overlay's disc over the joint)."""
    color = np.array(visualize.PERSON_COLORS[0])
    lighter = color + 0.45 * (255 - color)  # the module docstring's tint and shade
    darker = 0.6 * color
    expected = {"left_wrist": lighter, "right_wrist": darker, "head": color}
    image = np.zeros((100, 120, 3), np.uint8)
    poses = pose2d_at(60, 50)[None]
    out = visualize.draw_poses_2d(image, poses, line_width=1, joint_radius=3)
    for name, rgb in expected.items():
        x, y = np.round(poses[0, LCR13.index(name)]).astype(int)
        np.testing.assert_allclose(out[y, x], rgb, atol=1, err_msg=name)


def test_draw_result_writes_each_persons_score():
    """`draw_result` (predict.py's overlays) labels every person with their score."""
    image = np.full((100, 120, 3), 255, np.uint8)
    result = predict.PoseResult(
        joint_set="lcr13",
        poses2d=pose2d_at(60, 60)[None],
        poses3d=standing_pose3d()[None],
        scores=np.array([0.5], np.float32),
        image_size=(100, 120),
    )
    drawn = visualize.draw_result(image, result)
    bare = visualize.draw_poses_2d(image, result.poses2d, line_width=3)
    above = int(result.poses2d[0, :, 1].min()) - 4
    assert (drawn[:above] != 255).any(-1).sum() > 20, "a label above the head"
    assert not (bare[:above] != 255).any()


def test_a_label_in_an_image_too_short_for_it_below_and_above_stays_inside():
    """In an image shorter than two labels, a label that fits neither above nor below
    its joint is moved up to end at the image's bottom, not cut."""
    head = np.full((1, 13, 2), np.nan)
    head[0, LCR13.index("head")] = [80.0, 12.0]
    tall = _label_pixels(np.full((120, 160, 3), 255, np.uint8), head + [0, 48], scores=[12.34])
    short = _label_pixels(np.full((24, 160, 3), 255, np.uint8), head, scores=[12.34])
    assert short > 0.9 * tall, (short, tall)
