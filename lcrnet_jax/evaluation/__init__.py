"""Evaluation on dataset splits (LCR-Net++ Sec. 4), detectron2's DatasetEvaluator style.

`base`: the `Evaluator` interface (reset / process(batch, people) / evaluate -> dict);
`inference`: the detector of every method and the loop feeding the evaluators;
`generic`: the project's own metrics on any split; one file per benchmark protocol
(`h36m`, `mpii`, `mupots`, `coco`, `lsp`); `benchmarks`: the choice by config.
"""

from lcrnet_jax.evaluation.base import FALLBACK, METHODS, PROTOCOL_METHODS, Evaluator
from lcrnet_jax.evaluation.base import format_table as format_benchmark_table
from lcrnet_jax.evaluation.benchmarks import evaluator_names, make_evaluators
from lcrnet_jax.evaluation.generic import format_table
from lcrnet_jax.evaluation.inference import evaluate, make_detector

__all__ = [
    "FALLBACK",
    "METHODS",
    "PROTOCOL_METHODS",
    "Evaluator",
    "evaluate",
    "evaluator_names",
    "format_benchmark_table",
    "format_table",
    "make_detector",
    "make_evaluators",
]
