"""Weights laid out for the kernels, kept from one call without autograd to the next while a cell's
parameters are unchanged.

Every call lays the weights out for its loops: the LSTM's rows reordered into its gate order, the
biases folded, W_hhᵀ made contiguous (or packed for oneDNN). Under autograd this must happen in every
call, as differentiable ops on the parameters. A call without autograd (inference, validation) may
reuse what an earlier one made, as long as it would make the same again: the tensors it reads are the
same objects (checked by identity, through weak references) with the same contents (their version
counters, which every in-place change bumps: an optimizer step, ``load_state_dict``, ``nn.init``; a
``.data`` swap changes the storage pointer, also checked). A weight that a parametrization, weight
norm or pruning recomputes on every access or forward is a new tensor each time, so it is laid out
anew. At batch 1 and T = 100 the layout was a third of an inference call's time on the LSTM (the
transposed copy of W_hh alone 38 µs of 507 µs, AMD EPYC, one thread).

Nothing is kept for parameters that are inference tensors (they have no version counter) or inside a
``torch.func`` transform (their parameters may be batched or functional wrappers). The kept tensors are
ordinary tensors even when made under inference mode, so later calls outside it may read them.
"""

from __future__ import annotations

import weakref
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

import torch
from torch import Tensor, nn

from torchseq.kernels.base import functorch_is_active

Prepared = TypeVar("Prepared")

_kept: weakref.WeakKeyDictionary[nn.Module, tuple[tuple[Any, ...], Any]] = weakref.WeakKeyDictionary()


def prepared_for(
    cell: nn.Module, reads: Sequence[Tensor | None], prepare: Callable[[], Prepared]
) -> Prepared:
    """``prepare()``, made from the tensors in ``reads`` (the cell's weights, as the kernel reads them),
    and returned again while those are the same tensors with the same contents. For calls without
    autograd only: what it returns records no graph."""
    tensors = [t for t in reads if t is not None]
    if functorch_is_active() or any(t.is_inference() for t in tensors):
        return prepare()
    key = tuple(None if t is None else (t._version, t.data_ptr()) for t in reads)
    kept = _kept.get(cell)
    if kept is not None:
        (references, kept_key), value = kept
        if kept_key == key and all(ref() is t for ref, t in zip(references, tensors, strict=True)):
            return value
    with torch.inference_mode(False), torch.no_grad():
        value = prepare()
    _kept[cell] = ((tuple(weakref.ref(t) for t in tensors), key), value)
    return value


def forget_prepared() -> None:
    """Drop every kept layout (the next call without autograd makes its own again)."""
    _kept.clear()
