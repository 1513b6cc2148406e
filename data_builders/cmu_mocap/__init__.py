"""CMU MoCap 3D poses; importing this package registers the `cmu_mocap` TFDS builder."""

from data_builders.cmu_mocap.cmu_mocap_dataset_builder import CmuMocap

__all__ = ["CmuMocap"]
