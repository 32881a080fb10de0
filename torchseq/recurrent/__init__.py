"""How cells run over time: one direction, both directions, a stack, and the nn-compatible fronts."""

from torchseq.recurrent.bidirectional import Bidirectional, merge_directions
from torchseq.recurrent.modules import GRU, LSTM, RNN, RecurrentLayers
from torchseq.recurrent.stack import Stack
from torchseq.recurrent.unroll import Unroll, reverse_padded

__all__ = ["GRU", "LSTM", "RNN", "Bidirectional", "RecurrentLayers", "Stack", "Unroll", "merge_directions",
           "reverse_padded"]
