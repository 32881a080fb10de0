"""The LSTM recurrence (optionally projected, LSTMP) with a hand-derived backward pass.

Forward, per step (pre_t = W_ih x_t + b_ih + b_hh for all t at once, before the loop):

    a_t = pre_t + h_{t-1} W_hhᵀ                           one GEMM, accumulated in place into pre_t
    i, f, o = σ(a_i), σ(a_f), σ(a_o);  g = tanh(a_g)       in place: the buffer of pre becomes the gates
    c_t = f ⊙ c_{t-1} + i ⊙ g
    m_t = o ⊙ tanh(c_t);  h_t = m_t (or m_t W_hrᵀ with a projection)

Backward (FORMULAS.md, "Backpropagation through time for the LSTM"), per step going back, with
dm_t the gradient at o ⊙ tanh(c_t) (dh_t itself without a projection, dh_t W_hr with one):

    dc_t += dm_t ⊙ o ⊙ (1 − tanh² c_t)
    dâ_i = dc_t ⊙ g ⊙ i(1 − i);   dâ_f = dc_t ⊙ c_{t-1} ⊙ f(1 − f);   dâ_g = dc_t ⊙ i ⊙ (1 − g²)
    dâ_o = dm_t ⊙ tanh(c_t) ⊙ o(1 − o)
    dh_{t-1} += dA_t W_hh;   dc_{t-1} += dc_t ⊙ f_t

Everything right of ``dc_t ⊙`` and ``dm_t ⊙`` is known after the forward pass, so it is computed for
all timesteps before the loop; the loop keeps only what is truly sequential (4 ops and one GEMM a step,
each accumulating in place into a buffer of all steps: no allocation, no copy inside the loop).
"""

from __future__ import annotations

import torch
from torch import Tensor
from torch.autograd.function import once_differentiable
from torch.nn import functional as F

from torchseq.cells.lstm import LSTMCell
from torchseq.kernels.base import (
    flat,
    folded_bias,
    last_valid,
    needs_graph,
    per_step,
    previous_step_gradient,
    sigmoid_slope,
    tanh_slope,
    times_previous,
)


def run_lstm(
    cell: LSTMCell, x: Tensor, state: tuple[Tensor, Tensor], lengths: Tensor | None
) -> tuple[Tensor, tuple[Tensor, Tensor]]:
    """x (T, B, I) and (h_0, c_0) → outputs (T, B, H_out) and the final (h, c), as ``Unroll`` returns."""
    h0, c0 = state
    pre = F.linear(x, cell.weight_ih, folded_bias(cell))                           # (T, B, 4H)
    if needs_graph(pre, h0, c0, cell.weight_hh, cell.weight_hr):
        hs, cs = LSTMRecurrence.apply(pre, h0, c0, cell.weight_hh, cell.weight_hr)
    else:  # no graph: pre is a temporary of ours, and its buffer can become the gates
        hs, cs, *_ = lstm_forward(pre, h0, c0, cell.weight_hh, cell.weight_hr, keep=False)
    return hs, (last_valid(hs, lengths), last_valid(cs, lengths))


def lstm_forward(
    pre: Tensor, h0: Tensor, c0: Tensor, weight_hh: Tensor, weight_hr: Tensor | None, keep: bool
) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor | None]:
    """The forward loop, turning ``pre`` (T, B, 4H) into the activated gates in place.

    Returns h (T, B, H_out), c (T, B, H), the gates (T, B, 4, H) (``pre``'s buffer), tanh(c) and, with a
    projection, m = o ⊙ tanh(c) (T, B, H); tanh(c) of the last step only unless ``keep`` (for backward).
    """
    steps, batch, _ = pre.shape
    hidden = c0.shape[-1]
    gates = pre.view(steps, batch, 4, hidden)                                       # a_t, then σ/tanh(a_t)
    hs = pre.new_empty(steps, batch, weight_hh.shape[1])                            # (T, B, H_out)
    cs = pre.new_empty(steps, batch, hidden)                                        # (T, B, H)
    tanh_cs = pre.new_empty(steps if keep else 1, batch, hidden)                    # (T|1, B, H)
    ms = hs if weight_hr is None else pre.new_empty(steps, batch, hidden)           # m_t is h_t unprojected
    weight_hh_t = weight_hh.t()
    weight_hr_t = None if weight_hr is None else weight_hr.t()
    i, f, g, o = (per_step(gate, steps) for gate in gates.unbind(2))
    views = zip(
        per_step(pre, steps), per_step(gates[:, :, :2], steps), i, f, g, o,
        per_step(cs, steps), per_step(tanh_cs, steps), per_step(ms, steps), per_step(hs, steps), strict=True,
    )
    h, c = h0, c0
    for a_t, i_f_t, i_t, f_t, g_t, o_t, c_t, tanh_c_t, m_t, h_t in views:
        a_t.addmm_(h, weight_hh_t)                                                  # a = pre + W_hh h
        torch.sigmoid_(i_f_t)
        torch.tanh_(g_t)
        torch.sigmoid_(o_t)
        c = torch.mul(f_t, c, out=c_t).addcmul_(i_t, g_t)                           # c_t = f ⊙ c + i ⊙ g
        m = torch.mul(o_t, torch.tanh(c, out=tanh_c_t), out=m_t)                    # m_t = o ⊙ tanh(c_t)
        h = m if weight_hr_t is None else torch.mm(m, weight_hr_t, out=h_t)         # h_t = W_hr m_t
    return hs, cs, gates, tanh_cs, None if weight_hr is None else ms


class LSTMRecurrence(torch.autograd.Function):
    """(pre (T, B, 4H), h_0, c_0, W_hh, W_hr | None) → (h (T, B, H_out), c (T, B, H)) with explicit BPTT.

    First-order only (``once_differentiable``): a double backward raises instead of being wrong.
    """

    @staticmethod
    def forward(ctx, pre, h0, c0, weight_hh, weight_hr):
        hs, cs, gates, tanh_cs, ms = lstm_forward(pre.clone(), h0, c0, weight_hh, weight_hr, keep=True)
        ctx.save_for_backward(h0, c0, weight_hh, weight_hr, hs, cs, gates, tanh_cs, ms)
        return hs, cs

    @staticmethod
    @once_differentiable
    def backward(ctx, d_hs, d_cs):
        h0, c0, weight_hh, weight_hr, hs, cs, gates, tanh_cs, ms = ctx.saved_tensors
        steps, batch = gates.shape[:2]
        i, f, g, o = gates.unbind(2)                                                # (T, B, H) each

        # Factors that do not depend on the recurrence, for every timestep at once, written in place
        # into two buffers: at these sizes a fresh temporary costs more (page faults) than the arithmetic.
        factors = torch.empty_like(gates)                                           # (T, B, 4, H)
        per_i, per_f, per_g, per_dm = factors.unbind(2)
        sigmoid_slope(i, out=per_i).mul_(g)                          # dâ_i = dc ⊙ g i(1 − i)
        times_previous(sigmoid_slope(f, out=per_f), c0, cs)          # dâ_f = dc ⊙ c_{t-1} f(1 − f)
        tanh_slope(g, out=per_g).mul_(i)                             # dâ_g = dc ⊙ i (1 − g²)
        sigmoid_slope(o, out=per_dm).mul_(tanh_cs)                   # dâ_o = dm ⊙ tanh(c) o(1 − o)
        dc_per_dm = tanh_slope(tanh_cs, out=torch.empty_like(cs)).mul_(o)  # dc += dm ⊙ o (1 − tanh² c)

        # Total gradients of h_t and c_t, accumulated in place as the loop walks back; each step then
        # multiplies its factors in place into dA_t, so the factor buffer becomes the gradient of pre.
        dhs = d_hs.clone(memory_format=torch.contiguous_format)
        dcs = d_cs.clone(memory_format=torch.contiguous_format)
        dh_, dc_, f_, dc_per_dm_, per_dc_, per_dm_, d_pre_ = (
            per_step(v, steps)
            for v in (dhs, dcs, f, dc_per_dm, factors[:, :, :3], per_dm, factors.view(steps, batch, -1))
        )
        for t in range(steps - 1, -1, -1):
            dc = dc_[t]
            dm = dh_[t] if weight_hr is None else dh_[t] @ weight_hr                # dm_t = dh_t W_hr
            dc.addcmul_(dm, dc_per_dm_[t])
            per_dc_[t].mul_(dc.unsqueeze(1))                                        # dâ_i, dâ_f, dâ_g
            per_dm_[t].mul_(dm)                                                     # dâ_o
            if t > 0:
                dh_[t - 1].addmm_(d_pre_[t], weight_hh)                             # dh_{t-1} += dA_t W_hh
                dc_[t - 1].addcmul_(dc, f_[t])                                      # dc_{t-1} += dc_t ⊙ f_t
        d_pre = factors.view(steps, batch, -1)                                      # (T, B, 4H)

        d_h0 = d_pre[0] @ weight_hh if ctx.needs_input_grad[1] else None
        d_c0 = dcs[0] * f[0] if ctx.needs_input_grad[2] else None
        d_weight_hh = previous_step_gradient(d_pre, h0, hs) if ctx.needs_input_grad[3] else None
        d_weight_hr = flat(dhs).t() @ flat(ms) if ctx.needs_input_grad[4] else None
        return d_pre, d_h0, d_c0, d_weight_hh, d_weight_hr
