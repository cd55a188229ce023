"""Synthetic rooms with exact depth: the training domain of the depth task (our Hypersim).

Each scene is ray-cast, deterministically from its seed: a pinhole camera at the origin looking along +z (y up)
inside a box room (floor, ceiling, back wall, two side walls) holding 1-4 objects (spheres, and boxes standing on
the floor). Every surface is textured with a crop of a real photograph (:mod:`crossflow.data.photos`; the photos
of the train split for training scenes, of the test split for held-out scenes), tiled by the surface's own
coordinates, and shaded by one directional light plus ambient light (Lambert). The depth map is the **planar
depth** z of the first hit along each pixel's ray (what a depth sensor and Marigold's evaluation use), in room
units. Rendering is supersampled ``ss`` x ``ss`` per pixel and averaged (image and depth alike).

    spec = room_spec(seed, photos)                     # the scene's random choices, a small frozen record
    image, depth = render(spec, size=32, ss=2)         # (size, size, 3) uint8, (size, size) float32 > 0
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Texture:
    photo: int                          # index into the photo list the scene was made with
    y: float                            # top-left corner of the crop, as fractions of the free range
    x: float
    crop: int                           # crop side in photo pixels
    period: float                       # surface units per texture repeat


@dataclass(frozen=True)
class Sphere:
    center: tuple[float, float, float]
    radius: float
    texture: Texture


@dataclass(frozen=True)
class Box:
    lo: tuple[float, float, float]      # axis-aligned: min corner
    hi: tuple[float, float, float]      # max corner
    texture: Texture


@dataclass(frozen=True)
class RoomSpec:
    seed: int
    fov_deg: float                      # horizontal (= vertical: square images) field of view
    yaw_deg: float                      # camera turned left/right about y
    pitch_deg: float                    # camera tilted up/down about its x axis
    floor: float                        # y of the floor (< 0: the camera is above it)
    ceiling: float                      # y of the ceiling
    left: float                         # x of the left wall (< 0)
    right: float                        # x of the right wall
    back: float                         # z of the back wall
    walls: tuple[Texture, ...]          # floor, ceiling, back, left, right
    objects: tuple                      # Sphere | Box
    light: tuple[float, float, float]   # unit direction towards the light
    ambient: float


def _texture(rng: np.random.Generator, n_photos: int) -> Texture:
    return Texture(int(rng.integers(n_photos)), float(rng.random()), float(rng.random()),
                   int(rng.integers(48, 129)), float(rng.uniform(0.6, 2.0)))


def room_spec(seed: int, n_photos: int) -> RoomSpec:
    """The random choices of scene ``seed`` (numpy PCG64 seeded by it; textures from ``n_photos`` photos)."""
    rng = np.random.default_rng(seed)
    floor, ceiling = -rng.uniform(0.8, 1.6), rng.uniform(1.0, 2.2)
    left, right, back = -rng.uniform(1.2, 3.0), rng.uniform(1.2, 3.0), rng.uniform(4.0, 9.0)
    walls = tuple(_texture(rng, n_photos) for _ in range(5))
    objects = []
    for _ in range(int(rng.integers(1, 5))):
        z = rng.uniform(1.6, back - 0.6)
        if rng.random() < 0.5:
            r = rng.uniform(0.25, 0.8)
            x = rng.uniform(left + r, right - r) if right - left > 2 * r else 0.0
            y = floor + r if rng.random() < 0.7 else rng.uniform(floor + r, max(floor + r, ceiling - r))
            objects.append(Sphere((float(x), float(y), float(z)), float(r), _texture(rng, n_photos)))
        else:
            w, d, h = rng.uniform(0.4, 1.4), rng.uniform(0.4, 1.4), rng.uniform(0.4, 1.6)
            x = rng.uniform(left, right - w) if right - left > w else left
            objects.append(Box((float(x), float(floor), float(z)), (float(x + w), float(floor + h), float(z + d)),
                               _texture(rng, n_photos)))
    light = np.array([rng.uniform(-1, 1), rng.uniform(0.3, 1.0), rng.uniform(-1.0, -0.2)])
    light = light / np.linalg.norm(light)
    return RoomSpec(seed, float(rng.uniform(50, 75)), float(rng.uniform(-25, 25)), float(rng.uniform(-12, 12)),
                    float(floor), float(ceiling), float(left), float(right),
                    float(back), walls, tuple(objects), tuple(float(v) for v in light), float(rng.uniform(0.3, 0.55)))


def rays(size: int, fov_deg: float, ss: int = 1, yaw_deg: float = 0.0, pitch_deg: float = 0.0) -> np.ndarray:
    """Ray directions (size*ss, size*ss, 3) in room coordinates whose camera-z component is 1, so the ray
    parameter t is the planar depth (the camera's z) of the point t * d."""
    n = size * ss
    f = (n / 2) / np.tan(np.radians(fov_deg) / 2)
    c = (np.arange(n) + 0.5 - n / 2) / f                 # pixel centres
    x, y = np.meshgrid(c, -c)                            # image rows go down, y goes up
    d = np.stack([x, y, np.ones_like(x)], -1)
    p, w = np.radians(pitch_deg), np.radians(yaw_deg)
    pitch = np.array([[1, 0, 0], [0, np.cos(p), np.sin(p)], [0, -np.sin(p), np.cos(p)]])
    yaw = np.array([[np.cos(w), 0, np.sin(w)], [0, 1, 0], [-np.sin(w), 0, np.cos(w)]])
    return d @ (yaw @ pitch).T                           # camera -> room: rotations keep t as the camera's z


def _sample(photo: np.ndarray, tex: Texture, u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Photo colours (float, 0-1) at surface coordinates (u, v), tiled with period ``tex.period``."""
    h, w = photo.shape[:2]
    crop = min(tex.crop, h, w)
    y0, x0 = int(tex.y * (h - crop)), int(tex.x * (w - crop))
    iy = (np.floor((v / tex.period) % 1.0 * crop).astype(int)).clip(0, crop - 1) + y0
    ix = (np.floor((u / tex.period) % 1.0 * crop).astype(int)).clip(0, crop - 1) + x0
    return photo[iy, ix].astype(np.float32) / 255


def render(spec: RoomSpec, photos: list[np.ndarray], size: int = 32, ss: int = 2) -> tuple[np.ndarray, np.ndarray]:
    """The scene's image (size, size, 3) uint8 and planar depth (size, size) float32."""
    d = rays(size, spec.fov_deg, ss, spec.yaw_deg, spec.pitch_deg)    # (n, n, 3)
    n = d.shape[0]
    inf = np.full((n, n), np.inf)
    best_t, normal = inf.copy(), np.zeros((n, n, 3))
    colour = np.zeros((n, n, 3), np.float32)

    def hit(t, nrm, tex, uv):
        nonlocal best_t
        closer = t < best_t
        if not closer.any():
            return
        best_t = np.where(closer, t, best_t)
        normal[closer] = nrm[closer] if nrm.ndim == 3 else nrm
        p = d[closer] * t[closer][:, None]
        u, v = uv(p, closer)
        colour[closer] = _sample(photos[tex.photo], tex, u, v)

    with np.errstate(divide="ignore", invalid="ignore"):
        # walls: axis-aligned planes (axis, coordinate, normal facing the camera, surface coordinates)
        planes = ((1, spec.floor, (0, 1, 0), lambda p: (p[:, 0], p[:, 2])),
                  (1, spec.ceiling, (0, -1, 0), lambda p: (p[:, 0], p[:, 2])),
                  (2, spec.back, (0, 0, -1), lambda p: (p[:, 0], -p[:, 1])),
                  (0, spec.left, (1, 0, 0), lambda p: (p[:, 2], -p[:, 1])),
                  (0, spec.right, (-1, 0, 0), lambda p: (p[:, 2], -p[:, 1])))
        for (axis, coord, nrm, uv), tex in zip(planes, spec.walls):
            t = coord / d[..., axis]
            t = np.where(t > 1e-6, t, np.inf)
            hit(t, np.array(nrm, float), tex, lambda p, m, uv=uv: uv(p))
        for obj in spec.objects:
            if isinstance(obj, Sphere):
                c = np.array(obj.center)
                a = (d * d).sum(-1)
                b = -2 * (d @ c)
                disc = b * b - 4 * a * (c @ c - obj.radius ** 2)
                t = (-b - np.sqrt(np.maximum(disc, 0))) / (2 * a)
                t = np.where((disc >= 0) & (t > 1e-6), t, np.inf)
                nrm = (d * t[..., None] - c) / obj.radius
                nrm = np.where(np.isfinite(nrm), nrm, 0)

                def uv(p, m, c=c, r=obj.radius):
                    q = (p - c) / r
                    return np.arctan2(q[:, 0], q[:, 2]) * r, np.arcsin(np.clip(q[:, 1], -1, 1)) * r
                hit(t, nrm, obj.texture, uv)
            else:                                         # slab method
                lo, hi = np.array(obj.lo), np.array(obj.hi)
                t1, t2 = lo / d, hi / d
                tmin, tmax = np.minimum(t1, t2), np.maximum(t1, t2)
                t_near, t_far = tmin.max(-1), tmax.min(-1)
                t = np.where((t_near <= t_far) & (t_near > 1e-6), t_near, np.inf)
                face = tmin.argmax(-1)                    # the axis of the entered face
                nrm = np.zeros((n, n, 3))
                np.put_along_axis(nrm, face[..., None], -np.sign(np.take_along_axis(d, face[..., None], -1)), -1)

                def uv(p, m, face=face):
                    f = face[m]
                    u = np.where(f == 0, p[:, 2], p[:, 0])
                    v = np.where(f == 1, p[:, 2], -p[:, 1])
                    return u, v
                hit(t, nrm, obj.texture, uv)

    light = np.array(spec.light)
    shade = spec.ambient + (1 - spec.ambient) * np.clip(normal @ light, 0, None)
    img = np.clip(colour * shade[..., None], 0, 1)
    depth = best_t
    if ss > 1:                                            # average the ss x ss subpixels
        img = img.reshape(size, ss, size, ss, 3).mean((1, 3))
        depth = depth.reshape(size, ss, size, ss).mean((1, 3))
    return (img * 255).round().astype(np.uint8), depth.astype(np.float32)
