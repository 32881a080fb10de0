"""The LSTM recurrence (optionally projected, LSTMP) with a hand-derived backward pass.

Forward, per step (pre_t = W_ih x_t + b_ih + b_hh for all t at once, before the loop):

    a_t = pre_t + h_{t-1} W_hhᵀ                           one GEMM, accumulated in place into pre_t
    o, i, f = σ(a_o, a_i, a_f);  g = tanh(a_g)            in place: the buffer of pre becomes the gates
    c_t = f ⊙ c_{t-1} + i ⊙ g
    m_t = o ⊙ tanh(c_t);  h_t = m_t (or m_t W_hrᵀ with a projection)

The forward loop keeps the gates in the order **o, i, f, g** (torch's i, f, g, o rolled by one gate, see
:func:`kernel_order`), so that the three σ gates are one slice: one σ call a step instead of two.

Backward (FORMULAS.md, "Backpropagation through time for the LSTM"), per step going back, with
dm_t the gradient at o ⊙ tanh(c_t) (dh_t itself without a projection, dh_t W_hr with one):

    dc_t += dm_t ⊙ o ⊙ (1 − tanh² c_t)
    dâ_i = dc_t ⊙ g ⊙ i(1 − i);   dâ_f = dc_t ⊙ c_{t-1} ⊙ f(1 − f);   dâ_g = dc_t ⊙ i ⊙ (1 − g²)
    dâ_o = dm_t ⊙ tanh(c_t) ⊙ o(1 − o)
    dh_{t-1} += dA_t W_hh;   dc_{t-1} += dc_t ⊙ f_t

Everything right of ``dc_t ⊙`` and ``dm_t ⊙`` is known after the forward pass, so it is computed for
all timesteps before the loop, in torch's gate order, where i, f, g (the gates multiplied by dc) are one
slice. The loop keeps only what is truly sequential: 4 pointwise ops and one GEMM a step, each
accumulating in place into a buffer of all steps.

Why the loops look the way they do: at small sizes (B = 1, H = 128) a pointwise op costs 1–2 µs of
dispatch whatever its size and a view ``buffer[t]`` about 0.5 µs, while the arithmetic takes a few dozen
ns. So the loops make as few ops per step as the formulas allow, and make all their per-step views in
bulk before the loop (``per_step``); every result goes into a preallocated (T, B, ·) buffer (no
allocation, no copy inside the loop, which matters at large sizes).
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
    step_operand,
    tanh_slope,
    times_previous,
    untracked,
)


def kernel_order(rows: Tensor | None, dim: int = 0) -> Tensor | None:
    """Gate blocks along ``dim`` in torch's order i, f, g, o → the forward loop's o, i, f, g (a copy)."""
    return None if rows is None else rows.roll(rows.shape[dim] // 4, dims=dim)


def run_lstm(
    cell: LSTMCell, x: Tensor, state: tuple[Tensor, Tensor], lengths: Tensor | None
) -> tuple[Tensor, tuple[Tensor, Tensor]]:
    """x (T, B, I) and (h_0, c_0) → outputs (T, B, H_out) and the final (h, c), as ``Unroll`` returns."""
    h0, c0 = state
    if needs_graph(x, h0, c0, *cell.parameters()):
        pre = F.linear(x, cell.weight_ih, folded_bias(cell))                       # (T, B, 4H)
        hs, cs = LSTMRecurrence.apply(pre, h0, c0, cell.weight_hh, cell.weight_hr)
    else:  # no graph: reorder the weights' rows instead of pre, and pre's buffer becomes the gates
        pre = F.linear(x, kernel_order(cell.weight_ih), kernel_order(folded_bias(cell)))
        hs, cs, *_ = lstm_forward(pre, h0, c0, kernel_order(cell.weight_hh), cell.weight_hr, keep=False)
    return hs, (last_valid(hs, lengths), last_valid(cs, lengths))


def lstm_forward(
    pre: Tensor, h0: Tensor, c0: Tensor, weight_hh: Tensor, weight_hr: Tensor | None, keep: bool
) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor | None]:
    """The forward loop, turning ``pre`` (T, B, 4H) into the activated gates in place; ``pre`` and the
    rows of ``weight_hh`` in :func:`kernel_order`.

    Returns h (T, B, H_out), c (T, B, H), the gates (T, B, 4, H) (``pre``'s buffer, order o, i, f, g),
    tanh(c) (T, B, H; the last step's only unless ``keep``, for backward) and, with a projection,
    m = o ⊙ tanh(c) (T, B, H).
    """
    steps, batch, _ = pre.shape
    hidden = c0.shape[-1]
    gates = pre.view(steps, batch, 4, hidden)                                       # a_t, then σ/tanh(a_t)
    hs = pre.new_empty(steps, batch, weight_hh.shape[1])                            # (T, B, H_out)
    cs = pre.new_empty(steps, batch, hidden)                                        # (T, B, H)
    tanh_cs = pre.new_empty(steps if keep else 1, batch, hidden)                    # (T|1, B, H)
    ms = hs if weight_hr is None else pre.new_empty(steps, batch, hidden)           # m_t is h_t unprojected
    weight_hh_t = step_operand(weight_hh, batch)
    weight_hr_t = None if weight_hr is None else weight_hr.t()
    m_views = per_step(ms, steps)
    h_views = m_views if weight_hr is None else per_step(hs, steps)  # no projection: h_t is m_t's buffer
    views = zip(
        per_step(pre, steps), per_step(gates[:, :, :3], steps),
        *(per_step(gate, steps) for gate in gates.unbind(2)),
        per_step(cs, steps), per_step(tanh_cs, steps), m_views, h_views, strict=True,
    )
    h, c = h0, c0
    with untracked():
        for a_t, o_i_f_t, o_t, i_t, f_t, g_t, c_t, tanh_c_t, m_t, h_t in views:
            a_t.addmm_(h, weight_hh_t)                                              # a = pre + W_hh h
            o_i_f_t.sigmoid_()                                                      # o, i, f
            g_t.tanh_()                                                             # g
            c = torch.mul(f_t, c, out=c_t).addcmul_(i_t, g_t)                       # c_t = f ⊙ c + i ⊙ g
            m = torch.mul(o_t, torch.tanh(c, out=tanh_c_t), out=m_t)                # m_t = o ⊙ tanh(c_t)
            h = m if weight_hr_t is None else torch.mm(m, weight_hr_t, out=h_t)     # h_t = W_hr m_t
    return hs, cs, gates, tanh_cs, None if weight_hr is None else ms


class LSTMRecurrence(torch.autograd.Function):
    """(pre (T, B, 4H), h_0, c_0, W_hh, W_hr | None) → (h (T, B, H_out), c (T, B, H)) with explicit BPTT.

    Inputs and gradients in torch's gate order i, f, g, o. First-order only (``once_differentiable``):
    a double backward raises instead of being wrong.
    """

    @staticmethod
    def forward(ctx, pre, h0, c0, weight_hh, weight_hr):
        # The reordered copy of pre is the forward loop's own buffer (the clone it needs anyway).
        gates_buffer = kernel_order(pre, dim=-1)
        hs, cs, gates, tanh_cs, ms = lstm_forward(
            gates_buffer, h0, c0, kernel_order(weight_hh), weight_hr, keep=True
        )
        ctx.save_for_backward(h0, c0, weight_hh, weight_hr, hs, cs, gates, tanh_cs, ms)
        return hs, cs

    @staticmethod
    @once_differentiable
    def backward(ctx, d_hs, d_cs):
        h0, c0, weight_hh, weight_hr, hs, cs, gates, tanh_cs, ms = ctx.saved_tensors
        steps, batch = gates.shape[:2]
        o, i, f, g = gates.unbind(2)                                                # (T, B, H) each

        # Factors that do not depend on the recurrence, for every timestep at once, written in place
        # into two buffers in torch's gate order; each step multiplies its factors by dc or dm in place,
        # so that the factor buffer becomes dA, the gradient of pre.
        factors = torch.empty_like(gates)                                           # (T, B, 4, H)
        per_i, per_f, per_g, per_dm = factors.unbind(2)
        sigmoid_slope(gates[:, :, 1:3], out=factors[:, :, :2])       # i(1 − i), f(1 − f)
        per_i.mul_(g)                                                # dâ_i = dc ⊙ g i(1 − i)
        times_previous(per_f, c0, cs)                                # dâ_f = dc ⊙ c_{t-1} f(1 − f)
        tanh_slope(g, out=per_g).mul_(i)                             # dâ_g = dc ⊙ i (1 − g²)
        sigmoid_slope(o, out=per_dm).mul_(tanh_cs)                   # dâ_o = dm ⊙ tanh(c) o(1 − o)
        dc_per_dm = tanh_slope(tanh_cs, out=torch.empty_like(cs)).mul_(o)  # dc += dm ⊙ o (1 − tanh² c)

        # Total gradients of h_t and c_t, accumulated in place as the loop walks back, in buffers with one
        # more row in front for h_0 and c_0: every step adds into "the previous row", the first step
        # included, with no special case, and the initial states' gradients are that row at the end.
        dhs = d_hs.new_zeros(steps + 1, batch, d_hs.shape[-1])
        dcs = d_cs.new_zeros(steps + 1, batch, d_cs.shape[-1])
        dhs[1:] = d_hs
        dcs[1:] = d_cs
        dh_, dc_ = per_step(dhs, steps + 1), per_step(dcs, steps + 1)
        views = zip(
            dh_[1:], dh_[:-1], dc_[1:], dc_[:-1], per_step(dcs[1:].unsqueeze(2), steps),
            per_step(dc_per_dm, steps), per_step(factors[:, :, :3], steps), per_step(per_dm, steps),
            per_step(factors.view(steps, batch, -1), steps), per_step(f, steps), strict=True,
        )
        views = reversed([*views])
        with untracked():
            for dh, dh_before, dc, dc_before, dc_gates, dc_per_dm_t, d_i_f_g, d_o, d_a, f_t in views:
                dm = dh if weight_hr is None else dh @ weight_hr                    # dm_t = dh_t W_hr
                dc.addcmul_(dm, dc_per_dm_t)                                # dc_t += dm ⊙ o(1 − tanh² c)
                d_i_f_g.mul_(dc_gates)                                              # dâ_i, dâ_f, dâ_g
                d_o.mul_(dm)                                                        # dâ_o
                dh_before.addmm_(d_a, weight_hh)                                    # dh_{t-1} += dA_t W_hh
                dc_before.addcmul_(dc, f_t)                                         # dc_{t-1} += dc_t ⊙ f_t
        d_pre = factors.view(steps, batch, -1)                                      # (T, B, 4H)

        d_weight_hh = previous_step_gradient(d_pre, h0, hs) if ctx.needs_input_grad[3] else None
        d_weight_hr = flat(dhs[1:]).t() @ flat(ms) if ctx.needs_input_grad[4] else None
        return d_pre, dhs[0], dcs[0], d_weight_hh, d_weight_hr
