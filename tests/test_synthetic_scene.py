"""The synthetic scene renderer and the rendered training pairs."""

import cv2
import numpy as np
import pytest
import torch

from helpers.calibration import textured_image
from sfm_reweight.scenes import demo_scene
from sfm_reweight.scenes.synthetic_scene import Camera, Rectangle, covisibility, look_at, random_facade, render
from sfm_reweight.train.supervision import coarse_supervision
from sfm_reweight.train.synthetic_pairs import (
    RepeatedFacadePairConf,
    RepeatedFacadePairs,
    SyntheticPairConf,
    SyntheticScenePairs,
)
from sfm_reweight.train.data_mix import collate
from sfm_reweight.train.warps import warp_from_batch


def front_camera(w=160, h=120, f=100.0):
    K = np.array([[f, 0, w / 2], [0, f, h / 2], [0, 0, 1.0]])
    R, t = look_at(np.array([0.0, -5.0, 0.0]), np.array([0.0, 0.0, 0.0]))
    return Camera(K, R, t, (w, h))


def test_depth_and_occlusion():
    texture = textured_image(64, 64)
    wall = Rectangle(np.array([-10.0, 0, 10]), np.array([20.0, 0, 0]), np.array([0, 0, -20.0]), texture)
    near = Rectangle(np.array([-0.5, -2.0, 0.5]), np.array([1.0, 0, 0]), np.array([0, 0, -1.0]), 1 - texture)
    camera = front_camera()
    image, depth = render([wall, near], camera)
    assert np.allclose(depth[5, 5], 5.0, atol=1e-4)  # the wall, fronto-parallel at distance 5
    assert np.allclose(depth[60, 80], 3.0, atol=1e-4)  # the near square covers the centre
    assert ((depth > 2.9) & (depth < 3.1)).sum() > 500
    # the near square occludes the wall whatever the drawing order
    _, depth_reversed = render([near, wall], camera)
    assert np.allclose(depth, depth_reversed)


def test_rendered_pixels_follow_the_geometry():
    """Back-project image 0 with its depth and project into camera 1: intensities agree."""
    texture = textured_image(256, 256, seed=3)
    wall = Rectangle(np.array([-4.0, 2.0, 3.0]), np.array([8.0, 0, 0]), np.array([0, 0, -6.0]), texture)
    cam0 = front_camera()
    R1, t1 = look_at(np.array([1.0, -4.5, 0.3]), np.array([0.0, 2.0, 0.0]))
    cam1 = Camera(cam0.K, R1, t1, cam0.size)
    (image0, depth0), (image1, _) = render([wall], cam0), render([wall], cam1)
    ys, xs = np.nonzero(depth0 > 0)
    sel = np.arange(0, len(xs), 97)
    rays = np.stack([xs[sel] + 0.5, ys[sel] + 0.5, np.ones(len(sel))], 1) @ np.linalg.inv(cam0.K).T
    world = (rays * depth0[ys[sel], xs[sel], None] - cam0.t) @ cam0.R  # R^T (X_c - t)
    p = (world @ cam1.R.T + cam1.t) @ cam1.K.T
    x1, y1 = p[:, 0] / p[:, 2] - 0.5, p[:, 1] / p[:, 2] - 0.5
    inside = (x1 > 1) & (x1 < 158) & (y1 > 1) & (y1 < 118)
    v1 = cv2.remap(image1, x1[inside].astype(np.float32)[None], y1[inside].astype(np.float32)[None], cv2.INTER_LINEAR)[
        0
    ]
    v0 = image0[ys[sel][inside], xs[sel][inside]]
    assert inside.sum() > 50
    assert np.median(np.abs(v0 - v1)) < 0.02


@pytest.fixture
def photo_folder(tmp_path):
    for seed in range(3):
        cv2.imwrite(str(tmp_path / f"p{seed}.png"), (textured_image(200, 200, seed=seed) * 255).astype(np.uint8))
    return tmp_path


def assert_deterministic_with_ground_truth(data) -> None:
    """The same item at the same index, and coarse ground-truth matches in at least one of the first four."""
    a, b = data[2], data[2]
    assert all(torch.equal(a[k], b[k]) for k in a)
    counts = []
    for k in range(4):
        batch = collate([data[k]], torch.device("cpu"))
        counts.append(len(coarse_supervision(warp_from_batch(batch), 1, (16, 20), (16, 20)).i_ids))
    assert max(counts) > 30


def test_synthetic_pairs_have_ground_truth(photo_folder):
    assert_deterministic_with_ground_truth(SyntheticScenePairs(photo_folder, SyntheticPairConf(size=(160, 128))))


def test_random_facade_repeats_one_bay():
    """The facade's texture equals itself shifted by one bay (but for the posters), at least six times over."""
    photos = [textured_image(200, 200, seed=seed) for seed in range(3)]
    for seed in range(3):
        facade = random_facade(np.random.default_rng(seed), photos)[0][0].texture
        width = facade.shape[1]
        shifts = [s for s in range(8, width // 2) if np.mean(np.abs(facade[:, s:] - facade[:, :-s]) < 1e-6) > 0.7]
        assert shifts and shifts[0] <= width / 6


def test_repeated_facade_pairs_walk_along_the_facade(photo_folder):
    data = RepeatedFacadePairs(photo_folder, RepeatedFacadePairConf(size=(160, 128)))
    assert_deterministic_with_ground_truth(data)
    for k in range(4):
        # both cameras look at the facade (a small relative rotation), 0.3 to 5 m apart along it
        T = data[k]["T_0to1"].double().numpy()
        angle = np.degrees(np.arccos(np.clip((np.trace(T[:3, :3]) - 1) / 2, -1, 1)))
        assert angle < 50 and 0.25 < np.linalg.norm(T[:3, 3]) < 7


def test_covisibility_of_shifted_and_occluded_views():
    """Two cameras facing a wall 5 m away, the second shifted right by a quarter of the first's
    footprint: it sees 3/4 of the first view; a near square in front of it hides more."""
    wall = Rectangle(np.array([-20.0, 0, 20]), np.array([40.0, 0, 0]), np.array([0, 0, -40.0]), textured_image(64, 64))
    cam0 = front_camera()
    footprint = 5.0 * 160 / 100.0  # wall width seen at distance 5, f = 100 px, w = 160 px
    cam1 = Camera(cam0.K, cam0.R, cam0.t - cam0.R @ np.array([footprint / 4, 0, 0]), cam0.size)
    depths = [render([wall], cam)[1] for cam in (cam0, cam1)]
    C = covisibility([cam0, cam1], depths, stride=4)
    assert np.allclose(np.diag(C), 1) and abs(C[0, 1] - 0.75) < 0.03 and abs(C[1, 0] - 0.75) < 0.03
    near = Rectangle(np.array([0.0, -2.0, 0.75]), np.array([1.5, 0, 0]), np.array([0, 0, -1.5]), textured_image(16, 16))
    depths[1] = render([wall, near], cam1)[1]  # view 1 now sees the square where it hides the wall
    occluded = covisibility([cam0, cam1], depths, stride=4)
    assert occluded[0, 1] < C[0, 1] - 0.05


def test_tour_views_overlap_their_neighbours_only():
    views = demo_scene.tour_cameras(16)
    rects = demo_scene.scene()
    depths = [render(rects, cam)[1] for cam in views]
    C = covisibility(views, depths)
    n = len(views)
    neighbours = [C[i, (i + 1) % n] for i in range(n)]
    across = [C[i, (i + n // 2) % n] for i in range(n)]
    assert min(neighbours) > 0.2 and max(across) == 0


def test_courtyard_repeats_its_bays_and_writes_ground_truth(tmp_path):
    from sfm_reweight.ground_truth import read_strecha_camera
    from sfm_reweight.scenes import repeated_scene

    rects = repeated_scene.scene()
    facade = rects[1].texture
    bay_w = facade.shape[1] // repeated_scene.BAYS[0]
    upper = facade[: facade.shape[0] // 2]
    # every upper-storey bay is the same pixels as the first (the door and notice are below / separate)
    assert all(np.allclose(upper[:, :bay_w], upper[:, k * bay_w : (k + 1) * bay_w]) for k in range(1, 8))
    views = repeated_scene.cameras(3)
    images = demo_scene.render_views(tmp_path, views, repeated_scene.SEED, build=repeated_scene.scene)
    for k, camera in enumerate(views):
        name = f"view_{k:02d}.jpg"
        photo = cv2.imread(str(images / name))
        assert photo.shape == (480, 640, 3) and photo.std() > 20
        _, R, t, size = read_strecha_camera(tmp_path / "gt_cameras" / f"{name}.camera")
        assert np.allclose(R, camera.R) and np.allclose(t, camera.t) and size == (640, 480)
