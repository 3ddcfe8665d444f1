"""Training pairs from any folder of photos: two views of a photo under random homographies.

Each view is a random homography of the source photo (view pixels -> source pixels):

    H_k = T(centre_k) R(theta_k) S(scale_k) P(perspective_k) T(-view centre)

View 1 differs from view 0 by a random rotation (any angle with `full_rotation_prob`, so that
in-plane rotation is learnt, else up to `max_rotation` degrees either way), a zoom of up to
`max_zoom` either way, perspective and a shift that leaves only part of the views overlapping.
Each view then gets its own photometric change (brightness, contrast, gamma, blur, noise) and,
sometimes, occluders cut from other photos: regions with no correspondent in the other view,
which is what the matchability maps must learn to spot.
`valid0/1` mark the pixels showing the source photo (not outside it, not an occluder).

The sample at a given index is deterministic (seeded by `seed` and the index), so a resumed run
sees exactly the data an uninterrupted one would.
"""

from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import torch
from torch.utils.data import Dataset

from ..image_io import IMAGE_EXTENSIONS, ImageReadError, read_image, to_gray_float


@dataclass
class HomographyPairConf:
    size: tuple[int, int] = (320, 256)  # (w, h) of both views, multiples of 32
    coverage: tuple[float, float] = (0.35, 0.8)  # share of the source's extent seen by view 0
    min_scale: float = 0.0  # source pixels per view-0 pixel at least (a floor on enlargement)
    max_zoom: float = 3.0  # view 1 zooms by up to this factor either way
    full_rotation_prob: float = 0.5  # else view 1 rotates by up to +-max_rotation
    max_rotation: float = 30.0  # degrees
    max_perspective: float = 0.35  # corner displacement share
    max_shift: float = 0.3  # centre shift of view 1, share of view 0's extent
    occluder_prob: float = 0.5
    night_prob: float = 0.0  # share of views lit as at night (`night`), each view drawn on its own
    seed: int = 0


class PhotoPool:
    """The photos of a folder (recursively), decoded to grayscale once and kept as uint8."""

    def __init__(self, folder: str | Path):
        self.paths = sorted(p for p in Path(folder).rglob("*") if p.suffix.lower() in IMAGE_EXTENSIONS)
        if not self.paths:
            raise FileNotFoundError(f"{folder}: no images ({', '.join(IMAGE_EXTENSIONS)}) found")
        self.cache: dict[int, np.ndarray] = {}

    def __len__(self) -> int:
        return len(self.paths)

    def get(self, k: int) -> np.ndarray:
        """Photo k as float32 [h,w] in [0,1]."""
        if k not in self.cache:
            try:
                gray = to_gray_float(read_image(self.paths[k]), str(self.paths[k]))
            except (ImageReadError, ValueError) as err:
                raise ImageReadError(f"{self.paths[k]}: unusable training image ({err})") from err
            self.cache[k] = (gray * 255).round().astype(np.uint8)
        return self.cache[k].astype(np.float32) / 255


def view_homography(
    rng: np.random.Generator, centre, theta: float, scale: float, perspective: float, size
) -> np.ndarray:
    """View pixels -> source pixels."""
    w, h = size
    to_centre = np.array([[1, 0, -(w - 1) / 2], [0, 1, -(h - 1) / 2], [0, 0, 1]])
    px, py = rng.uniform(-1, 1, 2) * perspective / np.array([w, h])
    P = np.array([[1, 0, 0], [0, 1, 0], [px, py, 1]])
    c, s = np.cos(theta), np.sin(theta)
    RS = np.array([[c * scale, -s * scale, 0], [s * scale, c * scale, 0], [0, 0, 1]])
    T = np.array([[1, 0, centre[0]], [0, 1, centre[1]], [0, 0, 1]])
    return T @ RS @ P @ to_centre


def night(rng: np.random.Generator, image: np.ndarray) -> np.ndarray:
    """`image` [h,w] in [0,1] as if lit at night: midtones darkened (gamma 1.3-2.2), a dim ambient
    light (0.05-0.25) plus 1-3 lamps (Gaussian pools of light, a sixth to half the image wide), and
    sensor noise that the camera's auto-exposure (its 99th percentile brought to 0.6-0.95) amplifies
    with the rest; so a pair can be day against night, or two nights differently lit. Returns float64
    [h,w], not clipped to [0,1] (`photometric` clips after its own change)."""
    h, w = image.shape
    ys, xs = np.mgrid[0:h, 0:w] / max(h, w)
    light = np.full((h, w), rng.uniform(0.05, 0.25))
    for _ in range(rng.integers(1, 4)):
        cx, cy = rng.uniform(0, w / max(h, w)), rng.uniform(0, h / max(h, w))
        radius = rng.uniform(1 / 6, 1 / 2)
        light += rng.uniform(0.3, 1.0) * np.exp(-((xs - cx) ** 2 + (ys - cy) ** 2) / (2 * radius**2))
    image = np.clip(image, 0, 1) ** rng.uniform(1.3, 2.2) * np.minimum(light, 1.0)
    image = image + rng.normal(0, rng.uniform(0.003, 0.015), image.shape)
    return image * rng.uniform(0.6, 0.95) / max(np.percentile(image, 99), 0.05)


def photometric(rng: np.random.Generator, image: np.ndarray, night_prob: float = 0.0) -> np.ndarray:
    """A random brightness, contrast, gamma, blur and noise change of `image` [h,w] in [0,1], after
    the `night` lighting with probability `night_prob` (0: no draw, so older recipes' pairs are unchanged)."""
    if night_prob and rng.random() < night_prob:
        image = night(rng, image)
    image = image * rng.uniform(0.6, 1.4) + rng.uniform(-0.2, 0.2)
    image = np.clip(image, 0, 1) ** rng.uniform(0.7, 1.5)
    if rng.random() < 0.3:
        image = cv2.GaussianBlur(image, (0, 0), rng.uniform(0.5, 2.0))
    image = image + rng.normal(0, rng.uniform(0, 0.03), image.shape)
    return np.clip(image, 0, 1).astype(np.float32)


def add_occluders(rng: np.random.Generator, image: np.ndarray, valid: np.ndarray, texture: np.ndarray) -> None:
    """Paste 1-3 random ellipses or polygons filled from `texture` (in place); they are not valid."""
    h, w = image.shape
    for _ in range(rng.integers(1, 4)):
        shape = np.zeros((h, w), np.uint8)
        centre = (int(rng.uniform(0, w)), int(rng.uniform(0, h)))
        if rng.random() < 0.5:
            axes = (int(rng.uniform(0.05, 0.25) * w), int(rng.uniform(0.05, 0.25) * h))
            cv2.ellipse(shape, centre, axes, rng.uniform(0, 180), 0, 360, 1, -1)
        else:
            corners = np.array(centre) + rng.uniform(-0.2, 0.2, (rng.integers(3, 7), 2)) * (w, h)
            cv2.fillPoly(shape, [cv2.convexHull(corners.astype(np.int32))], 1)
        y0 = rng.integers(0, max(1, texture.shape[0] - h))
        x0 = rng.integers(0, max(1, texture.shape[1] - w))
        patch = cv2.resize(texture[y0 : y0 + h, x0 : x0 + w], (w, h))
        inside = shape.astype(bool)
        image[inside] = patch[inside]
        valid[inside] = False


class HomographyPairs(Dataset):
    """Items: image0, image1 [1,h,w] float in [0,1]; H_0to1 [3,3] (view-0 to view-1 pixels, pixel-centre
    convention); valid0, valid1 [h,w] bool."""

    def __init__(self, folder: str | Path, conf: HomographyPairConf = HomographyPairConf(), length: int = 100_000):
        self.photos, self.conf, self.length = PhotoPool(folder), conf, length

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        conf = self.conf
        rng = np.random.default_rng([conf.seed, index])
        source = self.photos.get(int(rng.integers(len(self.photos))))
        hs, ws = source.shape
        w, h = conf.size
        scale0 = max(conf.min_scale, rng.uniform(*conf.coverage) * min(ws / w, hs / h))
        centre0 = np.array([ws, hs]) / 2 + rng.uniform(-0.15, 0.15, 2) * (ws, hs)
        theta0 = np.deg2rad(rng.uniform(-20, 20))
        full = rng.random() < conf.full_rotation_prob
        theta1 = theta0 + np.deg2rad(rng.uniform(-180, 180) if full else rng.uniform(-1, 1) * conf.max_rotation)
        scale1 = scale0 * np.exp(rng.uniform(-1, 1) * np.log(conf.max_zoom))
        centre1 = centre0 + rng.uniform(-1, 1, 2) * conf.max_shift * scale0 * np.array([w, h])
        H0 = view_homography(rng, centre0, theta0, scale0, conf.max_perspective * 0.3, (w, h))
        H1 = view_homography(rng, centre1, theta1, scale1, conf.max_perspective, (w, h))

        views, valids = [], []
        for H in (H0, H1):
            flags = cv2.WARP_INVERSE_MAP | cv2.INTER_LINEAR
            view = cv2.warpPerspective(source, H, (w, h), flags=flags, borderValue=0)
            covered = cv2.warpPerspective(np.ones_like(source), H, (w, h), flags=flags, borderValue=0)
            valid = cv2.erode((covered > 0.999).astype(np.uint8), np.ones((3, 3), np.uint8)).astype(bool)
            view = photometric(rng, view, conf.night_prob) * valid
            if rng.random() < conf.occluder_prob:
                add_occluders(rng, view, valid, self.photos.get(int(rng.integers(len(self.photos)))))
            views.append(view)
            valids.append(valid)
        H_0to1 = np.linalg.inv(H1) @ H0
        return {
            "image0": torch.from_numpy(views[0])[None],
            "image1": torch.from_numpy(views[1])[None],
            "H_0to1": torch.from_numpy(H_0to1 / H_0to1[2, 2]).float(),
            "valid0": torch.from_numpy(valids[0]),
            "valid1": torch.from_numpy(valids[1]),
        }
