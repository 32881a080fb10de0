"""The Elman recurrence with a hand-derived backward pass.

Forward, per step, with x_t = W_ih x_t + b_ih + b_hh for all t at once:  h_t = φ(x_t + h_{t-1} W_hhᵀ),
one GEMM and one in-place activation.

Backward:  dâ_t = dh_t ⊙ φ'(â_t)  with φ' = 1 − h_t² (tanh) or [h_t > 0] (ReLU), both known from h_t
alone, so computed for all timesteps before the loop;  dh_{t-1} += dâ_t W_hh.
"""

from __future__ import annotations

import torch
from torch import Tensor
from torch.autograd.function import once_differentiable
from torch.nn import functional as F

from torchseq.cells.rnn import RNNCell
from torchseq.kernels.base import folded_bias, last_valid, needs_graph, previous_step_gradient, tanh_slope


def run_rnn(cell: RNNCell, x: Tensor, h0: Tensor, lengths: Tensor | None) -> tuple[Tensor, Tensor]:
    """x (T, B, I) and h_0 → outputs (T, B, H) and the final h, as ``Unroll`` returns."""
    projected = F.linear(x, cell.weight_ih, folded_bias(cell))                     # (T, B, H)
    if needs_graph(projected, h0, cell.weight_hh):
        hs = RNNRecurrence.apply(projected, h0, cell.weight_hh, cell.nonlinearity)
    else:
        hs = rnn_forward(projected, h0, cell.weight_hh, cell.nonlinearity)
    return hs, last_valid(hs, lengths)


def rnn_forward(projected: Tensor, h0: Tensor, weight_hh: Tensor, nonlinearity: str) -> Tensor:
    activation_ = torch.tanh_ if nonlinearity == "tanh" else torch.relu_
    hs = torch.empty_like(projected)
    weight_hh_t = weight_hh.t()
    h = h0
    for projected_t, h_t in zip(projected.unbind(0), hs.unbind(0), strict=True):
        h = activation_(torch.addmm(projected_t, h, weight_hh_t, out=h_t))
    return hs


class RNNRecurrence(torch.autograd.Function):
    """(x (T, B, H), h_0, W_hh, "tanh" | "relu") → h (T, B, H) with explicit BPTT."""

    @staticmethod
    def forward(ctx, projected, h0, weight_hh, nonlinearity):
        hs = rnn_forward(projected, h0, weight_hh, nonlinearity)
        ctx.save_for_backward(h0, weight_hh, hs)
        ctx.nonlinearity = nonlinearity
        return hs

    @staticmethod
    @once_differentiable
    def backward(ctx, d_hs):
        h0, weight_hh, hs = ctx.saved_tensors
        slope = tanh_slope(hs, out=torch.empty_like(hs)) if ctx.nonlinearity == "tanh" else \
            (hs > 0).to(hs.dtype)                                                   # φ'(â_t)
        d_projected = torch.empty_like(hs)
        slope_, d_projected_, d_hs_ = slope.unbind(0), d_projected.unbind(0), d_hs.unbind(0)
        dh = d_hs_[-1]
        for t in range(hs.shape[0] - 1, -1, -1):
            torch.mul(dh, slope_[t], out=d_projected_[t])
            carried = d_hs_[t - 1] if t > 0 else torch.zeros_like(dh)
            dh = torch.addmm(carried, d_projected_[t], weight_hh)                     # dh_{t-1}
        d_weight_hh = previous_step_gradient(d_projected, h0, hs) if ctx.needs_input_grad[2] else None
        return d_projected, dh, d_weight_hh, None
