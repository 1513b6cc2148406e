"""MuPoTS-3D (+ MuCo-3DHP); importing this package registers the `mupots3d` TFDS builder."""

from data_builders.mupots3d.mupots3d_dataset_builder import Mupots3d

__all__ = ["Mupots3d"]
