"""One direction of one layer: run a cell over a (T, B, F) sequence.

The input projection W_ih x_t + b_ih of every timestep is one GEMM before the loop; the loop does only
the recurrent half of each step. Variable lengths are handled with a (T, B) mask: a finished sequence
keeps its final state and emits zeros, which is exactly what ``torch.nn`` returns for packed input.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from torchseq.cells.base import RecurrentCell, State
from torchseq.kernels import find_kernel
from torchseq.masks import lengths_mask


def reverse_padded(x: Tensor, lengths: Tensor | None) -> Tensor:
    """Reverse each sequence of a (T, B, ...) tensor in time within its own length.

    Padding positions (t ≥ length) stay where they are, so applying this twice is the identity.
    """
    if lengths is None:
        return x.flip(0)
    steps = x.shape[0]
    t = torch.arange(steps, device=x.device).unsqueeze(1)                  # (T, 1)
    source = lengths.to(x.device).unsqueeze(0) - 1 - t                       # (T, B)
    source = torch.where(source >= 0, source, t.expand_as(source))
    source = source.reshape(*source.shape, *([1] * (x.dim() - 2))).expand_as(x)
    return x.gather(0, source)


def step_mask(lengths: Tensor, steps: int, device: torch.device) -> Tensor:
    """(T, B, 1) boolean: True where timestep t is inside sequence b."""
    return lengths_mask(lengths, steps, device).t().unsqueeze(-1)


def keep_where(mask: Tensor, new: State, old: State) -> State:
    if isinstance(new, tuple):
        return tuple(torch.where(mask, n, o) for n, o in zip(new, old, strict=True))  # type: ignore[return-value]
    return torch.where(mask, new, old)


class Unroll(nn.Module):
    """A cell run over time in one direction (``reverse=True`` reads each sequence from its end)."""

    def __init__(self, cell: RecurrentCell, reverse: bool = False) -> None:
        super().__init__()
        self.cell = cell
        self.reverse = reverse

    @property
    def cells(self) -> list[RecurrentCell]:
        return [self.cell]

    @property
    def output_size(self) -> int:
        return self.cell.output_size

    def forward(
        self, x: Tensor, states: Sequence[State], lengths: Tensor | None = None
    ) -> tuple[Tensor, list[State]]:
        """x (T, B, I), ``states`` = [initial state] → output (T, B, H_out), [final state]."""
        (state,) = states
        if self.reverse:
            x = reverse_padded(x, lengths)
        mask = None if lengths is None else step_mask(lengths, x.shape[0], x.device)  # (T, B, 1)
        kernel = find_kernel(self.cell, x)  # the same formulas with a hand-derived BPTT, where one exists
        if kernel is not None:
            output, state = kernel(x, state, lengths)
        else:
            output, state = self.step_by_step(x, state, mask)
        if mask is not None:
            output = output.masked_fill(~mask, 0.0)
        if self.reverse:
            output = reverse_padded(output, lengths)
        return output, [state]

    def step_by_step(self, x: Tensor, state: State, mask: Tensor | None) -> tuple[Tensor, State]:
        """The reference: ``cell.recur`` once per timestep, differentiated by autograd."""
        projected = self.cell.input_projection(x)                                # (T, B, G·H)
        outputs = []
        for t in range(x.shape[0]):
            new_state = self.cell.recur(projected[t], state)
            state = new_state if mask is None else keep_where(mask[t], new_state, state)
            outputs.append(self.cell.hidden(state))
        return torch.stack(outputs), state                                       # (T, B, H_out)
