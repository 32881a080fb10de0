"""What the kernels share: when to build a graph, the per-step GEMM, threads and tanh of the loops, folded
biases, shifted states, final states, and the differentiable backward that makes every kernel exact to
any order."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import torch
from torch import Tensor

from torchseq.cells.base import RecurrentCell


def needs_graph(*tensors: Tensor | None) -> bool:
    """Whether autograd must see this call: grad mode is on and some input requires a gradient."""
    return torch.is_grad_enabled() and any(t is not None and t.requires_grad for t in tensors)


def functorch_is_active() -> bool:
    """Whether a ``torch.func`` transform is running (its interpreter stack is not empty)."""
    return torch._C._functorch.peek_interpreter_stack() is not None


def backward_needs_a_graph(*grad_outputs: Tensor) -> bool:
    """Whether a kernel's backward must be made of ordinary ops: autograd records it
    (``create_graph=True``), or a vmap batches it (``torch.func``, or ``autograd.grad`` with
    ``is_grads_batched=True`` as gradcheck's batched check), which a loop writing into preallocated
    buffers cannot serve."""
    functorch = torch._C._functorch
    return torch.is_grad_enabled() or functorch_is_active() or any(
        functorch.is_legacy_batchedtensor(g) or functorch.is_batchedtensor(g) for g in grad_outputs
    )


def differentiable_backward(
    ctx: Any, reference: Callable[..., Tensor | tuple[Tensor, ...]], inputs: tuple[Any, ...],
    grad_outputs: tuple[Tensor, ...],
) -> tuple[Tensor | None, ...]:
    """The backward of a kernel's Function when :func:`backward_needs_a_graph`.

    The hand-written loops produce numbers, not a graph, so a second derivative of them would be a
    constant. Here the ``reference`` recurrence (the kernel's formulas written with ordinary ops) is
    recomputed from the saved ``inputs`` under autograd and differentiated with ``create_graph=True``:
    the gradients it returns are themselves differentiable, as on the step-by-step path.
    """
    needs = ctx.needs_input_grad
    wanted = [need and isinstance(value, Tensor) for value, need in zip(inputs, needs, strict=True)]
    with torch.enable_grad():
        outputs = reference(*inputs)
    outputs = outputs if isinstance(outputs, tuple) else (outputs,)
    grads = iter(torch.autograd.grad(
        outputs, [value for value, want in zip(inputs, wanted, strict=True) if want], grad_outputs,
        create_graph=True, allow_unused=True,
    ))
    return tuple(next(grads) if want else None for want in wanted)


#: Batch sizes up to which the per-step GEMM reads Wᵀ from a contiguous copy (MKL's small-M GEMM reads
#: a row-major right operand faster than a transposed view).
SMALL_BATCH = 16
#: Recurrent weights with at least this many elements (2 MB in float32: the GRU and LSTM at H = 512) go
#: through oneDNN's packed GEMM: a weight past the L2 cache is read faster in oneDNN's blocked layout.
PACKED_ELEMENTS = 1 << 19
#: Fewest steps for which packing the weight (about one step's GEMM) pays off.
PACKED_STEPS = 8
#: Loops whose per-step GEMM has at most this many multiply-adds (B·G·H; the LSTM at B 16, H 64) run on
#: one thread: a second thread cannot speed up a step that small, but waits for it at every op.
SINGLE_THREAD_MACS = 1 << 18
#: Tensors from this many elements get tanh as 2σ(2a) − 1: torch's CPU tanh is several times slower per
#: element than its sigmoid, which outweighs three cheap extra ops once a step is this wide.
WIDE_TANH = 8192


class RecurrentProduct:
    """``rows @ weightᵀ`` for every step of a loop (W_hh h_{t-1} forward, dA W_hh backward), with the weight
    laid out once per call the way a step's GEMM reads it fastest: oneDNN's packed layout for a large
    float32 weight, a contiguous Wᵀ for a small batch, else the transposed view.

    ``accumulate(out, rows)`` adds the product into ``out`` in place; ``product(rows, out=…)`` writes it.
    Both are closures over the operand, chosen once: a step pays one call with positional arguments.
    """

    def __init__(self, weight: Tensor, batch: int, steps: int) -> None:
        self.packed: Tensor | None = None
        #: The right operand of an unpacked step's GEMM (None when packed), for the native loops.
        self.operand: Tensor | None = None
        operand = weight.t()
        if uses_packed_gemm(weight, steps):
            with torch.no_grad():
                self.packed = torch.ops.mkldnn._reorder_linear_weight(weight.contiguous(), batch)
            self.accumulate: Callable[[Tensor, Tensor], Tensor] = self._packed_accumulate
            self.product: Callable[..., Tensor] = self._packed_product
            return
        operand = operand.contiguous() if batch <= SMALL_BATCH else operand
        self.operand = operand

        def accumulate(out: Tensor, rows: Tensor) -> Tensor:
            return out.addmm_(rows, operand)

        def product(rows: Tensor, out: Tensor) -> Tensor:
            return torch.mm(rows, operand, out=out)

        self.accumulate, self.product = accumulate, product

    @property
    def native_operand(self) -> Tensor:
        """What the C++ loops read: the oneDNN-packed weight, else the operand (they make it contiguous)."""
        return self.operand if self.packed is None else self.packed

    def _packed_accumulate(self, out: Tensor, rows: Tensor) -> Tensor:
        return out.copy_(torch.ops.mkldnn._linear_pointwise.binary(rows, out, self.packed, None, "add"))

    def _packed_product(self, rows: Tensor, out: Tensor) -> Tensor:
        return out.copy_(torch.ops.mkldnn._linear_pointwise(rows, self.packed, None, "none", [], ""))


def uses_packed_gemm(weight: Tensor, steps: int) -> bool:
    """Whether :class:`RecurrentProduct` packs ``weight`` for oneDNN (float32 on CPU, large, enough steps)."""
    return (
        weight.dtype == torch.float32 and weight.device.type == "cpu" and torch.backends.mkldnn.is_available()
        and weight.numel() >= PACKED_ELEMENTS and steps >= PACKED_STEPS
    )


def tanh_in_place(elements: int) -> Callable[[Tensor], Tensor]:
    """tanh in place for a step of this many elements: ``Tensor.tanh_``, or 2σ(2x) − 1 from
    :data:`WIDE_TANH` (the same function). Chosen once per loop, so a step pays no Python call."""
    return Tensor.tanh_ if elements < WIDE_TANH else _wide_tanh_


def tanh_out(elements: int) -> Callable[..., Tensor]:
    """``f(x, out=…)``: tanh into ``out`` for a step of this many elements, as :func:`tanh_in_place`."""
    return torch.tanh if elements < WIDE_TANH else _wide_tanh_out


def _wide_tanh_(x: Tensor) -> Tensor:
    return x.mul_(2).sigmoid_().mul_(2).sub_(1)


def _wide_tanh_out(x: Tensor, out: Tensor) -> Tensor:
    return torch.mul(x, 2, out=out).sigmoid_().mul_(2).sub_(1)


@contextmanager
def loop_threads(step_macs: int, native: bool = False) -> Iterator[None]:
    """Run a per-step loop on one thread when its GEMM is small (:data:`SINGLE_THREAD_MACS`), restoring
    torch's thread count after. The count is process-wide: torch work in another Python thread during
    the loop runs on one thread too.

    A ``native`` (C++) loop keeps every thread: it splits the batch rows between them once per loop,
    not once per op (LSTM inference at B 16, H 64, 2 threads: 0.82 ms against 1.53 ms on one)."""
    with one_thread_if(not native and step_macs <= SINGLE_THREAD_MACS):
        yield


@contextmanager
def one_thread_if(condition: bool) -> Iterator[None]:
    """Run a block on one of torch's threads when ``condition`` holds, restoring the count after."""
    threads = torch.get_num_threads()
    if threads == 1 or not condition:
        yield
        return
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def folded_bias(cell: RecurrentCell, recurrent_rows: int | None = None) -> Tensor | None:
    """b_ih plus the first ``recurrent_rows`` of b_hh (all by default): the biases simply added to a gate.

    Adding them to the input projection once, for all timesteps, takes them out of the loop. Autograd
    differentiates this sum, so both parameters still get their gradients.
    """
    if cell.bias_ih is None or cell.bias_hh is None:
        return cell.bias_ih
    if recurrent_rows is None:
        return cell.bias_ih + cell.bias_hh
    rows = recurrent_rows  # the rest of b_hh sits inside a product (GRU's r ⊙ (W_hn h + b_hn))
    return torch.cat([cell.bias_ih[:rows] + cell.bias_hh[:rows], cell.bias_ih[rows:]])


def project(x: Tensor, weight_ih: Tensor, bias: Tensor | None, out: Tensor) -> Tensor:
    """pre = x W_ihᵀ + b for every timestep: one GEMM over the (T·B) rows of x (T, B, I) into ``out``, a
    kernel's own contiguous buffer of T·B·G elements (e.g. (T, B, G) or (T, B, gates, H)), which the
    loop then turns into gates or states in place."""
    rows = out.view(-1, weight_ih.shape[0])                                         # (T·B, G), no copy
    if bias is None:
        return torch.mm(flat(x), weight_ih.t(), out=rows)
    return torch.addmm(bias, flat(x), weight_ih.t(), out=rows)


def input_side_gradients(
    d_pre: Tensor, x: Tensor, weight_ih: Tensor, needs: tuple[bool, bool, bool]
) -> tuple[Tensor | None, Tensor | None, Tensor | None]:
    """dx, dW_ih and db of :func:`project` from d_pre (T, B, G), where ``needs`` says so: one GEMM or one
    sum each, over all timesteps at once."""
    needs_x, needs_weight, needs_bias = needs
    return (
        d_pre @ weight_ih if needs_x else None,
        flat(d_pre).t() @ flat(x) if needs_weight else None,
        flat(d_pre).sum(0) if needs_bias else None,
    )


def sigmoid_slope(s: Tensor, out: Tensor) -> Tensor:
    """σ'(a) = s (1 − s) from s = σ(a), as s − s·s in one pass, into ``out`` (no temporary)."""
    return torch.addcmul(s, s, s, value=-1, out=out)


def tanh_slope(t: Tensor, out: Tensor) -> Tensor:
    """tanh'(a) = 1 − t² from t = tanh(a), in one pass, into ``out`` (no temporary)."""
    return torch.addcmul(t.new_ones(()), t, t, value=-1, out=out)


def times_previous(factor: Tensor, first: Tensor, sequence: Tensor) -> Tensor:
    """factor_t ⊙ s_{t-1} in place, with s_{-1} = ``first``: e.g. f(1 − f) ⊙ c_{t-1} for all t."""
    factor[0].mul_(first)
    factor[1:].mul_(sequence[:-1])
    return factor


def previous_step_gradient(grads: Tensor, h0: Tensor, hs: Tensor) -> Tensor:
    """Σ_t grads_tᵀ h_{t-1} (a recurrent weight's gradient): one GEMM over the stacked (T−1)·B rows
    plus the first step's, without building a shifted copy of ``hs``."""
    first = grads[0].t() @ h0
    return torch.addmm(first, flat(grads[1:]).t(), flat(hs[:-1])) if grads.shape[0] > 1 else first


def flat(sequence: Tensor) -> Tensor:
    """(T, B, ·) → (T·B, ·) as a view, so one GEMM covers every timestep."""
    return sequence.reshape(-1, sequence.shape[-1])


def last_valid(sequence: Tensor, lengths: Tensor | None) -> Tensor:
    """The value at each sequence's last real step: (T, B, ·) → (B, ·).

    Steps past a sequence's end never influence earlier steps, so running them and then picking step
    ``length - 1`` gives the same final state as freezing the state at the end (``Unroll``'s mask),
    with no masking inside the loop. Their outputs are zeroed by the caller.
    """
    if lengths is None:
        return sequence[-1]
    batch = torch.arange(sequence.shape[1], device=sequence.device)
    return sequence[lengths.to(sequence.device) - 1, batch]


def per_step(buffer: Tensor, steps: int) -> tuple[Tensor, ...]:
    """The views ``buffer[t]`` for t < ``steps``, made at once before the loop (a view costs about what a
    small pointwise op does, so loops never index). A one-step buffer is reused for every step."""
    views = buffer.unbind(0)
    return views * steps if len(views) == 1 and steps > 1 else views


def shifted(first: Tensor, views: tuple[Tensor, ...]) -> tuple[Tensor, ...]:
    """Each step's previous state: ``first`` (a buffer the initial state is copied into) for step 0, then
    the views of steps 0 … T−2; so a loop reads h_{t-1} like any other operand, with no special first step."""
    return (first, *views[:-1])


def with_row_in_front(buffer: Tensor, gradients: Tensor) -> Tensor:
    """Fill a backward loop's total-gradient buffer (T + 1, B, ·): row 0, where the initial state's
    gradient accumulates, with zeros, the rest with the incoming per-step gradients (T, B, ·)."""
    buffer[0].zero_()
    buffer[1:].copy_(gradients)
    return buffer


def untracked() -> torch.inference_mode:
    """The context the per-step loops run in: inference mode, which skips even the version counters
    ``no_grad`` still updates. Buffers are made before it, so no result is an inference tensor."""
    return torch.inference_mode()

