"""Miniature Aachen Day-Night v1.1 and InLoc datasets in the exact layouts that
datasets/aachen_v1.1/README.md and datasets/inloc/README.md describe, rendered from the demo
square (sfm_reweight/scenes/demo_scene.py) with known poses, so that the benchmark pipelines run
end to end and their poses can be checked. Queries are views where the square has texture (the
plastered house to the west has little, like a real blank wall).
"""

import tempfile
from collections.abc import Sequence
from pathlib import Path

import cv2
import numpy as np
import pycolmap
import scipy.io

from sfm_reweight.image_io import write_image_atomic
from sfm_reweight.scenes import demo_scene
from sfm_reweight.scenes.synthetic_scene import Camera, backproject, visible_in

NIGHT_EXPOSURE = 0.3
Pose = tuple[np.ndarray, np.ndarray]  # world -> camera (R [3,3], t [3])


def walk(count: int, picks: Sequence[int]) -> list[Camera]:
    """Cameras `picks` of a `count`-view tour round the fountain."""
    tour = demo_scene.tour_cameras(count, heading=20.0)  # walls at a slant: the views the queries were chosen in
    return [tour[k] for k in picks]


def write_photo(path: Path, rgb8: np.ndarray) -> None:
    write_image_atomic(path, rgb8, [cv2.IMWRITE_JPEG_QUALITY, 92])


def write_colmap_model(
    path: Path, names: list[str], cameras: list[Camera], depths: list[np.ndarray], stride: int = 12
) -> None:
    """A COLMAP binary model of the views (one SIMPLE_RADIAL camera each, exact poses) with the
    surface points that at least two views see (sampled every `stride` pixels of each view), as a
    reference SfM model is: its covisibility gives the database pairs."""
    observations: list[list[tuple[int, np.ndarray]]] = []
    points: list[np.ndarray] = []
    for i, (camera, depth) in enumerate(zip(cameras, depths)):
        world = backproject(camera, depth, stride)
        seen = [visible_in(other, d, world) for other, d in zip(cameras, depths)]
        for p in range(len(world)):
            track = [(j, uv[p]) for j, (uv, ok) in enumerate(seen) if ok[p]]
            if len(track) >= 2:
                points.append(world[p])
                observations.append(track)
    points2d: list[list[str]] = [[] for _ in names]
    tracks = []
    for pid, track in enumerate(observations, start=1):
        refs = []
        for j, uv in track:
            refs.append(f"{j + 1} {len(points2d[j])}")
            points2d[j].append(f"{uv[0]:.3f} {uv[1]:.3f} {pid}")
        tracks.append(refs)
    with tempfile.TemporaryDirectory() as folder:
        write_text_model(Path(folder), names, cameras, points, points2d, tracks)
        path.mkdir(parents=True, exist_ok=True)
        pycolmap.Reconstruction(folder).write(path)


def write_text_model(
    text: Path,
    names: list[str],
    cameras: list[Camera],
    points: list[np.ndarray],
    points2d: list[list[str]],
    tracks: list[list[str]],
) -> None:
    """COLMAP's text model files (cameras, images with their 2D points, points with their tracks)."""
    (text / "cameras.txt").write_text(
        "".join(
            f"{i + 1} SIMPLE_RADIAL {c.size[0]} {c.size[1]} {c.K[0, 0]} {c.K[0, 2]} {c.K[1, 2]} 0\n"
            for i, c in enumerate(cameras)
        )
    )
    lines = []
    for i, (name, c) in enumerate(zip(names, cameras)):
        qx, qy, qz, qw = pycolmap.Rotation3d(c.R).quat
        lines += [
            f"{i + 1} {qw} {qx} {qy} {qz} {c.t[0]} {c.t[1]} {c.t[2]} {i + 1} {name}\n",
            " ".join(points2d[i]) + "\n",
        ]
    (text / "images.txt").write_text("".join(lines))
    (text / "points3D.txt").write_text(
        "".join(
            f"{pid} {x} {y} {z} 128 128 128 0.5 {' '.join(refs)}\n"
            for pid, ((x, y, z), refs) in enumerate(zip(points, tracks), start=1)
        )
    )


def make_aachen(
    root: Path, num_db: int = 24, day: tuple[int, ...] = (1, 29, 41), night: tuple[int, ...] = (17, 37)
) -> dict[str, Pose]:
    """Aachen Day-Night v1.1's layout under `root`: db views every 360/num_db degrees of the tour,
    queries between them (views of a twice as dense tour; night ones darker and noisier), the
    reference model and the query lists with intrinsics. Returns the queries' true poses by name."""
    rects = demo_scene.scene()
    db_cameras = walk(num_db, range(num_db))
    db_names = [f"db/{k + 1:04d}.jpg" for k in range(num_db)]
    depths = []
    for k, (name, camera) in enumerate(zip(db_names, db_cameras)):
        rgb8, depth = demo_scene.photograph(rects, camera, (1, k))
        write_photo(root / "images_upright" / name, rgb8)
        depths.append(depth)
    write_colmap_model(root / "3D-models" / "aachen_v_1_1", db_names, db_cameras, depths)
    truth = {}
    for time, device, picks, exposure in (("day", "nexus4", day, 1.0), ("night", "nexus5x", night, NIGHT_EXPOSURE)):
        lines = []
        for k, camera in zip(picks, walk(2 * num_db, picks)):
            name = f"query/{time}/{device}/IMG_{time}_{k:03d}.jpg"
            rgb8, _ = demo_scene.photograph(rects, camera, (2, k), exposure)
            write_photo(root / "images_upright" / name, rgb8)
            w, h = camera.size
            lines.append(f"{name} SIMPLE_RADIAL {w} {h} {camera.K[0, 0]} {camera.K[0, 2]} {camera.K[1, 2]} 0.0\n")
            truth[name] = (camera.R, camera.t)
        (root / "queries").mkdir(parents=True, exist_ok=True)
        (root / "queries" / f"{time}_time_queries_with_intrinsics.txt").write_text("".join(lines))
    return truth


def rotation_z(degrees: float) -> np.ndarray:
    a = np.deg2rad(degrees)
    return np.array([[np.cos(a), -np.sin(a), 0], [np.sin(a), np.cos(a), 0], [0, 0, 1.0]])


def write_alignment(path: Path, world_from_scan: np.ndarray) -> None:
    """An InLoc alignment file: free text first, the 4x4 scan -> world transform on lines 8-11."""
    header = [
        "After general icp:",
        "",
        "Transformation matrix (scan to world):",
        "",
        "score: 0.0",
        "",
        "P_after_GICP =",
    ]
    rows = [" ".join(f"{v:.10f}" for v in row) for row in world_from_scan]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(header + rows) + "\n")


def make_inloc(root: Path, num_cutouts: int = 16, queries: tuple[int, ...] = (3, 13, 21)) -> dict[str, Pose]:
    """InLoc's layout under `root`: two scans (DUC1/024, DUC2/050), each with its own scan -> world
    alignment and half of the tour's views as cutouts with `XYZcut` (scan-frame points, NaN where
    there is no depth, plus a few NaN holes); queries between the cutouts rendered with InLoc's
    query camera convention (f = w * 28 / 36, principal point at the image centre). Returns the
    queries' true poses by name."""
    rects = demo_scene.scene()
    scans = {
        ("DUC1", "024"): (rotation_z(30), np.array([10.0, -4, 0.5])),
        ("DUC2", "050"): (rotation_z(-70), np.array([-3.0, 7, 0])),
    }
    holes = np.random.default_rng(0)
    for k, camera in enumerate(walk(num_cutouts, range(num_cutouts))):
        (floor, scan), (R, t) = list(scans.items())[k % 2]
        world_from_scan = np.eye(4)
        world_from_scan[:3, :3], world_from_scan[:3, 3] = R, t
        write_alignment(
            root / "database" / "alignments" / floor / "transformations" / f"DUC_trans_{scan}.txt", world_from_scan
        )
        rgb8, depth = demo_scene.photograph(rects, camera, (3, k))
        path = root / "database" / "cutouts" / floor / scan / f"DUC_cutout_{scan}_{30 * (k // 2) % 360}_0.jpg"
        write_photo(path, rgb8)
        h, w = depth.shape
        world = backproject(camera, np.where(depth > 0, depth, 1.0), stride=1).reshape(h, w, 3)
        xyz = (world - t) @ R  # R^T (X - t): world -> scan
        xyz[depth == 0] = np.nan
        for y, x in holes.integers(0, (h - 4, w - 4), (20, 2)):
            xyz[y : y + 3, x : x + 3] = np.nan
        scipy.io.savemat(str(path) + ".mat", {"XYZcut": xyz})
    truth = {}
    for k, camera in zip(queries, walk(2 * num_cutouts, queries)):
        K = camera.K.copy()
        K[0, 0] = K[1, 1] = camera.size[0] * 28 / 36
        camera = Camera(K, camera.R, camera.t, camera.size)
        name = f"query/iphone7/IMG_{k:04d}.JPG"
        write_photo(root / name, demo_scene.photograph(rects, camera, (4, k))[0])
        truth[name] = (camera.R, camera.t)
    return truth
