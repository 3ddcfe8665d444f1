"""The shipped weights (sfm_reweight/weights/*.pt), when present, load by default and match the
embedded sample pair (a photo and its copy under a known homography with 20 deg of rotation)."""

import pytest

from sfm_reweight import Matcher
from sfm_reweight.metrics import corner_error, homography_precision, ransac_homography
from sfm_reweight.matcher import confs
from sfm_reweight.model.weights import WEIGHTS_DIR
from sfm_reweight.scenes.sample_data import sample_pair


@pytest.mark.parametrize("conf", ["lite", "xfeat"])
def test_shipped_weights_match_the_sample_pair(conf):
    shipped = confs[conf]["weights"]
    if not (WEIGHTS_DIR / f"{shipped}.pt").is_file():
        pytest.skip(f"no shipped {shipped}.pt in this checkout")
    matcher = Matcher(conf, device="cpu")  # weights="default"
    assert matcher.weights == shipped and matcher.fingerprint != "random"
    image0, image1, H = sample_pair()
    out = matcher(image0, image1)
    k0, k1 = out["keypoints0"], out["keypoints1"]
    assert len(k0) >= 100
    # a quarter of image 0 has no counterpart: random weights keep ~1 match with no homography
    assert homography_precision(k0, k1, H, 3.0) >= 0.5
    h, w = image0.shape[:2]
    assert corner_error(ransac_homography(k0, k1), H, w, h) < 2.0
