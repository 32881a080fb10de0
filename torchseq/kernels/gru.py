"""The GRU recurrence, both reset placements, with hand-derived backward passes.

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
"""

from __future__ import annotations

import torch
from torch import Tensor
from torch.autograd.function import once_differentiable
from torch.nn import functional as F

from torchseq.cells.gru import GRUCell
from torchseq.kernels.base import (
    flat,
    folded_bias,
    last_valid,
    needs_graph,
    per_step,
    previous_step_gradient,
    sigmoid_slope,
    step_operand,
    tanh_slope,
    times_previous,
    untracked,
)


def run_gru(cell: GRUCell, x: Tensor, h0: Tensor, lengths: Tensor | None) -> tuple[Tensor, Tensor]:
    """x (T, B, I) and h_0 → outputs (T, B, H) and the final h, as ``Unroll`` returns."""
    hidden = cell.hidden_size
    if cell.reset_after:
        # b_hn sits inside r ⊙ (W_hn h + b_hn), so only the r and z parts of b_hh can be folded.
        projected = F.linear(x, cell.weight_ih, folded_bias(cell, recurrent_rows=2 * hidden))
        b_hn = None if cell.bias_hh is None else cell.bias_hh[2 * hidden :]
        inputs = (projected, h0, cell.weight_hh, b_hn)
        recurrence, forward = GRURecurrence, gru_forward
    else:
        projected = F.linear(x, cell.weight_ih, folded_bias(cell))
        inputs = (projected, h0, cell.weight_hh)
        recurrence, forward = GRUResetBeforeRecurrence, gru_reset_before_forward
    if needs_graph(*inputs):
        hs = recurrence.apply(*inputs)
    else:
        hs, *_ = forward(*inputs, keep=False)
    return hs, last_valid(hs, lengths)


# -- reset_after=True ------------------------------------------------------------------------------
def gru_forward(
    projected: Tensor, h0: Tensor, weight_hh: Tensor, b_hn: Tensor | None, keep: bool
) -> tuple[Tensor, Tensor, Tensor]:
    """Returns h (T, B, H), [r, z, s_n] (T, B, 3, H) and n (T|1, B, H) (all steps when ``keep``)."""
    steps, batch, _ = projected.shape
    hidden = h0.shape[-1]
    x_rz, x_n = projected[..., : 2 * hidden], projected[..., 2 * hidden :]
    s_n_addend = x_n.new_zeros(()) if b_hn is None else b_hn
    addend = torch.cat([x_rz, s_n_addend.expand_as(x_n)], dim=-1)                  # [x_r, x_z, b_hn]
    gates = addend.view(steps, batch, 3, hidden)                                    # becomes r, z, s_n
    hs = projected.new_empty(steps, batch, hidden)
    ns = projected.new_empty(steps if keep else 1, batch, hidden)
    difference = projected.new_empty(batch, hidden)
    weight_hh_t = step_operand(weight_hh, batch)
    r, z, s_n = (per_step(gate, steps) for gate in gates.unbind(2))
    views = zip(
        per_step(addend, steps), per_step(x_n, steps), per_step(gates[:, :, :2], steps),
        r, z, s_n, per_step(ns, steps), per_step(hs, steps), strict=True,
    )
    h = h0
    with untracked():
        for a_t, x_n_t, r_z_t, r_t, z_t, s_n_t, n_t, h_t in views:
            a_t.addmm_(h, weight_hh_t)                                              # [a_r, a_z, s_n] in place
            torch.sigmoid_(r_z_t)                                                   # r, z
            torch.addcmul(x_n_t, r_t, s_n_t, out=n_t).tanh_()                       # n = tanh(x_n + r ⊙ s_n)
            torch.sub(h, n_t, out=difference)
            h = torch.addcmul(n_t, z_t, difference, out=h_t)                        # h_t = n + z ⊙ (h − n)
    return hs, gates, ns


class GRURecurrence(torch.autograd.Function):
    """(x (T, B, 3H), h_0, W_hh, b_hn | None) → h (T, B, H), reset_after=True, explicit BPTT."""

    @staticmethod
    def forward(ctx, projected, h0, weight_hh, b_hn):
        hs, gates, ns = gru_forward(projected, h0, weight_hh, b_hn, keep=True)
        ctx.save_for_backward(h0, weight_hh, hs, gates, ns)
        return hs

    @staticmethod
    @once_differentiable
    def backward(ctx, d_hs):
        h0, weight_hh, hs, gates, ns = ctx.saved_tensors
        steps, batch = gates.shape[:2]
        r, z, s_n = gates.unbind(2)
        # dh times these gives [dâ_r, dâ_z, ds_n, dâ_n]; the first three are the hidden side's gradient.
        factors = gates.new_empty(steps, batch, 4, gates.shape[-1])                # (T, B, 4, H)
        per_r, per_z, per_s_n, k_n = factors.unbind(2)
        tanh_slope(ns, out=k_n).addcmul_(k_n, z, value=-1)                          # k_n = (1 − z)(1 − n²)
        torch.mul(k_n, r, out=per_s_n)                                              # k_n r
        torch.mul(per_s_n, s_n, out=per_r).addcmul_(per_r, r, value=-1)             # k_n s_n r(1 − r)
        torch.sub(h0, ns[0], out=per_z[0])                                          # h_{t-1} − n
        torch.sub(hs[:-1], ns[1:], out=per_z[1:])
        per_z.mul_(z).addcmul_(per_z, z, value=-1)                                  # … ⊙ z(1 − z)

        # Each step multiplies its factors by dh in place: the factor buffer becomes the gradients.
        hidden_side = factors[:, :, :3].reshape(steps, batch, -1)                  # [dâ_r, dâ_z, ds_n] view
        dhs = d_hs.clone(memory_format=torch.contiguous_format)                     # total dh_t, in place
        dh_, factors_, hidden_side_, z_ = (per_step(v, steps) for v in (dhs, factors, hidden_side, z))
        with untracked():
            for t in range(steps - 1, -1, -1):
                factors_[t].mul_(dh_[t].unsqueeze(1))
                if t > 0:                                                           # dh_{t-1} += …
                    dh_[t - 1].addcmul_(dh_[t], z_[t]).addmm_(hidden_side_[t], weight_hh)
        d_h0 = torch.addmm(dhs[0] * z[0], hidden_side[0], weight_hh) if ctx.needs_input_grad[1] else None
        grads = factors                                                     # now [dâ_r, dâ_z, ds_n, dâ_n]
        d_projected = torch.cat([grads[:, :, :2], grads[:, :, 3:]], dim=2).view(steps, batch, -1)
        d_weight_hh = previous_step_gradient(hidden_side, h0, hs) if ctx.needs_input_grad[2] else None
        d_b_hn = grads[:, :, 2].sum((0, 1)) if ctx.needs_input_grad[3] else None
        return d_projected, d_h0, d_weight_hh, d_b_hn


# -- reset_after=False -----------------------------------------------------------------------------
def gru_reset_before_forward(
    projected: Tensor, h0: Tensor, weight_hh: Tensor, keep: bool
) -> tuple[Tensor, Tensor, Tensor]:
    """The forward loop, turning ``projected`` (T, B, 3H) into the gates r, z, n in place. Returns h
    (T, B, H), the gates (T, B, 3, H) and r ⊙ h_{t-1} (T|1, B, H) (all steps when ``keep``)."""
    steps, batch, _ = projected.shape
    hidden = h0.shape[-1]
    weight_rz_t, weight_n_t = (step_operand(rows, batch) for rows in weight_hh.split([2 * hidden, hidden]))
    gates = projected.view(steps, batch, 3, hidden)                                 # becomes r, z, n
    hs = projected.new_empty(steps, batch, hidden)
    reset_hs = projected.new_empty(steps if keep else 1, batch, hidden)
    difference = projected.new_empty(batch, hidden)
    r, z, n = (per_step(gate, steps) for gate in gates.unbind(2))
    r_z = gates[:, :, :2].reshape(steps, batch, -1)                                # a view: (T, B, 2H)
    views = zip(per_step(r_z, steps), r, z, n, per_step(reset_hs, steps), per_step(hs, steps), strict=True)
    h = h0
    with untracked():
        for r_z_t, r_t, z_t, n_t, reset_h_t, h_t in views:
            r_z_t.addmm_(h, weight_rz_t).sigmoid_()                                 # r, z
            torch.mul(r_t, h, out=reset_h_t)
            n_t.addmm_(reset_h_t, weight_n_t).tanh_()                               # n = tanh(x_n + W_hn r⊙h)
            torch.sub(h, n_t, out=difference)
            h = torch.addcmul(n_t, z_t, difference, out=h_t)                        # h_t = n + z ⊙ (h − n)
    return hs, gates, reset_hs


class GRUResetBeforeRecurrence(torch.autograd.Function):
    """(x (T, B, 3H), h_0, W_hh) → h (T, B, H), reset_after=False, explicit BPTT."""

    @staticmethod
    def forward(ctx, projected, h0, weight_hh):
        hs, gates, reset_hs = gru_reset_before_forward(projected.clone(), h0, weight_hh, keep=True)
        ctx.save_for_backward(h0, weight_hh, hs, gates, reset_hs)
        return hs

    @staticmethod
    @once_differentiable
    def backward(ctx, d_hs):
        h0, weight_hh, hs, gates, reset_hs = ctx.saved_tensors
        steps, batch, _, hidden = gates.shape
        weight_rz, weight_n = weight_hh[: 2 * hidden], weight_hh[2 * hidden :]
        r, z, n = gates.unbind(2)
        # dâ_z, dâ_n are dh times a factor, dâ_r is d(r ⊙ h_{t-1}) times one; each step multiplies them
        # in place, so the factor buffer becomes the gradients [dâ_r, dâ_z, dâ_n].
        grads = gates.new_empty(steps, batch, 3, hidden)
        per_r, per_z, per_n = grads.unbind(2)
        times_previous(sigmoid_slope(r, out=per_r), h0, hs)                         # h_{t-1} r(1 − r)
        torch.sub(h0, n[0], out=per_z[0])                                           # h_{t-1} − n
        torch.sub(hs[:-1], n[1:], out=per_z[1:])
        per_z.mul_(z).addcmul_(per_z, z, value=-1)                                  # … ⊙ z(1 − z)
        tanh_slope(n, out=per_n).addcmul_(per_n, z, value=-1)                       # (1 − z)(1 − n²)
        dhs = d_hs.clone(memory_format=torch.contiguous_format)                     # total dh_t, in place
        d_r_z = grads[:, :, :2].reshape(steps, batch, -1)                          # a view: (T, B, 2H)
        dh_, r_, z_, d_r_, d_z_n_, d_n_, d_r_z_ = (
            per_step(v, steps) for v in (dhs, r, z, per_r, grads[:, :, 1:], per_n, d_r_z)
        )
        d_h0 = torch.empty_like(h0)  # made outside the loop: tensors the loop creates are inference tensors
        with untracked():
            for t in range(steps - 1, -1, -1):
                d_z_n_[t].mul_(dh_[t].unsqueeze(1))                                 # dâ_z, dâ_n
                d_reset_h = d_n_[t] @ weight_n                                      # d(r ⊙ h_{t-1})
                d_r_[t].mul_(d_reset_h)                                             # dâ_r
                if t > 0:                                                           # dh_{t-1} += …
                    dh_before = dh_[t - 1].addcmul_(dh_[t], z_[t])
                else:
                    dh_before = torch.mul(dh_[0], z_[0], out=d_h0)
                dh_before.addcmul_(d_reset_h, r_[t]).addmm_(d_r_z_[t], weight_rz)
        d_projected = grads.view(steps, batch, -1)
        d_weight_hh = None
        if ctx.needs_input_grad[2]:
            d_weight_hh = torch.cat([
                previous_step_gradient(d_projected[..., : 2 * hidden], h0, hs),    # dW_{h,rz}
                flat(grads[:, :, 2]).t() @ flat(reset_hs),                         # dW_hn
            ])
        return d_projected, d_h0, d_weight_hh
