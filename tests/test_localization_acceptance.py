"""localize_sfm's acceptance rule (min_inliers, min_inlier_ratio, min_inlier_cells) on a synthetic
scene (pycolmap.synthesize_dataset; four images form the model, three are queries): a true query
with 10 % wrong matches keeps its pose; a query whose matches are mostly wrong but with a few that
agree on a pose, and one whose only matches lie in a patch of the image, get more than
`min_inliers` PnP inliers (a pose under the rule of inlier counts alone) and must get none, with
the reason in the summary's `failed` and in the logs."""

import json

import h5py
import numpy as np
import pycolmap
import pytest

from sfm_reweight import localize_inloc, localize_sfm
from sfm_reweight.evaluate_localization import pose_error
from sfm_reweight.io import write_features, write_matches
from sfm_reweight.keypoint_aggregation import to_matches0
from sfm_reweight.utils.conf import ConfError, resolve
from sfm_reweight.utils.pairs import write_pairs
from sfm_reweight.utils.queries import read_results

WIDTH, HEIGHT, PARAMS = 640, 480, [1000.0, 320.0, 240.0, 0.02]  # SIMPLE_RADIAL f, cx, cy, k
NUM_DB = 4
TRUE, FEW_AGREE, PATCH = "q/true.png", "q/few_agree.png", "q/patch.png"
QUERIES = (TRUE, FEW_AGREE, PATCH)
TODAY = {"min_inlier_ratio": 0.0, "min_inlier_cells": 0.0}  # the rule of inlier counts alone


def observations(image: pycolmap.Image) -> tuple[np.ndarray, np.ndarray]:
    """Keypoints [N,2] (our pixel-centre convention) and 3D point ids [N] (-1: none) of an image."""
    xy = np.array([p.xy for p in image.points2D]) - 0.5
    ids = np.array([p.point3D_id if p.has_point3D() else -1 for p in image.points2D], np.int64)
    return xy, ids


@pytest.fixture(scope="module")
def scene(tmp_path_factory) -> dict:
    root = tmp_path_factory.mktemp("acceptance")
    options = pycolmap.SyntheticDatasetOptions(
        num_rigs=1,
        num_cameras_per_rig=1,
        num_frames_per_rig=NUM_DB + len(QUERIES),
        num_points3D=1500,
        camera_width=WIDTH,
        camera_height=HEIGHT,
        camera_model_id=pycolmap.CameraModelId.SIMPLE_RADIAL,
        camera_params=PARAMS,
    )
    pycolmap.set_random_seed(0)
    model = pycolmap.synthesize_dataset(options)
    image_ids = sorted(model.images)
    truth, query_obs = {}, {}
    for name, image_id in zip(QUERIES, image_ids[NUM_DB:]):
        image = model.images[image_id]
        truth[name] = image.cam_from_world()
        query_obs[name] = observations(image)
        model.deregister_frame(image.frame_id)
    db_obs = {model.images[i].name: observations(model.images[i]) for i in image_ids[:NUM_DB]}
    model.write(root)

    rng = np.random.default_rng(0)
    xy, ids = query_obs[FEW_AGREE]
    agree = rng.choice(np.flatnonzero(ids >= 0), 25, replace=False)  # the few correct correspondences
    xy, ids = query_obs[PATCH]
    with_point = np.flatnonzero(ids >= 0)
    edge = xy[with_point[np.argmin(xy[with_point, 0])]]  # the leftmost keypoint with a 3D point
    patch = np.zeros(len(ids), bool)  # and its 40 nearest: the only ones matched
    patch[with_point[np.argsort(np.linalg.norm(xy[with_point] - edge, axis=1))[:40]]] = True
    with h5py.File(root / "features.h5", "w") as f:
        for name, (xy, _) in {**db_obs, **query_obs}.items():
            write_features(f, name, xy, np.ones(len(xy)), (WIDTH, HEIGHT))
    with h5py.File(root / "matches.h5", "w") as f:
        for query, (xy, ids) in query_obs.items():
            for db, (_, db_ids) in db_obs.items():
                common, iq, idb = np.intersect1d(ids, db_ids, return_indices=True)
                m = np.stack([iq, idb], -1)[common >= 0]
                if query == TRUE:
                    wrong = rng.random(len(m)) < 0.1
                    m[wrong, 1] = rng.integers(0, len(db_ids), wrong.sum())
                elif query == FEW_AGREE:  # 80 wrong matches per database image, and the 25 that agree
                    wrong = np.stack([rng.integers(0, len(ids), 80), rng.integers(0, len(db_ids), 80)], -1)
                    m = np.concatenate([m[np.isin(m[:, 0], agree)], wrong])
                else:
                    m = m[patch[m[:, 0]]]
                m = np.unique(m, axis=0)
                m = m[np.unique(m[:, 0], return_index=True)[1]]  # one match per query keypoint
                write_matches(f, query, db, *to_matches0(m, np.ones(len(m)), len(ids)))
    lines = [f"{q} SIMPLE_RADIAL {WIDTH} {HEIGHT} {' '.join(map(str, PARAMS))}" for q in QUERIES]
    (root / "queries_with_intrinsics.txt").write_text("\n".join(lines) + "\n")
    write_pairs(root / "pairs-loc.txt", [(q, db) for q in QUERIES for db in db_obs])
    return {"root": root, "truth": truth}


def run(scene, tmp_path, conf="default"):
    root = scene["root"]
    summary = localize_sfm.main(
        conf,
        reference_sfm=root,
        queries=root / "queries_with_intrinsics.txt",
        retrieval=root / "pairs-loc.txt",
        features=root / "features.h5",
        matches=root / "matches.h5",
        results=tmp_path / "results.txt",
    )
    return summary, json.loads((tmp_path / "results.txt_logs.json").read_text())["loc"]


def test_counts_alone_give_a_pose_to_the_impostors(scene, tmp_path):
    """The case the rule is for: each query has more inliers than min_inliers."""
    summary, logs = run(scene, tmp_path, TODAY)
    assert summary["localized"] == 3
    assert all(logs[q]["num_inliers"] >= localize_sfm.confs["default"]["min_inliers"] for q in QUERIES)


def test_unrelated_queries_get_no_pose_and_a_reason(scene, tmp_path):
    summary, logs = run(scene, tmp_path)
    assert summary["localized"] == 1 and set(summary["failed"]) == {FEW_AGREE, PATCH}
    position, rotation = pose_error(read_results(tmp_path / "results.txt")["true.png"], scene["truth"][TRUE])
    assert position < 0.01 and rotation < 0.1
    true = logs[TRUE]
    assert true["localized"] and true["best_db_inlier_ratio"] > 0.8 and true["inlier_cells"] > 0.5

    few, patch = logs[FEW_AGREE], logs[PATCH]
    assert summary["failed"][FEW_AGREE] == few["failure"]
    assert few["failure"].startswith("rejected: inlier ratio") and "min_inlier_ratio=" in few["failure"]
    assert few["num_inliers"] >= 15 and few["best_db_inlier_ratio"] < 0.3 and few["cam_from_world"] is None
    assert few["inlier_ratio"] == few["num_inliers"] / few["num_correspondences"]
    assert summary["failed"][PATCH] == patch["failure"]
    assert patch["failure"].startswith("rejected: inliers in") and "min_inlier_cells=" in patch["failure"]
    assert patch["best_db_inlier_ratio"] > 0.9 and patch["inlier_cells"] < 0.1 and patch["inlier_hull"] < 0.05
    assert patch["cam_from_world"] is None
    assert list(read_results(tmp_path / "results.txt")) == ["true.png"]


def test_covisibility_clustering_applies_the_rule(scene, tmp_path):
    summary, logs = run(scene, tmp_path, "covisibility")
    assert summary["localized"] == 1 and set(summary["failed"]) == {FEW_AGREE, PATCH}
    assert logs[FEW_AGREE]["failure"].startswith("rejected: inlier ratio")


def test_the_rule_is_part_of_the_confs():
    for confs in (localize_sfm.confs, localize_inloc.confs):
        for name in confs:
            conf = resolve(confs, name)
            assert conf["min_inlier_ratio"] > 0 and conf["min_inlier_cells"] > 0
    with pytest.raises(ConfError, match="unknown key 'min_inlier_share'"):
        resolve(localize_sfm.confs, {"min_inlier_share": 0.5})
    with pytest.raises(ConfError, match="unknown key 'min_inlier_share'"):
        resolve(localize_inloc.confs, {"min_inlier_share": 0.5})
