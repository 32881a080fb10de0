"""``RecurrentTagger``: a torchseq recurrent stack with a linear head at *every* step (many-to-many).

Where :class:`~torchseq.models.RecurrentClassifier` reads one answer off the end of a sequence, the
tagger emits ``num_outputs`` numbers per timestep — what the copy task needs (it must write out the
remembered symbols at the last steps). Unidirectional by design: a step's output may depend only on
the steps before it.
"""

from __future__ import annotations

from torch import Tensor, nn

from torchseq.checks import check_choice
from torchseq.models.recurrent_encoder import CELLS


class RecurrentTagger(nn.Module):
    """x (B, T, F) → outputs (B, T, num_outputs): recurrent layers, then one linear map per step."""

    def __init__(
        self,
        input_size: int,
        num_outputs: int,
        hidden_size: int = 128,
        num_layers: int = 1,
        cell: str = "lstm",
        dropout: float = 0.0,
        impl: str = "custom",
        init: str = "torch",
    ) -> None:
        super().__init__()
        layers_class = CELLS[check_choice("cell", cell, tuple(CELLS))]
        self.input_size, self.num_outputs = input_size, num_outputs
        self.layers = layers_class(input_size, hidden_size, num_layers=num_layers, batch_first=True,
                                   dropout=dropout, impl=impl, init=init)
        self.head = nn.Linear(hidden_size, num_outputs)

    def forward(self, x: Tensor, lengths: Tensor | None = None) -> Tensor:
        output, _ = self.layers(x, lengths=lengths)                      # (B, T, H)
        return self.head(output)                                         # (B, T, num_outputs)
