"""GRU with layer normalisation (Ba et al. 2016), in the placement of haste's ``LayerNormGRU``."""

from __future__ import annotations

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from torchseq.cells.base import RecurrentCell


class LayerNormGRUCell(RecurrentCell):
    r"""GRU (``reset_after`` form, gate order r, z, n) whose two projections are layer-normalised.

    .. math::
        \begin{aligned}
        u_t &= \mathrm{LN}_x(W_{ih} x_t) + b_{ih} \qquad v_t = \mathrm{LN}_h(W_{hh} h_{t-1}) + b_{hh} \\
        r_t &= \sigma(u_{r,t} + v_{r,t}) \qquad z_t = \sigma(u_{z,t} + v_{z,t}) \\
        n_t &= \tanh(u_{n,t} + r_t \odot v_{n,t}) \\
        h_t &= (1 - z_t) \odot n_t + z_t \odot h_{t-1}
        \end{aligned}

    :math:`\mathrm{LN}_x`, :math:`\mathrm{LN}_h` normalise over all 3H pre-activations with a gain only
    (the biases follow). Ba, Kiros & Hinton, "Layer Normalization", arXiv:1607.06450 (2016), section 3.1.
    ``LN_x`` does not depend on the recurrence, so :meth:`input_projection` applies it to every
    timestep at once.
    """

    gates = ("r", "z", "n")

    def __init__(
        self, input_size: int, hidden_size: int, bias: bool = True, eps: float = 1e-5, **options
    ) -> None:
        super().__init__(input_size, hidden_size, bias, **options)
        factory = {"device": self.weight_ih.device, "dtype": self.weight_ih.dtype}
        self.norm_input = nn.LayerNorm(3 * hidden_size, eps=eps, bias=False, **factory)
        self.norm_hidden = nn.LayerNorm(3 * hidden_size, eps=eps, bias=False, **factory)
        self.reset_parameters()

    def reset_parameters(self, init: str | None = None) -> None:
        super().reset_parameters(init)
        for norm in (self.norm_input, self.norm_hidden):
            norm.reset_parameters()  # gain 1: a norm starts as the plain standardisation

    def input_projection(self, x: Tensor) -> Tensor:
        projected = self.norm_input(F.linear(x, self.weight_ih))
        return projected if self.bias_ih is None else projected + self.bias_ih

    def recur(self, projected_input: Tensor, h: Tensor) -> Tensor:
        recurrent = self.norm_hidden(F.linear(h, self.weight_hh))
        if self.bias_hh is not None:
            recurrent = recurrent + self.bias_hh
        u_r, u_z, u_n = projected_input.chunk(3, dim=-1)
        v_r, v_z, v_n = recurrent.chunk(3, dim=-1)
        r = torch.sigmoid(u_r + v_r)           # reset gate
        z = torch.sigmoid(u_z + v_z)           # update gate
        n = torch.tanh(u_n + r * v_n)          # candidate state
        return (1 - z) * n + z * h
