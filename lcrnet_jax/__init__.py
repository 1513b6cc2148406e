"""lcrnet-jax: LCR-Net++ multi-person 2D and 3D pose detection in JAX/Flax.

Rogez, Weinzaepfel, Schmid, "LCR-Net++: Multi-person 2D and 3D Pose Detection in
Natural Images", TPAMI 2019.
"""

__version__ = "0.1.0"
