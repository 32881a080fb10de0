"""A torchseq recurrent stack read as a feature extractor: (B, T, F) sequences → (B, D·H) features."""

from __future__ import annotations

from torch import Tensor, nn

from torchseq.checks import check_choice
from torchseq.models.pooling import masked_mean
from torchseq.recurrent import GRU, LSTM, RNN, RecurrentLayers

CELLS: dict[str, type[RecurrentLayers]] = {"rnn": RNN, "lstm": LSTM, "gru": GRU}
POOLINGS = ("last", "mean")


class RecurrentEncoder(nn.Module):
    """``torchseq.RNN`` / ``LSTM`` / ``GRU`` over a batch-first sequence, pooled over time.

    Pooling:

    - ``"last"``: the top layer's final hidden state ``h_n``. With ``lengths`` the layers stop each
      sequence at its own end, so this is the state after its last *real* step, never after padding.
      Bidirectional: the forward direction's state at the end and the backward one's at the start,
      concatenated (the forward's last output alone would have seen only one direction's context).
    - ``"mean"``: the average of the top layer's outputs over each sequence's real steps.

    ``dropout`` is the recurrent stack's own dropout between layers (it has no effect with one layer).
    """

    def __init__(
        self,
        input_size: int,
        hidden_size: int = 128,
        num_layers: int = 1,
        cell: str = "lstm",
        bidirectional: bool = False,
        dropout: float = 0.0,
        pooling: str = "last",
        impl: str = "custom",
        init: str = "torch",
    ) -> None:
        super().__init__()
        layers_class = CELLS[check_choice("cell", cell, tuple(CELLS))]
        self.pooling = check_choice("pooling", pooling, POOLINGS)
        self.layers = layers_class(
            input_size, hidden_size, num_layers=num_layers, batch_first=True, dropout=dropout,
            bidirectional=bidirectional, impl=impl, init=init,
        )
        self.input_size = input_size
        self.directions = 2 if bidirectional else 1
        self.output_size = self.directions * hidden_size

    def forward(self, x: Tensor, lengths: Tensor | None = None) -> Tensor:
        """x (B, T, F), lengths (B,) or None → features (B, D·H)."""
        output, state = self.layers(x, lengths=lengths)                  # (B, T, D·H), h_n (L·D, B, H)
        if self.pooling == "mean":
            return masked_mean(output, lengths)
        h_n = state[0] if isinstance(state, tuple) else state            # the LSTM also returns c_n
        top = h_n[-self.directions:]                                     # (D, B, H)
        return top.transpose(0, 1).reshape(x.shape[0], self.output_size)  # (B, D·H)
