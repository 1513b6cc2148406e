"""Human3.6M; importing this package registers the `human36m` TFDS builder."""

from data_builders.human36m.human36m_dataset_builder import Human36m

__all__ = ["Human36m"]
