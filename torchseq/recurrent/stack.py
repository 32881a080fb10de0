"""Layers on top of each other, with dropout between them (never after the last), as in torch.nn."""

from __future__ import annotations

from collections.abc import Sequence

from torch import Tensor, nn
from torch.nn import functional as F

from torchseq.cells.base import RecurrentCell, State


class Stack(nn.Module):
    """``layers[l]`` is an :class:`Unroll` or a :class:`Bidirectional`; states are flat, layer-major."""

    def __init__(self, layers: Sequence[nn.Module], dropout: float = 0.0) -> None:
        super().__init__()
        self.layers = nn.ModuleList(layers)
        self.dropout = dropout

    @property
    def cells(self) -> list[RecurrentCell]:
        """Every cell in ``torch.nn`` order: layer 0 forward, layer 0 reverse, layer 1 forward, …"""
        return [cell for layer in self.layers for cell in layer.cells]

    def forward(
        self, x: Tensor, states: Sequence[State], lengths: Tensor | None = None
    ) -> tuple[Tensor, list[State]]:
        """x (T, B, I), one initial state per cell → output of the last layer, one final state per cell."""
        final_states: list[State] = []
        for index, layer in enumerate(self.layers):
            if index > 0:
                x = F.dropout(x, self.dropout, self.training)
            directions = len(layer.cells)
            x, layer_states = layer(x, states[len(final_states) : len(final_states) + directions], lengths)
            final_states += layer_states
        return x, final_states
