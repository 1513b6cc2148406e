"""Pose data: the common record schema, pose sources, the synthetic renderer, the input pipeline."""
