"""The HTML viewer page in headless Chromium (Debian's package; `make browser` installs it)."""

import json
import re
import subprocess

import numpy as np
from PIL import Image

from lcrnet_jax import predict, visualize
from tests.test_visualize import pose2d_at, standing_pose3d

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


def _chromium(tmp_path, *args) -> str:
    command = [CHROMIUM, *FLAGS, f"--user-data-dir={tmp_path / 'profile'}", *args]
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=120)
    except FileNotFoundError as e:
        raise AssertionError(f"{CHROMIUM} is missing: run `make browser`") from e
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout


def _page(tmp_path, people: int):
    """A page with `people` people in camera space, its DOM state and its screenshot."""
    p3 = standing_pose3d()
    offsets = np.float32([[-0.5, 0.0, 4.0], [0.6, 0.1, 5.0]])[:people]
    result = predict.PoseResult(
        joint_set="lcr13",
        poses2d=np.reshape([pose2d_at(100 + 120 * i, 120) for i in range(people)], (-1, 13, 2)),
        poses3d=np.broadcast_to(p3, (people, 13, 3)),
        scores=np.linspace(1.5, 0.7, people).astype(np.float32),
        image_size=(240, IMAGE_WIDTH),
        poses3d_cam=(p3 + offsets[:, None]).reshape(people, 13, 3),
    )
    path = tmp_path / f"people{people}.html"
    visualize.save_html(path, np.full((240, IMAGE_WIDTH, 3), 200, np.uint8), result, title="t")
    body = re.search(r"<body[^>]*>", _chromium(tmp_path, "--dump-dom", path.as_uri())).group(0)
    shot = tmp_path / f"people{people}.png"
    _chromium(tmp_path, f"--screenshot={shot}", path.as_uri())
    return body, np.asarray(Image.open(shot).convert("RGB"))


def _coloured_pixels_in_the_3d_view(screenshot: np.ndarray) -> int:
    view = screenshot[:, :VIEW_RIGHT].astype(int)  # the 3D canvas (grey grid, white)
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


def test_the_page_is_self_contained():
    result = predict.PoseResult(
        joint_set="lcr13",
        poses2d=pose2d_at(30, 20)[None],
        poses3d=standing_pose3d()[None],
        scores=np.array([1.0], np.float32),
        image_size=(40, 60),
    )
    page = visualize.html_page(np.zeros((40, 60, 3), np.uint8), result, title="a <b>")
    assert "<title>a &lt;b&gt;</title>" in page
    assert "<script src" not in page and "data:image/png;base64," in page
    data = json.loads(re.search(r"const DATA = (.*);\n", page).group(1))
    assert not data["camera_space"] and len(data["people"]) == 1
    np.testing.assert_allclose(data["people"][0]["joints"], standing_pose3d(), atol=1e-6)
