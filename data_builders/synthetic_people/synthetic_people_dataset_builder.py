"""Synthetic multi-person images with exact 2D/3D poses as TFDS records (LCR-Net++ Sec. 4.1).

The paper adds images rendered from CMU MoCap poses, sampled where the pose space is
sparse, to its training data (Fig. 8c-d; 40k images, 4-5 people each, for the
in-the-wild model). This builder does the same with capsule bodies
(`lcrnet_jax.data.synthetic`) and either procedural poses (`lcrnet_jax.data.poses`, no
download) or the poses of a MoCap corpus (config `pose_corpus`, e.g. the `cmu_mocap`
dataset built in the same data_dir; `--corpus=` of experiments/build_dataset.py points
any config at any corpus of `lcrnet_jax.data.corpus`). Per split, a pool of poses is
drawn (procedural) or read (MoCap, turned to face the camera with `poses.canonical_yaw`)
and thinned with `poses.subsample_poses` (no two closer than `min_pose_distance`; with
`--reference_corpus=`, e.g. `human36m`, none that close to a pose of that corpus either:
the paper's CMU poses "in areas of the pose space that are less populated by Human3.6M
poses"); each image then takes its people from the pool and renders them with
`synthetic.render_scene`, over procedural backgrounds or, with `--background_dir=`, crops
of the user's photos (use person-free photos: people in them would be unlabelled). Example `i`
of a split depends only on (config, seed, split, i): its generator is seeded with
`(seed, split number, i)`. Records follow `lcrnet_jax.data.features.pose_features` with
the LCR-17 joints (metadata `joint_set = "lcr17"`, and the `pose_corpus`,
`background_dir` and `reference_corpus` the build drew from, "" for none).
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import multiprocessing
import os
import threading
import time
from concurrent import futures

import numpy as np
import tensorflow_datasets as tfds

from lcrnet_jax import skeleton
from lcrnet_jax.data import corpus as corpus_lib
from lcrnet_jax.data import features, poses, synthetic, workers
from lcrnet_jax.data.synthetic import background as backgrounds

JOINT_SET = "lcr17"
_SPLITS = ("train", "test")


@dataclasses.dataclass(eq=False)
class SyntheticPeopleConfig(tfds.core.BuilderConfig):
    """Size and content of a synthetic_people configuration.

    Attributes:
      height, width: image size in pixels.
      num_train, num_test: images per split.
      people: (min, max) people drawn per image (fewer when placement fails).
      person_size: on-screen body height range, fraction of the image height.
      max_yaw: body yaw range around facing the camera, radians (pi: any direction).
      pool_size: procedural poses drawn per split before thinning.
      min_pose_distance: thinning radius in metres (RMS joint distance).
      seed: seed of every random draw.
      image_format: "jpeg" or "png".
      pose_corpus: "" for procedural poses, else a corpus spec of
        `lcrnet_jax.data.corpus.load_pose_corpus` read from the build's data_dir.
      max_overlap: largest IoU between two people's joint boxes (occlusions).
    """

    height: int = 256
    width: int = 256
    num_train: int = 2000
    num_test: int = 200
    people: tuple[int, int] = (1, 4)
    person_size: tuple[float, float] = (0.35, 0.85)
    max_yaw: float = math.pi
    pool_size: int = 8000
    min_pose_distance: float = 0.03
    seed: int = 0
    image_format: str = "jpeg"
    pose_corpus: str = ""
    max_overlap: float = 0.3


class SyntheticPeople(tfds.core.GeneratorBasedBuilder):
    """Procedural people rendered over random backgrounds, with exact annotations.

    Rendering runs in `num_workers` spawned processes (default: up to 4, one per CPU)
    for splits of at least `MIN_PARALLEL_EXAMPLES` images (smaller ones render faster
    than workers start); the records do not depend on the number of workers.
    """

    VERSION = tfds.core.Version("1.1.0")
    RELEASE_NOTES = {
        "1.0.0": "Initial release.",
        "1.1.0": "tiny: 1-3 larger people facing the camera (yaw within 90 degrees).",
    }
    BUILDER_CONFIGS = [
        SyntheticPeopleConfig(
            name="tiny",
            description=(
                "256x256, 2000 train / 200 test images, 1-3 people facing the camera "
                "(yaw within 90 degrees), 45-90% of the image height (CPU demo)."
            ),
            people=(1, 3),
            person_size=(0.45, 0.9),
            max_yaw=math.pi / 2,
        ),
        SyntheticPeopleConfig(
            name="default",
            description="512x512, 50000 train / 2000 test images, 1-6 people.",
            height=512,
            width=512,
            num_train=50_000,
            num_test=2_000,
            people=(1, 6),
            person_size=(0.2, 0.85),
            pool_size=100_000,
        ),
        SyntheticPeopleConfig(
            name="cmu",
            description=(
                "480x640, 40000 train / 1000 test images of 3-6 CMU MoCap people (4.5 per "
                "image on average), overlapping up to IoU 0.5 (Sec. 4.2); needs cmu_mocap."
            ),
            height=480,
            width=640,
            num_train=40_000,
            num_test=1_000,
            people=(3, 6),
            person_size=(0.3, 0.8),
            min_pose_distance=0.05,
            pose_corpus="cmu_mocap",
            max_overlap=0.5,
        ),
        SyntheticPeopleConfig(
            name="test",
            description="96x128, 24 train / 8 test images (unit tests).",
            height=96,
            width=128,
            num_train=24,
            num_test=8,
            people=(1, 3),
            pool_size=200,
        ),
    ]
    DEFAULT_CONFIG_NAME = "tiny"
    MIN_PARALLEL_EXAMPLES = 1000

    def __init__(
        self,
        *,
        num_workers: int | None = None,
        corpus: str | None = None,
        background_dir: str | None = None,
        reference_corpus: str | None = None,
        **kwargs,
    ):
        """Args:
        num_workers: rendering processes (None: min(4, CPUs)).
        corpus: draw the poses from this corpus instead of the config's `pose_corpus`.
        background_dir: a folder of background photos (person-free) for half the images.
        reference_corpus: a corpus spec (e.g. "human36m") whose poses the pool keeps away
          from, by `min_pose_distance` once both face the camera.
        kwargs: TFDS's.
        """
        self._corpus = corpus  # before TFDS's construction, which reads `_info`
        self._background_dir = background_dir
        self._reference_corpus = reference_corpus
        super().__init__(**kwargs)
        self._num_workers = min(4, os.cpu_count() or 1) if num_workers is None else num_workers
        if background_dir is not None:
            backgrounds.list_images(background_dir)  # fails at once on a bad folder

    def _info(self) -> tfds.core.DatasetInfo:
        config = self.builder_config
        return self.dataset_info_from_configs(
            features=features.pose_features(
                skeleton.get_joint_set(JOINT_SET).num_joints, image_format=config.image_format
            ),
            metadata=tfds.core.MetadataDict(
                joint_set=JOINT_SET,
                height=config.height,
                width=config.width,
                seed=config.seed,
                **self._options(self._corpus, self._background_dir, self._reference_corpus),
            ),
            homepage="https://github.com/naver/lcrnet-v2-improved-ppi",
        )

    def _options(
        self, corpus: str | None, background_dir: str | None, reference_corpus: str | None
    ) -> dict[str, str]:
        """The pose corpus, background folder and reference corpus a build with these
        options draws from."""
        if corpus is None:
            corpus = self.builder_config.pose_corpus
        return {
            "pose_corpus": corpus or "",
            "background_dir": background_dir or "",
            "reference_corpus": reference_corpus or "",
        }

    def mismatched_options(self) -> str | None:
        """How the build in place was made with other options than this builder's
        (`corpus`, `background_dir`, `reference_corpus`), None if it was not. A build
        whose metadata does not record them (made by an older version) cannot be compared:
        with options, that is the reason; without, it is reused as made with its config's,
        with a warning."""
        path = os.path.join(self.data_dir, "metadata.json")
        with open(path, encoding="utf-8") as f:
            recorded = {"reference_corpus": "", **json.load(f)}  # none before it existed
        wanted = self._options(self._corpus, self._background_dir, self._reference_corpus)
        if not set(wanted) <= set(recorded):
            unrecorded = (
                "its metadata does not record the pose corpus, background folder and "
                "reference corpus it was built with (an older version built it)"
            )
            if wanted != self._options(None, None, None):
                return unrecorded
            logging.warning("%s: %s: reused as built with %s", self.data_dir, unrecorded,
                            _describe(wanted))  # fmt: skip
            return None
        built = {k: recorded[k] for k in wanted}
        if built == wanted:
            return None
        return f"it was built with {_describe(built)}, not {_describe(wanted)}"

    def _split_generators(self, dl_manager):
        del dl_manager  # nothing to download
        config = self.builder_config
        sizes = {"train": config.num_train, "test": config.num_test}
        return {split: self._generate_examples(split, sizes[split]) for split in _SPLITS}

    def _generate_examples(self, split: str, num_examples: int):
        config = self.builder_config
        split_id = _SPLITS.index(split)
        corpus = self._corpus if self._corpus is not None else config.pose_corpus
        data_dir = os.fspath(self.data_dir_root)
        reference = None
        if self._reference_corpus:
            reference, _ = corpus_lib.load_pose_corpus(
                self._reference_corpus, joint_set=JOINT_SET, data_dir=data_dir
            )
            reference = poses.canonical_yaw(reference, JOINT_SET)
        if corpus:
            mocap, _ = corpus_lib.load_pose_corpus(corpus, joint_set=JOINT_SET, data_dir=data_dir)
            pool = poses.canonical_yaw(mocap, JOINT_SET)
            thin = poses.subsample_poses(
                pool, min_distance=config.min_pose_distance, reference=reference, seed=config.seed
            )
            pool = pool[thin]
        else:
            pool_rng = np.random.default_rng([config.seed, split_id, 1 << 30])
            pool = poses.sample_poses(pool_rng, config.pool_size).poses
            thin = poses.subsample_poses(
                pool, min_distance=config.min_pose_distance, reference=reference
            )
            pool = pool[thin]
        if len(pool) < config.people[1]:
            raise ValueError(
                f"the pose pool has {len(pool)} poses, fewer than {config.people[1]} people "
                "per image: use a larger corpus or a smaller min_pose_distance"
            )
        maker = ExampleMaker(
            pool=pool, config=config, split=split, background_dir=self._background_dir
        )
        if self._num_workers <= 1 or num_examples < self.MIN_PARALLEL_EXAMPLES:
            yield from ((i, maker(i)) for i in range(num_examples))
            return
        # Spawned (not forked) workers are safe whatever threads the parent runs, and a
        # worker that dies raises BrokenProcessPool instead of hanging.
        with futures.ProcessPoolExecutor(
            self._num_workers,
            mp_context=multiprocessing.get_context("spawn"),
            initializer=_set_worker_maker,
            initargs=(maker, os.getpid()),
        ) as executor:
            with workers.interrupts_held():  # they start in `map`, deaf to Ctrl-C and kills
                examples = executor.map(_worker_example, range(num_examples), chunksize=16)
            yield from enumerate(examples)


def _describe(options: dict[str, str]) -> str:
    return ", ".join(f"{name}={value or 'none'}" for name, value in options.items())


@dataclasses.dataclass(frozen=True)
class ExampleMaker:
    """Makes example `index` of a split: its generator is seeded with (seed, split, index).

    Attributes:
      pool: (N, 17, 3) body-frame LCR-17 poses the people are drawn from.
      config: the builder config.
      split: "train" or "test".
      background_dir: folder of background photos, or None.
    """

    pool: np.ndarray
    config: SyntheticPeopleConfig
    split: str
    background_dir: str | None = None

    def __call__(self, index: int) -> dict:
        config = self.config
        rng = np.random.default_rng([config.seed, _SPLITS.index(self.split), index])
        render_config = synthetic.RenderConfig(
            height=config.height,
            width=config.width,
            person_size=config.person_size,
            max_yaw=config.max_yaw,
            max_overlap=config.max_overlap,
            background_dir=self.background_dir,
        )
        return make_example(
            rng,
            self.pool,
            render_config,
            people=config.people,
            image_id=f"{self.split}/{index:06d}",
            image_format=config.image_format,
        )


_WORKER_MAKER: list[ExampleMaker] = []


def _set_worker_maker(maker: ExampleMaker, parent: int) -> None:
    _WORKER_MAKER[:] = [maker]
    threading.Thread(target=_exit_with_parent, args=(parent,), daemon=True).start()


def _exit_with_parent(parent: int) -> None:
    """Ends a worker whose parent is gone (a build killed with SIGKILL cannot stop its
    workers, which would otherwise wait for work forever)."""
    while os.getppid() == parent:
        time.sleep(1)
    os._exit(1)


def _worker_example(index: int) -> dict:
    return _WORKER_MAKER[0](index)


def make_example(
    rng: np.random.Generator,
    pool: np.ndarray,
    render_config: synthetic.RenderConfig,
    *,
    people: tuple[int, int],
    image_id: str,
    image_format: str = "jpeg",
) -> dict:
    """One `pose_features` record: people drawn from `pool`, rendered by `render_scene`.

    Args:
      rng: the example's generator.
      pool: (N, 17, 3) body-frame LCR-17 poses to draw from.
      render_config: `synthetic.RenderConfig`.
      people: (min, max) number of people drawn.
      image_id: the record's id.
      image_format: "jpeg" or "png".

    Returns:
      The record as a dict of numpy arrays and encoded image bytes.
    """
    num = int(rng.integers(people[0], people[1] + 1))
    chosen = pool[rng.choice(len(pool), size=num, replace=False)]
    image, ann = synthetic.render_scene(list(chosen), rng, render_config)
    return {
        "image": features.encode_image(image, image_format),
        "image_id": image_id,
        "intrinsics": ann.intrinsics,
        "people": {
            "joints2d": ann.joints2d,
            "joints3d": ann.joints3d,
            "visible": ann.visible,
            "has_3d": np.ones(len(ann.joints3d), bool),
            "box": ann.boxes,
        },
    }
