"""The main job: the embedded rendered scene, scoring against known cameras, and
sfm_reweight/pipelines/reconstruct.py end to end (SIFT path, so that it does not depend on trained weights)."""

import json
import shutil

import cv2
import numpy as np
import pycolmap
import pytest

from sfm_reweight.pipelines import reconstruct as reconstruct_pipeline
from sfm_reweight.scenes.demo_scene import IMAGE_SIZE, cameras, render_demo_scene
from sfm_reweight.ground_truth import DatasetFormatError
from sfm_reweight.evaluate_sfm import camera_centre_errors, covisible_pair_angles, read_camera_centres
from sfm_reweight.utils.errors import InputError
from sfm_reweight.utils.pairs import read_pairs


@pytest.fixture(scope="module")
def reconstruct():
    return reconstruct_pipeline


@pytest.fixture(scope="module")
def scene(tmp_path_factory):
    root = tmp_path_factory.mktemp("square")
    render_demo_scene(root)
    return root


def test_demo_scene_views_and_ground_truth(scene):
    names = sorted(p.name for p in (scene / "images").iterdir())
    assert names == [f"view_{k:02d}.jpg" for k in range(12)]
    for name in names[::4]:
        image = cv2.imread(str(scene / "images" / name))
        assert image.shape == (IMAGE_SIZE[1], IMAGE_SIZE[0], 3)
        assert image.std() > 20  # textured, not a blank render
    centres = read_camera_centres(scene / "gt_cameras")
    for name, camera in zip(names, cameras()):
        assert np.allclose(centres[name], camera.centre, atol=1e-6)
    # a rerun keeps what is there (deterministic rendering): nothing is rewritten
    before = {p: p.stat().st_mtime_ns for p in (scene / "images").iterdir()}
    render_demo_scene(scene)
    assert before == {p: p.stat().st_mtime_ns for p in (scene / "images").iterdir()}


def test_camera_centre_errors_undo_a_similarity():
    options = pycolmap.SyntheticDatasetOptions(num_rigs=1, num_cameras_per_rig=1, num_frames_per_rig=6, num_points3D=50)
    pycolmap.set_random_seed(0)
    model = pycolmap.synthesize_dataset(options)
    R = cv2.Rodrigues(np.array([0.3, -0.2, 0.9]))[0]
    gt = {im.name: 2.5 * R @ im.projection_center() + [1.0, -2.0, 0.5] for im in model.images.values()}
    errors, sim = camera_centre_errors(model, gt)
    assert errors["common"] == 6 and errors["max"] < 1e-9 and abs(errors["scale"] - 2.5) < 1e-9
    moved = sorted(gt)[0]
    gt[moved] = gt[moved] + [0.0, 0.0, 1.0]  # one camera 1 unit off: the median stays small
    errors, _ = camera_centre_errors(model, gt)
    assert errors["errors"][moved] > 0.5 and errors["median"] < 0.3
    errors, sim = camera_centre_errors(model, dict(list(gt.items())[:2]))
    assert errors["median"] is None and sim is None  # too few cameras to align


def test_ground_truth_folder_errors(tmp_path):
    with pytest.raises(DatasetFormatError, match="no <image name>.camera"):
        read_camera_centres(tmp_path)
    (tmp_path / "a.jpg.camera").write_text("1 0 0\n0 1 0\n")
    with pytest.raises(DatasetFormatError, match="a.jpg.camera"):
        read_camera_centres(tmp_path)


def test_reconstruct_pipeline_with_sift(reconstruct, scene, tmp_path):
    images = tmp_path / "images"
    images.mkdir()
    for k in range(5):
        shutil.copy(scene / "images" / f"view_{k:02d}.jpg", images)
    shutil.copy(scene / "images" / "view_00.jpg", images / "zz_broken.jpg")
    (images / "zz_broken.jpg").write_bytes(b"not a jpeg")  # reported and skipped
    output = tmp_path / "out"
    mapper = {"name": "incremental", "camera_mode": "single"}  # one camera: the views share their intrinsics
    summary = reconstruct.main(images, output, matcher="sift", mapper=mapper, ground_truth=scene / "gt_cameras")
    assert len(pycolmap.Reconstruction(output / "sfm").cameras) == 1
    assert summary["registered"] == 5 and summary["not_registered"] == ["zz_broken.jpg"]
    assert summary["weakly_registered"] == []
    assert summary["matcher"] == "sift" and summary["weights"] is None
    assert summary["camera_centres"]["common"] == 5
    assert summary["camera_centres"]["median"] < 0.05  # metres; the views are 0.6 m apart
    assert json.loads((output / "summary.json").read_text()) == summary
    for picture in ("matches.png", "reconstruction.png"):
        assert cv2.imread(str(output / picture)).std() > 5
    assert (output / "sfm" / "images.bin").exists()

    # scored against a reference model instead (here the first run's): its epipolar geometry for
    # the matches, its centres for the cameras; a folder that is no model fails before any work
    reference = tmp_path / "reference"
    shutil.copytree(output / "sfm", reference)
    with pytest.raises(InputError, match="not a COLMAP model"):
        reconstruct.main(images, tmp_path / "bad", matcher="sift", mapper=mapper, reference_model=images)
    assert not (tmp_path / "bad" / "pairs.txt").exists()
    rerun = reconstruct.main(images, output, matcher="sift", mapper=mapper, reference_model=reference)
    precision = rerun["match_precision"]
    assert (
        precision["pairs"] == 10 and precision["matches"] > precision["verified"] > 0
    )  # 5 images, broken one left out
    assert precision["verified_precision"] > 0.95 and precision["precision"] > 0.5
    assert rerun["camera_centres"]["common"] == 5 and rerun["camera_centres"]["median"] < 1e-3
    assert cv2.imread(str(output / "matches_widest.png")).std() > 5
    reference_model = pycolmap.Reconstruction(reference)
    angles = covisible_pair_angles(reference_model, read_pairs(output / "pairs.txt"))
    assert len(angles) >= 1 and [a for *_, a in angles] == sorted((a for *_, a in angles), reverse=True)
    name0, name1, angle = angles[0]
    assert "zz_broken.jpg" not in (name0, name1) and 0 < angle < 90
    assert covisible_pair_angles(reference_model, [(name0, name1)], min_shared=10**6) == []


@pytest.mark.parametrize("method", ["retrieval", "vocab_tree"])
def test_reconstruct_pipeline_with_retrieval_pairs(reconstruct, scene, tmp_path, method):
    """Each view with its 2 most similar others instead of all pairs: fewer pairs, every view registered."""
    names = [f"view_{k:02d}.jpg" for k in range(6)]
    output = tmp_path / "out"
    summary = reconstruct.main(
        scene / "images",
        output,
        matcher="sift",
        pairs_method=method,
        num_matched=2,
        image_list=names,
        ground_truth=scene / "gt_cameras",
    )
    assert summary["pairs"]["method"] == method and summary["pairs"]["count"] < 15  # exhaustive: 15
    assert summary["registered"] == 6 and summary["camera_centres"]["median"] < 0.05
    assert all(n in names for pair in read_pairs(output / "pairs.txt") for n in pair)


def test_track_refinement_keeps_the_intrinsics_the_mapper_keeps(reconstruct):
    assert reconstruct.refine_conf(None, "incremental") is None
    assert reconstruct.refine_conf("photometric", "incremental")["refine_intrinsics"] is True
    fixed = {"name": "incremental", "refine_intrinsics": False}
    assert reconstruct.refine_conf("photometric", fixed)["refine_intrinsics"] is False
    own = {"name": "photometric", "refine_intrinsics": False}
    assert reconstruct.refine_conf(own, "incremental")["refine_intrinsics"] is False
