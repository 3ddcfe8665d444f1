"""MegaDepth pairs in LoFTR's layout.

    <root>/<image_paths[k]>                 e.g. Undistorted_SfM/0015/images/<id>.jpg
    <root>/<depth_paths[k]>                 e.g. phoenix/S6/zl548/MegaDepth_v1/0015/dense0/depths/<id>.h5 (key "depth")
    <index>/<scene>.npz                     image_paths, depth_paths, intrinsics (3x3, original pixels,
                                            COLMAP convention), poses (4x4 world -> camera), pair_infos

Images are read in grayscale, the long side resized to `resize` (rounded), both sides floored to a
multiple of 8 and zero-padded bottom-right to a `resize` square, with coarse masks; depth stays at
the original resolution (zero-padded to `depth_pad`), the warp maps network pixels through the
per-image scale. T_0to1 = P1 P0^-1.
"""

from dataclasses import dataclass
from pathlib import Path

import h5py
import numpy as np
import torch
from torch.utils.data import Dataset

from ..image_io import read_image, to_gray_float
from ..model.eloftr import COARSE_STRIDE
from ..preprocessing import prepare


@dataclass
class MegaDepthConf:
    resize: int = 832
    depth_pad: int = 2000
    min_overlap: float = 0.0
    max_overlap: float = 1.0


def load_scene_info(path: Path) -> dict:
    try:
        info = dict(np.load(path, allow_pickle=True))
    except (OSError, ValueError) as err:
        raise ValueError(f"{path}: not a readable scene_info npz ({err})") from err
    missing = {"image_paths", "depth_paths", "intrinsics", "poses", "pair_infos"} - set(info)
    if missing:
        raise ValueError(f"{path}: scene_info lacks {sorted(missing)}")
    return info


def read_depth(path: Path, pad: int) -> np.ndarray:
    with h5py.File(path, "r") as f:
        depth = np.asarray(f["depth"], np.float32)
    if depth.shape[0] > pad or depth.shape[1] > pad:
        raise ValueError(f"{path}: depth {depth.shape} larger than the padding size {pad}")
    out = np.zeros((pad, pad), np.float32)
    out[: depth.shape[0], : depth.shape[1]] = depth
    return out


def square_input(path: Path, resize: int) -> tuple[np.ndarray, np.ndarray, torch.Tensor]:
    """Image -> network input [resize, resize] (zero-padded), scale (sx, sy) and coarse mask."""
    prepared = prepare(to_gray_float(read_image(path), str(path)), resize, resize_force=True)
    h, w = prepared.image.shape
    image = np.zeros((resize, resize), np.float32)
    image[:h, :w] = prepared.image
    mask = torch.zeros(resize // COARSE_STRIDE, resize // COARSE_STRIDE, dtype=torch.bool)
    mask[: h // COARSE_STRIDE, : w // COARSE_STRIDE] = prepared.coarse_mask()
    return image, prepared.scale, mask


class MegaDepthPairs(Dataset):
    """Items: image0/1 [1,S,S], mask0/1 [S/8,S/8] bool, depth0/1 [D,D], K0/1 [3,3], T_0to1 [4,4],
    scale0/1 [2] (original pixels per network pixel)."""

    def __init__(self, root: str | Path, scene_info: str | Path, conf: MegaDepthConf = MegaDepthConf()):
        self.root, self.conf = Path(root), conf
        self.info = load_scene_info(Path(scene_info))
        self.pairs = [
            (int(pair[0][0]), int(pair[0][1]))
            for pair in self.info["pair_infos"]
            if conf.min_overlap <= float(pair[1]) <= conf.max_overlap
        ]

    def __len__(self) -> int:
        return len(self.pairs)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        item = {}
        poses = []
        for k, idx in enumerate(self.pairs[index]):
            image, scale, mask = square_input(self.root / self.info["image_paths"][idx], self.conf.resize)
            item[f"image{k}"] = torch.from_numpy(image)[None]
            item[f"mask{k}"] = mask
            item[f"scale{k}"] = torch.from_numpy(scale).float()
            item[f"depth{k}"] = torch.from_numpy(
                read_depth(self.root / self.info["depth_paths"][idx], self.conf.depth_pad)
            )
            item[f"K{k}"] = torch.from_numpy(np.asarray(self.info["intrinsics"][idx], np.float32))
            poses.append(np.asarray(self.info["poses"][idx], np.float64))
        item["T_0to1"] = torch.from_numpy(poses[1] @ np.linalg.inv(poses[0])).float()
        return item
