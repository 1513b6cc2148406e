"""2D skeleton overlays and 3D pose plots of detected people (LCR-Net++ Fig. 1, 5, 10).

`draw_poses_2d` draws with PIL (a few milliseconds per frame: fit for videos);
`plot_poses_3d` makes a matplotlib figure without pyplot (no global state, Agg canvas,
headless); `html_page` makes a self-contained page with the overlay and a rotatable
WebGL 3D view (the vendored regl library, `lcrnet_jax/assets/`), and `VideoPage` the
same page for a video's frames, played back or stepped with a slider. Each person has one
colour in all of them, from `PERSON_COLORS`; the person's left limbs are a lighter tint
of it, the right limbs a darker shade, the torso and head the colour itself. 3D poses
are in camera axes (X right, Y down, Z forward) and drawn with the head up: camera-space
poses (`PoseResult.poses3d_cam`) where they stand in one scene, torso-centred ones side
by side along X (in the order of their position in the image when given).
"""

from __future__ import annotations

import base64
import dataclasses
import html
import io
import json
import math
import os
import pathlib

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator
from matplotlib.transforms import Bbox
from mpl_toolkits.mplot3d import proj3d
from PIL import Image, ImageDraw, ImageFont

from lcrnet_jax import skeleton
from lcrnet_jax.data.atomic import atomic_path, write_text
from lcrnet_jax.data.images import to_rgb
from lcrnet_jax.geometry import is_whole
from lcrnet_jax.predict.canvas import PoseResult

_ASSETS = pathlib.Path(__file__).resolve().parent / "assets"
GROUND_TRUTH_COLOR = (0.5, 0.5, 0.5)
PERSON_COLORS = (
    (31, 119, 180),
    (255, 127, 14),
    (44, 160, 44),
    (214, 39, 40),
    (148, 103, 189),
    (140, 86, 75),
    (227, 119, 194),
    (188, 189, 34),
    (23, 190, 207),
    (127, 127, 127),
)
"""RGB colour of person i is PERSON_COLORS[i % 10] (the tab10 palette)."""
UNTRACKED_COLOR = (200, 200, 200)
"""RGB colour of a detection that no track takes (track id -1)."""

MAX_OVERLAY_SIDE = 4096
"""Longest side in pixels of `save_visualizations`' overlay: a larger photo is drawn
scaled down (a 95-megapixel photo drawn whole took 2.3 GB and made a 7.8 MB PNG)."""
_LEFT_TINT = 0.45  # fraction of white mixed into left limbs
_RIGHT_SHADE = 0.4  # fraction of black mixed into right limbs


def _person_color(key: int) -> tuple[int, int, int]:
    """The colour of person or track `key`; -1 (untracked): `UNTRACKED_COLOR`."""
    return UNTRACKED_COLOR if key < 0 else PERSON_COLORS[key % len(PERSON_COLORS)]


def limb_sides(joint_set: str | skeleton.JointSet) -> tuple[str, ...]:
    """Side of each bone of a joint set: "left", "right" or "center" (both ends' names)."""
    js = skeleton.get_joint_set(joint_set)
    sides = []
    for a, b in js.bones:
        names = (js.joints[a], js.joints[b])
        if all(n.startswith("left_") for n in names):
            sides.append("left")
        elif all(n.startswith("right_") for n in names):
            sides.append("right")
        else:
            sides.append("center")
    return tuple(sides)


def side_color(color: tuple[int, int, int], side: str) -> tuple[int, int, int]:
    """The person colour for one side: lighter for "left", darker for "right"."""
    c = np.asarray(color, np.float64)
    if side == "left":
        c = c + _LEFT_TINT * (255.0 - c)
    elif side == "right":
        c = c * (1.0 - _RIGHT_SHADE)
    return tuple(int(round(v)) for v in c)


def _joint_side(name: str) -> str:
    return "left" if name.startswith("left_") else "right" if name.startswith("right_") else ""


def _people_mask(poses: np.ndarray, valid, num_joints: int, dims: int, what: str) -> np.ndarray:
    if poses.ndim != 3 or poses.shape[1:] != (num_joints, dims):
        raise ValueError(f"{what} must be (P, {num_joints}, {dims}), got shape {poses.shape}")
    if valid is None:
        return np.ones(len(poses), bool)
    valid = np.asarray(valid, bool)
    if valid.shape != (len(poses),):
        raise ValueError(f"valid must be ({len(poses)},) bool, got shape {valid.shape}")
    return valid


def _check_per_person(name: str, values, people: int) -> None:
    """ValueError unless `values` is None or holds one value per person, (people,)."""
    if values is not None and np.shape(values) != (people,):
        raise ValueError(f"{name} must be ({people},), got shape {np.shape(values)}")


def _hide_joints(poses: np.ndarray, visible, name: str) -> np.ndarray:
    """`poses` (P, J, D) with the joints that `visible` ((P, J) bool, or None for all)
    marks False set to NaN."""
    if visible is None:
        return poses
    visible = np.asarray(visible, bool)
    if visible.shape != poses.shape[:2]:
        raise ValueError(f"{name} must be {poses.shape[:2]} bool, got shape {visible.shape}")
    return np.where(visible[..., None], poses, np.nan)


def _check_int(name: str, value, low: int, high: int | None = None) -> None:
    """ValueError unless `value` is an int (numpy integers too, not a bool) in [low, high]."""
    if not (is_whole(value) and low <= value and (high is None or value <= high)):
        rule = f">= {low}" if high is None else f"from {low} to {high}"
        raise ValueError(f"{name} must be an int {rule}, got {value!r}")


def _as_rgb(image) -> np.ndarray:
    if isinstance(image, Image.Image):
        return to_rgb(image)
    image = np.asarray(image)
    if image.dtype != np.uint8:
        raise ValueError(f"image must be uint8, got {image.dtype}")
    if image.ndim == 2:
        return np.repeat(image[..., None], 3, axis=-1)
    if image.ndim != 3 or image.shape[-1] not in (1, 3, 4):
        raise ValueError(f"image must be (H, W), (H, W, 1|3|4) uint8, got shape {image.shape}")
    if image.shape[-1] == 4:  # transparent pixels white, as the network saw them
        return to_rgb(Image.fromarray(image, "RGBA"))
    return image if image.shape[-1] == 3 else np.repeat(image, 3, axis=-1)


def draw_poses_2d(
    image,
    poses2d,
    *,
    joint_set: str | skeleton.JointSet = "lcr13",
    valid=None,
    visible=None,
    scores=None,
    ids=None,
    line_width: int | None = None,
    joint_radius: int | None = None,
) -> np.ndarray:
    """Skeletons drawn over an image.

    Args:
      image: (H, W, 3) uint8 RGB (grayscale (H, W) and RGBA are converted) or a PIL image.
      poses2d: (P, J, 2) pixels of `image` (x right, y down, pixel (i, j) covering
        [i, i+1) x [j, j+1)); joints with a non-finite coordinate are not drawn.
      joint_set: the poses' joint set (bones and left/right sides).
      valid: (P,) bool, people to draw; None for all.
      visible: (P, J) bool, joints to draw (e.g. a record's `people/visible`: its unknown
        joints are zeros), with their bones; None for all the finite ones.
      scores: (P,) scores written next to each person's top joint (inside the image, in
        letters that scale with the image, outlined; a label that would cover an earlier
        person's, a higher score's in PPI's order, is left out); None for none.
      ids: (P,) int track ids: person p is drawn in colour `ids[p]` and labelled
        "#id" next to its top joint, in grey without a label when untracked (-1); None
        colours people by their index.
      line_width: bone width in pixels (>= 1); None scales with the image (>= 2).
      joint_radius: joint disc radius in pixels (>= 1); None scales with the line width.

    Returns:
      (H, W, 3) uint8 RGB copy of the image with the skeletons.
    """
    js = skeleton.get_joint_set(joint_set)
    canvas = Image.fromarray(np.ascontiguousarray(_as_rgb(image)))
    poses2d = np.asarray(poses2d, np.float64)
    keep = _people_mask(poses2d, valid, js.num_joints, 2, "poses2d")
    poses2d = _hide_joints(poses2d, visible, "visible")
    _check_per_person("scores", scores, len(poses2d))
    _check_per_person("ids", ids, len(poses2d))
    for name, size in (("line_width", line_width), ("joint_radius", joint_radius)):
        if size is not None:
            _check_int(name, size, 1)
    width = line_width or max(2, round(min(canvas.size) / 150))
    radius = joint_radius or max(2, round(0.8 * width))
    font = ImageFont.load_default(size=max(10, round(min(canvas.size) / 40)))
    draw = ImageDraw.Draw(canvas)
    sides = limb_sides(js)
    labelled: list[tuple[float, float, float, float]] = []
    for p in np.flatnonzero(keep):
        color = _person_color(p if ids is None else int(ids[p]))
        pose = poses2d[p]
        finite = np.isfinite(pose).all(-1)
        for (a, b), side in zip(js.bones, sides, strict=True):
            if finite[a] and finite[b]:
                xy = [tuple(pose[a]), tuple(pose[b])]
                draw.line(xy, fill=side_color(color, side), width=width)
        for j in np.flatnonzero(finite):
            x, y = pose[j]
            fill = side_color(color, _joint_side(js.joints[j]))
            draw.ellipse([x - radius, y - radius, x + radius, y + radius], fill=fill)
        labels = [] if ids is None or ids[p] < 0 else [f"#{int(ids[p])}"]
        labels += [] if scores is None else [f"{float(scores[p]):.2f}"]
        if labels and finite.any():
            top = np.flatnonzero(finite)[np.argmin(pose[finite, 1])]
            _draw_label(
                draw, " ".join(labels), pose[top], radius, color, canvas.size, font, labelled
            )
    return np.asarray(canvas)


def _draw_label(
    draw, text: str, joint, radius: int, color, size: tuple[int, int], font, taken: list
) -> None:
    """`text` above and right of the `joint` (x, y) pixels, below it where there is no
    room above, moved inside the image of `size` (W, H) pixels; outlined in black or
    white, whichever stands out from `color`. Left out where it would cover one of the
    `taken` label boxes (x1, y1, x2, y2), to which it adds its own."""
    stroke = max(1, round(font.size / 10))
    left, top, right, bottom = draw.textbbox((0, 0), text, font=font, stroke_width=stroke)
    x = min(joint[0] + radius, size[0] - (right - left))
    y = joint[1] - 2 * radius - (bottom - top)
    if y < 0:
        y = min(joint[1] + 2 * radius, size[1] - (bottom - top))
    x, y = max(x, 0), max(y, 0)
    box = (x, y, x + right - left, y + bottom - top)
    if any(box[0] < b[2] and b[0] < box[2] and box[1] < b[3] and b[1] < box[3] for b in taken):
        return
    taken.append(box)
    outline = (0, 0, 0) if np.dot(color, (0.299, 0.587, 0.114)) > 128 else (255, 255, 255)
    draw.text(
        (x - left, y - top), text, fill=color, font=font, stroke_width=stroke,
        stroke_fill=outline,
    )  # fmt: skip


def scene_poses_3d(
    poses3d,
    *,
    joint_set: str | skeleton.JointSet = "lcr13",
    valid=None,
    image_x=None,
    spacing: float | None = None,
    camera_space: bool = False,
) -> tuple[np.ndarray, np.ndarray]:
    """Where the 3D views place each person: where they stand in camera space, or
    torso-centred poses side by side along X.

    Args:
      poses3d, joint_set, valid, image_x, spacing, camera_space: as in `plot_poses_3d`.

    Returns:
      (people (N,) int indices into `poses3d` of the people drawn (valid, with a finite
      joint), in drawing order; poses (N, J, 3) metres, camera axes, shifted along X by
      `spacing` per slot unless `camera_space`).
    """
    js = skeleton.get_joint_set(joint_set)
    poses3d = np.asarray(poses3d, np.float64)
    keep = _people_mask(poses3d, valid, js.num_joints, 3, "poses3d")
    finite = np.isfinite(poses3d).all(-1)  # (P, J)
    people = np.flatnonzero(keep & finite.any(-1))
    if camera_space:
        return people, poses3d[people]
    if image_x is not None:
        image_x = np.asarray(image_x, np.float64)
        _check_per_person("image_x", image_x, len(poses3d))
        people = people[np.argsort(image_x[people], kind="stable")]
    if spacing is None:
        widths = [np.ptp(poses3d[p, finite[p], 0]) for p in people]
        spacing = max(widths, default=0.0) + 0.3
    shift = np.zeros((len(people), 1, 3))
    shift[:, 0, 0] = np.arange(len(people)) * spacing
    return people, poses3d[people] + shift


def plot_poses_3d(
    poses3d,
    *,
    joint_set: str | skeleton.JointSet = "lcr13",
    valid=None,
    visible=None,
    scores=None,
    image_x=None,
    spacing: float | None = None,
    size: tuple[float, float] = (5.0, 4.0),
    dpi: int = 100,
    elevation: float = 15.0,
    azimuth: float = -75.0,
    camera_space: bool = False,
    ground_truth=None,
    ground_truth_visible=None,
) -> Figure:
    """A 3D plot of every person's pose, head up: in one scene, or side by side.

    Args:
      poses3d: (P, J, 3) metres, camera axes (X right, Y down, Z forward), torso-centred,
        or in camera space with `camera_space`; joints with a non-finite coordinate are
        not drawn.
      joint_set: the poses' joint set.
      valid: (P,) bool, people to draw; None for all.
      visible: (P, J) bool, joints to draw, with their bones; None for all the finite ones.
      scores: (P,) scores written above each person's torso; a label that would cover one
        of a higher score is left out; None for none.
      image_x: (P,) horizontal position of each person in the image (e.g. pixels): the
        people are placed from left to right in this order; None keeps their order.
      spacing: metres between neighbours' torso centres; None: the widest person + 0.3.
      size: figure (width, height) in inches.
      dpi: dots per inch of the rendered figure.
      elevation, azimuth: viewpoint in degrees (matplotlib's `view_init`).
      camera_space: draw the poses where they are (one scene) instead of side by side;
        `image_x` and `spacing` are then ignored.
      ground_truth: (Q, J, 3) metres, camera space, the true poses, drawn dashed grey in
        the same scene (with `camera_space` only); None for none.
      ground_truth_visible: (Q, J) bool, the true joints to draw (e.g. False for all of a
        record's people without 3D, whose joints are zeros); None for all the finite ones.

    Returns:
      A matplotlib `Figure` on an Agg canvas (see `figure_to_array`, `Figure.savefig`).
    """
    js = skeleton.get_joint_set(joint_set)
    if ground_truth is not None and not camera_space:
        raise ValueError("ground_truth is drawn in camera space only: pass camera_space=True")
    poses3d = np.asarray(poses3d, np.float64)
    given = int(_people_mask(poses3d, valid, js.num_joints, 3, "poses3d").sum())
    people, placed = scene_poses_3d(
        _hide_joints(poses3d, visible, "visible"), joint_set=js, valid=valid,
        image_x=image_x, spacing=spacing, camera_space=camera_space,
    )  # fmt: skip
    _check_per_person("scores", scores, len(poses3d))
    finite = np.isfinite(placed).all(-1)  # (N, J)

    fig = Figure(figsize=size, dpi=dpi)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(projection="3d")
    sides = limb_sides(js)
    points, labels = [], []
    for p, pose, ok in zip(people, placed, finite, strict=True):
        color = PERSON_COLORS[p % len(PERSON_COLORS)]
        xyz = np.stack([pose[:, 0], pose[:, 2], -pose[:, 1]])  # plot axes: X, Z, -Y (up)
        for (a, b), side in zip(js.bones, sides, strict=True):
            if ok[a] and ok[b]:
                rgb = np.asarray(side_color(color, side)) / 255.0
                ax.plot(*xyz[:, [a, b]], color=rgb, linewidth=2)
        joint_rgb = [np.asarray(side_color(color, _joint_side(n))) / 255.0 for n in js.joints]
        ax.scatter(*xyz[:, ok], c=np.asarray(joint_rgb)[ok], s=8, depthshade=False)
        if scores is not None:
            torso = [j for j in js.torso if ok[j]] or np.flatnonzero(ok)
            text = ax.text(
                *xyz[:2, torso].mean(1), xyz[2, ok].max() + 0.15, f"{float(scores[p]):.2f}",
                color=np.asarray(color) / 255.0, ha="center", va="bottom",
            )  # fmt: skip
            labels.append((float(scores[p]), text))
        points.append(xyz[:, ok])
    if ground_truth is not None:
        ground_truth = np.asarray(ground_truth, np.float64)
        _people_mask(ground_truth, None, js.num_joints, 3, "ground_truth")
        ground_truth = _hide_joints(ground_truth, ground_truth_visible, "ground_truth_visible")
        for pose in ground_truth:
            xyz, ok = np.stack([pose[:, 0], pose[:, 2], -pose[:, 1]]), np.isfinite(pose).all(-1)
            for a, b in js.bones:
                if ok[a] and ok[b]:
                    ax.plot(*xyz[:, [a, b]], color=GROUND_TRUTH_COLOR, linewidth=1.5, ls="--")
            points.append(xyz[:, ok])
    _equal_axes(ax, np.concatenate(points, axis=1) if points else np.zeros((3, 0)))
    ax.view_init(elev=elevation, azim=azimuth)
    for axis in (ax.xaxis, ax.yaxis, ax.zaxis):  # few, small labels: the depth axis is short
        axis.set_major_locator(MaxNLocator(4))
    ax.tick_params(labelsize=8)
    ax.set_xlabel("X (m)")
    ax.set_ylabel("Z (m)", labelpad=12)
    ax.set_zlabel("-Y (m)")
    title = f"{len(people)} {'person' if len(people) == 1 else 'people'}"
    if given > len(people):  # e.g. a 2D pose the camera fit cannot place
        title += f", {given - len(people)} not placed"
    ax.set_title(title + ("" if ground_truth is None else " (dashed grey: ground truth)"))
    _hide_covering_labels(fig, labels)
    return fig


def _hide_covering_labels(fig: Figure, labels: list) -> None:
    """Hides each of the (score, 3D text) `labels` that would cover, on the rendered
    figure, one of a higher score."""
    if len(labels) < 2:
        return
    fig.draw_without_rendering()  # places the axes and their projection
    ax, renderer = fig.axes[0], fig.canvas.get_renderer()
    kept = []
    for _, text in sorted(labels, key=lambda label: -label[0]):
        x, y, _ = proj3d.proj_transform(*text.get_position_3d(), ax.M)
        x, y = ax.transData.transform((x, y))
        width, height = text.get_window_extent(renderer).size
        box = Bbox.from_bounds(x - width / 2 - 2, y, width + 4, height)  # 2 px apart
        if any(box.overlaps(other) for other in kept):
            text.set_visible(False)
        else:
            kept.append(box)


def _equal_axes(ax, points: np.ndarray) -> None:
    """Same scale on the three axes around (3, N) points (a 2 m cube when empty)."""
    if points.shape[1] == 0:
        lo, hi = -np.ones(3), np.ones(3)
    else:
        lo, hi = points.min(axis=1), points.max(axis=1)
    center, half = (lo + hi) / 2, max(float(np.max(hi - lo)) / 2, 0.5)
    ax.set_xlim(center[0] - half, center[0] + half)
    ax.set_ylim(center[1] - half, center[1] + half)
    ax.set_zlim(center[2] - half, center[2] + half)
    ax.set_box_aspect((1, 1, 1))


def figure_to_array(fig: Figure) -> np.ndarray:
    """Renders a figure made by `plot_poses_3d` to an (H, W, 3) uint8 RGB array."""
    canvas = fig.canvas if isinstance(fig.canvas, FigureCanvasAgg) else FigureCanvasAgg(fig)
    canvas.draw()
    return np.asarray(canvas.buffer_rgba())[..., :3].copy()


def draw_result(image, result: PoseResult, *, ids=None) -> np.ndarray:
    """`draw_poses_2d` of a `PoseResult`'s people over `image` (H, W, 3) uint8 RGB;
    `ids`: (P,) track ids (colours and labels), or None.

    Raises ValueError if `image` is not the size of the image the result was computed on.
    """
    image = _as_rgb(image)
    _check_image_size(image, result)
    return draw_poses_2d(
        image, result.poses2d, joint_set=result.joint_set, scores=result.scores, ids=ids
    )


def _check_image_size(image: np.ndarray, result: PoseResult) -> None:
    if image.shape[:2] != tuple(result.image_size):
        raise ValueError(
            f"image is {image.shape[0]}x{image.shape[1]} pixels, but the result is of a "
            f"{result.image_size[0]}x{result.image_size[1]} image (a photo turned by its "
            "EXIF orientation? read it with lcrnet_jax.predict.load_image)"
        )


def _scaled_down(
    image: np.ndarray, result: PoseResult, scale: float
) -> tuple[np.ndarray, PoseResult]:
    """(image, result) of the (H, W, 3) uint8 image the result was computed on (checked),
    scaled by `scale` when it is < 1 (bilinear; the 2D poses and image size with it)."""
    _check_image_size(image, result)
    if scale >= 1:
        return image, result
    height, width = (max(1, round(side * scale)) for side in image.shape[:2])
    picture = Image.fromarray(image).resize((width, height), Image.BILINEAR)
    result = dataclasses.replace(result, poses2d=result.poses2d * scale, image_size=(height, width))
    return np.asarray(picture), result


def _picture_uri(image, result: PoseResult, *, ids=None, width: int, quality: int) -> str:
    """`draw_result` as a JPEG data URI, the image first scaled down to at most `width`
    pixels wide (the labels keep their size)."""
    image = _as_rgb(image)
    image, result = _scaled_down(image, result, width / image.shape[1])
    return _data_uri(draw_result(image, result, ids=ids), "JPEG", quality=quality)


def save_visualizations(
    prefix: str | os.PathLike, image, result: PoseResult
) -> tuple[pathlib.Path, pathlib.Path]:
    """Writes `<prefix>_2d.png` (skeletons over the image, scaled down to
    `MAX_OVERLAY_SIDE` pixels at most) and `<prefix>_3d.png` (the people in camera space
    when the result has `poses3d_cam`, else side by side).

    Each file is written under a temporary name and renamed when complete.

    Args:
      prefix: output path without the suffix; its folder must exist.
      image: (H, W, 3) uint8 RGB image the result was computed on (original pixels).
      result: the image's `PoseResult`.

    Returns:
      (path of the 2D overlay, path of the 3D plot).
    """
    prefix = pathlib.Path(prefix)
    path_2d = prefix.with_name(prefix.name + "_2d.png")
    path_3d = prefix.with_name(prefix.name + "_3d.png")
    image = _as_rgb(image)
    overlay = draw_result(*_scaled_down(image, result, MAX_OVERLAY_SIDE / max(image.shape[:2])))
    with atomic_path(path_2d) as tmp:
        Image.fromarray(overlay).save(tmp, format="PNG")
    fig = plot_poses_3d(
        result.poses3d if result.poses3d_cam is None else result.poses3d_cam,
        joint_set=result.joint_set,
        scores=result.scores,
        image_x=result.poses2d[..., 0].mean(axis=-1),
        camera_space=result.poses3d_cam is not None,
    )
    with atomic_path(path_3d) as tmp:
        fig.savefig(tmp, format="png")
    return path_2d, path_3d


def _page_people(result: PoseResult, ids=None) -> list[dict]:
    """The people of one picture as the viewer page draws them: 3D joints (metres,
    camera axes; null where not finite), colours (by track id when `ids` is given, else
    by index, as `draw_poses_2d`), label and score."""
    js = skeleton.get_joint_set(result.joint_set)
    camera_space = result.poses3d_cam is not None
    people, placed = scene_poses_3d(
        result.poses3d_cam if camera_space else result.poses3d,
        joint_set=js,
        image_x=result.poses2d[..., 0].mean(axis=-1),
        camera_space=camera_space,
    )
    sides = limb_sides(js)
    out = []
    for p, pose in zip(people, placed, strict=True):
        key = int(p) if ids is None else int(ids[p])
        color = _person_color(key)
        out.append(
            {
                "label": f"person {key}" if ids is None else f"#{key}" if key >= 0 else "untracked",
                "score": float(result.scores[p]),
                "color": [c / 255 for c in color],
                "joints": [
                    np.round(xyz, 4).tolist() if np.isfinite(xyz).all() else None for xyz in pose
                ],
                "bone_colors": [[c / 255 for c in side_color(color, s)] for s in sides],
                "joint_colors": [
                    [c / 255 for c in side_color(color, _joint_side(n))] for n in js.joints
                ],
            }
        )
    return out


def _data_uri(image: np.ndarray, image_format: str, **options) -> str:
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format=image_format, **options)
    encoded = base64.b64encode(buffer.getvalue()).decode("ascii")
    return f"data:image/{image_format.lower()};base64,{encoded}"


def _viewer_page(frames: list[dict], *, joint_set: str, camera_space: bool, title: str) -> str:
    """viewer.html filled in with `frames` [{"time": s, "image": data URI, "people":
    `_page_people`, and for a video's "index": its frame number}] and the regl library."""
    data = {
        "bones": [list(bone) for bone in skeleton.get_joint_set(joint_set).bones],
        "camera_space": camera_space,
        "frames": frames,
    }
    replacements = {
        "__DATA__": json.dumps(data).replace("</", "<\\/"),
        "__TITLE__": html.escape(title),
        "/*REGL*/": (_ASSETS / "regl.min.js").read_text(),  # last: no token is searched in it
    }
    page = (_ASSETS / "viewer.html").read_text()
    for key, value in replacements.items():
        page = page.replace(key, value)
    return page


def html_page(image, result: PoseResult, *, title: str = "") -> str:
    """One self-contained HTML page of an image's people: the 2D overlay (`draw_result`,
    inlined as a JPEG at most 960 pixels wide, the page showing it at most 640) and a
    WebGL 3D view (drag to rotate, wheel to zoom) of all of them, in camera space when
    the result has `poses3d_cam`, else side by side (`scene_poses_3d`). Nothing is
    fetched at view time: the regl library is inlined too.

    Args:
      image: (H, W, 3) uint8 RGB image the result was computed on (original pixels).
      result: the image's `PoseResult`.
      title: the page's title (e.g. the input's name).
    """
    frame = {
        "time": 0.0,
        "image": _picture_uri(image, result, width=960, quality=85),
        "people": _page_people(result),
    }
    return _viewer_page(
        [frame],
        joint_set=result.joint_set,
        camera_space=result.poses3d_cam is not None,
        title=title or f"{result.num_people} people",
    )


def save_html(path: str | os.PathLike, image, result: PoseResult, *, title: str = "") -> None:
    """Writes `html_page(image, result, title=title)` to `path` atomically."""
    write_text(path, html_page(image, result, title=title))


class VideoPage:
    """A self-contained HTML page of a video's people (`html_page` for videos): each
    frame's overlay and 3D view, played back at the video's pace or stepped with a
    slider; `#frame=N` after the page's address opens the video's frame N (0 first, as
    `add`'s index), or the last frame the page holds before it.

    Call `add` for each frame in order, then `save`. The page holds at most `max_frames`
    frames, evenly spaced: past that, every other frame is dropped and only every
    2nd, 4th, ... frame of the video is kept. Frames are JPEGs at most `width` pixels wide.
    """

    def __init__(
        self,
        *,
        fps: float,
        min_score: float = -np.inf,
        max_frames: int = 900,
        width: int = 480,
        quality: int = 75,
    ):
        """An empty page.

        Args:
          fps: the video's frames per second (the page's pace).
          min_score: the page draws the people scoring at least this.
          max_frames: the most frames the page holds (>= 1).
          width: the widest frame picture, pixels (>= 1).
          quality: JPEG quality of the frame pictures, 1-95.
        """
        if not (math.isfinite(fps) and fps > 0):
            raise ValueError(f"fps must be > 0, got {fps}")
        if max_frames < 1:
            raise ValueError(f"max_frames must be >= 1, got {max_frames}")
        _check_int("width", width, 1)
        _check_int("quality", quality, 1, 95)
        self.fps, self.min_score = fps, min_score
        self.max_frames, self.width, self.quality = max_frames, width, quality
        self.stride = 1  # frames of the video per frame of the page
        self._frames: list[dict] = []
        self._joint_set: str | None = None  # set by `add`
        self._camera_space = True

    def add(
        self, index: int, frame: np.ndarray, result: PoseResult, *, ids=None, time=None
    ) -> None:
        """Frame `index` of the video, (H, W, 3) uint8 RGB, its people, their (P,) track
        ids (or None) and its time in seconds (None: index / fps)."""
        if index % self.stride:
            return
        keep = np.asarray(result.scores) >= self.min_score
        result = result.scoring_at_least(self.min_score)
        ids = None if ids is None else np.asarray(ids)[keep]
        self._frames.append(
            {
                "time": round(index / self.fps if time is None else float(time), 4),
                "index": index,
                "image": _picture_uri(
                    frame, result, ids=ids, width=self.width, quality=self.quality
                ),
                "people": _page_people(result, ids),
            }
        )
        self._joint_set = result.joint_set
        self._camera_space &= result.poses3d_cam is not None
        if len(self._frames) > self.max_frames:
            self.stride *= 2
            self._frames = [f for f in self._frames if f["index"] % self.stride == 0]

    @property
    def num_frames(self) -> int:
        return len(self._frames)

    def html(self, *, title: str = "") -> str:
        """The page of the frames added so far."""
        if not self._frames:
            raise ValueError("a video page needs at least one frame")
        return _viewer_page(
            self._frames,
            joint_set=self._joint_set,
            camera_space=self._camera_space,
            title=title or f"{len(self._frames)} frames",
        )

    def save(self, path: str | os.PathLike, *, title: str = "") -> None:
        """Writes `html(title=title)` to `path` atomically."""
        write_text(path, self.html(title=title))
