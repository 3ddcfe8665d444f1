"""The run report (sfm_reweight/report.py): written by the main job (SIFT path, the embedded scene:
no trained weights needed) and by a localization, rebuilt from their folders and from an hloc-style
model folder; opened in headless Chromium: no JavaScript error, the model's cameras and points in
the scene, a screenshot that is not blank. The browser tests skip without Chromium or playwright."""

import base64
import shutil

import numpy as np
import pycolmap
import pytest
from PIL import Image

from sfm_reweight import cli, report
from sfm_reweight.pipelines import localize, reconstruct
from sfm_reweight.utils.errors import InputError

from helpers.browser import report_data, report_page, unavailable

QUERIES = ("view_03.jpg", "view_08.jpg")


@pytest.fixture(scope="module")
def main_job(tmp_path_factory):
    """The main job with the SIFT matcher: the rendered square, its 12 views, its exact cameras."""
    output = tmp_path_factory.mktemp("report") / "job"
    reconstruct.main(None, output, matcher="sift")
    return output


@pytest.fixture(scope="module")
def localization(main_job, tmp_path_factory):
    """Two of the main job's views localized against a map of eight others (SIFT), with ground truth."""
    root = tmp_path_factory.mktemp("report-loc")
    for folder in ("map", "queries"):
        (root / folder).mkdir()
    for path in sorted((main_job / "scene" / "images").iterdir()):
        if path.name in QUERIES or int(path.stem[-2:]) < 10:
            shutil.copy(path, root / ("queries" if path.name in QUERIES else "map"))
    output = root / "out"
    localize.main(
        root / "map", root / "queries", output, matcher="sift", ground_truth=main_job / "scene" / "gt_cameras"
    )
    return output


@pytest.fixture
def hloc_folder(tmp_path):
    """An hloc-style output folder: a COLMAP model in sfm/, no summary, no photos."""
    options = pycolmap.SyntheticDatasetOptions(
        num_rigs=1, num_cameras_per_rig=1, num_frames_per_rig=8, num_points3D=400
    )
    pycolmap.set_random_seed(0)
    model = pycolmap.synthesize_dataset(options)
    (tmp_path / "sfm").mkdir()
    model.write(tmp_path / "sfm")
    return tmp_path, model


@pytest.fixture
def browser():
    if reason := unavailable():
        pytest.skip(reason)


def observations(model: pycolmap.Reconstruction) -> int:
    return sum(model.images[i].num_points3D for i in model.reg_image_ids())


def array(data: dict, key: str, dtype: str) -> np.ndarray:
    """One of a report's observation arrays (offsets, point, uv), decoded."""
    return np.frombuffer(base64.b64decode(data["observations"][key]), dtype)


def test_main_job_writes_its_report(main_job):
    model = pycolmap.Reconstruction(main_job / "sfm")
    data = report_data(main_job / "report.html")
    scene = data["scene"]
    assert scene["cameras"] == model.num_reg_images() == 12 and scene["queries"] == 0
    assert scene["points"] == scene["modelPoints"] == model.num_points3D() > 1000
    assert scene["truth"] == 12 and scene["photos"] == 12  # the rendered scene's cameras and photos
    assert all(view["photo"] for view in data["views"]) and data["pictures"][0]["name"] == "matches.png"
    assert len(array(data, "point", "<u4")) == observations(model)  # every observation, with its keypoint
    # aligned to the ground truth by the summary's similarity: the frusta sit on the true cameras
    centres = {v["name"]: np.array(v["c"]) for v in data["views"]}
    assert max(np.linalg.norm(centres[f"view_{k:02d}.jpg"] - data["truth"][k]["c"]) for k in range(12)) < 0.05
    errors = dict(next(v for v in data["views"] if v["name"] == "view_00.jpg")["figures"])
    assert float(errors["mean reprojection error"].split()[0]) < 1.0
    assert data["figures"]["matcher"] == "sift" and data["figures"]["ground_truth_cameras"]
    assert (main_job / "report.html").stat().st_size < 5e6


def test_rebuilt_report_is_the_pipelines(main_job, tmp_path):
    """`sfm-reweight report OUTPUT` from the finished folder writes the same page the run wrote."""
    written = (main_job / "report.html").read_bytes()
    cli.main(["report", str(main_job)])
    assert (main_job / "report.html").read_bytes() == written


def test_report_of_an_hloc_folder(hloc_folder):
    """No summary: the figures come from the model; no photos: a note says how to add them; the
    model folder itself works as well as the folder above it; beyond max_points a fixed subset."""
    folder, model = hloc_folder
    data = report_data(report.main(folder))
    assert data["scene"]["cameras"] == model.num_reg_images() and data["scene"]["points"] == model.num_points3D()
    assert data["figures"]["registered"] == model.num_reg_images() and data["figures"]["points"] == model.num_points3D()
    assert data["scene"]["photos"] == 0 and any("--image_dir" in note for note in data["notes"])
    assert not data["pictures"] and data["truth"] == []

    report.main(folder / "sfm", max_points=100, ground_truth=folder / "sfm")
    subset = report_data(folder / "sfm" / "report.html")
    assert subset["scene"]["points"] == 100 and subset["scene"]["modelPoints"] == model.num_points3D()
    assert subset["points"]["count"] == 100 and subset["scene"]["truth"] == model.num_reg_images()
    assert subset["figures"]["camera_centres"]["max"] < 1e-6  # its own ground truth
    kept = array(subset, "point", "<u4")
    assert 0 < len(kept) < observations(model) and kept.max() < 100  # only the keypoints of the points shown
    again = report_data(report.main(folder / "sfm", max_points=100, ground_truth=folder / "sfm"))
    assert again["points"] == subset["points"]  # the same subset every time


def test_report_of_a_degenerate_model(hloc_folder):
    """A camera the mapper got wrong (focal 10x too long, k = -40: its distortion cannot be undone
    at the image corners) is drawn as the pinhole frustum of its focal length, not refused."""
    folder, model = hloc_folder
    camera = next(iter(model.cameras.values()))
    w, h = camera.width, camera.height
    model.cameras[camera.camera_id] = pycolmap.Camera(
        model="SIMPLE_RADIAL", width=w, height=h, params=[10 * w, w / 2, h / 2, -40.0], camera_id=camera.camera_id
    )
    model.write(folder / "sfm")
    data = report_data(report.main(folder))
    rays = np.array([view["rays"] for view in data["views"]])
    assert np.allclose(np.abs(rays[:, 0::2]), 0.05) and np.allclose(np.abs(rays[:, 1::2]), h / 20 / w)  # (w/2) / (10 w)


def test_report_refuses_a_folder_without_model(tmp_path):
    with pytest.raises(InputError, match="no COLMAP model"):
        report.main(tmp_path)
    with pytest.raises(SystemExit, match=r"^error: .*no COLMAP model in it or in its sfm/"):
        cli.main(["report", str(tmp_path)])
    with pytest.raises(SystemExit, match=r"^error: .*missing: output folder not found$"):
        cli.main(["report", str(tmp_path / "missing")])
    assert not (tmp_path / "report.html").exists()


def test_localization_report(localization):
    model = pycolmap.Reconstruction(localization / "map" / "sfm")
    data = report_data(localization / "report.html")
    assert data["scene"]["cameras"] == model.num_reg_images() and data["scene"]["queries"] == len(QUERIES)
    queries = [v for v in data["views"] if v["kind"] == "query"]
    assert sorted(v["name"] for v in queries) == sorted(QUERIES) and all(v["photo"] for v in queries)
    offsets = array(data, "offsets", "<u4")
    first = [v["name"] for v in data["views"]].index(queries[0]["name"])
    assert offsets[first + 1] - offsets[first] > 50  # the query's inlier keypoints
    assert data["scene"]["truth"] > model.num_reg_images()  # the map's and the queries' true cameras
    assert [p["name"] for p in data["pictures"]] == [f"{name}.png" for name in sorted(QUERIES)]
    assert (localization / "map" / "report.html").is_file()  # the map's own run wrote its own


@pytest.mark.usefixtures("browser")
def test_main_job_report_in_chromium(main_job, tmp_path):
    model = pycolmap.Reconstruction(main_job / "sfm")
    with report_page(main_job / "report.html") as (page, errors, _):
        scene = page.evaluate("window.reportScene")
        assert scene["webgl"] and scene["cameras"] == model.num_reg_images()
        assert scene["points"] == model.num_points3D() and scene["truth"] == 12
        page.locator("#viewer").screenshot(path=tmp_path / "viewer.png")
        assert page.evaluate("window.reportViewer.select('view_03.jpg')")
        page.wait_for_timeout(300)
        assert page.locator("#panel h3").inner_text() == "view_03.jpg"
        box = page.locator("#gl").bounding_box()
        page.mouse.click(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)  # picks a point or nothing
        assert page.evaluate("window.reportViewer.measure(300)")["frames"] > 0
        page.wait_for_timeout(300)
    assert errors == []
    pixels = np.asarray(Image.open(tmp_path / "viewer.png").convert("L"), np.float32)
    assert pixels.std() > 10  # points and frusta on the dark background, not a blank canvas


@pytest.mark.usefixtures("browser")
def test_localization_and_hloc_reports_in_chromium(localization, hloc_folder):
    folder, model = hloc_folder
    for path, queries in ((localization / "report.html", len(QUERIES)), (report.main(folder), 0)):
        data = report_data(path)
        with report_page(path) as (page, errors, _):
            scene = page.evaluate("window.reportScene")
            assert scene["webgl"] and scene["cameras"] == data["scene"]["cameras"] > 0 and scene["queries"] == queries
            assert page.evaluate("name => window.reportViewer.select(name)", data["views"][-1]["name"])
            page.wait_for_timeout(300)
        assert errors == [], path
    assert data["scene"]["cameras"] == model.num_reg_images()
