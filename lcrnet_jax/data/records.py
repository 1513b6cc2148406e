"""Reading the records of a built dataset split, with damage reported in one line.

A built split is a set of array_record files. A byte flipped on disk, a copy cut short or
an image that no longer decodes would otherwise stop training or evaluation with
array_record's or PIL's message, which names neither the record nor the dataset.
`DamagedRecordError` names the record, the dataset, its split and folder, and the
command that rebuilds it.
"""

from __future__ import annotations

import dataclasses
import os
import pathlib


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
