"""The embedded sample pair: a photo and a copy warped by a known homography, nothing to download.

Image 0 is the Grace Hopper portrait that matplotlib ships (`grace_hopper.jpg`, a U.S. Navy photo in
the public domain), 512 x 600 pixels (w x h). Image 1 is image 0 warped with `cv2.warpPerspective`
into a canvas of the same size by the fixed homography `H` (image-0 pixels -> image-1 pixels):

    H = T(c + t) @ P @ R(20 deg) @ S(0.8) @ T(-c)

with c the image centre, S an isotropic scale by 0.8, R a rotation by +20 degrees (x right, y down:
clockwise on screen), P a perspective term [[1, 0, 0], [0, 1, 0], [3e-4, -2e-4, 1]] acting on centred
coordinates, and t = (+0.30 w, +0.10 h) a shift that pushes the right and bottom of the photo out of
image 1, so that part of image 0 (about a quarter) has no counterpart. Pixels of image 1 that image 0
does not cover are black.

Coordinates use the package's pixel-centre convention: integer (x, y) are pixel centres, which is
also what `cv2.warpPerspective` assumes, so `H` is passed to it unchanged.
"""

from functools import lru_cache

import cv2
import numpy as np

SAMPLE_NAME = "grace_hopper.jpg"
ROTATION_DEG = 20.0
SCALE = 0.8
PERSPECTIVE = (3e-4, -2e-4)  # (p1, p2): bottom row [p1, p2, 1] on centred, scaled and rotated coordinates
SHIFT = (0.30, 0.10)  # translation of the centre, as fractions of (w, h)


@lru_cache(maxsize=1)
def sample_photo() -> np.ndarray:
    """The Grace Hopper photo, uint8 RGB [600,512,3]."""
    import matplotlib.cbook  # local: only this function needs matplotlib

    path = matplotlib.cbook.get_sample_data(SAMPLE_NAME, asfileobj=False)
    image = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if image is None:
        raise OSError(f"{path}: matplotlib's sample image cannot be read")
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)


def sample_homography(width: int, height: int) -> np.ndarray:
    """The module's fixed homography for an image of `width` x `height`: float64 [3,3], image 0 ->
    image 1, pixel-centre convention, normalised so that H[2,2] == 1."""
    cx, cy = (width - 1) / 2.0, (height - 1) / 2.0
    a = np.deg2rad(ROTATION_DEG)
    center = np.array([[1, 0, -cx], [0, 1, -cy], [0, 0, 1]], np.float64)
    rot_scale = np.array(
        [[SCALE * np.cos(a), -SCALE * np.sin(a), 0], [SCALE * np.sin(a), SCALE * np.cos(a), 0], [0, 0, 1]],
        np.float64,
    )
    perspective = np.array([[1, 0, 0], [0, 1, 0], [PERSPECTIVE[0], PERSPECTIVE[1], 1]], np.float64)
    back = np.array([[1, 0, cx + SHIFT[0] * width], [0, 1, cy + SHIFT[1] * height], [0, 0, 1]], np.float64)
    H = back @ perspective @ rot_scale @ center
    return H / H[2, 2]


def warp_image(image: np.ndarray, H: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """`image` warped by `H` (source pixels -> destination pixels, pixel-centre convention) into a
    canvas of `size` = (w, h); bilinear, uncovered pixels 0."""
    return cv2.warpPerspective(image, H, size, flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT, borderValue=0)


def sample_pair() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The sample pair: image0, image1 (uint8 RGB [600,512,3] each, fresh copies) and the
    ground-truth H (float64 [3,3]) mapping image-0 pixels to image-1 pixels. Deterministic."""
    image0 = sample_photo().copy()
    h, w = image0.shape[:2]
    H = sample_homography(w, h)
    return image0, warp_image(image0, H, (w, h)), H
