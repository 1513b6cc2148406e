"""Synthetic people; importing this package registers the `synthetic_people` TFDS builder."""

from data_builders.synthetic_people.synthetic_people_dataset_builder import SyntheticPeople

__all__ = ["SyntheticPeople"]
