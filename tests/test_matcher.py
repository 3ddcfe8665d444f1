"""The inference API on odd inputs: sizes, bit depths, channels, batching, bad input."""

import hashlib

import cv2
import numpy as np
import pytest
import torch

from helpers.calibration import calibrate_batchnorm, textured_image
from sfm_reweight import Matcher
from sfm_reweight.image_io import ImageReadError, to_gray_float
from sfm_reweight.model.eloftr import ELoFTR
from sfm_reweight.model.weights import save_checkpoint
from sfm_reweight.utils.conf import ConfError
from sfm_reweight.preprocessing import prepare, resized_size, rot90_points
from sfm_reweight.scenes.demo_scene import stone

CONF = {"name": "lite", "resize_max": 320}


@pytest.fixture(scope="module")
def weights(tmp_path_factory):
    """A lite checkpoint whose random weights have BatchNorm statistics of real activations."""
    model = ELoFTR("lite")
    images = torch.from_numpy(np.stack([textured_image(256, 320, seed=s) for s in range(2)]))[:, None]
    images[1, :, 240:] = 0  # padded inputs are part of what the network sees
    calibrate_batchnorm(model, images)
    return save_checkpoint(model, tmp_path_factory.mktemp("w") / "lite.pt")


@pytest.fixture(scope="module")
def matcher(weights):
    return Matcher(CONF, weights=weights, device="cpu")


def check_output(out: dict, size0, size1):
    m = len(out["confidence"])
    assert out["keypoints0"].shape == (m, 2) and out["keypoints0"].dtype == np.float32
    assert out["keypoints1"].shape == (m, 2) and out["keypoints1"].dtype == np.float32
    for k, size in ((0, size0), (1, size1)):
        kp = out[f"keypoints{k}"]
        assert (kp >= -0.5).all() and (kp[:, 0] <= size[0] - 0.5).all() and (kp[:, 1] <= size[1] - 0.5).all()
        assert tuple(out[f"image_size{k}"]) == size
        assert out[f"matchability{k}"].min() >= 0 and out[f"matchability{k}"].max() <= 1
    return m


def test_resize_and_pad_rules():
    assert resized_size(1024, 768, 1024, False) == (1024, 768)
    assert resized_size(2000, 1000, 1024, False) == (1024, 512)
    assert resized_size(640, 480, 1024, False) == (640, 480)  # no upsampling unless forced
    assert resized_size(640, 480, 1024, True) == (1024, 768)
    assert resized_size(20, 15, 1024, False) == (40, 32)  # tiny images grow to 32 px
    prep = prepare(np.zeros((700, 1000), np.float32), 1024)
    assert prep.image.shape == (704, 1000 + 24) and prep.size == (1000, 696) and prep.padded
    mask = prep.coarse_mask()
    assert mask.shape == (88, 128) and mask.sum() == 87 * 125
    # pixel-centre convention: the first and last pixel centres map onto each other
    np.testing.assert_allclose(
        prep.to_original(np.array([[-0.5, -0.5], [999.5, 695.5]])), [[-0.5, -0.5], [999.5, 699.5]], atol=1e-4
    )


def test_matches_shifted_textures_in_original_pixels(matcher):
    """Identical content at a known offset: the coarse positions found by a random network with
    calibrated statistics recover the offset, in original pixels, through resizing and padding."""
    small = textured_image(256 + 8, 320 + 16)
    texture = (cv2.resize(small, None, fx=3, fy=3, interpolation=cv2.INTER_LINEAR) * 255).astype(np.uint8)
    image0, image1 = texture[:768, :960], texture[24:792, 48:1008]  # resized 3x down to 320x256
    out = matcher(image0, image1)
    m = check_output(out, (960, 768), (960, 768))
    assert m > 20
    shift = np.median(out["keypoints0"] - out["keypoints1"], axis=0)
    np.testing.assert_allclose(shift, [48, 24], atol=3 * 2)  # within 2 network pixels


@pytest.mark.parametrize("k", [-3, -1, 1, 2, 3, 4])
def test_rot90_points_follow_np_rot90(k):
    image = np.arange(5 * 7).reshape(5, 7)
    points = np.array([[x, y] for y in range(5) for x in range(7)], np.float64)
    turned = rot90_points(points, k, (7, 5))
    rotated = np.rot90(image, k)
    xs, ys = turned.round().astype(int).T
    np.testing.assert_array_equal(rotated[ys, xs], image[points[:, 1].astype(int), points[:, 0].astype(int)])
    back = rot90_points(turned, -k, rotated.shape[::-1])
    np.testing.assert_allclose(back, points)


def test_rotation_search_undoes_a_quarter_turn(weights):
    """Image 1 turned a quarter counter-clockwise: searching four orientations finds the turn back
    (three more quarters) and returns keypoints in image 1 as given."""
    small = textured_image(256 + 8, 320 + 16)
    texture = (cv2.resize(small, None, fx=3, fy=3, interpolation=cv2.INTER_LINEAR) * 255).astype(np.uint8)
    image0, image1 = texture[:768, :960], np.rot90(texture[24:792, 48:1008])  # image 1: 768 wide, 960 high
    matcher = Matcher({**CONF, "rotations": [0, 90, 180, 270]}, weights=weights, device="cpu")
    out = matcher(image0, image1)
    assert out["rotation1"] == 270
    m = check_output(out, (960, 768), (768, 960))
    assert m > 20
    upright1 = rot90_points(out["keypoints1"], -1, (768, 960))  # back into the unturned crop
    shift = np.median(out["keypoints0"] - upright1, axis=0)
    np.testing.assert_allclose(shift, [48, 24], atol=3 * 2)
    assert out["matchability1"].shape == (960 // 3 // 8, 768 // 3 // 8)
    with pytest.raises(ValueError, match="multiples of 90"):
        Matcher({**CONF, "rotations": [45]}, weights=weights, device="cpu")


def test_zoom_search_finds_the_scale_of_image_1(weights):
    """Image 1 (the same size in pixels) shows twice image 0's field of view, so its content at half
    size: of the zooms 0.5 / 1 / 2, zoom 2 (image 0 shrunk by half) wins, and the keypoints come back
    in each image's own pixels."""
    small = textured_image(520, 648)
    texture = (cv2.resize(small, None, fx=3, fy=3, interpolation=cv2.INTER_LINEAR) * 255).astype(np.uint8)
    image0 = texture[384:1152, 480:1440]
    image1 = cv2.resize(texture[:1536, :1920], (960, 768), interpolation=cv2.INTER_AREA)
    matcher = Matcher({**CONF, "zooms": [0.5, 1, 2]}, weights=weights, device="cpu")
    out = matcher(image0, image1)
    assert out["zoom1"] == 2
    assert check_output(out, (960, 768), (960, 768)) > 20
    np.testing.assert_allclose(out["scale0"], [6, 6])  # 960 px shown at 320 / 2
    expected1 = (out["keypoints0"] + [480, 384] + 0.5) / 2 - 0.5
    assert np.median(np.linalg.norm(out["keypoints1"] - expected1, axis=1)) < 2 * 3  # 2 network pixels
    # ranked at a smaller size, then only the winner at resize_max: the same candidate and matches
    ranked_small = Matcher({**CONF, "zooms": [0.5, 1, 2], "search_resize_max": 288}, weights=weights, device="cpu")
    small_out = ranked_small(image0, image1)
    assert small_out["zoom1"] == 2
    np.testing.assert_allclose(small_out["scale0"], [6, 6])
    np.testing.assert_array_equal(small_out["keypoints1"], out["keypoints1"])
    with pytest.raises(ValueError, match="positive factors"):
        Matcher({**CONF, "zooms": [0]}, weights=weights, device="cpu")
    with pytest.raises(ValueError, match="search_resize_max"):
        Matcher({**CONF, "search_resize_max": 0}, weights=weights, device="cpu")


def test_sparse_content_is_matched_larger():
    """A pair of textures filling the frame stays at resize_max; the same texture shrunk onto a black
    canvas (a third of the width and height: about a ninth of the cells reliable) is matched larger,
    by at most content_upscale_max, and its keypoints still come back in the canvas's pixels."""
    texture = stone(np.random.default_rng(0), 480, 640).mean(axis=2)
    canvas = np.zeros((480, 640), np.float32)
    canvas[160:320, 213:426] = cv2.resize(texture, (213, 160), interpolation=cv2.INTER_AREA)
    matcher = Matcher({"name": "xfeat", "resize_max": 320}, device="cpu")
    assert matcher.content_upscale(texture, texture) == 1.0
    assert matcher.reliable_share(canvas) < 0.2 < matcher.reliable_share(texture)
    upscale = matcher.content_upscale(canvas, canvas)
    assert 1.2 < upscale <= matcher.conf["content_upscale_max"]
    out = matcher(canvas, canvas)
    np.testing.assert_allclose(out["scale0"], 640 / (320 * upscale), rtol=0.05)  # original px per network px
    x, y = out["keypoints0"].T
    inside = (x > 200) & (x < 440) & (y > 150) & (y < 330)
    assert len(out["keypoints0"]) > 20 and inside.mean() > 0.9
    assert np.median(np.linalg.norm(out["keypoints1"] - out["keypoints0"], axis=1)) < 0.5  # the same image twice
    # pairs of different factors in one batch: each as matched alone
    batched = list(matcher.match_pairs([(canvas, canvas), (texture, texture), (canvas, canvas)], batch_size=3))
    for got, alone in zip(batched, (out, matcher(texture, texture), out)):
        np.testing.assert_allclose(got["scale0"], alone["scale0"])
        np.testing.assert_allclose(got["keypoints1"], alone["keypoints1"], atol=1e-3)
    off = Matcher({"name": "xfeat", "resize_max": 320, "content_share": None}, device="cpu")
    assert off.content_upscale(canvas, canvas) == 1.0 and off(canvas, canvas)["scale0"][0] == 2.0
    with pytest.raises(ConfError, match="reliability map"):
        Matcher({**CONF, "content_share": 0.75}, device="cpu", weights=None)
    with pytest.raises(ConfError, match="content_share"):
        Matcher({"name": "xfeat", "content_share": 1.5}, device="cpu")
    with pytest.raises(ConfError, match="content_upscale_max"):
        Matcher({"name": "xfeat", "content_share": None, "content_upscale_max": 0.5}, device="cpu")


@pytest.mark.parametrize("kind", ["gray8", "rgb8", "rgba8", "gray16", "rgb16", "float"])
def test_image_types(matcher, tmp_path, kind):
    gray = textured_image(150, 210)
    image = {
        "gray8": (gray * 255).astype(np.uint8),
        "rgb8": np.repeat((gray * 255).astype(np.uint8)[..., None], 3, axis=2),
        "rgba8": np.dstack(
            [np.repeat((gray * 255).astype(np.uint8)[..., None], 3, axis=2), np.full(gray.shape, 128, np.uint8)]
        ),
        "gray16": (gray * 65535).astype(np.uint16),
        "rgb16": np.repeat((gray * 65535).astype(np.uint16)[..., None], 3, axis=2),
        "float": gray,
    }[kind]
    np.testing.assert_allclose(to_gray_float(image), gray, atol=1 / 255)
    if kind != "float":  # and the same through a PNG file (cv2 stores BGR(A), read back as RGB(A))
        path = tmp_path / f"{kind}.png"
        code = cv2.COLOR_RGBA2BGRA if kind == "rgba8" else cv2.COLOR_RGB2BGR
        cv2.imwrite(str(path), cv2.cvtColor(image, code) if image.ndim == 3 else image)
        out = matcher(path, image)
        check_output(out, (210, 150), (210, 150))


def test_tiny_and_mismatched_sizes(matcher):
    tiny = (textured_image(15, 20) * 255).astype(np.uint8)
    check_output(matcher(tiny, tiny), (20, 15), (20, 15))
    big = (textured_image(300, 500) * 255).astype(np.uint8)
    check_output(matcher(tiny, big), (20, 15), (500, 300))


def test_no_overlap_gives_few_matches(matcher):
    a = (textured_image(240, 320, seed=1) * 255).astype(np.uint8)
    b = (textured_image(240, 320, seed=2) * 255).astype(np.uint8)
    same = matcher(a, a)
    other = matcher(a, b)
    check_output(other, (320, 240), (320, 240))
    assert len(other["confidence"]) < 0.25 * len(same["confidence"])


def test_batched_equals_one_by_one(matcher):
    textures = [(textured_image(250, 330, seed=s) * 255).astype(np.uint8) for s in range(3)]
    pairs = [(textures[0], textures[1]), (textures[0][10:, 5:], textures[0][:-10, :-5]), (textures[2], textures[2])]
    single = [matcher(*p) for p in pairs]
    batched = list(matcher.match_pairs(pairs, batch_size=3))
    assert len(batched) == 3
    for s, b in zip(single, batched):
        assert len(s["confidence"]) == len(b["confidence"])
        np.testing.assert_allclose(s["keypoints1"], b["keypoints1"], atol=1e-3)


def test_bad_inputs_are_named(matcher, tmp_path):
    image = (textured_image(64, 64) * 255).astype(np.uint8)
    with pytest.raises(ImageReadError, match="nowhere.png: image file not found"):
        matcher(tmp_path / "nowhere.png", image)
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"\xff\xd8 not really a jpeg")
    with pytest.raises(ImageReadError, match="broken.jpg: cannot be decoded"):
        matcher(broken, image)
    with pytest.raises(ValueError, match="NaN"):
        matcher(np.full((64, 64), np.nan, np.float32), image)
    with pytest.raises(ValueError, match="shape"):
        matcher(np.zeros((4, 64, 64, 3), np.uint8), image)
    with pytest.raises(ConfError, match="unknown matcher configuration"):
        Matcher("huge", weights=None)


def test_fingerprint_names_the_weights(weights, tmp_path):
    assert Matcher("lite", weights=weights).fingerprint == hashlib.sha256(weights.read_bytes()).hexdigest()[:16]
    assert Matcher("lite", weights=None).fingerprint == "random"
    other = save_checkpoint(ELoFTR("lite"), tmp_path / "other.pt")
    assert Matcher("lite", weights=other).fingerprint != Matcher("lite", weights=weights).fingerprint


@pytest.mark.parametrize("mode", ["off", "rescale"])
def test_checkpoint_of_another_reweighting_mode_loads(tmp_path, mode):
    """The ablation's weights: the file's reweighting mode wins over the conf's, the conf's threshold stays."""
    path = save_checkpoint(ELoFTR({"name": "lite", "reweight": {"mode": mode}}), tmp_path / f"{mode}.pt")
    matcher = Matcher({"name": "lite", "model": {"name": "lite", "match_coarse": {"thr": 0.05}}}, weights=path)
    assert matcher.model.conf["reweight"]["mode"] == mode
    assert matcher.model.conf["match_coarse"]["thr"] == 0.05
    assert (matcher.model.matchability is None) == (mode == "off")
