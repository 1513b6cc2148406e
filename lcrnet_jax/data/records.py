"""Opening a built dataset split and reading its records, with faults in one line.

`open_split` is the one way to open a split by name: a dataset that is not built, an
unknown name or split ends in one line with the close names or the build command.

A built split is a set of array_record files. A byte flipped on disk, a copy cut short or
an image that no longer decodes would otherwise stop training or evaluation with
array_record's or PIL's message, which names neither the record nor the dataset.
`DamagedRecordError` names the record, the dataset, its split and folder, and the
command that rebuilds it.

`skipped_at_build` tells what the builder skipped in a split (files it could not read),
so that an evaluation can say when a benchmark split is not whole.
"""

from __future__ import annotations

import dataclasses
import difflib
import importlib.util
import os
import pathlib
import pkgutil

from lcrnet_jax.data import atomic


class DamagedRecordError(OSError):
    """A record of a dataset split that cannot be read or decoded."""


@dataclasses.dataclass(frozen=True)
class Origin:
    """Where a source's records come from, as error messages name it (picklable, for
    grain's worker processes).

    Attributes:
      description: e.g. "dataset 'lsp' split 'test' in /data/lsp/1.0.0".
      rebuild: the command that rebuilds the dataset ("" for other sources).
    """

    description: str
    rebuild: str = ""


def origin(source) -> Origin:
    """The `Origin` of a `tfds.data_source` split, or of any other sequence of records."""
    info = getattr(source, "dataset_info", None)
    if info is None:
        return Origin(f"a {type(source).__name__} of {len(source)} records")
    name = f"{info.name}/{info.config_name}" if info.config_name else info.name
    levels = 3 if info.config_name else 2  # DATA_DIR/NAME[/CONFIG]/VERSION
    data_dir = os.fspath(pathlib.Path(info.data_dir).parents[levels - 1])
    return Origin(
        f"dataset {name!r} split {getattr(source, 'split', '?')!r} in {info.data_dir}",
        f"python experiments/build_dataset.py --dataset={name} --data_dir={data_dir} --overwrite",
    )


def damaged_record(where: Origin, index: int, error: BaseException) -> DamagedRecordError:
    """The one-line error of record `index`, which `error` stopped."""
    reason = str(error).splitlines()[0] if str(error) else type(error).__name__
    fix = f"; its files are damaged: rebuild it with {where.rebuild}" if where.rebuild else ""
    return DamagedRecordError(f"record {index} of {where.description}: {reason}{fix}")


class Head:
    """The first `count` records of `source`, read when asked for; its `dataset_info`
    and `split` are the source's, so that errors name the dataset."""

    def __init__(self, source, count: int):
        self._source, self._count = source, min(count, len(source))
        self.dataset_info = getattr(source, "dataset_info", None)
        self.split = getattr(source, "split", None)

    def __len__(self) -> int:
        return self._count

    def __getitem__(self, index: int):
        if not 0 <= index < self._count:
            raise IndexError(f"record {index} is not in [0, {self._count})")
        return self._source[index]


def read_record(source, index: int):
    """`source[index]`, or `DamagedRecordError` if its bytes cannot be read (IndexError
    outside [0, len(source)))."""
    if not 0 <= index < len(source):
        raise IndexError(f"record {index} is not in [0, {len(source)})")
    try:
        return source[index]
    except Exception as error:  # array_record raises RuntimeError, a bad proto others
        raise damaged_record(origin(source), index, error) from error


SKIPPED = "skipped"  # the metadata key of what a builder skipped (`features.SkipLog`)


def skipped_at_build(source, split: str) -> tuple[int, list[str]]:
    """What the builder of `source`'s dataset skipped in `split` (unreadable files,
    sequences or frames): their number and the first (up to 20 a split) paths or ids.

    Args:
      source: a split opened by `open_split`, or its `dataset_info`.
      split: a TFDS split; a slice or sum counts its whole named splits ("test[:100]":
        all that "test" skipped).

    Returns:
      (count, first); (0, []) for a dataset built before builders recorded their skips,
      or a source that is not a TFDS split.
    """
    metadata = getattr(getattr(source, "dataset_info", source), "metadata", None)
    count, first = 0, []
    if metadata is None:
        return count, first
    for name in split.split("+"):
        try:  # a LazyMetadataDict reads metadata.json on `[]`, not on `in` or `get`
            entry = metadata[SKIPPED][name.split("[")[0].strip()]
        except KeyError:
            continue
        count += int(entry["count"])
        first += list(entry["first"])
    return count, first


def open_split(name: str, split: str, *, data_dir: str | None = None, what: str = ""):
    """The records of split `split` of the dataset "NAME[/CONFIG]" built in `data_dir`
    (None: TFDS's default; "~" expanded), images left encoded; never builds nor downloads.

    Raises:
      FileNotFoundError: see `missing_dataset_error` (`what` prefixes its message).
    """
    import tensorflow_datasets as tfds

    data_dir = os.path.expanduser(data_dir) if data_dir else None
    try:
        builder = tfds.builder(name, data_dir=data_dir)
        images = "image" in builder.info.features
        decoders = {"image": tfds.decode.SkipDecoding()} if images else None
        return builder.as_data_source(split=split, decoders=decoders)
    except Exception as error:  # TFDS raises several kinds for a missing dataset or split
        raise missing_dataset_error(name, split, data_dir, error, what=what) from None


def _built_datasets(data_dir: str | None) -> list[str]:
    root = os.path.expanduser(data_dir or "~/tensorflow_datasets")
    if not os.path.isdir(root):
        return []
    return sorted(d for d in os.listdir(root) if not d.startswith((".", "downloads")))


def _built_splits(name: str, data_dir: str | None) -> list[str]:
    """The splits of dataset `name` built in `data_dir`; [] if it is not built there."""
    import tensorflow_datasets as tfds

    data_dir = os.path.expanduser(data_dir) if data_dir else None
    try:
        builder = tfds.builder(name, data_dir=data_dir)
        return list(builder.info.splits) if builder.is_prepared() else []
    except Exception:  # TFDS raises several kinds for an unknown or unbuilt dataset
        return []


def _dataset_folder(name: str, data_dir: str | None) -> pathlib.Path:
    """The folder of dataset "NAME[/CONFIG]" in `data_dir`, which holds its versions."""
    root = pathlib.Path(os.path.expanduser(data_dir or "~/tensorflow_datasets"))
    return root.joinpath(*name.split("/"))


def built_folders(name: str, data_dir: str | None) -> list[pathlib.Path]:
    """The version folders of dataset "NAME[/CONFIG]" in `data_dir` that hold a
    dataset_info.json (readable or not), oldest version first."""
    return sorted(p.parent for p in _dataset_folder(name, data_dir).glob("*/dataset_info.json"))


def _builder_names() -> list[str]:
    """The dataset builders of data_builders/ (its sub-packages), without importing them."""
    spec = importlib.util.find_spec("data_builders")
    if spec is None or not spec.submodule_search_locations:
        return []
    return sorted({m.name for m in pkgutil.iter_modules(spec.submodule_search_locations)})


def missing_dataset_error(
    name: str, split: str, data_dir: str | None, error: BaseException, *, what: str = ""
) -> FileNotFoundError | ValueError:
    """The one-line error of a dataset split that cannot be opened: an unknown name gets
    the close builder names, a missing split the built ones, a bad slice or a built split
    that TFDS cannot open TFDS's reason (ValueError), and a dataset that is not built the
    command that builds it."""
    where = data_dir or "~/tensorflow_datasets"
    builders = _builder_names()
    base = name.split("/")[0]
    if builders and base not in builders:
        close = difflib.get_close_matches(base, builders, n=3)
        hint = f"did you mean {' or '.join(close)}? " if close else ""
        return FileNotFoundError(
            f"{what}unknown dataset {name!r}: {hint}datasets: {', '.join(builders)}"
        )
    if atomic.is_locked(_dataset_folder(name, data_dir)):
        return FileNotFoundError(  # read while experiments/build_dataset.py rebuilds it
            f"{what}dataset {name!r} in {where} is being built by another process; wait for "
            "it to end"
        )
    splits = _built_splits(name, data_dir)
    if splits and split.split("[")[0] not in splits:
        return FileNotFoundError(
            f"{what}dataset {name!r} in {where} has no split {split!r}; its splits: "
            f"{', '.join(splits)}"
        )
    reason = str(error).splitlines()[0] if str(error) else type(error).__name__
    if splits and "[" in split:  # the split is there: its slice is what TFDS refused
        return ValueError(
            f"{what}cannot read split {split!r} of dataset {name!r} in {where}: {reason} "
            "(slices: test[:100], test[10:20], test[:50%])"
        )
    rebuild = f"python experiments/build_dataset.py --dataset={name} --data_dir={where} --overwrite"
    if splits:  # built, with this split, yet TFDS could not open it
        return ValueError(
            f"{what}cannot open split {split!r} of dataset {name!r} in {where} "
            f"({type(error).__name__}: {reason}); if its files are damaged, rebuild it with "
            f"{rebuild}"
        )
    present = built_folders(name, data_dir)
    if present and not splits:  # on disk, but TFDS cannot read its description
        return ValueError(
            f"{what}dataset {name!r} in {present[-1]} cannot be read ({type(error).__name__}: "
            f"{reason}); its files are damaged: rebuild it with {rebuild}"
        )
    built = ", ".join(_built_datasets(data_dir)) or "none"
    return FileNotFoundError(
        f"{what}dataset {name!r} split {split!r} not found in {where} "
        f"({type(error).__name__}; built there: {built}); build it with: python "
        f"experiments/build_dataset.py --dataset={name} --data_dir={where}"
    )
