"""``SequenceClassifier``: an encoder turns a sequence into features, a linear head turns them into outputs.

The head gives ``num_outputs`` numbers per sequence: class logits for classification, a single value for
regression (the task decides which, and with which loss). :class:`RecurrentClassifier` uses a torchseq
RNN / LSTM / GRU / bidirectional stack as the encoder; :class:`torchseq.models.LSTMFCN` adds a
convolutional branch. Both take ``(input_size, num_outputs, ...)`` first, the shape a task calls to build
its model.

Input: ``x`` (B, T, F) batch-first and, for padded variable-length batches, ``lengths`` (B,).
"""

from __future__ import annotations

from typing import Any

from torch import Tensor, nn

from torchseq.checks import check_lengths, check_positive_int, check_sequence_input
from torchseq.models.recurrent_encoder import RecurrentEncoder


class SequenceClassifier(nn.Module):
    """``encoder`` (x, lengths) → (B, encoder.output_size) features → dropout → linear → (B, num_outputs).

    ``encoder`` must expose ``input_size`` and ``output_size``.
    """

    def __init__(self, encoder: nn.Module, num_outputs: int, dropout: float = 0.0) -> None:
        super().__init__()
        check_positive_int("num_outputs", num_outputs)
        self.input_size: int = encoder.input_size
        self.num_outputs = num_outputs
        self.encoder = encoder
        self.dropout = nn.Dropout(dropout)
        self.head = nn.Linear(encoder.output_size, num_outputs)

    def forward(self, x: Tensor, lengths: Tensor | None = None) -> Tensor:
        """x (B, T, F), lengths (B,) or None → outputs (B, num_outputs)."""
        if x.dim() != 3:
            raise ValueError(f"x: expected a batch of shape (B, T, F), got shape {tuple(x.shape)}")
        check_sequence_input(
            x, input_size=self.input_size, batch_first=True, parameter=self.head.weight, check_finite=False
        )
        if lengths is not None:
            lengths = check_lengths(lengths, batch_size=x.shape[0], steps=x.shape[1])
        features = self.encoder(x, lengths)                              # (B, D)
        return self.head(self.dropout(features))                         # (B, num_outputs)


class RecurrentClassifier(SequenceClassifier):
    """A :class:`RecurrentEncoder` (RNN, LSTM, GRU; stacked, bidirectional) with a linear head.

    ``dropout`` acts between recurrent layers, ``head_dropout`` on the features before the head; see
    :class:`RecurrentEncoder` for ``pooling`` (``"last"`` or ``"mean"``), ``cell`` (a stock name, a zoo
    name or the import path of your own cell) and the rest.
    """

    def __init__(
        self,
        input_size: int,
        num_outputs: int,
        hidden_size: int = 128,
        num_layers: int = 1,
        cell: str = "lstm",
        bidirectional: bool = False,
        dropout: float = 0.0,
        pooling: str = "last",
        impl: str = "custom",
        init: str = "torch",
        head_dropout: float = 0.0,
        cell_options: dict[str, Any] | None = None,
    ) -> None:
        encoder = RecurrentEncoder(
            input_size, hidden_size, num_layers=num_layers, cell=cell, bidirectional=bidirectional,
            dropout=dropout, pooling=pooling, impl=impl, init=init, cell_options=cell_options,
        )
        super().__init__(encoder, num_outputs, dropout=head_dropout)
