"""Depth-buffered rasterisation of capsules with Lambert shading (LCR-Net++ Sec. 4.1).

Each capsule is drawn on the pixels of its own bounding window only. A pixel (i, j)
(centre (i + 0.5, j + 0.5)) is covered when its distance to the capsule's projected
axis is below the projected radius at the closest axis point; its depth is the capsule's
front surface there (axis depth minus the radius times the bulge sqrt(1 - d^2/r^2)), and
the nearest surface wins (z-buffer), so people occlude each other and themselves. The
surface normal of that cross-section gives the Lambert shading.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from lcrnet_jax import geometry
from lcrnet_jax.data.synthetic.body import Capsules


@dataclasses.dataclass(frozen=True)
class Buffers:
    """Per-pixel results of `rasterize` for an (H, W) image.

    Attributes:
      depth: (H, W) float32 Z in metres of the front-most surface; inf on background.
      person: (H, W) int16 index of the person seen at the pixel; -1 on background.
      material: (H, W) int32 palette row of the surface; -1 on background.
      shade: (H, W) float32 light factor in [0, 1].
      extents: (K, 4) float32 projected window of each capsule, x1, y1, x2, y2 pixels
        (not clipped to the image).
    """

    depth: np.ndarray
    person: np.ndarray
    material: np.ndarray
    shade: np.ndarray
    extents: np.ndarray


def rasterize(
    capsules: Capsules,
    intrinsics: np.ndarray,
    *,
    height: int,
    width: int,
    light: np.ndarray = (0.3, -0.6, -0.75),
    ambient: float = 0.45,
) -> Buffers:
    """Draws capsules into depth, person, material and shade buffers.

    Args:
      capsules: K capsules in camera coordinates (every point at Z > 0).
      intrinsics: (4,) fx, fy, cx, cy in pixels.
      height, width: image size in pixels.
      light: (3,) direction towards the light in camera axes (normalised here).
      ambient: light factor of surfaces facing away from the light.

    Returns:
      `Buffers`.
    """
    intrinsics = np.asarray(intrinsics, np.float32)
    if min(capsules.start[:, 2].min(initial=1.0), capsules.end[:, 2].min(initial=1.0)) <= 0:
        raise ValueError("capsules must lie in front of the camera (Z > 0)")
    light = np.asarray(light, np.float32)
    light = light / np.linalg.norm(light)
    focal = float(intrinsics[:2].mean())
    ends = np.asarray(geometry.project(np.stack([capsules.start, capsules.end], 1), intrinsics))
    z = np.stack([capsules.start[:, 2], capsules.end[:, 2]], 1)  # (K, 2)
    radius = np.stack([capsules.radius_start, capsules.radius_end], 1)  # (K, 2)
    radius_px = focal * radius / z  # (K, 2)
    lo = (ends - radius_px[..., None]).min(1)  # (K, 2)
    hi = (ends + radius_px[..., None]).max(1)
    extents = np.concatenate([lo, hi], -1).astype(np.float32)
    x0 = np.clip(np.floor(lo[:, 0]), 0, width).astype(int)
    y0 = np.clip(np.floor(lo[:, 1]), 0, height).astype(int)
    x1 = np.clip(np.ceil(hi[:, 0]), 0, width).astype(int)
    y1 = np.clip(np.ceil(hi[:, 1]), 0, height).astype(int)

    depth = np.full((height, width), np.inf, np.float32)
    person = np.full((height, width), -1, np.int16)
    material = np.full((height, width), -1, np.int32)
    shade = np.zeros((height, width), np.float32)
    diffuse = 1.0 - ambient
    lx, ly, lz = (float(v) for v in light)
    rows = np.arange(height, dtype=np.float32) + 0.5
    cols = np.arange(width, dtype=np.float32) + 0.5
    params = zip(
        x0.tolist(), y0.tolist(), x1.tolist(), y1.tolist(), ends.tolist(), z.tolist(),
        radius.tolist(), radius_px.tolist(), capsules.person.tolist(),
        capsules.material.tolist(), capsules.stripe_material.tolist(),
        capsules.stripes.tolist(), strict=True,
    )  # fmt: skip
    for xa, ya, xb, yb, (pa, pb), (za, zb), (ra, rb), (qa, qb), who, mat, mat2, n in params:
        if xa >= xb or ya >= yb:
            continue
        dx, dy = pb[0] - pa[0], pb[1] - pa[1]
        inv = 1.0 / max(dx * dx + dy * dy, 1e-12)
        ys = (rows[ya:yb] - pa[1])[:, None]  # (h, 1)
        xs = (cols[xa:xb] - pa[0])[None, :]  # (1, w)
        t = xs * (dx * inv) + ys * (dy * inv)  # (h, w)
        np.minimum(np.maximum(t, 0.0, out=t), 1.0, out=t)
        ex = xs - t * dx
        ey = ys - t * dy
        r_px = qa + t * (qb - qa)
        q = (ex * ex + ey * ey) / (r_px * r_px)
        inside = q < 1.0
        if not inside.any():
            continue
        bulge = np.sqrt(np.maximum(1.0 - q, 0.0, out=q), out=q)
        surface = za + t * (zb - za) - bulge * (ra + t * (rb - ra))
        window = depth[ya:yb, xa:xb]
        win = inside & (surface < window)
        np.copyto(window, surface, where=win)
        np.copyto(person[ya:yb, xa:xb], who, where=win)
        if n > 0:
            stripe = (t * n) % 1.0 < 0.5
            np.copyto(material[ya:yb, xa:xb], np.where(stripe, mat2, mat), where=win)
        else:
            np.copyto(material[ya:yb, xa:xb], mat, where=win)
        # Normal of the cross-section facing the camera: (ex / r, ey / r, -bulge).
        lambert = (ex * lx + ey * ly) / r_px - bulge * lz
        np.maximum(lambert, 0.0, out=lambert)
        np.copyto(shade[ya:yb, xa:xb], ambient + diffuse * lambert, where=win)
    return Buffers(depth=depth, person=person, material=material, shade=shade, extents=extents)


def compose(
    buffers: Buffers,
    palette: np.ndarray,
    background: np.ndarray,
    noise: np.ndarray | None = None,
) -> np.ndarray:
    """Colours the rasterised bodies over a background.

    Args:
      buffers: `rasterize` output for an (H, W) image.
      palette: (M, 3) float RGB in [0, 255], rows indexed by `buffers.material`.
      background: (H, W, 3) uint8 RGB.
      noise: optional noise added to every pixel, broadcastable to (H, W, 3), 0-255
        scale.

    Returns:
      (H, W, 3) uint8 RGB.
    """
    palette = np.asarray(palette, np.float32)
    image = background.astype(np.float32)
    flat = image.reshape(-1, 3)
    fg = np.flatnonzero(buffers.material >= 0)
    flat[fg] = palette[buffers.material.ravel()[fg]] * buffers.shade.ravel()[fg, None]
    if noise is not None:
        image += noise
    image += 0.5
    np.minimum(np.maximum(image, 0.0, out=image), 255.0, out=image)
    return image.astype(np.uint8)
