"""Gated recurrent unit (Cho et al. 2014), both the cuDNN/PyTorch and the original formulation."""

from __future__ import annotations

import torch
from torch import Tensor
from torch.nn import functional as F

from torchseq.cells.base import RecurrentCell


class GRUCell(RecurrentCell):
    r"""GRU cell with PyTorch's gate order r, z, n.

    ``reset_after=True`` (default) is the variant of cuDNN, ``torch.nn.GRU`` and Keras' default:
    the reset gate multiplies the *result* of the hidden matmul (bias included).

    .. math::
        \begin{aligned}
        r_t &= \sigma(W_{ir} x_t + b_{ir} + W_{hr} h_{t-1} + b_{hr}) \\
        z_t &= \sigma(W_{iz} x_t + b_{iz} + W_{hz} h_{t-1} + b_{hz}) \\
        n_t &= \tanh\!\big(W_{in} x_t + b_{in} + r_t \odot (W_{hn} h_{t-1} + b_{hn})\big) \\
        h_t &= (1 - z_t) \odot n_t + z_t \odot h_{t-1}
        \end{aligned}

    ``reset_after=False`` is the original formula of Cho et al. 2014 and the book (Keras
    ``reset_after=False``): the reset gate multiplies h *before* the matmul,

    .. math::
        n_t = \tanh\!\big(W_{in} x_t + b_{in} + W_{hn} (r_t \odot h_{t-1}) + b_{hn}\big).

    No fused kernel (cuDNN, oneDNN, ``torch.nn.GRU``) computes this second form, so a layer built with
    ``reset_after=False`` only runs with ``impl="custom"``. The parameters have the same names and
    shapes either way; the same weights give different (both valid) GRUs.
    """

    gates = ("r", "z", "n")

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        bias: bool = True,
        reset_after: bool = True,
        **options,
    ) -> None:
        super().__init__(input_size, hidden_size, bias, **options)
        self.reset_after = reset_after
        self.reset_parameters()

    def recur(self, projected_input: Tensor, h: Tensor) -> Tensor:
        x_r, x_z, x_n = projected_input.chunk(3, dim=-1)
        if self.reset_after:
            h_r, h_z, h_n = F.linear(h, self.weight_hh, self.bias_hh).chunk(3, dim=-1)
            r = torch.sigmoid(x_r + h_r)           # reset gate
            z = torch.sigmoid(x_z + h_z)           # update gate
            n = torch.tanh(x_n + r * h_n)          # candidate state
        else:
            H = self.hidden_size
            b_rz, b_n = (None, None) if self.bias_hh is None else self.bias_hh.split([2 * H, H])
            h_r, h_z = F.linear(h, self.weight_hh[: 2 * H], b_rz).chunk(2, dim=-1)
            r = torch.sigmoid(x_r + h_r)                                     # reset gate
            z = torch.sigmoid(x_z + h_z)                                     # update gate
            n = torch.tanh(x_n + F.linear(r * h, self.weight_hh[2 * H :], b_n))  # candidate state
        return (1 - z) * n + z * h

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, reset_after={self.reset_after}"
