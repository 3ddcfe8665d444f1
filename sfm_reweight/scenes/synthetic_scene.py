"""Synthetic 3D scenes: textured rectangles (ground, walls, boxes) rendered by pinhole cameras with
exact depth, for training pairs like MegaDepth's and for scenes with known cameras.

Conventions: world -> camera poses (R, t); K in the COLMAP convention (pixel (0, 0) covers [0, 1)^2,
its centre is (0.5, 0.5)); depth is the camera z of the surface seen at each pixel centre, 0 where
nothing is (background). Each rectangle is drawn with `cv2.warpPerspective` through the homography
from its texture to the image and composited with a z-buffer, so occlusions are exact.
"""

from dataclasses import dataclass

import cv2
import numpy as np


@dataclass
class Rectangle:
    origin: np.ndarray  # [3] world position of the texture's top-left corner
    u: np.ndarray  # [3] world vector along the texture's width
    v: np.ndarray  # [3] world vector along the texture's height
    texture: np.ndarray  # [th,tw] or [th,tw,3] (RGB) float32 in [0,1]


@dataclass
class Camera:
    K: np.ndarray  # [3,3]
    R: np.ndarray  # [3,3] world -> camera
    t: np.ndarray  # [3]
    size: tuple[int, int]  # (w, h)

    @property
    def pose(self) -> np.ndarray:
        """[4,4] world -> camera."""
        P = np.eye(4)
        P[:3, :3], P[:3, 3] = self.R, self.t
        return P

    @property
    def centre(self) -> np.ndarray:
        return -self.R.T @ self.t


def look_at(
    eye: np.ndarray, target: np.ndarray, up: np.ndarray = np.array([0.0, 0.0, 1.0])
) -> tuple[np.ndarray, np.ndarray]:
    """World -> camera (R, t) of a camera at `eye` looking at `target` (x right, y down, z forward)."""
    z = target - eye
    z = z / np.linalg.norm(z)
    x = np.cross(z, up)
    x = x / np.linalg.norm(x)
    y = np.cross(z, x)
    R = np.stack([x, y, z])
    return R, -R @ eye


def render(rectangles: list[Rectangle], camera: Camera) -> tuple[np.ndarray, np.ndarray]:
    """image [h,w] (or [h,w,3] with RGB textures) float32 in [0,1] and depth [h,w] float32
    (0 = background) seen by `camera`. Textures are all gray or all RGB."""
    w, h = camera.size
    image = np.zeros((h, w, *rectangles[0].texture.shape[2:]), np.float32)
    depth = np.full((h, w), np.inf, np.float32)
    y, x = np.mgrid[0:h, 0:w]
    rays = np.stack([x + 0.5, y + 0.5, np.ones((h, w))], -1) @ np.linalg.inv(camera.K).T  # z = 1
    to_corner = np.array([[1, 0, 0.5], [0, 1, 0.5], [0, 0, 1]])  # pixel-centre -> corner frame
    for rect in rectangles:
        th, tw = rect.texture.shape[:2]
        # texture corner-frame (a, b, 1) -> world origin + a/tw u + b/th v -> image (corner frame)
        A = np.stack([rect.u / tw, rect.v / th, rect.origin], 1)
        H = camera.K @ (camera.R @ A + np.outer(camera.t, [0, 0, 1]))
        H_pixels = np.linalg.inv(to_corner) @ H @ to_corner
        flags = cv2.INTER_LINEAR
        warped = cv2.warpPerspective(rect.texture, H_pixels, (w, h), flags=flags, borderValue=0)
        cover = (
            cv2.warpPerspective(np.ones((th, tw), np.float32), H_pixels, (w, h), flags=cv2.INTER_NEAREST, borderValue=0)
            > 0
        )
        normal = camera.R @ np.cross(rect.u, rect.v)
        point = camera.R @ rect.origin + camera.t
        with np.errstate(divide="ignore", invalid="ignore"):
            z = (normal @ point) / (rays @ normal)
        visible = cover & (z > 1e-6) & (z < depth)
        image[visible] = warped[visible]
        depth[visible] = z[visible]
    depth[~np.isfinite(depth)] = 0
    return image, depth


def random_texture(rng: np.random.Generator, photos: list[np.ndarray], size: int = 256) -> np.ndarray:
    """A random crop of a random photo (float32 [size,size] in [0,1])."""
    photo = photos[rng.integers(len(photos))]
    h, w = photo.shape
    s = int(min(h, w) * rng.uniform(0.4, 1.0))
    y0, x0 = rng.integers(0, h - s + 1), rng.integers(0, w - s + 1)
    return cv2.resize(photo[y0 : y0 + s, x0 : x0 + s], (size, size), interpolation=cv2.INTER_AREA).astype(np.float32)


def box(origin: np.ndarray, sx: float, sy: float, sz: float, textures: list[np.ndarray]) -> list[Rectangle]:
    """The four sides and the top of an axis-aligned box standing on z = origin[2]."""
    o = np.asarray(origin, float)
    X, Y, Z = np.array([sx, 0, 0]), np.array([0, sy, 0]), np.array([0, 0, sz])
    faces = [(o + Z, X, -Z), (o + X + Z, Y, -Z), (o + X + Y + Z, -X, -Z), (o + Y + Z, -Y, -Z), (o + Z, X, Y)]
    return [Rectangle(origin, u, v, textures[k % len(textures)]) for k, (origin, u, v) in enumerate(faces)]


def random_scene(rng: np.random.Generator, photos: list[np.ndarray]) -> list[Rectangle]:
    """Ground, two or three walls and some boxes around the origin, textured with crops of `photos`."""

    def tex():
        return random_texture(rng, photos)

    scene = [Rectangle(np.array([-6.0, -6.0, 0.0]), np.array([12.0, 0, 0]), np.array([0, 12.0, 0]), tex())]
    for k in range(rng.integers(2, 4)):
        angle = k * np.pi / 2 + rng.uniform(-0.2, 0.2)
        d = np.array([np.cos(angle), np.sin(angle), 0.0])
        side = np.array([-d[1], d[0], 0.0])
        distance, height = rng.uniform(4, 6), rng.uniform(2, 4)
        scene.append(Rectangle(d * distance - side * 6 + [0, 0, height], side * 12, np.array([0, 0, -height]), tex()))
    for _ in range(rng.integers(2, 6)):
        size = rng.uniform(0.4, 1.5, 3)
        scene += box(np.append(rng.uniform(-2.5, 2.5, 2), 0.0), *size, [tex() for _ in range(3)])
    return scene


def random_facade(
    rng: np.random.Generator, photos: list[np.ndarray], px_per_m: int = 80
) -> tuple[list[Rectangle], float]:
    """A facade of identical bays in the plane y = 0 (world frame in metres, z up) over a paved ground
    towards y < 0, closed by two side walls, with a few unique things (posters painted on the facade,
    boxes on the ground); returns the rectangles and the facade's width (it spans x in +-width/2).

    One bay is a crop of one photo, with a window (a darkened crop of another, in a light frame) in
    half of the scenes, repeated pixel for pixel over 6-12 bays and 1-3 storeys, so that a view
    shifted by a bay looks like its neighbour: the context (the posters, the boxes, the ends of the
    facade) is what tells the copies apart."""
    bays, storeys = int(rng.integers(6, 13)), int(rng.integers(1, 4))
    bay_w, storey_h = rng.uniform(1.5, 3.0), rng.uniform(2.5, 3.5)
    bw, bh = int(bay_w * px_per_m), int(storey_h * px_per_m)
    bay = cv2.resize(random_texture(rng, photos), (bw, bh), interpolation=cv2.INTER_AREA)
    if rng.random() < 0.5:
        ww, wh = int(bw * rng.uniform(0.3, 0.6)), int(bh * rng.uniform(0.3, 0.6))
        x0, y0 = (bw - ww) // 2, int(bh * rng.uniform(0.15, 0.35))
        bay[y0 - 4 : y0 + wh + 4, x0 - 4 : x0 + ww + 4] = rng.uniform(0.75, 0.95)
        glass = cv2.resize(random_texture(rng, photos), (ww, wh), interpolation=cv2.INTER_AREA)
        bay[y0 : y0 + wh, x0 : x0 + ww] = 0.1 + 0.4 * glass
    facade = np.tile(bay, (storeys, bays))
    for _ in range(rng.integers(1, 5)):  # posters: the only unique things on the facade
        s = int(rng.uniform(0.5, 1.5) * px_per_m)
        y, x = rng.integers(0, facade.shape[0] - s), rng.integers(0, facade.shape[1] - s)
        facade[y : y + s, x : x + s] = cv2.resize(random_texture(rng, photos), (s, s), interpolation=cv2.INTER_AREA)
    width, height = bays * bay_w, storeys * storey_h
    X, Y, Z = np.eye(3)
    depth = 16.0
    tile = random_texture(rng, photos, int(rng.uniform(0.4, 1.0) * px_per_m))
    ground = np.tile(tile, (int(depth * px_per_m) // len(tile) + 1, int(width * px_per_m) // len(tile) + 1))
    scene = [
        Rectangle(np.array([-width / 2, 0, height]), width * X, -height * Z, facade),
        Rectangle(np.array([-width / 2, 0, 0]), width * X, -depth * Y, ground),
        Rectangle(np.array([-width / 2, -depth, height]), depth * Y, -height * Z, random_texture(rng, photos)),
        Rectangle(np.array([width / 2, 0, height]), -depth * Y, -height * Z, random_texture(rng, photos)),
    ]
    for _ in range(rng.integers(0, 4)):
        size = rng.uniform(0.4, 1.2, 3)
        corner = [rng.uniform(-width / 2, width / 2 - size[0]), rng.uniform(-4, -size[1] - 0.5), 0.0]
        scene += box(np.array(corner), *size, [random_texture(rng, photos) for _ in range(3)])
    return scene, width


def random_camera(
    rng: np.random.Generator,
    size: tuple[int, int],
    target: np.ndarray,
    angle: float | None = None,
    focal: float | None = None,
) -> Camera:
    """A camera 2-3.5 units from `target` horizontally (inside the walls), 0.5-2 units up, at
    azimuth `angle` (random if None), looking at `target` with some jitter."""
    w, h = size
    f = focal or w * rng.uniform(0.7, 1.2)
    K = np.array([[f, 0, w / 2], [0, f, h / 2], [0, 0, 1.0]])
    angle = rng.uniform(0, 2 * np.pi) if angle is None else angle
    distance = rng.uniform(2, 3.5)
    eye = target + np.array([np.cos(angle) * distance, np.sin(angle) * distance, rng.uniform(0.5, 2.0)])
    R, t = look_at(eye, target + rng.normal(0, 0.3, 3))
    return Camera(K, R, t, size)


def backproject(camera: Camera, depth: np.ndarray, stride: int = 8) -> np.ndarray:
    """World points [M,3] of every `stride`-th pixel of a view with depth [h,w] > 0, row by row."""
    ys, xs = np.nonzero(np.asarray(depth, np.float32)[::stride, ::stride] > 0)
    ys, xs = ys * stride, xs * stride
    rays = np.stack([xs + 0.5, ys + 0.5, np.ones(len(xs))], 1) @ np.linalg.inv(camera.K).T
    return (rays * np.asarray(depth, np.float64)[ys, xs, None] - camera.t) @ camera.R  # R^T (X_c - t)


def visible_in(
    camera: Camera, depth: np.ndarray, world: np.ndarray, tolerance: float = 0.02
) -> tuple[np.ndarray, np.ndarray]:
    """Where a view sees world points [M,3]: (uv [M,2] image coordinates in the COLMAP convention,
    seen [M] bool: in front of the camera, inside the image, and not hidden, i.e. the view's depth
    [h,w] at that pixel agrees with the point's within `tolerance`, relative)."""
    p = world @ camera.R.T + camera.t
    z = p[:, 2]
    with np.errstate(divide="ignore", invalid="ignore"):
        uv = (p @ camera.K.T)[:, :2] / z[:, None]
    w, h = camera.size
    col, row = np.floor(uv[:, 0]), np.floor(uv[:, 1])  # the pixel that covers the point
    seen = (z > 1e-6) & (col >= 0) & (col < w) & (row >= 0) & (row < h)
    at = np.asarray(depth, np.float64)[row[seen].astype(int), col[seen].astype(int)]
    seen[seen] = np.abs(at - z[seen]) <= tolerance * z[seen]
    return uv, seen


def covisibility(
    cameras: list[Camera], depths: list[np.ndarray], stride: int = 8, tolerance: float = 0.02
) -> np.ndarray:
    """[N,N] ground-truth overlap of rendered views: entry (i, j) is the share of view i's surface
    pixels (every `stride`-th pixel with depth > 0) that view j also sees (`visible_in`). Not
    symmetric; the diagonal is 1."""
    n = len(cameras)
    out = np.eye(n)
    for i, (cam_i, depth_i) in enumerate(zip(cameras, depths)):
        world = backproject(cam_i, depth_i, stride)
        if not len(world):
            continue
        for j, (cam_j, depth_j) in enumerate(zip(cameras, depths)):
            if j != i:
                out[i, j] = visible_in(cam_j, depth_j, world, tolerance)[1].mean()
    return out
