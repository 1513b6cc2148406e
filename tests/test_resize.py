"""The one input scale (`data.resize`) shared by training, evaluation and prediction."""

import io

import numpy as np
import pytest
from PIL import Image

from lcrnet_jax.data import pipeline
from lcrnet_jax.data import resize as resize_lib
from lcrnet_jax.data.images import to_rgb

PAPER = resize_lib.Resize(800, 1333)


def _record(height, width):
    rng = np.random.default_rng(0)
    joints2d = rng.uniform(0, min(height, width), (1, 17, 2)).astype(np.float32)
    return {
        "image": np.zeros((height, width, 3), np.uint8),
        "image_id": "x",
        "intrinsics": np.zeros(4, np.float32),
        "people": {
            "joints2d": joints2d,
            "joints3d": np.zeros((1, 17, 3), np.float32),
            "visible": np.ones((1, 17), bool),
            "has_3d": np.zeros(1, bool),
            "box": np.zeros((1, 4), np.float32),
        },
    }


def test_short_side_800_long_side_capped_at_1333():
    assert PAPER.scale(480, 640) == pytest.approx(800 / 480)  # 4:3 -> 800 x 1066
    assert PAPER.scale(720, 1280) == pytest.approx(1333 / 1280)  # 16:9 -> 749 x 1333
    assert PAPER.scale(1280, 720) == pytest.approx(1333 / 1280)  # portrait
    assert resize_lib.resized_size(720, 1280, PAPER.scale(720, 1280)) == (749, 1333)
    with pytest.raises(ValueError, match="short_side <= max_long_side"):
        resize_lib.Resize(900, 800)


def test_sides_and_buckets_are_whole_pixels():
    """A float side failed at the first image, deep inside `scale_into`."""
    for short, long in [(64.5, 96), (64, 96.0), (True, 96), (np.float64(64), 96)]:
        for make in (resize_lib.Resize, resize_lib.size_buckets):
            with pytest.raises(ValueError, match=r"^need ints 1 <= short_side <= max_long_side"):
                make(short, long)
    assert resize_lib.Resize(np.int64(64), np.int32(96)).buckets() == ((64, 64), (64, 96), (96, 64))
    assert resize_lib.checked_buckets([[64, 96], np.array([96, 64])]) == ((64, 96), (96, 64))
    for bucket in [(64.5, 96), (64, 0), (64, 96, 1), (True, 96), "64x96"]:
        with pytest.raises(ValueError, match=r"^buckets must be \(height, width\) ints >= 1"):
            resize_lib.checked_buckets([bucket])


def test_resized_sides_absorb_the_rounding_of_the_scale():
    """161 * (800 / 161) and 149 * (1333 / 149) are 799.99... and 1332.99... in floats."""
    assert resize_lib.resized_size(161, 200, PAPER.scale(161, 200)) == (800, 993)
    assert resize_lib.resized_size(100, 149, 1333 / 149) == (894, 1333)


def test_the_paper_buckets_and_an_image_scaled_below_one_pixel():
    assert PAPER.buckets() == ((800, 800), (800, 1088), (1088, 800), (800, 1344), (1344, 800))
    canvas, valid = resize_lib.scale_into(
        np.full((1, 1, 3), 9, np.uint8), scale=0.5, out_size=(4, 4)
    )
    assert valid == (1, 1) and canvas[0, 0].tolist() == [9, 9, 9] and not canvas[1:].any()


def test_buckets_hold_every_resized_image_and_clip_only_in_training():
    buckets = PAPER.buckets()
    for height, width in [(480, 640), (720, 1280), (1280, 720), (500, 500), (100, 3000)]:
        size = resize_lib.resized_size(height, width, PAPER.scale(height, width))
        bucket = resize_lib.pick_bucket(size, buckets)
        assert bucket[0] >= size[0] and bucket[1] >= size[1]
        smaller = [b for b in buckets if b[0] >= size[0] and b[1] >= size[1]]
        assert bucket[0] * bucket[1] == min(b[0] * b[1] for b in smaller)
    with pytest.raises(ValueError, match="no size bucket holds a 900x1500"):
        resize_lib.pick_bucket((900, 1500), buckets)
    assert resize_lib.pick_bucket((900, 1500), buckets, clip=True) == max(
        (b for b in buckets if b[1] > b[0]), key=lambda b: b[0] * b[1]
    )


def test_evaluation_and_training_use_the_paper_scale_in_buckets():
    small = resize_lib.Resize(80, 133)
    record = _record(72, 128)  # 16:9 -> long side capped: 75 x 133
    ex = pipeline.transform_record(
        record, index=0, image_size=None, src_joint_set="lcr17", resize=small
    )
    assert ex["scale"] == pytest.approx(133 / 128)
    assert ex["image_size"].tolist() == [74, 133]
    assert ex["image"].shape[:2] == resize_lib.pick_bucket((74, 133), small.buckets())
    np.testing.assert_allclose(
        ex["poses2d"][0], record["people"]["joints2d"][0][:13] * ex["scale"], rtol=1e-5
    )
    # Training: the same base scale times the jitter, in a bucket (cropped if needed).
    rng = np.random.default_rng(3)
    augment = pipeline.Augment(scale_range=(1.2, 1.2), flip_probability=0.0)
    tr = pipeline.transform_record(
        record, index=0, image_size=None, src_joint_set="lcr17", resize=small, rng=rng,
        augment=augment,
    )  # fmt: skip
    assert tr["scale"] == pytest.approx(1.2 * 133 / 128)
    assert tr["image"].shape[:2] in small.buckets()
    # A fixed canvas in evaluation: the paper scale unless the image would not fit.
    fixed = pipeline.transform_record(
        record, index=0, image_size=(64, 64), src_joint_set="lcr17", resize=small
    )
    assert fixed["scale"] == pytest.approx(0.5) and fixed["image"].shape[:2] == (64, 64)


def test_training_on_a_fixed_canvas_jitters_the_paper_scale_and_crops():
    """Only evaluation shrinks the scale to fit a fixed canvas; training keeps the paper
    scale (times the jitter) and crops."""
    small = resize_lib.Resize(80, 133)
    augment = pipeline.Augment(scale_range=(1.0, 1.0), flip_probability=0.0)
    ex = pipeline.transform_record(
        _record(72, 128), index=0, image_size=(64, 64), src_joint_set="lcr17", resize=small,
        rng=np.random.default_rng(0), augment=augment,
    )  # fmt: skip
    assert ex["scale"] == pytest.approx(133 / 128)  # not the 0.5 that fits the canvas
    assert ex["image"].shape[:2] == (64, 64) and ex["image_size"].tolist() == [64, 64]


def test_records_of_any_mode_decode_as_prediction_converts_files(tmp_path):
    """16-bit images were clipped to white by PIL's conversion, transparent pixels came
    out black: records now convert as `images.to_rgb` (prediction's `load_image`)."""
    gray = np.arange(48, dtype=np.uint8).reshape(6, 8) * 5
    rgba = np.zeros((6, 8, 4), np.uint8)
    rgba[:3] = (200, 100, 50, 255)  # the lower half transparent
    Image.fromarray(gray.astype(np.uint16) * 257).save(tmp_path / "wide.png")
    Image.fromarray(rgba).save(tmp_path / "rgba.png")
    for name in ("wide.png", "rgba.png"):
        encoded = (tmp_path / name).read_bytes()
        canvas, _ = resize_lib.scale_into(encoded, scale=1.0, out_size=(6, 8))
        with Image.open(tmp_path / name) as pil:
            np.testing.assert_array_equal(canvas, to_rgb(pil))
    wide, _ = resize_lib.scale_into(
        (tmp_path / "wide.png").read_bytes(), scale=1.0, out_size=(6, 8)
    )
    np.testing.assert_array_equal(wide[..., 0], gray)


def test_a_flipped_draft_decode_keeps_its_place():
    """1001 px wide JPEG bytes at 0.124: decoded at 1/8 size, 126 px (ceil of 125.1); the
    mirrored canvas equals the decoded array's (no draft), not shifted by the rounding."""
    ramp = np.round(np.tile((np.arange(1001) + 0.5)[None, :, None] / 1001 * 250, (64, 1, 3)))
    buffer = io.BytesIO()
    Image.fromarray(ramp.astype(np.uint8)).save(buffer, "JPEG", quality=100)
    decoded = np.asarray(Image.open(io.BytesIO(buffer.getvalue())).convert("RGB"))
    options = dict(scale=0.124, out_size=(8, 124), flip=True)
    (draft, size), (full, _) = (
        resize_lib.scale_into(image, **options) for image in (buffer.getvalue(), decoded)
    )
    row = slice(2, size[1] - 2)
    offset = (full[4, row, 0].astype(float) - draft[4, row, 0]).mean() / (250 / 1001 / 0.124)
    assert abs(offset) < 0.15  # network pixels; 0.93 before
