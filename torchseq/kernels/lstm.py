"""The LSTM recurrence (optionally projected, LSTMP) with a hand-derived backward pass.

Forward, per step, after pre_t = W_ih x_t + b_ih + b_hh for all t at once (one GEMM into the loop's own
buffer, before the loop):

    a_t = pre_t + h_{t-1} W_hhᵀ                           one GEMM, accumulated in place into pre_t
    o, i, f = σ(a_o, a_i, a_f);  g = tanh(a_g)            in place: the buffer of pre becomes the gates
    c_t = f ⊙ c_{t-1} + i ⊙ g
    m_t = o ⊙ tanh(c_t);  h_t = m_t (or m_t W_hrᵀ with a projection)

The kernel keeps the gates in the order **o, i, f, g** (torch's i, f, g, o rolled by one gate, see
:func:`kernel_order`), so that the three σ gates are one slice: one σ call a step instead of two. The
rows of the weights are reordered (small copies, differentiated by autograd), never the (T, B, 4H)
activations.

Backward (derived in docs/bptt.md, "LSTM"), per step going back, with
dm_t the gradient at o ⊙ tanh(c_t) (dh_t itself without a projection, dh_t W_hr with one):

    dc_t += dm_t ⊙ o ⊙ (1 − tanh² c_t)
    dâ_i = dc_t ⊙ g ⊙ i(1 − i);   dâ_f = dc_t ⊙ c_{t-1} ⊙ f(1 − f);   dâ_g = dc_t ⊙ i ⊙ (1 − g²)
    dâ_o = dm_t ⊙ tanh(c_t) ⊙ o(1 − o)
    dh_{t-1} += dA_t W_hh;   dc_{t-1} += dc_t ⊙ f_t

Everything right of ``dc_t ⊙`` and ``dm_t ⊙`` is known after the forward pass, so it is computed for
all timesteps before the loop, where i, f, g (the gates multiplied by dc) are one slice. The loop keeps
only what is truly sequential: 4 pointwise ops and one GEMM a step, each accumulating in place into a
buffer of all steps. Then dW_hh, dW_ih, db and dx are one GEMM or sum each over all timesteps.

Why the loops look the way they do: at small sizes an op costs its dispatch, not its arithmetic, so a
step makes as few ops as the formulas allow, each step reads named views made once
(:class:`ForwardStep`, :class:`BackwardStep`; kept between calls for small steps,
:mod:`torchseq.kernels.workspace`), and every result goes into a preallocated (T, B, ·) buffer. The
measurements behind these choices are in ``benchmarks/reference/kernel-notes.md``.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass
from types import ModuleType
from typing import NamedTuple

import torch
from torch import Tensor
from torch.nn import functional as F

from torchseq.cells.lstm import LSTMCell
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
    tanh_out,
    tanh_slope,
    times_previous,
    untracked,
    uses_packed_gemm,
    with_row_in_front,
)
from torchseq.kernels.native import native_loop_for
from torchseq.kernels.prepared import prepared_for
from torchseq.kernels.workspace import buffers_for, hand_out


def kernel_order(rows: Tensor | None, dim: int = 0) -> Tensor | None:
    """Gate blocks along ``dim`` in torch's order i, f, g, o → the forward loop's o, i, f, g (a copy)."""
    return None if rows is None else rows.roll(rows.shape[dim] // 4, dims=dim)


def run_lstm(
    cell: LSTMCell, x: Tensor, state: tuple[Tensor, Tensor], lengths: Tensor | None
) -> tuple[Tensor, tuple[Tensor, Tensor]]:
    """x (T, B, I) and (h_0, c_0) → outputs (T, B, H_out) and the final (h, c), as ``Unroll`` returns."""
    h0, c0 = state
    reads = (cell.weight_ih, cell.bias_ih, cell.bias_hh, cell.weight_hh, cell.weight_hr)
    if needs_graph(x, h0, c0, *reads):
        hs, cs = LSTMRecurrence.apply(x, h0, c0, *laid_out(cell))
        return hs, (last_valid(hs, lengths), last_valid(cs, lengths))
    weights = prepared_for(cell, reads, lambda: InferenceWeights(*laid_out(cell)))
    steps, batch, inputs = x.shape
    products = weights.products(batch, steps)
    native = native_loop_for(x, products.recurrent, products.projection)
    if native is not None and lengths is None:
        input_operand = weights.in_loop_input_operand(products, inputs)
        if input_operand is not None:
            bias = weights.tensors[1]
            return native_lstm_inference(native, x, h0, c0, input_operand, bias, products.recurrent)
    hs, cs, _ = lstm_forward(x, h0, c0, *weights.tensors, keep=False, products=products)
    return hs, (last_valid(hs, lengths), last_valid(cs, lengths).clone())  # cs may be a kept buffer


def projects_in_loop(inputs: int, hidden: int) -> bool:
    """Whether an inference call runs the input projection inside the C++ loop, step by step
    (``lstm_inference_loop``), rather than as one GEMM before it: where x_t W_ihᵀ is cheap beside the
    recurrent GEMM, so that writing and reading back a (T, B, 4H) buffer is what the projection costs.
    (Large weights, packed for oneDNN, project in the loop too: :meth:`InferenceWeights.products`.)"""
    return inputs * 4 <= hidden


def native_lstm_inference(
    native: ModuleType, x: Tensor, h0: Tensor, c0: Tensor, input_operand: Tensor, bias: Tensor | None,
    recurrent: RecurrentProduct,
) -> tuple[Tensor, tuple[Tensor, Tensor]]:
    """An inference call by ``lstm_inference_loop`` (no lengths, no projection): outputs and (h_T, c_T)."""
    steps, batch, _ = x.shape
    hs = x.new_empty(steps, batch, c0.shape[-1])
    c_last = torch.empty_like(c0)
    with untracked():
        native.lstm_inference_loop(
            x.contiguous(), h0.contiguous(), c0.contiguous(), input_operand, bias, recurrent.native_operand,
            hs, c_last,
        )
    return hs, (hs[-1], c_last)


def laid_out(cell: LSTMCell) -> tuple[Tensor, Tensor | None, Tensor, Tensor | None]:
    """W_ih, b = b_ih + b_hh and W_hh with their rows in :func:`kernel_order`, and W_hr: what the loops
    read."""
    return (
        kernel_order(cell.weight_ih), kernel_order(folded_bias(cell)), kernel_order(cell.weight_hh),
        cell.weight_hr,
    )


class InferenceWeights:
    """:func:`laid_out` weights for calls without autograd, kept while the cell's weights are unchanged
    (:func:`~torchseq.kernels.prepared.prepared_for`), with the step GEMMs' operands for the last few
    (batch, packing) combinations, since laying those out (W_hhᵀ contiguous, or packed) is most of it."""

    KEPT_PRODUCTS = 4

    def __init__(self, weight_ih: Tensor, bias: Tensor | None, weight_hh: Tensor, weight_hr: Tensor | None):
        self.tensors = (weight_ih, bias, weight_hh, weight_hr)
        self._products: OrderedDict[tuple[int, bool], Products] = OrderedDict()
        self._input_operand: Tensor | None = None

    @property
    def input_operand(self) -> Tensor:
        """W_ihᵀ (I, 4H), contiguous: the right operand of the C++ inference loop's input GEMM."""
        if self._input_operand is None:
            with torch.inference_mode(False):
                self._input_operand = self.tensors[0].t().contiguous()
        return self._input_operand

    def in_loop_input_operand(self, products: Products, inputs: int) -> Tensor | None:
        """What ``lstm_inference_loop`` reads to project x_t inside the loop, or None where one GEMM
        before the loop does it: W_ihᵀ for a narrow input (:func:`projects_in_loop`), W_ih packed for
        oneDNN beside a packed W_hh."""
        if projects_in_loop(inputs, self.tensors[2].shape[1]):
            return self.input_operand
        return products.packed_input

    def products(self, batch: int, steps: int) -> Products:
        weight_ih, weight_hh, weight_hr = self.tensors[0], self.tensors[2], self.tensors[3]
        key = (batch, uses_packed_gemm(weight_hh, steps))
        if key not in self._products:
            with torch.inference_mode(False):
                recurrent = RecurrentProduct(weight_hh, batch, steps)
                if recurrent.operand is not None:  # the C++ loops read Wᵀ contiguous: lay it out once here
                    recurrent.operand = recurrent.operand.contiguous()
                # Both weights packed: x_t W_ihᵀ as a oneDNN GEMM a step inside the loop, on rows in
                # cache, beats one MKL GEMM over all T·B rows into a (T, B, 4H) buffer read back after
                # (AMD EPYC, 2 threads, T 100, B 64, I = H = 512: 135 against 166 ms a call).
                packed_input = None
                if recurrent.packed is not None and uses_packed_gemm(weight_ih, steps):
                    packed_input = RecurrentProduct(weight_ih, batch, steps).packed
                self._products[key] = Products(
                    recurrent, None if weight_hr is None else RecurrentProduct(weight_hr, batch, steps),
                    packed_input,
                )
            if len(self._products) > self.KEPT_PRODUCTS:
                self._products.popitem(last=False)
        self._products.move_to_end(key)
        return self._products[key]


class Products(NamedTuple):
    """The forward loop's two step GEMMs: W_hh h_{t-1} and, with a projection, W_hr m_t."""

    recurrent: RecurrentProduct
    projection: RecurrentProduct | None
    packed_input: Tensor | None = None  # W_ih packed for oneDNN, for inference (InferenceWeights)


@dataclass(frozen=True, slots=True)
class ForwardStep:
    """Step t's views (B, ·) of :class:`ForwardBuffers`; gates in the order o, i, f, g."""

    a: Tensor          # pre_t, then a_t = pre_t + h_{t-1} W_hhᵀ, then the activated gates (B, 4H)
    o_i_f: Tensor      # the three σ gates as one slice (B, 3, H)
    o: Tensor
    i: Tensor
    f: Tensor
    g: Tensor
    c_prev: Tensor     # c_{t-1}: c_0's copy at t = 0
    c: Tensor
    tanh_c: Tensor
    m: Tensor          # o ⊙ tanh(c_t): h_t itself without a projection
    h_prev: Tensor     # h_{t-1}: h_0's copy at t = 0
    h: Tensor


class ForwardBuffers:
    """The forward loop's buffers for one shape, the named views each step reads and writes (made once),
    and the loop over them.

    ``pre`` (T, B, 4H, gate order o, i, f, g) becomes the activated gates in place. Step t reads h_{t-1}
    and c_{t-1} from the previous step's views, step 0 from ``h_first`` and ``c_first``, so the loop
    needs no special first step.
    """

    def __init__(self, like: Tensor, steps: int, batch: int, hidden: int, out_size: int, keep: bool) -> None:
        new = like.new_empty
        projected = out_size != hidden  # torch.nn requires proj_size < hidden_size
        self.pre = new(steps, batch, 4 * hidden)
        self.gates = self.pre.view(steps, batch, 4, hidden)                         # a_t, then σ/tanh(a_t)
        self.h_first, self.c_first = new(batch, out_size), new(batch, hidden)
        self.hs = new(steps, batch, out_size)
        self.cs = new(steps, batch, hidden)
        self.tanh_cs = new(steps if keep else 1, batch, hidden)             # last step only unless keep
        self.ms = new(steps, batch, hidden) if projected else self.hs               # m_t is h_t unprojected
        c, m = per_step(self.cs, steps), per_step(self.ms, steps)
        h = per_step(self.hs, steps) if projected else m
        a, o_i_f, tanh_c = per_step(self.pre, steps), per_step(self.gates[:, :, :3], steps), per_step(
            self.tanh_cs, steps
        )
        o, i, f, g = (per_step(gate, steps) for gate in self.gates.unbind(2))
        c_prev, h_prev = shifted(self.c_first, c), shifted(self.h_first, h)
        self.steps = [
            ForwardStep(
                a=a[t], o_i_f=o_i_f[t], o=o[t], i=i[t], f=f[t], g=g[t], c_prev=c_prev[t], c=c[t],
                tanh_c=tanh_c[t], m=m[t], h_prev=h_prev[t], h=h[t],
            )
            for t in range(steps)
        ]

    def loop(self, recurrent: RecurrentProduct, projection: RecurrentProduct | None) -> None:
        """Every step in order, on ``pre`` already holding x W_ihᵀ + b and the initial states copied in."""
        accumulate, elements = recurrent.accumulate, self.cs[0].numel()
        tanh_gate, tanh_cell = tanh_in_place(elements), tanh_out(elements)
        for step in self.steps:
            accumulate(step.a, step.h_prev)                                         # a = pre + W_hh h
            step.o_i_f.sigmoid_()                                                   # o, i, f
            tanh_gate(step.g)                                                       # g
            torch.mul(step.f, step.c_prev, out=step.c).addcmul_(step.i, step.g)    # c_t = f ⊙ c + i ⊙ g
            torch.mul(step.o, tanh_cell(step.c, out=step.tanh_c), out=step.m)      # m_t = o ⊙ tanh(c_t)
            if projection is not None:
                projection.product(step.m, out=step.h)                              # h_t = W_hr m_t


def lstm_forward(
    x: Tensor, h0: Tensor, c0: Tensor, weight_ih: Tensor, bias: Tensor | None, weight_hh: Tensor,
    weight_hr: Tensor | None, keep: bool, products: Products | None = None,
) -> tuple[Tensor, Tensor, tuple[Tensor, Tensor, Tensor | None] | None]:
    """The input projection of x (T, B, I) and the forward loop, with the rows of ``weight_ih``, ``bias``
    and ``weight_hh`` in :func:`kernel_order`; ``products``: the step GEMMs when the caller has them laid
    out already.

    Returns h (T, B, H_out), c (T, B, H) and, when ``keep``, what backward needs: the gates (T, B, 4, H;
    order o, i, f, g), tanh(c) (T, B, H) and, with a projection, m = o ⊙ tanh(c) (T, B, H). Without
    ``keep``, c may live in a buffer the next call on this thread overwrites: copy what you keep of it.
    """
    steps, batch, _ = x.shape
    if products is None:
        products = Products(
            RecurrentProduct(weight_hh, batch, steps),
            None if weight_hr is None else RecurrentProduct(weight_hr, batch, steps),
        )
    native = native_loop_for(x, products.recurrent, products.projection)
    if native is not None:
        return native_lstm_forward(native, x, h0, c0, weight_ih, bias, products.recurrent, keep)
    return python_lstm_forward(x, h0, c0, weight_ih, bias, weight_hh, weight_hr, keep, products)


def python_lstm_forward(
    x: Tensor, h0: Tensor, c0: Tensor, weight_ih: Tensor, bias: Tensor | None, weight_hh: Tensor,
    weight_hr: Tensor | None, keep: bool, products: Products,
) -> tuple[Tensor, Tensor, tuple[Tensor, Tensor, Tensor | None] | None]:
    """:func:`lstm_forward` by the Python loop, in kept buffers (:mod:`torchseq.kernels.workspace`) where
    the call is small enough, else in buffers made for it."""
    steps, batch, _ = x.shape
    hidden, out_size = c0.shape[-1], h0.shape[-1]
    buffers, is_kept = buffers_for(
        ForwardBuffers, x, steps, batch * 4 * hidden, batch, hidden, out_size, keep
    )
    project(x, weight_ih, bias, out=buffers.pre)                                    # pre = x W_ihᵀ + b
    buffers.h_first.copy_(h0)
    buffers.c_first.copy_(c0)
    with untracked(), loop_threads(batch * weight_hh.numel()):
        buffers.loop(products.recurrent, products.projection)
    hs, cs = hand_out(buffers.hs, is_kept), hand_out(buffers.cs, is_kept)
    if not keep:
        return hs, cs, None
    saved = (buffers.gates, buffers.tanh_cs, buffers.ms if weight_hr is not None else None)
    return hs, cs, tuple(None if b is None else hand_out(b, is_kept) for b in saved)


class NativeScratch:
    """The C++ forward loop's working buffers of a call without ``keep``: x W_ihᵀ + b turning into the
    gates, c for every step (the caller reads the last) and one step's tanh(c)."""

    def __init__(self, like: Tensor, steps: int, batch: int, hidden: int) -> None:
        self.pre = like.new_empty(steps, batch, 4 * hidden)
        self.cs = like.new_empty(steps, batch, hidden)
        self.tanh_cs = like.new_empty(1, batch, hidden)


def native_lstm_forward(
    native: ModuleType, x: Tensor, h0: Tensor, c0: Tensor, weight_ih: Tensor, bias: Tensor | None,
    recurrent: RecurrentProduct, keep: bool,
) -> tuple[Tensor, Tensor, tuple[Tensor, Tensor, None] | None]:
    """:func:`lstm_forward` by the C++ loop. It reads no per-step views, so what a call returns is
    written straight into new tensors (no copy out of kept buffers); only the scratch of a call without
    ``keep`` is kept between calls."""
    steps, batch, _ = x.shape
    hidden = c0.shape[-1]
    hs = x.new_empty(steps, batch, hidden)
    if keep:
        scratch = NativeScratch(x, steps, batch, hidden)
        scratch.tanh_cs = x.new_empty(steps, batch, hidden)
    else:
        scratch, _ = buffers_for(NativeScratch, x, steps, batch * 4 * hidden, batch, hidden)
    project(x, weight_ih, bias, out=scratch.pre)                                    # pre = x W_ihᵀ + b
    with untracked(), loop_threads(batch * hidden * 4 * hidden, native=True):
        native.lstm_forward_loop(
            scratch.pre, h0.contiguous(), c0.contiguous(), recurrent.native_operand, hs, scratch.cs,
            scratch.tanh_cs, keep,
        )
    if not keep:
        return hs, scratch.cs, None
    return hs, scratch.cs, (scratch.pre.view(steps, batch, 4, hidden), scratch.tanh_cs, None)


class LSTMInputs(NamedTuple):
    """:class:`LSTMRecurrence`'s inputs by name (also its gradient flags, ``ctx.needs_input_grad``)."""

    x: object
    h0: object
    c0: object
    weight_ih: object
    bias: object
    weight_hh: object
    weight_hr: object


class LSTMRecurrence(torch.autograd.Function):
    """(x (T, B, I), h_0, c_0, W_ih, b | None, W_hh, W_hr | None) → (h (T, B, H_out), c (T, B, H)) with
    explicit BPTT; the rows of W_ih, b and W_hh in :func:`kernel_order`, b = b_ih + b_hh.

    Differentiable to any order: a backward that autograd records runs :func:`lstm_reference` instead of
    the hand-written loop (:func:`~torchseq.kernels.base.differentiable_backward`).
    """

    @staticmethod
    def forward(ctx, x, h0, c0, weight_ih, bias, weight_hh, weight_hr):
        hs, cs, saved = lstm_forward(x, h0, c0, weight_ih, bias, weight_hh, weight_hr, keep=True)
        ctx.save_for_backward(x, h0, c0, weight_ih, bias, weight_hh, weight_hr, hs, cs, *saved)
        return hs, cs

    @staticmethod
    def backward(ctx, d_hs, d_cs):
        x, h0, c0, weight_ih, bias, weight_hh, weight_hr, hs, cs, gates, tanh_cs, ms = ctx.saved_tensors
        if backward_needs_a_graph(d_hs, d_cs):
            inputs = (x, h0, c0, weight_ih, bias, weight_hh, weight_hr)
            return differentiable_backward(ctx, lstm_reference, inputs, (d_hs, d_cs))
        steps, batch, _, hidden = gates.shape
        o, i, f, g = gates.unbind(2)                                                # (T, B, H) each
        buffers, is_kept = buffers_for(
            BackwardBuffers, hs, steps, batch * 4 * hidden, batch, hidden, h0.shape[-1]
        )
        buffers.f.copy_(f)

        # Factors that do not depend on the recurrence, for every timestep at once, written in place
        # into two buffers; each step multiplies its factors by dc or dm in place, so that the factor
        # buffer becomes dA, the gradient of pre.
        factors = buffers.factors                                                   # (T, B, 4, H)
        per_dm, per_i, per_f, per_g = factors.unbind(2)
        sigmoid_slope(gates[:, :, 1:3], out=factors[:, :, 1:3])      # i(1 − i), f(1 − f)
        per_i.mul_(g)                                                # dâ_i = dc ⊙ g i(1 − i)
        times_previous(per_f, c0, cs)                                # dâ_f = dc ⊙ c_{t-1} f(1 − f)
        tanh_slope(g, out=per_g).mul_(i)                             # dâ_g = dc ⊙ i (1 − g²)
        sigmoid_slope(o, out=per_dm).mul_(tanh_cs)                   # dâ_o = dm ⊙ tanh(c) o(1 − o)
        tanh_slope(tanh_cs, out=buffers.dc_per_dm).mul_(o)           # dc += dm ⊙ o (1 − tanh² c)

        # Total gradients of h_t and c_t, accumulated in place as the loop walks back, in buffers with one
        # more row in front for h_0 and c_0: every step adds into "the previous row", the first step
        # included, with no special case, and the initial states' gradients are that row at the end.
        dhs, dcs = with_row_in_front(buffers.dhs, d_hs), with_row_in_front(buffers.dcs, d_cs)
        recurrent = RecurrentProduct(weight_hh.t(), batch, steps)                  # dA_t W_hh
        projection = None if weight_hr is None else RecurrentProduct(weight_hr.t(), batch, steps)
        native = native_loop_for(hs, recurrent, projection)
        with untracked(), loop_threads(batch * weight_hh.numel(), native=native is not None):
            if native is not None:
                native.lstm_backward_loop(
                    dhs, dcs, factors, buffers.dc_per_dm, buffers.f, recurrent.native_operand
                )
            else:
                buffers.loop(recurrent, projection)
        d_pre = factors.view(steps, batch, -1)                                      # (T, B, 4H)

        wants = LSTMInputs(*ctx.needs_input_grad)
        d_x, d_weight_ih, d_bias = input_side_gradients(
            d_pre, x, weight_ih, (wants.x, wants.weight_ih, wants.bias)
        )
        d_h0 = hand_out(dhs[0], is_kept) if wants.h0 else None
        d_c0 = hand_out(dcs[0], is_kept) if wants.c0 else None
        d_weight_hh = previous_step_gradient(d_pre, h0, hs) if wants.weight_hh else None
        d_weight_hr = flat(dhs[1:]).t() @ flat(ms) if wants.weight_hr else None
        return d_x, d_h0, d_c0, d_weight_ih, d_bias, d_weight_hh, d_weight_hr


def lstm_reference(
    x: Tensor, h0: Tensor, c0: Tensor, weight_ih: Tensor, bias: Tensor | None, weight_hh: Tensor,
    weight_hr: Tensor | None,
) -> tuple[Tensor, Tensor]:
    """:class:`LSTMRecurrence`'s forward in ordinary differentiable ops (gate order o, i, f, g)."""
    pre = F.linear(x, weight_ih, bias)
    h, c, hs, cs = h0, c0, [], []
    for pre_t in pre:
        a_o, a_i, a_f, a_g = (pre_t + F.linear(h, weight_hh)).chunk(4, dim=-1)
        c = torch.sigmoid(a_f) * c + torch.sigmoid(a_i) * torch.tanh(a_g)
        h = torch.sigmoid(a_o) * torch.tanh(c)
        h = h if weight_hr is None else F.linear(h, weight_hr)
        hs.append(h)
        cs.append(c)
    return torch.stack(hs), torch.stack(cs)


@dataclass(frozen=True, slots=True)
class BackwardStep:
    """Step t's views (B, ·) of :class:`BackwardBuffers`; factor gates in the order o, i, f, g."""

    dh: Tensor         # total dh_t: the incoming gradient plus what step t + 1 added
    dh_prev: Tensor    # dh_{t-1}, where this step adds dA_t W_hh (h_0's row at t = 0)
    dc: Tensor
    dc_prev: Tensor
    dc_gates: Tensor   # dc_t as (B, 1, H), broadcast over the i, f, g factors
    dc_per_dm: Tensor  # o(1 − tanh² c_t): dc_t += dm_t ⊙ this
    d_i_f_g: Tensor    # the i, f, g factors (B, 3, H), multiplied by dc_t in place
    d_o: Tensor        # the o factor, multiplied by dm_t in place
    d_a: Tensor        # all four once multiplied: dA_t (B, 4H)
    f: Tensor


class BackwardBuffers:
    """The backward loop's buffers for one shape, the named views each step reads and writes (made
    once), and the loop over them.

    ``f`` (T, B, H) takes a copy of the forget gates, read by every step. ``dhs`` and ``dcs`` have one more
    row in front, for h_0 and c_0; ``dm`` holds one step's dh_t W_hr with a projection (else None);
    ``steps`` runs from the last step to the first.
    """

    def __init__(self, like: Tensor, steps: int, batch: int, hidden: int, out_size: int) -> None:
        new = like.new_empty
        self.f = new(steps, batch, hidden)
        self.dhs = new(steps + 1, batch, out_size)
        self.dcs = new(steps + 1, batch, hidden)
        self.factors = new(steps, batch, 4, hidden)                                 # order o, i, f, g
        self.dc_per_dm = new(steps, batch, hidden)
        self.dm = new(batch, hidden) if out_size != hidden else None
        dh, dc = per_step(self.dhs, steps + 1), per_step(self.dcs, steps + 1)
        dc_gates, dc_per_dm = per_step(self.dcs[1:].unsqueeze(2), steps), per_step(self.dc_per_dm, steps)
        d_i_f_g, d_o = per_step(self.factors[:, :, 1:], steps), per_step(self.factors[:, :, 0], steps)
        d_a, f = per_step(self.factors.view(steps, batch, -1), steps), per_step(self.f, steps)
        self.steps = [
            BackwardStep(
                dh=dh[t + 1], dh_prev=dh[t], dc=dc[t + 1], dc_prev=dc[t], dc_gates=dc_gates[t],
                dc_per_dm=dc_per_dm[t], d_i_f_g=d_i_f_g[t], d_o=d_o[t], d_a=d_a[t], f=f[t],
            )
            for t in reversed(range(steps))
        ]

    def loop(self, recurrent: RecurrentProduct, projection: RecurrentProduct | None) -> None:
        """Every step from the last to the first, on ``dhs``/``dcs`` holding the incoming gradients and
        ``factors`` the per-step factors."""
        accumulate = recurrent.accumulate
        for step in self.steps:
            dm = step.dh if projection is None else projection.product(step.dh, out=self.dm)  # dh_t W_hr
            step.dc.addcmul_(dm, step.dc_per_dm)                            # dc_t += dm ⊙ o(1 − tanh² c)
            step.d_i_f_g.mul_(step.dc_gates)                                        # dâ_i, dâ_f, dâ_g
            step.d_o.mul_(dm)                                                       # dâ_o
            accumulate(step.dh_prev, step.d_a)                                      # dh_{t-1} += dA_t W_hh
            step.dc_prev.addcmul_(step.dc, step.f)                                  # dc_{t-1} += dc_t ⊙ f_t
