"""Runs that meet each other or a bad state: two runs into the same outputs (a lock), a rerun of the
pipeline with another matcher, a features file that is not the model's, a checkpoint of NaNs, a
damaged raw-match store, Ctrl-C, a full disk and an empty query photo. Each ends in one line naming
the file, or in the other work done; none in a traceback or a silently wrong result."""

import errno
import json
import logging
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch

from sfm_reweight import cli, extract_global, match_dense
from sfm_reweight.matcher import Matcher
from sfm_reweight.model.eloftr import ELoFTR
from sfm_reweight.model.weights import CheckpointError, save_checkpoint
from sfm_reweight.pipelines import localize, reconstruct
from sfm_reweight.raw_matches import RawMatchStore
from sfm_reweight.scenes.demo_scene import render_demo_scene
from sfm_reweight.utils import atomic, lock
from sfm_reweight.utils.errors import InputError, SfmReweightError
from sfm_reweight.utils.pairs import write_pairs
from test_match_dense import StubMatcher, all_pairs, make_images

TESTS = Path(__file__).resolve().parent
MAP = [f"view_{k:02d}.jpg" for k in (0, 1, 2, 4, 5)]
QUERY = "view_03.jpg"


def stub_scene(root: Path, n: int) -> tuple[list[str], Path, Path]:
    names = make_images(root / "images", n)
    write_pairs(root / "pairs.txt", all_pairs(names))
    return names, root / "pairs.txt", root / "images"


# --- 1. one run at a time per output ----------------------------------------------------------------


def test_a_second_match_dense_run_into_the_same_files_is_refused(tmp_path):
    names, pairs, images = stub_scene(tmp_path, 6)
    write_pairs(tmp_path / "other.txt", all_pairs(names[:3]))
    out = tmp_path / "out"
    args = [str(images), str(pairs), str(out), 0.5]  # 15 pairs, 0.5 s each: still running when the others start
    code = f"import sys; sys.path.insert(0, {str(TESTS)!r}); import test_match_dense as t; t.run_stub(*{args!r})"
    first = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        raw = out / "matches-eloftr-reweight-lite_pairs.raw"
        deadline = time.time() + 120
        while not list(raw.glob("shard-*.h5")) and first.poll() is None and time.time() < deadline:
            time.sleep(0.05)
        assert first.poll() is None, "the first run ended before the second started"
        lite = {"name": "eloftr_reweight_lite", "chunk_size": 2}
        refused = rf"feats_matches-eloftr-reweight-lite.h5: in use by another run \(pid {first.pid} on "
        for other_pairs in (tmp_path / "other.txt", pairs):  # other pairs (the same features file), the same pairs
            stub = StubMatcher()
            with pytest.raises(InputError, match=refused):
                match_dense.main(lite, other_pairs, images, out, matcher=stub)
            assert stub.calls == []  # refused before any work
        assert first.poll() is None  # and the first run goes on
    finally:
        first.kill()
        first.wait()


def test_sift_global_descriptors_and_pipeline_outputs_are_locked(tmp_path):
    _, pairs, images = stub_scene(tmp_path, 3)
    out = tmp_path / "out"
    out.mkdir()
    holder = rf"\(pid {os.getpid()} on "
    with lock.exclusive(out / "feats_sift.h5"):
        with pytest.raises(InputError, match=rf"feats_sift.h5: in use by another run {holder}"):
            match_dense.main("sift", pairs, images, out)
    with lock.exclusive(out / "global-feats-vlad-xfeat.h5"):
        with pytest.raises(InputError, match=rf"global-feats-vlad-xfeat.h5: in use by another run {holder}"):
            extract_global.main("vlad_xfeat", images, out)
    with lock.exclusive(out, folder=True):
        with pytest.raises(InputError, match=rf"{out}: in use by another run {holder}"):
            reconstruct.main(images, out, matcher="sift")
    assert all(p.suffix == ".lock" for p in out.iterdir())  # nothing written but the lock files
    with pytest.raises(InputError, match="missing: image folder not found"):
        reconstruct.main(tmp_path / "missing", tmp_path / "refused", matcher="sift")
    assert not (tmp_path / "refused").exists()  # refused before any work: no folder, no lock left behind


# --- 2. a pipeline's outputs belong to one matcher; a model to its features file ------------------------


@pytest.fixture(scope="module")
def sift_map(tmp_path_factory) -> dict[str, Path]:
    """A SIFT map of five views of the embedded square (reconstruct.py), a query folder with a view
    between them, and the ground-truth cameras."""
    root = tmp_path_factory.mktemp("square")
    scene = render_demo_scene(root / "scene")
    for folder, names in (("map", MAP), ("queries", [QUERY])):
        (root / folder).mkdir()
        for name in names:
            shutil.copy(scene / name, root / folder)
    output = root / "out"
    summary = reconstruct.main(
        root / "map", output, matcher="sift", mapper={"name": "incremental", "camera_mode": "single"}
    )
    assert summary["registered"] == len(MAP)
    return {
        "map": root / "map",
        "queries": root / "queries",
        "gt": scene.parent / "gt_cameras",
        "output": output,
        "model": output / "sfm",
        "features": Path(summary["features"]),
    }


def test_reconstruct_refuses_another_matcher_in_the_outputs_of_a_run(sift_map, tmp_path):
    output = sift_map["output"]
    before = {p: p.read_bytes() for p in (output / "summary.json", output / "sfm" / "images.bin")}
    for matcher, diff in (
        ("eloftr_reweight_lite", r'matcher "sift" -> "eloftr_reweight_lite"'),  # other files: sfm/ was overwritten
        # the same files: the features file refused it, but only after the pairs were made anew
        ({"name": "sift", "model": {"max_num_features": 1000}}, r"matcher_conf.model.max_num_features 8192 -> 1000"),
    ):
        with pytest.raises(InputError, match=rf"{output}: holds the outputs of a run with another matcher .*{diff}"):
            reconstruct.main(sift_map["map"], output, matcher=matcher)
    assert before == {p: p.read_bytes() for p in before}  # refused before any work
    record = json.loads((sift_map["model"] / "features.json").read_text())  # what the model was built from
    assert record["features"] == str(sift_map["features"].resolve()) and record["made_from"]["conf"]["model"]


def test_localize_refuses_a_features_file_the_model_was_not_built_from(sift_map, tmp_path):
    other = tmp_path / "other-settings.h5"  # made with other settings
    shutil.copy(sift_map["features"], other)
    with h5py.File(other, "a") as f:
        conf = json.loads(f.attrs["conf"])
        conf["preprocessing"]["resize_max"] = 800
        f.attrs["conf"] = json.dumps(conf)
    fewer = tmp_path / "fewer-keypoints.h5"  # the same settings, other keypoints (say, of other photos)
    shutil.copy(sift_map["features"], fewer)
    with h5py.File(fewer, "a") as f:
        keypoints = f[MAP[0]]["keypoints"][:10]
        del f[MAP[0]]["keypoints"]
        f[MAP[0]]["keypoints"] = keypoints
    cases = (
        (other, r"made with other settings than the model .*conf.preprocessing.resize_max 1600 -> 800"),
        (fewer, rf"10 keypoints for {MAP[0]} but \d+ in the model .*: not the features file the model was built from"),
    )
    for features, message in cases:
        output = tmp_path / features.stem
        with pytest.raises(InputError, match=rf"{features}: {message}"):
            localize.main(
                sift_map["map"], sift_map["queries"], output, matcher="sift", model=sift_map["model"], features=features
            )
        assert not (output / "matches-loc.h5").exists()  # refused before any matching


# --- 3. a checkpoint of NaNs ---------------------------------------------------------------------------


def test_a_checkpoint_with_nan_weights_is_refused_at_load(tmp_path):
    model = ELoFTR("lite")
    with torch.no_grad():
        for value in model.state_dict().values():
            if value.is_floating_point():
                value.fill_(float("nan"))
    path = save_checkpoint(model, tmp_path / "diverged.pt")
    with pytest.raises(CheckpointError, match=rf"{path}: non-finite values \(NaN or inf\) in \d+ of \d+ tensors: \w"):
        Matcher("lite", weights=path)


# --- 4. a damaged raw-match store ----------------------------------------------------------------------


def test_a_damaged_raw_store_is_one_line_naming_the_file(tmp_path):
    root = tmp_path / "m.raw"
    identity, fingerprints = {"conf": {"a": 1}}, {"a.png": "1:aa", "b.png": "2:bb"}
    store = RawMatchStore(root, identity, fingerprints)
    kp = np.zeros((3, 2), np.float32)
    store.add(
        {
            ("a.png", "b.png"): {
                "keypoints0": kp,
                "keypoints1": kp,
                "scores": np.ones(3),
                "image_size0": (4, 4),
                "image_size1": (4, 4),
            }
        }
    )
    store.close()
    hint = rf"delete the folder {root} or rerun with --overwrite"

    (root / "identity.json").write_text('{"conf": {"a": 1')  # cut short
    with pytest.raises(InputError, match=rf"{root / 'identity.json'}: damaged \(.*\); {hint}"):
        RawMatchStore(root, identity, fingerprints)
    (root / "identity.json").write_text(json.dumps(identity))

    shard = root / "shard-000000.h5"
    shard.write_bytes(shard.read_bytes()[:200])  # a shard cut short
    with pytest.raises(InputError, match=rf"{shard}: damaged \(.*\); {hint}"):
        RawMatchStore(root, identity, fingerprints)


# --- 5. Ctrl-C -----------------------------------------------------------------------------------------


def test_ctrl_c_is_one_line_and_status_130():
    code = (
        "import signal, sys, time; from sfm_reweight import cli\n"
        # Python keeps SIGINT ignored where the parent ignored it (a background job of a script)
        "signal.signal(signal.SIGINT, signal.default_int_handler)\n"
        "def stage():\n    print('ready', flush=True)\n    time.sleep(60)\n"
        "cli.run(stage)\n"
    )
    process = subprocess.Popen(
        [sys.executable, "-c", code], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=TESTS.parent
    )
    assert process.stdout.readline() == "ready\n"
    process.send_signal(signal.SIGINT)
    _, stderr = process.communicate(timeout=60)
    assert process.returncode == 130
    assert stderr == "interrupted; the same command resumes\n"


# --- 6. a full disk ------------------------------------------------------------------------------------


def test_a_full_disk_is_one_line_and_keeps_the_files(tmp_path, monkeypatch):
    names, _, images = stub_scene(tmp_path, 4)
    write_pairs(tmp_path / "first.txt", all_pairs(names[:3]))
    out = tmp_path / "out"
    match_dense.main(
        "eloftr_reweight_lite", tmp_path / "first.txt", images, out, matches=out / "m.h5", matcher=StubMatcher()
    )
    before = (out / "m.h5").read_bytes()

    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(match_dense, "write_pair_matches", full)
    with pytest.raises(SystemExit) as exit_info:
        cli.run(
            match_dense.main,
            conf="eloftr_reweight_lite",
            pairs=tmp_path / "pairs.txt",
            image_dir=images,
            export_dir=out,
            matches=out / "m.h5",
            matcher=StubMatcher(),
        )
    line = rf"error: {re.escape(str(out / 'm.h5'))}: the disk is full \(\d+ [KMGT]?B left in {re.escape(str(out))};"
    assert re.match(line, exit_info.value.code), exit_info.value.code
    assert (out / "m.h5").read_bytes() == before  # intact
    assert not list(out.glob(".*.tmp"))

    # HDF5 reports it as an OSError without errno, quoting the system's
    hdf5 = "Can't write data (file write failed: errno = 28, error message = 'No space left on device')"
    with pytest.raises(SfmReweightError, match=rf"{re.escape(str(out / 'a.txt'))}: the disk is full"):
        with atomic.atomic_path(out / "a.txt") as tmp:
            tmp.write_text("partial")
            raise OSError(hdf5)
    assert not (out / "a.txt").exists() and not list(out.glob(".*.tmp"))


# --- 7. an empty query photo ---------------------------------------------------------------------------


def test_an_empty_query_photo_is_skipped_and_named(sift_map, tmp_path, caplog):
    queries = tmp_path / "queries"
    shutil.copytree(sift_map["queries"], queries)
    (queries / "empty.jpg").write_bytes(b"")
    output = tmp_path / "out"
    with caplog.at_level(logging.WARNING):
        summary = localize.main(
            sift_map["map"],
            queries,
            output,
            matcher="sift",
            model=sift_map["model"],
            features=sift_map["features"],
            ground_truth=sift_map["gt"],
        )
    assert summary["queries"] == 2 and summary["localized"] == 1
    assert list(summary["failed"]) == ["empty.jpg"] and "unreadable" in summary["failed"]["empty.jpg"]
    assert f"{queries / 'empty.jpg'}: cannot be decoded" in caplog.text  # the user's file, not OUTPUT/images'
    assert str(output / "images" / "empty.jpg") not in caplog.text
