"""Tests of lcrnet_jax.predict.inputs."""

import io
import os

import numpy as np
import pytest
from PIL import Image

from lcrnet_jax import predict
from tests.test_images import GRAY, sixteen_bit_png
from tests.test_predictor import save

# Input handling.


def test_load_image_converts_gray_rgba_palette_and_exif(tmp_path):
    gray = np.arange(12, dtype=np.uint8).reshape(3, 4)
    rgb = predict.load_image(gray)
    assert rgb.shape == (3, 4, 3) and (rgb == gray[..., None]).all()
    rgba = np.zeros((2, 2, 4), np.uint8)
    rgba[0, 0] = (10, 20, 30, 255)  # opaque, kept; the others are transparent -> white
    out = predict.load_image(rgba)
    assert tuple(out[0, 0]) == (10, 20, 30) and (out[1, 1] == 255).all()
    assert predict.load_image(Image.new("L", (3, 2), 7)).shape == (2, 3, 3)
    palette = Image.fromarray(np.full((5, 7, 3), 90, np.uint8)).convert("P")
    assert predict.load_image(save(np.asarray(palette), tmp_path / "p.png")).shape == (5, 7, 3)
    # EXIF orientation 6 (rotate 90 degrees clockwise): results are in displayed pixels.
    exif = Image.Exif()
    exif[0x0112] = 6
    Image.new("RGB", (40, 20), (200, 10, 10)).save(tmp_path / "phone.jpg", exif=exif)
    assert predict.load_image(tmp_path / "phone.jpg").shape == (40, 20, 3)
    with Image.open(tmp_path / "phone.jpg") as opened:  # the same photo given opened
        assert predict.load_image(opened).shape == (40, 20, 3)
    # A 16-bit PNG is the 8-bit image, not a white one (PIL's conversion clips at 255).
    wide = sixteen_bit_png(tmp_path / "wide.png")
    np.testing.assert_array_equal(predict.load_image(wide), np.repeat(GRAY[..., None], 3, -1))


def test_load_image_errors(tmp_path):
    (tmp_path / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    with pytest.raises(ValueError, match="cannot read image .*broken.jpg"):
        predict.load_image(tmp_path / "broken.jpg")
    with pytest.raises(FileNotFoundError, match="missing.png: not found"):
        predict.load_image(tmp_path / "missing.png")
    with pytest.raises(FileNotFoundError, match="is a folder"):
        predict.load_image(tmp_path)
    Image.fromarray(np.zeros((4, 4), np.float32)).save(tmp_path / "float.tif")
    with pytest.raises(ValueError, match="cannot read image .*float.tif: floating-point"):
        predict.load_image(tmp_path / "float.tif")
    with pytest.raises(ValueError, match="uint8"):
        predict.load_image(np.zeros((4, 4, 3), np.float32))
    with pytest.raises(ValueError, match=r"\(H, W\[, 1\|3\|4\]\)"):
        predict.load_image(np.zeros((4, 4, 2), np.uint8))
    for empty in ((0, 4, 3), (4, 0, 3), (4, 0)):  # no rows or no columns
        with pytest.raises(ValueError, match=r"^image has no pixels"):
            predict.load_image(np.zeros(empty, np.uint8))
    # "image array must be uint8 (0-255), got |S13" for a file's bytes, "got object" else.
    wrongs = ((b"\xff\xd8\xff", "bytes"), (io.BytesIO(b"x"), "BytesIO"), (None, "NoneType"))
    for wrong, kind in wrongs:
        message = f"^an image must be a path, a PIL image or a uint8 array, got {kind} "
        with pytest.raises(ValueError, match=message):
            predict.load_image(wrong)


def test_an_exif_focal_length_of_zero_is_unknown_and_the_default_camera_is_used(tmp_path):
    """EXIF's FocalLengthIn35mmFilm 0 means unknown: no focal length (it gave a camera of
    focal 0, refused), so the camera is the default one, as without the tag."""
    path = str(tmp_path / "zero.jpg")
    exif = Image.Exif()
    exif.get_ifd(0x8769)[0xA405] = 0
    Image.new("RGB", (80, 60)).save(path, exif=exif)
    assert predict.exif_focal_35mm(path) is None
    with Image.open(path) as opened:
        assert predict.exif_focal_35mm(opened) is None
    _, source = predict.canvas.camera_for(path, 60, 80)
    assert source == "default"


def test_jpeg_files_are_read_as_their_bytes_unless_they_need_converting(tmp_path):
    rgb = np.random.default_rng(0).integers(0, 255, (40, 60, 3), dtype=np.uint8)
    Image.fromarray(rgb).save(tmp_path / "plain.jpg")
    Image.fromarray(rgb[..., 0]).save(tmp_path / "gray.jpg")
    Image.fromarray(rgb).convert("CMYK").save(tmp_path / "cmyk.jpg")
    Image.fromarray(rgb).save(tmp_path / "plain.png")
    exif = Image.Exif()
    exif[0x0112] = 6  # to be turned: only a full decode applies it
    Image.fromarray(rgb).save(tmp_path / "turned.jpg", exif=exif)
    (tmp_path / "junk.jpg").write_bytes(b"no image")
    for name in ("plain.jpg", "gray.jpg"):
        assert predict.inputs.jpeg_bytes(tmp_path / name) == (tmp_path / name).read_bytes()
    for image in ("cmyk.jpg", "plain.png", "turned.jpg", "junk.jpg", "gone.jpg"):
        assert predict.inputs.jpeg_bytes(str(tmp_path / image)) is None
    assert predict.inputs.jpeg_bytes(rgb) is None


def test_a_jpeg_damaged_past_its_header_is_named(tmp_path):
    rgb = np.random.default_rng(0).integers(0, 255, (64, 96, 3), dtype=np.uint8)
    Image.fromarray(rgb).save(tmp_path / "photo.jpg")
    data = (tmp_path / "photo.jpg").read_bytes()
    (tmp_path / "cut.jpg").write_bytes(data[: len(data) // 2])
    with pytest.raises(ValueError, match=r"cannot read image .*cut.jpg: image cannot be decoded"):
        predict.canvas.prepare(
            str(tmp_path / "cut.jpg"), short_side=32, max_long_side=48, buckets=[(32, 48)]
        )


def test_find_inputs_folders_globs_and_errors(tmp_path):
    image = np.zeros((4, 4, 3), np.uint8)
    (tmp_path / "photos" / "sub").mkdir(parents=True)
    save(image, tmp_path / "photos" / "a.png")
    save(image, tmp_path / "photos" / "sub" / "a.png")
    (tmp_path / "photos" / "notes.txt").write_text("not an image")
    save(image, tmp_path / "a.jpg")
    (tmp_path / "empty").mkdir()
    inputs, errors = predict.find_inputs(
        [
            str(tmp_path / "photos"),
            str(tmp_path / "*.jpg"),
            str(tmp_path / "photos" / "a.png"),  # already found: not repeated
            str(tmp_path / "empty"),
            str(tmp_path / "none*.png"),
            str(tmp_path / "missing.jpg"),
        ]
    )
    assert [i.name for i in inputs] == ["a", os.path.join("sub", "a"), "a-2"]
    assert not any(i.video for i in inputs)
    assert errors == [
        f"folder {tmp_path / 'empty'} has no image or video file",
        f"no file matches {tmp_path / 'none*.png'}",
        f"input {tmp_path / 'missing.jpg'} not found",
    ]


def test_find_inputs_follows_links_to_folders_without_looping(tmp_path):
    """A linked subfolder was skipped without a word."""
    image = np.zeros((4, 4, 3), np.uint8)
    (tmp_path / "photos").mkdir()
    (tmp_path / "elsewhere").mkdir()
    save(image, tmp_path / "photos" / "a.png")
    save(image, tmp_path / "elsewhere" / "c.jpg")
    (tmp_path / "photos" / "linked").symlink_to(tmp_path / "elsewhere")
    (tmp_path / "photos" / "loop").symlink_to(tmp_path / "photos")  # read once
    inputs, errors = predict.find_inputs([str(tmp_path / "photos")])
    assert [i.name for i in inputs] == ["a", os.path.join("linked", "c")] and not errors


def test_find_inputs_takes_only_regular_files(tmp_path):
    # A named pipe with an image's name: reading it would wait forever for a writer.
    save(np.zeros((4, 4, 3), np.uint8), tmp_path / "a.png")
    os.mkfifo(tmp_path / "pipe.jpg")
    for pattern in (tmp_path, tmp_path / "*.*"):
        inputs, errors = predict.find_inputs([str(pattern)])
        assert [i.path for i in inputs] == [str(tmp_path / "a.png")] and errors == []
    inputs, errors = predict.find_inputs([str(tmp_path / "pipe.jpg")])
    assert inputs == []
    assert errors == [
        f"input {tmp_path / 'pipe.jpg'} is not a regular file (a named pipe or a device)"
    ]


def test_find_inputs_skips_the_temporary_files_of_a_prediction_writing_there(tmp_path):
    image = np.zeros((4, 4, 3), np.uint8)
    save(image, tmp_path / "a.png")
    (tmp_path / ".staged.partial-123").mkdir()
    save(image, tmp_path / ".staged.partial-123" / "b_2d.png")  # being written
    save(image, tmp_path / ".c_2d.partial-123.png")
    inputs, errors = predict.find_inputs([str(tmp_path)])
    assert [i.path for i in inputs] == [str(tmp_path / "a.png")] and errors == []


def test_find_inputs_never_reads_the_output_folder(tmp_path):
    image = np.zeros((4, 4, 3), np.uint8)
    album, out = tmp_path / "album", tmp_path / "album" / "out"
    out.mkdir(parents=True)
    save(image, album / "a.png")
    save(image, out / "a_2d.png")  # an output of an earlier run
    patterns = [str(album), str(album / "**" / "*.png"), str(out), str(out / "sub")]
    patterns.append(str(out / "*.png"))  # it said "no file matches"
    inputs, errors = predict.find_inputs(patterns, exclude=out)
    assert [i.path for i in inputs] == [str(album / "a.png")]
    assert errors == [
        f"folder {out} is the output folder {out} or inside it",
        f"input {out / 'sub'} not found",
        f"every file matching {out / '*.png'} is in the output folder {out}",
    ]
    inputs, _ = predict.find_inputs([str(album)])  # without exclude: the old output too
    assert [i.name for i in inputs] == ["a", os.path.join("out", "a_2d")]


def test_find_inputs_takes_upper_case_extensions_and_sorts_a_folders_files(tmp_path):
    """Camera files are often NAME.JPG; a folder's files come sorted whatever order the
    file system lists them in (here created in reverse)."""
    image = np.zeros((4, 4, 3), np.uint8)
    for name in ("e.png", "D.JPG", "c.Png", "b.jpeg", "a.JPEG"):
        save(image, tmp_path / name)
    inputs, errors = predict.find_inputs([str(tmp_path)])
    assert [i.name for i in inputs] == ["D", "a", "b", "c", "e"] and errors == []


def test_find_inputs_takes_a_file_once_however_it_is_named(tmp_path):
    """The same file through another spelling of its path or a link to it is a duplicate."""
    save(np.zeros((4, 4, 3), np.uint8), tmp_path / "a.png")
    (tmp_path / "link.png").symlink_to(tmp_path / "a.png")
    patterns = [str(tmp_path / "a.png"), f"{tmp_path}/./a.png", str(tmp_path / "link.png")]
    inputs, errors = predict.find_inputs(patterns)
    assert [i.path for i in inputs] == [str(tmp_path / "a.png")] and errors == []


def test_a_name_that_another_inputs_outputs_would_take_gets_a_number(tmp_path):
    """Given a_2d.png before a.png, a.png's picture NAME_2d.png would be a_2d.png's
    outputs' name: a.png is renamed, whichever input comes first."""
    image = np.zeros((4, 4, 3), np.uint8)
    for first, second in (("a_2d", "a"), ("a", "a_2d"), ("b_tracks", "b")):
        paths = [save(image, tmp_path / f"{name}.png") for name in (first, second)]
        inputs, _ = predict.find_inputs(paths, output_suffixes=predict.outputs.DERIVED_SUFFIXES)
        assert [i.name for i in inputs] == [first, f"{second}-2"]
        predict.outputs._check_names_apart(inputs)  # what `run` checks: no clash
