"""Reading images of any common type and turning them into the matcher's grayscale input."""

import functools
import logging
import re
from pathlib import Path

import cv2
import numpy as np

from .utils import atomic
from .utils.errors import SfmReweightError

logger = logging.getLogger(__name__)

# what counts as an image file (lower case); `eval.datasets.find_image` tries them in this order
IMAGE_EXTENSIONS = (".png", ".ppm", ".pgm", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp", ".webp")


# a JPEG marker: 0xFF then a code that is not byte stuffing (00), a restart marker (D0-D7) or fill (FF)
_JPEG_MARKER = re.compile(rb"\xff[^\x00\xd0-\xd7\xff]")
_JPEG_STANDALONE = {0x01, 0xD8}  # markers without a length field (besides the restart markers)
OVERSIZED = 4  # a long side over this many times the one an image is processed at gets a warning


class ImageReadError(SfmReweightError, OSError):
    """An image that is missing or cannot be decoded; the message names the file."""


def jpeg_is_complete(data: bytes) -> bool:
    """Whether a JPEG stream's markers run from start to its end-of-image marker. libjpeg decodes a
    truncated file anyway (a grey lower part, a "Premature end of JPEG file" warning on stderr that
    names no file); data after the end marker (a motion photo's video, a maker trailer) is fine."""
    pos = 2
    while match := _JPEG_MARKER.search(data, pos):  # segments follow each other; entropy-coded data is skipped
        code, pos = data[match.start() + 1], match.start()
        if code == 0xD9:
            return True
        if code in _JPEG_STANDALONE:
            pos += 2
            continue
        if pos + 4 > len(data):
            return False
        pos += 2 + int.from_bytes(data[pos + 2 : pos + 4], "big")  # the length counts itself, not the marker
        if pos > len(data):
            return False
    return False


def read_image(path: str | Path) -> np.ndarray:
    """The image at `path` as stored: [H,W] or [H,W,C] in RGB(A) order, uint8/uint16/float; a
    truncated JPEG is an ImageReadError (never decoded into a partly grey image)."""
    path = Path(path)
    if not path.is_file():
        raise ImageReadError(f"{path}: image file not found")
    data = path.read_bytes()
    if data.startswith(b"\xff\xd8\xff") and not jpeg_is_complete(data):
        raise ImageReadError(f"{path}: truncated JPEG (the file ends before its end-of-image marker)")
    image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED) if data else None
    if image is None or image.size == 0:
        raise ImageReadError(f"{path}: cannot be decoded as an image")
    if image.ndim == 3 and image.shape[2] == 3:
        image = cv2.cvtColor(image, cv2.COLOR_BGR2RGB)
    elif image.ndim == 3 and image.shape[2] == 4:
        image = cv2.cvtColor(image, cv2.COLOR_BGRA2RGBA)
    return image


def warn_if_oversized(path: str | Path, size: tuple[int, int], long_side: int | None) -> None:
    """Warn when an image (size (w, h)) is far larger than the long side it is processed at: shrunk
    that much it loses its fine detail, and views taken at the usual sizes may be too far from it in
    scale to match."""
    if long_side and max(size) > OVERSIZED * long_side:
        logger.warning(
            "%s: %dx%d px, shrunk %.1f times to the long side %d px it is processed at; views of other sizes may"
            " not match it: give the photos similar sizes",
            path,
            *size,
            max(size) / long_side,
            long_side,
        )


class GrayImages:
    """Float32 gray images [H,W] in [0,1] by name under `image_dir`, for a stage that reads many: an
    unreadable image (missing, undecodable, truncated) is reported once, by `stage`, and remembered in
    `failed` (name -> reason); one far larger than `long_side` is warned about once
    (`warn_if_oversized`); the last `cache` images are kept (a stage may read an image for each pair)."""

    def __init__(self, image_dir: str | Path, stage: str, long_side: int | None = None, cache: int = 0):
        self.image_dir, self.stage, self.long_side = Path(image_dir), stage, long_side
        self.failed: dict[str, str] = {}
        self.seen: set[str] = set()
        self._load = functools.lru_cache(maxsize=cache)(self._read)

    def _read(self, name: str) -> np.ndarray:
        path = self.image_dir / name
        image = to_gray_float(read_image(path), str(path))
        if name not in self.seen:  # read again once out of the cache: warned about once
            self.seen.add(name)
            warn_if_oversized(path, image.shape[::-1], self.long_side)
        return image

    def __call__(self, name: str) -> np.ndarray | None:
        if name in self.failed:
            return None
        try:
            return self._load(name)
        except (ImageReadError, ValueError) as e:
            self.failed[name] = str(e)
            logger.warning("%s: skipping an unreadable image and its work: %s", self.stage, e)
            return None


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
