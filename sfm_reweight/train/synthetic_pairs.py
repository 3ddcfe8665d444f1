"""Training pairs rendered on the fly from random synthetic scenes (sfm_reweight/scenes/synthetic_scene.py),
with exact depth, K and T_0to1 like MegaDepth's, occlusions between boxes and walls, and regions seen
by one camera only. Deterministic per index.

- `SyntheticScenePairs`: two cameras around a common point of a random scene of walls and boxes.
- `RepeatedFacadePairs`: two cameras walking along a facade of identical bays, up to about two bays
  apart, so that most of what one view sees has a look-alike one bay off in the other; the loss
  rewards the copy the depth says, and only the context (posters, boxes, the facade's ends) tells it.
"""

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from ..scenes.synthetic_scene import Camera, Rectangle, look_at, random_camera, random_facade, random_scene, render
from .homography_pairs import PhotoPool, photometric


@dataclass
class SyntheticPairConf:
    size: tuple[int, int] = (320, 256)  # (w, h), multiples of 32
    max_azimuth_change: float = 1.0  # radians between the two cameras
    night_prob: float = 0.0  # share of views lit as at night (homography_pairs.night)
    seed: int = 0


@dataclass
class RepeatedFacadePairConf:
    size: tuple[int, int] = (320, 256)  # (w, h), multiples of 32
    max_baseline: float = 5.0  # metres along the facade between the two cameras
    night_prob: float = 0.0  # share of views lit as at night (homography_pairs.night)
    seed: int = 0


def rendered_pair(
    rng: np.random.Generator, scene: list[Rectangle], cameras: list[Camera], night_prob: float = 0.0
) -> dict[str, torch.Tensor]:
    """image0/1 [1,h,w] in [0,1] (each with its own photometric change, lit as at night with
    `night_prob`), depth0/1 [h,w] (0 = background), K0/1 [3,3] (COLMAP convention), T_0to1 [4,4] of
    `scene` seen by the two `cameras`."""
    item = {}
    for k, camera in enumerate(cameras):
        image, depth = render(scene, camera)
        item[f"image{k}"] = torch.from_numpy(photometric(rng, image, night_prob))[None]
        item[f"depth{k}"] = torch.from_numpy(depth)
        item[f"K{k}"] = torch.from_numpy(camera.K).float()
    item["T_0to1"] = torch.from_numpy(cameras[1].pose @ np.linalg.inv(cameras[0].pose)).float()
    return item


class RenderedPairs(Dataset):
    """Items: `rendered_pair`'s of the scene and two cameras `scene_and_cameras` makes from a few
    training photos (the textures), all drawn from a generator seeded by (conf.seed, index)."""

    photos_per_scene = 6

    def __init__(self, folder: str | Path, conf: SyntheticPairConf | RepeatedFacadePairConf, length: int = 100_000):
        self.photos, self.conf, self.length = PhotoPool(folder), conf, length

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        rng = np.random.default_rng([self.conf.seed, index])
        photos = [self.photos.get(int(k)) for k in rng.integers(len(self.photos), size=self.photos_per_scene)]
        return rendered_pair(rng, *self.scene_and_cameras(rng, photos), self.conf.night_prob)

    def scene_and_cameras(
        self, rng: np.random.Generator, photos: list[np.ndarray]
    ) -> tuple[list[Rectangle], list[Camera]]:
        raise NotImplementedError


class SyntheticScenePairs(RenderedPairs):
    """A `random_scene` of walls and boxes, two `random_camera`s looking at a common point, their
    azimuths up to `max_azimuth_change` apart."""

    def scene_and_cameras(
        self, rng: np.random.Generator, photos: list[np.ndarray]
    ) -> tuple[list[Rectangle], list[Camera]]:
        scene = random_scene(rng, photos)
        target = np.append(rng.uniform(-1, 1, 2), rng.uniform(0, 1))
        angle = rng.uniform(0, 2 * np.pi)
        cameras = [
            random_camera(rng, self.conf.size, target, angle),
            random_camera(rng, self.conf.size, target, angle + rng.uniform(-1, 1) * self.conf.max_azimuth_change),
        ]
        return scene, cameras


class RepeatedFacadePairs(RenderedPairs):
    """A `random_facade` seen by two cameras 4.5-12 m in front of it (each within 10 % of a distance
    drawn for the pair), at eye height, 0.3 m to `max_baseline` apart along it and both in front of
    the facade, between its side walls; each looks at the facade a little ahead of or behind where
    it stands (one focal length for both, as a walk with one camera)."""

    photos_per_scene = 8

    def scene_and_cameras(
        self, rng: np.random.Generator, photos: list[np.ndarray]
    ) -> tuple[list[Rectangle], list[Camera]]:
        scene, width = random_facade(rng, photos)
        w, h = self.conf.size
        f = w * rng.uniform(0.7, 1.2)
        K = np.array([[f, 0, w / 2], [0, f, h / 2], [0, 0, 1.0]])
        x0 = rng.uniform(-width / 3, width / 3)
        step = rng.choice([-1, 1]) * rng.uniform(0.3, self.conf.max_baseline)
        inside = width / 2 - 1  # a camera past a side wall sees its back only
        x1 = np.clip(x0 + step if abs(x0 + step) <= inside else x0 - step, -inside, inside)
        distance = rng.uniform(5, 11)
        cameras = []
        for x in (x0, x1):
            eye = np.array([x, -distance * rng.uniform(0.9, 1.1), rng.uniform(1.2, 2.2)])
            R, t = look_at(eye, np.array([x + rng.uniform(-2, 2), 0.0, rng.uniform(1.5, 3.0)]))
            cameras.append(Camera(K, R, t, self.conf.size))
        return scene, cameras
