"""Two-stage fine refinement of coarse matches (EfficientLoFTR).

Stage 1 (pixel level): the window of image 0 (W x W pixels around the coarse cell) is correlated
with the (W+2) x (W+2) window of image 1 on the first C - s channels; a dual softmax, cropped to the
inner W x W of image 1, picks the best pixel pair (u, v). Window pixel p sits at offset p - (W/2 - 0.5)
from the cell position.
Stage 2 (sub-pixel): pixel u of image 0 is correlated with image 1's window on the last s channels;
a softmax over the 3x3 block around v gives an expected offset in [-1, 1] px added to image 1's
point. The block is taken at (W+2)-window indices v + {-1, 0, 1}, i.e. centred one pixel up-left of
v, exactly as the official code trains and runs it.
"""

import torch
import torch.nn.functional as F
from kornia.geometry.subpix import spatial_expectation2d


def refine_matches(
    feat0: torch.Tensor,
    feat1: torch.Tensor,
    kpts0: torch.Tensor,
    kpts1: torch.Tensor,
    slicedim: int,
    temperature: float,
    training: bool = False,
) -> dict[str, torch.Tensor]:
    """feat0 [M,W*W,C], feat1 [M,(W+2)^2,C] window features; kpts [M,2] coarse positions (x, y) in input pixels.

    Returns keypoints0/keypoints1 [M,2] refined positions, conf_matrix_f [M,W*W,W*W] (stage-1
    dual softmax) and sim_matrix_ff [M,W*W,(W+2)^2] (stage-2 scores), the last two for the losses.
    """
    m, ww, c = feat0.shape
    w = int(round(ww**0.5))
    # The official code runs these products under CUDA autocast at inference (fp16 on a GPU, no-op on CPU).
    with torch.autocast("cuda", enabled=feat0.is_cuda and not training):
        conf_f = torch.einsum("mlc,mrc->mlr", feat0[..., :-slicedim] / c**0.5, feat1[..., :-slicedim] / c**0.5)
        sim_ff = torch.einsum("mlc,mrc->mlr", feat0[..., -slicedim:], feat1[..., -slicedim:] / slicedim**0.5)
    conf_f = F.softmax(conf_f, 1) * F.softmax(conf_f, 2)
    conf_f = conf_f.reshape(m, ww, w + 2, w + 2)[..., 1:-1, 1:-1].reshape(m, ww, ww)
    out = {"conf_matrix_f": conf_f, "sim_matrix_ff": sim_ff}
    if m == 0:
        return {**out, "keypoints0": kpts0, "keypoints1": kpts1}

    with torch.no_grad():
        idx = conf_f.reshape(m, -1).max(dim=-1)[1]
        idx_l, idx_r = idx // ww, idx % ww

    def window_offset(p: torch.Tensor) -> torch.Tensor:
        return torch.stack([p % w, p // w], dim=-1).float() - w // 2 + 0.5

    kpts0 = kpts0 + window_offset(idx_l)
    kpts1 = kpts1 + window_offset(idx_r)

    delta = torch.arange(-1, 2, device=idx.device)
    rows = (idx_r // w)[:, None, None] + delta[None, :, None]  # [M,3,1], may be -1: wraps like the official
    cols = (idx_r % w)[:, None, None] + delta[None, None, :]  # [M,1,3]
    m_ids = torch.arange(m, device=idx.device)[:, None, None]
    block = sim_ff.reshape(m, ww, w + 2, w + 2)[m_ids, idx_l[:, None, None], rows, cols]  # [M,3,3]
    heatmap = F.softmax(block.reshape(m, 9) / temperature, -1).reshape(1, m, 3, 3)
    offset = spatial_expectation2d(heatmap, normalized_coordinates=True)[0]  # [M,2] in [-1,1] px
    return {**out, "keypoints0": kpts0, "keypoints1": kpts1 + offset}
