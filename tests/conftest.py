"""Shared test set-up: fast XLA compiles, the JAX persistent compilation cache (kept
inside the repository), the synthetic unit-test dataset and the fake benchmark datasets."""

import os
import pathlib

import jax
import pytest

# Compiling is most of `make test` (each test program runs a few times at most): XLA's
# LLVM backend at optimisation level 0 compiles 2-3x faster, with the same HLO passes
# (fusion, layouts). Set before the backend starts; subprocesses inherit it. The whole
# suite: 12.6 -> 9.9 min from a fresh clone on 2 cores (2026-12-06). Launchers,
# benchmarks and the demo keep XLA's defaults.
_FLAGS = f"{os.environ.get('XLA_FLAGS', '')} --xla_backend_optimization_level=0"
os.environ["XLA_FLAGS"] = _FLAGS.strip()

_CACHE_DIR = pathlib.Path(__file__).resolve().parent.parent / ".jax_cache"

jax.config.update("jax_compilation_cache_dir", str(_CACHE_DIR))
jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.2)
jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)


@pytest.fixture(scope="session")
def data_dir(tmp_path_factory):
    """A TFDS data_dir holding synthetic_people/test (24 train / 8 test images); read only."""
    from experiments import build_dataset

    data_dir = str(tmp_path_factory.mktemp("tfds"))
    builder = build_dataset.build("synthetic_people/test", data_dir=data_dir)
    assert builder.info.splits["train"].num_examples == 24
    return data_dir


# Tiny builds of the benchmark datasets from fake raw files (tests/fake_datasets.py), shared by
# the tests of the benchmarks' protocols (test_h36m, test_mpii, test_mupots, test_benchmarks).


@pytest.fixture(scope="session")
def h36m_test(tmp_path_factory):
    from data_builders.human36m import human36m_dataset_builder as builder
    from tests import fake_datasets as fake

    root = tmp_path_factory.mktemp("h36m")
    fake.write_human36m(root / "manual", layout="mono")
    config = builder.Human36mConfig(
        name="tiny", train_subjects=(1,), test_subjects=(11,), train_frame_step=64,
        test_frame_step=64,
    )  # fmt: skip
    return fake.build(builder.Human36m, config, root / "data", root / "manual")["test"]


@pytest.fixture(scope="session")
def mpii_validation(tmp_path_factory):
    from data_builders.mpii_human_pose import mpii_human_pose_dataset_builder as builder
    from tests import fake_datasets as fake

    root = tmp_path_factory.mktemp("mpii")
    fake.write_mpii(root / "manual")
    config = builder.MpiiConfig(name="tiny", val_images=2, seed=0)
    return fake.build(builder.MpiiHumanPose, config, root / "data", root / "manual")["validation"]


@pytest.fixture(scope="session")
def mupots_test(tmp_path_factory):
    from data_builders.mupots3d import mupots3d_dataset_builder as builder
    from tests import fake_datasets as fake

    root = tmp_path_factory.mktemp("mupots")
    fake.write_mupots(root / "manual")
    config = builder.MupotsConfig(name="tiny", sequences=(1, 2))
    return fake.build(builder.Mupots3d, config, root / "data", root / "manual")["test"]
