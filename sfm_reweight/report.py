"""An interactive report of a run in one HTML file that opens offline in any browser: the 3D model
(points in their colours, cameras as frusta with names, ground-truth cameras, localized queries)
drawn by a small WebGL viewer shipped with the package (report_assets/), the run's figures and its
pictures. Click a camera for its photo, its keypoints and its figures, a point for the photos that
see it.

    sfm-reweight report outputs/reconstruct                       # rebuild OUTPUT/report.html
    sfm-reweight report outputs/loc                               # a localization: the map and its queries
    sfm-reweight report hloc_outputs/sfm --image_dir photos/      # hloc's model folder, or the folder above it
    python -m sfm_reweight.report outputs/reconstruct

reconstruct and localize write OUTPUT/report.html at the end of every run through `main`. OUTPUT is
one of ours (summary.json, sfm/ or the localization's map, results.txt, the pictures) or any folder
holding a COLMAP model, in it or in its sfm/ (hloc's outputs): without summary.json the figures are
computed from the model. The keypoints are the model's own observations (a model's images file
holds every image's 2D points), so no features file is needed for the map; a localization's query
keypoints come from its queries-*.h5.

Photos come from `--image_dir`, else from the folder the summary records (a localization's
OUTPUT/images). Ground truth (`--ground_truth`: a folder of Strecha `<image name>.camera` files, or
a COLMAP model of the same photos), else the one the summary records: the model is then drawn in
ground-truth units, aligned by the similarity of the camera centres that the summary's errors use
(`evaluate_sfm.camera_centre_errors`), with the true cameras beside. Sizes: photos at long side
`photo_size` (JPEG quality 80), pictures at long side 1600; at most `max_points` points, beyond that
a fixed random subset (seed 0), and the keypoints drawn are those of the points shown. The points
are stored in a random order: while the view moves, the viewer draws only the first MOTION_POINTS
(report_assets/viewer.js), a uniform sample, so that large models turn smoothly even where WebGL
runs on the CPU.

The report takes no lock: it reads finished files (every output is written atomically) and writes
report.html atomically; a run in progress writes its own at its end.
"""

import base64
import html
import json
import logging
import re
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pycolmap

from . import cli, colmap
from .evaluate_sfm import camera_centre_errors
from .ground_truth import read_strecha_cameras
from .image_io import ImageReadError
from .io import read_keypoints
from .utils import atomic
from .utils.errors import InputError
from .utils.queries import read_queries, read_results
from .visualization import to_display_rgb

logger = logging.getLogger(__name__)

REPORT = "report.html"
MAX_POINTS = 300_000  # a 16 MB report at a track length of 3: loads in a second (docs/report.md)
PHOTO_SIZE = 480  # px, long side of the photos shown
PHOTO_QUALITY = 80
PICTURE_SIZE = 1600  # px, long side of the pipelines' pictures
PICTURE_QUALITY = 85
PICTURES = {  # the pipelines' pictures, in the order shown
    "matches.png": "verified matches of the pair with most of them",
    "matches_widest.png": "all matches of the pair seen from the most different directions (reference model)",
    "matchability.png": "matchability maps of the pair with most verified matches",
}
QUERY_PICTURES = "queries"  # localize: a picture of each localized query's inlier matches
LOCALIZATION_FILES = ("results.txt", "results.txt_logs.json", "queries_with_intrinsics.txt")  # localize's


@dataclass
class View:
    """A camera of the viewer: one of the model's registered images ("map") or a localized query
    ("query"). `cam_from_world`: its pose in the frame drawn; `uv`: [K,2] float, its keypoints that
    observe a 3D point, as fractions of the image's width and height (0 at the left/top edge);
    `point3D_ids`: [K] int64, those points; `figures`: (label, text) rows of the panel."""

    name: str
    kind: str
    cam_from_world: pycolmap.Rigid3d
    camera: pycolmap.Camera
    uv: np.ndarray
    point3D_ids: np.ndarray
    figures: list[tuple[str, str]]


def read_summary(output: Path) -> dict[str, Any]:
    """OUTPUT/summary.json, {} where there is none (hloc's folders)."""
    path = output / "summary.json"
    if not path.is_file():
        return {}
    try:
        return json.loads(path.read_text())
    except ValueError as err:  # JSONDecodeError and UnicodeDecodeError are ValueErrors
        raise InputError(f"{path}: not readable JSON ({err})") from None


def find_model(output: Path, summary: dict[str, Any]) -> Path:
    """The model folder of an output folder: the folder itself, its sfm/, or a localization's map
    (OUTPUT/map/sfm, or the --model it recorded)."""
    candidates = [output, output / "sfm", output / "map" / "sfm"]
    if "map" in summary:
        candidates.append(Path(summary["map"]))
    for folder in candidates:
        if colmap.is_model(folder):
            return folder
    raise InputError(
        f"{output}: no COLMAP model in it or in its sfm/ (cameras, images and points3D, .bin or .txt):"
        " give a reconstruction's output folder or a model folder"
    )


def reference_cameras(path: Path) -> dict[str, tuple[pycolmap.Rigid3d, pycolmap.Camera]]:
    """(cam_from_world, camera) by image name of the known cameras: a folder of Strecha `.camera`
    files, or a COLMAP model's registered images."""
    if colmap.is_model(path):
        model = pycolmap.Reconstruction(path)
        images = (model.images[i] for i in model.reg_image_ids())
        return {image.name: (image.cam_from_world(), model.cameras[image.camera_id]) for image in images}
    cameras = {}
    for name, (K, R, t, (w, h)) in read_strecha_cameras(path).items():
        pinhole = pycolmap.Camera(model="PINHOLE", width=w, height=h, params=[K[0, 0], K[1, 1], K[0, 2], K[1, 2]])
        cameras[name] = (pycolmap.Rigid3d(pycolmap.Rotation3d(R), t), pinhole)
    return cameras


def point_arrays(model: pycolmap.Reconstruction) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The model's points sorted by id: ids [N] int64, xyz [N,3] float64 (world frame), rgb [N,3] uint8."""
    points = sorted(model.points3D.items())
    ids = np.array([i for i, _ in points], np.int64)
    xyz = np.array([p.xyz for _, p in points], np.float64).reshape(-1, 3)
    rgb = np.array([p.color for _, p in points], np.uint8).reshape(-1, 3)
    return ids, xyz, rgb


def map_views(
    model: pycolmap.Reconstruction, ids: np.ndarray, xyz: np.ndarray, centre_errors: dict[str, float]
) -> list[View]:
    """The model's registered images by name, with their observations and figures; `ids`, `xyz`:
    every point of the model (`point_arrays`); `centre_errors`: camera-centre error by name
    (ground-truth units) where known."""
    weak = set(colmap.weakly_registered(model))
    views = []
    for image in sorted((model.images[i] for i in model.reg_image_ids()), key=lambda image: image.name):
        camera = model.cameras[image.camera_id]
        observations = image.get_observation_points2D()
        xy = np.array([p.xy for p in observations], np.float64).reshape(-1, 2)
        point3D_ids = np.array([p.point3D_id for p in observations], np.int64)
        projected, _ = colmap.project(image.cam_from_world(), camera, xyz[np.searchsorted(ids, point3D_ids)])
        errors = np.linalg.norm(projected - xy, axis=1)
        figures = [
            ("camera", f"{camera.model.name} {camera.width}x{camera.height}"),
            ("keypoints", str(image.num_points2D())),
            ("observations (keypoints with a 3D point)", str(len(xy))),
            ("mean reprojection error", f"{errors.mean():.2f} px" if len(errors) else "-"),
        ]
        if image.name in centre_errors:
            figures.append(("camera centre error vs ground truth", f"{centre_errors[image.name]:.4g}"))
        if image.name in weak:
            figures.append(("weakly registered", f"sees fewer than {colmap.MIN_POINTS_PER_IMAGE} points"))
        uv = xy / [camera.width, camera.height]
        views.append(View(image.name, "map", image.cam_from_world(), camera, uv, point3D_ids, figures))
    return views


def query_views(output: Path, summary: dict[str, Any], gt_from_model: pycolmap.Sim3d | None) -> list[View]:
    """The localized queries of a localization's OUTPUT (results.txt, its logs, the query list with
    intrinsics and the queries' features file), posed in the frame drawn (`gt_from_model` applied),
    with their inlier keypoints and figures."""
    poses = read_results(output / "results.txt")
    cameras = read_queries(output / "queries_with_intrinsics.txt")
    logs = json.loads((output / "results.txt_logs.json").read_text())["loc"]
    features = sorted(output.glob("queries-*.h5"))
    errors = summary.get("ground_truth", {}).get("errors", {})
    views = []
    for name, cam_from_world in sorted(poses.items()):
        log, camera = logs[name], cameras[name]
        correspondences = log["correspondences"]
        inliers = np.array(correspondences["inliers"], bool)
        xy, point3D_ids = np.zeros((0, 2)), np.zeros(0, np.int64)
        if features:
            keypoint_ids = np.array(correspondences["keypoint_ids"], np.int64)[inliers]
            xy = read_keypoints(features[0], name)[keypoint_ids] + 0.5  # COLMAP pixels: corner at 0
            point3D_ids = np.array(correspondences["point3D_ids"], np.int64)[inliers]
        figures = [
            ("camera", f"{camera.model.name} {camera.width}x{camera.height}"),
            ("intrinsics from", summary.get("intrinsics", {}).get(name, "-")),
            ("inliers", f"{log['num_inliers']} of {log['num_correspondences']} 2D-3D correspondences"),
            ("best database image", str(log["best_db"])),
        ]
        if name in errors and errors[name]["position"] is not None:
            error = f"{errors[name]['position']:.4g}, {errors[name]['rotation_deg']:.3f} deg"
            figures.append(("position, rotation error vs ground truth", error))
        if gt_from_model is not None:
            cam_from_world = gt_from_model.transform_camera_world(cam_from_world)
        uv = xy / [camera.width, camera.height]
        views.append(View(name, "query", cam_from_world, camera, uv, point3D_ids, figures))
    return views


def camera_json(cam_from_world: pycolmap.Rigid3d, camera: pycolmap.Camera, origin: np.ndarray) -> dict[str, Any]:
    """A frustum for the viewer: "R" world_from_cam rotation [9] (row-major: its columns are the
    camera's x right, y down, z forward in the world), "c" centre [3] relative to `origin`, "rays"
    [8] the corner rays at z = 1 (`colmap.corner_rays`), "size" (w, h)."""
    world_from_cam = cam_from_world.inverse()
    return {
        "R": rounded(world_from_cam.rotation.matrix().ravel()),
        "c": rounded(world_from_cam.translation - origin),
        "rays": rounded(colmap.corner_rays(camera).ravel()),
        "size": [camera.width, camera.height],
    }


def rounded(values: np.ndarray, digits: int = 6) -> list[float]:
    """Numbers to `digits` significant digits, for the page's JSON (shorter, and precise enough to draw)."""
    return [float(f"{v:.{digits}g}") for v in np.asarray(values, np.float64)]


def b64(array: np.ndarray, dtype: str) -> str:
    """An array as base64 of its little-endian bytes (`dtype` e.g. "<f4"), as the viewer's typed arrays read them."""
    return base64.b64encode(np.ascontiguousarray(array, dtype).tobytes()).decode("ascii")


def jpeg(path: Path, long_side: int, quality: int) -> str:
    """An image file as base64 JPEG, shrunk to `long_side` px (never enlarged)."""
    rgb = np.round(to_display_rgb(path) * 255).astype(np.uint8)
    h, w = rgb.shape[:2]
    if max(h, w) > long_side:
        size = (max(1, round(w * long_side / max(h, w))), max(1, round(h * long_side / max(h, w))))
        rgb = cv2.resize(rgb, size, interpolation=cv2.INTER_AREA)
    _, data = cv2.imencode(".jpg", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, quality])
    return base64.b64encode(data.tobytes()).decode("ascii")


def draw_order(count: int, max_points: int) -> np.ndarray:
    """Indices of the points shown in the order drawn: a fixed random permutation (seed 0) of all
    `count` points cut at `max_points`, so that every prefix is a uniform sample (the viewer draws
    one while the view moves)."""
    return np.random.default_rng(0).permutation(count)[:max_points]


def scene_json(
    views: list[View],
    truth: list[tuple[pycolmap.Rigid3d, pycolmap.Camera]],
    ids: np.ndarray,
    xyz: np.ndarray,
    rgb: np.ndarray,
    max_points: int,
) -> dict[str, Any]:
    """What the viewer draws from the model's points (`point_arrays`: ids [N] sorted, xyz [N,3], rgb
    [N,3]): the points shown, in `draw_order` ("xyz" float32 [M,3] relative to frame.origin, "rgb"
    uint8 [M,3]), the views and true cameras (`camera_json`), each view's observations of the points
    shown ("observations": per view, from offsets[v] to offsets[v + 1], the point's index in the
    order drawn (uint32) and its keypoint's uv (uint16, fractions of the image size times 65535)),
    and the frame: origin and radius of a sphere that holds the cameras and most points, the up
    direction (the cameras' mean up) and the direction the view starts from (behind the cameras)."""
    shown = draw_order(len(ids), max_points)
    drawn_at = np.full(len(ids), -1)  # a point's index in the order drawn, -1 where it is not shown
    drawn_at[shown] = np.arange(len(shown))
    xyz, rgb = xyz[shown], rgb[shown]
    centres = np.array([v.cam_from_world.inverse().translation for v in views]).reshape(-1, 3)
    core = centres  # what the first view holds: every camera and most points (not the stray ones)
    if len(xyz):
        distances = np.linalg.norm(xyz - np.median(xyz, 0), axis=1)
        core = np.concatenate([centres, xyz[distances <= np.percentile(distances, 95)]])
    origin = (core.min(0) + core.max(0)) / 2 if len(core) else np.zeros(3)
    radius = float(np.linalg.norm(core - origin, axis=1).max(initial=0.0)) or 1.0
    axes = np.array([v.cam_from_world.rotation.matrix() for v in views]).reshape(-1, 3, 3)
    up, back = (-axes[:, 1].mean(0), -axes[:, 2].mean(0)) if len(axes) else (np.array([0, -1, 0]), np.zeros(3))

    offsets, points, uvs = [0], [], []
    for view in views:  # every point a view observes is in the model: `ids` holds it
        index = drawn_at[np.searchsorted(ids, view.point3D_ids)]
        kept = index >= 0
        points.append(index[kept])
        uvs.append(np.clip(np.round(view.uv[kept] * 65535), 0, 65535))
        offsets.append(offsets[-1] + int(kept.sum()))
    return {
        "frame": {
            "origin": rounded(origin),
            "radius": radius,
            "up": rounded(up / (np.linalg.norm(up) or 1)),
            "back": rounded(back / (np.linalg.norm(back) or 1)),
        },
        "points": {"count": len(shown), "xyz": b64(xyz - origin, "<f4"), "rgb": b64(rgb, "u1")},
        "views": [
            {"name": v.name, "kind": v.kind, **camera_json(v.cam_from_world, v.camera, origin), "figures": v.figures}
            for v in views
        ],
        "truth": [camera_json(pose, camera, origin) for pose, camera in truth],
        "observations": {
            "offsets": b64(np.array(offsets), "<u4"),
            "point": b64(np.concatenate([np.zeros(0, np.int64), *points]), "<u4"),
            "uv": b64(np.concatenate([np.zeros((0, 2)), *uvs]), "<u2"),
        },
    }


def photos_json(views: list[View], image_dir: Path | None, photo_size: int) -> tuple[dict[str, str], list[str]]:
    """Base64 JPEG photos by view name, and notes on those that could not be shown."""
    if image_dir is None or not Path(image_dir).is_dir():
        where = f" ({image_dir} not found)" if image_dir is not None else ""
        return {}, [f"no photos{where}: rebuild with `sfm-reweight report OUTPUT --image_dir PHOTOS` to see them"]
    photos, failed = {}, []
    for view in views:
        try:
            photos[view.name] = jpeg(Path(image_dir) / view.name, photo_size, PHOTO_QUALITY)
        except (ImageReadError, ValueError) as err:
            failed.append(cli.one_line(err))
    return photos, [f"{len(failed)} photos not shown: {cli.short_list(failed, 3)}"] if failed else []


def pictures_json(output: Path) -> list[dict[str, str]]:
    """The pipeline's pictures found in OUTPUT, as base64 JPEG with a caption."""
    found = [(output / name, caption) for name, caption in PICTURES.items() if (output / name).is_file()]
    found += [
        (path, f"{path.name.removesuffix('.png')}: inlier matches against the database image with most inliers")
        for path in sorted((output / QUERY_PICTURES).glob("*.png"))
    ]
    return [
        {"name": path.name, "caption": caption, "jpeg": jpeg(path, PICTURE_SIZE, PICTURE_QUALITY)}
        for path, caption in found
    ]


def render(data: dict[str, Any]) -> str:
    """The report page: the template with the title, the viewer and the data (JSON, `<` escaped so
    that no text closes the script element) filled in, in one pass (no filled text is read again)."""
    assets = resources.files("sfm_reweight") / "report_assets"
    parts = {
        "TITLE": html.escape(data["title"]),
        "VIEWER": (assets / "viewer.js").read_text(encoding="utf-8"),
        "DATA": json.dumps(data, separators=(",", ":"), allow_nan=False).replace("<", "\\u003c"),
    }
    page = (assets / "report.html").read_text(encoding="utf-8")
    return re.sub(r"__(TITLE|VIEWER|DATA)__", lambda match: parts[match.group(1)], page)


def main(
    output: Path,
    image_dir: Path | None = None,
    ground_truth: Path | None = None,
    max_points: int = MAX_POINTS,
    photo_size: int = PHOTO_SIZE,
) -> Path:
    """Write OUTPUT/report.html for the run (or the COLMAP model) in OUTPUT and return its path.
    `image_dir`: the photos (default: the folder the summary records); `ground_truth`: a folder of
    Strecha `.camera` files or a COLMAP model folder (default: the one the summary records);
    `max_points`: the most points drawn; `photo_size`: the long side of the photos, px."""
    output = Path(output)
    for given, what in ((output, "output folder"), (image_dir, "photo folder"), (ground_truth, "ground truth")):
        if given is not None and not Path(given).exists():
            raise InputError(f"{given}: {what} not found")
    summary = read_summary(output)
    model_dir = find_model(output, summary)
    model = pycolmap.Reconstruction(model_dir)
    notes = []
    figures = summary or {
        "model": str(model_dir),
        "images": model.num_images(),
        **colmap.model_statistics(model),
        "weakly_registered": colmap.weakly_registered(model),
    }

    ground_truth = ground_truth or summary.get("ground_truth_cameras") or summary.get("reference_model")
    truth, centre_errors, gt_from_model = {}, {}, None
    if ground_truth is not None and not Path(ground_truth).exists():  # the run's, moved since
        notes.append(f"no ground truth: {ground_truth} not found (rebuild with --ground_truth)")
    elif ground_truth is not None:
        truth = reference_cameras(Path(ground_truth))
        centres = {name: pose.inverse().translation for name, (pose, _) in truth.items()}
        alignment, gt_from_model = camera_centre_errors(model, centres)
        centre_errors = alignment["errors"]
        figures.setdefault("camera_centres", alignment)
        if gt_from_model is None:
            notes.append(f"{ground_truth}: fewer than 3 registered images with ground truth: not aligned, not drawn")
            truth = {}
        else:
            model.transform(gt_from_model)  # the model in ground-truth units, beside the true cameras
            notes.append(f"drawn in ground-truth units, aligned to {ground_truth} by the Sim(3) of the camera centres")

    ids, xyz, rgb = point_arrays(model)
    views = map_views(model, ids, xyz, centre_errors)
    localization = all((output / name).is_file() for name in LOCALIZATION_FILES)
    if localization:
        views += query_views(output, summary, gt_from_model)
    if len(ids) > max_points:
        notes.append(f"{max_points} of the {len(ids)} points shown (a fixed random subset), with their keypoints")

    if image_dir is None:
        image_dir = summary.get("image_dir") or (output / "images" if (output / "images").is_dir() else None)
    photos, photo_notes = photos_json(views, image_dir, photo_size)
    scene = scene_json(views, list(truth.values()), ids, xyz, rgb, max_points)
    for view in scene["views"]:
        view["photo"] = photos.get(view["name"])
    headline = [colmap.describe(model, summary.get("images", model.num_images()))]
    if localization:
        headline.append(f"{summary.get('localized', '?')}/{summary.get('queries', '?')} queries localized")
    data = {
        "title": f"{output.resolve().name}: {'localization' if localization else 'reconstruction'} report",
        "headline": headline,
        "notes": notes + photo_notes,
        "scene": {
            "cameras": sum(v.kind == "map" for v in views),
            "queries": sum(v.kind == "query" for v in views),
            "truth": len(truth),
            "points": min(len(ids), max_points),
            "modelPoints": len(ids),
            "photos": len(photos),
        },
        **scene,
        "figures": atomic.json_ready(figures),
        "pictures": pictures_json(output),
    }
    path = atomic.write_text(output / REPORT, render(data))
    logger.info(
        "report: %s (%.1f MB): %d cameras, %d queries, %d of %d points",
        path,
        path.stat().st_size / 1e6,
        data["scene"]["cameras"],
        data["scene"]["queries"],
        data["scene"]["points"],
        len(ids),
    )
    return path


def command(argv: list[str] | None = None) -> None:
    help = {
        "output": "a run's output folder (reconstruct, localize) or a folder holding a COLMAP model, or its sfm/",
        "image_dir": "the photos (default: the folder the run's summary records)",
        "ground_truth": "Strecha .camera files or a COLMAP model of the same photos (default: the run's)",
        "max_points": "the most points drawn (a fixed random subset beyond)",
        "photo_size": "long side of the photos, px",
    }
    cli.command(main, __doc__, argv, help=help, positional=["output"])


if __name__ == "__main__":
    command()
