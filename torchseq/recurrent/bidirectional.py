"""Two directions of one layer, and the Keras merge modes for their outputs."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from torchseq.cells.base import RecurrentCell, State
from torchseq.recurrent.unroll import Unroll

MERGE_MODES = ("concat", "sum", "mul", "ave", None)


class Bidirectional(nn.Module):
    """A forward and a backward :class:`Unroll` over the same input; outputs concatenated (F ‖ B)."""

    def __init__(self, forward_layer: Unroll, backward_layer: Unroll) -> None:
        super().__init__()
        if forward_layer.reverse or not backward_layer.reverse:
            raise ValueError("backward_layer: expected Unroll(reverse=True) after a forward Unroll")
        self.forward_layer = forward_layer
        self.backward_layer = backward_layer

    @property
    def cells(self) -> list[RecurrentCell]:
        return [self.forward_layer.cell, self.backward_layer.cell]

    @property
    def output_size(self) -> int:
        return self.forward_layer.output_size + self.backward_layer.output_size

    def forward(
        self, x: Tensor, states: Sequence[State], lengths: Tensor | None = None
    ) -> tuple[Tensor, list[State]]:
        forward_out, forward_state = self.forward_layer(x, states[:1], lengths)
        backward_out, backward_state = self.backward_layer(x, states[1:], lengths)
        return torch.cat([forward_out, backward_out], dim=-1), forward_state + backward_state


def merge_directions(output: Tensor, mode: str | None) -> Tensor | tuple[Tensor, Tensor]:
    """Merge a (…, 2·H) bidirectional output as Keras' ``Bidirectional(merge_mode=…)`` does.

    ``None`` returns the two halves (forward, backward) separately.
    """
    if mode == "concat":
        return output
    forward_half, backward_half = output.chunk(2, dim=-1)
    if mode is None:
        return forward_half, backward_half
    if mode == "sum":
        return forward_half + backward_half
    if mode == "mul":
        return forward_half * backward_half
    if mode == "ave":
        return (forward_half + backward_half) / 2
    raise ValueError(f"merge_mode: expected one of {MERGE_MODES}, got {mode!r}")
