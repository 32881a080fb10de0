"""The Elman recurrence with a hand-derived backward pass.

Forward, per step, with x_t = W_ih x_t + b_ih + b_hh for all t at once (one GEMM into the loop's own
buffer):  h_t = φ(x_t + h_{t-1} W_hhᵀ), one GEMM and one in-place activation.

Backward:  dâ_t = dh_t ⊙ φ'(â_t)  with φ' = 1 − h_t² (tanh) or [h_t > 0] (ReLU), both known from h_t
alone, so computed for all timesteps before the loop;  dh_{t-1} += dâ_t W_hh. Then dW_hh, dW_ih, db
and dx are one GEMM or sum each over all timesteps.
"""

from __future__ import annotations

import torch
from torch import Tensor
from torch.nn import functional as F

from torchseq.cells.rnn import RNNCell
from torchseq.kernels.base import (
    backward_needs_a_graph,
    differentiable_backward,
    folded_bias,
    input_side_gradients,
    last_valid,
    needs_graph,
    per_step,
    previous_step_gradient,
    project,
    shifted,
    step_operand,
    tanh_slope,
    untracked,
    with_row_in_front,
)
from torchseq.kernels.workspace import buffers_for, hand_out


def run_rnn(cell: RNNCell, x: Tensor, h0: Tensor, lengths: Tensor | None) -> tuple[Tensor, Tensor]:
    """x (T, B, I) and h_0 → outputs (T, B, H) and the final h, as ``Unroll`` returns."""
    weights = (cell.weight_ih, folded_bias(cell), cell.weight_hh)
    if needs_graph(x, h0, *weights):
        hs = RNNRecurrence.apply(x, h0, *weights, cell.nonlinearity)
    else:
        hs = rnn_forward(x, h0, *weights, cell.nonlinearity)
    return hs, last_valid(hs, lengths)


class ForwardBuffers:
    """The forward loop's buffer for one shape: ``hs`` (T, B, H) holds x W_ihᵀ + b, then h in place;
    ``steps`` pairs each step's h_{t-1} (h_0's copy ``h_first`` for the first) with its h_t."""

    def __init__(self, like: Tensor, steps: int, batch: int, hidden: int) -> None:
        self.hs = like.new_empty(steps, batch, hidden)
        self.h_first = like.new_empty(batch, hidden)
        h_views = per_step(self.hs, steps)
        self.steps = [*zip(shifted(self.h_first, h_views), h_views, strict=True)]


def rnn_forward(
    x: Tensor, h0: Tensor, weight_ih: Tensor, bias: Tensor | None, weight_hh: Tensor, nonlinearity: str
) -> Tensor:
    """The input projection of x (T, B, I) and the forward loop; returns h (T, B, H)."""
    steps, batch, _ = x.shape
    hidden = h0.shape[-1]
    buffers, is_kept = buffers_for(ForwardBuffers, x, steps, batch * hidden, batch, hidden)
    project(x, weight_ih, bias, out=buffers.hs)                                     # x_t = W_ih x_t + b
    buffers.h_first.copy_(h0)
    activation_ = torch.tanh_ if nonlinearity == "tanh" else torch.relu_
    weight_hh_t = step_operand(weight_hh, batch)
    with untracked():
        for h_prev, h_t in buffers.steps:
            activation_(h_t.addmm_(h_prev, weight_hh_t))                           # h_t = φ(x_t + W_hh h)
    return hand_out(buffers.hs, is_kept)


def rnn_reference(
    x: Tensor, h0: Tensor, weight_ih: Tensor, bias: Tensor | None, weight_hh: Tensor, nonlinearity: str
) -> Tensor:
    """:class:`RNNRecurrence`'s forward in ordinary differentiable ops."""
    activation = torch.tanh if nonlinearity == "tanh" else torch.relu
    h, hs = h0, []
    for pre_t in F.linear(x, weight_ih, bias):
        h = activation(pre_t + F.linear(h, weight_hh))
        hs.append(h)
    return torch.stack(hs)


class BackwardBuffers:
    """The backward loop's buffers for one shape: ``dhs`` (T + 1, B, H), the total dh_t with a row in
    front for h_0, and ``d_pre`` (T, B, H), φ'(â_t) that becomes dâ_t; ``steps`` runs from the last step
    to the first."""

    def __init__(self, like: Tensor, steps: int, batch: int, hidden: int) -> None:
        self.dhs = like.new_empty(steps + 1, batch, hidden)
        self.d_pre = like.new_empty(steps, batch, hidden)
        dh_ = per_step(self.dhs, steps + 1)
        self.steps = [*zip(dh_[1:], dh_[:-1], per_step(self.d_pre, steps), strict=True)][::-1]


class RNNRecurrence(torch.autograd.Function):
    """(x (T, B, I), h_0, W_ih, b | None, W_hh, "tanh" | "relu") → h (T, B, H) with explicit BPTT;
    b = b_ih + b_hh. A backward that autograd records runs :func:`rnn_reference` (any order)."""

    @staticmethod
    def forward(ctx, x, h0, weight_ih, bias, weight_hh, nonlinearity):
        hs = rnn_forward(x, h0, weight_ih, bias, weight_hh, nonlinearity)
        ctx.save_for_backward(x, h0, weight_ih, bias, weight_hh, hs)
        ctx.nonlinearity = nonlinearity
        return hs

    @staticmethod
    def backward(ctx, d_hs):
        x, h0, weight_ih, bias, weight_hh, hs = ctx.saved_tensors
        if backward_needs_a_graph(d_hs):
            inputs = (x, h0, weight_ih, bias, weight_hh, ctx.nonlinearity)
            return differentiable_backward(ctx, rnn_reference, inputs, (d_hs,))
        steps, batch, hidden = hs.shape
        buffers, is_kept = buffers_for(BackwardBuffers, hs, steps, batch * hidden, batch, hidden)
        # φ'(â_t), known from h_t alone; each step multiplies it by dh_t in place, making it dâ_t.
        if ctx.nonlinearity == "tanh":
            tanh_slope(hs, out=buffers.d_pre)                                       # 1 − h_t²
        else:
            buffers.d_pre.copy_(hs > 0)                                             # [h_t > 0]
        dhs = with_row_in_front(buffers.dhs, d_hs)
        with untracked():
            for dh, dh_before, d_a in buffers.steps:
                d_a.mul_(dh)                                                        # dâ_t = dh_t ⊙ φ'
                dh_before.addmm_(d_a, weight_hh)                                    # dh_{t-1} += dâ_t W_hh
        d_pre, needs = buffers.d_pre, ctx.needs_input_grad
        d_x, d_weight_ih, d_bias = input_side_gradients(d_pre, x, weight_ih, (needs[0], needs[2], needs[3]))
        d_h0 = hand_out(dhs[0], is_kept) if needs[1] else None
        d_weight_hh = previous_step_gradient(d_pre, h0, hs) if needs[4] else None
        return d_x, d_h0, d_weight_ih, d_bias, d_weight_hh, None
