"""Elman RNN cell (Keras ``SimpleRNN``, ``torch.nn.RNNCell``)."""

from __future__ import annotations

import torch
from torch import Tensor
from torch.nn import functional as F

from torchseq.cells.base import RecurrentCell

NONLINEARITIES = ("tanh", "relu")


class RNNCell(RecurrentCell):
    r"""Elman cell, the book's "simple RNN".

    .. math::
        h_t = \phi\left(W_{ih} x_t + b_{ih} + W_{hh} h_{t-1} + b_{hh}\right),
        \qquad \phi \in \{\tanh, \mathrm{ReLU}\}
    """

    gates = ("h",)

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        bias: bool = True,
        nonlinearity: str = "tanh",
        **options,
    ) -> None:
        if nonlinearity not in NONLINEARITIES:
            raise ValueError(f"nonlinearity: expected one of {NONLINEARITIES}, got {nonlinearity!r}")
        super().__init__(input_size, hidden_size, bias, **options)
        self.nonlinearity = nonlinearity
        self.activation = torch.tanh if nonlinearity == "tanh" else torch.relu
        self.reset_parameters()

    def recur(self, projected_input: Tensor, h: Tensor) -> Tensor:
        return self.activation(projected_input + F.linear(h, self.weight_hh, self.bias_hh))

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, nonlinearity={self.nonlinearity!r}"
