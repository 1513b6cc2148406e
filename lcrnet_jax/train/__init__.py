"""Training: the sharded step, orbax checkpoints and the train/evaluate loop."""
