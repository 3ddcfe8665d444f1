"""Two-stage fine refinement of coarse matches (EfficientLoFTR).

Stage 1 (pixel level): the window of image 0 (W x W pixels around the coarse cell) is correlated
with the (W+2) x (W+2) window of image 1 on the first C - s channels; a dual softmax, cropped to the
inner W x W of image 1, picks the best pixel pair (u, v). Window pixel p sits at offset p - (W/2 - 0.5)
from the cell position.
Stage 2 (sub-pixel): pixel u of image 0 is correlated with image 1's window on the last s channels;
a softmax over the 3x3 block around v gives an expected offset in [-1, 1] px added to image 1's
point.

The official code takes that block at (W+2)-window indices v + {-1, 0, 1}: centred one pixel up-left
of v, while the offset is added to v. Both images' fine features come from the same network, so
their similarity peaks at the true match, one block cell right-down of the centre: the target
(the rounding residual, within half a pixel of v) cannot be fitted, and the stage learns a flat
heatmap (its L2 loss stays at 1/6, that of a zero offset for uniform residuals; measured in our
runs). `official_block=True` keeps that indexing for the official checkpoints (parity); our
networks train and run with the block centred on v (indices v + 1 + {-1, 0, 1}).
"""

import torch
import torch.nn.functional as F
from kornia.geometry.subpix import spatial_expectation2d


def subpixel_offsets(
    sim_ff: torch.Tensor,
    m_ids: torch.Tensor,
    u_ids: torch.Tensor,
    v_ids: torch.Tensor,
    temperature: float,
    official_block: bool = False,
) -> torch.Tensor:
    """Expected sub-pixel offsets [P,2] (x, y) in [-1, 1] px of image 1's pixel v for pixel u of image
    0 in the windows of match m: softmax of the stage-2 scores sim_ff [M,W*W,(W+2)^2] over the 3x3
    block around v (or one pixel up-left of it with `official_block`)."""
    m, ww = sim_ff.shape[:2]
    w = int(round(ww**0.5))
    delta = torch.arange(-1, 2, device=sim_ff.device) + (0 if official_block else 1)
    rows = (v_ids // w)[:, None, None] + delta[None, :, None]  # [P,3,1]; official: may be -1, wraps like it
    cols = (v_ids % w)[:, None, None] + delta[None, None, :]  # [P,1,3]
    block = sim_ff.reshape(m, ww, w + 2, w + 2)[m_ids[:, None, None], u_ids[:, None, None], rows, cols]  # [P,3,3]
    heatmap = F.softmax(block.reshape(-1, 9) / temperature, -1).reshape(1, -1, 3, 3)
    return spatial_expectation2d(heatmap, normalized_coordinates=True)[0]


def refine_matches(
    feat0: torch.Tensor,
    feat1: torch.Tensor,
    kpts0: torch.Tensor,
    kpts1: torch.Tensor,
    slicedim: int,
    temperature: float,
    training: bool = False,
    official_block: bool = False,
    chunk_elements: int = 2**19,
) -> dict[str, torch.Tensor | None]:
    """feat0 [M,W*W,C], feat1 [M,(W+2)^2,C] window features; kpts [M,2] coarse positions (x, y) in input pixels.

    Returns keypoints0/keypoints1 [M,2] refined positions and, in training (for the losses),
    conf_matrix_f [M,W*W,W*W] (stage-1 dual softmax) and sim_matrix_ff [M,W*W,(W+2)^2] (stage-2
    scores). At inference both are None and the matches go through in chunks of about
    `chunk_elements` entries of sim_matrix_ff: the same results, but the matrices stay in the cache
    (all at once, thousands of matches cost several times more per match).
    """
    if training:
        conf_f, sim_ff = window_scores(feat0, feat1, slicedim, training)
        return {
            "conf_matrix_f": conf_f,
            "sim_matrix_ff": sim_ff,
            **refined(conf_f, sim_ff, kpts0, kpts1, temperature, official_block),
        }
    rows = max(1, chunk_elements // (feat0.shape[1] * feat1.shape[1]))
    parts = []
    for start in range(0, max(len(feat0), 1), rows):  # one empty chunk without matches
        chunk = slice(start, start + rows)
        conf_f, sim_ff = window_scores(feat0[chunk], feat1[chunk], slicedim, training)
        parts.append(refined(conf_f, sim_ff, kpts0[chunk], kpts1[chunk], temperature, official_block))
    keypoints = {k: torch.cat([p[k] for p in parts]) for k in ("keypoints0", "keypoints1")}
    return {"conf_matrix_f": None, "sim_matrix_ff": None, **keypoints}


def window_scores(
    feat0: torch.Tensor, feat1: torch.Tensor, slicedim: int, training: bool
) -> tuple[torch.Tensor, torch.Tensor]:
    """Window features (as `refine_matches`) -> conf_f [M,W*W,W*W] (stage-1 dual softmax, image 1's
    window cropped to its inner W x W) and sim_ff [M,W*W,(W+2)^2] (stage-2 scores)."""
    m, ww, c = feat0.shape
    w = int(round(ww**0.5))
    # The official code runs these products under CUDA autocast at inference (fp16 on a GPU, no-op on CPU).
    with torch.autocast("cuda", enabled=feat0.is_cuda and not training):
        conf_f = torch.einsum("mlc,mrc->mlr", feat0[..., :-slicedim] / c**0.5, feat1[..., :-slicedim] / c**0.5)
        sim_ff = torch.einsum("mlc,mrc->mlr", feat0[..., -slicedim:], feat1[..., -slicedim:] / slicedim**0.5)
    conf_f = F.softmax(conf_f, 1) * F.softmax(conf_f, 2)
    return conf_f.reshape(m, ww, w + 2, w + 2)[..., 1:-1, 1:-1].reshape(m, ww, ww), sim_ff


def refined(
    conf_f: torch.Tensor,
    sim_ff: torch.Tensor,
    kpts0: torch.Tensor,
    kpts1: torch.Tensor,
    temperature: float,
    official_block: bool,
) -> dict[str, torch.Tensor]:
    """The stage-1 best pixel pair and the stage-2 sub-pixel offset added to the coarse positions
    kpts [M,2] -> keypoints0, keypoints1 [M,2]."""
    m, ww, _ = conf_f.shape
    if m == 0:
        return {"keypoints0": kpts0, "keypoints1": kpts1}
    w = int(round(ww**0.5))
    with torch.no_grad():
        idx = conf_f.reshape(m, -1).max(dim=-1)[1]
        idx_l, idx_r = idx // ww, idx % ww

    def window_offset(p: torch.Tensor) -> torch.Tensor:
        return torch.stack([p % w, p // w], dim=-1).float() - w // 2 + 0.5

    offset = subpixel_offsets(sim_ff, torch.arange(m, device=idx.device), idx_l, idx_r, temperature, official_block)
    return {"keypoints0": kpts0 + window_offset(idx_l), "keypoints1": kpts1 + window_offset(idx_r) + offset}
