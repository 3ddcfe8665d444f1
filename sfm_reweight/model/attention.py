"""Aggregated attention layer of EfficientLoFTR with matchability reweighting (arXiv 2505.02161).

One layer, on coarse (1/8) feature maps x (queries) and source (keys/values):

    q = RoPE(Wq LN(conv4x4_s4(x)))        k = RoPE(Wk LN(maxpool4(source)))        v = Wv LN(maxpool4(source))
    bias:     q <- q * (1 + alpha * sqrt(d) * mq)   ==  logits (1/sqrt(d) + alpha * mq) <q, k>
    rescale:  v <- v * (1 + gamma * (mk - 1))       ==  v at gamma = 0, mk * v at gamma = 1
    m = Wo softmax(q k^T / sqrt(d)) v,  upsampled x4 to the 1/8 grid
    out = x + LN(MLP([x, m]))

mq, mk are the matchability maps of the query and source images, max-pooled to the 1/32 grids.
The bias is the paper's B = alpha (Q * W) K^T, applied as a per-query scale so that fused attention
kernels still apply; alpha and gamma are per-layer scalars initialised to 0, so a freshly built or
officially loaded network computes exactly EfficientLoFTR (x * 1.0 == x in floating point).
RoPE is used in self layers only, as in the official code.
"""

import torch
import torch.nn.functional as F
from torch import nn

from .rope import RoPE2d


def multihead_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, nhead: int, kind: str) -> torch.Tensor:
    """q [N,L,C], k/v [N,S,C] -> [N,L,C]; `kind` picks the kernel ("sdpa" or the official einsum path)."""
    n, length, channels = q.shape
    head_dim = channels // nhead
    if kind == "sdpa":
        q, k, v = (t.unflatten(-1, (nhead, head_dim)).transpose(1, 2).contiguous() for t in (q, k, v))
        return F.scaled_dot_product_attention(q, k, v).transpose(1, 2).reshape(n, length, channels)
    q, k, v = (t.unflatten(-1, (nhead, head_dim)) for t in (q, k, v))
    weights = torch.softmax((1.0 / head_dim**0.5) * torch.einsum("nlhd,nshd->nlsh", q, k), dim=2)
    return torch.einsum("nlsh,nshd->nlhd", weights, v).reshape(n, length, channels)


class AggregatedAttentionLayer(nn.Module):
    def __init__(
        self,
        d_model: int,
        nhead: int,
        agg_size: int,
        attention: str,
        rope: RoPE2d | None,
        reweight_bias: bool,
        reweight_rescale: bool,
    ):
        super().__init__()
        self.nhead, self.agg_size, self.attention = nhead, agg_size, attention
        self.head_dim = d_model // nhead
        self.aggregate = nn.Conv2d(d_model, d_model, agg_size, stride=agg_size, bias=False, groups=d_model)
        self.max_pool = nn.MaxPool2d(agg_size, stride=agg_size)
        self.rope = rope
        self.q_proj = nn.Linear(d_model, d_model, bias=False)
        self.k_proj = nn.Linear(d_model, d_model, bias=False)
        self.v_proj = nn.Linear(d_model, d_model, bias=False)
        self.merge = nn.Linear(d_model, d_model, bias=False)
        self.mlp = nn.Sequential(
            nn.Linear(2 * d_model, 2 * d_model, bias=False),
            nn.LeakyReLU(inplace=True),
            nn.Linear(2 * d_model, d_model, bias=False),
        )
        self.norm1 = nn.LayerNorm(d_model)
        self.norm2 = nn.LayerNorm(d_model)
        self.matchability_bias = nn.Parameter(torch.zeros(())) if reweight_bias else None
        self.matchability_rescale = nn.Parameter(torch.zeros(())) if reweight_rescale else None

    def reset_reweighting(self) -> None:
        """Set the reweighting gates to 0: the layer then computes plain EfficientLoFTR attention."""
        for gate in (self.matchability_bias, self.matchability_rescale):
            if gate is not None:
                nn.init.zeros_(gate)

    def forward(
        self,
        x: torch.Tensor,
        source: torch.Tensor,
        matchability_x: torch.Tensor | None = None,
        matchability_source: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """x [N,C,H,W], source [N,C,H',W'] (multiples of agg_size); matchability [N,1,H,W] / [N,1,H',W'] in [0,1]."""
        n, c, h, w = x.shape
        query = self.norm1(self.aggregate(x).permute(0, 2, 3, 1))  # [N,h,w,C] on the 1/32 grid
        source = self.norm1(self.max_pool(source).permute(0, 2, 3, 1))
        q, k, v = self.q_proj(query), self.k_proj(source), self.v_proj(source)
        if self.rope is not None:
            q, k = self.rope(q), self.rope(k)
        if self.matchability_bias is not None:
            mq = self.max_pool(matchability_x).permute(0, 2, 3, 1)
            q = q * (1 + self.matchability_bias * self.head_dim**0.5 * mq)
        if self.matchability_rescale is not None:
            mk = self.max_pool(matchability_source).permute(0, 2, 3, 1)
            v = v * (1 + self.matchability_rescale * (mk - 1))
        message = multihead_attention(q.flatten(1, 2), k.flatten(1, 2), v.flatten(1, 2), self.nhead, self.attention)
        message = self.merge(message).transpose(1, 2).reshape(n, c, h // self.agg_size, w // self.agg_size)
        message = F.interpolate(message, scale_factor=self.agg_size, mode="bilinear", align_corners=False)
        message = self.mlp(torch.cat([x, message], dim=1).permute(0, 2, 3, 1))
        return x + self.norm2(message).permute(0, 3, 1, 2)
