"""Synthetic multi-person images with exact 2D and 3D ground truth (LCR-Net++ Sec. 4.1).

Modules: `body` (capsule bodies, clothes), `raster` (depth-buffered capsule drawing),
`background` (procedural or user-image backgrounds), `scene` (cameras, placement,
annotations). The entry point is `render_scene(poses3d, rng, config)`.
"""

from lcrnet_jax.data.synthetic.scene import (
    RenderConfig,
    SceneAnnotations,
    render_people,
    render_scene,
    sample_intrinsics,
)

__all__ = ["RenderConfig", "SceneAnnotations", "render_people", "render_scene", "sample_intrinsics"]
