"""Training pairs rendered on the fly from random synthetic scenes (sfm_reweight/scenes/synthetic_scene.py):
two cameras looking at a common point, with exact depth, K and T_0to1 like MegaDepth's, occlusions
between boxes and walls, and regions seen by one camera only. Deterministic per index."""

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from ..scenes.synthetic_scene import random_camera, random_scene, render
from .homography_pairs import PhotoPool, photometric


@dataclass
class SyntheticPairConf:
    size: tuple[int, int] = (320, 256)  # (w, h), multiples of 32
    max_azimuth_change: float = 1.0  # radians between the two cameras
    seed: int = 0


class SyntheticScenePairs(Dataset):
    """Items: image0/1 [1,h,w] in [0,1], depth0/1 [h,w] (0 = background), K0/1 [3,3] (COLMAP convention),
    T_0to1 [4,4]."""

    def __init__(self, folder: str | Path, conf: SyntheticPairConf = SyntheticPairConf(), length: int = 100_000):
        self.photos, self.conf, self.length = PhotoPool(folder), conf, length

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        rng = np.random.default_rng([self.conf.seed, index])
        photos = [self.photos.get(int(k)) for k in rng.integers(len(self.photos), size=6)]
        scene = random_scene(rng, photos)
        target = np.append(rng.uniform(-1, 1, 2), rng.uniform(0, 1))
        angle = rng.uniform(0, 2 * np.pi)
        cameras = [
            random_camera(rng, self.conf.size, target, angle),
            random_camera(rng, self.conf.size, target, angle + rng.uniform(-1, 1) * self.conf.max_azimuth_change),
        ]
        item = {}
        for k, camera in enumerate(cameras):
            image, depth = render(scene, camera)
            item[f"image{k}"] = torch.from_numpy(photometric(rng, image))[None]
            item[f"depth{k}"] = torch.from_numpy(depth)
            item[f"K{k}"] = torch.from_numpy(camera.K).float()
        item["T_0to1"] = torch.from_numpy(cameras[1].pose @ np.linalg.inv(cameras[0].pose)).float()
        return item
