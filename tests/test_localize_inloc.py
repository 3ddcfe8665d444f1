"""localize_inloc on a miniature InLoc layout: three cutouts of two scans whose XYZcut maps are
planar patches (affine in the pixel coordinates, so bilinear interpolation is exact) with holes of
NaN, scan-to-world alignments in the dataset's text format, and query keypoints that are the
projections of the lifted cutout keypoints; plus the lifting rule itself, numerically."""

import json

import h5py
import numpy as np
import pycolmap
import pytest
import scipy.io

from sfm_reweight import localize_inloc
from sfm_reweight.evaluate_localization import pose_error
from sfm_reweight.image_io import write_image_atomic
from sfm_reweight.io import write_features, write_matches
from sfm_reweight.keypoint_aggregation import to_matches0
from sfm_reweight.localize_inloc import lift_keypoints, query_camera, read_alignment
from sfm_reweight.utils.errors import InputError
from sfm_reweight.utils.pairs import write_pairs
from sfm_reweight.utils.queries import read_results

W, H = 80, 60  # cutouts
QW, QH = 400, 300  # queries
CUTOUTS = {  # name -> (world origin of pixel (0, 0), world step per pixel in x, in y)
    "database/cutouts/DUC1/024/DUC_cutout_024_0_0.jpg": ([-1.5, -0.8, 4.0], [0.025, 0, 0.004], [0, 0.025, 0]),
    "database/cutouts/DUC1/024/DUC_cutout_024_30_0.jpg": ([0.2, -0.6, 5.0], [0.02, 0, -0.01], [0, 0.02, 0.003]),
    "database/cutouts/DUC2/030/DUC_cutout_030_0_0.jpg": ([-0.5, 0.3, 3.5], [0.02, 0.002, 0.006], [0, 0.015, -0.004]),
}
QUERIES = ("query/iphone7/IMG_0001.JPG", "query/iphone7/IMG_0002.JPG", "query/iphone7/IMG_0003.JPG")


def rigid(rotvec, translation) -> np.ndarray:
    """[4,4] from an axis-angle (radians) and a translation."""
    angle = np.linalg.norm(rotvec)
    k = np.asarray(rotvec) / angle
    K = np.array([[0, -k[2], k[1]], [k[2], 0, -k[0]], [-k[1], k[0], 0]])
    T = np.eye(4)
    T[:3, :3] = np.eye(3) + np.sin(angle) * K + (1 - np.cos(angle)) * K @ K
    T[:3, 3] = translation
    return T


SCANS = {"DUC1/024": rigid([0.1, -0.4, 0.2], [10.0, -3.0, 1.5]), "DUC2/030": rigid([-0.3, 0.2, 1.0], [-4.0, 2.0, 0.5])}


def world_points(name: str, xy: np.ndarray) -> np.ndarray:
    origin, step_x, step_y = (np.asarray(v, np.float64) for v in CUTOUTS[name])
    return origin + xy[:, :1] * step_x + xy[:, 1:] * step_y


def write_alignment(path, world_from_scan: np.ndarray) -> None:
    rows = lambda T: "\n".join(" ".join(f"{v:.17g}" for v in row) for row in T)  # noqa: E731
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(f"Original transformation\n{rows(np.eye(4))}\n\nAfter general icp:\n{rows(world_from_scan)}\n")


def expected_lift(name: str, nan_mask: np.ndarray, xy: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The rule of lift_keypoints written out for an affine map: exact where no NaN pixel has weight,
    else the nearest pixel's point; invalid where that is NaN. Returns points, valid, nearest used."""
    x0, y0 = np.floor(xy[:, 0]).astype(int), np.floor(xy[:, 1]).astype(int)
    fx, fy = xy[:, 0] - x0, xy[:, 1] - y0
    hit = np.zeros(len(xy), bool)
    for dx, dy, weight in ((0, 0, (1 - fx) * (1 - fy)), (1, 0, fx * (1 - fy)), (0, 1, (1 - fx) * fy), (1, 1, fx * fy)):
        hit |= (weight > 0) & nan_mask[np.minimum(y0 + dy, H - 1), np.minimum(x0 + dx, W - 1)]
    nearest = np.floor(xy + 0.5).astype(int)
    points = np.where(hit[:, None], world_points(name, nearest.astype(float)), world_points(name, xy))
    return points, ~(hit & nan_mask[nearest[:, 1], nearest[:, 0]]), hit


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> dict:
    root = tmp_path_factory.mktemp("inloc")
    rng = np.random.default_rng(0)
    for scan, T in SCANS.items():
        floor, number = scan.split("/")
        write_alignment(root / "database" / "alignments" / floor / "transformations" / f"DUC_trans_{number}.txt", T)
    nan_masks = {}
    grid = np.stack(np.meshgrid(np.arange(W), np.arange(H)), -1).reshape(-1, 2).astype(float)
    for name in CUTOUTS:
        scan = "/".join(name.split("/")[2:4])
        world = world_points(name, grid).reshape(H, W, 3)
        scan_from_world = np.linalg.inv(SCANS[scan])
        xyz = world @ scan_from_world[:3, :3].T + scan_from_world[:3, 3]
        mask = np.zeros((H, W), bool)
        mask[20:26, 30:40] = True  # a hole without depth
        mask[rng.integers(0, H, 40), rng.integers(0, W, 40)] = True
        xyz[mask] = np.nan
        nan_masks[name] = mask
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        scipy.io.savemat(root / f"{name}.mat", {"XYZcut": xyz})

    truth = {
        QUERIES[0]: rigid([0.05, 0.1, -0.02], [0.3, -0.1, 0.2]),
        QUERIES[1]: rigid([-0.08, -0.05, 0.03], [-0.2, 0.1, -0.3]),
    }
    camera = query_camera(QW, QH, 28.0)
    # float32 values, as the features file stores them, so that the expected lifting is exact
    cutout_kps = {
        name: rng.uniform(0, [W - 1, H - 1], (250, 2)).astype(np.float32).astype(np.float64) for name in CUTOUTS
    }
    true_match, fallback = (
        {},
        {},
    )  # per query: (cutout index, cutout keypoint) and nearest-pixel lifting of each keypoint
    with h5py.File(root / "features.h5", "w") as f:
        for name, kps in cutout_kps.items():
            write_features(f, name, kps, np.ones(len(kps)), (W, H))
        matches = {}
        for query, T in truth.items():
            query_kps, pairs, true_match[query], fallback[query] = [], {}, [], []
            for i, (name, kps) in enumerate(cutout_kps.items()):
                points, valid, hit = expected_lift(name, nan_masks[name], kps)
                cam = points @ T[:3, :3].T + T[:3, 3]
                projected = camera.img_from_cam(cam) - 0.5  # COLMAP convention -> ours
                idx = np.flatnonzero(valid)
                start = sum(map(len, query_kps))
                m = np.stack([start + np.arange(len(idx)), idx], -1)
                wrong = rng.random(len(m)) < 0.1
                m[wrong, 1] = rng.integers(0, len(kps), wrong.sum())
                query_kps.append(projected[idx])
                pairs[name] = m
                true_match[query] += [(i, j) for j in idx]
                fallback[query] += hit[idx].tolist()
            kps = np.concatenate(query_kps)
            if query == QUERIES[1]:  # no image_size stored: read from the image file
                f.create_group(query).create_dataset("keypoints", data=kps.astype(np.float32))
                (root / query).parent.mkdir(parents=True, exist_ok=True)
                write_image_atomic(root / query, np.zeros((QH, QW), np.uint8))
            else:
                write_features(f, query, kps, np.ones(len(kps)), (QW, QH))
            matches[query] = {n: to_matches0(m, np.ones(len(m)), len(kps)) for n, m in pairs.items()}
        write_features(f, QUERIES[2], rng.uniform(0, 300, (50, 2)), np.ones(50), (QW, QH))
        matches[QUERIES[2]] = {
            n: to_matches0(np.stack([np.arange(5), np.arange(5)], -1), np.ones(5), 50) for n in CUTOUTS
        }
    with h5py.File(root / "matches.h5", "w") as f:
        for query, per_cutout in matches.items():
            for name, (m0, s0) in per_cutout.items():
                write_matches(f, query, name, m0, s0)
    write_pairs(root / "pairs.txt", [(q, n) for q in QUERIES for n in CUTOUTS])
    return {"root": root, "truth": truth, "true_match": true_match, "fallback": fallback}


def test_lift_keypoints():
    xyz = np.stack(np.meshgrid(np.arange(4.0), np.arange(3.0)), -1)  # x, y
    xyz = np.concatenate([xyz, xyz[..., :1] * 2 + xyz[..., 1:] * 3 + 1], -1)  # [3,4,3], affine
    xyz[1, 2] = np.nan
    xyz[2, 3] = np.nan
    keypoints = np.array(
        [
            [0.3, 0.6],  # interior, no NaN around: bilinear, exact for an affine map
            [1.0, 1.0],  # on a pixel centre beside the NaN pixel: that pixel
            [1.6, 1.2],  # the NaN pixel (2, 1) has weight: nearest pixel (2, 1) is NaN -> invalid
            [1.4, 0.7],  # (2, 1) has weight, nearest (1, 1) -> its point
            [-0.4, 2.3],  # within half a pixel of the border: the border pixels
            [-0.6, 1.0],  # outside the image
            [3.0, 0.0],  # the last column
        ]
    )
    points, valid = lift_keypoints(xyz, keypoints)
    np.testing.assert_array_equal(valid, [True, True, False, True, True, False, True])
    affine = lambda x, y: [x, y, 2 * x + 3 * y + 1]  # noqa: E731
    np.testing.assert_allclose(points[0], affine(0.3, 0.6))
    np.testing.assert_allclose(points[1], affine(1, 1))
    np.testing.assert_allclose(points[3], affine(1, 1))
    np.testing.assert_allclose(points[4], affine(0, 2))  # clamped to x = 0; y 2.3 clamped to the last row
    np.testing.assert_allclose(points[6], affine(3, 0))


def test_read_alignment(tmp_path):
    T = SCANS["DUC1/024"]
    write_alignment(tmp_path / "DUC_trans_024.txt", T)
    np.testing.assert_allclose(read_alignment(tmp_path / "DUC_trans_024.txt"), T, rtol=0, atol=1e-15)
    lines = (tmp_path / "DUC_trans_024.txt").read_text().splitlines()
    lines[8] = "1 2 3"
    (tmp_path / "bad.txt").write_text("\n".join(lines))
    with pytest.raises(InputError, match=r"bad.txt:9: expected a row of 4 numbers"):
        read_alignment(tmp_path / "bad.txt")


def run(dataset, tmp_path, conf="default"):
    root = dataset["root"]
    return localize_inloc.main(
        conf, root, root / "pairs.txt", root / "features.h5", root / "matches.h5", tmp_path / "results.txt"
    )


def test_localize_inloc(dataset, tmp_path, caplog):
    with caplog.at_level("INFO"):
        summary = run(dataset, tmp_path)
    assert summary["localized"] == 2 and list(summary["failed"]) == [QUERIES[2]]
    assert "localized 2 / 3 queries" in caplog.text
    results = read_results(tmp_path / "results.txt")
    assert list(results) == ["IMG_0001.JPG", "IMG_0002.JPG"]  # IMG_0002's size came from its image file
    for query, T in dataset["truth"].items():
        truth = pycolmap.Rigid3d(pycolmap.Rotation3d(T[:3, :3]), T[:3, 3])
        position, rotation = pose_error(results[query.split("/")[-1]], truth)
        assert position < 0.01 and rotation < 0.1, (query, position, rotation)

    logs = json.loads((tmp_path / "results.txt_logs.json").read_text())["loc"]
    log = logs[QUERIES[0]]
    assert (
        log["db"] == list(CUTOUTS)
        and log["best_db"] in CUTOUTS
        and sum(log["inliers_per_db"].values()) == log["num_inliers"]
    )
    corr = log["correspondences"]
    lengths = {len(corr[k]) for k in ("keypoint_ids", "db", "db_keypoint_ids", "inliers")}
    assert lengths == {log["num_correspondences"]}
    assert log["num_correspondences"] < log["num_matches"]  # matches lifted onto NaN are left out
    assert "skip_matches=20" in logs[QUERIES[2]]["failure"] and logs[QUERIES[2]]["cam_from_world"] is None


def test_lifting_in_the_pipeline_is_exact(dataset, tmp_path):
    """At a 1 px threshold every true correspondence is an inlier, those lifted from the nearest pixel
    beside a hole too, and the pose is exact."""
    run(dataset, tmp_path, {"estimation": {"ransac": {"max_error": 1.0}}})
    results = read_results(tmp_path / "results.txt")
    logs = json.loads((tmp_path / "results.txt_logs.json").read_text())["loc"]
    for query, T in dataset["truth"].items():
        truth = pycolmap.Rigid3d(pycolmap.Rotation3d(T[:3, :3]), T[:3, 3])
        position, rotation = pose_error(results[query.split("/")[-1]], truth)
        assert position < 1e-6 and rotation < 1e-5, (query, position, rotation)
        corr = logs[query]["correspondences"]
        true_match, fallback = dataset["true_match"][query], np.array(dataset["fallback"][query])
        correct = np.array(
            [true_match[k] == (i, j) for k, i, j in zip(corr["keypoint_ids"], corr["db"], corr["db_keypoint_ids"])]
        )
        inliers = np.array(corr["inliers"])
        assert correct.sum() > 400 and inliers[correct].all()
        assert fallback[np.array(corr["keypoint_ids"])[correct]].sum() > 3  # the nearest-pixel rule was used


def test_bad_cutout_name(dataset, tmp_path):
    root = dataset["root"]
    (tmp_path / "pairs.txt").write_text(f"{QUERIES[0]} database/cutouts/DUC1/024/IMG_1.jpg\n")
    with pytest.raises(
        InputError, match="pairs.txt: 'database/cutouts/DUC1/024/IMG_1.jpg' is not an InLoc cutout name"
    ):
        localize_inloc.main(
            "default", root, tmp_path / "pairs.txt", root / "features.h5", root / "matches.h5", tmp_path / "r.txt"
        )
