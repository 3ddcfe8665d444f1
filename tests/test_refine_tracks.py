"""The track-refinement stage: patches aligned to sub-pixel under an affine warp, and the stage on
a model of three photos of a plane whose observations are noisy."""

from pathlib import Path

import cv2
import numpy as np
import pycolmap
import pytest
import torch

from sfm_reweight import refine_tracks
from sfm_reweight.utils.errors import InputError


def texture(size: tuple[int, int], seed: int = 0) -> np.ndarray:
    """A uint8 [H,W] texture with detail at several scales (w, h = size)."""
    rng = np.random.default_rng(seed)
    w, h = size
    image = np.zeros((h, w), np.float32)
    for scale in (2, 6, 18):
        noise = rng.random((h // scale + 2, w // scale + 2)).astype(np.float32)
        image += cv2.resize(noise, (w + 2 * scale, h + 2 * scale), interpolation=cv2.INTER_CUBIC)[:h, :w]
    image = cv2.GaussianBlur(image, (0, 0), 0.8)
    return np.clip((image - image.min()) / np.ptp(image) * 255, 0, 255).astype(np.uint8)


def warp_points(h: np.ndarray, points: np.ndarray) -> np.ndarray:
    """points [N,2] (pixel centres at integers) mapped by the 3x3 homography h."""
    return cv2.perspectiveTransform(points.reshape(-1, 1, 2).astype(np.float64), h).reshape(-1, 2)


def test_align_patches_recovers_subpixel_shifts_under_an_affine_warp():
    image = texture((400, 300))
    affine = np.array([[1.15, 0.12, -20.0], [-0.08, 0.95, 12.0]])  # image -> warped
    warped = cv2.warpAffine(image, affine, (400, 300), flags=cv2.INTER_CUBIC)
    rng = np.random.default_rng(1)
    ref_points = rng.uniform(60, 240, (200, 2))
    truth = ref_points @ affine[:, :2].T + affine[:, 2]
    start = truth + rng.uniform(-3, 3, truth.shape)  # a matcher's error at a third of the resolution
    moved, score = refine_tracks.align_patches(
        torch.from_numpy(image / 255.0).float(),
        torch.from_numpy(warped / 255.0).float(),
        ref_points.astype(np.float32),
        start.astype(np.float32),
        np.repeat(affine[None, :, :2], len(truth), 0).astype(np.float32),
        patch_radius=7,
        search_radius=6,
    )
    ok = score >= 0.7
    assert ok.mean() > 0.9
    before = np.linalg.norm(start - truth, axis=1)
    after = np.linalg.norm(moved[ok] - truth[ok], axis=1)
    assert np.median(after) < 0.2 < 1.0 < np.median(before)
    assert np.percentile(after, 90) < 0.5


def plane_model(folder: Path, noise: float) -> tuple[pycolmap.Reconstruction, dict[str, np.ndarray], np.ndarray]:
    """Three photos (folder/images) of a textured plane z = 0 from known cameras, and a model of
    them with the true poses and points whose observations are the true projections plus uniform
    noise of +-`noise` px. Returns the model, the homographies from plane (x, y) to each photo's
    pixels (COLMAP's convention) and the points [P,3]."""
    w, h, f = 640, 480, 500.0
    size = 4.0  # the texture covers [-2, 2]^2 of the plane
    tex = texture((800, 800), seed=3)
    plane_from_tex = np.array([[size / 800, 0, -size / 2], [0, size / 800, -size / 2], [0, 0, 1]])
    k = np.array([[f, 0, w / 2], [0, f, h / 2], [0, 0, 1]])
    model = pycolmap.Reconstruction()
    camera = pycolmap.Camera(model="PINHOLE", width=w, height=h, params=[f, f, w / 2, h / 2], camera_id=1)
    model.add_camera_with_trivial_rig(camera)
    (folder / "images").mkdir()
    rng = np.random.default_rng(0)
    grid = np.stack(np.meshgrid(np.linspace(-0.8, 0.8, 30), np.linspace(-0.6, 0.6, 24)), -1).reshape(-1, 2)
    xyz = np.column_stack([grid, np.zeros(len(grid))])
    homographies = {}
    for image_id, (yaw, pitch, x) in enumerate([(0.0, 0.0, 0.0), (0.25, 0.05, -1.0), (-0.2, -0.1, 1.0)], 1):
        rotation = pycolmap.Rotation3d(np.array([pitch, yaw, 0.0]))
        centre = np.array([x, 0.3 * pitch, -4.0])
        cam_from_world = pycolmap.Rigid3d(rotation, -(rotation.matrix() @ centre))
        m = cam_from_world.matrix()
        h_plane = k @ m[:, [0, 1, 3]]  # plane (x, y, 1) -> pixel, COLMAP's corner origin
        name = f"view{image_id}.png"
        homographies[name] = h_plane
        to_centres = np.array([[1, 0, -0.5], [0, 1, -0.5], [0, 0, 1]])  # warpPerspective's pixel centres
        photo = cv2.warpPerspective(tex, to_centres @ h_plane @ plane_from_tex, (w, h), flags=cv2.INTER_CUBIC)
        cv2.imwrite(str(folder / "images" / name), photo)
        projected = warp_points(h_plane, grid)
        image = pycolmap.Image(name=name, keypoints=projected + rng.uniform(-noise, noise, projected.shape))
        image.camera_id, image.image_id = 1, image_id
        model.add_image_with_trivial_frame(image, cam_from_world)
    for p, point in enumerate(xyz):
        track = pycolmap.Track()
        for image_id in (1, 2, 3):
            track.add_element(image_id, p)
        model.add_point3D(point, track)
    return model, homographies, xyz


def test_stage_makes_the_views_of_each_track_agree(tmp_path):
    model, homographies, xyz = plane_model(tmp_path, noise=1.5)
    model.write(tmp_path)

    def disagreement(m: pycolmap.Reconstruction) -> np.ndarray:
        """Per point and pair of views: distance between one view's observation and the other's,
        mapped by the true homography between the views (views that disagree)."""
        out = []
        for i, j in [(1, 2), (1, 3), (2, 3)]:
            a, b = m.images[i], m.images[j]
            h = homographies[b.name] @ np.linalg.inv(homographies[a.name])
            xa = np.array([p.xy for p in a.points2D])
            xb = np.array([p.xy for p in b.points2D])
            out.append(np.linalg.norm(warp_points(h, xa) - xb, axis=1))
        return np.concatenate(out)

    before = disagreement(model)
    model.update_point_3d_errors()
    error_before = model.compute_mean_reprojection_error()
    refined = refine_tracks.main("photometric", tmp_path, tmp_path / "images", output=tmp_path / "refined")
    after = disagreement(refined)
    assert np.median(before) > 1.0
    assert np.median(after) < 0.3
    reread = pycolmap.Reconstruction(tmp_path / "refined")
    assert reread.num_points3D() == len(xyz)
    assert reread.compute_mean_reprojection_error() < 0.5 * error_before


def test_completion_adds_the_views_a_track_missed_where_the_photo_shows_its_point(tmp_path):
    model, homographies, xyz = plane_model(tmp_path, noise=1.0)
    in_all = np.ones(len(xyz), bool)  # the points that all three photos show
    for name in homographies:
        xy = warp_points(homographies[name], xyz[:, :2])
        in_all &= (xy > 20).all(1) & (xy < [620, 460]).all(1)
    missed = in_all & (np.arange(len(xyz)) % 2 == 0)  # these tracks were not matched in view 3
    for p in np.flatnonzero(missed):
        model.delete_observation(3, int(p))
    truth = warp_points(homographies["view3.png"], xyz[:, :2])  # COLMAP's pixels of view 3
    split = int(np.median(truth[in_all, 0]))
    photo = tmp_path / "images" / "view3.png"  # right of `split` it shows something else
    gray = cv2.imread(str(photo), cv2.IMREAD_GRAYSCALE)
    gray[:, split:] = texture((640, 480), seed=9)[:, split:]
    cv2.imwrite(str(photo), gray)
    model.write(tmp_path)

    conf = refine_tracks.confs["photometric"]
    photos = refine_tracks.GrayImages(tmp_path / "images", "test")
    refined = pycolmap.Reconstruction(tmp_path)
    refine_tracks.align_tracks(conf, photos, refined)
    assert refine_tracks.complete_tracks(conf, photos, refined) > 0
    view1_to_view3 = homographies["view3.png"] @ np.linalg.inv(homographies["view1.png"])
    in_view3 = {}  # point index -> (its observation in view 3, where its view-1 observation shows in view 3)
    for point in refined.points3D.values():
        rows = {e.image_id: e.point2D_idx for e in point.track.elements}
        if 3 in rows:
            seen_in_1 = warp_points(view1_to_view3, refined.images[1].points2D[rows[1]].xy[None])[0]
            in_view3[rows[1]] = (refined.images[3].points2D[rows[3]].xy, seen_in_1)
    shown = np.flatnonzero(missed & (truth[:, 0] < split - 20))
    hidden = np.flatnonzero(missed & (truth[:, 0] > split + 20))
    assert len(shown) > 25 and len(hidden) > 25
    completed = [p for p in shown if p in in_view3]
    assert len(completed) > 0.9 * len(shown)
    errors = np.linalg.norm([np.subtract(*in_view3[p]) for p in completed], axis=1)
    assert np.median(errors) < 0.2 and errors.max() < 1.0
    assert sum(p in in_view3 for p in hidden) < 0.05 * len(hidden)

    # the stage's model keeps each image's 2D points, the features file's keypoints index for index
    written = refine_tracks.main("photometric", tmp_path, tmp_path / "images", output=tmp_path / "refined")
    for image_id, image in model.images.items():
        kept = written.images[image_id]
        assert kept.num_points2D() == image.num_points2D()
        assert kept.num_points3D <= image.num_points3D


@pytest.mark.parametrize("failing", [1, 2])  # the first pass, the completed tracks' pass
def test_a_pass_whose_bundle_adjustment_fails_is_undone(tmp_path, monkeypatch, failing):
    model, _, xyz = plane_model(tmp_path, noise=1.0)
    for p in range(0, len(xyz), 2):
        model.delete_observation(3, p)  # views for completion to add
    start = {point_id: point.xyz.copy() for point_id, point in model.points3D.items()}
    adjust = refine_tracks.adjust
    passes = []

    def failing_solve(conf, m):
        passes.append(m.num_points3D())
        if len(passes) == failing:  # the solve "fails": the filter drops every point
            for point_id in list(m.point3D_ids()):
                m.delete_point3D(point_id)
            return 0
        return adjust(conf, m)

    monkeypatch.setattr(refine_tracks, "adjust", failing_solve)
    refined, changes = refine_tracks.refine_model(refine_tracks.confs["photometric"], tmp_path / "images", model)
    assert len(passes) == failing and changes["passes_failed"] == 1 and changes["completed"] == 0
    assert refined.num_points3D() > 0.9 * len(xyz)
    if failing == 1:  # nothing kept: the model as it was given
        assert all(np.array_equal(refined.points3D[i].xyz, xyz0) for i, xyz0 in start.items())


def test_dropping_the_added_views_keeps_each_images_points(tmp_path):
    model, _, _ = plane_model(tmp_path, noise=0.0)
    counts = {image_id: image.num_points2D() for image_id, image in model.images.items()}
    point_ids = sorted(model.point3D_ids())
    for point_id, image_id in [(point_ids[0], 2), (point_ids[1], 3)]:
        model.delete_observation(image_id, point_ids.index(point_id))
        image = model.images[image_id]
        image.points2D.append(pycolmap.Point2D(xy=np.array([5.0, 5.0])))
        model.add_observation(point_id, pycolmap.TrackElement(image_id, image.num_points2D() - 1))
    model.delete_observation(1, 0)  # point_ids[0]: one view of its own left beside the added one
    refine_tracks.drop_added_points(model, counts)
    assert {i: image.num_points2D() for i, image in model.images.items()} == counts
    assert not model.exists_point3D(point_ids[0])
    assert {e.image_id for e in model.points3D[point_ids[1]].track.elements} == {1, 2}


def test_stage_names_what_it_cannot_use(tmp_path):
    with pytest.raises(InputError, match="no COLMAP model"):
        refine_tracks.main("photometric", tmp_path, tmp_path)
    model, _, _ = plane_model(tmp_path, noise=1.0)
    model.write(tmp_path)
    photo = tmp_path / "images" / "view2.png"
    original = photo.read_bytes()
    cv2.imwrite(str(photo), cv2.resize(cv2.imread(str(photo)), (320, 240)))
    with pytest.raises(InputError, match=r"view2\.png: 320x240 px, but the model's camera of this photo is 640x480"):
        refine_tracks.main("photometric", tmp_path, tmp_path / "images")
    photo.write_bytes(original)
    (tmp_path / "images" / "view3.png").unlink()
    with pytest.raises(InputError, match=r"view3\.png: photo of the model's image view3\.png not found"):
        refine_tracks.main("photometric", tmp_path, tmp_path / "images")


def test_our_matcher_aligns_image_1_on_the_images_it_is_given():
    from sfm_reweight import matchers
    from sfm_reweight.utils.conf import ConfError

    image = texture((512, 384), seed=5)
    affine = np.array([[0.92, 0.08, 25.0], [-0.06, 0.95, 18.0]])
    warped = cv2.warpAffine(image, affine, (512, 384), flags=cv2.INTER_CUBIC)
    images = [(i / 255.0).astype(np.float32) for i in (image, warped)]

    def residuals(matcher) -> np.ndarray:
        kpts0, kpts1, _ = matcher.match(*images)
        inside = (kpts0 > 40).all(1) & (kpts0 < [472, 344]).all(1) & (kpts1 > 10).all(1) & (kpts1 < [502, 374]).all(1)
        truth = kpts0[inside] @ affine[:, :2].T + affine[:, 2]
        return np.linalg.norm(kpts1[inside] - truth, axis=1)

    plain = residuals(matchers.load({"name": "eloftr_reweight"}))
    matcher = matchers.load({"name": "eloftr_reweight", "photometric": "photometric"})
    aligned = residuals(matcher)
    assert len(plain) > 200 and len(aligned) == len(plain)
    assert np.median(aligned) < 0.5 * np.median(plain)
    # match_pairs (batched, lazy) aligns each pair with its own images, as match does one by one
    pairs = [tuple(images), tuple(images[::-1]), (images[0], images[0])]
    for pair, out in zip(pairs, matcher.match_pairs(iter(pairs), batch_size=2), strict=True):
        kpts0, kpts1, _ = matcher.match(*pair)
        assert np.allclose(out["keypoints0"], kpts0) and np.allclose(out["keypoints1"], kpts1, atol=1e-4)
    with pytest.raises(ConfError, match="unknown refinement 'nearest'"):
        matchers.load({"name": "eloftr_reweight", "photometric": "nearest"})


def test_sampling_is_pixel_centred_and_flat_windows_are_refused():
    image = torch.from_numpy(texture((64, 48)) / 255.0).float()
    xy = torch.tensor([[0.0, 0.0], [10.0, 7.0], [63.0, 47.0]])
    assert torch.allclose(refine_tracks.sample(image, xy), image[[0, 7, 47], [0, 10, 63]])
    assert refine_tracks.sample(image, torch.tensor([[-1.0, 5.0]])).isnan().all()
    # a textured reference against a window that is flat but for one pixel a grey level darker: float32
    # variance cancellation once scored such windows far above 1
    ref = torch.from_numpy(texture((120, 120), seed=2) / 255.0).float()
    flat = torch.full((120, 120), 0.8)
    flat[60, 61] -= 1 / 255
    centre = np.array([[60.0, 60.0]], np.float32)
    textured_on_flat, flat_on_textured = (
        refine_tracks.align_patches(a, b, centre, centre, np.eye(2, dtype=np.float32)[None], 7, 6)[1]
        for a, b in ((ref, flat), (flat, ref))
    )
    assert not (textured_on_flat >= 0.7).any()
    assert np.isnan(flat_on_textured).all()  # a flat reference patch: nothing to align to


def test_intrinsics_stay_fixed_when_the_conf_says_so(tmp_path):
    model, _, _ = plane_model(tmp_path, noise=1.5)
    model.cameras[1].params = [540.0, 540.0, 320.0, 240.0]  # 8 % off the photos' 500 px
    model.write(tmp_path)
    fixed = refine_tracks.main(
        {"name": "photometric", "refine_intrinsics": False}, tmp_path, tmp_path / "images", output=tmp_path / "fixed"
    )
    assert fixed.cameras[1].params.tolist() == [540.0, 540.0, 320.0, 240.0]
    refined = refine_tracks.main("photometric", tmp_path, tmp_path / "images", output=tmp_path / "refined")
    assert abs(refined.cameras[1].params[0] - 540.0) > 1.0
