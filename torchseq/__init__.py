"""torchseq: readable, exact recurrent cells for PyTorch, and the classic models built on them."""

from torchseq.cells import GRUCell, LSTMCell, RNNCell
from torchseq.recurrent import GRU, LSTM, RNN, Recurrent

__all__ = ["GRU", "LSTM", "RNN", "GRUCell", "LSTMCell", "RNNCell", "Recurrent"]
__version__ = "0.1.0"
