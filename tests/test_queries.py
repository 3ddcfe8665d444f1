"""Localization's text files (query lists with intrinsics, retrieval, results) and the scoring of
results against ground-truth poses."""

import math
import re

import numpy as np
import pycolmap
import pytest

from sfm_reweight.evaluate_localization import DEFAULT_THRESHOLDS, evaluate, format_report, pose_error
from sfm_reweight.utils.errors import InputError
from sfm_reweight.utils.queries import (
    read_queries,
    read_results,
    read_retrieval,
    result_name,
    result_names,
    write_results,
)

AACHEN_LINES = """\
# name model w h f cx cy k
query/day/nexus4/IMG_20130210_163441.jpg SIMPLE_RADIAL 1600 1200 1469.2 800 600 -0.0353019

query/day/milestone/2010-10-30_17-47-25_73.jpg SIMPLE_RADIAL 1600 1200 1300.5 800 600 0.01
"""


def pose(rotvec_deg, centre) -> pycolmap.Rigid3d:
    """cam_from_world of a camera at `centre` (world) with the rotation of the axis-angle `rotvec_deg`."""
    rotvec = np.radians(np.asarray(rotvec_deg, np.float64))
    angle = np.linalg.norm(rotvec)
    axis = rotvec / angle if angle else np.array([1.0, 0, 0])
    quat = np.r_[axis * np.sin(angle / 2), np.cos(angle / 2)]  # xyzw
    rotation = pycolmap.Rotation3d(quat)
    return pycolmap.Rigid3d(rotation, -rotation.matrix() @ np.asarray(centre, np.float64))


def test_query_list_with_intrinsics(tmp_path):
    (tmp_path / "day_time_queries_with_intrinsics.txt").write_text(AACHEN_LINES)
    (tmp_path / "night_time_queries_with_intrinsics.txt").write_text(
        "query/night/nexus5x/IMG_1.jpg SIMPLE_RADIAL 1600 1200 1400 800 600 0.02\n"
    )
    queries = read_queries(tmp_path / "day_time_queries_with_intrinsics.txt")
    assert list(queries) == [
        "query/day/nexus4/IMG_20130210_163441.jpg",
        "query/day/milestone/2010-10-30_17-47-25_73.jpg",
    ]
    camera = queries["query/day/nexus4/IMG_20130210_163441.jpg"]
    assert camera.model == pycolmap.CameraModelId.SIMPLE_RADIAL and (camera.width, camera.height) == (1600, 1200)
    np.testing.assert_allclose(camera.params, [1469.2, 800, 600, -0.0353019])
    merged = read_queries(tmp_path / "*_time_queries_with_intrinsics.txt")  # hloc's day + night glob
    assert len(merged) == 3 and "query/night/nexus5x/IMG_1.jpg" in merged


@pytest.mark.parametrize(
    "line, problem",
    [
        ("q.jpg SIMPLE_RADIAL 1600 1200 1469.2 800 600", "takes the parameters (f, cx, cy, k)"),
        ("q.jpg SIMPLE_RADIALX 1600 1200 1 2 3 4", "unknown camera model 'SIMPLE_RADIALX'"),
        ("q.jpg PINHOLE 16x0 1200 1 1 2 3", "must be integers"),
        ("q.jpg PINHOLE 1600 1200 1 nan 2 3", "non-finite"),
        ("q.jpg PINHOLE 1600", "expected 'name MODEL width height params...'"),
    ],
)
def test_query_list_errors_name_file_and_line(tmp_path, line, problem):
    path = tmp_path / "queries.txt"
    path.write_text(f"# header\nok.jpg SIMPLE_PINHOLE 10 10 5 5 5\n{line}\n")
    with pytest.raises(InputError, match=rf"queries.txt:3: .*{re.escape(problem)}"):
        read_queries(path)


def test_query_list_missing_empty_duplicate(tmp_path):
    with pytest.raises(InputError, match="no query list found"):
        read_queries(tmp_path / "*_with_intrinsics.txt")
    (tmp_path / "empty.txt").write_text("# nothing\n\n")
    with pytest.raises(InputError, match="empty.txt: no queries"):
        read_queries(tmp_path / "empty.txt")
    (tmp_path / "dup.txt").write_text("a.jpg SIMPLE_PINHOLE 10 10 5 5 5\na.jpg SIMPLE_PINHOLE 10 10 5 5 5\n")
    with pytest.raises(InputError, match=r"dup.txt:2: query 'a.jpg' listed twice \(first at .*dup.txt:1\)"):
        read_queries(tmp_path / "dup.txt")


def test_retrieval_groups_by_query(tmp_path):
    (tmp_path / "pairs.txt").write_text("q1 db/a\nq1 db/b\nq2 db/a\nq1 db/a\n")
    assert read_retrieval(tmp_path / "pairs.txt") == {"q1": ["db/a", "db/b"], "q2": ["db/a"]}


def test_result_names():
    assert result_name("query/day/nexus4/IMG_1.jpg") == "IMG_1.jpg"
    assert result_name("query/day/nexus4/IMG_1.jpg", "camera") == "nexus4/IMG_1.jpg"
    assert result_name("query/day/nexus4/IMG_1.jpg", "full") == "query/day/nexus4/IMG_1.jpg"
    with pytest.raises(InputError, match="both become 'IMG_1.jpg'"):
        result_names(["a/IMG_1.jpg", "b/IMG_1.jpg"], "basename", "queries.txt")
    with pytest.raises(InputError, match="unknown result name format"):
        result_name("a", "stem")


def test_results_round_trip(tmp_path):
    poses = {"IMG_1.jpg": pose([10, -20, 5], [1.5, 2.0, -3.0]), "IMG_2.jpg": pose([0, 0, 0], [0, 0, 0])}
    write_results(tmp_path / "results.txt", poses)
    line = (tmp_path / "results.txt").read_text().splitlines()[0].split()
    qx, qy, qz, qw = poses["IMG_1.jpg"].rotation.quat
    np.testing.assert_allclose([float(v) for v in line[1:5]], [qw, qx, qy, qz])  # w first
    back = read_results(tmp_path / "results.txt")
    assert list(back) == list(poses)
    for name in poses:
        np.testing.assert_allclose(back[name].matrix(), poses[name].matrix(), rtol=0, atol=1e-14)
    (tmp_path / "bad.txt").write_text("IMG_1.jpg 1 0 0 0 1 2\n")
    with pytest.raises(InputError, match=r"bad.txt:1: expected 'name qw qx qy qz tx ty tz'"):
        read_results(tmp_path / "bad.txt")
    (tmp_path / "bad.txt").write_text("IMG_1.jpg 0 0 0 0 1 2 3\n")
    with pytest.raises(InputError, match="bad.txt:1: .*zero quaternion"):
        read_results(tmp_path / "bad.txt")


def test_pose_error_and_recall(tmp_path):
    truth = {f"q/{i}.jpg": pose([5 * i, 10, 0], [i, 0, 1]) for i in range(5)}
    offsets = {  # name -> (rotation about the camera's own axis in degrees, centre offset in metres)
        "0.jpg": (1.0, 0.1),
        "1.jpg": (3.0, 0.3),
        "2.jpg": (8.0, 4.0),
        "3.jpg": (20.0, 0.0),  # 4.jpg: no result
    }
    estimates = {}
    for name, (degrees, metres) in offsets.items():
        gt = truth[f"q/{name}"]
        delta = pose([0, 0, degrees], [0, 0, 0])
        centre = gt.inverse().translation + np.array([0, metres, 0])
        rotation = (delta * gt).rotation
        estimates[name] = pycolmap.Rigid3d(rotation, -rotation.matrix() @ centre)
    p, r = pose_error(estimates["2.jpg"], truth["q/2.jpg"])
    assert p == pytest.approx(4.0) and r == pytest.approx(8.0)

    write_results(tmp_path / "results.txt", estimates)
    write_results(tmp_path / "gt.txt", truth)  # full names: results carry basenames
    report = evaluate(tmp_path / "results.txt", tmp_path / "gt.txt", DEFAULT_THRESHOLDS)
    assert report["queries"] == 5 and report["localized"] == 4
    assert report["recall"] == {"0.25m,2deg": 20.0, "0.5m,5deg": 40.0, "5m,10deg": 60.0}
    assert report["median_position_error"] == pytest.approx(0.3)
    assert report["median_rotation_error"] == pytest.approx(8.0)
    assert report["errors"]["q/4.jpg"] == (math.inf, math.inf)
    assert "4 / 5 queries localized" in format_report(report)
    with pytest.raises(InputError, match="ground truth not found"):
        evaluate(estimates, tmp_path / "missing.txt")
