"""A homography benchmark made from any photos: each photo against copies of itself zoomed and rotated
about the centre, the copies written to a views folder once (PNG files) and paired with the photo
under the known H (`write_warped_photos`; sfm_reweight/eval/homography.py's `--layout warped`)."""

from collections.abc import Sequence
from pathlib import Path

import cv2
import numpy as np

from ..image_io import IMAGE_EXTENSIONS, read_image, write_image_atomic
from .datasets import DatasetFormatError, EvalPair, require_dir

# the conditions of `write_warped_photos`: zooms at rotation 0, rotations (degrees) at zoom 1
WARP_ZOOMS = (1.0, 0.85, 0.7, 0.55, 0.4)
WARP_ROTATIONS = (15.0, 30.0, 45.0, 90.0)


def warp_about_centre(size: tuple[int, int], zoom: float, degrees: float) -> np.ndarray:
    """H [3,3] of a zoom and a counter-clockwise rotation (as seen on screen) about the centre of
    an image of size (w, h), in integer pixel-centre coordinates."""
    w, h = size
    return np.vstack([cv2.getRotationMatrix2D(((w - 1) / 2, (h - 1) / 2), degrees, zoom), [0.0, 0.0, 1.0]])


def write_warped_photos(
    root: str | Path,
    views: str | Path,
    zooms: Sequence[float] = WARP_ZOOMS,
    rotations: Sequence[float] = WARP_ROTATIONS,
    max_photos: int | None = None,
) -> list[EvalPair]:
    """Each photo of `root` (sorted, the first `max_photos`) against copies of itself zoomed by each
    of `zooms` (image 1 shows the content at that size; below 1 a black border surrounds it) at
    rotation 0, and rotated by each of `rotations` (degrees) at zoom 1: a known H per pair, the same
    photo content, so that a matcher's loss of precision is due to the zoom or rotation alone. Views
    are written once as `views/<photo stem>/zoom<z>_rot<r>.png` (the condition is the file stem)."""
    root, views = require_dir(Path(root), "photo folder"), Path(views)
    photos = sorted(p for p in root.iterdir() if p.suffix.lower() in IMAGE_EXTENSIONS)[:max_photos]
    if not photos:
        raise DatasetFormatError(f"{root}: no images ({', '.join(IMAGE_EXTENSIONS)})")
    conditions = [(z, 0.0) for z in zooms] + [(1.0, r) for r in rotations if r % 360]
    pairs = []
    for photo in photos:
        image = read_image(photo)  # its size sets H even where the views exist already
        size = (image.shape[1], image.shape[0])
        for zoom, degrees in dict.fromkeys(conditions):
            view = views / photo.stem / f"zoom{zoom:.2f}_rot{degrees:03.0f}.png"
            H = warp_about_centre(size, zoom, degrees)
            if not view.is_file():
                interpolation = cv2.INTER_AREA if zoom < 1 else cv2.INTER_LINEAR
                write_image_atomic(view, cv2.warpPerspective(image, H, size, flags=interpolation))
            pairs.append(EvalPair(f"{photo.name} {view.stem}", photo, view, H_0to1=H))
    return pairs
