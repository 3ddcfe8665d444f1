"""match_dense: keypoint aggregation, hloc-format outputs from a stub matcher with a known scene,
fixed reference keypoints, bad inputs, resuming after a real kill, and a tiny run of the real matcher."""

import logging
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import cv2
import h5py
import numpy as np
import pytest

from sfm_reweight import match_dense
from sfm_reweight.io import list_h5_names, read_keypoints, read_matches
from sfm_reweight.keypoint_aggregation import BinAccumulator, KeypointIndex, one_to_one, to_matches0
from sfm_reweight.raw_matches import RawMatchStore
from sfm_reweight.utils.errors import InputError
from sfm_reweight.utils.pairs import write_pairs

W, H = 64, 48
_rng = np.random.default_rng(0)
WORLD = np.stack(np.meshgrid(np.arange(4, 60, 5.0), np.arange(4, 44, 5.0)), -1).reshape(-1, 2)
WORLD += _rng.uniform(-1, 1, WORLD.shape)  # points at least 3 px apart


def shift(i: int) -> np.ndarray:
    """Where image i sees the world: point k at WORLD[k] + shift(i)."""
    return np.array([1.37 * i, -0.61 * i])


def image_id(image: np.ndarray) -> int:
    """Image i is filled with the gray level 10 i + 5 (the matcher gets floats in [0, 1])."""
    return int(round((float(image[0, 0]) * 255 - 5) / 10))


class StubMatcher:
    """`Matcher.match_pairs` for the known scene: every point seen by both images, with 0.05 px
    noise and random confidences, deterministic per pair."""

    def __init__(self, sleep: float = 0.0):
        self.sleep = sleep
        self.calls: list[tuple[int, int]] = []

    def match_pairs(self, pairs, batch_size=1):
        for image0, image1 in pairs:
            i, j = image_id(image0), image_id(image1)
            self.calls.append((i, j))
            time.sleep(self.sleep)
            p0, p1 = WORLD + shift(i), WORLD + shift(j)
            visible = np.all((p0 > 0) & (p0 < (W - 1, H - 1)) & (p1 > 0) & (p1 < (W - 1, H - 1)), axis=1)
            rng = np.random.default_rng(100 * i + j)
            n = int(visible.sum())
            yield {
                "keypoints0": (p0[visible] + rng.normal(0, 0.05, (n, 2))).astype(np.float32),
                "keypoints1": (p1[visible] + rng.normal(0, 0.05, (n, 2))).astype(np.float32),
                "confidence": rng.uniform(0.2, 1.0, n).astype(np.float32),
                "image_size0": np.array(image0.shape[::-1]),
                "image_size1": np.array(image1.shape[::-1]),
            }


def make_images(image_dir: Path, n: int) -> list[str]:
    image_dir.mkdir(parents=True, exist_ok=True)
    names = [f"im{i}.png" for i in range(n)]
    for i, name in enumerate(names):
        cv2.imwrite(str(image_dir / name), np.full((H, W), 10 * i + 5, np.uint8))
    return names


def all_pairs(names: list[str]) -> list[tuple[str, str]]:
    return [(a, b) for k, a in enumerate(names) for b in names[k + 1 :]]


def run_stub(image_dir: str, pairs: str, export_dir: str, sleep: float) -> None:
    """One match_dense run with the stub (what the subprocess of the kill test runs)."""
    match_dense.main(
        {"name": "eloftr_reweight_lite", "chunk_size": 2},
        Path(pairs),
        Path(image_dir),
        Path(export_dir),
        matcher=StubMatcher(sleep),
    )


def h5_contents(path: Path) -> dict[str, np.ndarray]:
    out = {}
    with h5py.File(path, "r") as f:
        f.visititems(lambda name, obj: out.__setitem__(name, obj[()]) if isinstance(obj, h5py.Dataset) else None)
    return out


def assert_same_files(a: Path, b: Path) -> None:
    ca, cb = h5_contents(a), h5_contents(b)
    assert sorted(ca) == sorted(cb)
    for key in ca:
        assert ca[key].dtype == cb[key].dtype and np.array_equal(ca[key], cb[key]), key


def true_keypoint_ids(features: Path, name: str) -> np.ndarray:
    """For each world point, the index of the image's keypoint within 0.3 px of it (-1: none)."""
    i = int(name[2:-4])
    return KeypointIndex(read_keypoints(features, name), 0.3)(WORLD + shift(i))


# --- aggregation -------------------------------------------------------------------------------


def test_bin_accumulator_keypoints():
    acc = BinAccumulator((64, 48), cell_size=8, max_error=2)
    assert acc.bin <= 2 / np.sqrt(2) and acc.cell / acc.bin == acc.bins_per_cell
    acc.add([[10.2, 5.3], [10.4, 5.1]], [1.0, 1.0])  # two pairs see the same point
    acc.add([[10.3, 5.2]], [2.0])
    acc.add([[13.0, 5.0]], [0.5])  # same 8 px cell, another bin, weaker
    acc.add([[40.0, 30.0], [-0.5, -0.5], [80, 80], [np.nan, 1]], [0.3, 0.2, 0.1, 1.0])  # edges, outside, NaN
    acc.add([[20.0, 20.0]], [0.0])  # zero score: ignored
    kps, scores = acc.keypoints()
    assert len(kps) == 4 and kps.dtype == np.float32  # row-major cells: (-0.5,-0.5), (10,5), (40,30), (80,80)
    assert np.allclose(kps[1], [(10.2 + 10.4 + 2 * 10.3) / 4, (5.3 + 5.1 + 2 * 5.2) / 4], atol=1e-5)
    assert scores[1] == pytest.approx(4.0)
    assert np.round(kps[[0, 2, 3]], 1).tolist() == [[-0.5, -0.5], [40.0, 30.0], [80.0, 80.0]]
    top, top_scores = acc.keypoints(max_kps=2)
    assert len(top) == 2 and np.allclose(sorted(top_scores), [0.3, 4.0])


def test_close_keypoints_are_merged():
    acc = BinAccumulator((64, 48), cell_size=1, max_error=1)
    acc.add([[9.45, 3.0], [9.55, 3.0], [9.56, 3.0]], [1.0, 1.0, 1.0])  # a cluster across a cell border
    kps, scores = acc.keypoints()
    assert len(kps) == 1 and kps[0, 0] == pytest.approx(9.555, abs=1e-4)


def test_keypoint_index_is_exact_nearest_within_radius():
    rng = np.random.default_rng(1)
    keypoints = rng.uniform(-5, 50, (300, 2))
    points = rng.uniform(-8, 53, (500, 2))
    ids = KeypointIndex(keypoints, 1.5)(points)
    d = np.linalg.norm(points[:, None] - keypoints[None], axis=-1)
    expected = np.where(d.min(1) <= 1.5, d.argmin(1), -1)
    assert np.array_equal(ids, expected)
    assert KeypointIndex(np.zeros((0, 2)), 1.0)(points).tolist() == [-1] * 500


def test_one_to_one_keeps_the_best_match():
    ids0 = np.array([0, 0, 1, 2, -1, 3])
    ids1 = np.array([5, 6, 5, 7, 8, 7])
    scores = np.array([0.5, 0.9, 0.8, 0.3, 1.0, 0.4])
    matches, s = one_to_one(ids0, ids1, scores)
    assert matches.tolist() == [[0, 6], [1, 5], [3, 7]] and np.allclose(s, [0.9, 0.8, 0.4])
    matches0, scores0 = to_matches0(matches, s, 5)
    assert matches0.tolist() == [6, 5, -1, 7, -1] and matches0.dtype == np.int32 and scores0.dtype == np.float32


def test_raw_store_resumes_and_checks_identity(tmp_path):
    fingerprints = {"a.jpg": "1:a", "b.jpg": "1:b", "c/d.jpg": "1:d"}
    store = RawMatchStore(tmp_path / "raw", {"matcher": "a"}, fingerprints)
    result = {
        "keypoints0": np.ones((3, 2)),
        "keypoints1": np.zeros((3, 2)),
        "scores": np.arange(3),
        "image_size0": (4, 5),
        "image_size1": (6, 7),
    }
    store.add({("a.jpg", "b.jpg"): result, ("a.jpg", "c/d.jpg"): {**result, "scores": np.arange(3) + 10}})
    store.close()
    (tmp_path / "raw" / ".shard-000001.h5.0123abcd.tmp").write_bytes(b"debris of a killed run")
    store = RawMatchStore(tmp_path / "raw", {"matcher": "a"}, fingerprints)
    assert len(store) == 2 and ("a.jpg", "c/d.jpg") in store and ("c/d.jpg", "a.jpg") not in store
    assert store.read(("a.jpg", "c/d.jpg"))["scores"].tolist() == [10, 11, 12]
    assert store.image_size(("a.jpg", "b.jpg"), 1) == (6, 7)
    assert not list((tmp_path / "raw").glob(".*.tmp"))
    store.close()
    with pytest.raises(InputError, match=r"identity.json: .*other settings \(matcher \"a\" -> \"b\"\)"):
        RawMatchStore(tmp_path / "raw", {"matcher": "b"}, fingerprints)
    changed = RawMatchStore(tmp_path / "raw", {"matcher": "a"}, {**fingerprints, "b.jpg": "2:b"})
    assert list(changed.index) == [("a.jpg", "c/d.jpg")]  # the pair of the changed image is matched again


# --- match_dense end to end ----------------------------------------------------------------------


def test_match_dense_known_scene(tmp_path, caplog):
    names = make_images(tmp_path / "images", 5)
    write_pairs(tmp_path / "pairs.txt", all_pairs(names) + [("im1.png", "im0.png"), ("im2.png", "im2.png")])
    stub = StubMatcher()
    with caplog.at_level(logging.INFO):
        features, matches = match_dense.main(
            "eloftr_reweight_lite", tmp_path / "pairs.txt", tmp_path / "images", tmp_path / "out", matcher=stub
        )
    assert features == tmp_path / "out" / "feats_matches-eloftr-reweight-lite.h5"
    assert matches == tmp_path / "out" / "matches-eloftr-reweight-lite_pairs.h5"
    assert len(stub.calls) == 10  # repeated and self-pairs dropped
    assert "10 pairs matched" in caplog.text and "5 images got new keypoints" in caplog.text
    assert not matches.with_suffix(".raw").exists()
    assert list_h5_names(features) == names

    ids = {n: true_keypoint_ids(features, n) for n in names}
    with h5py.File(features) as f, h5py.File(matches) as fm:
        assert f["im0.png/keypoints"].dtype == np.float32 and f["im0.png/image_size"][()].tolist() == [W, H]
        assert len(f["im0.png/scores"]) == len(f["im0.png/keypoints"])
        group = fm["im0.png/im1.png"]
        assert group["matches0"].dtype == np.int32 and len(group["matches0"]) == len(f["im0.png/keypoints"])
    for name in names:  # one keypoint per visible world point, on it
        kps = read_keypoints(features, name)
        assert (ids[name] >= 0).sum() == len(kps)
    for a, b in all_pairs(names):
        m, scores = read_matches(matches, a, b)
        both = (ids[a] >= 0) & (ids[b] >= 0)
        expected = {(int(x), int(y)) for x, y in zip(ids[a][both], ids[b][both])}
        assert {tuple(x) for x in m.tolist()} == expected  # every covisible point, consistent tracks
        assert np.all((scores >= 0.2) & (scores <= 1))

    stub.calls.clear()
    with caplog.at_level(logging.INFO):
        match_dense.main(
            "eloftr_reweight_lite", tmp_path / "pairs.txt", tmp_path / "images", tmp_path / "out", matcher=stub
        )
    assert stub.calls == [] and "already in" in caplog.text


def test_fixed_reference_keypoints(tmp_path):
    names = make_images(tmp_path / "images", 4)
    write_pairs(tmp_path / "map.txt", all_pairs(names[:3]))
    features, _ = match_dense.main(
        "eloftr_reweight_lite", tmp_path / "map.txt", tmp_path / "images", tmp_path / "map", matcher=StubMatcher()
    )
    before = h5_contents(features)

    # localization-style: a new image against fixed ones, from a reference file ...
    write_pairs(tmp_path / "loc.txt", [("im3.png", "im0.png"), ("im3.png", "im1.png")])
    stub = StubMatcher()
    loc_features, loc_matches = match_dense.main(
        {"max_kps": None},
        tmp_path / "loc.txt",
        tmp_path / "images",
        tmp_path / "loc",
        features_ref=features,
        matcher=stub,
    )
    assert stub.calls == [(0, 3), (1, 3)]  # the fixed image is matched as image 0 (lattice side)
    assert list_h5_names(loc_features) == ["im3.png"]
    new_ids = true_keypoint_ids(loc_features, "im3.png")
    for ref in ("im0.png", "im1.png"):
        m, _ = read_matches(loc_matches, "im3.png", ref)
        ref_ids = true_keypoint_ids(features, ref)
        both = (new_ids >= 0) & (ref_ids >= 0)
        assert {tuple(x) for x in m.tolist()} == {(int(x), int(y)) for x, y in zip(new_ids[both], ref_ids[both])}

    # ... or appended to the mapping files themselves: existing images keep their keypoints
    match_dense.main(
        "eloftr_reweight_lite",
        tmp_path / "loc.txt",
        tmp_path / "images",
        matcher=StubMatcher(),
        features=features,
        matches=tmp_path / "map" / "matches-eloftr-reweight-lite_map.h5",
    )
    after = h5_contents(features)
    assert all(np.array_equal(after[k], v) for k, v in before.items())
    assert "im3.png/keypoints" in after
    assert np.array_equal(after["im3.png/keypoints"], read_keypoints(loc_features, "im3.png"))


def test_bad_inputs(tmp_path, caplog):
    names = make_images(tmp_path / "images", 3)
    write_pairs(tmp_path / "pairs.txt", [("im0.png", "im1.png"), ("im1.png", "nope.png")])
    stub = StubMatcher()
    with pytest.raises(InputError, match=r"pairs.txt:2: image 'nope.png' not found"):
        match_dense.main(
            "eloftr_reweight_lite", tmp_path / "pairs.txt", tmp_path / "images", tmp_path / "out", matcher=stub
        )
    assert stub.calls == [] and not (tmp_path / "out").exists()

    (tmp_path / "images" / "broken.png").write_bytes(b"not a png")
    write_pairs(tmp_path / "pairs.txt", [("im0.png", "broken.png"), *all_pairs(names), ("broken.png", "im2.png")])
    with caplog.at_level(logging.INFO):
        features, matches = match_dense.main(
            "eloftr_reweight_lite", tmp_path / "pairs.txt", tmp_path / "images", tmp_path / "out", matcher=stub
        )
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "broken.png: cannot be decoded" in warnings[0]  # reported once
    assert "2 pairs skipped for 1 unreadable images (broken.png)" in caplog.text
    assert len(stub.calls) == 3 and list_h5_names(features) == names
    assert len(list_h5_names(matches)) == 3
    with pytest.raises(InputError, match="reference features file not found"):
        match_dense.main(
            "eloftr_reweight_lite",
            tmp_path / "pairs.txt",
            tmp_path / "images",
            tmp_path / "o2",
            features_ref=tmp_path / "absent.h5",
            matcher=stub,
        )


def test_killed_run_resumes_to_identical_files(tmp_path):
    names = make_images(tmp_path / "images", 5)
    write_pairs(tmp_path / "pairs.txt", all_pairs(names))
    args = [str(tmp_path / "images"), str(tmp_path / "pairs.txt"), str(tmp_path / "killed"), 0.4]
    code = (
        f"import sys; sys.path.insert(0, {str(Path(__file__).parent)!r});"
        f" import test_match_dense as t; t.run_stub(*{args!r})"
    )
    process = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    raw = tmp_path / "killed" / "matches-eloftr-reweight-lite_pairs.raw"
    deadline = time.time() + 120
    while len(list(raw.glob("shard-*.h5"))) < 2 and process.poll() is None and time.time() < deadline:
        time.sleep(0.05)
    os.kill(process.pid, signal.SIGKILL)
    process.wait()
    stored = len(list(raw.glob("shard-*.h5")))
    assert 2 <= stored < 5, "the run was not killed mid-way"
    assert not list((tmp_path / "killed").glob("*.h5"))  # no output file, complete or partial

    stub = StubMatcher()
    lite = {"name": "eloftr_reweight_lite", "chunk_size": 2}
    match_dense.main(lite, tmp_path / "pairs.txt", tmp_path / "images", tmp_path / "killed", matcher=stub)
    assert len(stub.calls) == 10 - 2 * stored  # finished pairs were skipped
    match_dense.main(lite, tmp_path / "pairs.txt", tmp_path / "images", tmp_path / "clean", matcher=StubMatcher())
    for name in ("feats_matches-eloftr-reweight-lite.h5", "matches-eloftr-reweight-lite_pairs.h5"):
        assert_same_files(tmp_path / "killed" / name, tmp_path / "clean" / name)


def test_crash_while_writing_keeps_files_and_resumes(tmp_path, monkeypatch):
    names = make_images(tmp_path / "images", 4)
    write_pairs(tmp_path / "first.txt", all_pairs(names[:3]))
    write_pairs(tmp_path / "more.txt", all_pairs(names))
    for out in ("crash", "clean"):
        match_dense.main(
            "eloftr_reweight_lite",
            tmp_path / "first.txt",
            tmp_path / "images",
            tmp_path / out,
            matches=tmp_path / out / "m.h5",
            matcher=StubMatcher(),
        )
    before = {p.name: p.read_bytes() for p in (tmp_path / "crash").glob("*.h5")}

    def crash(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(match_dense, "write_pair_matches", crash)
    with pytest.raises(KeyboardInterrupt):
        match_dense.main(
            "eloftr_reweight_lite",
            tmp_path / "more.txt",
            tmp_path / "images",
            tmp_path / "crash",
            matches=tmp_path / "crash" / "m.h5",
            matcher=StubMatcher(),
        )
    assert (tmp_path / "crash" / "m.raw").is_dir()
    assert (tmp_path / "crash" / "m.h5").read_bytes() == before["m.h5"]  # untouched
    monkeypatch.undo()
    other_weights = StubMatcher()
    other_weights.fingerprint = "0123456789abcdef"  # matches of other weights are never mixed in
    with pytest.raises(
        InputError, match=r"feats_matches-eloftr-reweight-lite.h5: made with other settings \(weights null -> "
    ):
        match_dense.main(
            "eloftr_reweight_lite",
            tmp_path / "more.txt",
            tmp_path / "images",
            tmp_path / "crash",
            matches=tmp_path / "crash" / "m.h5",
            matcher=other_weights,
        )
    resumed = StubMatcher()
    match_dense.main(
        "eloftr_reweight_lite",
        tmp_path / "more.txt",
        tmp_path / "images",
        tmp_path / "crash",
        matches=tmp_path / "crash" / "m.h5",
        matcher=resumed,
    )
    assert resumed.calls == []  # everything came from the raw store
    match_dense.main(
        "eloftr_reweight_lite",
        tmp_path / "more.txt",
        tmp_path / "images",
        tmp_path / "clean",
        matches=tmp_path / "clean" / "m.h5",
        matcher=StubMatcher(),
    )
    for name in ("feats_matches-eloftr-reweight-lite.h5", "m.h5"):
        assert_same_files(tmp_path / "crash" / name, tmp_path / "clean" / name)
    assert not list((tmp_path / "crash").glob(".*"))


def test_real_matcher_tiny(tmp_path):
    rng = np.random.default_rng(0)
    (tmp_path / "images").mkdir()
    texture = cv2.GaussianBlur((rng.random((80, 100)) * 255).astype(np.uint8), (0, 0), 1.5)
    for i in range(3):
        cv2.imwrite(str(tmp_path / "images" / f"{i}.png"), texture[i : i + 64, 2 * i : 2 * i + 80])
    write_pairs(tmp_path / "pairs.txt", [("0.png", "1.png"), ("0.png", "2.png"), ("1.png", "2.png")])
    torch = pytest.importorskip("torch")
    torch.manual_seed(0)
    features, matches = match_dense.main(
        {"model": {"weights": "random"}, "batch_size": 2}, tmp_path / "pairs.txt", tmp_path / "images", tmp_path / "out"
    )
    with h5py.File(features) as f, h5py.File(matches) as fm:
        for a, b in (("0.png", "1.png"), ("0.png", "2.png"), ("1.png", "2.png")):
            m0 = fm[f"{a}/{b}/matches0"][()]
            assert m0.dtype == np.int32 and len(m0) == len(f[f"{a}/keypoints"])
            assert m0.max(initial=-1) < len(f[f"{b}/keypoints"])
        assert f["0.png/image_size"][()].tolist() == [80, 64]


@pytest.mark.parametrize(
    "name", sorted(n for n, c in match_dense.confs.items() if c["model"]["name"] == "eloftr_reweight")
)
def test_every_conf_builds_its_matcher(name):  # the peers' confs: tests/test_xfeat_peers.py
    conf = match_dense.resolve_conf({"name": name, "model": {"weights": "random"}})
    matcher = match_dense.build_pair_matcher(conf)
    network = conf["model"]["network"]
    candidates = [(r // 90, float(z)) for r in network.get("rotations", [0]) for z in network.get("zooms", [1.0])]
    assert matcher.matcher.candidates == candidates  # (quarter turns, zoom) of image 1, each orientation at each zoom
    assert matcher.matcher.conf["resize_max"] == conf["preprocessing"]["resize_max"] == 1024
    assert conf["output"].startswith("matches-") and conf["cell_size"] >= 1 and conf["max_error"] > 0


def test_a_worker_with_other_weights_is_refused():
    conf = match_dense.resolve_conf("eloftr_reweight")
    with pytest.raises(
        InputError, match=r"xfeat-eloftr.pt: on .* these are other weights than the driver's \(sha256 000000000000"
    ):
        match_dense.build_pair_matcher(conf, "0" * 64)


def test_hloc_style_calls(tmp_path):
    """hloc's way of calling match_dense: features as a name prefix, max_kps as an argument."""
    names = make_images(tmp_path / "images", 3)
    write_pairs(tmp_path / "pairs.txt", all_pairs(names))
    features, matches = match_dense.main(
        "eloftr_reweight_lite", tmp_path / "pairs.txt", tmp_path / "images", tmp_path / "out",
        features="feats-hloc_", max_kps=5, matcher=StubMatcher(),
    )  # fmt: skip
    assert features == tmp_path / "out" / "feats-hloc_matches-eloftr-reweight-lite.h5"
    assert matches == tmp_path / "out" / "matches-eloftr-reweight-lite_pairs.h5"
    assert all(len(read_keypoints(features, name)) == 5 for name in names)  # max_kps as hloc passes it
    with pytest.raises(InputError, match="give an export folder"):
        match_dense.main("eloftr_reweight_lite", tmp_path / "pairs.txt", tmp_path / "images", features="feats_")
