"""Reading images of any common type and turning them into the matcher's grayscale input."""

from pathlib import Path

import cv2
import numpy as np

from .utils import atomic
from .utils.errors import SfmReweightError

# what counts as an image file (lower case); `eval.datasets.find_image` tries them in this order
IMAGE_EXTENSIONS = (".png", ".ppm", ".pgm", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp", ".webp")


class ImageReadError(SfmReweightError, OSError):
    """An image that is missing or cannot be decoded; the message names the file."""


def read_image(path: str | Path) -> np.ndarray:
    """The image at `path` as stored: [H,W] or [H,W,C] in RGB(A) order, uint8/uint16/float."""
    path = Path(path)
    if not path.is_file():
        raise ImageReadError(f"{path}: image file not found")
    image = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if image is None or image.size == 0:
        raise ImageReadError(f"{path}: cannot be decoded as an image")
    if image.ndim == 3 and image.shape[2] == 3:
        image = cv2.cvtColor(image, cv2.COLOR_BGR2RGB)
    elif image.ndim == 3 and image.shape[2] == 4:
        image = cv2.cvtColor(image, cv2.COLOR_BGRA2RGBA)
    return image


def write_image_atomic(path: str | Path, image: np.ndarray, params: list[int] | None = None) -> Path:
    """Write an RGB(A) or gray image (uint8/uint16) so that `path` is complete or absent (encoded in
    memory, then written crash-safe); the format follows the suffix."""
    path = Path(path)
    if image.ndim == 3 and image.shape[2] in (3, 4):
        image = cv2.cvtColor(image, cv2.COLOR_RGB2BGR if image.shape[2] == 3 else cv2.COLOR_RGBA2BGRA)
    ok, encoded = cv2.imencode(path.suffix, image, params or [])
    if not ok:
        raise OSError(f"{path}: cannot write the image")
    return atomic.write_bytes(path, encoded.tobytes())


def to_float_image(image: np.ndarray, name: str = "image") -> np.ndarray:
    """[H,W], [H,W,1], RGB [H,W,3] or RGBA [H,W,4] array (uint8, uint16 or float in [0,1]) ->
    float32 [H,W] or RGB [H,W,3] in [0,1]; the alpha channel is dropped."""
    image = np.asarray(image)
    if image.ndim == 3 and image.shape[2] == 1:
        image = image[..., 0]
    if image.ndim == 3 and image.shape[2] in (3, 4):
        image = image[..., :3]
    elif image.ndim != 2:
        raise ValueError(f"{name}: expected an [H,W], [H,W,3] or [H,W,4] image, got shape {image.shape}")
    if min(image.shape[:2]) < 1:
        raise ValueError(f"{name}: empty image of shape {image.shape}")
    if image.dtype == np.uint8:
        return image.astype(np.float32) / 255.0
    if image.dtype == np.uint16:
        return image.astype(np.float32) / 65535.0
    if np.issubdtype(image.dtype, np.floating):
        if not np.isfinite(image).all():
            raise ValueError(f"{name}: image contains NaN or infinite values")
        return image.astype(np.float32)
    raise ValueError(f"{name}: unsupported image dtype {image.dtype}; expected uint8, uint16 or float")


def to_gray_float(image: np.ndarray, name: str = "image") -> np.ndarray:
    """Any supported image array -> float32 [H,W] in [0,1] (the matcher's input)."""
    image = to_float_image(image, name)
    return cv2.cvtColor(image, cv2.COLOR_RGB2GRAY) if image.ndim == 3 else image
