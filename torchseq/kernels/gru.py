"""The GRU recurrence, both reset placements, with hand-derived backward passes (derived in
docs/bptt.md, "GRU, reset after the matrix product" and "GRU, reset before the matrix product").

``reset_after=True`` (cuDNN / torch.nn), per step, with x_t = W_ih x_t + b_ih (+ b_hr, b_hz folded in):

    [a_r, a_z, s_n] = [x_r, x_z, b_hn] + h_{t-1} W_hhᵀ     one GEMM (s_n = W_hn h + b_hn)
    r, z = σ(a_r), σ(a_z);   n = tanh(x_n + r ⊙ s_n);   h_t = n + z ⊙ (h_{t-1} − n)

Backward, with k_n = (1 − z)(1 − n²) the derivative of h_t by n's pre-activation:

    dâ_n = dh ⊙ k_n;   ds_n = dh ⊙ k_n ⊙ r;   dâ_r = dh ⊙ k_n ⊙ s_n ⊙ r(1 − r)
    dâ_z = dh ⊙ (h_{t-1} − n) ⊙ z(1 − z);   dh_{t-1} += dh ⊙ z + [dâ_r, dâ_z, ds_n] W_hh

All four are dh times a factor known after the forward pass, so a step of the backward loop is one
multiply by a precomputed (B, 4, H) factor, one addcmul and one GEMM.

``reset_after=False`` (Cho et al. 2014, Keras' option), every bias folded into x_t:

    r, z = σ(x_{rz} + h_{t-1} W_{h,rz}ᵀ);   n = tanh(x_n + (r ⊙ h_{t-1}) W_hnᵀ);   h_t = n + z ⊙ (h_{t-1} − n)

Backward: dâ_z, dâ_n as above; d(r⊙h) = dâ_n W_hn;  dâ_r = d(r⊙h) ⊙ h_{t-1} ⊙ r(1 − r);
dh_{t-1} += dh ⊙ z + d(r⊙h) ⊙ r + [dâ_r, dâ_z] W_{h,rz}.

Both compute x_t for all t as one GEMM into the kernel's own buffer, and after the backward loop dW_hh,
dW_ih, db and dx are one GEMM or sum each over all timesteps. As for the LSTM (see its module), every
buffer and its per-step views are made once per shape (``ForwardBuffers``, ``BackwardBuffers``), kept
between calls where a step is small (:mod:`torchseq.kernels.workspace`), and each loop reads h_{t-1}
from the previous step's view, h_0's copy for the first: no loop has a special step.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import torch
from torch import Tensor
from torch.nn import functional as F

from torchseq.cells.gru import GRUCell
from torchseq.kernels.base import (
    RecurrentProduct,
    backward_needs_a_graph,
    differentiable_backward,
    flat,
    folded_bias,
    input_side_gradients,
    last_valid,
    loop_threads,
    needs_graph,
    per_step,
    previous_step_gradient,
    project,
    shifted,
    sigmoid_slope,
    tanh_in_place,
    tanh_slope,
    times_previous,
    untracked,
    with_row_in_front,
)
from torchseq.kernels.native import native_loop_for
from torchseq.kernels.workspace import buffers_for, hand_out


def run_gru(cell: GRUCell, x: Tensor, h0: Tensor, lengths: Tensor | None) -> tuple[Tensor, Tensor]:
    """x (T, B, I) and h_0 → outputs (T, B, H) and the final h, as ``Unroll`` returns."""
    hidden = cell.hidden_size
    if cell.reset_after:
        # b_hn sits inside r ⊙ (W_hn h + b_hn), so only the r and z parts of b_hh can be folded.
        b_hn = None if cell.bias_hh is None else cell.bias_hh[2 * hidden :]
        inputs = (x, h0, cell.weight_ih, folded_bias(cell, recurrent_rows=2 * hidden), cell.weight_hh, b_hn)
        recurrence, forward = GRURecurrence, gru_forward
    else:
        inputs = (x, h0, cell.weight_ih, folded_bias(cell), cell.weight_hh)
        recurrence, forward = GRUResetBeforeRecurrence, gru_reset_before_forward
    if needs_graph(*inputs):
        hs = recurrence.apply(*inputs)
    else:
        hs, _ = forward(*inputs, keep=False)
    return hs, last_valid(hs, lengths)


# -- reset_after=True ------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class ForwardStep:
    """Step t's views (B, ·) of :class:`ForwardBuffers` (reset_after=True)."""

    a: Tensor           # [x_r, x_z, b_hn], then [a_r, a_z, s_n], then [r, z, s_n] (B, 3H)
    x_n: Tensor
    r_z: Tensor         # the two σ gates as one slice (B, 2, H)
    r: Tensor
    z: Tensor
    s_n: Tensor         # W_hn h_{t-1} + b_hn
    n: Tensor
    difference: Tensor  # h_{t-1} − n, one buffer for every step
    h_prev: Tensor      # h_{t-1}: h_0's copy at t = 0
    h: Tensor


class ForwardBuffers:
    """The forward loop's buffers for one shape (reset_after=True), every step's named views (made once),
    and the loop over them.

    ``projected`` (T, B, 3H) holds x_t; ``gates`` (T, B, 3, H) starts as [x_r, x_z, b_hn] and becomes
    [a_r, a_z, s_n], then [r, z, s_n]; ``ns`` keeps n (all steps when ``keep``, else the last).
    """

    def __init__(self, like: Tensor, steps: int, batch: int, hidden: int, keep: bool) -> None:
        new = like.new_empty
        self.projected = new(steps, batch, 3 * hidden)
        self.gates = new(steps, batch, 3, hidden)
        self.hs = new(steps, batch, hidden)
        self.ns = new(steps if keep else 1, batch, hidden)
        self.h_first = new(batch, hidden)
        difference = new(batch, hidden)
        a = per_step(self.gates.view(steps, batch, -1), steps)
        x_n = per_step(self.projected[..., 2 * hidden :], steps)
        r_z, n, h = per_step(self.gates[:, :, :2], steps), per_step(self.ns, steps), per_step(self.hs, steps)
        r, z, s_n = (per_step(gate, steps) for gate in self.gates.unbind(2))
        h_prev = shifted(self.h_first, h)
        self.steps = [
            ForwardStep(
                a=a[t], x_n=x_n[t], r_z=r_z[t], r=r[t], z=z[t], s_n=s_n[t], n=n[t], difference=difference,
                h_prev=h_prev[t], h=h[t],
            )
            for t in range(steps)
        ]

    def loop(self, recurrent: RecurrentProduct) -> None:
        """Every step in order, on ``gates`` holding [x_r, x_z, b_hn] and h_0 copied in."""
        accumulate, tanh_ = recurrent.accumulate, tanh_in_place(self.hs[0].numel())
        for step in self.steps:
            accumulate(step.a, step.h_prev)                                         # [a_r, a_z, s_n]
            step.r_z.sigmoid_()                                                     # r, z
            tanh_(torch.addcmul(step.x_n, step.r, step.s_n, out=step.n))            # n = tanh(x_n + r ⊙ s_n)
            torch.sub(step.h_prev, step.n, out=step.difference)
            torch.addcmul(step.n, step.z, step.difference, out=step.h)              # h_t = n + z ⊙ (h − n)


def gru_forward(
    x: Tensor, h0: Tensor, weight_ih: Tensor, bias: Tensor | None, weight_hh: Tensor, b_hn: Tensor | None,
    keep: bool,
) -> tuple[Tensor, tuple[Tensor, Tensor] | None]:
    """The input projection of x (T, B, I) and the forward loop. Returns h (T, B, H) and, when ``keep``,
    what backward needs: [r, z, s_n] (T, B, 3, H) and n (T, B, H)."""
    steps, batch, _ = x.shape
    hidden = h0.shape[-1]
    buffers, is_kept = buffers_for(ForwardBuffers, x, steps, batch * 3 * hidden, batch, hidden, keep)
    project(x, weight_ih, bias, out=buffers.projected)                              # x_r, x_z, x_n
    x_rz = buffers.projected[..., : 2 * hidden].view(steps, batch, 2, hidden)
    buffers.gates[:, :, :2].copy_(x_rz)
    buffers.gates[:, :, 2].copy_(x.new_zeros(()) if b_hn is None else b_hn)         # b_hn
    buffers.h_first.copy_(h0)
    recurrent = RecurrentProduct(weight_hh, batch, steps)
    native = native_loop_for(x, recurrent)
    with untracked(), loop_threads(batch * weight_hh.numel(), native=native is not None):
        if native is not None:
            native.gru_forward_loop(
                buffers.gates.view(steps, batch, -1), buffers.projected, buffers.h_first,
                recurrent.native_operand, buffers.hs, buffers.ns, keep,
            )
        else:
            buffers.loop(recurrent)
    hs = hand_out(buffers.hs, is_kept)
    return hs, (hand_out(buffers.gates, is_kept), hand_out(buffers.ns, is_kept)) if keep else None


def gru_reference(
    x: Tensor, h0: Tensor, weight_ih: Tensor, bias: Tensor | None, weight_hh: Tensor, b_hn: Tensor | None
) -> Tensor:
    """:class:`GRURecurrence`'s forward (reset_after=True) in ordinary differentiable ops."""
    h, hs = h0, []
    for pre_t in F.linear(x, weight_ih, bias):
        x_r, x_z, x_n = pre_t.chunk(3, dim=-1)
        s_r, s_z, s_n = F.linear(h, weight_hh).chunk(3, dim=-1)
        s_n = s_n if b_hn is None else s_n + b_hn
        r, z = torch.sigmoid(x_r + s_r), torch.sigmoid(x_z + s_z)
        n = torch.tanh(x_n + r * s_n)
        h = n + z * (h - n)
        hs.append(h)
    return torch.stack(hs)


@dataclass(frozen=True, slots=True)
class BackwardStep:
    """Step t's views (B, ·) of :class:`BackwardBuffers` (reset_after=True)."""

    dh: Tensor           # total dh_t
    dh_prev: Tensor      # dh_{t-1} (h_0's row at t = 0)
    dh_per_gate: Tensor  # dh_t as (B, 1, H), broadcast over the four factors
    factors: Tensor      # (B, 4, H), multiplied by dh_t in place: [dâ_r, dâ_z, ds_n, dâ_n]
    hidden_side: Tensor  # [dâ_r, dâ_z, ds_n] as (B, 3H): the gradient of h_{t-1} W_hhᵀ
    z: Tensor


class BackwardBuffers:
    """The backward loop's buffers for one shape (reset_after=True), every step's named views (made once),
    and the loop over them.

    ``dhs`` (T + 1, B, H): the total dh_t, a row in front for h_0. ``factors`` (T, B, 4, H): the factors
    of dh, [dâ_r, dâ_z, ds_n, dâ_n] once multiplied. ``z`` takes a copy of the update gates. ``steps``
    runs from the last step to the first.
    """

    def __init__(self, like: Tensor, steps: int, batch: int, hidden: int) -> None:
        new = like.new_empty
        self.dhs = new(steps + 1, batch, hidden)
        self.factors = new(steps, batch, 4, hidden)
        self.z = new(steps, batch, hidden)
        hidden_side = self.factors[:, :, :3].reshape(steps, batch, -1)             # a view: [r, z, s_n]
        dh, dh_per_gate = per_step(self.dhs, steps + 1), per_step(self.dhs[1:].unsqueeze(2), steps)
        factors, z = per_step(self.factors, steps), per_step(self.z, steps)
        hidden_side_ = per_step(hidden_side, steps)
        self.steps = [
            BackwardStep(
                dh=dh[t + 1], dh_prev=dh[t], dh_per_gate=dh_per_gate[t], factors=factors[t],
                hidden_side=hidden_side_[t], z=z[t],
            )
            for t in reversed(range(steps))
        ]

    def loop(self, recurrent: RecurrentProduct) -> None:
        """Every step from the last to the first, on ``dhs`` holding the incoming gradients."""
        accumulate = recurrent.accumulate
        for step in self.steps:
            step.factors.mul_(step.dh_per_gate)                                     # [dâ_r, dâ_z, ds_n, dâ_n]
            step.dh_prev.addcmul_(step.dh, step.z)                                  # dh_{t-1} += dh ⊙ z
            accumulate(step.dh_prev, step.hidden_side)                    # + [dâ_r, …] W_hh


class GRUInputs(NamedTuple):
    """:class:`GRURecurrence`'s inputs by name (also its gradient flags, ``ctx.needs_input_grad``)."""

    x: object
    h0: object
    weight_ih: object
    bias: object
    weight_hh: object
    b_hn: object


class GRURecurrence(torch.autograd.Function):
    """(x (T, B, I), h_0, W_ih, b | None, W_hh, b_hn | None) → h (T, B, H), reset_after=True, explicit
    BPTT; b = [b_ir + b_hr, b_iz + b_hz, b_in]. A backward that autograd records runs
    :func:`gru_reference` (any order)."""

    @staticmethod
    def forward(ctx, x, h0, weight_ih, bias, weight_hh, b_hn):
        hs, (gates, ns) = gru_forward(x, h0, weight_ih, bias, weight_hh, b_hn, keep=True)
        ctx.save_for_backward(x, h0, weight_ih, bias, weight_hh, b_hn, hs, gates, ns)
        return hs

    @staticmethod
    def backward(ctx, d_hs):
        x, h0, weight_ih, bias, weight_hh, b_hn, hs, gates, ns = ctx.saved_tensors
        if backward_needs_a_graph(d_hs):
            inputs = (x, h0, weight_ih, bias, weight_hh, b_hn)
            return differentiable_backward(ctx, gru_reference, inputs, (d_hs,))
        steps, batch, _, hidden = gates.shape
        buffers, is_kept = buffers_for(BackwardBuffers, hs, steps, batch * 4 * hidden, batch, hidden)
        r, z, s_n = gates.unbind(2)
        buffers.z.copy_(z)
        # dh times these gives [dâ_r, dâ_z, ds_n, dâ_n]; the first three are the hidden side's gradient.
        factors = buffers.factors                                                   # (T, B, 4, H)
        per_r, per_z, per_s_n, k_n = factors.unbind(2)
        tanh_slope(ns, out=k_n).addcmul_(k_n, z, value=-1)                          # k_n = (1 − z)(1 − n²)
        torch.mul(k_n, r, out=per_s_n)                                              # k_n r
        torch.mul(per_s_n, s_n, out=per_r).addcmul_(per_r, r, value=-1)             # k_n s_n r(1 − r)
        torch.sub(h0, ns[0], out=per_z[0])                                          # h_{t-1} − n
        torch.sub(hs[:-1], ns[1:], out=per_z[1:])
        per_z.mul_(z).addcmul_(per_z, z, value=-1)                                  # … ⊙ z(1 − z)

        # Each step multiplies its factors by dh in place: the factor buffer becomes the gradients.
        dhs = with_row_in_front(buffers.dhs, d_hs)
        with untracked(), loop_threads(batch * weight_hh.numel()):
            buffers.loop(RecurrentProduct(weight_hh.t(), batch, steps))              # … W_hh
        grads = factors                                                     # now [dâ_r, dâ_z, ds_n, dâ_n]
        d_pre = torch.cat([grads[:, :, :2], grads[:, :, 3:]], dim=2).view(steps, batch, -1)
        hidden_side = grads[:, :, :3].reshape(steps, batch, -1)
        wants = GRUInputs(*ctx.needs_input_grad)
        d_x, d_weight_ih, d_bias = input_side_gradients(
            d_pre, x, weight_ih, (wants.x, wants.weight_ih, wants.bias)
        )
        d_h0 = hand_out(dhs[0], is_kept) if wants.h0 else None
        d_weight_hh = previous_step_gradient(hidden_side, h0, hs) if wants.weight_hh else None
        d_b_hn = grads[:, :, 2].sum((0, 1)) if wants.b_hn else None
        return d_x, d_h0, d_weight_ih, d_bias, d_weight_hh, d_b_hn


# -- reset_after=False -----------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class ResetBeforeForwardStep:
    """Step t's views (B, ·) of :class:`ResetBeforeForwardBuffers` (reset_after=False)."""

    r_z: Tensor         # [x_r, x_z], then [r, z] (B, 2H)
    r: Tensor
    z: Tensor
    n: Tensor           # x_n, then n
    reset_h: Tensor     # r ⊙ h_{t-1}
    difference: Tensor  # h_{t-1} − n, one buffer for every step
    h_prev: Tensor      # h_{t-1}: h_0's copy at t = 0
    h: Tensor


class ResetBeforeForwardBuffers:
    """The forward loop's buffers for one shape (reset_after=False), every step's named views (made
    once), and the loop over them.

    ``gates`` (T, B, 3, H) holds x_t, then r, z, n; ``reset_hs`` keeps r ⊙ h_{t-1} (all steps when
    ``keep``, else the last).
    """

    def __init__(self, like: Tensor, steps: int, batch: int, hidden: int, keep: bool) -> None:
        new = like.new_empty
        self.gates = new(steps, batch, 3, hidden)
        self.hs = new(steps, batch, hidden)
        self.reset_hs = new(steps if keep else 1, batch, hidden)
        self.h_first = new(batch, hidden)
        difference = new(batch, hidden)
        r_z = per_step(self.gates[:, :, :2].reshape(steps, batch, -1), steps)      # views: (B, 2H) each
        r, z, n = (per_step(gate, steps) for gate in self.gates.unbind(2))
        reset_h, h = per_step(self.reset_hs, steps), per_step(self.hs, steps)
        h_prev = shifted(self.h_first, h)
        self.steps = [
            ResetBeforeForwardStep(
                r_z=r_z[t], r=r[t], z=z[t], n=n[t], reset_h=reset_h[t], difference=difference,
                h_prev=h_prev[t], h=h[t],
            )
            for t in range(steps)
        ]

    def loop(self, recurrent_rz: RecurrentProduct, recurrent_n: RecurrentProduct) -> None:
        """Every step in order, on ``gates`` holding x_t and h_0 copied in."""
        accumulate_rz, accumulate_n = recurrent_rz.accumulate, recurrent_n.accumulate
        tanh_ = tanh_in_place(self.hs[0].numel())
        for step in self.steps:
            accumulate_rz(step.r_z, step.h_prev).sigmoid_()                         # r, z
            torch.mul(step.r, step.h_prev, out=step.reset_h)
            tanh_(accumulate_n(step.n, step.reset_h))                               # n = tanh(x_n + W_hn r⊙h)
            torch.sub(step.h_prev, step.n, out=step.difference)
            torch.addcmul(step.n, step.z, step.difference, out=step.h)              # h_t = n + z ⊙ (h − n)


def gru_reset_before_forward(
    x: Tensor, h0: Tensor, weight_ih: Tensor, bias: Tensor | None, weight_hh: Tensor, keep: bool
) -> tuple[Tensor, tuple[Tensor, Tensor] | None]:
    """The input projection of x (T, B, I) and the forward loop. Returns h (T, B, H) and, when ``keep``,
    what backward needs: the gates r, z, n (T, B, 3, H) and r ⊙ h_{t-1} (T, B, H)."""
    steps, batch, _ = x.shape
    hidden = h0.shape[-1]
    buffers, is_kept = buffers_for(
        ResetBeforeForwardBuffers, x, steps, batch * 3 * hidden, batch, hidden, keep
    )
    project(x, weight_ih, bias, out=buffers.gates)                                  # x_r, x_z, x_n
    buffers.h_first.copy_(h0)
    weight_rz, weight_n = weight_hh.split([2 * hidden, hidden])
    with untracked(), loop_threads(batch * weight_hh.numel()):
        buffers.loop(RecurrentProduct(weight_rz, batch, steps), RecurrentProduct(weight_n, batch, steps))
    hs = hand_out(buffers.hs, is_kept)
    return hs, (hand_out(buffers.gates, is_kept), hand_out(buffers.reset_hs, is_kept)) if keep else None


def gru_reset_before_reference(
    x: Tensor, h0: Tensor, weight_ih: Tensor, bias: Tensor | None, weight_hh: Tensor
) -> Tensor:
    """:class:`GRUResetBeforeRecurrence`'s forward (reset_after=False) in ordinary differentiable ops."""
    hidden = h0.shape[-1]
    weight_rz, weight_n = weight_hh.split([2 * hidden, hidden])
    h, hs = h0, []
    for pre_t in F.linear(x, weight_ih, bias):
        x_r, x_z, x_n = pre_t.chunk(3, dim=-1)
        s_r, s_z = F.linear(h, weight_rz).chunk(2, dim=-1)
        r, z = torch.sigmoid(x_r + s_r), torch.sigmoid(x_z + s_z)
        n = torch.tanh(x_n + F.linear(r * h, weight_n))
        h = n + z * (h - n)
        hs.append(h)
    return torch.stack(hs)


@dataclass(frozen=True, slots=True)
class ResetBeforeBackwardStep:
    """Step t's views (B, ·) of :class:`ResetBeforeBackwardBuffers` (reset_after=False)."""

    dh: Tensor           # total dh_t
    dh_prev: Tensor      # dh_{t-1} (h_0's row at t = 0)
    dh_per_gate: Tensor  # dh_t as (B, 1, H), broadcast over the z and n factors
    d_z_n: Tensor        # the z and n factors (B, 2, H), multiplied by dh_t in place
    d_r: Tensor          # the r factor, multiplied by d(r ⊙ h_{t-1}) in place
    d_n: Tensor
    r: Tensor
    z: Tensor
    d_r_z: Tensor        # [dâ_r, dâ_z] as (B, 2H)
    d_reset_h: Tensor    # d(r ⊙ h_{t-1}), one buffer for every step


class ResetBeforeBackwardBuffers:
    """The backward loop's buffers for one shape (reset_after=False), every step's named views (made
    once), and the loop over them.

    ``dhs`` (T + 1, B, H): the total dh_t, a row in front for h_0. ``grads`` (T, B, 3, H): factors that
    become [dâ_r, dâ_z, dâ_n]. ``r_z`` takes a copy of the gates r and z; ``d_reset_h`` is one step's
    d(r ⊙ h_{t-1}). ``steps`` runs from the last step to the first.
    """

    def __init__(self, like: Tensor, steps: int, batch: int, hidden: int) -> None:
        new = like.new_empty
        self.dhs = new(steps + 1, batch, hidden)
        self.grads = new(steps, batch, 3, hidden)
        self.r_z = new(steps, batch, 2, hidden)
        d_reset_h = new(batch, hidden)
        dh, dh_per_gate = per_step(self.dhs, steps + 1), per_step(self.dhs[1:].unsqueeze(2), steps)
        d_z_n, d_r_z = per_step(self.grads[:, :, 1:], steps), per_step(
            self.grads[:, :, :2].reshape(steps, batch, -1), steps                   # views: (B, 2H) each
        )
        d_r, d_n = (per_step(self.grads[:, :, gate], steps) for gate in (0, 2))
        r, z = (per_step(self.r_z[:, :, gate], steps) for gate in (0, 1))
        self.steps = [
            ResetBeforeBackwardStep(
                dh=dh[t + 1], dh_prev=dh[t], dh_per_gate=dh_per_gate[t], d_z_n=d_z_n[t], d_r=d_r[t],
                d_n=d_n[t], r=r[t], z=z[t], d_r_z=d_r_z[t], d_reset_h=d_reset_h,
            )
            for t in reversed(range(steps))
        ]

    def loop(self, recurrent_rz: RecurrentProduct, recurrent_n: RecurrentProduct) -> None:
        """Every step from the last to the first, on ``dhs`` holding the incoming gradients."""
        accumulate_rz, product_n = recurrent_rz.accumulate, recurrent_n.product
        for step in self.steps:
            step.d_z_n.mul_(step.dh_per_gate)                                       # dâ_z, dâ_n
            product_n(step.d_n, out=step.d_reset_h)                                 # d(r ⊙ h_{t-1})
            step.d_r.mul_(step.d_reset_h)                                           # dâ_r
            step.dh_prev.addcmul_(step.dh, step.z).addcmul_(step.d_reset_h, step.r)
            accumulate_rz(step.dh_prev, step.d_r_z)                       # + [dâ_r, dâ_z] W_{h,rz}


class GRUResetBeforeInputs(NamedTuple):
    """:class:`GRUResetBeforeRecurrence`'s inputs by name (also its gradient flags)."""

    x: object
    h0: object
    weight_ih: object
    bias: object
    weight_hh: object


class GRUResetBeforeRecurrence(torch.autograd.Function):
    """(x (T, B, I), h_0, W_ih, b | None, W_hh) → h (T, B, H), reset_after=False, explicit BPTT;
    b = b_ih + b_hh. A backward that autograd records runs :func:`gru_reset_before_reference` (any order)."""

    @staticmethod
    def forward(ctx, x, h0, weight_ih, bias, weight_hh):
        hs, (gates, reset_hs) = gru_reset_before_forward(x, h0, weight_ih, bias, weight_hh, keep=True)
        ctx.save_for_backward(x, h0, weight_ih, bias, weight_hh, hs, gates, reset_hs)
        return hs

    @staticmethod
    def backward(ctx, d_hs):
        x, h0, weight_ih, bias, weight_hh, hs, gates, reset_hs = ctx.saved_tensors
        if backward_needs_a_graph(d_hs):
            inputs = (x, h0, weight_ih, bias, weight_hh)
            return differentiable_backward(ctx, gru_reset_before_reference, inputs, (d_hs,))
        steps, batch, _, hidden = gates.shape
        buffers, is_kept = buffers_for(
            ResetBeforeBackwardBuffers, hs, steps, batch * 3 * hidden, batch, hidden
        )
        weight_rz, weight_n = weight_hh[: 2 * hidden], weight_hh[2 * hidden :]
        r, z, n = gates.unbind(2)
        buffers.r_z.copy_(gates[:, :, :2])
        # dâ_z, dâ_n are dh times a factor, dâ_r is d(r ⊙ h_{t-1}) times one; each step multiplies them
        # in place, so the factor buffer becomes the gradients [dâ_r, dâ_z, dâ_n].
        grads = buffers.grads
        per_r, per_z, per_n = grads.unbind(2)
        times_previous(sigmoid_slope(r, out=per_r), h0, hs)                         # h_{t-1} r(1 − r)
        torch.sub(h0, n[0], out=per_z[0])                                           # h_{t-1} − n
        torch.sub(hs[:-1], n[1:], out=per_z[1:])
        per_z.mul_(z).addcmul_(per_z, z, value=-1)                                  # … ⊙ z(1 − z)
        tanh_slope(n, out=per_n).addcmul_(per_n, z, value=-1)                       # (1 − z)(1 − n²)
        dhs = with_row_in_front(buffers.dhs, d_hs)
        recurrent_rz, recurrent_n = (RecurrentProduct(w.t(), batch, steps) for w in (weight_rz, weight_n))
        with untracked(), loop_threads(batch * weight_hh.numel()):
            buffers.loop(recurrent_rz, recurrent_n)                                 # … W_{h,rz}, … W_hn
        d_pre = grads.view(steps, batch, -1)
        wants = GRUResetBeforeInputs(*ctx.needs_input_grad)
        d_x, d_weight_ih, d_bias = input_side_gradients(
            d_pre, x, weight_ih, (wants.x, wants.weight_ih, wants.bias)
        )
        d_h0 = hand_out(dhs[0], is_kept) if wants.h0 else None
        d_weight_hh = None
        if wants.weight_hh:
            d_weight_hh = torch.cat([
                previous_step_gradient(d_pre[..., : 2 * hidden], h0, hs),          # dW_{h,rz}
                flat(grads[:, :, 2]).t() @ flat(reset_hs),                         # dW_hn
            ])
        return d_x, d_h0, d_weight_ih, d_bias, d_weight_hh
