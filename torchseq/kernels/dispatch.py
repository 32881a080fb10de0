"""Which kernel, if any, runs a given cell over a sequence, and the switch that turns kernels off."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from functools import partial

import torch
from torch import Tensor

from torchseq.cells import GRUCell, LSTMCell, RecurrentCell, RNNCell, State
from torchseq.kernels.base import functorch_is_active
from torchseq.kernels.generic import prepare, run_generic, run_parallel_scan
from torchseq.kernels.gru import run_gru
from torchseq.kernels.lstm import run_lstm
from torchseq.kernels.rnn import run_rnn

#: x (T, B, I), initial state, lengths | None → outputs (T, B, H_out) unmasked, final state.
Kernel = Callable[[Tensor, State, Tensor | None], tuple[Tensor, State]]

# Exact types (``cell.computes_as``): a subclass may override ``recur`` with other formulas, so it takes
# the generic path unless it says it computes a built-in cell's formulas now.
KERNELS: dict[type[RecurrentCell], Callable[..., tuple[Tensor, State]]] = {
    LSTMCell: run_lstm,
    GRUCell: run_gru,
    RNNCell: run_rnn,
}
DTYPES = (torch.float32, torch.float64)  # the dtypes the kernels are tested in

_enabled = True


def find_kernel(cell: RecurrentCell, x: Tensor) -> Kernel | None:
    """The fast kernel for ``cell`` on input ``x``, or None where the step-by-step reference must run.

    Cell types without a hand-written kernel (subclasses included) get :func:`generic_kernel`. None
    when kernels are switched off, for dtypes other than float32/float64, while ``torch.compile``
    traces (it then sees the plain formulas, which it can fuse, rather than a hand-written backward it
    cannot look into), and inside ``torch.func`` transforms (``grad``, ``vmap``, ``jacrev`` …), which
    cannot batch or trace a loop writing into preallocated buffers. An empty batch (B = 0) takes the
    reference too, which returns empty results with autograd intact.
    """
    if (not _enabled or x.dtype not in DTYPES or x.shape[1] == 0 or torch.compiler.is_compiling()
            or functorch_is_active()):
        return None
    run = KERNELS.get(cell.computes_as)
    if run is not None:
        return partial(run, cell)
    return generic_kernel(cell, x)


def generic_kernel(cell: RecurrentCell, x: Tensor) -> Kernel | None:
    """For a cell without a hand-written kernel: its parallel scan while training, if it has one, else
    its ``recur`` traced into TorchScript step graphs (:mod:`torchseq.kernels.generic`); None where
    that trace is refused (``cell.fast_path = False``, random numbers in ``recur``, a failed check)."""
    if cell.training and hasattr(cell, "parallel_scan"):
        return partial(run_parallel_scan, cell)
    graphs = prepare(cell, x)
    return None if graphs is None else partial(run_generic, graphs, cell)


def kernels_are_enabled() -> bool:
    return _enabled


@contextmanager
def kernels_enabled(enabled: bool) -> Iterator[None]:
    """Run a block with the kernels on or off, e.g. ``with kernels_enabled(False):`` for the reference
    step-by-step path (what the kernels are tested and benchmarked against)."""
    global _enabled
    previous, _enabled = _enabled, enabled
    try:
        yield
    finally:
        _enabled = previous
