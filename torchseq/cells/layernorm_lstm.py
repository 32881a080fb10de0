"""LSTM with layer normalisation (Ba, Kiros & Hinton 2016), in the placement of haste and fastrnns."""

from __future__ import annotations

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from torchseq.cells.base import RecurrentCell


class LayerNormLSTMCell(RecurrentCell):
    r"""LSTM whose two projections and cell state are layer-normalised (gate order i, f, g, o).

    .. math::
        \begin{aligned}
        a_t &= \mathrm{LN}_x(W_{ih} x_t) + b_{ih} + \mathrm{LN}_h(W_{hh} h_{t-1}) + b_{hh} \\
        i_t, f_t, o_t &= \sigma(a_{i,t}),\ \sigma(a_{f,t}),\ \sigma(a_{o,t}) \qquad g_t = \tanh(a_{g,t}) \\
        c_t &= f_t \odot c_{t-1} + i_t \odot g_t \\
        h_t &= o_t \odot \tanh\big(\mathrm{LN}_c(c_t)\big)
        \end{aligned}

    with :math:`\mathrm{LN}(v) = \gamma \odot (v - \mu_v) / \sqrt{\sigma_v^2 + \epsilon} (+ \beta)`
    over the feature dimension: :math:`\mathrm{LN}_x` and :math:`\mathrm{LN}_h` over all 4H gate
    pre-activations with a gain only (the biases b follow them), :math:`\mathrm{LN}_c` over H with gain
    and bias. The state keeps the un-normalised :math:`c_t`, as in haste's ``LayerNormLSTM``.

    Ba, Kiros & Hinton, "Layer Normalization", arXiv:1607.06450 (2016), section 3.1 and appendix.
    ``LN_x`` does not depend on the recurrence, so :meth:`input_projection` applies it to every
    timestep at once.
    """

    gates = ("i", "f", "g", "o")
    forget_gate_index = 1

    def __init__(
        self, input_size: int, hidden_size: int, bias: bool = True, eps: float = 1e-5, **options
    ) -> None:
        super().__init__(input_size, hidden_size, bias, **options)
        factory = {"device": self.weight_ih.device, "dtype": self.weight_ih.dtype}
        self.norm_input = nn.LayerNorm(4 * hidden_size, eps=eps, bias=False, **factory)
        self.norm_hidden = nn.LayerNorm(4 * hidden_size, eps=eps, bias=False, **factory)
        self.norm_cell = nn.LayerNorm(hidden_size, eps=eps, **factory)
        self.reset_parameters()

    def reset_parameters(self, init: str | None = None) -> None:
        super().reset_parameters(init)
        for norm in (self.norm_input, self.norm_hidden, self.norm_cell):
            norm.reset_parameters()  # gain 1, bias 0: a norm starts as the plain standardisation

    def initial_state(self, batch_size: int, like: Tensor) -> tuple[Tensor, Tensor]:
        return like.new_zeros(batch_size, self.hidden_size), like.new_zeros(batch_size, self.hidden_size)

    def input_projection(self, x: Tensor) -> Tensor:
        projected = self.norm_input(F.linear(x, self.weight_ih))
        return projected if self.bias_ih is None else projected + self.bias_ih

    def recur(self, projected_input: Tensor, state: tuple[Tensor, Tensor]) -> tuple[Tensor, Tensor]:
        h, c = state
        recurrent = self.norm_hidden(F.linear(h, self.weight_hh))
        if self.bias_hh is not None:
            recurrent = recurrent + self.bias_hh
        a_i, a_f, a_g, a_o = (projected_input + recurrent).chunk(4, dim=-1)
        c = torch.sigmoid(a_f) * c + torch.sigmoid(a_i) * torch.tanh(a_g)
        h = torch.sigmoid(a_o) * torch.tanh(self.norm_cell(c))
        return h, c
