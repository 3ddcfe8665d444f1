"""MegaDepth and ScanNet readers on tiny fixtures written in their layouts: a textured plane seen by
two cameras, so that the depth-based ground truth can be checked against the plane's homography."""

import cv2
import h5py
import numpy as np
import torch

from helpers.calibration import textured_image
from sfm_reweight.train.megadepth import MegaDepthConf, MegaDepthPairs
from sfm_reweight.train.scannet import ScanNetConf, ScanNetPairs
from sfm_reweight.train.supervision import coarse_supervision
from sfm_reweight.train.data_mix import collate
from sfm_reweight.train.trainer import training_losses
from sfm_reweight.train.warps import warp_from_batch
from sfm_reweight.model.eloftr import ELoFTR

DEPTH = 3.0


def plane_scene(w: int, h: int, f: float):
    """Camera 0 faces the plane z = DEPTH; camera 1 is turned by 6 deg and moved. K in the COLMAP
    convention. Returns image0, image1 (uint8), depth0, depth1, K, world->camera poses P0, P1, and
    the homography from image-0 to image-1 pixels in K's frame."""
    K = np.array([[f, 0, w / 2], [0, f, h / 2], [0, 0, 1.0]])
    a = np.deg2rad(6)
    R = np.array([[np.cos(a), 0, np.sin(a)], [0, 1, 0], [-np.sin(a), 0, np.cos(a)]])
    t = np.array([-0.3, 0.05, 0.1])
    n = np.array([0, 0, 1.0])
    H_k = K @ (R + np.outer(t, n) / DEPTH) @ np.linalg.inv(K)
    shift = np.array([[1, 0, 0.5], [0, 1, 0.5], [0, 0, 1]])
    H_pixels = np.linalg.inv(shift) @ H_k @ shift  # pixel-centre frame, as cv2 warps
    image0 = (textured_image(h, w, seed=4) * 255).astype(np.uint8)
    image1 = cv2.warpPerspective(image0, H_pixels, (w, h))
    depth0 = np.full((h, w), DEPTH, np.float32)
    y, x = np.mgrid[0:h, 0:w]
    rays = np.stack([x + 0.5, y + 0.5, np.ones_like(x, dtype=float)], -1) @ np.linalg.inv(K).T
    # X1 = lambda r with n . R^T (X1 - t) = DEPTH
    m = R @ n
    depth1 = ((DEPTH + m @ t) / (rays @ m)).astype(np.float32)
    depth1[cv2.warpPerspective(np.ones_like(image0), H_pixels, (w, h)) == 0] = 0
    P0 = np.eye(4)
    P1 = np.eye(4)
    P1[:3, :3], P1[:3, 3] = R, t
    return image0, image1, depth0, depth1, K, P0, P1, H_k


def expected_cells(H_k, i_ids, grid_w, scale, grid_w1):
    cells = np.stack([i_ids % grid_w, i_ids // grid_w], 1) * 8.0
    corner = (cells + 0.5) * scale
    p = np.concatenate([corner, np.ones((len(cells), 1))], 1) @ H_k.T
    net1 = p[:, :2] / p[:, 2:] / scale - 0.5
    r = np.round(net1 / 8).astype(int)
    return r[:, 1] * grid_w1 + r[:, 0]


def check_depth_ground_truth(item, H_k, scale):
    batch = collate([item], torch.device("cpu"))
    h, w = batch["image0"].shape[-2:]
    hw = (h // 8, w // 8)
    sup = coarse_supervision(warp_from_batch(batch), 1, hw, hw, 8, batch.get("mask0"), batch.get("mask1"))
    assert len(sup.i_ids) > 50
    expected = expected_cells(H_k, sup.i_ids.numpy(), hw[1], scale, hw[1])
    assert np.mean(expected == sup.j_ids.numpy()) > 0.97
    return batch


def test_megadepth_layout(tmp_path):
    w, h = 400, 300
    image0, image1, depth0, depth1, K, P0, P1, H_k = plane_scene(w, h, 320.0)
    root = tmp_path / "megadepth"
    paths = []
    for k, (image, depth) in enumerate([(image0, depth0), (image1, depth1)]):
        image_path = f"Undistorted_SfM/0000/images/{k}.jpg"
        depth_path = f"phoenix/S6/zl548/MegaDepth_v1/0000/dense0/depths/{k}.h5"
        (root / image_path).parent.mkdir(parents=True, exist_ok=True)
        (root / depth_path).parent.mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(root / image_path), image, [cv2.IMWRITE_JPEG_QUALITY, 98])
        with h5py.File(root / depth_path, "w") as f:
            f["depth"] = depth
        paths.append((image_path, depth_path))
    info = tmp_path / "0000_0.1_0.7.npz"
    np.savez(
        info,
        image_paths=np.array([None, paths[0][0], paths[1][0]], dtype=object),
        depth_paths=np.array([None, paths[0][1], paths[1][1]], dtype=object),
        intrinsics=np.array([np.eye(3), K, K]),
        poses=np.array([np.eye(4), P0, P1]),
        pair_infos=np.array([(np.array([1, 2]), 0.5, np.zeros(4))], dtype=object),
    )
    data = MegaDepthPairs(root, info, MegaDepthConf(resize=160, depth_pad=512))
    assert len(data) == 1
    item = data[0]
    assert item["image0"].shape == (1, 160, 160) and item["mask0"].shape == (20, 20)
    assert item["mask0"].sum() == 20 * 15  # 160x120 valid, padded to 160x160
    np.testing.assert_allclose(item["scale0"].numpy(), [2.5, 2.5])
    batch = check_depth_ground_truth(item, H_k, 2.5)
    weights = {"coarse": 1, "fine": 1, "subpixel": 0.25, "matchability": 1, "coarse_negative": 1}
    terms = training_losses(ELoFTR("lite").train(), batch, weights)
    assert set(terms) == {*weights, "total"} and all(torch.isfinite(v) for v in terms.values())


def test_scannet_layout(tmp_path):
    w, h = 640, 480
    image0, image1, depth0, depth1, K, P0, P1, H_k = plane_scene(w, h, 500.0)
    root = tmp_path / "scannet"
    scene = root / "scene0001_00"
    for sub in ("color", "depth", "pose"):
        (scene / sub).mkdir(parents=True)
    for frame, image, depth, P in [(10, image0, depth0, P0), (20, image1, depth1, P1)]:
        cv2.imwrite(str(scene / "color" / f"{frame}.jpg"), image, [cv2.IMWRITE_JPEG_QUALITY, 98])
        cv2.imwrite(str(scene / "depth" / f"{frame}.png"), (depth * 1000).astype(np.uint16))
        np.savetxt(scene / "pose" / f"{frame}.txt", np.linalg.inv(P))  # camera -> world
    K_opencv = K.copy()
    K_opencv[:2, 2] -= 0.5
    np.savez(tmp_path / "intrinsics.npz", scene0001_00=K_opencv.reshape(-1))
    np.savez(
        tmp_path / "index.npz",
        name=np.array([[1, 0, 10, 20], [1, 0, 10, 20]], np.uint16),
        score=np.array([0.5, 0.1], np.float16),
    )
    data = ScanNetPairs(root, tmp_path / "index.npz", tmp_path / "intrinsics.npz", ScanNetConf())
    assert len(data) == 1  # the 0.1-overlap pair is filtered out
    item = data[0]
    np.testing.assert_allclose(item["T_0to1"].numpy(), P1 @ np.linalg.inv(P0), atol=1e-6)
    check_depth_ground_truth(item, H_k, 1.0)
