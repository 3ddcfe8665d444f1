"""A courtyard of repeated structure, rendered by `synthetic_scene` with known cameras: the scene
where SfM folds or stretches a map because one view looks like its neighbour shifted by a bay.

A paved courtyard (16 x 10 m, z up) whose paving is one square tile repeated, in front of a facade
of 8 x 2 identical window bays (one bay texture tiled: the same plaster, frame and glass pixel for
pixel), closed by two plain stone side walls. The only unique things are a door in one bay, a
notice on the facade and two crates. Twelve views (640 x 480, f = 520 px, as the demo scene) walk
along the facade 9 m in front of it, each seeing five to six bays; consecutive views are 0.9 m
apart, less than half a bay, so a view shifted by one bay matches its neighbour almost as well.
Ground truth is written next to the images in the Strecha `.camera` format, as `demo_scene` does.
"""

from pathlib import Path

import numpy as np

from .demo_scene import FOCAL, IMAGE_SIZE, fractal_noise, lit, planks, poster, render_views, stone, tint
from .synthetic_scene import Camera, Rectangle, box, look_at

NUM_VIEWS = 12
SEED = 7
PX_PER_M = 90  # texture resolution: ~1.5 texture pixels per image pixel at the nearest facade point
BAYS = (8, 2)  # bays along the facade, storeys
BAY = (2.0, 3.0)  # bay width, storey height (m)
TILE = 0.5  # paving tile side (m)


def window_bay(rng: np.random.Generator) -> np.ndarray:
    """One bay, [h,w,3]: ochre plaster, a framed window with a glazing bar, a cornice line."""
    w, h = int(BAY[0] * PX_PER_M), int(BAY[1] * PX_PER_M)
    out = tint(0.8 + 0.2 * fractal_noise(rng, h, w), (0.86, 0.74, 0.52))
    wh, ww = int(0.5 * h), int(0.45 * w)
    y0, x0 = int(0.25 * h), (w - ww) // 2
    out[y0 - 6 : y0 + wh + 6, x0 - 6 : x0 + ww + 6] = (0.95, 0.94, 0.9)
    out[y0 : y0 + wh, x0 : x0 + ww] = tint(0.25 + 0.25 * fractal_noise(rng, wh, ww, octaves=3), (0.45, 0.55, 0.65))
    out[y0 : y0 + wh, w // 2 - 2 : w // 2 + 2] = (0.95, 0.94, 0.9)
    out[y0 + wh // 2 - 2 : y0 + wh // 2 + 2, x0 : x0 + ww] = (0.95, 0.94, 0.9)
    out[:8] = (0.7, 0.66, 0.6)
    return np.clip(out, 0, 1)


def paving_tile(rng: np.random.Generator) -> np.ndarray:
    """One paving tile, [s,s,3]: speckled grey stone with a dark joint on two sides."""
    s = int(TILE * PX_PER_M)
    out = tint(0.5 + 0.35 * fractal_noise(rng, s, s, octaves=4), (0.66, 0.64, 0.6))
    out[:3], out[:, :3] = (0.2, 0.19, 0.17), (0.2, 0.19, 0.17)
    return out


def scene(seed: int = SEED) -> list[Rectangle]:
    """The courtyard's rectangles (world frame in metres, z up, the facade in the plane y = 4)."""
    rng = np.random.default_rng(seed)
    X, Y, Z = np.eye(3)
    width, height = BAYS[0] * BAY[0], BAYS[1] * BAY[1]
    facade = np.tile(window_bay(rng), (BAYS[1], BAYS[0], 1))
    door = planks(rng, int(2.2 * PX_PER_M))[:, : int(1.2 * PX_PER_M)]  # the one door, in the third bay
    x0 = int((2.5 * BAY[0] - 0.6) * PX_PER_M)
    facade[-door.shape[0] :, x0 : x0 + door.shape[1]] = door
    ground = np.tile(paving_tile(rng), (int(10 / TILE), int(width / TILE), 1))
    rects = [
        Rectangle(np.array([-width / 2, 4, 0]), width * X, -10 * Y, ground),
        Rectangle(np.array([-width / 2, 4, height]), width * X, -height * Z, facade),
        Rectangle(np.array([2.2, 3.98, 2.2]), 0.9 * X, -1.2 * Z, poster()),  # the notice
        Rectangle(np.array([-width / 2, -6, height]), 10 * Y, -height * Z, stone(rng, 540, 900)),
        Rectangle(np.array([width / 2, 4, height]), -10 * Y, -height * Z, stone(rng, 540, 900)),
    ]
    for corner in ([-5.5, 2.5], [4.0, 2.8]):
        rects += box(np.array([*corner, 0.0]), 0.6, 0.6, 0.6, [planks(rng, 256) for _ in range(2)])
    return [lit(r) for r in rects]


def cameras(count: int = NUM_VIEWS) -> list[Camera]:
    """`count` cameras 9 m in front of the facade, from x = -5 to 5 m, eye height 1.5-1.8 m,
    looking at the facade 1 m ahead of where they stand; COLMAP-convention K."""
    w, h = IMAGE_SIZE
    K = np.array([[FOCAL, 0, w / 2], [0, FOCAL, h / 2], [0, 0, 1.0]])
    out = []
    for k, x in enumerate(np.linspace(-5, 5, count)):
        eye = np.array([x, -5.0, 1.5 + 0.3 * (k % 2)])
        R, t = look_at(eye, np.array([x + 1.0, 4.0, 2.2]))
        out.append(Camera(K, R, t, IMAGE_SIZE))
    return out


def render_repeated_scene(output: Path, count: int = NUM_VIEWS, seed: int = SEED) -> Path:
    """The courtyard's views rendered into output/images, ground truth into output/gt_cameras
    (`demo_scene.render_views`); returns the image folder."""
    return render_views(output, cameras(count), seed, build=scene)
