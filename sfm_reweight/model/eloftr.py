"""The matcher network: EfficientLoFTR with matchability-based attention reweighting.

    images -> backbone (RepVGG, or XFeat's pretrained CNN) -> matchability maps (from the coarse
           backbone features) -> coarse transformer (attention reweighted by the maps)
           -> dual-softmax coarse matches -> FPN fine features -> two-stage refinement
           -> matches in input pixels

With `match_fine.refinement: xfeat` (inference only) XFeat*'s pretrained offset MLP refines the
coarse matches from the backbone's descriptors instead of the FPN and the two-stage refinement
(xfeat_refinement.py): the untrained `xfeat` network then starts at XFeat*'s quality.

With `match_coarse.top_k` the maps and the coarse matches take only each image's most reliable
cells (top_k.py), and with `match_fine.local_fpn` the FPN's costly last stage runs only around the
matched windows (fine_preprocess.py): both at inference only.

With the XFeat backbone, its L2-normalised 64-d descriptors are projected to the transformer width
by a 1x1 conv initialised to g times the identity, g = sqrt(d_model * temperature / t_d) (t_d:
coarse.descriptor_temperature): with the transformer's layers neutral at initialisation, the coarse
similarity <f0, f1> / d_model / temperature is then cos(desc0, desc1) / t_d, and the coarse matches
those of XFeat's descriptors.

Coordinates: (x, y) in pixels of the network input, pixel-centre convention (pixel (0, 0) is
centred on (0, 0)); coarse cell (x, y) is centred on pixel (8x, 8y). Parameter names follow the
official implementation, so its checkpoint loads strictly when reweighting is off.
"""

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

from .backbone import RepVGGBackbone
from .coarse_matching import cell_positions, coarse_dual_softmax, select_coarse_matches, training_candidates
from .config import resolve_model_conf
from .dual_softmax import DualSoftmax
from .fine_matching import refine_matches
from .fine_preprocess import FinePreprocess, crop_windows
from .matchability import MatchabilityCalibration, matchability_maps
from .top_k import gather_cells, top_cells
from .transformer import CoarseTransformer
from .xfeat import XFEAT_DIM, XFeatBackbone
from .xfeat_refinement import MIN_CONFIDENCE, XFeatRefinement

COARSE_STRIDE = 8


def is_reweighting_parameter(name: str) -> bool:
    """The attention gates (`...matchability_bias/_rescale`) and the map calibration (`matchability.*`)."""
    return "matchability" in name


class ELoFTR(nn.Module):
    def __init__(self, conf: str | dict = "full"):
        super().__init__()
        self.conf = conf = resolve_model_conf(conf)
        backbone = conf["backbone"]
        self.d_model = conf["coarse"]["d_model"]
        mode = conf["reweight"]["mode"]
        if backbone["type"] == "xfeat":
            self.backbone = XFeatBackbone()
            self.coarse_projection = nn.Conv2d(XFEAT_DIM, self.d_model, 1, bias=False)
            gain = (
                self.d_model * conf["match_coarse"]["temperature"] / conf["coarse"]["descriptor_temperature"]
            ) ** 0.5
            with torch.no_grad():
                self.coarse_projection.weight.copy_(gain * torch.eye(self.d_model, XFEAT_DIM)[:, :, None, None])
            in_dims = [XFeatBackbone.half_dim, XFeatBackbone.quarter_dim, self.d_model]
        else:
            self.backbone = RepVGGBackbone(backbone["block_dims"], backbone["num_blocks"])
            self.coarse_projection = None
            in_dims = backbone["block_dims"]
        if not backbone["trainable"]:
            self.backbone.requires_grad_(False)
        self.loftr_coarse = CoarseTransformer(conf, self.d_model, mode in ("bias", "both"), mode in ("rescale", "both"))
        if conf["match_fine"]["refinement"] == "xfeat":
            self.fine_preprocess, self.xfeat_refinement = None, XFeatRefinement().requires_grad_(False)
        else:
            self.fine_preprocess = FinePreprocess(in_dims, conf["match_fine"]["fpn_dims"] or backbone["block_dims"])
            self.xfeat_refinement = None
        self.matchability = MatchabilityCalibration() if mode != "off" else None

    def train(self, mode: bool = True) -> "ELoFTR":
        """A frozen backbone and XFeat*'s refinement MLP stay in eval mode: their BatchNorm statistics
        are part of their pretrained weights."""
        super().train(mode)
        if not self.conf["backbone"]["trainable"]:
            self.backbone.eval()
        if self.xfeat_refinement is not None:
            self.xfeat_refinement.eval()
        return self

    @property
    def reweighting(self) -> bool:
        return self.conf["reweight"]["mode"] != "off"

    def reweighting_parameter_names(self) -> list[str]:
        """The attention gates and the map calibration: what EfficientLoFTR does not have."""
        return [name for name, _ in self.named_parameters() if is_reweighting_parameter(name)]

    def calibration_parameter_names(self) -> list[str]:
        return [name for name, _ in self.named_parameters() if name.startswith("matchability.")]

    def reset_reweighting(self) -> None:
        """Gates to 0: the network then computes exactly EfficientLoFTR (used when loading official weights)."""
        for layer in self.loftr_coarse.layers:
            layer.reset_reweighting()
        if self.matchability is not None:
            self.matchability.reset()

    def fuse(self) -> "ELoFTR":
        """Fold the backbone's branches and norms into single convs for inference (outputs change ~1e-6 relative)."""
        self.backbone.fuse()
        return self

    def run_backbone(self, image: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """image [N,1,H,W] -> (x1 at 1/2, x2 at 1/4, coarse [N,C,H/8,W/8], reliability [N,1,H/8,W/8] or None)."""
        with torch.set_grad_enabled(torch.is_grad_enabled() and self.conf["backbone"]["trainable"]):
            out = self.backbone(image)
        return out if len(out) == 4 else (*out, None)

    def extract(self, image0: torch.Tensor, image1: torch.Tensor) -> tuple[list, list, list]:
        """Backbone features of both images as ([x1, x2] for the FPN, [coarse0, coarse1],
        [reliability0, reliability1] (None without a reliability map)).

        Equal-sized images go through the backbone (and later the FPN) as one batch, as in the
        official code; then the FPN inputs are the joint tensors, else one (x1, x2) per image.
        """
        if image0.shape == image1.shape:
            x1, x2, coarse, reliability = self.run_backbone(torch.cat([image0, image1]))
            return [x1, x2], list(coarse.chunk(2)), [None, None] if reliability is None else list(reliability.chunk(2))
        (a1, a2, c0, r0), (b1, b2, c1, r1) = self.run_backbone(image0), self.run_backbone(image1)
        return [(a1, a2), (b1, b2)], [c0, c1], [r0, r1]

    def project(self, coarse: torch.Tensor) -> torch.Tensor:
        """Backbone descriptors [N,C,h,w] -> transformer input [N,d_model,h,w] (RepVGG: as they are)."""
        if self.coarse_projection is None:
            return coarse
        return self.coarse_projection(F.normalize(coarse, dim=1))

    def fine_features(
        self, c0: torch.Tensor, c1: torch.Tensor, fpn_inputs: list, stage: Callable[..., torch.Tensor]
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """`stage(feat_c, x2, x1)` (the FPN or a part of it) of both images."""
        if torch.is_tensor(fpn_inputs[0]):  # joint batch from `extract`
            x1, x2 = fpn_inputs
            return stage(torch.cat([c0, c1]), x2, x1).chunk(2)
        (a1, a2), (b1, b2) = fpn_inputs
        return stage(c0, a2, a1), stage(c1, b2, b1)

    def fine_windows(self, c0, c1, fpn_inputs: list, b_ids, i_ids, j_ids) -> tuple[torch.Tensor, torch.Tensor]:
        """The fine windows of the matches: [M, W*W, d0] around cells i_ids of image 0, [M, (W+2)^2, d0]
        around j_ids of image 1 (W = match_fine.window). In training always from the whole fine map,
        whose BatchNorm statistics are those of the whole image."""
        window, fpn = self.conf["match_fine"]["window"], self.fine_preprocess
        if self.conf["match_fine"]["local_fpn"] and not self.training:
            half0, half1 = self.fine_features(c0, c1, fpn_inputs, fpn.half_resolution_input)
            return fpn.windows(half0, b_ids, i_ids, COARSE_STRIDE, window), fpn.windows(
                half1, b_ids, j_ids, COARSE_STRIDE, window + 2
            )
        fine0, fine1 = self.fine_features(c0, c1, fpn_inputs, fpn)
        return crop_windows(fine0, b_ids, i_ids, COARSE_STRIDE, window), crop_windows(
            fine1, b_ids, j_ids, COARSE_STRIDE, window + 2
        )

    def ranked_cells(self, r0, r1, mask0, mask1) -> tuple[torch.Tensor | None, torch.Tensor | None]:
        """The top_k cells [N,K] of each image by reliability r [N,1,h,w] at inference; None: every cell."""
        top_k = self.conf["match_coarse"]["top_k"]
        if top_k is None or self.training:
            return None, None
        return top_cells(r0, top_k, mask0), top_cells(r1, top_k, mask1)

    def forward(
        self,
        image0: torch.Tensor,
        image1: torch.Tensor,
        mask0: torch.Tensor | None = None,
        mask1: torch.Tensor | None = None,
        gt_coarse_ids: tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None = None,
    ) -> dict[str, torch.Tensor]:
        """image [N,1,H,W] grayscale in [0,1], H and W multiples of 32; mask [N,H/8,W/8] bool coarse
        padding masks (True = image) or None; gt_coarse_ids (b, i, j) ground-truth coarse matches,
        in training mixed into the fine stage's candidates.

        Returns keypoints0, keypoints1 [M,2] (input pixels), confidence [M] (coarse dual-softmax),
        batch_ids [M], matchability0/1 [N,H/8,W/8] in [0,1] (None when reweighting is off), and for
        the losses coarse_dual_softmax (P at any cell pair; with top_k at inference over the ranked
        cells only), coarse_ids (b, i, j), conf_matrix_f and sim_matrix_ff (fine stages; training only).
        """
        conf = self.conf
        fpn_inputs, (c0, c1), (r0, r1) = self.extract(image0, image1)
        desc0, desc1 = c0, c1
        hw0, hw1 = tuple(c0.shape[-2:]), tuple(c1.shape[-2:])
        cells0, cells1 = self.ranked_cells(r0, r1, mask0, mask1)

        m0 = m1 = None
        if self.reweighting:
            rw = conf["reweight"]
            m0, m1 = matchability_maps(
                c0, c1, rw["map"], rw["temperature"], conf["chunk_elements"], mask0, mask1, cells0, cells1
            )
            if rw["prior"] == "reliability":
                m0, m1 = m0 * r0[:, 0].float(), m1 * r1[:, 0].float()
            m0, m1 = self.matchability(m0, mask0), self.matchability(m1, mask1)
        weights = (None, None) if m0 is None else (m0[:, None], m1[:, None])
        c0, c1 = self.loftr_coarse(self.project(c0), self.project(c1), *weights, mask0, mask1)
        f0, f1 = c0.flatten(2).transpose(1, 2), c1.flatten(2).transpose(1, 2)  # [N,L,C]

        mc = conf["match_coarse"]
        flat0 = None if mask0 is None else mask0.flatten(1)
        flat1 = None if mask1 is None else mask1.flatten(1)
        if cells0 is not None:
            f0, f1 = gather_cells(f0, cells0), gather_cells(f1, cells1)
            flat0 = None if flat0 is None else gather_cells(flat0, cells0)
            flat1 = None if flat1 is None else gather_cells(flat1, cells1)
        coarse = coarse_dual_softmax(f0, f1, mc["temperature"], flat0, flat1, conf["chunk_elements"])
        b_ids, i_ids, j_ids, mconf = select_coarse_matches(
            coarse, mc["thr"], mc["border_rm"], hw0, hw1, mask0, mask1, cells0, cells1
        )
        if self.training and gt_coarse_ids is not None:
            if mask0 is None:
                num_cells = len(image0) * max(hw0[0] * hw0[1], hw1[0] * hw1[1])
            else:
                num_cells = int(torch.minimum(mask0.flatten(1).sum(1), mask1.flatten(1).sum(1)).sum())
            b_ids, i_ids, j_ids = training_candidates(
                (b_ids, i_ids, j_ids), gt_coarse_ids, num_cells, mc["train_coarse_percent"], mc["train_pad_num_gt_min"]
            )
            mconf = coarse.at(b_ids, i_ids, j_ids).detach()

        if self.xfeat_refinement is not None:
            return self.xfeat_refined(desc0, desc1, (b_ids, i_ids, j_ids), mconf, hw0, hw1, m0, m1, coarse)

        # The official code scales the coarse features by 1/sqrt(C) once more before the FPN.
        c0, c1 = c0 / self.d_model**0.5, c1 / self.d_model**0.5
        win0, win1 = self.fine_windows(c0, c1, fpn_inputs, b_ids, i_ids, j_ids)
        fine = refine_matches(
            win0,
            win1,
            cell_positions(i_ids, hw0[1], float(COARSE_STRIDE)),
            cell_positions(j_ids, hw1[1], float(COARSE_STRIDE)),
            conf["match_fine"]["slicedim"],
            conf["match_fine"]["temperature"],
            self.training,
            conf["match_fine"]["official_block"],
            conf["chunk_elements"],
        )
        return {
            "keypoints0": fine["keypoints0"],
            "keypoints1": fine["keypoints1"],
            "confidence": mconf,
            "batch_ids": b_ids,
            "matchability0": m0,
            "matchability1": m1,
            "coarse_dual_softmax": coarse,
            "coarse_ids": (b_ids, i_ids, j_ids),
            "conf_matrix_f": fine["conf_matrix_f"],
            "sim_matrix_ff": fine["sim_matrix_ff"],
        }

    def xfeat_refined(
        self,
        desc0: torch.Tensor,
        desc1: torch.Tensor,
        coarse_ids: tuple[torch.Tensor, torch.Tensor, torch.Tensor],
        mconf: torch.Tensor,
        hw0: tuple[int, int],
        hw1: tuple[int, int],
        m0: torch.Tensor | None,
        m1: torch.Tensor | None,
        coarse: DualSoftmax,
    ) -> dict[str, torch.Tensor]:
        """`forward`'s outputs with XFeat*'s refinement. desc0/1 [N,64,h,w]: the raw descriptor maps;
        coarse_ids (b, i, j) [M] each: batch and flat cell indices of the coarse matches, mconf [M]
        their confidence; hw0/1 the cell grids (h, w). Image 0's points move by the MLP's offsets
        from their cells, image 1's stay on theirs (network pixels, [M',2]); matches whose offset
        confidence is below MIN_CONFIDENCE are dropped; m0/m1 and coarse pass through."""
        b_ids, i_ids, j_ids = coarse_ids
        offsets, confidence = self.xfeat_refinement(
            desc0.flatten(2)[b_ids, :, i_ids], desc1.flatten(2)[b_ids, :, j_ids]
        )
        keep = confidence > MIN_CONFIDENCE
        b_ids, i_ids, j_ids = b_ids[keep], i_ids[keep], j_ids[keep]
        return {
            "keypoints0": cell_positions(i_ids, hw0[1], float(COARSE_STRIDE)) + offsets[keep],
            "keypoints1": cell_positions(j_ids, hw1[1], float(COARSE_STRIDE)),
            "confidence": mconf[keep],
            "batch_ids": b_ids,
            "matchability0": m0,
            "matchability1": m1,
            "coarse_dual_softmax": coarse,
            "coarse_ids": (b_ids, i_ids, j_ids),
            "conf_matrix_f": None,
            "sim_matrix_ff": None,
        }
