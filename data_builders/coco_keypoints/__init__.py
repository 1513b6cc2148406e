"""COCO person keypoints; importing this package registers the `coco_keypoints` builder."""

from data_builders.coco_keypoints.coco_keypoints_dataset_builder import CocoKeypoints

__all__ = ["CocoKeypoints"]
