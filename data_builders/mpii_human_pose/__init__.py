"""MPII Human Pose; importing this package registers the `mpii_human_pose` TFDS builder."""

from data_builders.mpii_human_pose.mpii_human_pose_dataset_builder import MpiiHumanPose

__all__ = ["MpiiHumanPose"]
