"""A torchseq recurrent stack read as a feature extractor: (B, T, F) sequences → (B, D·H) features."""

from __future__ import annotations

import importlib
from typing import Any

from torch import Tensor, nn

from torchseq import cells
from torchseq.checks import check_choice
from torchseq.models.pooling import masked_mean
from torchseq.recurrent import GRU, LSTM, RNN, Recurrent, RecurrentLayers

CELLS: dict[str, type[RecurrentLayers]] = {"rnn": RNN, "lstm": LSTM, "gru": GRU}
#: The zoo's cells by short name; any other cell is named by its import path.
ZOO: dict[str, type[cells.RecurrentCell]] = {
    "layernorm_lstm": cells.LayerNormLSTMCell, "layernorm_gru": cells.LayerNormGRUCell,
    "peephole_lstm": cells.PeepholeLSTMCell, "indrnn": cells.IndRNNCell,
    "min_gru": cells.MinGRUCell, "min_lstm": cells.MinLSTMCell,
}
POOLINGS = ("last", "mean")


def resolve_cell(cell: str | type[cells.RecurrentCell]) -> str | type[cells.RecurrentCell]:
    """A stock front's name (``"lstm"``), else the cell class named by ``cell``: a zoo name
    (``"layernorm_lstm"``), an import path (``"mypackage.cells.MyCell"``) or the class itself."""
    if isinstance(cell, str) and cell in CELLS:
        return cell
    if isinstance(cell, str) and cell in ZOO:
        return ZOO[cell]
    expected = (f"one of {(*CELLS, *ZOO)} or an import path 'package.module.Cell' of a RecurrentCell "
                "subclass")
    if isinstance(cell, str):
        module_name, _, class_name = cell.rpartition(".")
        if not module_name:
            raise ValueError(f"cell: expected {expected}, got {cell!r}")
        try:
            cell = getattr(importlib.import_module(module_name), class_name)
        except (ImportError, AttributeError) as error:
            raise ValueError(f"cell: cannot import {cell!r} ({error}); expected {expected}") from error
    if not (isinstance(cell, type) and issubclass(cell, cells.RecurrentCell)):
        raise ValueError(f"cell: expected {expected}, got {cell!r}")
    return cell


class RecurrentEncoder(nn.Module):
    """``torchseq.RNN`` / ``LSTM`` / ``GRU`` over a batch-first sequence, pooled over time.

    Pooling:

    - ``"last"``: the top layer's final hidden state ``h_n``. With ``lengths`` the layers stop each
      sequence at its own end, so this is the state after its last *real* step, never after padding.
      Bidirectional: the forward direction's state at the end and the backward one's at the start,
      concatenated (the forward's last output alone would have seen only one direction's context).
    - ``"mean"``: the average of the top layer's outputs over each sequence's real steps.

    ``dropout`` is the recurrent stack's own dropout between layers (it has no effect with one layer).
    ``cell`` is ``"rnn"``, ``"lstm"``, ``"gru"`` (the drop-in fronts), a zoo cell (``"layernorm_lstm"``,
    ``"layernorm_gru"``, ``"peephole_lstm"``, ``"indrnn"``, ``"min_gru"``, ``"min_lstm"``) or the import
    path of any :class:`~torchseq.cells.RecurrentCell` subclass (``"mypackage.cells.MyCell"``), run by
    :class:`~torchseq.Recurrent` with ``cell_options`` passed to its constructor.
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
        cell_options: dict[str, Any] | None = None,
    ) -> None:
        super().__init__()
        resolved = resolve_cell(cell)
        self.pooling = check_choice("pooling", pooling, POOLINGS)
        options = {"num_layers": num_layers, "batch_first": True, "dropout": dropout,
                   "bidirectional": bidirectional, "impl": impl, "init": init}
        if isinstance(resolved, str):
            self.layers = CELLS[resolved](input_size, hidden_size, **options, **(cell_options or {}))
        else:
            self.layers = Recurrent(resolved, input_size, hidden_size, **options, **(cell_options or {}))
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
