"""Explicit-formula recurrent cells, one per file; parameters laid out as in ``torch.nn.*Cell``."""

from torchseq.cells.base import RecurrentCell, State
from torchseq.cells.gru import GRUCell
from torchseq.cells.lstm import LSTMCell
from torchseq.cells.rnn import RNNCell

__all__ = ["GRUCell", "LSTMCell", "RNNCell", "RecurrentCell", "State"]
