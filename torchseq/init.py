"""Initialisation schemes for recurrent cells.

Every scheme acts on the cell's stacked parameters in PyTorch layout: ``weight_ih`` (G·H, I),
``weight_hh`` (G·H, H or P), ``bias_ih``/``bias_hh`` (G·H,), optional ``weight_hr`` (P, H).

- ``"torch"``  every tensor ~ U(−1/√H, 1/√H), exactly what ``torch.nn.LSTM`` & co. do.
- ``"xavier"`` Glorot-uniform on both weight matrices, zero biases (the book's advice).
- ``"keras"``  what Keras layers do by default: Glorot-uniform input kernel, orthogonal recurrent
  kernel, zero bias, and for the LSTM the forget-gate block of the bias set to 1 (``unit_forget_bias``).
  Keras has one bias per gate while PyTorch keeps two whose *sum* is used, so the 1 goes into
  ``bias_ih`` and ``bias_hh`` stays zero.

Keras' Glorot on its (I, G·H) kernel has fan_in=I, fan_out=G·H, exactly what ``xavier_uniform_`` sees on
our transposed (G·H, I) weight; Keras' orthogonal on the (H, G·H) recurrent kernel makes its rows
orthonormal, i.e. the columns of our (G·H, H) ``weight_hh`` — again what ``orthogonal_`` gives.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

import torch
from torch import Tensor, nn

from torchseq.checks import check_choice

INIT_SCHEMES = ("torch", "xavier", "keras")


@torch.no_grad()
def initialise_cell_(cell: nn.Module, init: str) -> None:
    """Initialise ``cell``'s parameters in place with the named scheme."""
    check_choice("init", init, INIT_SCHEMES)
    hidden_size: int = cell.hidden_size  # type: ignore[assignment]
    if init == "torch":
        bound = 1.0 / math.sqrt(hidden_size)
        for parameter in cell.parameters():
            nn.init.uniform_(parameter, -bound, bound)
        return

    nn.init.xavier_uniform_(cell.weight_ih)
    if init == "xavier":
        nn.init.xavier_uniform_(cell.weight_hh)
    else:
        nn.init.orthogonal_(cell.weight_hh)
    if getattr(cell, "weight_hr", None) is not None:
        nn.init.xavier_uniform_(cell.weight_hr)
    for bias in (cell.bias_ih, cell.bias_hh):
        if bias is not None:
            bias.zero_()
    forget_gate = getattr(cell, "forget_gate_index", None)
    if init == "keras" and forget_gate is not None and cell.bias_ih is not None:
        cell.bias_ih[forget_gate * hidden_size : (forget_gate + 1) * hidden_size] = 1.0


def initialise_input_side_(
    weight_ih: Tensor, biases: Iterable[Tensor | None], hidden_size: int, init: str
) -> None:
    """W_ih and the biases of a cell whose recurrent weight has a scheme of its own (IndRNN, minGRU,
    minLSTM): torch's U(±1/√H) for all of them, or Glorot-uniform W_ih and zero biases (xavier, keras)."""
    check_choice("init", init, INIT_SCHEMES)
    bound = 1.0 / hidden_size**0.5
    with torch.no_grad():
        if init == "torch":
            nn.init.uniform_(weight_ih, -bound, bound)
        else:
            nn.init.xavier_uniform_(weight_ih)
        for bias in biases:
            if bias is not None and init == "torch":
                nn.init.uniform_(bias, -bound, bound)
            elif bias is not None:
                nn.init.zeros_(bias)
