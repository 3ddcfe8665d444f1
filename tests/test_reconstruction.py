"""reconstruction and triangulation on a synthetic scene: pycolmap.synthesize_dataset gives cameras
and 3D points; their projections (with noise, clutter and wrong matches) are written in our HDF5
formats and reconstructed; the result is compared with the ground truth after a Sim(3)."""

from pathlib import Path

import h5py
import numpy as np
import pycolmap
import pytest

from sfm_reweight import colmap, reconstruction, triangulation
from sfm_reweight.io import read_keypoints, read_matches, write_features, write_matches
from sfm_reweight.keypoint_aggregation import to_matches0
from sfm_reweight.track_conflicts import ambiguous_keypoints
from sfm_reweight.evaluate_sfm import EPIPOLAR_THRESHOLD_PX, camera_centre_errors, epipolar_errors, match_precision
from sfm_reweight.utils.errors import InputError
from sfm_reweight.utils.pairs import read_pairs, write_pairs

NUM_IMAGES, WIDTH, HEIGHT, PARAMS = 8, 320, 240, [300.0, 160.0, 120.0]


@pytest.fixture(scope="module")
def scene(tmp_path_factory) -> dict:
    root = tmp_path_factory.mktemp("scene")
    options = pycolmap.SyntheticDatasetOptions(
        num_rigs=1,
        num_cameras_per_rig=1,
        num_frames_per_rig=NUM_IMAGES,
        num_points3D=300,
        camera_width=WIDTH,
        camera_height=HEIGHT,
        camera_model_id=pycolmap.CameraModelId.SIMPLE_PINHOLE,
        camera_params=PARAMS,
        num_points2D_without_point3D=0,
    )
    pycolmap.set_random_seed(0)
    gt = pycolmap.synthesize_dataset(options)
    (root / "gt").mkdir()
    gt.write(root / "gt")
    (root / "images").mkdir()
    for image in gt.images.values():
        pycolmap.Bitmap.from_array(np.full((HEIGHT, WIDTH), 128, np.uint8)).write(root / "images" / image.name)
    (root / "images" / "broken.png").write_bytes(b"not an image")

    rng = np.random.default_rng(0)
    point_ids = {}
    with h5py.File(root / "features.h5", "w") as f:
        for image in gt.images.values():
            xy = np.array([p.xy for p in image.points2D]) - 0.5  # COLMAP corner convention -> ours
            ids = np.array([p.point3D_id for p in image.points2D])
            order = rng.permutation(len(xy))
            clutter = rng.uniform(0, (WIDTH - 1, HEIGHT - 1), (30, 2))
            keypoints = np.concatenate([xy[order] + rng.normal(0, 0.3, xy.shape), clutter])
            point_ids[image.name] = np.concatenate([ids[order], np.full(30, -1)])
            write_features(f, image.name, keypoints, np.ones(len(keypoints)), (WIDTH, HEIGHT))
    names = sorted(point_ids)
    pairs = [(a, b) for i, a in enumerate(names) for b in names[i + 1 :]]
    with h5py.File(root / "matches.h5", "w") as f:
        for a, b in pairs:
            common, i0, i1 = np.intersect1d(point_ids[a], point_ids[b], return_indices=True)
            m = np.stack([i0, i1], -1)[common >= 0]
            wrong = rng.choice(len(m), len(m) // 20, replace=False)  # 5% wrong matches
            m[wrong, 1] = rng.permutation(m[wrong, 1])
            write_matches(f, a, b, *to_matches0(m, rng.uniform(0.5, 1, len(m)), len(point_ids[a])))
    write_pairs(root / "pairs.txt", pairs)
    write_pairs(root / "pairs-broken.txt", [*pairs, ("broken.png", names[0])])
    return {
        "root": root,
        "gt": gt,
        "images": root / "images",
        "features": root / "features.h5",
        "matches": root / "matches.h5",
        "point_ids": point_ids,  # 3D point of each keypoint (-1: clutter)
    }


def reconstruct(scene: dict, conf, sfm_dir: Path, matches: Path | None = None) -> pycolmap.Reconstruction | None:
    """reconstruction.main on the scene's photos, pairs and features (its matches unless given)."""
    return reconstruction.main(
        conf, sfm_dir, scene["images"], scene["root"] / "pairs.txt", scene["features"], matches or scene["matches"]
    )


def assert_matches_ground_truth(model: pycolmap.Reconstruction, gt: pycolmap.Reconstruction, tolerance: float) -> None:
    """All images registered, camera centres within `tolerance` x the scene extent of the ground
    truth after a Sim(3)."""
    centres = {im.name: im.projection_center() for im in gt.images.values()}
    errors, _ = camera_centre_errors(model, centres)
    extent = np.linalg.norm(np.array(list(centres.values())) - np.mean(list(centres.values()), 0), axis=1).max()
    assert errors["common"] == len(centres) and errors["max"] < tolerance * extent, (errors, extent)


def test_incremental_reconstruction(scene, tmp_path, caplog):
    sfm = tmp_path / "sfm"
    with caplog.at_level("INFO"):
        model = reconstruction.main(
            "incremental", sfm, scene["images"], scene["root"] / "pairs-broken.txt", scene["features"], scene["matches"]
        )
    assert model.num_reg_images() == NUM_IMAGES and model.num_points3D() > 250
    assert model.compute_mean_reprojection_error() < 1.0 and model.compute_mean_track_length() > 5
    assert_matches_ground_truth(model, scene["gt"], 0.01)
    assert "unreadable images left out" in caplog.text and "broken.png" in caplog.text
    assert f"{NUM_IMAGES}/{NUM_IMAGES} images registered" in caplog.text
    for name in ("cameras.bin", "images.bin", "points3D.bin", "database.db", "models/0/images.bin"):
        assert (sfm / name).is_file()
    assert not (sfm / ".model.tmp").exists()
    reread = pycolmap.Reconstruction(sfm)
    assert reread.num_reg_images() == NUM_IMAGES and reread.num_points3D() == model.num_points3D()


def test_images_seeing_few_points_are_reported_as_weakly_registered(scene):
    """A global mapper keeps an image posed however few points survive: such poses are flagged."""
    model = pycolmap.Reconstruction(scene["gt"])
    assert colmap.weakly_registered(model) == []
    image_id = next(iter(model.reg_image_ids()))
    image = model.images[image_id]
    seen = [k for k, p in enumerate(image.points2D) if p.has_point3D()]
    assert len(seen) >= colmap.MIN_POINTS_PER_IMAGE
    for point2D_idx in seen[colmap.MIN_POINTS_PER_IMAGE - 1 :]:  # this image's observations only
        model.delete_observation(image_id, point2D_idx)
    assert colmap.weakly_registered(model) == [image.name]
    assert f"(1 of them see fewer than {colmap.MIN_POINTS_PER_IMAGE} points" in colmap.describe(model, NUM_IMAGES)


def test_epipolar_errors_under_the_true_model(scene):
    """Matches of one 3D point agree with the true cameras to the keypoint noise (0.3 px); the
    shuffled 5% of matches mostly do not."""
    name0, name1 = read_pairs(scene["root"] / "pairs.txt")[0]
    m, _ = read_matches(scene["matches"], name0, name1)
    keypoints0, keypoints1 = read_keypoints(scene["features"], name0), read_keypoints(scene["features"], name1)
    errors = epipolar_errors(scene["gt"], name0, name1, keypoints0[m[:, 0]], keypoints1[m[:, 1]])
    same = scene["point_ids"][name0][m[:, 0]] == scene["point_ids"][name1][m[:, 1]]
    assert same.sum() > 100 and (~same).sum() > 3
    assert np.median(errors[same]) < 0.5 and errors[same].max() < EPIPOLAR_THRESHOLD_PX
    assert np.median(errors[~same]) > EPIPOLAR_THRESHOLD_PX


def test_match_precision_of_matches_and_verified_inliers(scene, tmp_path):
    pairs = read_pairs(scene["root"] / "pairs.txt")
    ids = scene["point_ids"]
    model = reconstruct(scene, "incremental", tmp_path / "sfm")
    reference = pycolmap.Reconstruction(scene["gt"])
    left_out = sorted(ids)[0]
    reference.deregister_frame(reference.find_image_with_name(left_out).frame_id)
    out = match_precision(reference, scene["features"], scene["matches"], pairs, tmp_path / "sfm" / "database.db")

    scored = [(a, b) for a, b in pairs if left_out not in (a, b)]
    assert out["pairs"] == len(scored) == len(out["per_pair"]) and model is not None
    same = 0
    for a, b in scored:
        m, _ = read_matches(scene["matches"], a, b)
        same += int((ids[a][m[:, 0]] == ids[b][m[:, 1]]).sum())
    # every true match counts, and few wrong ones land within 4 px of their epipolar line by chance
    assert same <= out["correct"] < same + 0.3 * (out["matches"] - same)
    assert out["precision"] == out["correct"] / out["matches"] < 0.99
    assert 0 < out["verified"] <= out["matches"] and out["verified_precision"] > 0.99


def test_no_model_says_why(scene, tmp_path, caplog):
    conf = {"name": "incremental", "mapper_options": {"mapper": {"init_min_num_inliers": 10_000}}}
    with caplog.at_level("ERROR"):
        model = reconstruct(scene, conf, tmp_path / "sfm")
    assert model is None
    assert "no model could be built" in caplog.text
    assert "0 reach the 10000 an initial pair needs" in caplog.text and "too weak" in caplog.text


def test_ambiguous_keypoints_of_a_track_that_sees_a_photo_twice():
    """A0-B0-C0 is one point (A2 a duplicate detection 2 px from A0), A1-B1 another; the wrong match
    C0-A1 (its pair given as C-A) joins them, so A and B each see the joined track twice, 90 px
    apart, and C once. Without the wrong match nothing is ambiguous."""
    keypoints = {"A": [(10, 10), (100, 10), (12, 10)], "B": [(20, 10), (110, 10)], "C": [(30, 10)]}
    keypoints = {name: np.array(xy, np.float32) for name, xy in keypoints.items()}
    matches = {("A", "B"): [(0, 0), (1, 1), (2, 0)], ("B", "C"): [(0, 0)], ("C", "A"): [(0, 1)], ("C", "D"): [(0, 0)]}
    flags = ambiguous_keypoints(keypoints, {pair: np.array(m) for pair, m in matches.items()}, 8.0)
    assert {name: f.tolist() for name, f in flags.items()} == {
        "A": [True, True, True],
        "B": [True, True],
        "C": [False],
    }
    del matches["C", "A"]
    flags = ambiguous_keypoints(keypoints, {pair: np.array(m) for pair, m in matches.items()}, 8.0)
    assert not any(f.any() for f in flags.values())  # the duplicate A2 lies within 8 px of A0


def test_unambiguous_mapping_leaves_out_the_inliers_of_joined_tracks(scene, tmp_path, caplog):
    """Tracks are joined from the verified inliers. Every keypoint flagged belongs to a 3D point (or
    clutter) that a wrong inlier touches: only a wrong match can join two points' tracks. The
    conf leaves those keypoints' inliers out and still maps the scene."""
    keep = {"name": "incremental", "drop_ambiguous": False}
    reconstruct(scene, keep, tmp_path / "sfm")  # its database holds every verified inlier
    ids = scene["point_ids"]
    verified = colmap.verified_matches(tmp_path / "sfm" / "database.db")
    keypoints = {name: read_keypoints(scene["features"], name) for name in ids}
    flags = ambiguous_keypoints(keypoints, verified, 8.0)
    touched = set()
    for (a, b), m in verified.items():
        bad = ids[a][m[:, 0]] != ids[b][m[:, 1]]
        touched |= set(ids[a][m[bad, 0]]) | set(ids[b][m[bad, 1]])
    flagged_points = {int(p) for name in flags for p in ids[name][flags[name]]}
    assert touched and flagged_points and flagged_points <= touched

    with caplog.at_level("INFO"):
        model = reconstruct(scene, "unambiguous", tmp_path / "sfm-unambiguous")
    assert "inlier matches of ambiguous keypoints left out" in caplog.text
    assert model.num_reg_images() == NUM_IMAGES
    assert_matches_ground_truth(model, scene["gt"], 0.01)
    with pytest.raises(InputError, match="max_track_spread"):
        reconstruct(scene, {"name": "unambiguous", "max_track_spread": -1}, tmp_path / "bad")
    with pytest.raises(InputError, match="refine_intrinsics='false'; expected True or False"):
        reconstruct(scene, {"refine_intrinsics": "false"}, tmp_path / "bad")
    with pytest.raises(InputError, match="drop_ambiguous=1; expected True, False or 'auto'"):
        reconstruct(scene, {"drop_ambiguous": 1}, tmp_path / "bad")


def test_the_default_drops_the_matches_of_ambiguous_keypoints_over_the_share(scene, tmp_path, caplog, monkeypatch):
    monkeypatch.setattr(reconstruction, "REPEATED_SCENE_SHARE", 0.0)  # any ambiguous keypoint is too many
    with caplog.at_level("INFO"):
        model = reconstruct(scene, "incremental", tmp_path / "sfm")
    assert "ambiguous keypoints are left out" in caplog.text
    assert "inlier matches of ambiguous keypoints left out" in caplog.text
    assert_matches_ground_truth(model, scene["gt"], 0.01)


def test_over_a_fifth_of_ambiguous_keypoints_drops_them_by_default_and_warns(caplog):
    repeated = {"a.jpg": np.array([True, False]), "b.jpg": np.array([False, False, False])}  # 20 %
    default, keep, drop = (
        reconstruction.confs["incremental"],
        {**reconstruction.confs["incremental"], "drop_ambiguous": False},
        reconstruction.confs["unambiguous"],
    )
    with caplog.at_level("INFO"):
        assert not reconstruction.drops_ambiguous(repeated, default)
        assert reconstruction.drops_ambiguous(repeated, drop)
    assert "20% of the keypoints are ambiguous" in caplog.text and "repeat themselves" not in caplog.text
    repeated["b.jpg"][0] = True  # 40 %
    caplog.clear()
    assert reconstruction.drops_ambiguous(repeated, default)
    assert "40% of the keypoints" in caplog.text and "ambiguous keypoints are left out" in caplog.text
    assert caplog.records[-1].levelname == "WARNING"
    caplog.clear()
    assert not reconstruction.drops_ambiguous(repeated, keep)
    assert "the photos may repeat themselves" in caplog.text and "drop_ambiguous=True" in caplog.text
    assert caplog.records[-1].levelname == "WARNING"
    caplog.clear()
    assert not reconstruction.drops_ambiguous(repeated, reconstruction.confs["global"])  # auto: incremental only
    assert "drop_ambiguous=True" in caplog.text
    caplog.clear()
    assert reconstruction.drops_ambiguous(repeated, drop)
    assert "40% of the keypoints" in caplog.text and "repeat themselves" not in caplog.text


@pytest.mark.parametrize("mapper", ["global", "hierarchical"])
def test_global_and_hierarchical_mapping(scene, tmp_path, mapper):
    model = reconstruct(scene, mapper, tmp_path / "sfm")
    assert model.num_reg_images() == NUM_IMAGES and model.compute_mean_reprojection_error() < 1.0
    assert_matches_ground_truth(model, scene["gt"], 0.01)


def test_known_intrinsics_without_verification(scene, tmp_path):
    conf = {
        "camera_mode": "single",
        "camera_model": "SIMPLE_PINHOLE",
        "camera_params": PARAMS,
        "refine_intrinsics": False,
        "skip_geometric_verification": True,  # pairs written with a config
    }
    model = reconstruct(scene, conf, tmp_path / "sfm")
    assert model.num_reg_images() == NUM_IMAGES and model.num_cameras() == 1
    assert next(iter(model.cameras.values())).params.tolist() == PARAMS
    assert_matches_ground_truth(model, scene["gt"], 0.01)


def test_triangulation_with_known_poses(scene, tmp_path):
    model = triangulation.main(
        "default",
        tmp_path / "tri",
        scene["root"] / "gt",
        scene["images"],
        scene["root"] / "pairs.txt",
        scene["features"],
        scene["matches"],
    )
    gt = scene["gt"]
    assert model.num_reg_images() == NUM_IMAGES and model.num_points3D() > 250
    assert model.compute_mean_reprojection_error() < 1.0
    for image in gt.images.values():
        pose = model.find_image_with_name(image.name).cam_from_world()
        assert np.allclose(pose.matrix(), image.cam_from_world().matrix())
    assert pycolmap.Reconstruction(tmp_path / "tri").num_points3D() == model.num_points3D()


def test_unknown_images_fail_before_any_work(scene, tmp_path):
    pairs = tmp_path / "pairs.txt"
    pairs.write_text(
        "camera000001_frame000000.png camera000001_frame000001.png\nmissing.png camera000001_frame000000.png\n"
    )
    with pytest.raises(InputError, match=r"pairs.txt:2: image 'missing.png' not found"):
        reconstruction.main(
            "incremental", tmp_path / "sfm", scene["images"], pairs, scene["features"], scene["matches"]
        )
    assert not (tmp_path / "sfm").exists()
    with pytest.raises(InputError, match=r"pairs-broken.txt:\d+: unknown image 'broken.png'"):
        triangulation.main(
            "default",
            tmp_path / "tri",
            scene["root"] / "gt",
            scene["images"],
            scene["root"] / "pairs-broken.txt",
            scene["features"],
            scene["matches"],
        )
    assert not (tmp_path / "tri").exists()
    with pytest.raises(InputError, match="file not found"):
        reconstruction.main(
            "incremental", tmp_path / "sfm", scene["images"], pairs, Path("absent.h5"), scene["matches"]
        )


def test_a_focal_length_far_from_its_start_is_a_warning(scene, tmp_path, caplog):
    sfm = tmp_path / "sfm"
    with caplog.at_level("INFO"):
        model = reconstruct(scene, "incremental", sfm)
    assert "focal lengths" not in caplog.text  # 300 px found from a start of 384 (1.2 x 320)
    for camera in model.cameras.values():
        camera.params = [camera.params[0] / 4, *camera.params[1:]]
    reconstruction.warn_if_focal_drifted(sfm / "database.db", model)
    assert f"the focal lengths of {NUM_IMAGES} images" in caplog.text and "camera_params" in caplog.text
    caplog.clear()
    for camera in model.cameras.values():
        camera.params = [camera.params[0] * 32, *camera.params[1:]]  # 8x the focal length found
    reconstruction.warn_if_focal_drifted(sfm / "database.db", model)
    assert f"the focal lengths of {NUM_IMAGES} images" in caplog.text
