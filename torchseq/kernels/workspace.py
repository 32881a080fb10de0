"""Keeping a kernel's buffers, and the per-step views made of them, from one call to the next.

A view ``buffer[t]`` costs about what a small pointwise op does, and a loop reads several a step. Views
belong to their buffer, so making them once means keeping the buffers: a small cache per thread, keyed
by everything that shapes them, holds them, and each call copies its inputs in and its results out (one
op per buffer, whatever T is).

Those copies grow with the batch and hidden size, the views do not, so the trade pays only while a step
is small: at most :data:`SMALL_STEP` elements in a step's widest row (B·4H for the LSTM). Memory is
bounded too: a buffer set is kept only while its widest buffer has at most :data:`KEPT_ELEMENTS`
elements (T · row); a set holds about twice its widest buffer, so with at most :data:`KEPT` sets a
thread keeps at most about 64 MB in float32 (128 MB in float64). Other calls build their buffers fresh,
use them in place and hand them out as they are, as if there were no cache. Only CPU tensors are kept:
on CUDA a later call on another stream could overwrite a buffer still being read. :func:`release` drops
this thread's buffers. Measurements: ``benchmarks/reference/kernel-notes.md``.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable
from typing import TypeVar

import torch
from torch import Tensor

Buffers = TypeVar("Buffers")

#: The widest per-step row (elements) whose buffers are kept between calls.
SMALL_STEP = 4096
#: The most elements (T times the widest row) of the widest buffer in a kept set: 4 MB in float32.
KEPT_ELEMENTS = 1 << 20
#: Buffer sets kept per thread; the least recently used one goes first.
KEPT = 8

_kept = threading.local()


def keeps(step_elements: int, steps: int, device: torch.device) -> bool:
    """Whether a call of ``steps`` steps with this widest per-step row runs in kept buffers (and so
    copies its results out)."""
    return device.type == "cpu" and step_elements <= SMALL_STEP and steps * step_elements <= KEPT_ELEMENTS


def kept(key: Hashable, build: Callable[[], Buffers]) -> Buffers:
    """This thread's buffers for ``key``, built on first use.

    Per thread, so that two threads never write into the same buffers; a call copies its results out of
    them before it returns, so the next call may overwrite them.
    """
    store: OrderedDict[Hashable, object] = _kept.__dict__.setdefault("store", OrderedDict())
    if key in store:
        store.move_to_end(key)
    else:
        # Never inference tensors, even when the first call runs under inference mode (Lightning's
        # validation): a later call outside it could not write into them.
        with torch.inference_mode(False):
            store[key] = build()
        if len(store) > KEPT:
            store.popitem(last=False)
    return store[key]  # type: ignore[return-value]


def buffers_for(
    kind: Callable[..., Buffers], like: Tensor, steps: int, row: int, *shape: Hashable
) -> tuple[Buffers, bool]:
    """``kind(like, steps, *shape)``: kept ones, keyed by all of that and ``like``'s dtype and device,
    where a call of ``steps`` steps with a widest per-step row of ``row`` elements is small enough
    (:func:`keeps`), else new ones; and whether they are kept (then every result must be handed out as a
    copy)."""
    if keeps(row, steps, like.device):
        key = (kind, steps, *shape, like.dtype, like.device)
        return kept(key, lambda: kind(like, steps, *shape)), True
    return kind(like, steps, *shape), False


def release() -> None:
    """Drop this thread's kept buffers (the next small call builds its own again)."""
    _kept.__dict__.pop("store", None)


def hand_out(buffer: Tensor, is_kept: bool) -> Tensor:
    """A result to return: a copy if it lives in kept buffers (the next call overwrites them), else itself."""
    return buffer.clone() if is_kept else buffer
