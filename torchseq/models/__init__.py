"""Plain ``nn.Module`` models built on torchseq's layers (no Lightning here; see :mod:`torchseq.tasks`)."""

from torchseq.models.classifier import RecurrentClassifier, SequenceClassifier
from torchseq.models.lstm_fcn import LSTMFCN, FullyConvolutionalEncoder, LSTMFCNEncoder
from torchseq.models.pooling import masked_mean, valid_steps
from torchseq.models.recurrent_encoder import RecurrentEncoder

__all__ = [
    "LSTMFCN",
    "FullyConvolutionalEncoder",
    "LSTMFCNEncoder",
    "RecurrentClassifier",
    "RecurrentEncoder",
    "SequenceClassifier",
    "masked_mean",
    "valid_steps",
]
