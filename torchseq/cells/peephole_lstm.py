"""LSTM with peephole connections (Gers & Schmidhuber 2000)."""

from __future__ import annotations

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from torchseq.cells.base import RecurrentCell


class PeepholeLSTMCell(RecurrentCell):
    r"""LSTM whose gates also see the cell state (gate order i, f, g, o).

    .. math::
        \begin{aligned}
        i_t &= \sigma(W_{ii} x_t + W_{hi} h_{t-1} + p_i \odot c_{t-1} + b_i) \\
        f_t &= \sigma(W_{if} x_t + W_{hf} h_{t-1} + p_f \odot c_{t-1} + b_f) \\
        g_t &= \tanh(W_{ig} x_t + W_{hg} h_{t-1} + b_g) \\
        c_t &= f_t \odot c_{t-1} + i_t \odot g_t \\
        o_t &= \sigma(W_{io} x_t + W_{ho} h_{t-1} + p_o \odot c_t + b_o) \\
        h_t &= o_t \odot \tanh(c_t)
        \end{aligned}

    The peephole weights :math:`p_i, p_f, p_o` are vectors (diagonal matrices), ``weight_peephole``
    of shape (3, H); the output gate peeks at the *new* cell state. Gers & Schmidhuber, "Recurrent nets
    that time and count", IJCNN 2000. With ``init="torch"`` they start like every other parameter,
    U(−1/√H, 1/√H); with the other schemes at zero (the cell starts as a plain LSTM).
    """

    gates = ("i", "f", "g", "o")
    forget_gate_index = 1

    def __init__(self, input_size: int, hidden_size: int, bias: bool = True, **options) -> None:
        super().__init__(input_size, hidden_size, bias, **options)
        factory = {"device": self.weight_ih.device, "dtype": self.weight_ih.dtype}
        self.weight_peephole = nn.Parameter(torch.empty(3, hidden_size, **factory))
        self.reset_parameters()

    def reset_parameters(self, init: str | None = None) -> None:
        super().reset_parameters(init)
        if (init or self.init) != "torch":
            nn.init.zeros_(self.weight_peephole)

    def initial_state(self, batch_size: int, like: Tensor) -> tuple[Tensor, Tensor]:
        return like.new_zeros(batch_size, self.hidden_size), like.new_zeros(batch_size, self.hidden_size)

    def recur(self, projected_input: Tensor, state: tuple[Tensor, Tensor]) -> tuple[Tensor, Tensor]:
        h, c = state
        a_i, a_f, a_g, a_o = (projected_input + F.linear(h, self.weight_hh, self.bias_hh)).chunk(4, dim=-1)
        p_i, p_f, p_o = self.weight_peephole
        i = torch.sigmoid(a_i + p_i * c)       # input gate, peeking at c_{t-1}
        f = torch.sigmoid(a_f + p_f * c)       # forget gate, peeking at c_{t-1}
        c = f * c + i * torch.tanh(a_g)
        o = torch.sigmoid(a_o + p_o * c)       # output gate, peeking at c_t
        return o * torch.tanh(c), c
