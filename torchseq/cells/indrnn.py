"""Independently recurrent neural network cell (Li et al. 2018)."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from torchseq.cells.base import RecurrentCell
from torchseq.init import initialise_input_side_

NONLINEARITIES = ("relu", "tanh")


class IndRNNCell(RecurrentCell):
    r"""IndRNN: each unit recurs only on itself, through one weight.

    .. math::
        h_t = \phi\left(W_{ih} x_t + b_{ih} + u \odot h_{t-1} + b_{hh}\right),
        \qquad \phi \in \{\mathrm{ReLU}, \tanh\}

    ``weight_hh`` is the vector u (H,), not a matrix. Li, Li, Cook, Zhu & Gao, "Independently
    Recurrent Neural Network (IndRNN): Building a longer and deeper RNN", CVPR 2018. u starts
    U(0, 1) (the paper's constraint |u| ≤ 2^{1/T} keeps gradients bounded for long T; here it is
    left to the optimiser), the input weights and biases follow ``init``.
    """

    gates = ("h",)

    def __init__(
        self, input_size: int, hidden_size: int, bias: bool = True, nonlinearity: str = "relu", **options
    ) -> None:
        if nonlinearity not in NONLINEARITIES:
            raise ValueError(f"nonlinearity: expected one of {NONLINEARITIES}, got {nonlinearity!r}")
        super().__init__(input_size, hidden_size, bias, **options)
        self.nonlinearity = nonlinearity
        self.activation = torch.relu if nonlinearity == "relu" else torch.tanh
        del self.weight_hh  # a vector here, not the (H, H) matrix of the other cells
        factory = {"device": self.weight_ih.device, "dtype": self.weight_ih.dtype}
        self.weight_hh = nn.Parameter(torch.empty(hidden_size, **factory))
        self.reset_parameters()

    @property
    def output_size(self) -> int:
        return self.hidden_size

    def reset_parameters(self, init: str | None = None) -> None:
        initialise_input_side_(self.weight_ih, (self.bias_ih, self.bias_hh), self.hidden_size,
                               init or self.init)
        with torch.no_grad():
            nn.init.uniform_(self.weight_hh, 0.0, 1.0)

    def recur(self, projected_input: Tensor, h: Tensor) -> Tensor:
        recurrent = self.weight_hh * h
        if self.bias_hh is not None:
            recurrent = recurrent + self.bias_hh
        return self.activation(projected_input + recurrent)

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, nonlinearity={self.nonlinearity!r}"
