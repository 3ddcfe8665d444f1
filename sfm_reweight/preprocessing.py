"""Network input from an image of any size: resize, pad to a multiple of 32, padding masks, and the
map from network pixels back to original-image pixels."""

from dataclasses import dataclass

import cv2
import numpy as np
import torch

from .model.eloftr import COARSE_STRIDE

PAD_MULTIPLE = 32  # the coarse transformer aggregates 4x4 cells of 8 px
SIZE_MULTIPLE = COARSE_STRIDE  # resized sides are multiples of the coarse stride, so coarse masks are exact
MIN_SIDE = 32


@dataclass
class Prepared:
    """One image ready for the network."""

    image: np.ndarray  # float32 [Hp, Wp] in [0,1], zero-padded bottom-right
    size: tuple[int, int]  # (w, h) of the resized image inside the padding
    original_size: tuple[int, int]  # (w, h) of the input image

    @property
    def scale(self) -> np.ndarray:
        """(sx, sy): original pixels per network pixel."""
        return np.array(self.original_size, np.float64) / np.array(self.size, np.float64)

    @property
    def padded(self) -> bool:
        return self.image.shape[::-1] != self.size

    def coarse_mask(self, stride: int = COARSE_STRIDE) -> torch.Tensor:
        """[Hp/stride, Wp/stride] bool, True on cells of the image."""
        hp, wp = self.image.shape
        mask = torch.zeros(hp // stride, wp // stride, dtype=torch.bool)
        mask[: self.size[1] // stride, : self.size[0] // stride] = True
        return mask

    def to_original(self, keypoints: np.ndarray) -> np.ndarray:
        """Network pixels -> original pixels (`to_original` with this image's scale)."""
        return to_original(keypoints, self.scale)


def to_original(points: np.ndarray, scale: np.ndarray) -> np.ndarray:
    """Points [M,2] of a resized image -> the original image's pixels, [M,2] float32; scale (sx, sy) =
    original pixels per resized pixel; integer pixel centres in both: (k + 0.5) s - 0.5."""
    return ((np.asarray(points, np.float64).reshape(-1, 2) + 0.5) * scale - 0.5).astype(np.float32)


def pixel_scaling(sx: float, sy: float) -> np.ndarray:
    """The rule of `to_original` as a [3,3] matrix S on homogeneous pixel coordinates: x' = (x + 0.5) sx - 0.5,
    from an image to the same image scaled by (sx, sy); so K' = S K, and H' = S1 H S0^-1 between resized views."""
    return np.array([[sx, 0.0, 0.5 * sx - 0.5], [0.0, sy, 0.5 * sy - 0.5], [0.0, 0.0, 1.0]])


def rot90_points(points: np.ndarray, k: int, size: tuple[int, int]) -> np.ndarray:
    """Pixel-centre coordinates [N,2] in an image of `size` (w, h) -> the same points in
    `np.rot90(image, k)` (k quarter turns counter-clockwise; negative k turns back)."""
    x, y = points[:, 0], points[:, 1]
    w, h = size
    for _ in range(k % 4):  # one counter-clockwise turn: (x, y) -> (y, w - 1 - x), size (w, h) -> (h, w)
        x, y, w, h = y, w - 1 - x, h, w
    return np.stack([x, y], axis=1).astype(points.dtype)


def resized_size(w: int, h: int, resize_max: int | None, resize_force: bool) -> tuple[int, int]:
    """Long side to `resize_max` (only downwards unless forced), short side at least MIN_SIDE,
    both floored to a multiple of SIZE_MULTIPLE."""
    scale = 1.0
    if resize_max and (resize_force or max(w, h) > resize_max):
        scale = resize_max / max(w, h)
    scale = max(scale, MIN_SIDE / min(w, h))
    return tuple(max(SIZE_MULTIPLE, int(round(s * scale)) // SIZE_MULTIPLE * SIZE_MULTIPLE) for s in (w, h))


def prepare(gray: np.ndarray, resize_max: int | None = 1024, resize_force: bool = False) -> Prepared:
    """gray float32 [H,W] in [0,1] -> resized (area interpolation when shrinking) and zero-padded to 32."""
    h, w = gray.shape
    new_w, new_h = resized_size(w, h, resize_max, resize_force)
    if (new_w, new_h) != (w, h):
        shrinking = new_w * new_h < w * h
        gray = cv2.resize(gray, (new_w, new_h), interpolation=cv2.INTER_AREA if shrinking else cv2.INTER_LINEAR)
    pad_h, pad_w = (-new_h) % PAD_MULTIPLE, (-new_w) % PAD_MULTIPLE
    padded = np.pad(gray, ((0, pad_h), (0, pad_w))) if pad_h or pad_w else gray
    return Prepared(np.ascontiguousarray(padded, dtype=np.float32), (new_w, new_h), (w, h))
