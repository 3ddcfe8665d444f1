"""ScanNet pairs in LoFTR's layout.

    <root>/<scene>/color/<frame>.jpg     resized to 640x480, grayscale
    <root>/<scene>/depth/<frame>.png     uint16 millimetres at 640x480
    <root>/<scene>/pose/<frame>.txt      4x4 camera -> world
    <index>.npz                          name [N,4] (scene id, sub id, frame0, frame1), score [N] (overlap)
    <intrinsics>.npz                     "sceneXXXX_YY" -> K (3x3 or 9 values) of the 640x480 images

ScanNet's K puts pixel centres on integers (OpenCV); it is shifted by +0.5 into the COLMAP
convention the depth warp uses. T_0to1 = world->cam1 @ cam0->world.
"""

from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import torch
from torch.utils.data import Dataset

from ..image_io import read_image, to_gray_float

SIZE = (640, 480)


@dataclass
class ScanNetConf:
    min_overlap: float = 0.4
    max_overlap: float = 0.8


def read_pose(path: Path) -> np.ndarray:
    try:
        pose = np.loadtxt(path, dtype=np.float64)
    except ValueError as err:
        raise ValueError(f"{path}: not a 4x4 pose ({err})") from err
    if pose.shape != (4, 4) or not np.isfinite(pose).all():
        raise ValueError(f"{path}: expected a finite 4x4 camera-to-world pose, got shape {pose.shape}")
    return pose


class ScanNetPairs(Dataset):
    """Items: image0/1 [1,480,640], depth0/1 [480,640] metres, K0/1 [3,3] (COLMAP convention), T_0to1 [4,4]."""

    def __init__(self, root: str | Path, index: str | Path, intrinsics: str | Path, conf: ScanNetConf = ScanNetConf()):
        self.root = Path(root)
        data = np.load(index)
        keep = (data["score"] >= conf.min_overlap) & (data["score"] <= conf.max_overlap)
        self.names = data["name"][keep]
        self.intrinsics = {k: np.asarray(v, np.float64).reshape(3, 3) for k, v in np.load(intrinsics).items()}

    def __len__(self) -> int:
        return len(self.names)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        scene_id, sub_id, *frames = (int(v) for v in self.names[index])
        scene = f"scene{scene_id:04d}_{sub_id:02d}"
        if scene not in self.intrinsics:
            raise KeyError(f"no intrinsics for {scene}")
        K = self.intrinsics[scene].copy()
        K[:2, 2] += 0.5
        item, poses = {}, []
        for k, frame in enumerate(frames):
            folder = self.root / scene
            gray = to_gray_float(read_image(folder / "color" / f"{frame}.jpg"), str(folder / "color" / f"{frame}.jpg"))
            item[f"image{k}"] = torch.from_numpy(cv2.resize(gray, SIZE, interpolation=cv2.INTER_AREA))[None]
            depth = read_image(folder / "depth" / f"{frame}.png").astype(np.float32) / 1000.0
            item[f"depth{k}"] = torch.from_numpy(cv2.resize(depth, SIZE, interpolation=cv2.INTER_NEAREST))
            item[f"K{k}"] = torch.from_numpy(K).float()
            poses.append(read_pose(folder / "pose" / f"{frame}.txt"))
        item["T_0to1"] = torch.from_numpy(np.linalg.inv(poses[1]) @ poses[0]).float()
        return item
