"""localize_sfm on a synthetic scene: pycolmap.synthesize_dataset gives cameras and 3D points; five
images form the model, three are queries (their frames deregistered, so the model has none of their
observations). Keypoints and matches are written in our HDF5 formats from the known projections
(plus wrong matches), and the recovered query poses are compared with the truth."""

import json

import h5py
import numpy as np
import pycolmap
import pytest

from sfm_reweight import cli, localize_sfm
from sfm_reweight.evaluate_localization import evaluate, pose_error
from sfm_reweight.io import read_matches, write_features, write_matches
from sfm_reweight.keypoint_aggregation import to_matches0
from sfm_reweight.utils.conf import ConfError, overlay, resolve
from sfm_reweight.utils.errors import InputError
from sfm_reweight.utils.pairs import write_pairs
from sfm_reweight.utils.queries import read_results

WIDTH, HEIGHT, PARAMS = 1280, 960, [1000.0, 640.0, 480.0, 0.02]  # SIMPLE_RADIAL f, cx, cy, k
NUM_DB, QUERIES = 5, ("q/good0.png", "q/good1.png", "q/outliers.png")


def observations(image: pycolmap.Image) -> tuple[np.ndarray, np.ndarray]:
    """Keypoints [N,2] (our pixel-centre convention) and 3D point ids [N] (-1: none) of an image."""
    xy = np.array([p.xy for p in image.points2D]) - 0.5
    ids = np.array([p.point3D_id if p.has_point3D() else -1 for p in image.points2D], np.int64)
    return xy, ids


def query_matches(rng, query_ids: np.ndarray, db_ids: np.ndarray, outliers: float) -> np.ndarray:
    """Matches [M,2] (query keypoint, db keypoint) of the keypoints of a common 3D point, a fraction
    `outliers` of them moved to random db keypoints; a query of another place (outliers=1) gets
    random matches for a few of its keypoints, as a matcher would."""
    common, iq, idb = np.intersect1d(query_ids, db_ids, return_indices=True)
    m = np.stack([iq, idb], -1)[common >= 0]
    if outliers == 1:
        m = m[rng.random(len(m)) < 0.1]
    wrong = rng.random(len(m)) < outliers
    m[wrong, 1] = rng.integers(0, len(db_ids), wrong.sum())
    return m


@pytest.fixture(scope="module")
def scene(tmp_path_factory) -> dict:
    root = tmp_path_factory.mktemp("loc")
    options = pycolmap.SyntheticDatasetOptions(
        num_rigs=1,
        num_cameras_per_rig=1,
        num_frames_per_rig=NUM_DB + len(QUERIES),
        num_points3D=250,
        camera_width=WIDTH,
        camera_height=HEIGHT,
        camera_model_id=pycolmap.CameraModelId.SIMPLE_RADIAL,
        camera_params=PARAMS,
        num_points2D_without_point3D=20,
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
    db_names = [model.images[i].name for i in image_ids[:NUM_DB]]
    model.write(root)  # queries stay in the model as unregistered images

    rng = np.random.default_rng(0)
    db_obs = {model.images[i].name: observations(model.images[i]) for i in image_ids[:NUM_DB]}
    query_ids = {}
    with h5py.File(root / "features.h5", "w") as f:
        for name, (xy, _) in db_obs.items():  # the model's keypoint order
            write_features(f, name, xy, np.ones(len(xy)), (WIDTH, HEIGHT))
        for name, (xy, ids) in query_obs.items():
            order = rng.permutation(len(xy))
            write_features(f, name, xy[order], np.ones(len(xy)), (WIDTH, HEIGHT))
            query_ids[name] = ids[order]
    with h5py.File(root / "matches.h5", "w") as f:
        for query, ids in query_ids.items():
            for db, (_, db_ids) in db_obs.items():
                m = query_matches(rng, ids, db_ids, 1.0 if query == "q/outliers.png" else 0.15)
                if db == db_names[0]:  # stored the other way round: the reader must flip it
                    write_matches(f, db, query, *to_matches0(m[:, ::-1], np.ones(len(m)), len(db_ids)))
                else:
                    write_matches(f, query, db, *to_matches0(m, np.ones(len(m)), len(ids)))
    lines = [
        f"{q} SIMPLE_RADIAL {WIDTH} {HEIGHT} {' '.join(map(str, PARAMS))}" for q in (*QUERIES, "q/unretrieved.png")
    ]
    (root / "queries_with_intrinsics.txt").write_text("\n".join(lines) + "\n")
    pairs = [(q, db) for q in QUERIES for db in db_names] + [
        (QUERIES[0], "not_in_model.png"),
        ("q/no_intrinsics.png", db_names[0]),
    ]
    write_pairs(root / "pairs-loc.txt", pairs)
    return {"root": root, "model": root, "truth": truth, "db": db_names, "query_ids": query_ids, "db_obs": db_obs}


def run(scene, tmp_path, conf="default", **kwargs):
    root = scene["root"]
    args = dict(
        reference_sfm=scene["model"],
        queries=root / "queries_with_intrinsics.txt",
        retrieval=root / "pairs-loc.txt",
        features=root / "features.h5",
        matches=root / "matches.h5",
        results=tmp_path / "results.txt",
    )
    args.update(kwargs)
    return localize_sfm.main(conf, **args)


def test_localize_queries(scene, tmp_path, caplog):
    with caplog.at_level("INFO"):
        summary = run(scene, tmp_path)
    assert summary["queries"] == 4 and summary["localized"] == 2
    assert set(summary["failed"]) == {"q/outliers.png", "q/unretrieved.png"}
    assert "localized 2 / 4 queries, median inliers" in caplog.text
    assert "not_in_model.png" in caplog.text and "q/no_intrinsics.png" in caplog.text  # dropped with warnings

    results = read_results(tmp_path / "results.txt")
    assert list(results) == ["good0.png", "good1.png"]  # basenames; no line for the failed queries
    for name in ("q/good0.png", "q/good1.png"):
        position, rotation = pose_error(results[name.split("/")[-1]], scene["truth"][name])
        assert position < 0.01 and rotation < 0.1, (name, position, rotation)
    report = evaluate(tmp_path / "results.txt", scene["truth"])
    assert report["recall"]["0.25m,2deg"] == pytest.approx(100 * 2 / 3)

    logs = json.loads((tmp_path / "results.txt_logs.json").read_text())
    good, bad = logs["loc"]["q/good0.png"], logs["loc"]["q/outliers.png"]
    assert good["localized"] and good["failure"] is None and good["db"] == scene["db"]
    assert good["best_db"] == max(good["inliers_per_db"], key=good["inliers_per_db"].get)
    corr = good["correspondences"]
    assert (
        len(corr["keypoint_ids"])
        == len(corr["point3D_ids"])
        == len(corr["db"])
        == len(corr["inliers"])
        == good["num_correspondences"]
    )
    correct = scene["query_ids"]["q/good0.png"][corr["keypoint_ids"]] == np.array(corr["point3D_ids"])
    inliers = np.array(corr["inliers"])
    assert correct.sum() > 200 and inliers[correct].all()  # every true correspondence is an inlier
    assert inliers[~correct].sum() < 0.1 * (~correct).sum() and good["num_inliers"] == inliers.sum()
    assert not bad["localized"] and bad["cam_from_world"] is None and bad["failure"]
    assert logs["loc"]["q/unretrieved.png"]["failure"] == "no retrieved images in the model"


def test_one_keypoint_several_points_gives_several_correspondences(scene, tmp_path):
    """Each distinct (query keypoint, 3D point) through any db image is one correspondence, vouched
    for by every db image that gives it."""
    run(scene, tmp_path)
    corr = json.loads((tmp_path / "results.txt_logs.json").read_text())["loc"]["q/good1.png"]["correspondences"]
    model = pycolmap.Reconstruction(scene["model"])
    expected: dict[tuple[int, int], set[str]] = {}
    with h5py.File(scene["root"] / "matches.h5") as f:
        for db in scene["db"]:
            m, _ = read_matches(f, "q/good1.png", db)
            db_ids = scene["db_obs"][db][1]
            for kq, kdb in m:
                if db_ids[kdb] >= 0:
                    expected.setdefault((int(kq), int(db_ids[kdb])), set()).add(db)
    got = {
        (k, p): {scene["db"][i] for i in dbs}
        for k, p, dbs in zip(corr["keypoint_ids"], corr["point3D_ids"], corr["db"])
    }
    assert got == expected
    assert len({k for k, _ in got}) < len(got)  # some keypoint maps to several 3D points
    assert all(p in model.points3D for _, p in got)


def test_min_inliers_and_no_fallback_pose(scene, tmp_path):
    summary = run(scene, tmp_path, {"min_inliers": 100000})
    assert summary["localized"] == 0 and (tmp_path / "results.txt").read_text() == ""
    log = json.loads((tmp_path / "results.txt_logs.json").read_text())["loc"]["q/good0.png"]
    assert "fewer than min_inliers=100000" in log["failure"] and log["num_inliers"] > 100


def test_covisibility_clustering(scene, tmp_path):
    """Two groups of db images without a common 3D point (each keeps half of the points) form two
    clusters, each localized on its own; the pose is that of the cluster with more inliers."""
    model = pycolmap.Reconstruction(scene["model"])
    ids = {model.images[i].name: i for i in model.reg_image_ids()}
    group_a, group_b = scene["db"][:3], scene["db"][3:]
    for point_id in list(model.point3D_ids()):
        drop = group_b if point_id % 2 == 0 else group_a
        track = [
            (e.image_id, e.point2D_idx) for e in model.points3D[point_id].track.elements
        ]  # copies: deleting shifts them
        for image_id, point2D_idx in track:
            if model.images[image_id].name in drop:
                model.delete_observation(image_id, point2D_idx)
    clusters = localize_sfm.covisibility_clusters(model, [ids[n] for n in scene["db"]])
    assert [[model.images[i].name for i in c] for c in clusters] == [group_a, group_b]

    # the model's points2D keep their order, so the fixture's features and matches still apply
    summary = run(scene, tmp_path, "covisibility", reference_sfm=model)
    assert summary["localized"] == 2
    log = json.loads((tmp_path / "results.txt_logs.json").read_text())["loc"]["q/good0.png"]
    assert len(log["clusters"]) == 2 and log["db"] == log["clusters"][log["best_cluster"]]["db"]
    position, rotation = pose_error(read_results(tmp_path / "results.txt")["good0.png"], scene["truth"]["q/good0.png"])
    assert position < 0.01 and rotation < 0.1


def test_bad_inputs(scene, tmp_path):
    root = scene["root"]
    with pytest.raises(InputError, match="missing.h5: file not found"):
        run(scene, tmp_path, features=root / "missing.h5")
    (tmp_path / "pairs.txt").write_text("q/no_intrinsics.png db.png\n")
    with pytest.raises(InputError, match="pairs.txt: none of its queries is in the query list"):
        run(scene, tmp_path, retrieval=tmp_path / "pairs.txt")
    (tmp_path / "pairs.txt").write_text("q/good0.png not_in_model.png\n")
    with pytest.raises(InputError, match="pairs.txt: none of the retrieved database images is a registered image"):
        run(scene, tmp_path, retrieval=tmp_path / "pairs.txt")
    with h5py.File(tmp_path / "other.h5", "w") as f:  # a db image with other keypoints than the model's
        write_features(f, scene["db"][1], np.zeros((3, 2)), np.ones(3), (WIDTH, HEIGHT))
    with pytest.raises(InputError, match=r"other.h5: .* has 3 keypoints but \d+ in the model"):
        run(scene, tmp_path, features_ref=tmp_path / "other.h5")
    with pytest.raises(ConfError, match="unknown key 'ransac_thresh'"):
        run(scene, tmp_path, {"ransac_thresh": 4})


def test_hloc_flags_are_taken():
    parser = cli.parser(None, localize_sfm.confs, "default")
    localize_sfm.add_hloc_flags(parser)
    parser.add_argument("--covisibility_clustering", action="store_true")
    args = parser.parse_args(["--covisibility_clustering", "--prepend_camera_name", "--ransac_thresh", "4"])
    conf = resolve(localize_sfm.confs, overlay(cli.conf_from_args(args), localize_sfm.hloc_flags(args)))
    assert conf["covisibility_clustering"] is True and conf["result_names"] == "camera"
    assert conf["estimation"]["ransac"]["max_error"] == 4
