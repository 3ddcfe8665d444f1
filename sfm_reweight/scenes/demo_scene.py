"""The embedded demo scene: a small town square rendered by `synthetic_scene`, nothing to download.

A cobbled square (16 x 16 m, z up) closed by a brick building to the north, a plastered house with
windows to the west, a stone wall to the east and a lower brick terrace to the south; a poster
(matplotlib's public-domain Grace Hopper photo) on the north facade, a stone fountain basin in the
middle and wooden crates. Every texture except the poster is procedural (seeded noise), so the
scene is the same on every machine.

Two camera sets (640 x 480, f = 520 px), both with ground truth written next to the images in the
Strecha `.camera` format (`ground_truth.read_strecha_camera`), so the same evaluation serves this
scene and fountain-P11:
- `cameras`: the main job's twelve views on an arc south of the fountain, looking north;
- `tour_cameras`: a walk once round the fountain looking ahead (or outwards), so that each view
  overlaps its neighbours on the walk and none of the views across the square (retrieval,
  localization and mapping at scale need views that do not all see each other).
"""

from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np

from ..image_io import write_image_atomic
from .sample_data import sample_photo
from .synthetic_scene import Camera, Rectangle, box, look_at, render
from ..utils import atomic

IMAGE_SIZE = (640, 480)
FOCAL = 520.0
NUM_VIEWS = 12
NUM_TOUR_VIEWS = 60
SEED = 2505
SUN = np.array([0.4, -0.6, 0.7]) / np.linalg.norm([0.4, -0.6, 0.7])  # direction towards the sun


def fractal_noise(rng: np.random.Generator, h: int, w: int, octaves: int = 6, persistence: float = 0.55) -> np.ndarray:
    """Sum of bicubically upsampled random grids of doubling resolution, [h,w] float32 in [0,1]."""
    out = np.zeros((h, w), np.float32)
    amplitude = 1.0
    for k in range(octaves):
        gh, gw = max(2, h >> (octaves - k)), max(2, w >> (octaves - k))
        out += amplitude * cv2.resize(rng.random((gh, gw), np.float32), (w, h), interpolation=cv2.INTER_CUBIC)
        amplitude *= persistence
    out -= out.min()
    return out / max(out.max(), 1e-6)


def tint(gray: np.ndarray, colour) -> np.ndarray:
    """[h,w] in [0,1] times an RGB colour -> [h,w,3]."""
    return gray[..., None] * np.asarray(colour, np.float32)


def bricks(rng: np.random.Generator, h: int, w: int, brick: tuple[int, int] = (48, 18), mortar: int = 3) -> np.ndarray:
    """Running-bond brickwork: each brick its own red-brown, grey mortar, weathering noise."""
    out = np.empty((h, w, 3), np.float32)
    out[:] = (0.72, 0.69, 0.64)
    bw, bh = brick
    for row, y in enumerate(range(0, h, bh)):
        offset = (row % 2) * bw // 2
        for x in range(-offset, w, bw):
            colour = np.array([0.58, 0.28, 0.2]) * rng.uniform(0.7, 1.2) + rng.normal(0, 0.03, 3)
            out[y + mortar : y + bh, max(0, x + mortar) : max(0, x + bw)] = colour
    grain = 0.75 + 0.5 * fractal_noise(rng, h, w)
    return np.clip(out * grain[..., None], 0, 1)


def cobblestones(rng: np.random.Generator, size: int, stones: int) -> np.ndarray:
    """Irregular stones (Voronoi cells of random seeds), domed shading, dark joints."""
    seeds = np.ones((size, size), np.uint8)
    seeds[rng.integers(0, size, stones), rng.integers(0, size, stones)] = 0
    _, labels = cv2.distanceTransformWithLabels(seeds, cv2.DIST_L2, 5, labelType=cv2.DIST_LABEL_CCOMP)
    joints = np.zeros((size, size), np.uint8)
    joints[:, 1:] |= labels[:, 1:] != labels[:, :-1]
    joints[1:, :] |= labels[1:, :] != labels[:-1, :]
    joints = cv2.dilate(joints, np.ones((3, 3), np.uint8))
    dome = cv2.distanceTransform(1 - joints, cv2.DIST_L2, 5)
    dome = np.sqrt(np.clip(dome / 6.0, 0, 1))
    shade = rng.uniform(0.55, 1.0, labels.max() + 1)[labels]
    stone = tint(shade * (0.6 + 0.4 * dome), (0.62, 0.6, 0.56))
    stone *= (0.8 + 0.4 * fractal_noise(rng, size, size))[..., None]
    stone[joints > 0] = (0.18, 0.17, 0.15)
    return np.clip(stone, 0, 1)


def plaster_with_windows(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    """Ochre plaster with stains, two rows of framed windows."""
    out = tint(0.8 + 0.2 * fractal_noise(rng, h, w), (0.86, 0.74, 0.52))
    for cy in (0.3, 0.68):
        for cx in np.linspace(0.1, 0.9, 5):
            wh, ww = int(h * 0.2), int(w * 0.07)
            y0, x0 = int(cy * h) - wh // 2, int(cx * w) - ww // 2
            out[y0 - 4 : y0 + wh + 4, x0 - 4 : x0 + ww + 4] = (0.95, 0.94, 0.9)
            glass = tint(0.25 + 0.25 * fractal_noise(rng, wh, ww, octaves=3), (0.45, 0.55, 0.65))
            out[y0 : y0 + wh, x0 : x0 + ww] = glass
            out[y0 + wh // 2 - 2 : y0 + wh // 2 + 2, x0 : x0 + ww] = (0.95, 0.94, 0.9)
    return np.clip(out, 0, 1)


def stone(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    """Weathered limestone: fractal noise with darker veins."""
    noise = fractal_noise(rng, h, w)
    veins = np.abs(fractal_noise(rng, h, w, octaves=5) - 0.5) < 0.03
    out = tint(0.55 + 0.4 * noise, (0.82, 0.8, 0.74))
    out[veins] *= 0.6
    return out


def planks(rng: np.random.Generator, size: int, count: int = 5) -> np.ndarray:
    """Wooden planks: grain stretched along the boards, dark gaps between them."""
    grain = cv2.resize(rng.random((size, size // 16), np.float32), (size, size), interpolation=cv2.INTER_CUBIC)
    out = tint(0.55 + 0.35 * np.clip(grain, 0, 1), (0.62, 0.45, 0.28))
    for k in range(count):
        y0 = k * size // count
        out[y0 : y0 + size // count] *= rng.uniform(0.8, 1.15)
        out[y0 : y0 + 3] = (0.15, 0.1, 0.06)
    return np.clip(out, 0, 1)


def poster() -> np.ndarray:
    """The Grace Hopper photo in a white frame."""
    photo = sample_photo().astype(np.float32) / 255.0
    return cv2.copyMakeBorder(photo, 24, 24, 24, 24, cv2.BORDER_CONSTANT, value=(0.97, 0.97, 0.95))


def lit(rect: Rectangle) -> Rectangle:
    """The rectangle with its texture scaled by Lambertian sun light plus ambient (two-sided)."""
    normal = np.cross(rect.u, rect.v)
    light = 0.55 + 0.45 * abs(float(normal @ SUN)) / np.linalg.norm(normal)
    return Rectangle(rect.origin, rect.u, rect.v, np.clip(rect.texture * light, 0, 1).astype(np.float32))


def scene(seed: int = SEED) -> list[Rectangle]:
    """The square's rectangles (world frame in metres, z up, the fountain at the origin)."""
    rng = np.random.default_rng(seed)
    X, Y, Z = np.eye(3)
    rects = [
        Rectangle(np.array([-8.0, 8, 0]), 16 * X, -16 * Y, cobblestones(rng, 2048, 3000)),  # ground
        Rectangle(np.array([-8.0, 6, 6]), 16 * X, -6 * Z, bricks(rng, 540, 1440)),  # north facade
        Rectangle(np.array([-1.2, 5.98, 3.2]), 1.6 * X, -1.9 * Z, poster()),  # poster on it
        Rectangle(np.array([-6.0, -8, 5]), 14 * Y, -5 * Z, plaster_with_windows(rng, 500, 1400)),  # west house
        Rectangle(np.array([6.0, 6, 2.5]), -14 * Y, -2.5 * Z, stone(rng, 250, 1400)),  # east wall
    ]
    rects += box(np.array([-0.9, -0.9, 0.0]), 1.8, 1.8, 0.7, [stone(rng, 256, 512) for _ in range(3)])  # fountain
    rects += box(np.array([-0.3, -0.3, 0.7]), 0.6, 0.6, 0.9, [stone(rng, 256, 256)])  # its column
    for corner in ([3.0, 3.5], [3.7, 3.2], [-4.5, 3.0]):
        rects += box(np.array([*corner, 0.0]), 0.6, 0.6, 0.6, [planks(rng, 256) for _ in range(2)])  # crates
    rects += box(np.array([3.2, 3.3, 0.6]), 0.6, 0.6, 0.6, [planks(rng, 256)])
    # the south terrace last, so that its texture takes the last draws and the others keep theirs
    rects.append(Rectangle(np.array([6.0, -6.5, 3.5]), -12 * X, -3.5 * Z, bricks(rng, 350, 1200, brick=(36, 14))))
    return [lit(r) for r in rects]


def cameras(count: int = NUM_VIEWS) -> list[Camera]:
    """`count` cameras on an arc of radius 4.5 m south of the fountain, eye height 1.5-1.8 m,
    looking at a point 2.5 m north of the fountain; COLMAP-convention K."""
    w, h = IMAGE_SIZE
    K = np.array([[FOCAL, 0, w / 2], [0, FOCAL, h / 2], [0, 0, 1.0]])
    out = []
    for k, angle in enumerate(np.linspace(np.deg2rad(-150), np.deg2rad(-30), count)):
        eye = np.array([4.5 * np.cos(angle), 4.5 * np.sin(angle) - 0.5, 1.5 + 0.3 * (k % 2)])
        R, t = look_at(eye, np.array([0.6 * np.cos(angle), 2.5, 1.3]))
        out.append(Camera(K, R, t, IMAGE_SIZE))
    return out


def write_camera(path: Path, camera: Camera) -> None:
    """Strecha `.camera` text: K, zero distortion, camera-to-world R, centre C, `w h`."""
    rows = [*camera.K, np.zeros(3), *camera.R.T, camera.centre]
    text = "".join(" ".join(f"{v:.10g}" for v in row) + "\n" for row in rows)
    atomic.write_text(path, text + f"{camera.size[0]} {camera.size[1]}\n")


def tour_cameras(count: int = NUM_TOUR_VIEWS, heading: float = 90.0, radius: float = 3.3) -> list[Camera]:
    """`count` cameras evenly spaced on a circle of `radius` metres round the fountain, eye height
    1.5-1.8 m, each looking a little down and `heading` degrees left of outwards (20: walls seen at
    a slant; 90: along the walk, the fountain on one side and the square on the other);
    COLMAP-convention K. View k overlaps views k +- a few and none across the square."""
    w, h = IMAGE_SIZE
    K = np.array([[FOCAL, 0, w / 2], [0, FOCAL, h / 2], [0, 0, 1.0]])
    out = []
    for k, angle in enumerate(np.linspace(0, 2 * np.pi, count, endpoint=False)):
        eye = np.array([radius * np.cos(angle), radius * np.sin(angle), 1.5 + 0.3 * (k % 2)])
        direction = angle + np.deg2rad(heading)
        R, t = look_at(eye, eye + np.array([6 * np.cos(direction), 6 * np.sin(direction), -0.8]))
        out.append(Camera(K, R, t, IMAGE_SIZE))
    return out


def photograph(
    rects: list[Rectangle], camera: Camera, noise_seed: tuple[int, ...], exposure: float = 1.0
) -> tuple[np.ndarray, np.ndarray]:
    """A view of the square as a photo: RGB uint8 [h,w,3] (sky where nothing is, brightness times
    `exposure`, sensor noise seeded by `noise_seed`) and its depth [h,w] (0 = sky)."""
    image, depth = render(rects, camera)
    sky = np.array([0.62, 0.75, 0.9], np.float32)
    noise = np.random.default_rng(noise_seed).normal(0, 0.012, (*camera.size[::-1], 3)).astype(np.float32)
    image = exposure * np.where(depth[..., None] > 0, image, sky) + noise
    return (np.clip(image, 0, 1) * 255 + 0.5).astype(np.uint8), depth


def render_views(
    output: Path,
    views: list[Camera],
    seed: int = SEED,
    depth: bool = False,
    build: Callable[[int], list[Rectangle]] | None = None,
) -> Path:
    """Render `views` of the square (or of the rectangles `build(seed)` makes) into
    `output/images/view_NN.jpg` (NNN from 100 views on) and their ground truth into
    `output/gt_cameras/<name>.camera` (the Strecha layout); with `depth`, also each view's depth map
    [h,w] (metres along the optical axis, 0 = sky) as float16 `output/depth/<name>.npy`. Returns the
    image folder. Views already rendered are kept (the rendering is deterministic)."""
    images, gt, depths = output / "images", output / "gt_cameras", output / "depth"
    for folder in (images, gt) + ((depths,) if depth else ()):
        folder.mkdir(parents=True, exist_ok=True)
    digits = max(2, len(str(len(views) - 1)))
    rects = None
    for k, camera in enumerate(views):
        name = f"view_{k:0{digits}d}.jpg"
        done = [images / name, gt / f"{name}.camera"] + ([depths / f"{name}.npy"] if depth else [])
        if all(p.exists() for p in done):
            continue
        rects = rects or (build or scene)(seed)
        rgb8, view_depth = photograph(rects, camera, (seed, k))
        write_image_atomic(images / name, rgb8, [cv2.IMWRITE_JPEG_QUALITY, 92])
        write_camera(gt / f"{name}.camera", camera)
        if depth:
            with atomic.atomic_path(depths / f"{name}.npy") as tmp, open(tmp, "wb") as f:
                np.save(f, view_depth.astype(np.float16))
    return images


def render_demo_scene(output: Path, count: int = NUM_VIEWS, seed: int = SEED) -> Path:
    """The main job's views (`cameras`) rendered by `render_views`; returns the image folder."""
    return render_views(output, cameras(count), seed)
