"""The Aachen Day-Night v1.1 and InLoc pipelines end to end on miniature datasets in the real
layouts (tests/helpers/mini_datasets.py), SIFT path so that they do not depend on trained weights;
the submission files' poses are checked against the rendering's ground truth."""

import json

import pycolmap
import pytest

from sfm_reweight.pipelines import aachen_v1_1, inloc
from sfm_reweight.evaluate_localization import evaluate
from sfm_reweight.utils.errors import InputError
from sfm_reweight.utils.pairs import read_pairs

from helpers.mini_datasets import make_aachen, make_inloc


def as_rigid(truth):
    return {name: pycolmap.Rigid3d(pycolmap.Rotation3d(R), t) for name, (R, t) in truth.items()}


def test_aachen_pipeline(tmp_path):
    truth = make_aachen(tmp_path / "aachen_v1.1")
    aachen = aachen_v1_1
    outputs = tmp_path / "outputs"
    # hloc's 12 px RANSAC threshold is for Aachen's 1600-px photos: at 640 px it lets two wrong
    # correspondences of a 70-point query into the pose (0.37 m off); 4 px is the same tolerance here
    localizer = {"name": "default", "estimation": {"ransac": {"max_error": 4.0}}}
    summary = aachen.main(
        tmp_path / "aachen_v1.1", outputs, matcher="sift", num_covis=5, num_loc=5, localizer=localizer
    )
    results = outputs / "Aachen-v1.1_hloc_sift_vlad-xfeat5.txt"
    assert (
        summary["results"] == str(results) and summary["localized_day"] == "3/3" and summary["localized_night"] == "2/2"
    )
    pairs = read_pairs(outputs / "pairs-query-vlad-xfeat5.txt")
    assert len(pairs) == 5 * len(truth) and all(q.startswith("query/") and d.startswith("db/") for q, d in pairs)
    names = [line.split()[0] for line in results.read_text().splitlines()]
    assert all("/" not in n for n in names)  # the benchmark's basenames
    scores = evaluate(results, as_rigid(truth), name_format="basename")
    assert scores["recall"]["0.25m,2deg"] == 100.0  # day and night
    assert json.loads((outputs / "summary.json").read_text()) == summary


def test_inloc_pipeline(tmp_path):
    truth = make_inloc(tmp_path / "inloc")
    outputs = tmp_path / "outputs"
    summary = inloc.main(tmp_path / "inloc", outputs, matcher="sift", num_loc=4)
    results = outputs / "InLoc_hloc_sift_vlad-xfeat4.txt"
    assert summary["localized"] == len(truth) == 3
    scores = evaluate(
        results, as_rigid(truth), thresholds=((0.25, 10.0), (0.5, 10.0), (1.0, 10.0)), name_format="basename"
    )
    assert scores["recall"]["0.25m,10deg"] == 100.0 and scores["median_position_error"] < 0.05


def test_pipelines_name_the_layout_when_a_folder_is_missing(tmp_path):
    with pytest.raises(InputError, match="datasets/aachen_v1.1/README.md"):
        aachen_v1_1.main(tmp_path, tmp_path / "out", matcher="sift")
    with pytest.raises(InputError, match="datasets/inloc/README.md"):
        inloc.main(tmp_path, tmp_path / "out", matcher="sift")
