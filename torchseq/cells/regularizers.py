r"""Recurrent regularisers any cell can take: variational dropout on h, zoneout, DropConnect on ``weight_hh``.

:class:`RecurrentRegularization` is a mixin placed before a cell class in the bases (or built by
:func:`regularized`); it adds three constructor options, so a layer takes them as ``cell_options``::

    layer = torchseq.Recurrent(RegularizedLSTMCell, 28, 128, recurrent_dropout=0.25, zoneout=0.1)

- ``recurrent_dropout`` (Gal & Ghahramani 2016): one mask :math:`m \in \{0, 1/(1-p)\}^{B \times H}` per
  sequence, drawn when it starts, multiplies :math:`h_{t-1}` where the recurrent product reads it at
  every step: :math:`W_{hh} (m \odot h_{t-1})`.
- ``zoneout`` / ``zoneout_cell`` (Krueger et al. 2016): each unit keeps its previous value with
  probability :math:`p` at each step, :math:`h_t = d_t \odot h_{t-1} + (1 - d_t) \odot \tilde h_t` with
  :math:`d_t \sim \mathrm{Bernoulli}(p)`; the LSTM's c has its own probability. In ``eval()`` the
  expectation :math:`p\, h_{t-1} + (1-p)\, \tilde h_t`.
- ``weight_dropout`` (DropConnect of Merity et al. 2018): one mask :math:`M \in \{0, 1/(1-p)\}` of
  ``weight_hh``'s shape per sequence (one layer call), :math:`W_{hh} \to M \odot W_{hh}`.

Masks are drawn by :meth:`RecurrentRegularization.begin_sequence`, which ``input_projection`` calls for
a whole (T, B, I) sequence, i.e. once per direction and layer call. A hand-written loop over ``recur``
calls ``begin_sequence(batch_size, like)`` itself; the one-step ``forward`` draws fresh masks per call.
Dropout masks and the DropConnect mask are inactive in ``eval()``. While a regulariser draws random
numbers (training), the cell runs the step-by-step reference rather than the traced fast path.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from functools import cache
from typing import Any

import torch
from torch import Tensor
from torch.nn import functional as F

from torchseq.cells.base import RecurrentCell, State
from torchseq.cells.gru import GRUCell
from torchseq.cells.lstm import LSTMCell
from torchseq.cells.rnn import RNNCell


def check_probability(name: str, value: Any, *, allow_one: bool) -> float:
    """``value`` as a float in [0, 1] (or [0, 1) where 1 would divide by zero), else a clear error."""
    numeric = isinstance(value, int | float) and not isinstance(value, bool)
    if not numeric or not (0.0 <= value <= 1.0) or (value == 1.0 and not allow_one):
        interval = "[0, 1]" if allow_one else "[0, 1)"
        raise ValueError(f"{name}: expected a probability in {interval}, got {value!r}")
    return float(value)


def dropout_mask(shape: torch.Size | tuple[int, ...], p: float, like: Tensor) -> Tensor:
    """Inverted-dropout mask: 0 with probability p, else 1/(1-p), so its expectation is 1."""
    return torch.empty(shape, dtype=like.dtype, device=like.device).bernoulli_(1.0 - p) / (1.0 - p)


class RecurrentRegularization:
    """Mixin adding variational recurrent dropout, zoneout and DropConnect to a :class:`RecurrentCell`.

    Put it first in the bases: ``class MyRegularized(RecurrentRegularization, MyCell)``. All options
    default to 0 (off), so the cell then computes exactly what the plain cell computes.
    """

    _hidden_mask: Tensor | None = None
    _dropped_weight_hh: Tensor | None = None
    _fast_path_allowed = True

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        bias: bool = True,
        *args: Any,
        recurrent_dropout: float = 0.0,
        zoneout: float = 0.0,
        zoneout_cell: float | None = None,
        weight_dropout: float = 0.0,
        **options: Any,
    ) -> None:
        super().__init__(input_size, hidden_size, bias, *args, **options)  # type: ignore[call-arg]
        self.recurrent_dropout = check_probability("recurrent_dropout", recurrent_dropout, allow_one=False)
        self.zoneout = check_probability("zoneout", zoneout, allow_one=True)
        self.weight_dropout = check_probability("weight_dropout", weight_dropout, allow_one=False)
        has_cell_state = isinstance(self.initial_state(1, self.weight_ih), tuple)
        if zoneout_cell is not None and not has_cell_state:
            raise ValueError(f"zoneout_cell: {type(self).__name__} has no cell state c; use zoneout only")
        self.zoneout_cell = (self.zoneout if zoneout_cell is None
                             else check_probability("zoneout_cell", zoneout_cell, allow_one=True))
        self._fast_path_allowed = True

    # -- when masks are drawn ------------------------------------------------------------------------
    @property
    def regularizes(self) -> bool:
        """Whether a step draws or applies random masks now (training with any option above 0)."""
        return self.training and (self.recurrent_dropout > 0 or self.weight_dropout > 0
                                  or self.zoneout > 0 or self.zoneout_cell > 0)

    @property
    def computes_as(self) -> type[RecurrentCell]:
        """With no mask active, the plain cell this one regularises (so its kernel, if built in, runs)."""
        if self.regularizes:
            return type(self)
        return next(base for base in type(self).__mro__ if not issubclass(base, RecurrentRegularization))

    @property
    def fast_path(self) -> bool:
        # A traced step would replay one fixed draw of the masks, so training runs the reference.
        return self._fast_path_allowed and not self.regularizes

    @fast_path.setter
    def fast_path(self, allowed: bool) -> None:
        self._fast_path_allowed = allowed

    def begin_sequence(self, batch_size: int, like: Tensor) -> None:
        """Draw the per-sequence masks (h's dropout mask, the DropConnect mask) for ``batch_size`` rows."""
        training = self.training
        self._hidden_mask = (dropout_mask((batch_size, self.output_size), self.recurrent_dropout, like)
                             if training and self.recurrent_dropout > 0 else None)
        weight = self.weight_hh
        self._dropped_weight_hh = (weight * dropout_mask(weight.shape, self.weight_dropout, like)
                                   if training and self.weight_dropout > 0 else None)

    def input_projection(self, x: Tensor) -> Tensor:
        if x.dim() == 3:  # a whole (T, B, I) sequence is about to run: this is its start
            self.begin_sequence(x.shape[1], x)
        return super().input_projection(x)  # type: ignore[misc]

    def forward(self, input: Tensor, hx: State | None = None) -> State:
        self.begin_sequence(input.shape[0] if input.dim() == 2 else 1, input)
        return super().forward(input, hx)  # type: ignore[misc]

    # -- one step ------------------------------------------------------------------------------------
    def recur(self, projected_input: Tensor, state: State) -> State:
        read = state
        if self.training and self.recurrent_dropout > 0:
            mask = self._hidden_mask
            h = self.hidden(state)
            if mask is None or mask.shape[-2] != h.shape[0]:  # (B, H), or (G, B, H): one per gate
                raise RuntimeError(f"recurrent_dropout: call begin_sequence({h.shape[0]}, like) before the "
                                   "first step of a sequence (layers do it in input_projection)")
            read = (h * mask, *state[1:]) if isinstance(state, tuple) else h * mask
        with self._weight_hh_dropped():
            new = self.recur_reading(projected_input, state, read)
        return self._zone_out(state, new)

    def recur_reading(self, projected_input: Tensor, state: State, read: State) -> State:
        """The plain step, with the recurrent product reading ``read`` (h_{t-1} with the dropout mask).

        The default passes ``read`` as the state, right for cells whose h_{t-1} enters only the
        recurrent product (RNN, LSTM); a cell that also carries h_{t-1} (GRU) overrides this.
        """
        return super().recur(projected_input, read)  # type: ignore[misc]

    @contextmanager
    def _weight_hh_dropped(self) -> Iterator[None]:
        dropped = self._dropped_weight_hh if self.training else None
        if dropped is None:
            yield
            return
        parameters = self._parameters  # type: ignore[attr-defined]
        raw = parameters["weight_hh"]
        parameters["weight_hh"] = dropped  # the formula reads self.weight_hh; the Parameter stays registered
        try:
            yield
        finally:
            parameters["weight_hh"] = raw

    def _zone_out(self, previous: State, new: State) -> State:
        if isinstance(new, tuple):
            rates = (self.zoneout, self.zoneout_cell, *[0.0] * (len(new) - 2))
            return tuple(self._zone_out_part(p, o, n) for p, o, n in zip(rates, previous, new, strict=True))
        return self._zone_out_part(self.zoneout, previous, new)  # type: ignore[arg-type]

    def _zone_out_part(self, p: float, previous: Tensor, new: Tensor) -> Tensor:
        if p == 0.0:
            return new
        if not self.training:
            return p * previous + (1.0 - p) * new  # the expectation over the keep mask
        keep = torch.rand_like(new) < p
        return torch.where(keep, previous, new)

    def extra_repr(self) -> str:
        options = {"recurrent_dropout": self.recurrent_dropout, "zoneout": self.zoneout,
                   "zoneout_cell": self.zoneout_cell, "weight_dropout": self.weight_dropout}
        return super().extra_repr() + "".join(  # type: ignore[misc]
            f", {name}={value}" for name, value in options.items() if value)


class RegularizedRNNCell(RecurrentRegularization, RNNCell):
    """:class:`~torchseq.cells.RNNCell` with ``recurrent_dropout``, ``zoneout`` and ``weight_dropout``."""


class RegularizedLSTMCell(RecurrentRegularization, LSTMCell):
    """:class:`~torchseq.cells.LSTMCell` with ``recurrent_dropout``, ``zoneout``/``zoneout_cell`` and
    ``weight_dropout``."""


class RegularizedGRUCell(RecurrentRegularization, GRUCell):
    r""":class:`~torchseq.cells.GRUCell` with the regularisers; the dropout mask reaches only the
    recurrent products, as in Gal & Ghahramani, while the carry :math:`z \odot h_{t-1}` keeps h.
    """

    def recur_reading(self, projected_input: Tensor, state: Tensor, read: Tensor) -> Tensor:
        h = state
        x_r, x_z, x_n = projected_input.chunk(3, dim=-1)
        if self.reset_after:
            h_r, h_z, h_n = F.linear(read, self.weight_hh, self.bias_hh).chunk(3, dim=-1)
            r = torch.sigmoid(x_r + h_r)
            z = torch.sigmoid(x_z + h_z)
            n = torch.tanh(x_n + r * h_n)
        else:
            H = self.hidden_size
            b_rz, b_n = (None, None) if self.bias_hh is None else self.bias_hh.split([2 * H, H])
            h_r, h_z = F.linear(read, self.weight_hh[: 2 * H], b_rz).chunk(2, dim=-1)
            r = torch.sigmoid(x_r + h_r)
            z = torch.sigmoid(x_z + h_z)
            n = torch.tanh(x_n + F.linear(r * read, self.weight_hh[2 * H :], b_n))
        return (1 - z) * n + z * h


@cache
def regularized(cell_class: type[RecurrentCell]) -> type[RecurrentCell]:
    """``cell_class`` with the regularisers mixed in (one class per cell class).

    Its ``recur`` receives the masked h_{t-1} as its state; for a cell that also carries h_{t-1}
    outside the recurrent product, override :meth:`RecurrentRegularization.recur_reading` instead.
    """
    if not (isinstance(cell_class, type) and issubclass(cell_class, RecurrentCell)):
        raise TypeError(f"cell_class: expected a subclass of RecurrentCell, got {cell_class!r}")
    named = {RNNCell: RegularizedRNNCell, LSTMCell: RegularizedLSTMCell, GRUCell: RegularizedGRUCell}
    if cell_class in named:
        return named[cell_class]
    namespace = {"__module__": cell_class.__module__,
                 "__doc__": f"{cell_class.__name__} with the recurrent regularisers."}
    return type(f"Regularized{cell_class.__name__}", (RecurrentRegularization, cell_class), namespace)
