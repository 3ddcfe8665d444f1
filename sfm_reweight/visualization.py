"""Figures of matches and matchability maps, written as PNG files.

Rendering goes through matplotlib's object-oriented API on an Agg canvas (`Figure` +
`FigureCanvasAgg`): importing this module selects no backend and needs no display, and it never
touches pyplot's global state.

Conventions (those of `Matcher`): images are arrays [H,W] (gray), [H,W,3] (RGB) or [H,W,4] (RGBA,
alpha ignored) in uint8, uint16 or float in [0,1], or paths to image files; keypoints are [M,2]
float (x, y) in original-image pixels with integer values at pixel centres, so pixel (0, 0) covers
[-0.5, 0.5] x [-0.5, 0.5]. Figures are drawn at the images' own resolution, scaled down (or up for
tiny images) so that the figure's long side stays within [`min_size`, `max_size`] pixels.
"""

from pathlib import Path

import cv2
import numpy as np
from matplotlib.cm import ScalarMappable
from matplotlib.collections import LineCollection
from matplotlib.colors import Normalize
from matplotlib.figure import Figure

from .colmap import corner_rays
from .image_io import read_image, to_float_image, to_gray_float
from .model.eloftr import COARSE_STRIDE
from .utils import atomic

ImageInput = str | Path | np.ndarray

DPI = 100
TITLE_PX = 28  # band above the images holding the title
COLORBAR_BAND_PX = 32  # band below the images holding a horizontal colour bar
COLORBAR_SIDE_PX = 70  # band right of the images holding a vertical colour bar
GAP_PX = 10  # blank columns between two images, in image pixels
INLIER_COLOR = (0.1, 0.85, 0.1)
OUTLIER_COLOR = (0.95, 0.1, 0.1)
PLAIN_COLOR = (0.1, 0.85, 0.1)


def to_display_rgb(image: ImageInput) -> np.ndarray:
    """An image (array or path) -> float32 [H,W,3] RGB in [0,1] for display; alpha is dropped,
    gray is repeated over the three channels, floats are clipped to [0,1]."""
    if isinstance(image, (str, Path)):
        image = read_image(image)
    image = np.clip(to_float_image(image), 0.0, 1.0)
    if image.ndim == 2:
        image = np.repeat(image[..., None], 3, axis=2)
    return np.ascontiguousarray(image)


def side_by_side(image0: np.ndarray, image1: np.ndarray, gap: int = GAP_PX) -> tuple[np.ndarray, float]:
    """Two display images [H,W,3] on one white canvas [max(h0,h1), w0 + gap + w1, 3], tops aligned;
    returns the canvas and the x offset of image 1 (add it to image-1 x coordinates)."""
    (h0, w0), (h1, w1) = image0.shape[:2], image1.shape[:2]
    canvas = np.ones((max(h0, h1), w0 + gap + w1, 3), np.float32)
    canvas[:h0, :w0] = image0
    canvas[:h1, w0 + gap :] = image1
    return canvas, float(w0 + gap)


def display_scale(width: int, height: int, min_size: int, max_size: int) -> float:
    """Figure pixels per image pixel so that the long side lands in [min_size, max_size]."""
    long_side = max(width, height)
    return float(np.clip(1.0, min_size / long_side, max_size / long_side))


def _new_figure(width_px: float, height_px: float) -> Figure:
    fig = Figure(figsize=(width_px / DPI, height_px / DPI), dpi=DPI)
    fig.patch.set_facecolor("white")
    return fig


def _save(fig: Figure, path: str | Path) -> Path:
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    FigureCanvasAgg(fig)
    with atomic.atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=DPI, format="png", facecolor="white")
    return Path(path)


def _image_axes(fig: Figure, left: float, bottom: float, width: float, height: float, canvas_wh: tuple[int, int]):
    """Axes at the given figure pixels showing data coordinates of a canvas (w, h) at pixel centres."""
    fw, fh = fig.get_size_inches() * DPI
    ax = fig.add_axes((left / fw, bottom / fh, width / fw, height / fh))
    ax.set_axis_off()
    ax.set_xlim(-0.5, canvas_wh[0] - 0.5)
    ax.set_ylim(canvas_wh[1] - 0.5, -0.5)
    return ax


def _title(fig: Figure, text: str, top_px: float, height_px: float) -> None:
    fh = fig.get_size_inches()[1] * DPI
    fig.text(0.5, (top_px - height_px / 2) / fh, text, ha="center", va="center", fontsize=9)


def _check_keypoints(keypoints0: np.ndarray, keypoints1: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    kp0 = np.asarray(keypoints0, np.float64).reshape(-1, 2) if np.size(keypoints0) else np.zeros((0, 2))
    kp1 = np.asarray(keypoints1, np.float64).reshape(-1, 2) if np.size(keypoints1) else np.zeros((0, 2))
    if len(kp0) != len(kp1):
        raise ValueError(f"keypoints0 and keypoints1 differ in length: {len(kp0)} vs {len(kp1)}")
    return kp0, kp1


def plot_matches(
    image0: ImageInput,
    image1: ImageInput,
    keypoints0: np.ndarray,
    keypoints1: np.ndarray,
    path: str | Path,
    confidence: np.ndarray | None = None,
    inliers: np.ndarray | None = None,
    title: str | None = None,
    max_lines: int | None = 1000,
    min_size: int = 640,
    max_size: int = 2000,
) -> Path:
    """Save a PNG of the two images side by side (image 1 right of image 0, tops aligned, `GAP_PX`
    blank columns between) with a line per match.

    keypoints0, keypoints1: [M,2] (x, y) in each image's own pixels (pixel-centre convention).
    Colours: green/red by the bool mask `inliers` [M] when given; else by `confidence` [M] on a fixed
    [0,1] red-yellow-green scale with a colour bar below the images; else all green. When M exceeds
    `max_lines` a fixed random subset is drawn (seed 0). The title line (above the images) starts with
    `title` and gives the number of matches (and inliers). Returns the path written.
    """
    rgb0, rgb1 = to_display_rgb(image0), to_display_rgb(image1)
    kp0, kp1 = _check_keypoints(keypoints0, keypoints1)
    m = len(kp0)
    if confidence is not None:
        confidence = np.asarray(confidence, np.float64).reshape(-1)
        if len(confidence) != m:
            raise ValueError(f"confidence has {len(confidence)} entries for {m} matches")
    if inliers is not None:
        inliers = np.asarray(inliers).reshape(-1).astype(bool)
        if len(inliers) != m:
            raise ValueError(f"inliers has {len(inliers)} entries for {m} matches")

    canvas, offset = side_by_side(rgb0, rgb1)
    ch, cw = canvas.shape[:2]
    scale = display_scale(cw, ch, min_size, max_size)
    by_confidence = inliers is None and confidence is not None
    bottom_band = COLORBAR_BAND_PX if by_confidence else 0
    fig = _new_figure(cw * scale, ch * scale + TITLE_PX + bottom_band)
    ax = _image_axes(fig, 0, bottom_band, cw * scale, ch * scale, (cw, ch))
    ax.imshow(canvas, interpolation="antialiased", extent=(-0.5, cw - 0.5, ch - 0.5, -0.5))

    shown = np.arange(m)
    if max_lines is not None and m > max_lines:
        shown = np.sort(np.random.default_rng(0).choice(m, max_lines, replace=False))
    cmap = "RdYlGn"
    if inliers is not None:
        colors = np.where(inliers[shown, None], INLIER_COLOR, OUTLIER_COLOR)
        order = np.argsort(inliers[shown], kind="stable")  # inliers drawn on top
    elif confidence is not None:
        colors = ScalarMappable(Normalize(0.0, 1.0), cmap).to_rgba(confidence[shown])[:, :3]
        order = np.argsort(confidence[shown], kind="stable")  # confident matches drawn on top
    else:
        colors = np.tile(PLAIN_COLOR, (len(shown), 1))
        order = np.arange(len(shown))
    shown, colors = shown[order], colors[order]
    if len(shown):
        p0, p1 = kp0[shown], kp1[shown] + [offset, 0.0]
        lw = float(np.clip(1.2 * scale, 0.5, 1.2))
        ax.add_collection(LineCollection(np.stack([p0, p1], axis=1), colors=colors, linewidths=lw, alpha=0.75))
        for p in (p0, p1):
            ax.scatter(p[:, 0], p[:, 1], s=4 * lw, c=colors, linewidths=0)

    text = f"{m} match" if m == 1 else f"{m} matches"
    if inliers is not None:
        n_in = int(inliers.sum())
        text += f", {n_in} inliers ({100.0 * n_in / m:.1f}%)" if m else ", 0 inliers"
    if len(shown) < m:
        text += f" ({len(shown)} drawn)"
    _title(fig, f"{title}: {text}" if title else text, ch * scale + TITLE_PX + bottom_band, TITLE_PX)

    if by_confidence:
        fw, fh = fig.get_size_inches() * DPI
        bar_w = min(240.0, 0.4 * fw)
        cax = fig.add_axes(((fw - bar_w) / 2 / fw, 17 / fh, bar_w / fw, 8 / fh))
        bar = fig.colorbar(ScalarMappable(Normalize(0.0, 1.0), cmap), cax=cax, orientation="horizontal")
        bar.set_ticks([0.0, 0.5, 1.0])
        bar.ax.tick_params(labelsize=6, length=2, pad=1)
        fig.text((fw - bar_w) / 2 / fw - 0.01, 21 / fh, "confidence", fontsize=7, ha="right", va="center")
    return _save(fig, path)


def upsample_matchability(matchability: np.ndarray, image_size: tuple[int, int]) -> np.ndarray:
    """Coarse matchability map [h,w] -> float32 [H,W] on the original image of `image_size` = (W, H).

    The map covers the resized network input (8w x 8h pixels, which `Matcher` maps onto the whole
    original image), and cell (i, j) is centred on network pixel (8j, 8i), where the backbone's
    centred stride-2 convolutions put it and where coarse matches are placed. The sampling respects
    that: original pixel u (centre convention) reads the map at cell coordinate
    ((u + 0.5) * 8w / W - 0.5) / 8, bilinearly, edges replicated. (A plain `cv2.resize` would put
    cell centres at network pixel 8j + 3.5, i.e. shift the map by 3.5 network pixels down-right.)
    """
    matchability = np.asarray(matchability, np.float32)
    if matchability.ndim != 2 or min(matchability.shape) < 1:
        raise ValueError(f"expected a matchability map [h,w], got shape {matchability.shape}")
    w_img, h_img = int(image_size[0]), int(image_size[1])
    h, w = matchability.shape
    ax, ay = w / w_img, h / h_img
    # destination (original pixel) -> source (cell) affine map, applied with WARP_INVERSE_MAP
    M = np.array([[ax, 0.0, 0.5 * ax - 0.5 / COARSE_STRIDE], [0.0, ay, 0.5 * ay - 0.5 / COARSE_STRIDE]], np.float64)
    return cv2.warpAffine(
        matchability,
        M,
        (w_img, h_img),
        flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
        borderMode=cv2.BORDER_REPLICATE,
    )


def _plot_matchability_panels(
    images: list[ImageInput],
    maps: list[np.ndarray],
    path: str | Path,
    title: str | None,
    labels: list[str],
    alpha: float,
    cmap: str,
    min_size: int,
    max_size: int,
) -> Path:
    grays = []
    for image in images:
        rgb = to_display_rgb(image)
        g = to_gray_float(rgb)
        grays.append(np.repeat(g[..., None], 3, axis=2))
    canvas, offset = side_by_side(*grays) if len(grays) == 2 else (grays[0], 0.0)
    ch, cw = canvas.shape[:2]
    scale = display_scale(cw, ch, min_size, max_size)
    fig = _new_figure(cw * scale + COLORBAR_SIDE_PX, ch * scale + TITLE_PX)
    ax = _image_axes(fig, 0, 0, cw * scale, ch * scale, (cw, ch))
    ax.imshow(canvas, interpolation="antialiased", extent=(-0.5, cw - 0.5, ch - 0.5, -0.5))
    heat = None
    for k, (gray, m) in enumerate(zip(grays, maps)):
        h, w = gray.shape[:2]
        x0 = offset * k
        up = upsample_matchability(m, (w, h))
        heat = ax.imshow(
            up,
            cmap=cmap,
            vmin=0.0,
            vmax=1.0,
            alpha=alpha,
            interpolation="antialiased",
            extent=(x0 - 0.5, x0 + w - 0.5, h - 0.5, -0.5),
        )
        stats = f"mean {float(np.mean(m)):.2f}, max {float(np.max(m)):.2f}"
        ax.text(
            x0 + 4,
            4,
            f"{labels[k]}: {stats}",
            color="white",
            fontsize=7,
            va="top",
            ha="left",
            bbox={"facecolor": "black", "alpha": 0.5, "pad": 1.5, "linewidth": 0},
        )
    ax.set_xlim(-0.5, cw - 0.5)
    ax.set_ylim(ch - 0.5, -0.5)
    fw, fh = fig.get_size_inches() * DPI
    cax = fig.add_axes(((cw * scale + 12) / fw, 0.1 * ch * scale / fh, 12 / fw, 0.8 * ch * scale / fh))
    bar = fig.colorbar(heat, cax=cax)
    bar.solids.set_alpha(1.0)
    bar.ax.tick_params(labelsize=7)
    bar.set_label("matchability", fontsize=8)
    _title(fig, title or "matchability", fh, TITLE_PX)
    return _save(fig, path)


def _check_map(matchability: np.ndarray | None, name: str) -> np.ndarray:
    if matchability is None:
        raise ValueError(f"{name} is None: the matcher runs without reweighting and has no matchability map")
    return np.asarray(matchability, np.float32)


def plot_matchability(
    image: ImageInput,
    matchability: np.ndarray,
    path: str | Path,
    title: str | None = None,
    alpha: float = 0.5,
    cmap: str = "jet",
    min_size: int = 480,
    max_size: int = 1600,
) -> Path:
    """Save a PNG of `image` (shown in gray) under its coarse matchability map [h,w] (values in [0,1],
    the map of the resized network input as `Matcher` returns it), upsampled to the image size with
    `upsample_matchability` and drawn as a semi-transparent heat map, with a colour bar on the right
    (fixed [0,1] scale). Returns the path written."""
    return _plot_matchability_panels(
        [image], [_check_map(matchability, "matchability")], path, title, ["image"], alpha, cmap, min_size, max_size
    )


def plot_matchability_pair(
    image0: ImageInput,
    image1: ImageInput,
    matchability0: np.ndarray,
    matchability1: np.ndarray,
    path: str | Path,
    title: str | None = None,
    alpha: float = 0.5,
    cmap: str = "jet",
    min_size: int = 640,
    max_size: int = 2000,
) -> Path:
    """Like `plot_matchability` for both images of a pair, side by side as in `plot_matches`, with one
    shared colour bar. Returns the path written."""
    maps = [_check_map(matchability0, "matchability0"), _check_map(matchability1, "matchability1")]
    return _plot_matchability_panels(
        [image0, image1], maps, path, title, ["image 0", "image 1"], alpha, cmap, min_size, max_size
    )


def plot_reconstruction(
    reconstruction,
    path: str | Path,
    gt_centres: np.ndarray | None = None,
    title: str | None = None,
    max_points: int = 30000,
) -> Path:
    """Save a PNG of a `pycolmap.Reconstruction`: its 3D points in their colours (at most
    `max_points`, dropping those beyond the 98th percentile of distance to the median, which would
    squash the view) and each registered camera as a small frustum, seen obliquely and from the top.
    `gt_centres` [N,3]: ground-truth camera centres already in the model's frame (drawn as rings)."""
    points = np.array([p.xyz for p in reconstruction.points3D.values()]).reshape(-1, 3)
    colors = np.array([p.color for p in reconstruction.points3D.values()]).reshape(-1, 3) / 255.0
    if len(points):
        distance = np.linalg.norm(points - np.median(points, 0), axis=1)
        keep = distance <= np.percentile(distance, 98)
        points, colors = points[keep], colors[keep]
        pick = np.random.default_rng(0).permutation(len(points))[:max_points]
        points, colors = points[pick], colors[pick]
    centres, frusta = [], []
    extent = np.ptp(points, 0).max() if len(points) > 1 else 1.0
    for image_id in reconstruction.reg_image_ids():
        image = reconstruction.images[image_id]
        camera = reconstruction.cameras[image.camera_id]
        world_from_cam = image.cam_from_world().inverse().matrix()
        rays = np.c_[corner_rays(camera), np.ones(4)] * 0.04 * extent
        c = world_from_cam[:, 3]
        ends = rays @ world_from_cam[:, :3].T + c
        frusta += [[c, e] for e in ends] + [[ends[k], ends[(k + 1) % 4]] for k in range(4)]
        centres.append(c)
    fig = _new_figure(1400, 700)
    if title:
        fig.suptitle(title)
    for k, (elev, azim, name) in enumerate([(25, -60, "oblique"), (89, -90, "top")]):
        ax = fig.add_subplot(1, 2, k + 1, projection="3d")
        if len(points):
            ax.scatter(*points.T, c=colors, s=1.5, depthshade=False, linewidths=0)
        from mpl_toolkits.mplot3d.art3d import Line3DCollection

        ax.add_collection3d(Line3DCollection(frusta, colors="red", linewidths=0.8))
        if gt_centres is not None and len(gt_centres):
            ax.scatter(*np.asarray(gt_centres).T, s=30, facecolors="none", edgecolors="blue", label="ground truth")
            ax.legend(loc="upper right")
        box = np.concatenate([points, np.array(centres).reshape(-1, 3)])
        if len(box):
            middle, half = (box.max(0) + box.min(0)) / 2, np.ptp(box, 0).max() / 2 + 1e-9
            for setter, m in zip((ax.set_xlim, ax.set_ylim, ax.set_zlim), middle):
                setter(m - half, m + half)
        ax.view_init(elev=elev, azim=azim)
        ax.set_title(f"{name} view: {len(centres)} cameras, {reconstruction.num_points3D()} points")
        ax.set_axis_off()
    return _save(fig, path)
