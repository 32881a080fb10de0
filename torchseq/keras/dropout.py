r"""Keras' ``recurrent_dropout``: the masks Keras 3 draws, inside torchseq's cells.

Keras 3 computes an LSTM or GRU with ``recurrent_dropout > 0`` gate by gate (its ``implementation=1``),
and then draws **one mask per gate**, once per call and kept for every step of the sequence:

- for :math:`h_{t-1}` (``recurrent_dropout``): the recurrent product of gate :math:`k` reads
  :math:`m^h_k \odot h_{t-1}`, with :math:`m^h_k \in \{0, 1/(1-p)\}^{B \times H}`;
- for the input (``dropout``): gate :math:`k`'s input product reads :math:`m^x_k \odot x_t`.

The LSTM draws four masks of each kind (i, f, c, o), the GRU three (z, r, h); ``SimpleRNN`` draws one.
The GRU's carry :math:`z \odot h_{t-1}` keeps the undropped :math:`h_{t-1}`; with ``reset_after=False``
the candidate reads :math:`r \odot (m^h_h \odot h_{t-1})`. In ``eval()`` no mask is applied, so the
cells compute exactly what the plain ones do (and run their fast path).

The masks are independent draws, so which mask torchseq's gate order (i, f, g, o; r, z, n) pairs with
which gate changes nothing in distribution; a given Keras seed does not give torchseq's masks.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor
from torch.nn import functional as F

from torchseq.cells import GRUCell, LSTMCell, RNNCell
from torchseq.cells.base import State
from torchseq.cells.regularizers import RecurrentRegularization, check_probability, dropout_mask
from torchseq.recurrent import GRU as CoreGRU
from torchseq.recurrent import LSTM as CoreLSTM
from torchseq.recurrent import RNN as CoreRNN


def per_gate_linear(read: Tensor, weight: Tensor, bias: Tensor | None) -> Tensor:
    """Gate k's rows of ``weight`` applied to ``read[k]``: (G, …, F) → (…, G·O), stacked as ``F.linear``'s."""
    gates = read.shape[0]
    blocks = weight.view(gates, -1, weight.shape[-1])  # (G, O, F)
    product = torch.einsum("g...f,gof->...go", read, blocks).flatten(-2)
    return product if bias is None else product + bias


class KerasCellDropout(RecurrentRegularization):
    """Mixin: Keras 3's per-gate ``dropout`` and ``recurrent_dropout`` masks (see the module docstring).

    Built on :class:`~torchseq.cells.regularizers.RecurrentRegularization`, which draws the masks once
    per sequence and steps aside in ``eval()``; this class makes them per gate and adds the input masks.
    """

    _input_mask: Tensor | None = None

    def __init__(self, *args: Any, input_dropout: float = 0.0, **options: Any) -> None:
        super().__init__(*args, **options)
        self.input_dropout = check_probability("dropout", input_dropout, allow_one=False)

    @property
    def mask_count(self) -> int:
        """Masks per kind: one per gate, except SimpleRNN's single mask."""
        return len(self.gates)  # type: ignore[attr-defined]

    @property
    def regularizes(self) -> bool:
        return super().regularizes or (self.training and self.input_dropout > 0)

    def begin_sequence(self, batch_size: int, like: Tensor) -> None:
        training, per_gate = self.training, (self.mask_count,) if self.mask_count > 1 else ()
        self._hidden_mask = (
            dropout_mask((*per_gate, batch_size, self.output_size), self.recurrent_dropout, like)
            if training and self.recurrent_dropout > 0 else None
        )
        self._input_mask = (
            dropout_mask((*per_gate, batch_size, self.weight_ih.shape[1]), self.input_dropout, like)
            if training and self.input_dropout > 0 else None
        )

    def input_projection(self, x: Tensor) -> Tensor:
        if x.dim() == 3:  # a whole (T, B, I) sequence is about to run: this is its start
            self.begin_sequence(x.shape[1], x)
        mask = self._input_mask
        if mask is None:
            return F.linear(x, self.weight_ih, self.bias_ih)
        if mask.dim() == 2:  # one mask (SimpleRNN)
            return F.linear(x * mask, self.weight_ih, self.bias_ih)
        return per_gate_linear(x.unsqueeze(0) * mask.unsqueeze(1) if x.dim() == 3 else x * mask,
                               self.weight_ih, self.bias_ih)

    def extra_repr(self) -> str:
        return super().extra_repr() + (f", input_dropout={self.input_dropout}" if self.input_dropout else "")

    def recurrent_product(self, read: Tensor, weight: Tensor, bias: Tensor | None) -> Tensor:
        """The recurrent product of h_{t-1} as read through the masks: (G, B, H) per gate, or (B, H)."""
        if read.dim() == 3:
            return per_gate_linear(read, weight, bias)
        return F.linear(read, weight, bias)


class KerasDropoutRNNCell(KerasCellDropout, RNNCell):
    """:class:`~torchseq.cells.RNNCell` with Keras' one input mask and one mask on h_{t-1}."""


class KerasDropoutLSTMCell(KerasCellDropout, LSTMCell):
    """:class:`~torchseq.cells.LSTMCell` with Keras' four input masks and four masks on h_{t-1}."""

    def recur_reading(self, projected_input: Tensor, state: State, read: State) -> State:
        c = state[1]
        recurrent = self.recurrent_product(read[0], self.weight_hh, self.bias_hh)
        a_i, a_f, a_g, a_o = (projected_input + recurrent).chunk(4, dim=-1)
        c = torch.sigmoid(a_f) * c + torch.sigmoid(a_i) * torch.tanh(a_g)
        return torch.sigmoid(a_o) * torch.tanh(c), c


class KerasDropoutGRUCell(KerasCellDropout, GRUCell):
    """:class:`~torchseq.cells.GRUCell` with Keras' three input masks and three masks on h_{t-1}."""

    def recur_reading(self, projected_input: Tensor, state: Tensor, read: Tensor) -> Tensor:
        h, H = state, self.hidden_size
        x_r, x_z, x_n = projected_input.chunk(3, dim=-1)
        if read.dim() == 2:  # no mask this step (eval): the plain formula
            return GRUCell.recur(self, projected_input, h)
        if self.reset_after:
            h_r, h_z, h_n = self.recurrent_product(read, self.weight_hh, self.bias_hh).chunk(3, dim=-1)
            r, z = torch.sigmoid(x_r + h_r), torch.sigmoid(x_z + h_z)
            n = torch.tanh(x_n + r * h_n)
        else:
            b_rz, b_n = (None, None) if self.bias_hh is None else self.bias_hh.split([2 * H, H])
            h_r, h_z = self.recurrent_product(read[:2], self.weight_hh[: 2 * H], b_rz).chunk(2, dim=-1)
            r, z = torch.sigmoid(x_r + h_r), torch.sigmoid(x_z + h_z)
            n = torch.tanh(x_n + F.linear(r * read[2], self.weight_hh[2 * H :], b_n))
        return (1 - z) * n + z * h


class RNNWithKerasDropout(CoreRNN):
    """``torchseq.RNN`` whose cells take Keras' ``input_dropout`` / ``recurrent_dropout`` masks."""

    cell_class = KerasDropoutRNNCell


class LSTMWithKerasDropout(CoreLSTM):
    """``torchseq.LSTM`` whose cells take Keras' per-gate ``input_dropout`` / ``recurrent_dropout``."""

    cell_class = KerasDropoutLSTMCell


class GRUWithKerasDropout(CoreGRU):
    """``torchseq.GRU`` whose cells take Keras' per-gate ``input_dropout`` / ``recurrent_dropout``."""

    cell_class = KerasDropoutGRUCell
