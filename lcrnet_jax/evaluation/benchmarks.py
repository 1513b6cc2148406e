"""Which evaluators score a split: `config.eval.evaluators` (LCR-Net++ Sec. 4).

"auto" (the default) = "generic" plus the protocol of the evaluated dataset (its TFDS
name, `config.data.eval_name`): human36m (config p1, p2 or p3; "wild", whose test split
is P1's, as p1) -> `h36m.H36MEvaluator`,
mpii_human_pose -> `mpii.MPIIEvaluator`, mupots3d -> `mupots.MuPoTSEvaluator`,
coco_keypoints -> `coco.COCOEvaluator`, lsp -> `lsp.LSPEvaluator`; other datasets (e.g.
synthetic_people) have only the generic one. Otherwise a comma-separated list of
`EVALUATORS` names, e.g. "generic,mpii" or "human36m/p3".
"""

from __future__ import annotations

from lcrnet_jax.evaluation import coco, h36m, lsp, mpii, mupots
from lcrnet_jax.evaluation.base import Evaluator
from lcrnet_jax.evaluation.generic import GenericEvaluator

EVALUATORS = ("generic", "human36m", "mpii", "mupots", "coco", "lsp")
_PROTOCOLS = {
    "human36m": "human36m",
    "mpii_human_pose": "mpii",
    "mupots3d": "mupots",
    "coco_keypoints": "coco",
    "lsp": "lsp",
}
# Human3.6M builder configs that are not a protocol's name, and the protocol of their test
# split.
_H36M_TEST_PROTOCOLS = {"wild": "p1"}


def protocol_name(dataset: str) -> str | None:
    """The evaluator name of a dataset "NAME[/CONFIG]"'s protocol ("human36m/p2" keeps its
    config), None for a dataset without one; ValueError for an unknown Human3.6M one."""
    name, _, config = dataset.partition("/")
    protocol = _PROTOCOLS.get(name)
    return _human36m(config) if protocol == "human36m" else protocol


def _human36m(config: str) -> str:
    """ "human36m/PROTOCOL" of a Human3.6M dataset or evaluator config ("": p1)."""
    protocol = h36m.h36m_protocol(_H36M_TEST_PROTOCOLS.get(config, config) or "p1")
    return f"human36m/{protocol.name}"


def make_evaluators(spec: str, *, dataset: str, source, joint_set: str) -> list[Evaluator]:
    """The evaluators of `spec` ("auto" or names, see the module docstring).

    Args:
      spec: `config.eval.evaluators`.
      dataset: the evaluated dataset "NAME[/CONFIG]" (`config.data.eval_name`).
      source: the split's records, indexed like the batches' "index".
      joint_set: the model's joint set.
    """
    names = evaluator_names(spec, dataset=dataset)
    return [_make(name, dataset=dataset, source=source, joint_set=joint_set) for name in names]


def evaluator_names(spec: str, *, dataset: str) -> list[str]:
    """The evaluator names of `spec` for `dataset`, a Human3.6M one with its protocol
    (ValueError naming an unknown one): a config's evaluation is checked before its
    training."""
    if spec.strip() == "auto":
        names = ["generic", *filter(None, [protocol_name(dataset)])]
    else:
        names = [n.strip() for n in spec.split(",") if n.strip()]
    if not names:
        raise ValueError(f"eval.evaluators {spec!r} names no evaluator; known: {EVALUATORS}")
    resolved = []
    for name in names:
        kind, _, config = name.partition("/")
        if kind not in EVALUATORS:
            raise ValueError(f"unknown evaluator {name!r} in eval.evaluators; known: {EVALUATORS}")
        if kind == "human36m":
            # The protocol: the name's config, else the dataset's (human36m/p2), else p1.
            if not config and dataset.partition("/")[0] == "human36m":
                config = dataset.partition("/")[2]
            name = _human36m(config)
        resolved.append(name)
    return resolved


_CLASSES = {
    "mpii": mpii.MPIIEvaluator,
    "mupots": mupots.MuPoTSEvaluator,
    "coco": coco.COCOEvaluator,
    "lsp": lsp.LSPEvaluator,
}


def _make(name: str, *, dataset: str, source, joint_set: str) -> Evaluator:
    kind, _, config = name.partition("/")
    if kind == "generic":
        return GenericEvaluator(joint_set=joint_set)
    if kind == "human36m":
        return h36m.H36MEvaluator(source, joint_set=joint_set, protocol=config)
    return _CLASSES[kind](source, joint_set=joint_set)
