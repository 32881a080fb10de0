"""The book's Keras, in torchseq: Keras-convention layers, exact Keras weight loading, the chapter's models.

Keras itself is not needed: the layers are torchseq's, and weights load from a Keras model object (when
you have Keras) or from its ``.keras`` / ``.weights.h5`` file (with h5py only).
"""

from torchseq.keras.book import BiLSTMClassifier, LSTMClassifier, SimpleRNNClassifier
from torchseq.keras.layers import (
    GRU,
    LSTM,
    Bidirectional,
    Dense,
    KerasLayer,
    Sequential,
    SimpleRNN,
    time_shared_dropout,
)
from torchseq.keras.masking import lengths_from_mask, padding_mask
from torchseq.keras.weights import load_keras_weights, read_keras_weights

__all__ = [
    "GRU",
    "LSTM",
    "BiLSTMClassifier",
    "Bidirectional",
    "Dense",
    "KerasLayer",
    "LSTMClassifier",
    "Sequential",
    "SimpleRNN",
    "SimpleRNNClassifier",
    "lengths_from_mask",
    "load_keras_weights",
    "padding_mask",
    "read_keras_weights",
    "time_shared_dropout",
]
