"""sfm_reweight/pipelines/localize.py end to end on the embedded square (SIFT path, so that it does not depend on
trained weights): a map from eight views, two views between them as queries with the map's ground
truth, and an unrelated photo that must be reported as not localized."""

import json
import shutil

import cv2
import numpy as np
import pytest

from sfm_reweight.pipelines import localize
from sfm_reweight.scenes.demo_scene import render_demo_scene
from sfm_reweight.utils.errors import InputError
from sfm_reweight.utils.queries import read_results

from helpers.calibration import textured_image

QUERIES = ("view_03.jpg", "view_08.jpg")


@pytest.fixture(scope="module")
def split(tmp_path_factory):
    root = tmp_path_factory.mktemp("square")
    scene = render_demo_scene(root / "scene").parent
    for folder in ("map", "queries"):
        (root / folder).mkdir()
    for path in sorted((scene / "images").iterdir()):
        if path.name in QUERIES:
            shutil.copy(path, root / "queries")
        elif int(path.stem[-2:]) < 11:
            shutil.copy(path, root / "map")
    cv2.imwrite(str(root / "queries" / "unrelated.jpg"), (255 * textured_image(480, 640, seed=7)).astype(np.uint8))
    return root, scene / "gt_cameras"


def test_localize_pipeline_with_sift(split, tmp_path):
    root, gt = split
    output = tmp_path / "out"
    summary = localize.main(root / "map", root / "queries", output, matcher="sift", ground_truth=gt)
    assert summary["map_registered"] == 9 and summary["localized"] == 2
    assert list(summary["failed"]) == ["unrelated.jpg"]  # reported, and no pose line
    assert set(read_results(output / "results.txt")) == set(QUERIES)
    assert (
        summary["intrinsics"]["view_03.jpg"] == "ground_truth"
        and summary["intrinsics"]["unrelated.jpg"] != "ground_truth"
    )
    scores = summary["ground_truth"]
    assert scores["queries"] == 2 and scores["recall"]["0.25m,2deg"] == 100.0
    assert scores["median_position_error"] < 0.05 and scores["median_rotation_error"] < 0.5
    assert json.loads((output / "summary.json").read_text()) == summary
    for name in QUERIES:
        assert cv2.imread(str(output / "queries" / f"{name}.png")).std() > 5


def test_localize_pipeline_refuses_clashing_names(split, tmp_path):
    root, _ = split
    with pytest.raises(InputError, match="map and query names must differ"):
        localize.main(root / "map", root / "map", tmp_path / "out", matcher="sift")
