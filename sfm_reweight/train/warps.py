"""Ground-truth warps from image 0 to image 1: a homography, or depth + intrinsics + relative pose.

A warp maps points [K,2] (x, y) in network pixels of image 0, pixel-centre convention, each with
the index [K] of its pair in the batch, to image 1, and says which of them have a true
correspondent there. Both kinds feed the same supervision (supervision.py), so homography pairs
and MegaDepth-style pairs train the same way.
"""

from dataclasses import dataclass

import torch


def sample_nearest(image: torch.Tensor, points: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """image [N,H,W] (bool or float) at the nearest pixel of points [K,2] of pairs b [K]; 0 outside."""
    _, h, w = image.shape
    xy = points.round().long()
    inside = (xy[:, 0] >= 0) & (xy[:, 0] < w) & (xy[:, 1] >= 0) & (xy[:, 1] < h)
    return image[b, xy[:, 1].clamp(0, h - 1), xy[:, 0].clamp(0, w - 1)] * inside


def within(points: torch.Tensor, wh: torch.Tensor | tuple[int, int], margin: float = 0.0) -> torch.Tensor:
    """[K] bool: points [K,2] (x, y) inside a w x h image grown by `margin` pixels on every side;
    wh is (w, h), or [K,2] per point."""
    wh = torch.as_tensor(wh, dtype=points.dtype, device=points.device)
    return ((points >= -margin) & (points <= wh - 1 + margin)).all(-1)


def dehomogenize(points: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    z = points[:, 2:]
    return points[:, :2] / z.where(z.abs() > 1e-8, torch.full_like(z, 1e-8)), z[:, 0]


@dataclass
class HomographyWarp:
    """x1 ~ H x0 between two views of a plane; valid0/1 [N,H,W] bool mark the pixels that show the
    plane (not padding, not an occluder, not outside the source photo)."""

    H: torch.Tensor  # [N,3,3], image-0 to image-1 network pixels
    valid0: torch.Tensor
    valid1: torch.Tensor

    @property
    def device(self) -> torch.device:
        return self.H.device

    def __call__(self, points: torch.Tensor, b: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        homogeneous = torch.cat([points, torch.ones_like(points[:, :1])], -1)
        warped, z = dehomogenize((self.H[b] @ homogeneous[..., None])[..., 0])
        valid = (z > 0) & sample_nearest(self.valid0, points, b) & sample_nearest(self.valid1, warped, b)
        return warped, valid

    def no_correspondent(self, points: torch.Tensor, b: torch.Tensor, margin: float) -> torch.Tensor:
        """[K] bool: points that show nothing of image 1 (outside the source photo or on an occluder in
        either view, or landing outside image 1), except those landing within `margin` pixels outside
        its border, whose neighbourhood still overlaps."""
        warped, valid = self(points, b)
        wh = self.valid1.shape[-1], self.valid1.shape[-2]
        return ~valid & (within(warped, wh) | ~within(warped, wh, margin))

    def inverse(self) -> "HomographyWarp":
        return HomographyWarp(torch.linalg.inv(self.H), self.valid1, self.valid0)


@dataclass
class DepthWarp:
    """Back-project with depth0 [N,H,W] (0 = unknown) and K0, move by T_0to1 [N,4,4], project with K1.

    Depth and K are at the original image resolution, K in the COLMAP/MegaDepth convention (pixel
    centres at +0.5); scale0/1 [N,2] are original pixels per network pixel (None: 1), so network
    point p sits at (p + 0.5) * scale in K's frame. A point is valid when its depth is known, it
    lands inside image 1 with a known depth there, and that depth agrees with the warped one to
    `depth_tolerance` (relative), which removes occluded points.
    """

    depth0: torch.Tensor
    depth1: torch.Tensor
    K0: torch.Tensor
    K1: torch.Tensor
    T_0to1: torch.Tensor
    scale0: torch.Tensor | None = None
    scale1: torch.Tensor | None = None
    depth_tolerance: float = 0.2

    @property
    def device(self) -> torch.device:
        return self.depth0.device

    def project(
        self, points: torch.Tensor, b: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """Points [K,2] of pairs b [K] -> image-1 points [K,2] (network pixels), the depth of the
        points in camera 0 and in camera 1 (0 where unknown) and the depth image 1 shows there."""
        s0 = 1.0 if self.scale0 is None else self.scale0[b]
        s1 = 1.0 if self.scale1 is None else self.scale1[b]
        corner0 = (points + 0.5) * s0  # K's frame
        z0 = sample_nearest(self.depth0, corner0 - 0.5, b)
        homogeneous = torch.cat([corner0, torch.ones_like(points[:, :1])], -1)
        cam0 = (torch.linalg.inv(self.K0)[b] @ homogeneous[..., None])[..., 0] * z0[:, None]
        cam1 = (self.T_0to1[b, :3, :3] @ cam0[..., None])[..., 0] + self.T_0to1[b, :3, 3]
        corner1, z1 = dehomogenize((self.K1[b] @ cam1[..., None])[..., 0])
        z1_seen = sample_nearest(self.depth1, corner1 - 0.5, b)
        return corner1 / s1 - 0.5, z0, z1, z1_seen

    def __call__(self, points: torch.Tensor, b: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        warped, z0, z1, z1_seen = self.project(points, b)
        consistent = (z1_seen - z1).abs() < self.depth_tolerance * z1_seen
        return warped, (z0 > 0) & (z1 > 0) & (z1_seen > 0) & consistent

    def no_correspondent(self, points: torch.Tensor, b: torch.Tensor, margin: float) -> torch.Tensor:
        """[K] bool: points of known depth that are behind camera 1, land more than `margin` pixels
        outside image 1, or are hidden there (image 1 sees a surface in front of them). Points of
        unknown depth, or landing where image 1's depth is unknown, are not counted: they may well
        have a correspondent."""
        warped, z0, z1, z1_seen = self.project(points, b)
        s1 = 1.0 if self.scale1 is None else self.scale1[b]
        wh1 = torch.tensor([self.depth1.shape[-1], self.depth1.shape[-2]], device=warped.device) / s1  # network pixels
        hidden = (z1_seen > 0) & (z1 > z1_seen * (1 + self.depth_tolerance))
        return (z0 > 0) & ((z1 <= 0) | ~within(warped, wh1, margin) | hidden)

    def inverse(self) -> "DepthWarp":
        return DepthWarp(
            self.depth1,
            self.depth0,
            self.K1,
            self.K0,
            torch.linalg.inv(self.T_0to1),
            self.scale1,
            self.scale0,
            self.depth_tolerance,
        )


Warp = HomographyWarp | DepthWarp


def warp_from_batch(batch: dict[str, torch.Tensor]) -> Warp:
    """The ground-truth warp of a training batch: homography pairs carry H_0to1 and valid0/1,
    depth pairs (MegaDepth, ScanNet, rendered scenes) depth0/1, K0/1, T_0to1 and maybe scale0/1."""
    if "H_0to1" in batch:
        return HomographyWarp(batch["H_0to1"], batch["valid0"], batch["valid1"])
    return DepthWarp(
        batch["depth0"],
        batch["depth1"],
        batch["K0"],
        batch["K1"],
        batch["T_0to1"],
        batch.get("scale0"),
        batch.get("scale1"),
    )


def match_errors(warp: Warp, kpts0: torch.Tensor, kpts1: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Matches kpts0 [M,2] -> kpts1 [M,2] of the warp's first pair against it: the distance [M] in
    pixels from where the warp carries each kpts0 to its kpts1, and seen [M] bool, kpts0 has a true
    correspondent in image 1 (the warp's valid)."""
    warped, seen = warp(kpts0, torch.zeros(len(kpts0), dtype=torch.long, device=kpts0.device))
    return (warped - kpts1).norm(dim=1), seen
