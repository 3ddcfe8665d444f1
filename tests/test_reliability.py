"""What happens when things go wrong: every case ends in a one-line error naming the file, or in a
correct result, never in a silently wrong one. Reruns reuse work only when it is the same work."""

import logging

import cv2
import h5py
import numpy as np
import pytest
import torch

from helpers.calibration import calibrate_batchnorm, textured_image
from sfm_reweight.pipelines import reconstruct
from sfm_reweight import cli, match_dense, pairs_from_exhaustive
from sfm_reweight.image_io import ImageReadError, jpeg_is_complete, read_image
from sfm_reweight.io import read_keypoints, read_matches
from sfm_reweight.matcher import Matcher
from sfm_reweight.model.eloftr import ELoFTR
from sfm_reweight.model.weights import WEIGHTS_DIR, save_checkpoint
from sfm_reweight.utils.errors import InputError
from sfm_reweight.utils.pairs import write_pairs
from sfm_reweight.utils.provenance import FINGERPRINT, differences, file_hash, image_fingerprint
from test_match_dense import StubMatcher, all_pairs, h5_contents, make_images, shift

W, H = 64, 48  # the stub scene's image size (test_match_dense)


def textured_u8(h: int, w: int, seed: int) -> np.ndarray:
    return np.round(textured_image(h, w, seed) * 255).astype(np.uint8)


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory) -> tuple:
    """Two lite checkpoints of calibrated random networks (different seeds)."""
    root = tmp_path_factory.mktemp("weights")
    images = torch.from_numpy(np.stack([textured_image(96, 128, seed=s) for s in range(2)]))[:, None]
    paths = []
    for seed in range(2):
        torch.manual_seed(seed)
        model = ELoFTR("lite")
        calibrate_batchnorm(model, images)
        paths.append(save_checkpoint(model, root / f"lite-{seed}.pt"))
    return tuple(paths)


def scene(tmp_path, n: int = 4):
    names = make_images(tmp_path / "images", n)
    write_pairs(tmp_path / "pairs.txt", all_pairs(names))
    return names, tmp_path / "pairs.txt", tmp_path / "images"


# --- reruns ------------------------------------------------------------------------------------------


def test_rerun_with_other_weights_is_refused(tmp_path, checkpoints):
    (tmp_path / "images").mkdir()
    texture = textured_u8(96, 128, seed=10)
    for i in range(3):
        cv2.imwrite(str(tmp_path / "images" / f"{i}.png"), np.roll(texture, 3 * i, axis=1))
    write_pairs(tmp_path / "pairs.txt", [("0.png", "1.png"), ("0.png", "2.png"), ("1.png", "2.png")])
    a, b = checkpoints
    conf = {"name": "eloftr_reweight_lite", "preprocessing": {"resize_max": 128}}
    features, matches = match_dense.main(
        {**conf, "model": {"weights": str(a)}}, tmp_path / "pairs.txt", tmp_path / "images", tmp_path / "out"
    )
    with h5py.File(features) as f:
        assert f.attrs["weights"] == f'"{file_hash(a)}"'
        assert f["0.png"].attrs[FINGERPRINT] == image_fingerprint(tmp_path / "images" / "0.png")
    before = h5_contents(matches)
    with pytest.raises(
        InputError,
        match=rf"feats_matches-eloftr-reweight-lite.h5: made with other settings \(weights \"{file_hash(a)}\" -> "
        rf"\"{file_hash(b)}\"\); write to another output folder .* --overwrite",
    ):
        match_dense.main(
            {**conf, "model": {"weights": str(b)}}, tmp_path / "pairs.txt", tmp_path / "images", tmp_path / "out"
        )
    assert h5_contents(matches).keys() == before.keys()  # nothing lost
    match_dense.main(
        {**conf, "model": {"weights": str(b)}},
        tmp_path / "pairs.txt",
        tmp_path / "images",
        tmp_path / "out",
        overwrite=True,
    )
    with h5py.File(matches) as f:
        assert f.attrs["weights"] == f'"{file_hash(b)}"'


def test_rerun_with_another_conf_is_refused(tmp_path):
    _, pairs, images = scene(tmp_path, 3)
    match_dense.main("eloftr_reweight_lite", pairs, images, tmp_path / "out", matcher=StubMatcher())
    with pytest.raises(InputError, match=r"made with other settings \(conf.max_kps 8192 -> 100\)"):
        match_dense.main(
            {"name": "eloftr_reweight_lite", "max_kps": 100}, pairs, images, tmp_path / "out", matcher=StubMatcher()
        )
    stub = StubMatcher()  # scheduling settings are free to change
    match_dense.main(
        {"name": "eloftr_reweight_lite", "chunk_size": 3, "batch_size": 2},
        pairs,
        images,
        tmp_path / "out",
        matcher=stub,
    )
    assert stub.calls == []


def test_replaced_photo_invalidates_exactly_its_work(tmp_path, caplog):
    names, pairs, images = scene(tmp_path, 4)
    features, matches = match_dense.main("eloftr_reweight_lite", pairs, images, tmp_path / "out", matcher=StubMatcher())
    feats_before, matches_before = h5_contents(features), h5_contents(matches)
    cv2.imwrite(str(images / "im2.png"), np.full((H, W), 10 * 7 + 5, np.uint8))  # another photo, same name (stub id 7)
    stub = StubMatcher()
    with caplog.at_level(logging.INFO):
        match_dense.main("eloftr_reweight_lite", pairs, images, tmp_path / "out", matcher=stub)
    assert sorted(stub.calls) == [(0, 7), (1, 7), (3, 7)]  # its pairs only, the kept images as image 0
    assert "1 images changed since their keypoints were made" in caplog.text
    feats_after, matches_after = h5_contents(features), h5_contents(matches)
    assert all(np.array_equal(feats_after[k], v) for k, v in feats_before.items() if not k.startswith("im2.png"))
    assert not np.array_equal(feats_after["im2.png/keypoints"], feats_before["im2.png/keypoints"])
    for key, value in matches_before.items():
        assert np.array_equal(matches_after[key], value) or "im2.png" in key, key
    kp2 = read_keypoints(features, "im2.png")
    for other in ("im0.png", "im1.png", "im3.png"):  # the new matches follow the new photo
        m, _ = read_matches(matches, other, "im2.png")
        offset = read_keypoints(features, other)[m[:, 0]] - kp2[m[:, 1]]
        assert len(m) > 10 and np.allclose(offset, shift(int(other[2])) - shift(7), atol=0.3)
    with h5py.File(features) as f:
        assert f["im2.png"].attrs[FINGERPRINT] == image_fingerprint(images / "im2.png")


def test_replaced_photo_in_sift_outputs(tmp_path):
    (tmp_path / "images").mkdir()
    for i in range(3):
        cv2.imwrite(str(tmp_path / "images" / f"{i}.png"), textured_u8(120, 160, seed=i))
    write_pairs(tmp_path / "pairs.txt", [("0.png", "1.png"), ("0.png", "2.png"), ("1.png", "2.png")])
    features, matches = match_dense.main("sift", tmp_path / "pairs.txt", tmp_path / "images", tmp_path / "out")
    before = h5_contents(features)
    cv2.imwrite(str(tmp_path / "images" / "2.png"), textured_u8(120, 160, seed=9))
    match_dense.main("sift", tmp_path / "pairs.txt", tmp_path / "images", tmp_path / "out")
    after = h5_contents(features)
    assert all(np.array_equal(after[k], v) for k, v in before.items() if not k.startswith("2.png"))
    assert not np.array_equal(after["2.png/keypoints"], before["2.png/keypoints"])
    with h5py.File(matches) as f:
        assert list(f["0.png/2.png"].attrs["fingerprints"])[1] == image_fingerprint(tmp_path / "images" / "2.png")
    with pytest.raises(InputError, match=r"made with other settings \(conf.model.ratio 0.8 -> 0.7\)"):
        match_dense.main(
            {"name": "sift", "model": {"ratio": 0.7}}, tmp_path / "pairs.txt", tmp_path / "images", tmp_path / "out"
        )


def test_fingerprints_and_differences(tmp_path):
    a, b = tmp_path / "a.png", tmp_path / "b.png"
    a.write_bytes(b"x" * 1000)
    b.write_bytes(b"x" * 999 + b"y")  # same size, other content
    assert image_fingerprint(a) != image_fingerprint(b) and image_fingerprint(a).startswith("1000:")
    assert (
        differences({"conf": {"a": 1, "b": (1, 2)}, "weights": "x"}, {"conf": {"a": 1, "b": [1, 2]}, "weights": "x"})
        == ""
    )
    assert (
        differences({"conf": {"a": 1}, "weights": None}, {"conf": {"a": 2}, "weights": "y"})
        == 'conf.a 1 -> 2; weights null -> "y"'
    )


# --- weights ------------------------------------------------------------------------------------------


def test_conf_without_shipped_weights_refuses_to_run(tmp_path):
    _, pairs, images = scene(tmp_path, 2)
    message = "no shipped weights for conf 'full': pass --weights FILE or --random_weights"
    with pytest.raises(InputError, match=message):
        match_dense.main("eloftr_reweight_full", pairs, images, tmp_path / "out")
    assert not (tmp_path / "out").exists()  # before any work
    with pytest.raises(InputError, match="no shipped weights for conf 'full'"):
        Matcher("full")
    assert match_dense.describe_weights({"name": "eloftr_reweight_full", "model": {"weights": "random"}}) == "random"
    parser = cli.parser(None, match_dense.confs, weights=True)
    args = parser.parse_args(["--conf", "eloftr_reweight_full", "--random_weights"])
    assert cli.conf_from_args(args) == {"name": "eloftr_reweight_full", "model": {"weights": "random"}}
    with pytest.raises(SystemExit):  # argparse: not both
        reconstruct.command(["--random_weights", "--weights", "lite"])


def test_summary_names_the_weights():
    lite = WEIGHTS_DIR / "lite.pt"
    assert match_dense.describe_weights("eloftr_reweight_lite") == f"lite.pt sha256:{file_hash(lite)}"
    assert match_dense.describe_weights({"name": "eloftr_reweight_full", "model": {"weights": "random"}}) == "random"
    assert match_dense.describe_weights("xfeat_star") is None and match_dense.describe_weights("sift") is None


# --- unreadable input -------------------------------------------------------------------------------


def test_truncated_jpeg_is_an_unreadable_image(tmp_path, caplog, capfd):
    names, pairs, images = scene(tmp_path, 3)
    ok, encoded = cv2.imencode(".jpg", textured_u8(480, 640, seed=3))
    data = encoded.tobytes()
    assert jpeg_is_complete(data) and jpeg_is_complete(data + b"\0" * 64 + b"video after the image")
    (images / "half.jpg").write_bytes(data[: len(data) // 2])
    assert cv2.imread(str(images / "half.jpg")) is not None  # libjpeg alone decodes it, half grey, ...
    assert "Premature end of JPEG file" in capfd.readouterr().err  # ... with a warning that names no file
    with pytest.raises(ImageReadError, match="half.jpg: truncated JPEG"):
        read_image(images / "half.jpg")
    write_pairs(pairs, [*all_pairs(names), ("im0.png", "half.jpg"), ("half.jpg", "im1.png")])
    stub = StubMatcher()
    with caplog.at_level(logging.INFO):
        features, _ = match_dense.main("eloftr_reweight_lite", pairs, images, tmp_path / "out", matcher=stub)
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "half.jpg: truncated JPEG" in warnings[0]
    assert "2 pairs skipped for 1 unreadable images (half.jpg)" in caplog.text and len(stub.calls) == 3
    assert "Premature end" not in capfd.readouterr().err
    with h5py.File(features) as f:
        assert "half.jpg" not in f


def test_oversized_photo_is_warned_about_once(tmp_path, caplog):
    names = make_images(tmp_path / "images", 5)
    cv2.imwrite(str(tmp_path / "images" / "big.png"), np.full((300, 400), 15, np.uint8))  # stub id 1
    write_pairs(tmp_path / "pairs.txt", all_pairs([*names, "big.png"]))
    with caplog.at_level(logging.WARNING):
        match_dense.main(
            {"name": "eloftr_reweight_lite", "preprocessing": {"resize_max": 64}},
            tmp_path / "pairs.txt",
            tmp_path / "images",
            tmp_path / "out",
            matcher=StubMatcher(),
        )
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "big.png: 400x300 px, shrunk 6.2 times to the long side 64 px" in warnings[0]


def test_bad_pairs_and_image_folders(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match=r"empty: no images"):
        pairs_from_exhaustive.main(tmp_path / "p.txt", image_dir=tmp_path / "empty")
    with pytest.raises(InputError, match=r"empty: 0 images; a reconstruction needs at least two images"):
        reconstruct.main(tmp_path / "empty", tmp_path / "out", matcher="sift")
    names = make_images(tmp_path / "one", 1)
    with pytest.raises(InputError, match=r"one: 1 images; a reconstruction needs at least two images"):
        reconstruct.main(tmp_path / "one", tmp_path / "out", matcher="sift")

    write_pairs(tmp_path / "self.txt", [(names[0], names[0])])
    with pytest.raises(InputError, match=r"self.txt: only self-pairs"):
        match_dense.main(
            "eloftr_reweight_lite", tmp_path / "self.txt", tmp_path / "one", tmp_path / "out", matcher=StubMatcher()
        )
    with pytest.raises(InputError, match=r"self.txt: only self-pairs"):
        match_dense.main("sift", tmp_path / "self.txt", tmp_path / "one", tmp_path / "out")
    assert not list((tmp_path / "out").glob("*.h5"))  # never "all 0 pairs already in" a file that does not exist
    (tmp_path / "binary.txt").write_bytes(b"\x89PNG\r\n\x1a\n\x00\xff\xfe binary")
    with pytest.raises(InputError, match=r"binary.txt: not a text pairs file"):
        match_dense.main(
            "eloftr_reweight_lite", tmp_path / "binary.txt", tmp_path / "one", tmp_path / "out", matcher=StubMatcher()
        )
    (tmp_path / "zeros.txt").write_bytes(b"\0" * 64)
    with pytest.raises(InputError, match=r"zeros.txt: not a text pairs file"):
        match_dense.main(
            "eloftr_reweight_lite", tmp_path / "zeros.txt", tmp_path / "one", tmp_path / "out", matcher=StubMatcher()
        )


def test_overwrite_deletes_the_previous_run_only(tmp_path):
    out = tmp_path / "out"
    photos = out / "photos"  # the user's photos inside the output folder: kept
    make_images(photos, 2)
    (out / "scene").mkdir()
    for name in (
        "pairs.txt",
        "feats_matches-x.h5",
        "matches-x_pairs.h5",
        "summary.json",
        "matches.png",
        "matchability.png",
        "reconstruction.png",
        "report.html",
    ):
        (out / name).write_text("old")
    (out / "matches-x_pairs.raw").mkdir()
    (out / "sfm").mkdir()
    found = sorted(p.name for p in reconstruct.previous_outputs(out, photos))
    assert found == [
        "feats_matches-x.h5",
        "matchability.png",
        "matches-x_pairs.h5",
        "matches-x_pairs.raw",
        "matches.png",
        "pairs.txt",
        "reconstruction.png",
        "report.html",
        "sfm",
        "summary.json",
    ]
    assert reconstruct.previous_outputs(out, out) == []  # photos in the output folder itself: nothing is deleted
