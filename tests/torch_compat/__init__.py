"""PyTorch's own unit tests for nn.RNN / nn.LSTM / nn.GRU, run on torch.nn and on torchseq's fronts.

Adapted from PyTorch's test suite (BSD-3-Clause, see LICENSE-PYTORCH in this folder).
"""
