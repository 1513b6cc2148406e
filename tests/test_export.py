import copy
import dataclasses
import errno
import json
import os
import pathlib
import shutil
import subprocess
import sys

import jax
import numpy as np
import pytest
from PIL import Image

from lcrnet_jax import predict
from lcrnet_jax.predict import export, exported, outputs, tracking
from lcrnet_jax.train import loop
from tests.test_predictor import (
    LONG,
    SHORT,
    random_variables,
    save_run,
    tiny_config,
    tiny_run_config,
)
from tests.test_video import write_gif

ROOT = pathlib.Path(__file__).resolve().parent.parent
BUCKET = (64, 96)  # the landscape bucket of SHORT, LONG


@pytest.fixture(scope="module")
def predictor():
    variables = random_variables(tiny_config())
    return predict.Predictor(
        tiny_config(), variables, short_side=SHORT, max_long_side=LONG, batch_size=2
    )


@pytest.fixture(scope="module")
def exported_dir(predictor, tmp_path_factory):
    directory = tmp_path_factory.mktemp("exported")
    export.export_predictor(predictor, directory, buckets=["64x96"])
    return directory


def landscape_images():
    rng = np.random.default_rng(0)
    return [rng.integers(0, 255, size, dtype=np.uint8) for size in [(48, 80, 3), (300, 410, 3)]]


def assert_same_people(got: predict.PoseResult, want: predict.PoseResult):
    assert got.joint_set == want.joint_set and got.image_size == want.image_size
    assert got.camera_source == want.camera_source
    np.testing.assert_allclose(got.intrinsics, want.intrinsics, rtol=1e-6)
    assert len(got.scores) == want.num_people >= 1
    np.testing.assert_allclose(got.scores, want.scores, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(got.poses2d, want.poses2d, rtol=1e-5, atol=1e-3)
    np.testing.assert_allclose(got.poses3d, want.poses3d, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(got.poses3d_cam, want.poses3d_cam, rtol=1e-4, atol=1e-4)


def test_exported_model_equals_the_predictor(predictor, exported_dir):
    files = sorted(p.name for p in exported_dir.iterdir())
    assert files == ["metadata.json", "model_64x96.jaxexport", "weights.npz"]
    metadata = json.loads((exported_dir / "metadata.json").read_text())
    assert metadata["buckets"] == [{"height": 64, "width": 96, "file": "model_64x96.jaxexport"}]
    assert metadata["input"]["short_side"] == SHORT
    assert metadata["input"]["size_buckets"] == [list(b) for b in predictor.buckets]
    assert metadata["ppi"]["t3d"] == predictor.ppi_config.t3d
    assert np.shape(metadata["anchor_poses"]["pose3d"]) == (20, 13, 3)

    model = exported.ExportedModel(exported_dir, batch_size=2)
    assert model.buckets == (BUCKET,)
    images = landscape_images()
    want = predictor.predict(images)
    got = model.predict(images)
    for g, w in zip(got, want, strict=True):
        assert_same_people(g, w)
    assert_same_people(model.predict(images[1]), want[1])  # a partial batch
    one_by_one = exported.ExportedModel(exported_dir)  # the batch size is symbolic
    assert_same_people(one_by_one.predict(images[0]), want[0])
    assert got[0].to_json() == want[0].to_json()


def test_exported_model_reads_images_and_cameras_as_the_predictor(predictor, exported_dir):
    rgb = landscape_images()[1]
    images = [rgb[..., 0], Image.fromarray(rgb)]  # gray array, PIL image
    want = predictor.predict(images)
    for got, w in zip(exported.ExportedModel(exported_dir).predict(images), want, strict=True):
        assert_same_people(got, w)
    given = exported.ExportedModel(exported_dir, intrinsics=(500, 500, 205, 150))
    fov = exported.ExportedModel(exported_dir, fov_degrees=40)
    for model, source in ((given, "given"), (fov, "fov")):
        got = model.predict(images[1])
        assert got.camera_source == source
        np.testing.assert_allclose(got.poses2d, want[1].poses2d, rtol=1e-5, atol=1e-3)
    np.testing.assert_allclose(given.predict(images[1]).intrinsics, (500, 500, 205, 150))
    for bad in ((0, 500, 205, 150), (500, 500, float("nan"), 150)):
        with pytest.raises(ValueError, match=r"intrinsics must be finite fx, fy, cx, cy with"):
            exported.ExportedModel(exported_dir, intrinsics=bad)


def test_exported_model_bad_inputs(predictor, exported_dir, tmp_path):
    model = exported.ExportedModel(exported_dir)
    with pytest.raises(ValueError, match=r"this image needs the 96x64 bucket, which was not"):
        model.predict(np.zeros((90, 60, 3), np.uint8))  # portrait: not exported
    with pytest.raises(ValueError, match=r"no exported function for a 64x64 canvas"):
        model.run(np.zeros((2, 64, 64, 3), np.uint8), np.zeros((2, 2), np.int32))
    with pytest.raises(ValueError, match=r"image_size must be \(B, 2\) for B = 1 images"):
        model.run(np.zeros((1, *BUCKET, 3), np.uint8), np.zeros((2, 2), np.int32))
    with pytest.raises(ValueError, match=r"images must be \(B, H, W, 3\) uint8, got .* float32"):
        model.run(np.zeros((1, *BUCKET, 3), np.float32), np.array([BUCKET]))
    with pytest.raises(ValueError, match="batch_size must be an int >= 1, got 0"):
        exported.ExportedModel(exported_dir, batch_size=0)
    with pytest.raises(ValueError, match="batch_size must be an int >= 1, got 2.5"):
        exported.ExportedModel(exported_dir, batch_size=2.5)
    # An image region beyond the canvas gave people of NaN joints; 0 or NaN, nobody.
    canvas = np.zeros((1, *BUCKET, 3), np.uint8)
    for size in ([[1000, 1000]], [[65, 96]], [[64, 97]], [[0, 0]], [[np.nan, 96]], [[32.5, 96]]):
        with pytest.raises(ValueError, match=r"image_size must hold whole heights and widths"):
            model.run(canvas, np.array(size))
    with pytest.raises(ValueError, match=r"image array must be uint8 \(0-255\), got float32"):
        model.predict(np.zeros((40, 50, 3), np.float32))
    with pytest.raises(FileNotFoundError, match=r"image .*missing.png: not found"):
        model.predict(str(tmp_path / "missing.png"))
    with pytest.raises(ValueError, match=r"bucket 64x100 is not one of the model's"):
        export.export_predictor(predictor, tmp_path, buckets=["64x100"])
    with pytest.raises(ValueError, match=r"a bucket is HEIGHTxWIDTH"):
        export.export_predictor(predictor, tmp_path, buckets=["64 by 96"])
    with pytest.raises(ValueError, match=r"unknown platform 'gpu'.*'cuda' or 'rocm'"):
        export.export_predictor(predictor, tmp_path, platforms=["cpu", "gpu"])
    with pytest.raises(FileNotFoundError, match="holds no exported model"):
        exported.ExportedModel(tmp_path)
    metadata = json.loads((exported_dir / "metadata.json").read_text())
    (tmp_path / "metadata.json").write_text(json.dumps({**metadata, "platforms": ["tpu"]}))
    with pytest.raises(ValueError, match=r"exported for \['tpu'\], not for this machine's"):
        exported.ExportedModel(tmp_path)
    (tmp_path / "metadata.json").write_text(json.dumps({**metadata, "format": "other"}))
    with pytest.raises(ValueError, match="not an exported model of format"):
        exported.ExportedModel(tmp_path)
    (tmp_path / "metadata.json").write_text("[1]")
    with pytest.raises(ValueError, match=r"not an exported model of format .* \(format None\)"):
        exported.ExportedModel(tmp_path)
    (tmp_path / "metadata.json").write_text('{"format": ')  # cut short
    with pytest.raises(ValueError, match=r"metadata.json is not valid JSON: Expecting value"):
        exported.ExportedModel(tmp_path)


def test_exported_model_runs_an_empty_batch_as_the_predictor_predicts_no_images(exported_dir):
    model = exported.ExportedModel(exported_dir)
    assert model.predict([]) == []
    one = model.run(np.zeros((1, *BUCKET, 3), np.uint8), np.array([BUCKET]))
    empty = model.run(np.zeros((0, *BUCKET, 3), np.uint8), np.zeros((0, 2), np.int32))
    assert empty.keys() == one.keys()
    for name, value in one.items():
        assert empty[name].shape == (0, *value.shape[1:]) and empty[name].dtype == value.dtype


def test_an_image_of_a_bucket_not_exported_is_refused_not_put_in_a_larger_one(
    predictor, exported_dir, tmp_path
):
    """The network's people depend on the canvas: a 50x50 image goes into the predictor's
    64x64 bucket, not into the exported 64x96 one."""
    square = np.random.default_rng(1).integers(0, 255, (50, 50, 3), dtype=np.uint8)
    assert predictor.preprocess(square).bucket == (64, 64)
    model = exported.ExportedModel(exported_dir)
    with pytest.raises(ValueError) as raised:
        model.predict(square)
    assert str(raised.value) == (
        "this image needs the 64x64 bucket, which was not exported (exported: 64x96); "
        "export it with --bucket=64x64"
    )
    assert model.size_buckets == predictor.buckets
    shutil.copytree(exported_dir, tmp_path / "old")  # an export from before size_buckets
    metadata = json.loads((exported_dir / "metadata.json").read_text())
    del metadata["input"]["size_buckets"]
    (tmp_path / "old" / "metadata.json").write_text(json.dumps(metadata))
    old = exported.ExportedModel(tmp_path / "old")  # its Predictor had the default buckets
    assert old.buckets == (BUCKET,) and set(old.size_buckets) == set(predictor.buckets)
    with pytest.raises(ValueError, match="needs the 64x64 bucket, which was not exported"):
        old.predict(square)  # before: put into the 64x96 canvas, other people, no word
    metadata["input"]["short_side"] = metadata["input"]["max_long_side"] = 200
    (tmp_path / "old" / "metadata.json").write_text(json.dumps(metadata))
    unknown = exported.ExportedModel(tmp_path / "old")  # buckets of no default list
    assert unknown.size_buckets == unknown.buckets == (BUCKET,)


def test_an_exported_model_takes_the_size_buckets_recorded_in_its_metadata():
    """The buckets recorded (a predictor's own, not the defaults of its input scale) are
    those an image is placed in; without a record, the defaults when they hold the
    exported ones."""
    scale = {"short_side": SHORT, "max_long_side": LONG}
    custom = [[64, 96], [96, 96]]
    recorded = exported._size_buckets({**scale, "size_buckets": custom}, (BUCKET,))
    assert recorded == ((64, 96), (96, 96))
    default = exported._size_buckets(scale, (BUCKET,))
    assert set(default) == {(64, 64), (64, 96), (96, 64)}


def _damaged_copy(exported_dir, target, *, model=None, **weights):
    """A copy of the export with the model file's bytes `model` and weights.npz's arrays
    replaced by `weights` (None: the array left out)."""
    shutil.copytree(exported_dir, target)
    if model is not None:
        (target / "model_64x96.jaxexport").write_bytes(model)
    stored = dict(np.load(exported_dir / "weights.npz"))
    for key, value in weights.items():
        stored.pop(key) if value is None else stored.update({key: value})
    np.savez(target / "weights.npz", **stored)
    return target


def test_a_damaged_export_is_refused_at_load_in_one_line(exported_dir, tmp_path):
    """A cut model file, a missing, misshapen or NaN weight array: one ValueError naming
    the file, when the model loads (not a traceback, nor failures per input)."""
    data = (exported_dir / "model_64x96.jaxexport").read_bytes()
    stored = np.load(exported_dir / "weights.npz")
    shape = stored["w00031"].shape
    nan = stored["w00003"].copy()
    nan.flat[0] = np.nan
    cases = {
        r"model_64x96.jaxexport cannot be decoded \(truncated or damaged\?\): ": {
            "model": data[: len(data) // 2]
        },
        r"weights.npz lacks 1 of its \d+ arrays \(first: w00000\)": {"w00000": None},
        rf"weights.npz: array w00031 is float32\[1, {shape[1]}\], the exported functions "
        rf"take float32\[{shape[0]}, {shape[1]}\]": {"w00031": stored["w00031"][:1]},
        r"weights.npz: array w00031 is float64\[": {"w00031": stored["w00031"].astype(np.float64)},
        r"weights.npz: array w00003 holds 1 NaN or infinite values of": {"w00003": nan},
    }
    for i, (message, damage) in enumerate(cases.items()):
        copy = _damaged_copy(exported_dir, tmp_path / str(i), **damage)
        with pytest.raises(ValueError, match=message) as raised:
            exported.ExportedModel(copy)
        assert str(copy) in str(raised.value) and "\n" not in str(raised.value)
    (copy / "model_64x96.jaxexport").unlink()
    with pytest.raises(FileNotFoundError, match=r"exported model file not found: .*model_64x96"):
        exported.ExportedModel(copy)


def test_a_folder_mixing_files_of_two_exports_is_refused_at_load(exported_dir, tmp_path):
    """A model file that is not f(weights, images, image_size), or weights.npz and
    metadata.json counting other weights than the functions take: one ValueError."""
    spec = jax.ShapeDtypeStruct((2,), np.float32)
    others = {
        "two arguments": jax.export.export(jax.jit(lambda a, b: a + b))(spec, spec),
        "no weight list": jax.export.export(jax.jit(lambda a, b, c: a + b + c))(spec, spec, spec),
    }
    for i, function in enumerate(others.values()):
        folder = _damaged_copy(exported_dir, tmp_path / str(i), model=function.serialize())
        with pytest.raises(ValueError, match=r"is not a function f\(weights, images, image_size\)"):
            exported.ExportedModel(folder)
    folder = _damaged_copy(exported_dir, tmp_path / "count")
    metadata = json.loads((folder / "metadata.json").read_text())
    count = metadata["weights"]["count"]
    metadata["weights"]["count"] = count - 1  # weights.npz still holds them all
    (folder / "metadata.json").write_text(json.dumps(metadata))
    with pytest.raises(ValueError) as raised:
        exported.ExportedModel(folder)
    assert str(raised.value) == (
        f"exported weight file {folder / 'weights.npz'} holds {count - 1} arrays, but the "
        f"exported functions take {count}: the folder mixes files of different exports"
    )


def test_the_metadata_describes_the_networks_input_as_its_config_does(predictor, exported_dir):
    """The channel order, mean and std that a consumer of the export reads are the
    model's (a BGR model, as the released ones, says so)."""
    metadata = json.loads((exported_dir / "metadata.json").read_text())
    config = predictor.config
    assert metadata["input"]["pixel_mean"] == pytest.approx(list(config.pixel_mean))
    assert metadata["input"]["pixel_std"] == pytest.approx(list(config.pixel_std))
    channels = {}
    for bgr in (False, True):
        other = copy.copy(predictor)
        other.config = dataclasses.replace(config, bgr=bgr)
        channels[bgr] = export._metadata(other, [BUCKET], ["cpu"], 1)["input"]["network_channels"]
    assert channels == {False: "RGB", True: "BGR"}
    assert metadata["input"]["network_channels"] == channels[config.bgr]


def test_files_and_videos_predicted_by_the_exported_model_equal_the_predictors(
    predictor, exported_dir, tmp_path
):
    """`outputs.run`, what predict.py runs, takes either model; the JSON records the
    exported model's provenance, which is the predictor's."""
    images = landscape_images()
    Image.fromarray(images[1]).save(tmp_path / "photo.png")
    write_gif(tmp_path / "clip.gif", [images[0], images[0][::-1], images[0][:, ::-1]])
    inputs, errors = predict.find_inputs([str(tmp_path / n) for n in ("photo.png", "clip.gif")])
    assert not errors
    model = outputs.make_predictor(exported=str(exported_dir), batch_size=2)
    assert isinstance(model, exported.ExportedModel) and model.batch_size == 2
    for name, runner in (("want", predictor), ("got", model)):
        summary = outputs.run(
            runner, inputs, tmp_path / name, tracking=tracking.TrackingConfig(), progress=False
        )
        assert (summary.images, summary.inputs_done, summary.failed) == (4, 2, 0)

    def both(file):
        return [json.loads((tmp_path / d / file).read_text()) for d in ("got", "want")]

    for got, want in map(both, ("photo.json", "clip.json", "clip_tracks.json")):
        assert got.keys() == want.keys()
        for key in ("source", "model", "method", "ppi", "scale", "joint_names"):
            assert got[key] == want[key], key
    clips = [clip["frames"] for clip in both("clip.json")]
    pairs = [both("photo.json"), *zip(*clips, strict=True)]
    assert len(pairs) == 4
    for got, want in pairs:
        assert got["camera"] == want["camera"] and len(got["people"]) == len(want["people"]) > 0
        for key in ("score", "pose2d", "pose3d"):
            np.testing.assert_allclose(
                [p[key] for p in got["people"]], [p[key] for p in want["people"]], atol=1e-2
            )


def test_an_exported_model_refuses_what_would_change_it(exported_dir, tmp_path):
    with pytest.raises(ValueError, match=r"exported with; export it again to change them "
                       r"\(given: method, short_side, t3d\)"):  # fmt: skip
        outputs.make_predictor(
            exported=str(exported_dir), method="nms", ppi_overrides={"t3d": 0.1, "iou": None},
            short_side=64,
        )  # fmt: skip
    with pytest.raises(ValueError, match="exactly one of weights, checkpoint and exported"):
        outputs.make_predictor(exported=str(exported_dir), weights="model.pkl")
    # A training config or step has nothing to change there: not "would change it".
    with pytest.raises(ValueError, match=r"^an exported model has no training config or step "
                       r"\(given: config, step\); they go with --checkpoint$"):  # fmt: skip
        outputs.make_predictor(exported=str(exported_dir), config=object(), step=3)
    Image.fromarray(landscape_images()[0]).save(tmp_path / "photo.png")
    done = subprocess.run(
        [sys.executable, "experiments/predict.py", f"--exported={exported_dir}", "--ppi=demo",
         f"--input={tmp_path / 'photo.png'}", f"--output_dir={tmp_path / 'out'}"],
        cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)}, capture_output=True, text=True,
    )  # fmt: skip
    assert done.returncode == 1, done.stderr
    assert (
        done.stderr.strip()
        .splitlines()[-1]
        .startswith("error: an exported model keeps the method, PPI parameters and input scale")
    )
    assert done.stderr.strip().endswith("(given: ppi)")


_FLAX_FREE = """
import importlib.abc, sys
import numpy as np

class Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path, target=None):
        if name.split(".")[0] in {"flax", "optax", "orbax", "grain", "tensorflow_datasets"}:
            raise ImportError(f"{name} is blocked")
sys.meta_path.insert(0, Block())
from lcrnet_jax.predict.exported import ExportedModel

people = ExportedModel(sys.argv[1]).predict(sys.argv[2])
np.savez(sys.argv[3], camera_source=people.camera_source, **{
    k: getattr(people, k) for k in ("poses2d", "poses3d", "scores", "poses3d_cam", "intrinsics")
})
"""


_JAX_CACHE = {  # the persistent compilation cache of conftest.py, for the subprocess
    "JAX_COMPILATION_CACHE_DIR": str(ROOT / ".jax_cache"),
    "JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS": "0.2",
}


def test_a_failed_export_leaves_no_folder_and_a_file_is_refused(predictor, tmp_path, monkeypatch):
    blocker = tmp_path / "a_file"
    blocker.write_text("")
    with pytest.raises(NotADirectoryError, match="a_file is a file, not a folder for the export"):
        export.export_predictor(predictor, blocker, buckets=["64x96"])

    def full_disk(path, **arrays):
        raise OSError(errno.ENOSPC, "No space left on device", str(path))

    monkeypatch.setattr(export.atomic, "write_npz", full_disk)
    with pytest.raises(OSError, match="No space left on device"):
        export.export_predictor(predictor, tmp_path / "new" / "export", buckets=["64x96"])
    assert os.listdir(tmp_path / "new") == []  # the export's folder is gone, its parent kept


def test_a_failed_export_keeps_the_previous_one(predictor, exported_dir, tmp_path, monkeypatch):
    """The new export is staged inside the folder and moved into place once complete: a
    full disk or Ctrl-C midway leaves the previous export as it was and no staged files;
    a complete one replaces all of the previous export and keeps other files."""
    out = tmp_path / "out"
    shutil.copytree(exported_dir, out)
    (out / "notes.txt").write_text("mine")
    (out / "model_32x48.jaxexport").write_bytes(b"a bucket of the previous export")
    before = {p.name: p.read_bytes() for p in out.iterdir()}

    def full_disk(path, **arrays):
        raise OSError(errno.ENOSPC, "No space left on device", str(path))

    def interrupt(path, value):
        raise KeyboardInterrupt

    failures = [("write_npz", full_disk, OSError), ("write_json", interrupt, KeyboardInterrupt)]
    for name, fail, error in failures:
        with monkeypatch.context() as patch:
            patch.setattr(export.atomic, name, fail)
            with pytest.raises(error) as raised:
                export.export_predictor(predictor, out, buckets=["64x96"])
        if error is OSError:  # the user's folder named, not the temporary one
            assert raised.value.filename == str(out / "weights.npz")
        assert os.listdir(tmp_path) == ["out"]
        assert {p.name: p.read_bytes() for p in out.iterdir()} == before
        assert exported.ExportedModel(out).buckets == (BUCKET,)
    export.export_predictor(predictor, out, buckets=["64x96"], platforms=["cpu", "tpu"])
    assert os.listdir(tmp_path) == ["out"]
    files = ["metadata.json", "model_64x96.jaxexport", "notes.txt", "weights.npz"]
    assert sorted(os.listdir(out)) == files  # the previous export's other bucket removed
    assert (out / "notes.txt").read_text() == "mine"
    assert json.loads((out / "metadata.json").read_text())["platforms"] == ["cpu", "tpu"]
    assert exported.ExportedModel(out).buckets == (BUCKET,)
    monkeypatch.chdir(out)  # the current folder (a mount point would do too): nothing moved
    export.export_predictor(predictor, ".", buckets=["64x96"])
    assert sorted(os.listdir(out)) == files and exported.ExportedModel(out).buckets == (BUCKET,)


def test_exported_model_runs_without_flax(predictor, exported_dir, tmp_path):
    """Imported the documented way, with flax, optax, orbax, grain and TFDS unimportable;
    a photo file with an EXIF focal length gives the `Predictor`'s people and camera."""
    path = str(tmp_path / "photo.jpg")
    exif = Image.Exif()
    exif.get_ifd(0x8769)[0xA405] = 26  # FocalLengthIn35mmFilm
    Image.fromarray(landscape_images()[1]).save(path, exif=exif, quality=95)
    subprocess.run(
        [sys.executable, "-c", _FLAX_FREE, str(exported_dir), path, str(tmp_path / "people.npz")],
        cwd=ROOT, env={**os.environ, **_JAX_CACHE, "PYTHONPATH": os.pathsep.join(sys.path)},
        check=True,
    )  # fmt: skip
    stored = np.load(tmp_path / "people.npz")
    got = predict.PoseResult(
        joint_set="lcr13", image_size=(300, 410), camera_source=str(stored["camera_source"]),
        **{k: stored[k] for k in ("poses2d", "poses3d", "scores", "poses3d_cam", "intrinsics")},
    )  # fmt: skip
    want = predictor.predict(path)
    assert want.camera_source == "exif"
    assert_same_people(got, want)


def test_export_from_a_training_checkpoint(tmp_path):
    variables = random_variables(tiny_config())
    save_run(tmp_path / "run", variables, steps=(5,))
    config = tiny_run_config()
    config.data.short_side, config.data.max_long_side = SHORT, LONG
    path = export.export_model(
        tmp_path / "out", buckets=[BUCKET], platforms=["cpu", "cuda"],
        checkpoint=str(tmp_path / "run"), config=config,
    )  # fmt: skip
    metadata = json.loads(path.read_text())
    assert metadata["model"] == f"checkpoint:{tmp_path / 'run'}@5"
    assert metadata["ppi"]["t3d"] == config.ppi.t3d
    assert metadata["platforms"] == ["cpu", "cuda"]
    # The run's picture threshold for PPI's people: predict.py --exported draws as the
    # checkpoint does (it drew every person down to 0.1).
    assert exported.recorded_min_score(tmp_path / "out") == config.predict.min_score == 4.0
    assert exported.recorded_min_score(tmp_path / "none") is None
    # Without a config: the run's own (config.json), its threshold recorded too.
    with pytest.raises(ValueError, match="has no readable config.json: pass --config"):
        export.export_model(tmp_path / "bare", buckets=[BUCKET], checkpoint=str(tmp_path / "run"))
    loop.save_config(config, str(tmp_path / "run"))
    export.export_model(tmp_path / "own", buckets=[BUCKET], checkpoint=str(tmp_path / "run"))
    assert exported.recorded_min_score(tmp_path / "own") == 4.0
    model = exported.ExportedModel(tmp_path / "out")
    want = predict.Predictor(
        tiny_config(), variables, short_side=SHORT, max_long_side=LONG,
        ppi_config=predict.outputs.make_ppi_config(run_ppi=config.ppi.to_dict()),
    ).predict(landscape_images()[0])  # fmt: skip
    assert_same_people(model.predict(landscape_images()[0]), want)


def test_export_launcher_reports_bad_input_in_one_line(tmp_path):
    done = subprocess.run(
        [sys.executable, "experiments/export.py", f"--checkpoint={tmp_path / 'none'}",
         "--config=experiments/configs/synthetic_tiny.py", f"--output_dir={tmp_path / 'out'}"],
        cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)}, capture_output=True, text=True,
    )  # fmt: skip
    assert done.returncode == 1
    assert done.stderr.strip().splitlines() == [
        f"error: {tmp_path / 'none'} holds no training run (no checkpoints/)"
    ]
