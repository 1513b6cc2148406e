import pathlib
import shutil
import types

import pytest
import tensorflow_datasets as tfds

from lcrnet_jax.data import atomic, corpus, pipeline, records

_NAME = "synthetic_people/test"


def damage_test_shard(data_dir) -> None:
    """Overwrites 64 bytes in the middle of the unit-test dataset's test shard."""
    (shard,) = pathlib.Path(data_dir).glob(f"{_NAME}/*/*-test.array_record-*")
    with open(shard, "r+b") as f:
        f.seek(shard.stat().st_size // 2)
        f.write(bytes(range(64)))


@pytest.fixture(scope="module")
def damaged(data_dir, tmp_path_factory):
    """A copy of the unit-test dataset with `damage_test_shard`, and the indices of the
    records that no longer read (the records of a chunk share its checksum: here all 8
    are in one)."""
    copy = tmp_path_factory.mktemp("damaged") / "tfds"
    shutil.copytree(data_dir, copy)
    damage_test_shard(copy)
    source = pipeline.open_source(_NAME, split="test", data_dir=str(copy))
    unreadable = []
    for i in range(len(source)):
        try:
            source[i]
        except RuntimeError:
            unreadable.append(i)
    assert unreadable
    return str(copy), unreadable


def test_a_damaged_record_is_named_with_its_dataset_and_the_rebuild_command(damaged):
    data_dir, unreadable = damaged
    loader = pipeline.make_loader(
        _NAME, split="test", data_dir=data_dir, batch_size=2, image_size=64, train=False
    )
    with pytest.raises(records.DamagedRecordError) as caught:
        list(loader)
    message = str(caught.value)
    assert "\n" not in message
    index = int(message.split()[1])
    assert index in unreadable
    assert message.startswith(f"record {index} of dataset '{_NAME}' split 'test' in {data_dir}/")
    assert "Riegeli" in message  # array_record's reason
    assert message.endswith(
        f"rebuild it with python experiments/build_dataset.py --dataset={_NAME} "
        f"--data_dir={data_dir} --overwrite"
    )
    source = pipeline.open_source(_NAME, split="test", data_dir=data_dir)
    with pytest.raises(IndexError):  # not damage: the end of the split
        records.read_record(source, len(source))


def test_the_corpus_reader_names_a_damaged_record(damaged):
    data_dir, unreadable = damaged
    with pytest.raises(records.DamagedRecordError, match=rf"record {unreadable[0]} of dataset"):
        corpus.load_pose_corpus(f"{_NAME}:test", data_dir=data_dir)


def test_an_image_that_does_not_decode_names_its_record(data_dir):
    source = pipeline.open_source(_NAME, split="test", data_dir=data_dir)
    good = dict(source[0])
    cut = {**good, "image": good["image"][:300]}
    noise = {**good, "image": bytes(300)}
    for bad in (cut, noise):
        loader = pipeline.make_loader(
            [good, bad, good], batch_size=1, image_size=32, train=False,
            src_joint_set=pipeline.source_joint_set(source),
        )  # fmt: skip
        with pytest.raises(records.DamagedRecordError) as caught:
            list(loader)
        message = str(caught.value)
        assert message.startswith("record 1 of a list of 3 records: image cannot be decoded: ")
        assert "BytesIO" not in message and "rebuild" not in message
    assert next(iter(loader))["image"].shape == (1, 32, 32, 3)  # record 0 decodes


def test_origin_of_a_tfds_source_names_the_split_folder_and_rebuild_command(data_dir):
    source = tfds.data_source(_NAME, split="train", data_dir=data_dir)
    origin = records.origin(source)
    assert origin.description == (
        f"dataset '{_NAME}' split 'train' in {source.dataset_info.data_dir}"
    )
    assert f"--dataset={_NAME} --data_dir={data_dir} --overwrite" in origin.rebuild


def test_open_split_names_what_is_wrong(data_dir):
    assert len(records.open_split(_NAME, "test[2:5]", data_dir=data_dir)) == 3
    cases = {
        "test[abc]": (ValueError, rf"cannot read split 'test\[abc\]' of dataset '{_NAME}'"),
        "test[:300]": (ValueError, r"Requested slice \[:300\] incompatible with 8 examples"),
        "val": (FileNotFoundError, r"has no split 'val'; its splits: train, test"),
    }
    for split, (kind, message) in cases.items():
        with pytest.raises(kind, match=message):
            records.open_split(_NAME, split, data_dir=data_dir)
    with pytest.raises(FileNotFoundError, match="unknown dataset 'synthetic_peeple': did you"):
        records.open_split("synthetic_peeple", "test", data_dir=data_dir)


def test_a_dataset_being_rebuilt_says_so_not_damaged(tmp_path):
    # A read while build_dataset.py --overwrite holds the dataset's lock, between moving
    # the old build aside and putting the new one in place.
    folder = tmp_path / "synthetic_people" / "test"
    (folder / ".1.1.0.previous").mkdir(parents=True)
    (folder / ".1.1.0.previous" / "dataset_info.json").write_text("{")
    with atomic.exclusive(folder, busy="in use"):
        with pytest.raises(FileNotFoundError, match="is being built by another process; wait"):
            records.open_split(_NAME, "test", data_dir=str(tmp_path))
    with pytest.raises(ValueError, match="its files are damaged"):  # no build running
        records.open_split(_NAME, "test", data_dir=str(tmp_path))


def test_open_split_expands_a_home_relative_data_dir(data_dir, monkeypatch):
    home = pathlib.Path(data_dir).parent
    monkeypatch.setenv("HOME", str(home))
    relative = f"~/{pathlib.Path(data_dir).name}"
    assert len(records.open_split(_NAME, "test", data_dir=relative)) == 8
    with pytest.raises(FileNotFoundError, match="has no split 'val'"):
        records.open_split(_NAME, "val", data_dir=relative)


def test_skipped_at_build_is_nothing_where_no_skips_are_recorded(data_dir):
    """synthetic_people records none (as datasets built before builders did); a source
    that is not TFDS has no metadata."""
    source = records.open_split(_NAME, "test[:2]", data_dir=data_dir)
    assert records.skipped_at_build(source, "test[:2]") == (0, [])
    assert records.skipped_at_build(source.dataset_info, "train+test") == (0, [])
    assert records.skipped_at_build(list(range(3)), "test") == (0, [])


def test_skipped_at_build_sums_the_named_splits_of_a_sum_or_slice():
    """ "train[:10]+test" counts all that "train" and "test" skipped, in that order."""
    skipped = {
        "train": {"count": 3, "first": ["a.jpg", "b.jpg", "c.jpg"]},
        "test": {"count": 1, "first": ["d.jpg"]},
    }
    info = types.SimpleNamespace(metadata={records.SKIPPED: skipped})
    assert records.skipped_at_build(info, "train[:10] + test") == (
        4,
        ["a.jpg", "b.jpg", "c.jpg", "d.jpg"],
    )
    assert records.skipped_at_build(info, "test[50%:]") == (1, ["d.jpg"])
    assert records.skipped_at_build(info, "validation") == (0, [])


def test_head_holds_at_most_the_records_of_its_source():
    """A head longer than its source is the whole source, and ends where it ends."""
    head = records.Head(list("abc"), 10)
    assert len(head) == 3 and [head[i] for i in range(3)] == ["a", "b", "c"]
    with pytest.raises(IndexError, match=r"record 3 is not in \[0, 3\)"):
        head[3]


def test_a_damaged_record_error_is_one_line():
    """A reason of several lines (protobuf, array_record) keeps its first line."""
    where = records.Origin("dataset 'x' split 'test' in /d", "python rebuild.py")
    error = records.damaged_record(where, 5, RuntimeError("Riegeli: bad chunk\n  at offset 7"))
    assert str(error) == (
        "record 5 of dataset 'x' split 'test' in /d: Riegeli: bad chunk; its files are "
        "damaged: rebuild it with python rebuild.py"
    )
    assert str(records.damaged_record(records.Origin("a list"), 0, KeyError())).endswith(
        ": KeyError"
    )


def test_a_missing_dataset_lists_the_built_ones_not_downloads_or_hidden_folders(tmp_path):
    for name in ("downloads", ".staged.partial-1", "lsp", "coco"):
        (tmp_path / name).mkdir()
    error = records.missing_dataset_error(_NAME, "test", str(tmp_path), RuntimeError("not found"))
    assert isinstance(error, FileNotFoundError)
    assert "(RuntimeError; built there: coco, lsp); build it with" in str(error)


def test_a_built_split_that_tfds_cannot_open_is_not_said_missing(data_dir):
    """Before: "not found in ... build it with" for a split that is built (RC9)."""
    error = records.missing_dataset_error(_NAME, "test", data_dir, OSError("Permission denied"))
    assert isinstance(error, ValueError)
    assert str(error) == (
        f"cannot open split 'test' of dataset '{_NAME}' in {data_dir} (OSError: Permission "
        "denied); if its files are damaged, rebuild it with python "
        f"experiments/build_dataset.py --dataset={_NAME} --data_dir={data_dir} --overwrite"
    )


def test_a_damaged_build_names_its_newest_version_folder(tmp_path):
    """Of two unreadable versions, the message names the newest (what TFDS would read)."""
    folder = tmp_path / "synthetic_people" / "test"
    for version in ("1.1.0", "1.0.0"):  # made newest first
        (folder / version).mkdir(parents=True)
        (folder / version / "dataset_info.json").write_text("{")
    assert records.built_folders(_NAME, str(tmp_path)) == [folder / "1.0.0", folder / "1.1.0"]
    with pytest.raises(ValueError, match=f"in {folder / '1.1.0'} cannot be read"):
        records.open_split(_NAME, "test", data_dir=str(tmp_path))
