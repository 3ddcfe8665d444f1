"""Whether the report of a large model stays usable: a synthetic pycolmap model (1M points seen by
1000 cameras by default), its report written by `sfm_reweight.report.main` (the pipelines' code
path), opened in headless Chromium (WebGL on SwiftShader, Chromium's CPU renderer, where there is no
GPU): seconds from navigation to the first frame drawn, and frames per second while the model turns
(the viewer's requestAnimationFrame loop), as the viewer draws it (a sample of the points while the
view moves, all once it stops) and with every point in every frame, for each bound on the points shown.

    python benchmarks/report_large_model.py [--points 1000000] [--cameras 1000] \\
        [--max_points 300000 1000000] [--output outputs/report-large]

The scene: points on a sphere (coloured by direction), the cameras on a ring around it looking at
its centre, each point observed by the 3 cameras nearest its azimuth (a track length of 3, keypoints
where the point projects). Needs Chromium and playwright (the tests' `helpers/browser.py`).
"""

import argparse
import shutil
import sys
import time
from pathlib import Path

import numpy as np
import pycolmap

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tests"))

from helpers.browser import report_page, unavailable  # noqa: E402

from sfm_reweight import report  # noqa: E402

TRACK_LENGTH = 3
IMAGE_SIZE = (1024, 768)
RING_RADIUS = 4.0  # the cameras' distance to the sphere's centre; the sphere's radius is 1
TURN_MS = 5000


def synthetic_model(num_points: int, num_cameras: int, seed: int = 0) -> pycolmap.Reconstruction:
    """Points [N,3] on the unit sphere and cameras on a ring of radius RING_RADIUS in the plane
    z = 0 looking at the origin (x right, y down: world -z), each point in the tracks of the
    TRACK_LENGTH cameras nearest its azimuth, observed where it projects."""
    rng = np.random.default_rng(seed)
    xyz = rng.normal(size=(num_points, 3))
    xyz /= np.linalg.norm(xyz, axis=1, keepdims=True)
    rgb = np.round(127.5 * (xyz + 1)).astype(np.uint8)
    model = pycolmap.Reconstruction()
    w, h = IMAGE_SIZE
    focal = 0.5 * h * (RING_RADIUS - 1) / 1.2  # the sphere fills about the image height
    model.add_camera_with_trivial_rig(
        pycolmap.Camera(model="PINHOLE", width=w, height=h, params=[focal, focal, w / 2, h / 2], camera_id=1)
    )
    azimuths = 2 * np.pi * np.arange(num_cameras) / num_cameras
    poses = []
    for azimuth in azimuths:
        centre = RING_RADIUS * np.array([np.cos(azimuth), np.sin(azimuth), 0.0])
        forward = -centre / RING_RADIUS
        down = np.array([0.0, 0.0, -1.0])
        R = np.stack([np.cross(down, forward), down, forward])  # rows: the camera's axes in the world
        poses.append(pycolmap.Rigid3d(pycolmap.Rotation3d(R), -R @ centre))
    nearest = np.round(np.arctan2(xyz[:, 1], xyz[:, 0]) / (2 * np.pi) * num_cameras).astype(np.int64)
    cameras = (nearest[:, None] + np.arange(TRACK_LENGTH) - TRACK_LENGTH // 2) % num_cameras  # [N,L]
    order = np.argsort(cameras.ravel(), kind="stable")  # observations grouped by camera
    counts = np.bincount(cameras.ravel(), minlength=num_cameras)
    keypoint_index = np.empty(cameras.size, np.int64)
    keypoint_index[order] = np.arange(cameras.size) - np.repeat(np.cumsum(counts) - counts, counts)
    camera = model.cameras[1]
    for c in range(num_cameras):
        seen = order[np.cumsum(counts)[c] - counts[c] : np.cumsum(counts)[c]] // TRACK_LENGTH
        pose = poses[c].matrix()
        keypoints = camera.img_from_cam(xyz[seen] @ pose[:, :3].T + pose[:, 3], check_cheirality=False)
        image = pycolmap.Image(name=f"cam{c:05d}.jpg", keypoints=np.asarray(keypoints), camera_id=1, image_id=c + 1)
        model.add_image_with_trivial_frame(image, poses[c])
    keypoint_index = keypoint_index.reshape(-1, TRACK_LENGTH)
    for j in range(num_points):
        track = pycolmap.Track()
        for c, k in zip(cameras[j], keypoint_index[j]):
            track.add_element(int(c) + 1, int(k))
        model.add_point3D(xyz[j], track, rgb[j])
    return model


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--points", type=int, default=1_000_000)
    parser.add_argument("--cameras", type=int, default=1000)
    parser.add_argument("--max_points", type=int, nargs="+", default=[report.MAX_POINTS, 1_000_000])
    parser.add_argument("--output", type=Path, default=Path("outputs/report-large"))
    args = parser.parse_args()
    if reason := unavailable():
        sys.exit(f"error: {reason}")
    shutil.rmtree(args.output, ignore_errors=True)
    (args.output / "sfm").mkdir(parents=True)
    start = time.perf_counter()
    model = synthetic_model(args.points, args.cameras)
    model.write(args.output / "sfm")
    print(
        f"model: {model.num_points3D()} points, {model.num_reg_images()} cameras, track length"
        f" {model.compute_mean_track_length():.1f}, built and written in {time.perf_counter() - start:.0f} s"
    )

    rows = []
    for max_points in args.max_points:
        start = time.perf_counter()
        path = report.main(args.output, max_points=max_points)
        written = time.perf_counter() - start
        with report_page(path, timeout_s=600) as (page, errors, load):
            timings = page.evaluate("window.reportTimings")
            turning = page.evaluate(f"window.reportViewer.measure({TURN_MS})")
            every_point = page.evaluate(f"window.reportViewer.measure({TURN_MS}, true)")
            drawn = page.evaluate("window.reportScene.points")
        if errors:
            sys.exit(f"error: JavaScript errors in {path}: {errors[:3]}")
        size = path.stat().st_size / 1e6
        rows.append((drawn, size, written, load, timings["decodeMs"] / 1000, turning["fps"], every_point["fps"]))

    print(f"\n{args.points} points, {args.cameras} cameras; 2-core CPU, headless Chromium with SwiftShader\n")
    print(
        "| points shown | report, MB | written, s | loaded (first frame), s | of which decoding, s"
        " | fps turning (as drawn) | fps turning, every point |"
    )
    print("|---:|---:|---:|---:|---:|---:|---:|")
    for drawn, size, written, load, decode, fps, every_point in rows:
        print(f"| {drawn} | {size:.0f} | {written:.1f} | {load:.1f} | {decode:.2f} | {fps:.1f} | {every_point:.1f} |")


if __name__ == "__main__":
    main()
