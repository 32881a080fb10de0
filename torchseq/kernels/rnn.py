"""The Elman recurrence with a hand-derived backward pass (derived in docs/bptt.md, "Elman RNN").

Forward, per step, with x_t = W_ih x_t + b_ih + b_hh for all t at once (one GEMM into the loop's own
buffer):  h_t = φ(x_t + h_{t-1} W_hhᵀ), one GEMM and one in-place activation.

Backward:  dâ_t = dh_t ⊙ φ'(â_t)  with φ' = 1 − h_t² (tanh) or [h_t > 0] (ReLU), both known from h_t
alone, so computed for all timesteps before the loop;  dh_{t-1} += dâ_t W_hh. Then dW_hh, dW_ih, db
and dx are one GEMM or sum each over all timesteps.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import torch
from torch import Tensor
from torch.nn import functional as F

from torchseq.cells.rnn import RNNCell
from torchseq.kernels.base import (
    RecurrentProduct,
    backward_needs_a_graph,
    differentiable_backward,
    folded_bias,
    input_side_gradients,
    last_valid,
    loop_threads,
    needs_graph,
    per_step,
    previous_step_gradient,
    project,
    shifted,
    tanh_in_place,
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


@dataclass(frozen=True, slots=True)
class ForwardStep:
    """Step t's views (B, H) of :class:`ForwardBuffers`."""

    h_prev: Tensor  # h_{t-1}: h_0's copy at t = 0
    h: Tensor       # x_t W_ihᵀ + b, then h_t


class ForwardBuffers:
    """The forward loop's buffer for one shape, every step's named views (made once), and the loop:
    ``hs`` (T, B, H) holds x W_ihᵀ + b, then h in place; step 0 reads h_0's copy ``h_first``."""

    def __init__(self, like: Tensor, steps: int, batch: int, hidden: int) -> None:
        self.hs = like.new_empty(steps, batch, hidden)
        self.h_first = like.new_empty(batch, hidden)
        h = per_step(self.hs, steps)
        h_prev = shifted(self.h_first, h)
        self.steps = [ForwardStep(h_prev=h_prev[t], h=h[t]) for t in range(steps)]

    def loop(self, recurrent: RecurrentProduct, nonlinearity: str) -> None:
        """Every step in order, on ``hs`` holding x W_ihᵀ + b and h_0 copied in."""
        activation_ = tanh_in_place(self.h_first.numel()) if nonlinearity == "tanh" else torch.relu_
        accumulate = recurrent.accumulate
        for step in self.steps:
            activation_(accumulate(step.h, step.h_prev))                            # h_t = φ(x_t + W_hh h)


def rnn_forward(
    x: Tensor, h0: Tensor, weight_ih: Tensor, bias: Tensor | None, weight_hh: Tensor, nonlinearity: str
) -> Tensor:
    """The input projection of x (T, B, I) and the forward loop; returns h (T, B, H)."""
    steps, batch, _ = x.shape
    hidden = h0.shape[-1]
    buffers, is_kept = buffers_for(ForwardBuffers, x, steps, batch * hidden, batch, hidden)
    project(x, weight_ih, bias, out=buffers.hs)                                     # x_t = W_ih x_t + b
    buffers.h_first.copy_(h0)
    with untracked(), loop_threads(batch * weight_hh.numel()):
        buffers.loop(RecurrentProduct(weight_hh, batch, steps), nonlinearity)
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


@dataclass(frozen=True, slots=True)
class BackwardStep:
    """Step t's views (B, H) of :class:`BackwardBuffers`."""

    dh: Tensor       # total dh_t
    dh_prev: Tensor  # dh_{t-1} (h_0's row at t = 0)
    d_a: Tensor      # φ'(â_t), multiplied by dh_t in place: dâ_t


class BackwardBuffers:
    """The backward loop's buffers for one shape, every step's named views (made once), and the loop:
    ``dhs`` (T + 1, B, H), the total dh_t with a row in front for h_0, and ``d_pre`` (T, B, H), φ'(â_t)
    that becomes dâ_t; ``steps`` runs from the last step to the first."""

    def __init__(self, like: Tensor, steps: int, batch: int, hidden: int) -> None:
        self.dhs = like.new_empty(steps + 1, batch, hidden)
        self.d_pre = like.new_empty(steps, batch, hidden)
        dh, d_a = per_step(self.dhs, steps + 1), per_step(self.d_pre, steps)
        self.steps = [BackwardStep(dh=dh[t + 1], dh_prev=dh[t], d_a=d_a[t]) for t in reversed(range(steps))]

    def loop(self, recurrent: RecurrentProduct) -> None:
        """Every step from the last to the first, on ``dhs`` holding the incoming gradients."""
        accumulate = recurrent.accumulate
        for step in self.steps:
            step.d_a.mul_(step.dh)                                                  # dâ_t = dh_t ⊙ φ'
            accumulate(step.dh_prev, step.d_a)                            # dh_{t-1} += dâ_t W_hh


class RNNInputs(NamedTuple):
    """:class:`RNNRecurrence`'s inputs by name (also its gradient flags, ``ctx.needs_input_grad``)."""

    x: object
    h0: object
    weight_ih: object
    bias: object
    weight_hh: object
    nonlinearity: object


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
        with untracked(), loop_threads(batch * weight_hh.numel()):
            buffers.loop(RecurrentProduct(weight_hh.t(), batch, steps))
        d_pre, wants = buffers.d_pre, RNNInputs(*ctx.needs_input_grad)
        d_x, d_weight_ih, d_bias = input_side_gradients(
            d_pre, x, weight_ih, (wants.x, wants.weight_ih, wants.bias)
        )
        d_h0 = hand_out(dhs[0], is_kept) if wants.h0 else None
        d_weight_hh = previous_step_gradient(d_pre, h0, hs) if wants.weight_hh else None
        return d_x, d_h0, d_weight_ih, d_bias, d_weight_hh, None
