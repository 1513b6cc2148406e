r"""Builds a dataset of data_builders/ as TFDS array_record files (no TensorFlow needed).

python experiments/build_dataset.py --dataset=synthetic_people/tiny --data_dir=~/tensorflow_datasets

`--dataset=NAME[/CONFIG]` imports `data_builders.NAME` (which registers the builder with
TFDS) and builds it; datasets with manual downloads read them from `--manual_dir`
(default: DATA_DIR/downloads/manual/NAME). `--overwrite` rebuilds an existing one.
"""

from __future__ import annotations

import contextlib
import errno
import importlib
import io
import os
import pathlib
import re
import shutil
import sys

import tensorflow_datasets as tfds
from absl import flags

import data_builders
from experiments import launch
from lcrnet_jax.data import atomic, corpus, records

_DATASET = flags.DEFINE_string("dataset", None, "NAME[/CONFIG], e.g. synthetic_people/tiny.")
_DATA_DIR = flags.DEFINE_string("data_dir", None, "TFDS data dir (default ~/tensorflow_datasets).")
_MANUAL_DIR = flags.DEFINE_string(
    "manual_dir",
    None,
    "Folder of manually downloaded files (default DATA_DIR/downloads/manual/NAME).",
)
_OVERWRITE = flags.DEFINE_bool("overwrite", False, "Rebuild the dataset if it already exists.")
_CORPUS = flags.DEFINE_string(
    "corpus", None, "synthetic_people: draw poses from this corpus (e.g. cmu_mocap, an .npz)."
)
_BACKGROUND_DIR = flags.DEFINE_string(
    "background_dir", None, "synthetic_people: folder of person-free background photos."
)
_REFERENCE_CORPUS = flags.DEFINE_string(
    "reference_corpus",
    None,
    "synthetic_people: keep the pose pool min_pose_distance away from this corpus's poses "
    "(e.g. human36m: the paper's poses where Human3.6M is sparse).",
)
# Builder options and the builders that take them.
_OPTIONS = {
    "corpus": ("synthetic_people",),
    "background_dir": ("synthetic_people",),
    "reference_corpus": ("synthetic_people",),
}

DEFAULT_DATA_DIR = "~/tensorflow_datasets"


def available_datasets() -> list[str]:
    """Names of the builder packages in data_builders/ (folders with an __init__.py)."""
    root = pathlib.Path(data_builders.__file__).parent
    return sorted(p.parent.name for p in root.glob("*/__init__.py"))


def build(
    dataset: str,
    *,
    data_dir: str | None = None,
    manual_dir: str | None = None,
    overwrite: bool = False,
    **options: str,
) -> tfds.core.DatasetBuilder:
    """Imports `data_builders.NAME` and builds NAME[/CONFIG] as array_record files.

    Args:
      dataset: "NAME" or "NAME/CONFIG".
      data_dir: TFDS data dir; None for ~/tensorflow_datasets.
      manual_dir: folder of manual downloads; None: DATA_DIR/downloads/manual/NAME.
      overwrite: rebuild even if the dataset exists.
      options: builder options (`corpus`, `background_dir`, `reference_corpus` of
        synthetic_people).

    Returns:
      The prepared builder (its `data_dir` and `info.splits` describe the result).
    """
    name = dataset.split("/")[0]
    available = available_datasets()
    if not name or name not in available:
        raise ValueError(f"unknown dataset {name!r}; available: {', '.join(available)}")
    for option in options:
        if name not in _OPTIONS.get(option, ()):
            raise ValueError(f"--{option} is an option of {_OPTIONS.get(option)} only, not {name}")
    options = {
        k: str(pathlib.Path(v).expanduser()) if k == "background_dir" else v
        for k, v in options.items()
    }
    for key in ("corpus", "reference_corpus"):  # before a built dataset's are compared
        if key in options:
            corpus.check_files(options[key])
    importlib.import_module(f"data_builders.{name}")
    config = dataset.split("/", 1)[1] if "/" in dataset else None
    configs = [c.name for c in tfds.builder_cls(name).BUILDER_CONFIGS]
    if config is not None and config not in configs:
        known = f"available: {', '.join(configs)}" if configs else "it has no configs"
        raise ValueError(f"unknown config {config!r} of {name}; {known}")
    data_dir = str(pathlib.Path(data_dir or DEFAULT_DATA_DIR).expanduser())
    root = pathlib.Path(data_dir)
    manual_dir = str(
        root / "downloads" / "manual" / name
        if manual_dir is None
        else pathlib.Path(manual_dir).expanduser()
    )
    before = set(os.listdir(root)) if root.is_dir() else None
    try:
        built = pathlib.Path(_builder(dataset, data_dir, options).data_dir)  # DATA/NAME[/CONFIG]/V
    except Exception as error:  # TFDS reads a built dataset's description: it may be damaged
        damaged = records.built_folders(dataset, data_dir)
        if not damaged or (options and _readable(dataset, data_dir)):
            raise  # nothing built, or the built files read: the options are what failed
        if not overwrite:
            reason = launch.one_line(error).split('}": ', 1)[-1]  # without TFDS's arguments
            raise ValueError(
                f"dataset {dataset} in {damaged[-1]} cannot be read ({reason}); its files are "
                "damaged: rebuild it with --overwrite"
            ) from None
        built = damaged[-1]
    created = _outermost_missing(built, root)
    built.parent.mkdir(parents=True, exist_ok=True)
    busy = f"{dataset} is being built in {data_dir} by another process; wait for it to end"
    with atomic.exclusive(built.parent, busy):
        try:
            return _build(dataset, data_dir, options, built, manual_dir, overwrite=overwrite)
        except BaseException:
            _remove_new_folders(root, before, created)
            raise


def _build(dataset, data_dir, options, built, manual_dir, *, overwrite):
    """`build` once it holds the dataset's lock (no other build runs); `built` is the
    version folder."""
    _clear_leftovers(built)
    previous = None
    if overwrite and built.exists():
        # Set aside (a rename: no space needed) until the new build is complete, so that
        # a failed rebuild keeps the old dataset.
        previous = built.with_name(f".{built.name}.previous")
        built.rename(previous)
    try:
        builder = _builder(dataset, data_dir, options)  # made after the moves: reads the files
        mismatched = getattr(builder, "mismatched_options", None)
        if mismatched is not None and builder.is_prepared() and (reason := mismatched()):
            raise ValueError(f"dataset {dataset} in {built}: {reason}; rebuild it with --overwrite")
        if not sys.stderr.isatty():  # a log file: no cursor moves, no bars
            tfds.disable_progress_bar()
        # TFDS prints "Downloading and preparing dataset Unknown size ..." (nothing is
        # downloaded) and where it went: the caller says what was built.
        with contextlib.redirect_stdout(io.StringIO()):
            builder.download_and_prepare(
                download_config=tfds.download.DownloadConfig(
                    manual_dir=manual_dir,
                    download_mode=tfds.download.GenerateMode.REUSE_DATASET_IF_EXISTS,
                    try_download_gcs=False,
                )
            )
    except BaseException as error:
        if previous is not None:
            shutil.rmtree(built, ignore_errors=True)
            previous.rename(built)
        if atomic.is_disk_full(error):
            kept = "; the previous build is kept" if previous is not None else ""
            raise OSError(
                errno.ENOSPC, f"no space left on the device of {data_dir} to build {dataset} "
                f"(the partial build is removed{kept}): {launch.one_line(error)}",
            ) from None  # fmt: skip
        empty = _EMPTY_SPLIT.search(str(error))
        if empty:
            raise ValueError(
                f"dataset {dataset}: its split {empty[1]} would hold no example: the files "
                f"in {manual_dir or 'its manual folder'} give it none, or every one was "
                "skipped (the warnings above name them)"
            ) from None
        raise
    if previous is not None:
        shutil.rmtree(previous)
    return builder


# TFDS's words for a split whose generator yielded nothing.
_EMPTY_SPLIT = re.compile(r'writing of split "([^"]+)": No examples were yielded')


def _clear_leftovers(built: pathlib.Path) -> None:
    """What a build killed before its end left (no other build runs: the lock is held):
    TFDS's partial `incomplete.*` folders are removed; an old build set aside by
    --overwrite is put back where no build is in place, else removed."""
    for partial in built.parent.glob(f"incomplete.*_{built.name}"):
        shutil.rmtree(partial)
    aside = built.with_name(f".{built.name}.previous")
    if aside.exists():
        if built.exists():
            shutil.rmtree(aside)
        else:
            aside.rename(built)


def _readable(dataset: str, data_dir: str) -> bool:
    """Whether the built dataset's description reads with the builder's default options."""
    try:
        _builder(dataset, data_dir, {})
    except Exception:  # the same kinds as the failed read with options
        return False
    return True


def _builder(dataset: str, data_dir: str, options: dict) -> tfds.core.DatasetBuilder:
    try:
        return tfds.builder(dataset, data_dir=data_dir, file_format="array_record", **options)
    except (OSError, ValueError) as error:
        # TFDS prefixes the builder's own message with all its arguments: keep the message.
        if isinstance(error.__cause__, (OSError, ValueError)):
            raise error.__cause__ from None
        raise


def _outermost_missing(folder: pathlib.Path, root: pathlib.Path) -> pathlib.Path | None:
    """The outermost folder between `root` (excluded) and `folder` that does not exist."""
    missing = None
    while folder != root and folder != folder.parent:
        missing = missing if folder.exists() else folder
        folder = folder.parent
    return missing


def _remove_new_folders(root: pathlib.Path, before: set[str] | None, created) -> None:
    """After a failed build: removes the dataset folder it created (`created`), the new
    folders under `root` holding no file (e.g. downloads/), and `root` if it was created."""
    if created is not None:
        shutil.rmtree(created, ignore_errors=True)
    for name in set(os.listdir(root)) - (before or set()) if root.is_dir() else ():
        if not any(p.is_file() for p in (root / name).rglob("*")):
            shutil.rmtree(root / name, ignore_errors=True)
    if before is None and root.is_dir() and not os.listdir(root):
        root.rmdir()


def main(argv: list[str]) -> None:
    del argv
    if not _DATASET.value:
        raise ValueError(f"--dataset is required; available: {', '.join(available_datasets())}")
    try:
        builder = build(
            _DATASET.value,
            data_dir=_DATA_DIR.value,
            manual_dir=_MANUAL_DIR.value,
            overwrite=_OVERWRITE.value,
            **{
                k: v
                for k, v in (
                    ("corpus", _CORPUS.value),
                    ("background_dir", _BACKGROUND_DIR.value),
                    ("reference_corpus", _REFERENCE_CORPUS.value),
                )
                if v is not None
            },
        )
    except AssertionError as error:  # TFDS reports a missing manual folder so
        raise ValueError(f"build_dataset: {launch.one_line(error)}") from error
    print(f"{builder.info.full_name} is in {builder.data_dir}")
    for split, info in builder.info.splits.items():
        print(f"  {split}: {info.num_examples} examples")
    root = str(builder.data_dir_root)
    print(f"read it with tfds.data_source({_DATASET.value!r}, data_dir={root!r})")


if __name__ == "__main__":
    launch.run(main)
