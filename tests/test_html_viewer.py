"""The HTML viewer page in headless Chromium (Debian's package; `make browser` installs it)."""

import base64
import dataclasses
import io
import json
import re
import subprocess

import numpy as np
import pytest
from PIL import Image

from lcrnet_jax import predict, skeleton, visualize
from tests.test_visualize import pose2d_at, standing_pose3d

LCR13 = skeleton.get_joint_set("lcr13")
CHROMIUM = "/usr/bin/chromium"
# No network (the background services would try it), no GPU: WebGL through SwiftShader.
FLAGS = (
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--use-angle=swiftshader", "--enable-unsafe-swiftshader", "--window-size=900,600",
    "--virtual-time-budget=10000",
)  # fmt: skip
IMAGE_WIDTH = 320
VIEW_RIGHT = 12 + 480 + 2  # the 3D canvas is the page's first element: body margin + width
VIEW_BOTTOM = 38 + 480 + 2  # under the title; below it the hint and a video's controls


def _chromium(tmp_path, *args) -> str:
    command = [CHROMIUM, *FLAGS, f"--user-data-dir={tmp_path / 'profile'}", *args]
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=120)
    except FileNotFoundError as e:
        raise AssertionError(f"{CHROMIUM} is missing: run `make browser`") from e
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout


def _result(people: int, scores=(1.5, 0.7)) -> predict.PoseResult:
    """`people` (0-2) standing people in camera space, 4 and 5 m away."""
    p3 = standing_pose3d()
    offsets = np.float32([[-0.5, 0.0, 4.0], [0.6, 0.1, 5.0]])[:people]
    return predict.PoseResult(
        joint_set="lcr13",
        poses2d=np.reshape([pose2d_at(100 + 120 * i, 120) for i in range(people)], (-1, 13, 2)),
        poses3d=np.broadcast_to(p3, (people, 13, 3)),
        scores=np.float32(scores[:people]),
        image_size=(240, IMAGE_WIDTH),
        poses3d_cam=(p3 + offsets[:, None]).reshape(people, 13, 3),
    )


def _open(tmp_path, url: str, name: str) -> tuple[str, np.ndarray]:
    """The page's DOM after its scripts ran, and its screenshot."""
    dom = _chromium(tmp_path, "--dump-dom", url)
    shot = tmp_path / f"{name}.png"
    _chromium(tmp_path, f"--screenshot={shot}", url)
    return dom, np.asarray(Image.open(shot).convert("RGB"))


def _page(tmp_path, people: int):
    """A page with `people` people in camera space, its body tag and its screenshot."""
    path = tmp_path / f"people{people}.html"
    image = np.full((240, IMAGE_WIDTH, 3), 200, np.uint8)
    visualize.save_html(path, image, _result(people), title="t")
    dom, shot = _open(tmp_path, path.as_uri(), path.stem)
    return re.search(r"<body[^>]*>", dom).group(0), shot


def _coloured_pixels_in_the_3d_view(screenshot: np.ndarray) -> int:
    view = screenshot[:VIEW_BOTTOM, :VIEW_RIGHT].astype(int)  # the 3D canvas (grey grid, white)
    return int((view.max(-1) - view.min(-1) > 60).sum())


def test_the_page_draws_everyone_in_3d_without_errors(tmp_path):
    body, shot = _page(tmp_path, 2)
    assert 'data-drawn="1"' in body, body
    errors = json.loads(re.search(r'data-errors="([^"]*)"', body).group(1).replace("&quot;", '"'))
    assert errors == []
    empty_body, empty_shot = _page(tmp_path, 0)
    assert 'data-drawn="1"' in empty_body and 'data-errors="[]"' in empty_body
    assert _coloured_pixels_in_the_3d_view(shot) > 3000, "the people are drawn in 3D"
    assert _coloured_pixels_in_the_3d_view(empty_shot) < 100, "nothing but the grid"


def _one_standing_person() -> predict.PoseResult:
    """A 40 x 60 image's one person, standing, in LCR-13."""
    return predict.PoseResult(
        joint_set="lcr13",
        poses2d=pose2d_at(30, 20)[None],
        poses3d=standing_pose3d()[None],
        scores=np.array([1.0], np.float32),
        image_size=(40, 60),
    )


def test_the_page_is_self_contained():
    result = _one_standing_person()
    page = visualize.html_page(np.zeros((40, 60, 3), np.uint8), result, title="a <b>")
    assert "<title>a &lt;b&gt;</title>" in page
    assert "<script src" not in page
    data = json.loads(re.search(r"const DATA = (.*);\n", page).group(1))
    (frame,) = data["frames"]
    assert not data["camera_space"] and len(frame["people"]) == 1
    assert frame["image"].startswith("data:image/jpeg;base64,")
    np.testing.assert_allclose(frame["people"][0]["joints"], standing_pose3d(), atol=1e-4)


def test_the_pages_3d_view_colours_the_sides_as_the_overlay():
    """The 3D view's bones and joints: left ones lighter than the person's colour, right
    ones darker, the torso, hips and head the colour itself (as the 2D overlay)."""
    result = _one_standing_person()
    page = visualize.html_page(np.zeros((40, 60, 3), np.uint8), result)
    data = json.loads(re.search(r"const DATA = (.*);\n", page).group(1))
    (person,) = data["frames"][0]["people"]
    color = np.array(visualize.PERSON_COLORS[0]) / 255
    shade = {"left": color + 0.45 * (1 - color), "right": 0.6 * color, "": color}
    names = list(LCR13.joints)
    for (a, b), rgb in zip(data["bones"], person["bone_colors"], strict=True):
        side = {names[a].split("_")[0], names[b].split("_")[0]}
        side = side.pop() if len(side) == 1 and side <= {"left", "right"} else ""
        np.testing.assert_allclose(rgb, shade[side], atol=1 / 255, err_msg=(names[a], names[b]))
    for name, rgb in zip(names, person["joint_colors"], strict=True):
        side = name.split("_")[0] if name.startswith(("left_", "right_")) else ""
        np.testing.assert_allclose(rgb, shade[side], atol=1 / 255, err_msg=name)


def _picture(page: str, frame: int = 0) -> Image.Image:
    data = json.loads(re.search(r"const DATA = (.*);\n", page).group(1))
    uri = data["frames"][frame]["image"]
    return Image.open(io.BytesIO(base64.b64decode(uri.partition(",")[2])))


def test_a_page_holds_a_picture_of_the_size_it_shows():
    """A 4000x3000 photo's page inlined the overlay as a 27 MB PNG, shown 640 px wide,
    where its labels were 1-2 px tall."""
    rng = np.random.default_rng(0)
    photo = rng.integers(0, 256, (1500, 2000, 3), np.uint8)  # noise: as costly as a photo
    result = _result(2)
    result = dataclasses.replace(result, poses2d=result.poses2d * 6.25, image_size=(1500, 2000))
    page = visualize.html_page(photo, result)
    assert len(page) < 1_000_000, len(page)
    picture = _picture(page)
    assert (picture.format, picture.size) == ("JPEG", (960, 720))
    with pytest.raises(ValueError, match="image is 2000x1500 pixels, but the result is of a"):
        visualize.html_page(photo.transpose(1, 0, 2), result)
    with pytest.raises(ValueError, match="image is 2000x1500 pixels, but the result is of a"):
        visualize.VideoPage(fps=1.0).add(0, photo.transpose(1, 0, 2), result)


def test_a_video_page_steps_through_its_frames(tmp_path):
    """Frames 0-3 hold 2, 1, 0 and 1 people; the page keeps frames 0 and 2 (max_frames 2):
    #frame=N opens the video's frame N, or the last kept before it."""
    page = visualize.VideoPage(fps=10.0, max_frames=2)
    for index, people in enumerate((2, 1, 0, 1)):
        page.add(index, np.full((240, IMAGE_WIDTH, 3), 200, np.uint8), _result(people))
    path = tmp_path / "clip.html"
    page.save(path, title="clip")
    views = {n: _open(tmp_path, f"{path.as_uri()}#frame={n}", f"frame{n}") for n in (0, 3)}
    for (n, (dom, _)), kept in zip(views.items(), (0, 2), strict=True):
        body = re.search(r"<body[^>]*>", dom).group(0)
        assert 'data-drawn="1"' in body and 'data-errors="[]"' in body, body
        assert f"frame {kept} ({kept // 2 + 1} of 2 here), {kept / 10:.2f} s" in dom, n
        assert '<div id="controls">' in dom, "videos show their play button and slider"
    assert _coloured_pixels_in_the_3d_view(views[0][1]) > 3000, "frame 0: two people in 3D"
    beside = views[0][1][40:VIEW_BOTTOM, VIEW_RIGHT:].astype(int)
    assert (np.abs(beside - 200).max(-1) < 8).sum() > 20000, "the frame is beside the 3D view"
    assert _coloured_pixels_in_the_3d_view(views[3][1]) < 100, "frame 2: nobody"


def test_a_long_video_page_keeps_evenly_spaced_frames():
    page = visualize.VideoPage(fps=4.0, max_frames=4, width=160, min_score=1.0)
    frame = np.full((240, IMAGE_WIDTH, 3), 200, np.uint8)
    for index in range(10):
        page.add(index, frame, _result(2), ids=np.array([7, 3]))
    assert (page.num_frames, page.stride) == (3, 4)
    data = json.loads(re.search(r"const DATA = (.*);\n", page.html()).group(1))
    assert [f["time"] for f in data["frames"]] == [0.0, 1.0, 2.0]  # frames 0, 4 and 8
    assert all(f["image"].startswith("data:image/jpeg;base64,") for f in data["frames"])
    (person,) = data["frames"][0]["people"]  # the person scoring 0.7 < min_score is left out
    assert person["label"] == "#7" and person["score"] == 1.5
    assert person["color"] == [c / 255 for c in visualize.PERSON_COLORS[7]]
    page = visualize.VideoPage(fps=4.0, width=160, min_score=1.0)
    page.add(0, frame, _result(2), ids=np.array([-1, 3]))  # a detection no track takes
    data = json.loads(re.search(r"const DATA = (.*);\n", page.html()).group(1))
    (person,) = data["frames"][0]["people"]
    assert person["label"] == "untracked"
    assert person["color"] == [c / 255 for c in visualize.UNTRACKED_COLOR]
    with pytest.raises(ValueError, match="fps must be > 0, got 0.0"):
        visualize.VideoPage(fps=0.0)
    with pytest.raises(ValueError, match="a video page needs at least one frame"):
        visualize.VideoPage(fps=25.0).html()
