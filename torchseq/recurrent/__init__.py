"""How cells run over time: one direction, both directions, a stack, any cell as a layer, and the
nn-compatible fronts."""

from torchseq.recurrent.bidirectional import Bidirectional, merge_directions
from torchseq.recurrent.config import RecurrentConfig
from torchseq.recurrent.fronts import GRU, LSTM, RNN, TorchFront
from torchseq.recurrent.layers import Recurrent
from torchseq.recurrent.stack import Stack
from torchseq.recurrent.unroll import Unroll, reverse_padded

#: Any recurrent layer (the fronts included): the type models, callbacks and tools accept.
RecurrentLayers = Recurrent

__all__ = ["GRU", "LSTM", "RNN", "Bidirectional", "Recurrent", "RecurrentConfig", "RecurrentLayers", "Stack",
           "TorchFront", "Unroll", "merge_directions", "reverse_padded"]
