"""Explicit-formula recurrent cells, one per file; parameters laid out as in ``torch.nn.*Cell``.

Write your own by subclassing :class:`RecurrentCell` (or a stock cell): name the ``gates`` stacked in
``weight_ih``/``weight_hh`` and write the formula of one step in ``recur``.
"""

from torchseq.cells.base import RecurrentCell, State
from torchseq.cells.gru import GRUCell
from torchseq.cells.indrnn import IndRNNCell
from torchseq.cells.layernorm_gru import LayerNormGRUCell
from torchseq.cells.layernorm_lstm import LayerNormLSTMCell
from torchseq.cells.lstm import LSTMCell
from torchseq.cells.min_rnn import MinGRUCell, MinLSTMCell
from torchseq.cells.peephole_lstm import PeepholeLSTMCell
from torchseq.cells.rnn import RNNCell

__all__ = [
    "GRUCell", "IndRNNCell", "LSTMCell", "LayerNormGRUCell", "LayerNormLSTMCell", "MinGRUCell", "MinLSTMCell",
    "PeepholeLSTMCell", "RNNCell", "RecurrentCell", "State",
]
