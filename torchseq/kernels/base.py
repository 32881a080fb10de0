"""What the kernels share: when to build a graph, folded biases, shifted states, final states."""

from __future__ import annotations

import torch
from torch import Tensor

from torchseq.cells.base import RecurrentCell


def needs_graph(*tensors: Tensor | None) -> bool:
    """Whether autograd must see this call: grad mode is on and some input requires a gradient."""
    return torch.is_grad_enabled() and any(t is not None and t.requires_grad for t in tensors)


def folded_bias(cell: RecurrentCell, recurrent_rows: int | None = None) -> Tensor | None:
    """b_ih plus the first ``recurrent_rows`` of b_hh (all by default): the biases simply added to a gate.

    Adding them to the input projection once, for all timesteps, takes them out of the loop. Autograd
    differentiates this sum, so both parameters still get their gradients.
    """
    if cell.bias_ih is None or cell.bias_hh is None:
        return cell.bias_ih
    rows = cell.bias_hh.shape[0] if recurrent_rows is None else recurrent_rows
    return torch.cat([cell.bias_ih[:rows] + cell.bias_hh[:rows], cell.bias_ih[rows:]])


def shifted(first: Tensor, sequence: Tensor) -> Tensor:
    """(first, s_0, …, s_{T-2}): the previous-step values of a (T, B, ·) sequence, e.g. h_{t-1}."""
    return torch.cat([first.unsqueeze(0), sequence[:-1]])


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
    """The views ``buffer[t]`` for t < ``steps``, all made before the loop.

    Indexing a tensor costs a microsecond or two, about what a whole pointwise op on a small batch
    costs, so the loops below never index. A one-step buffer (nothing kept for backward) is reused for
    every step.
    """
    views = buffer.unbind(0)
    return views * steps if len(views) == 1 and steps > 1 else views
