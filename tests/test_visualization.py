"""The sample pair, the figures, and the demo pipeline on tiny inputs (random weights, CPU, fast)."""

import json

import cv2
import numpy as np
import pytest

from helpers.calibration import textured_image
from sfm_reweight.pipelines import demo as demo_pipeline
from sfm_reweight.metrics import apply_homography
from sfm_reweight.scenes.sample_data import sample_homography, sample_pair, warp_image
from sfm_reweight.visualization import (
    COLORBAR_BAND_PX,
    COLORBAR_SIDE_PX,
    GAP_PX,
    TITLE_PX,
    plot_matchability,
    plot_matchability_pair,
    plot_matches,
    upsample_matchability,
)


@pytest.fixture(scope="module")
def demo():
    return demo_pipeline


@pytest.fixture(scope="module")
def pair():
    return sample_pair()


def read_png(path) -> np.ndarray:
    assert path.is_file() and path.stat().st_size > 0
    image = cv2.imread(str(path), cv2.IMREAD_COLOR)
    assert image is not None, f"{path} is not a readable PNG"
    return image


# --- sample pair ---------------------------------------------------------------------------------


def test_sample_pair_is_deterministic(pair):
    image0, image1, H = pair
    again0, again1, again_H = sample_pair()
    assert image0.dtype == image1.dtype == np.uint8
    assert image0.shape == image1.shape == (600, 512, 3)
    np.testing.assert_array_equal(image0, again0)
    np.testing.assert_array_equal(image1, again1)
    np.testing.assert_array_equal(H, again_H)
    assert H.shape == (3, 3) and H[2, 2] == 1.0
    # fresh copies: editing one result does not change the next
    again0[:] = 0
    np.testing.assert_array_equal(sample_pair()[0], image0)


def test_sample_homography_is_as_documented(pair):
    image0, _, H = pair
    h, w = image0.shape[:2]
    # local affine part at the image centre: rotation ~20 deg, scale ~0.8 (perturbed by the perspective)
    c = np.array([(w - 1) / 2, (h - 1) / 2])
    eps = 0.5
    J = np.stack([(apply_homography(H, [c + d]) - apply_homography(H, [c - d]))[0] for d in np.eye(2) * eps], 1)
    J /= 2 * eps
    assert np.degrees(np.arctan2(J[1, 0], J[0, 0])) == pytest.approx(20, abs=5)
    assert np.sqrt(abs(np.linalg.det(J))) == pytest.approx(0.8, abs=0.1)
    assert abs(H[2, 0]) + abs(H[2, 1]) > 1e-5  # some perspective
    # partial overlap: part of image 0 lands outside image 1
    ys, xs = np.mgrid[0:h:4, 0:w:4]
    p = apply_homography(H, np.stack([xs.ravel(), ys.ravel()], 1))
    visible = np.mean((p[:, 0] >= 0) & (p[:, 0] <= w - 1) & (p[:, 1] >= 0) & (p[:, 1] <= h - 1))
    assert 0.5 < visible < 0.9


def test_warp_follows_pixel_centre_convention():
    """A blob centred on image-0 pixel p ends up centred on H(p) in the warped image."""
    H = sample_homography(200, 160)
    # undo the sample's big shift so the blob stays inside; keep the rotation, scale and perspective
    H = np.array([[1, 0, -60], [0, 1, -20], [0, 0, 1]]) @ H
    yy, xx = np.mgrid[0:160, 0:200].astype(np.float64)
    for p in [(80.0, 70.0), (101.0, 55.0)]:
        blob = np.exp(-((xx - p[0]) ** 2 + (yy - p[1]) ** 2) / (2 * 3.0**2)).astype(np.float32)
        warped = warp_image(blob, H, (200, 160))
        centroid = np.array([(warped * xx).sum(), (warped * yy).sum()]) / warped.sum()
        q = apply_homography(H, [p])[0]
        assert np.all((q > 10) & (q < [190, 150]))
        np.testing.assert_allclose(centroid, q, atol=0.15)


def test_homography_maps_image0_content_onto_image1(pair):
    """Patches of image 1 around H(p) show image 0's content around p (resampled through H^-1);
    a homography off by 4 px does not."""
    image0, image1, H = pair
    g0 = cv2.cvtColor(image0, cv2.COLOR_RGB2GRAY).astype(np.float32)
    g1 = cv2.cvtColor(image1, cv2.COLOR_RGB2GRAY).astype(np.float32)
    h, w = g0.shape
    r = 4
    offsets = np.stack(np.meshgrid(np.arange(-r, r + 1), np.arange(-r, r + 1)), -1).reshape(-1, 2)

    def patch_error(H_used: np.ndarray, p0: np.ndarray) -> float:
        q = np.round(apply_homography(H_used, [p0])[0])
        pix1 = q + offsets  # integer pixel centres of image 1
        back = apply_homography(np.linalg.inv(H_used), pix1).astype(np.float32)
        from0 = cv2.remap(g0, back[:, 0:1].copy(), back[:, 1:2].copy(), cv2.INTER_LINEAR)[:, 0]
        from1 = g1[pix1[:, 1].astype(int), pix1[:, 0].astype(int)]
        return float(np.mean(np.abs(from0 - from1)))

    shifted = np.array([[1, 0, 4.0], [0, 1, -4.0], [0, 0, 1]]) @ H
    good, bad, tested = [], [], 0
    for x in range(40, w - 40, 37):
        for y in range(40, h - 40, 41):
            p0 = np.array([x, y], np.float64)
            q = apply_homography(H, [p0])[0]
            if not (r + 6 <= q[0] <= w - r - 7 and r + 6 <= q[1] <= h - r - 7):
                continue  # not visible in image 1
            xi, yi = int(x), int(y)
            if g0[yi - r : yi + r + 1, xi - r : xi + r + 1].std() < 12:
                continue  # flat: any homography matches it
            tested += 1
            good.append(patch_error(H, p0))
            bad.append(patch_error(shifted, p0))
    assert tested >= 10
    assert np.median(good) < 1.0, good
    assert np.median(bad) > 5 * max(np.median(good), 1.0), (good, bad)
    # and the region not visible in image 1 is black there: a point that leaves the canvas
    assert apply_homography(H, [[w - 1, h - 1]])[0][0] > w


# --- figures -------------------------------------------------------------------------------------


def test_plot_matches_writes_side_by_side_png(tmp_path):
    rng = np.random.default_rng(0)
    image0 = rng.integers(0, 256, (300, 400, 3), dtype=np.uint8)
    image1 = (rng.random((240, 320)) * 65535).astype(np.uint16)  # gray uint16, smaller
    k0 = rng.uniform(0, [399, 299], (50, 2)).astype(np.float32)
    k1 = rng.uniform(0, [319, 239], (50, 2)).astype(np.float32)
    conf = rng.random(50)

    png = read_png(plot_matches(image0, image1, k0, k1, tmp_path / "conf.png", confidence=conf, title="t"))
    assert png.shape[1] == pytest.approx(400 + GAP_PX + 320, abs=2)
    assert png.shape[0] == pytest.approx(300 + TITLE_PX + COLORBAR_BAND_PX, abs=2)

    inliers = np.arange(50) % 2 == 0
    png = read_png(plot_matches(image0, image1, k0, k1, tmp_path / "sub" / "inl.png", inliers=inliers, max_lines=10))
    assert png.shape[1] == pytest.approx(400 + GAP_PX + 320, abs=2)
    assert png.shape[0] == pytest.approx(300 + TITLE_PX, abs=2)
    # the area right of image 1 below its bottom (image 1 is shorter) stays white canvas
    assert png[-5:, -5:].min() > 240

    empty = np.zeros((0, 2), np.float32)
    read_png(plot_matches(image0, image1, empty, empty, tmp_path / "empty.png", confidence=np.zeros(0)))
    with pytest.raises(ValueError):
        plot_matches(image0, image1, k0, k1[:10], tmp_path / "bad.png")
    with pytest.raises(ValueError):
        plot_matches(image0, image1, k0, k1, tmp_path / "bad.png", inliers=inliers[:3])


def test_plot_matches_accepts_paths(tmp_path, pair):
    image0, image1, H = pair
    small0, small1 = image0[::4, ::4], image1[::4, ::4]
    cv2.imwrite(str(tmp_path / "a.png"), cv2.cvtColor(small0, cv2.COLOR_RGB2BGR))
    cv2.imwrite(str(tmp_path / "b.jpg"), cv2.cvtColor(small1, cv2.COLOR_RGB2BGR))
    k = np.array([[10.0, 20.0], [50.0, 60.0]])
    png = read_png(plot_matches(tmp_path / "a.png", str(tmp_path / "b.jpg"), k, k, tmp_path / "out.png"))
    assert png.shape[1] >= 2 * small0.shape[1]


def test_plot_matchability_writes_heat_map(tmp_path):
    rng = np.random.default_rng(0)
    image = rng.random((160, 480)).astype(np.float32)
    m = rng.random((20, 60)).astype(np.float32)
    png = read_png(plot_matchability(image, m, tmp_path / "m.png", title="one"))
    assert png.shape[0] == pytest.approx(160 + TITLE_PX, abs=2)
    assert png.shape[1] == pytest.approx(480 + COLORBAR_SIDE_PX, abs=2)
    rgba = rng.integers(0, 256, (160, 400, 4), dtype=np.uint8)
    png = read_png(plot_matchability_pair(image, rgba, m, m[:, :50], tmp_path / "pair.png"))
    assert png.shape[1] == pytest.approx(480 + GAP_PX + 400 + COLORBAR_SIDE_PX, abs=2)
    with pytest.raises(ValueError, match="reweighting"):
        plot_matchability(image, None, tmp_path / "none.png")


def test_upsample_matchability_puts_cells_on_their_pixels():
    """Cell (i, j) sits on network pixel (8j, 8i); the original image here is the network input x2."""
    m = np.zeros((10, 12), np.float32)
    m[3, 5] = 1.0
    up = upsample_matchability(m, (192, 160))
    assert up.shape == (160, 192) and up.dtype == np.float32
    yy, xx = np.mgrid[0:160, 0:192]
    centroid = np.array([(up * xx).sum(), (up * yy).sum()]) / up.sum()
    expected = (np.array([8 * 5, 8 * 3]) + 0.5) * 2 - 0.5  # network pixel -> original pixel
    np.testing.assert_allclose(centroid, expected, atol=0.05)
    assert up.min() >= 0 and up.max() <= 1


# --- demo pipeline -------------------------------------------------------------------------------

SUMMARY_KEYS = {
    "pair",
    "conf",
    "weights",
    "device",
    "image_size0",
    "image_size1",
    "num_matches",
    "time_s",
    "mean_confidence",
    "ground_truth",
    "matches_png",
    "matchability_png",
    "summary_json",
}
GT_KEYS = {"threshold_px", "precision", "ransac_inliers", "mean_corner_error_px", "estimated_H", "homography_status"}


def test_homography_metrics(demo):
    H = sample_homography(200, 160)
    rng = np.random.default_rng(0)
    k0 = rng.uniform(0, [199, 159], (40, 2))
    k1 = apply_homography(H, k0)
    k1[:10] += 20.0  # outliers
    out = demo.homography_metrics(k0, k1, H, (200, 160))
    assert out["precision"] == pytest.approx(0.75)
    assert out["homography_status"] == "ok" and out["ransac_inliers"] == 30
    assert out["mean_corner_error_px"] < 0.01
    few = demo.homography_metrics(k0[:3], k1[:3], H, (200, 160))
    assert few["homography_status"] == "not enough matches" and few["mean_corner_error_px"] is None
    none = demo.homography_metrics(np.zeros((0, 2)), np.zeros((0, 2)), H, (200, 160))
    assert none["precision"] is None


def test_demo_runs_on_tiny_arrays_with_ground_truth(demo, tmp_path):
    image0 = textured_image(96, 128, seed=1)
    H = np.array([[1, 0, 8.0], [0, 1, 4.0], [0, 0, 1]])
    image1 = warp_image(image0, H, (128, 96))
    summary = demo.run_demo(tmp_path / "out", image0, image1, H=H, weights=None)
    assert set(summary) == SUMMARY_KEYS
    on_disk = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert on_disk == json.loads(json.dumps(summary))
    assert set(on_disk["ground_truth"]) == GT_KEYS
    assert on_disk["weights"] is None and on_disk["image_size0"] == [128, 96]
    assert on_disk["num_matches"] >= 0 and on_disk["time_s"] > 0
    read_png(tmp_path / "out" / "matches.png")
    read_png(tmp_path / "out" / "matchability.png")
    assert "matches in" in demo.summary_text(summary) or "match in" in demo.summary_text(summary)


def test_demo_main_on_tiny_files(demo, tmp_path, capsys):
    for name, seed in (("a.png", 2), ("b.png", 3)):
        gray = (textured_image(64, 80, seed=seed) * 255).astype(np.uint8)
        cv2.imwrite(str(tmp_path / name), gray)
    out = tmp_path / "demo"
    argv = ["--image0", str(tmp_path / "a.png"), "--image1", str(tmp_path / "b.png"), "--random_weights"]
    demo.command(argv + ["--output", str(out)])
    summary = json.loads((out / "summary.json").read_text())
    assert set(summary) == SUMMARY_KEYS
    assert summary["ground_truth"] is None
    printed = capsys.readouterr().out
    assert "No ground truth" in printed and "summary.json" in printed
    with pytest.raises(SystemExit):
        demo.parse_args(["--image0", str(tmp_path / "a.png")])
