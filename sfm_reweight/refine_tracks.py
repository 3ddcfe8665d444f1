"""Multi-view track refinement on the original photos, after mapping: the observations of every
track of a model are moved onto one reference observation, to sub-pixel accuracy on the
full-resolution photos, and bundle adjustment runs again.

    python -m sfm_reweight.refine_tracks --sfm_dir sfm/ --image_dir images/ [--output sfm-refined/]

A semi-dense matcher places its points at its working resolution (one pixel at 1024 px is three
of a 3072-px photo), pair by pair, so the views of one track disagree by about a working pixel.
For every 3D point of the model (ours or hloc's, from any features):

1. its reference is its observation with the smallest reprojection error;
2. every other observation is moved onto it: a patch of the reference photo around the reference
   point is compared, by normalised cross-correlation, with the other photo warped by the local
   affine map that the neighbouring tracks define (the nearest tracks that both photos observe),
   over a window of integer shifts; the peak, refined by a parabola along each axis, is the new
   position. An observation whose peak is weak or at the window's edge, whose patch or window is
   flat, or whose two photos share too few tracks for a local map, keeps its position;
3. global bundle adjustment (pycolmap, with a Cauchy loss) moves the cameras and points to the
   refined observations;
4. track completion: in every registered photo that does not observe the point but where it
   projects, its reference patch is aligned around the projection as in 2, and the observation is
   added where the alignment holds within `complete_max_error` px of the projection; then 1-3
   again. The added views are dropped from the written model once they have served the bundle
   adjustment: its images keep their 2D points, the features file's keypoints index for index.

All observations of a track are aligned to the same patch, not to their pair partners one by one,
so its views agree with each other (Lindenberger et al., "Pixel-Perfect Structure-from-Motion",
ICCV 2021, refine keypoints of a track jointly for the same reason, on learned features; this
stage does it on the photos' own pixels). Tracks from the model rather than from the matches:
before mapping, tracks chained from verified matches carry wrong links that the mapper would
have dropped (docs/track_refinement.md measures both).
"""

import logging
import time
from pathlib import Path
from typing import Any

import numpy as np
import pycolmap
import torch
import torch.nn.functional as F
from PIL import Image, UnidentifiedImageError
from scipy.spatial import cKDTree
from tqdm import tqdm

from . import cli, colmap
from .image_io import GrayImages
from .utils.conf import resolve
from .utils.errors import InputError

logger = logging.getLogger(__name__)

PHOTO_CACHE = 16  # full-resolution gray photos kept in memory (25 MB each at 3072 x 2048)
MIN_STD = 2 / 255  # a patch or window whose intensities vary less than this (per pixel, std) is flat

confs = {
    "photometric": {
        "patch_radius": 7,  # reference patch of (2r+1)^2 pixels of the reference photo
        "search_radius": 6,  # integer shifts tried in each direction, in reference pixels
        "neighbours": 16,  # points that define an observation's local affine map
        "min_correlation": 0.7,  # weaker peaks leave the observation where it was
        "batch": 4096,  # observations per batch (memory: ~batch * (2r + 2s + 1)^2 floats)
        # bundle adjustment's loss (pycolmap.LossFunctionType) and its scale in px: observations that
        # could not be aligned keep the matcher's error, and a robust loss lets the aligned ones decide
        "loss": "cauchy",
        "loss_scale": 1.0,
        "refine_intrinsics": True,  # False keeps the cameras' intrinsics as the model has them
        # then, as COLMAP's mapper does after bundle adjustment, points are dropped that reproject
        # further than this (px) or are seen under a smaller angle (deg): badly conditioned points
        # that the robust loss let drift
        "filter_max_reproj_error": 4.0,
        "filter_min_tri_angle": 1.5,
        # track completion: the views that see a point but were not matched get an observation where
        # its reference patch aligns within this distance (px) of the point's projection (None: off)
        "complete_max_error": 1.0,
    }
}


def local_affines(src: np.ndarray, dst: np.ndarray, queries: np.ndarray, k: int) -> np.ndarray:
    """[Q,2,2] linear parts of the least-squares affine maps src -> dst ([C,2] correspondences)
    fitted on the k correspondences nearest to each query point [Q,2] (in src)."""
    k = min(k, len(src))
    _, near = cKDTree(src).query(queries, k=k)
    near = near.reshape(len(queries), k)
    s = src[near] - src[near].mean(1, keepdims=True)  # [Q,k,2], centred: the linear part alone
    d = dst[near] - dst[near].mean(1, keepdims=True)
    sts = np.einsum("qki,qkj->qij", s, s) + 1e-6 * np.eye(2)
    std = np.einsum("qki,qkj->qij", s, d)
    return np.linalg.solve(sts, std).transpose(0, 2, 1)  # dst = A src


def sample(image: torch.Tensor, points: torch.Tensor) -> torch.Tensor:
    """Bilinear samples of a [H,W] image at points [...,2] (x, y; pixel centres at integers);
    NaN outside the image."""
    h, w = image.shape
    grid = torch.stack([points[..., 0] / (w - 1), points[..., 1] / (h - 1)], -1) * 2 - 1
    values = F.grid_sample(image[None, None], grid.reshape(1, -1, 1, 2), align_corners=True)[0, 0, :, 0]
    inside = (grid.abs() <= 1).all(-1).reshape(-1)
    return torch.where(inside, values, torch.nan).reshape(points.shape[:-1])


def align_patches(
    ref_image: torch.Tensor,
    image: torch.Tensor,
    ref_points: np.ndarray,
    points: np.ndarray,
    affines: np.ndarray,
    patch_radius: int,
    search_radius: int,
) -> tuple[np.ndarray, np.ndarray]:
    """Move points [N,2] of `image` so that their patches match those of `ref_points` [N,2] in
    `ref_image`, under the linear maps affines [N,2,2] (reference offsets -> image offsets).

    Returns the aligned points [N,2] and the correlation [N] at the refined peak (NaN where a patch
    leaves a photo, the reference patch is flat or the peak lies on the search window's edge)."""
    r, s = patch_radius, search_radius
    n = len(points)
    offsets = torch.arange(-r, r + 1, dtype=torch.float32)
    grid = torch.stack(torch.meshgrid(offsets, offsets, indexing="xy"), -1)  # [P,P,2] (dx, dy)
    ref = sample(ref_image, torch.from_numpy(ref_points).float()[:, None, None] + grid)  # [N,P,P]
    wide = torch.arange(-r - s, r + s + 1, dtype=torch.float32)
    wide_grid = torch.stack(torch.meshgrid(wide, wide, indexing="xy"), -1)  # [W,W,2]
    a = torch.from_numpy(affines).float()
    warped_grid = torch.einsum("nij,hwj->nhwi", a, wide_grid)  # [N,W,W,2] offsets in `image`
    target = sample(image, torch.from_numpy(points).float()[:, None, None] + warped_grid)
    valid = ~(ref.isnan().flatten(1).any(1) | target.isnan().flatten(1).any(1))
    # in float64, each patch less its mean: a window's variance E[x^2] - E[x]^2 cancels badly in
    # float32 where the window is nearly flat (sky, plain walls) and gave correlations far above 1
    ref, target = ref.nan_to_num().double(), target.nan_to_num().double()
    ref = ref - ref.mean((1, 2), keepdim=True)
    target = target - target.mean((1, 2), keepdim=True)
    valid &= ref.flatten(1).std(1) >= MIN_STD  # a flat reference patch has no position to find

    # normalised cross-correlation of the reference patch with every window of the target
    p = (2 * r + 1) ** 2
    ref = ref / ref.flatten(1).norm(dim=1)[:, None, None].clamp_min(1e-12)
    dot = F.conv2d(target[None], ref[:, None], groups=n)[0]  # [N,2s+1,2s+1]
    mean = F.avg_pool2d(target[:, None], 2 * r + 1, stride=1)[:, 0]
    variance = (F.avg_pool2d(target[:, None] ** 2, 2 * r + 1, stride=1)[:, 0] - mean**2).clamp_min(0)
    # the reference is zero-mean, so the window's mean drops out of the dot product; flat windows score -1
    ncc = torch.where(variance.sqrt() >= MIN_STD, dot / (variance * p).sqrt().clamp_min(1e-12), -1.0)

    best = ncc.flatten(1).argmax(1)
    by, bx = best // (2 * s + 1), best % (2 * s + 1)
    inner = (bx > 0) & (bx < 2 * s) & (by > 0) & (by < 2 * s) & valid
    bxc, byc = bx.clamp(1, 2 * s - 1), by.clamp(1, 2 * s - 1)
    rows = torch.arange(n)
    c = ncc[rows, byc, bxc]
    # sub-pixel peak: a parabola through the peak and its two neighbours along each axis
    left, right = ncc[rows, byc, bxc - 1], ncc[rows, byc, bxc + 1]
    up, down = ncc[rows, byc - 1, bxc], ncc[rows, byc + 1, bxc]
    fx = 0.5 * (left - right) / (left - 2 * c + right).clamp_max(-1e-6)
    fy = 0.5 * (up - down) / (up - 2 * c + down).clamp_max(-1e-6)
    shift = torch.stack([bxc - s + fx.clamp(-0.5, 0.5), byc - s + fy.clamp(-0.5, 0.5)], -1)  # reference pixels
    moved = points + torch.einsum("nij,nj->ni", a, shift.float()).numpy()
    return moved, torch.where(inner, c, torch.nan).float().numpy()


def align_pair(
    conf: dict[str, Any],
    image0: torch.Tensor,
    image1: torch.Tensor,
    points0: np.ndarray,
    points1: np.ndarray,
    anchors: tuple[np.ndarray, np.ndarray] | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Move the points [M,2] of image1 onto the patches of their correspondents points0 [M,2] in
    image0 (float [H,W] images; pixel centres at integers), each under the local affine map of its
    `neighbours` nearest correspondences: anchors ([C,2] in image0, [C,2] in image1), by default
    the points themselves. Returns the points [M,2] (unmoved where the alignment failed, or all
    with fewer anchors than `neighbours`) and [M] bool, those moved."""
    out, moved = np.array(points1, np.float64), np.zeros(len(points1), bool)
    src, dst = (points0, points1) if anchors is None else anchors
    if len(src) < conf["neighbours"]:
        return out, moved
    affines = local_affines(src, dst, points0, conf["neighbours"])
    for b in range(0, len(points0), conf["batch"]):
        chunk = slice(b, b + conf["batch"])
        aligned, score = align_patches(
            image0,
            image1,
            points0[chunk].astype(np.float32),
            points1[chunk].astype(np.float32),
            affines[chunk].astype(np.float32),
            conf["patch_radius"],
            conf["search_radius"],
        )
        ok = score >= conf["min_correlation"]
        out[chunk][ok], moved[chunk] = aligned[ok], ok
    return out, moved


class Tracks:
    """The observations of every 3D point of a model, flat: points [K,2] (pixel centres at integers),
    image_of [K] (index into `image_ids` and `names`, the registered images), track [K] (3D point
    id), rows [K] (image id, point2D index) in the model, ref_of [K] (the index of its track's
    reference: the observation with the smallest reprojection error)."""

    def __init__(self, model: pycolmap.Reconstruction):
        self.image_ids = sorted(model.reg_image_ids())
        self.names = [model.images[i].name for i in self.image_ids]
        index = {image_id: k for k, image_id in enumerate(self.image_ids)}
        rows, points, image_of, track, errors = [], [], [], [], []
        for point_id, point in model.points3D.items():
            for element in point.track.elements:
                image = model.images[element.image_id]
                xy = image.points2D[element.point2D_idx].xy
                rows.append((element.image_id, element.point2D_idx))
                points.append(xy - 0.5)  # COLMAP's origin is the first pixel's corner, ours its centre
                image_of.append(index[element.image_id])
                track.append(point_id)
                projected = image.project_point(point.xyz)
                errors.append(np.inf if projected is None else np.linalg.norm(projected - xy))
        self.rows = rows
        self.points = np.array(points, np.float64).reshape(-1, 2)
        self.image_of, self.track = np.array(image_of, np.int64), np.array(track, np.int64)
        order = np.lexsort((np.array(errors), self.track))  # by track, the smallest error first
        first = np.r_[True, self.track[order[1:]] != self.track[order[:-1]]]
        self.ref_of = np.empty(len(order), np.int64)
        self.ref_of[order] = order[np.maximum.accumulate(np.where(first, np.arange(len(order)), 0))]
        self.in_image = [np.flatnonzero(self.image_of == k) for k in range(len(self.names))]

    def shared(self, a: int, b: int) -> tuple[np.ndarray, np.ndarray]:
        """The observations [S,2] in photos a and b (indices into `names`) of the tracks seen in both."""
        in_a, in_b = self.in_image[a], self.in_image[b]
        _, ia, ib = np.intersect1d(self.track[in_a], self.track[in_b], return_indices=True)
        return self.points[in_a[ia]], self.points[in_b[ib]]


def align_observations(
    conf: dict[str, Any],
    photos: GrayImages,
    tracks: Tracks,
    points: np.ndarray,
    image_of: np.ndarray,
    ref_of: np.ndarray,
) -> np.ndarray:
    """Move every observation onto its track's reference. points [K,2] (pixel centres at integers,
    original resolution), image_of [K] their photo (index into `tracks.names`), ref_of [K] the index
    of their reference (itself for references). The local affine maps come from the tracks that the
    two photos share; two photos that share fewer than `neighbours` are not read. Returns [K] bool:
    the observations moved (points is updated in place)."""
    aligned = np.zeros(len(points), bool)
    todo = np.flatnonzero(ref_of != np.arange(len(points)))
    if not len(todo):
        return aligned  # no track with two observations (a model without points)
    group_key = image_of[ref_of[todo]] * len(tracks.names) + image_of[todo]
    order = np.argsort(group_key, kind="stable")
    todo, group_key = todo[order], group_key[order]
    starts = np.flatnonzero(np.r_[True, group_key[1:] != group_key[:-1]])
    ends = np.r_[starts[1:], len(todo)]
    # by reference photo, then photo: a reference photo stays cached over its partners, which the
    # cache keeps for the next reference photo as far as it holds them
    progress = tqdm(total=len(todo), desc="refine_tracks", unit="obs", disable=None)
    for start, end in zip(starts, ends):  # one (reference photo, photo) pair at a time
        group = todo[start:end]
        i_ref, i = int(image_of[ref_of[group[0]]]), int(image_of[group[0]])
        progress.update(len(group))
        anchors = tracks.shared(i_ref, i)
        if len(anchors[0]) < conf["neighbours"]:
            continue  # no local maps: completion proposes views of photos that share no tracks
        ref_photo, photo = photos(tracks.names[i_ref]), photos(tracks.names[i])
        if ref_photo is None or photo is None:
            continue  # unreadable: reported by GrayImages, its observations stay as they are
        points[group], aligned[group] = align_pair(
            conf, torch.from_numpy(ref_photo), torch.from_numpy(photo), points[ref_of[group]], points[group], anchors
        )
    progress.close()
    return aligned


def align_tracks(conf: dict[str, Any], photos: GrayImages, model: pycolmap.Reconstruction) -> dict[str, Any]:
    """Align the observations of every track of `model` to its reference, bundle-adjust and filter,
    in place. Returns "observations", "moved", "median_shift_px" and "filtered" (observations
    dropped with their points after bundle adjustment)."""
    tracks = Tracks(model)
    points = tracks.points.copy()
    moved = align_observations(conf, photos, tracks, points, tracks.image_of, tracks.ref_of)
    for (image_id, idx), xy in zip(tracks.rows, points + 0.5):
        model.images[image_id].points2D[idx].xy = xy
    filtered = adjust(conf, model)
    shifts = np.linalg.norm(points - tracks.points, axis=1)[moved]
    return {
        "observations": len(points),
        "moved": int(moved.sum()),
        "median_shift_px": float(np.median(shifts)) if len(shifts) else 0.0,
        "filtered": filtered,
    }


def complete_tracks(conf: dict[str, Any], photos: GrayImages, model: pycolmap.Reconstruction) -> int:
    """Add to every track the views that see its point but were not matched: in each registered
    image where the 3D point projects inside the photo, its reference patch is aligned around the
    projection (as align_observations does) and the observation is added where the alignment holds
    and lands within `complete_max_error` px of the projection, in place. Returns how many were added.

    A semi-dense matcher picks a new point in each coarse cell of image 0 for every pair, so one
    physical point ends as several short tracks; completing each of them from the model's own
    geometry gives every camera the constraints of all the views that see the point."""
    tracks = Tracks(model)
    references = np.flatnonzero(tracks.ref_of == np.arange(len(tracks.ref_of)))
    point_ids = tracks.track[references]
    xyz = np.array([model.points3D[p].xyz for p in point_ids]).reshape(-1, 3)
    margin = conf["patch_radius"]
    candidates, projections, photos_of = [], [], []  # per photo: reference indices, projections [C,2], photo
    for k, image_id in enumerate(tracks.image_ids):
        image = model.images[image_id]
        camera = model.cameras[image.camera_id]
        xy, depth = colmap.project(image.cam_from_world(), camera, xyz)
        xy = xy - 0.5  # pixel centres at integers
        bounds = [camera.width - 1 - margin, camera.height - 1 - margin]
        inside = (depth > 0) & (xy >= margin).all(1) & (xy < bounds).all(1)
        unseen = ~np.isin(point_ids, tracks.track[tracks.in_image[k]])
        new = np.flatnonzero(inside & unseen)
        candidates.append(new)
        projections.append(xy[new])
        photos_of.append(np.full(len(new), k))
    candidates, projected = np.concatenate(candidates), np.concatenate(projections)
    if not len(candidates):
        return 0
    # the references first, then the candidates, each pointing at its reference
    points = np.concatenate([tracks.points[references], projected])
    image_of = np.concatenate([tracks.image_of[references], *photos_of])
    ref_of = np.r_[np.arange(len(references)), candidates]
    start = points.copy()
    moved = align_observations(conf, photos, tracks, points, image_of, ref_of)
    added = np.flatnonzero(moved & (np.linalg.norm(points - start, axis=1) <= conf["complete_max_error"]))
    for j in added:
        image = model.images[tracks.image_ids[image_of[j]]]
        image.points2D.append(pycolmap.Point2D(xy=points[j] + 0.5))
        element = pycolmap.TrackElement(image.image_id, len(image.points2D) - 1)
        model.add_observation(int(point_ids[ref_of[j]]), element)
    return len(added)


def adjust(conf: dict[str, Any], model: pycolmap.Reconstruction) -> int:
    """Global bundle adjustment with the conf's robust loss, then COLMAP's filter of badly
    reprojected or badly conditioned points, in place. Returns the observations filtered out."""
    options = pycolmap.BundleAdjustmentOptions()
    options.print_summary = False  # the stage logs its own summary
    options.ceres.loss_function_type = getattr(pycolmap.LossFunctionType, conf["loss"].upper())
    options.ceres.loss_function_scale = conf["loss_scale"]
    for what in colmap.INTRINSICS:
        setattr(options, f"refine_{what}", conf["refine_intrinsics"] and getattr(options, f"refine_{what}"))
    pycolmap.bundle_adjustment(model, options)
    return filter_points(conf, model)


def filter_points(conf: dict[str, Any], model: pycolmap.Reconstruction) -> int:
    """COLMAP's filter of observations reprojecting further than the conf's limit and of points seen
    under too small an angle, in place. Returns the observations removed."""
    return pycolmap.ObservationManager(model).filter_all_points3D(
        conf["filter_max_reproj_error"], conf["filter_min_tri_angle"]
    )


def drop_added_points(model: pycolmap.Reconstruction, counts: dict[int, int]) -> None:
    """Remove from each image the 2D points after its first counts[image_id], with their
    observations (a point left with one view goes too), in place."""
    for image_id, count in counts.items():
        image = model.images[image_id]
        for idx in range(count, image.num_points2D()):
            if image.points2D[idx].has_point3D():
                model.delete_observation(image_id, idx)
        del image.points2D[count:]


def refine_pass(
    conf: dict[str, Any],
    photos: GrayImages,
    model: pycolmap.Reconstruction,
    counts: dict[int, int],
    complete: bool,
) -> tuple[pycolmap.Reconstruction | None, dict[str, Any], int]:
    """One pass on a copy of `model`: with `complete`, its tracks completed first; then align_tracks;
    then the 2D points after each image's first counts[image_id] dropped, the points' errors updated
    and the points filtered again (a point may have needed an added view for its angle). Returns
    (the copy, align_tracks' figures, the views added); the copy is None when completion added none."""
    trial = pycolmap.Reconstruction(model)
    added = complete_tracks(conf, photos, trial) if complete else 0
    if complete and not added:
        return None, {}, 0
    changes = align_tracks(conf, photos, trial)
    drop_added_points(trial, counts)
    trial.update_point_3d_errors()
    changes["filtered"] += filter_points(conf, trial)
    return trial, changes, added


def refine_model(
    conf: dict[str, Any], image_dir: Path, model: pycolmap.Reconstruction
) -> tuple[pycolmap.Reconstruction, dict[str, Any]]:
    """Align the observations of every track of `model` to its reference and bundle-adjust; then,
    with the conf's "complete_max_error", complete the tracks and align and adjust again.

    The completed views constrain the bundle adjustment and are then dropped: each image keeps the
    2D points it had, the features file's keypoints index for index, as hloc's localization and
    triangulation read them. Each pass (refine_pass) is kept only if it leaves at least half of the
    points: a failed solve leaves points that the filter drops. Returns the refined model and what
    changed: align_tracks' figures of the last pass kept, "completed" (views added to tracks while
    refining), "passes_failed", and the mean reprojection error before and after
    ("reprojection_error_px")."""
    model.update_point_3d_errors()  # a model written by another tool may not hold them
    before = model.compute_mean_reprojection_error()
    check_photos(image_dir, model, sorted(model.reg_image_ids()))
    photos = GrayImages(image_dir, "refine_tracks", cache=PHOTO_CACHE)
    counts = {image_id: model.images[image_id].num_points2D() for image_id in model.reg_image_ids()}
    changes = {"observations": 0, "moved": 0, "median_shift_px": 0.0, "filtered": 0}
    completed = failed = 0
    for complete in (False, True) if conf["complete_max_error"] is not None else (False,):
        trial, trial_changes, added = refine_pass(conf, photos, model, counts, complete)
        if trial is None:
            break
        if trial.num_points3D() < 0.5 * model.num_points3D():
            logger.warning(
                "refine_tracks: bundle adjustment failed in the %s pass (%d of %d points left); that pass is undone",
                "completed tracks'" if complete else "first",
                trial.num_points3D(),
                model.num_points3D(),
            )
            failed += 1
            break
        model, changes, completed = trial, trial_changes, completed + added
    return model, {
        **changes,
        "completed": completed,
        "passes_failed": failed,
        "reprojection_error_px": [before, model.compute_mean_reprojection_error()],
    }


def check_photos(image_dir: Path, model: pycolmap.Reconstruction, image_ids: list[int]) -> None:
    """The photos of the model's images exist under `image_dir`, at the size of their cameras (a
    model of resized photos has its points in other pixels); InputError naming the first that is not."""
    for image_id in image_ids:
        image = model.images[image_id]
        camera = model.cameras[image.camera_id]
        path = image_dir / image.name
        if not path.is_file():
            raise InputError(f"{path}: photo of the model's image {image.name} not found")
        try:
            with Image.open(path) as photo:
                size = photo.size
        except (UnidentifiedImageError, OSError) as err:
            raise InputError(f"{path}: not a readable photo ({err})") from None
        if size != (camera.width, camera.height):
            raise InputError(
                f"{path}: {size[0]}x{size[1]} px, but the model's camera of this photo is"
                f" {camera.width}x{camera.height}; give the photos the model was made from"
            )


def main(conf: str | dict, sfm_dir: Path, image_dir: Path, output: Path | None = None) -> pycolmap.Reconstruction:
    """Refine the tracks of the COLMAP model in `sfm_dir` (ours or hloc's; its photos under
    `image_dir`) and write the model into `output` (default: `sfm_dir`, each file replaced once
    complete). Returns the refined model."""
    conf = resolve(confs, conf, "photometric")
    sfm_dir = Path(sfm_dir)
    if not colmap.is_model(sfm_dir):
        raise InputError(f"{sfm_dir}: no COLMAP model (images.bin or images.txt) in this folder")
    start = time.time()
    model = pycolmap.Reconstruction(sfm_dir)
    with colmap.colmap_logging(False):
        model, changes = refine_model(conf, Path(image_dir), model)
    output = Path(output) if output else sfm_dir
    output.mkdir(parents=True, exist_ok=True)
    colmap.write_model(model, output)
    logger.info(
        "refine_tracks: %d views added to tracks while refining; last pass: %d of %d observations moved"
        " (median %.2f px), %d dropped by the filter; reprojection error %.3f -> %.3f px; model written to %s; %.1f s.",
        changes["completed"],
        changes["moved"],
        changes["observations"],
        changes["median_shift_px"],
        changes["filtered"],
        *changes["reprojection_error_px"],
        output,
        time.time() - start,
    )
    return model


def command(argv: list[str] | None = None) -> None:
    cli.command(main, __doc__, argv, confs, "photometric")


if __name__ == "__main__":
    command()
