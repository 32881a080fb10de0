"""Long short-term memory cell (Hochreiter & Schmidhuber 1997, forget gate of Gers et al. 2000)."""

from __future__ import annotations

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from torchseq.cells.base import RecurrentCell


class LSTMCell(RecurrentCell):
    r"""LSTM cell with PyTorch's gate order i, f, g, o and optional projection (LSTMP).

    .. math::
        \begin{aligned}
        i_t &= \sigma(W_{ii} x_t + b_{ii} + W_{hi} h_{t-1} + b_{hi}) \\
        f_t &= \sigma(W_{if} x_t + b_{if} + W_{hf} h_{t-1} + b_{hf}) \\
        \tilde c_t = g_t &= \tanh(W_{ig} x_t + b_{ig} + W_{hg} h_{t-1} + b_{hg}) \\
        o_t &= \sigma(W_{io} x_t + b_{io} + W_{ho} h_{t-1} + b_{ho}) \\
        c_t &= f_t \odot c_{t-1} + i_t \odot g_t \\
        h_t &= o_t \odot \tanh(c_t) \qquad (\text{or } W_{hr}\,(o_t \odot \tanh(c_t)) \text{ with } P > 0)
        \end{aligned}

    With ``proj_size=P > 0`` the hidden state h has size P, ``weight_hh`` is (4H, P) and ``weight_hr``
    (P, H) exists, as in ``torch.nn.LSTM(proj_size=P)``; the cell state c keeps size H. Without it the
    parameters are exactly ``torch.nn.LSTMCell``'s.
    """

    gates = ("i", "f", "g", "o")
    forget_gate_index = 1

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        bias: bool = True,
        proj_size: int = 0,
        **options,
    ) -> None:
        if not isinstance(proj_size, int) or proj_size < 0 or (proj_size and proj_size >= hidden_size):
            raise ValueError(
                f"proj_size: expected an int in [0, hidden_size={hidden_size}), got {proj_size!r}"
            )
        super().__init__(input_size, hidden_size, bias, recurrent_size=proj_size or hidden_size, **options)
        self.proj_size = proj_size
        if proj_size:
            factory = {"device": self.weight_ih.device, "dtype": self.weight_ih.dtype}
            self.weight_hr = nn.Parameter(torch.empty(proj_size, hidden_size, **factory))
        else:
            self.register_parameter("weight_hr", None)
        self.reset_parameters()

    def initial_state(self, batch_size: int, like: Tensor) -> tuple[Tensor, Tensor]:
        return like.new_zeros(batch_size, self.output_size), like.new_zeros(batch_size, self.hidden_size)

    def recur(self, projected_input: Tensor, state: tuple[Tensor, Tensor]) -> tuple[Tensor, Tensor]:
        h, c = state
        a_i, a_f, a_g, a_o = (projected_input + F.linear(h, self.weight_hh, self.bias_hh)).chunk(4, dim=-1)
        i = torch.sigmoid(a_i)   # input gate
        f = torch.sigmoid(a_f)   # forget gate
        g = torch.tanh(a_g)      # candidate cell state c̃
        o = torch.sigmoid(a_o)   # output gate
        c = f * c + i * g
        h = o * torch.tanh(c)
        if self.weight_hr is not None:
            h = F.linear(h, self.weight_hr)
        return h, c

    def extra_repr(self) -> str:
        return super().extra_repr() + (f", proj_size={self.proj_size}" if self.proj_size else "")
