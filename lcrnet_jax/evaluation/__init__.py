"""Evaluation on dataset splits (LCR-Net++ Sec. 4).

`generic`: every method's people matched to the ground truth and scored with the generic
metrics (recall, OKS AP, MPJPE, 3DPCK, PCKh); `benchmarks`: the datasets' own protocols,
one file per benchmark (`h36m`, `mpii`, `mupots`).
"""

from lcrnet_jax.evaluation.benchmarks import DatasetProtocol, for_dataset
from lcrnet_jax.evaluation.benchmarks import format_table as format_benchmark_table
from lcrnet_jax.evaluation.generic import (
    METHODS,
    PROTOCOL_METHODS,
    evaluate,
    format_table,
    make_detector,
)

__all__ = [
    "METHODS",
    "PROTOCOL_METHODS",
    "DatasetProtocol",
    "evaluate",
    "for_dataset",
    "format_benchmark_table",
    "format_table",
    "make_detector",
]
