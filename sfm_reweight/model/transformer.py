"""Coarse transformer: interleaved self/cross aggregated-attention layers on the 1/8 feature maps."""

import torch
from torch import nn

from .attention import AggregatedAttentionLayer
from .rope import RoPE2d


def valid_extent(mask: torch.Tensor) -> tuple[int, int]:
    """Rows and columns of the valid (top-left) region of a padding mask [H,W]."""
    return int(mask[:, 0].sum()), int(mask[0].sum())


class CoarseTransformer(nn.Module):
    """`layer_names` is a list of "self"/"cross"; all layers have their own weights.

    In a cross layer image 0 is updated first and image 1 then attends to the *updated* image 0,
    exactly as in the official implementation (its trained weights depend on it).
    """

    def __init__(self, conf: dict, d_model: int, reweight_bias: bool, reweight_rescale: bool):
        super().__init__()
        coarse = conf["coarse"]
        self.layer_names = list(coarse["layer_names"])
        self.agg_size = coarse["agg_size"]
        rope = RoPE2d(d_model, coarse["npe"])  # parameter-free, shared by the self layers
        self.layers = nn.ModuleList(
            AggregatedAttentionLayer(
                d_model,
                coarse["nhead"],
                self.agg_size,
                coarse["attention"],
                rope if name == "self" else None,
                reweight_bias,
                reweight_rescale,
            )
            for name in self.layer_names
        )
        for p in self.parameters():
            if p.dim() > 1:
                nn.init.xavier_uniform_(p)
        if coarse["neutral_init"]:  # out = x + LN(...) with the LN's gain and bias at 0: each layer is the identity
            for layer in self.layers:
                nn.init.zeros_(layer.norm2.weight)
                nn.init.zeros_(layer.norm2.bias)

    def run_layers(self, feat0, feat1, w0=None, w1=None) -> tuple[torch.Tensor, torch.Tensor]:
        for layer, name in zip(self.layers, self.layer_names):
            if name == "self":
                feat0 = layer(feat0, feat0, w0, w0)
                feat1 = layer(feat1, feat1, w1, w1)
            else:
                feat0 = layer(feat0, feat1, w0, w1)
                feat1 = layer(feat1, feat0, w1, w0)
        return feat0, feat1

    def forward(
        self,
        feat0: torch.Tensor,
        feat1: torch.Tensor,
        w0: torch.Tensor | None = None,
        w1: torch.Tensor | None = None,
        mask0: torch.Tensor | None = None,
        mask1: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """feat [N,C,H,W] on the 1/8 grid (H, W multiples of agg_size); w [N,1,H,W] matchability or None;
        mask [N,H,W] bool padding masks (True = image) or None.

        With masks, each pair is cropped to its valid region rounded down to a multiple of
        `agg_size` cells, run unmasked, and zero-padded back: the official batch-size-1 behaviour,
        applied to every pair so that results do not depend on how pairs are batched.
        """
        if mask0 is None:
            return self.run_layers(feat0, feat1, w0, w1)
        out0, out1 = torch.zeros_like(feat0), torch.zeros_like(feat1)
        a = self.agg_size
        for b in range(feat0.shape[0]):
            h0, w0_ = (s // a * a for s in valid_extent(mask0[b]))
            h1, w1_ = (s // a * a for s in valid_extent(mask1[b]))
            crop = (
                feat0[b : b + 1, :, :h0, :w0_],
                feat1[b : b + 1, :, :h1, :w1_],
                None if w0 is None else w0[b : b + 1, :, :h0, :w0_],
                None if w1 is None else w1[b : b + 1, :, :h1, :w1_],
            )
            f0, f1 = self.run_layers(*crop)
            out0[b, :, :h0, :w0_], out1[b, :, :h1, :w1_] = f0[0], f1[0]
        return out0, out1
