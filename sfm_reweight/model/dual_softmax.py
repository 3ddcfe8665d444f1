"""Dual softmax over all cell pairs of two images, without materialising the probability matrix.

    X = scale * f0 f1^T                      [N,L,S] logits
    P = softmax_over_S(X) * softmax_over_L(X) = exp(2 X_ij - log R_i - log C_j)

with log R, log C the row and column log-sum-exps of X. Everything the matcher needs from P, its
row and column maxima with their arguments and P at given pairs, follows from X, log R and log C,
so P itself (and the official code's two softmax copies of it) is never built. X is processed in
row chunks of `chunk_elements` entries, small enough to stay in the CPU cache; the chunks of X
are kept between the two sweeps (the one L x S matrix this costs), and padded cells get a logit
of -1e9 so that their P is exactly 0. Differentiable.
"""

import torch

MASKED_LOGIT = -1e9
# exp() below this is < 2e-35, nothing next to the 1 that every max contributes to its sum; and
# CPU exp kernels leave their vectorised path for arguments under about -87 (~100x slower).
EXP_FLOOR = -80.0


class DualSoftmax:
    def __init__(
        self,
        f0: torch.Tensor,
        f1: torch.Tensor,
        scale: float,
        mask0: torch.Tensor | None = None,
        mask1: torch.Tensor | None = None,
        chunk_elements: int = 2**19,
    ):
        """f0 [N,L,C], f1 [N,S,C] features; masks [N,L] / [N,S] bool (True = image) or None.

        log R = row_max + log_row_sum and log C = col_max + log_col_sum are kept as two terms:
        P = exp((X - row_max) + (X - col_max) - log_row_sum - log_col_sum) then only adds small
        numbers near the maxima, as precise as the official softmax product even for logits of
        several hundred.
        """
        self.rows = max(1, chunk_elements // f1.shape[1])
        self.chunks, row_max, log_row_sum = [], [], []
        col_max = col_sum = None
        for start in range(0, f0.shape[1], self.rows):
            x = torch.einsum("nlc,nsc->nls", f0[:, start : start + self.rows], f1) * scale
            if mask0 is not None:
                x = x.masked_fill(~(mask0[:, start : start + self.rows, None] & mask1[:, None, :]), MASKED_LOGIT)
            self.chunks.append(x)
            r_max = x.amax(2, keepdim=True)
            row_max.append(r_max[..., 0])
            log_row_sum.append((x - r_max).clamp_min(EXP_FLOOR).exp().sum(2).log())
            c_max = x.amax(1, keepdim=True)
            c_sum = (x - c_max).clamp_min(EXP_FLOOR).exp().sum(1, keepdim=True)
            if col_max is None:
                col_max, col_sum = c_max, c_sum
            else:  # running log-sum-exp over the chunks seen so far
                new_max = torch.maximum(col_max, c_max)
                col_sum = col_sum * (col_max - new_max).exp() + c_sum * (c_max - new_max).exp()
                col_max = new_max
        self.row_max, self.log_row_sum = torch.cat(row_max, 1), torch.cat(log_row_sum, 1)  # [N,L]
        self.col_max, self.log_col_sum = col_max[:, 0], col_sum[:, 0].log()  # [N,S]

    def centred(self, k: int) -> tuple[torch.Tensor, slice]:
        """(X - row_max) + (X - col_max) for chunk k, and the rows it covers."""
        x, start = self.chunks[k], k * self.rows
        rows = slice(start, start + x.shape[1])
        return (x - self.row_max[:, rows, None]) + (x - self.col_max[:, None]), rows

    def maxima(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """row_max [N,L] = max_j P_ij with row_arg (its j), col_max [N,S] = max_i P_ij with col_arg (its i)."""
        row_val, row_arg, col_val, col_arg = [], [], None, None
        for k in range(len(self.chunks)):
            t, rows = self.centred(k)
            val, arg = (t - self.log_col_sum[:, None]).max(2)
            row_val.append(val - self.log_row_sum[:, rows])
            row_arg.append(arg)
            val, arg = (t - self.log_row_sum[:, rows, None]).max(1)
            if col_val is None:
                col_val, col_arg = val, arg
            else:
                better = val > col_val  # first occurrence wins on ties, as in a single max
                col_val, col_arg = torch.where(better, val, col_val), torch.where(better, arg + rows.start, col_arg)
        return torch.cat(row_val, 1).exp(), torch.cat(row_arg, 1), (col_val - self.log_col_sum).exp(), col_arg

    def at(self, b: torch.Tensor, i: torch.Tensor, j: torch.Tensor) -> torch.Tensor:
        """P at the pairs (b, i, j) [M] -> [M]."""
        x = self.row_max.new_empty(i.shape)
        for k, chunk in enumerate(self.chunks):
            sel = i // self.rows == k
            x[sel] = chunk[b[sel], i[sel] - k * self.rows, j[sel]]
        t = (x - self.row_max[b, i]) + (x - self.col_max[b, j])
        return (t - self.log_row_sum[b, i] - self.log_col_sum[b, j]).exp()

    def matrix(self) -> torch.Tensor:
        """The full P [N,L,S] (for tests and visualisation; the matcher never needs it)."""
        t = torch.cat([self.centred(k)[0] for k in range(len(self.chunks))], 1)
        return (t - self.log_row_sum[..., None] - self.log_col_sum[:, None]).exp()
