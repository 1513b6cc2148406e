"""Pure metric functions on poses (LCR-Net++ Sec. 4): `pose3d` (MPJPE, PA-MPJPE, 3DPCK,
AUC), `pose2d` (PCKh), `coco` (OKS, OKS AP) and `matching` (AP and matching helpers).

The benchmarks' protocols built on them live in `lcrnet_jax.evaluation`.
"""
