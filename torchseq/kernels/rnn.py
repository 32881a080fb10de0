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
from torchseq.kernels.base import (
    folded_bias,
    last_valid,
    needs_graph,
    previous_step_gradient,
    step_operand,
    tanh_slope,
    untracked,
)


def run_rnn(cell: RNNCell, x: Tensor, h0: Tensor, lengths: Tensor | None) -> tuple[Tensor, Tensor]:
    """x (T, B, I) and h_0 → outputs (T, B, H) and the final h, as ``Unroll`` returns."""
    projected = F.linear(x, cell.weight_ih, folded_bias(cell))                     # (T, B, H)
    if needs_graph(projected, h0, cell.weight_hh):
        hs = RNNRecurrence.apply(projected, h0, cell.weight_hh, cell.nonlinearity)
    else:  # no graph: the projection is a temporary of ours, and its buffer can become h
        hs = rnn_forward(projected, h0, cell.weight_hh, cell.nonlinearity)
    return hs, last_valid(hs, lengths)


def rnn_forward(projected: Tensor, h0: Tensor, weight_hh: Tensor, nonlinearity: str) -> Tensor:
    """The forward loop, turning ``projected`` (T, B, H) into h in place and returning it."""
    activation_ = torch.tanh_ if nonlinearity == "tanh" else torch.relu_
    weight_hh_t = step_operand(weight_hh, batch=projected.shape[1])
    h = h0
    with untracked():
        for h_t in projected.unbind(0):
            h = activation_(h_t.addmm_(h, weight_hh_t))                            # h_t = φ(x_t + W_hh h)
    return projected


class RNNRecurrence(torch.autograd.Function):
    """(x (T, B, H), h_0, W_hh, "tanh" | "relu") → h (T, B, H) with explicit BPTT."""

    @staticmethod
    def forward(ctx, projected, h0, weight_hh, nonlinearity):
        hs = rnn_forward(projected.clone(), h0, weight_hh, nonlinearity)
        ctx.save_for_backward(h0, weight_hh, hs)
        ctx.nonlinearity = nonlinearity
        return hs

    @staticmethod
    @once_differentiable
    def backward(ctx, d_hs):
        h0, weight_hh, hs = ctx.saved_tensors
        # φ'(â_t), known from h_t alone; each step multiplies it by dh_t in place, making it dâ_t.
        if ctx.nonlinearity == "tanh":
            d_projected = tanh_slope(hs, out=torch.empty_like(hs))                   # 1 − h_t²
        else:
            d_projected = (hs > 0).to(hs.dtype)                                     # [h_t > 0]
        dhs = d_hs.clone(memory_format=torch.contiguous_format)                     # total dh_t, in place
        dh_, d_projected_ = dhs.unbind(0), d_projected.unbind(0)
        with untracked():
            for t in range(hs.shape[0] - 1, -1, -1):
                d_projected_[t].mul_(dh_[t])
                if t > 0:
                    dh_[t - 1].addmm_(d_projected_[t], weight_hh)                   # dh_{t-1} += dâ_t W_hh
        d_h0 = d_projected[0] @ weight_hh if ctx.needs_input_grad[1] else None
        d_weight_hh = previous_step_gradient(d_projected, h0, hs) if ctx.needs_input_grad[2] else None
        return d_projected, d_h0, d_weight_hh, None
