"""``RNN``, ``LSTM``, ``GRU``: drop-in fronts for ``torch.nn.RNN/LSTM/GRU`` with one switch, ``impl``.

``impl="custom"`` runs the explicit formulas of :mod:`torchseq.cells`; ``impl="fused"`` runs torch's
fused kernel (oneDNN/native on CPU, cuDNN on CUDA) on the *same* tensors. Everything else is
:class:`~torchseq.recurrent.layers.Recurrent`'s.

The parameters are named as in ``torch.nn``: ``named_parameters()`` and ``state_dict()`` give
``weight_ih_l0``, ``weight_hh_l0``, ``bias_ih_l0``, ``bias_hh_l0`` (, ``weight_hr_l0``), then layer 0's
``…_reverse`` ones, then layer 1's, exactly the names and order of the ``torch.nn`` module built alike.
They are the front's own parameters, and each call reads them with ``getattr(front, name)``, so code
written for ``torch.nn`` works unchanged: picking parameters by name, ``nn.utils.weight_norm``,
``parametrizations.weight_norm`` / ``spectral_norm``, ``prune``, a weight drop that replaces
``_parameters["weight_hh_l0"]``, ``torch.func.functional_call``, and checkpoints in either direction.
(The cells inside hold no parameters of their own; they compute with what the front hands them.)
:meth:`from_torch` and :meth:`to_torch` convert whole modules.
"""

from __future__ import annotations

from typing import Any, ClassVar

import torch
from torch import nn

from torchseq import compat
from torchseq.cells import GRUCell, LSTMCell, RecurrentCell, RNNCell
from torchseq.cells.rnn import NONLINEARITIES
from torchseq.recurrent.layers import Recurrent


class TorchFront(Recurrent):
    """What the three fronts share: torch.nn's positional signature and parameter names."""

    cell_class: ClassVar[type[RecurrentCell]]
    torch_class: ClassVar[type[nn.RNNBase]]  # type: ignore[assignment]

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        num_layers: int,
        bias: bool,
        batch_first: bool,
        dropout: float,
        bidirectional: bool,
        cell_options: dict[str, Any],
        **options: Any,
    ) -> None:
        if "proj_size" in options:  # torch.nn's wording too, which its users' code may look for
            raise ValueError(f"proj_size: only the LSTM has a projection, got {options['proj_size']!r} for "
                             f"{type(self).__name__} (proj_size argument is only supported for LSTM, not RNN "
                             "or GRU)")
        super().__init__(
            self.cell_class, input_size, hidden_size, num_layers, bias=bias, batch_first=batch_first,
            dropout=dropout, bidirectional=bidirectional, **options, **cell_options,
        )
        self._slots = compat.adopt_parameters(self, self.stack.cells, self.directions)
        self.register_load_state_dict_pre_hook(compat.refuse_misfit_values)

    @property
    def cells(self) -> list[RecurrentCell]:
        """Every cell in ``torch.nn`` order, holding the tensors ``getattr(self, torch name)`` gives now."""
        compat.bind_parameters(self, self._slots)
        return self.stack.cells

    def __setattr__(self, name: str, value: Any) -> None:
        compat.check_replacement(self, name, value)
        super().__setattr__(name, value)

    @property
    def all_weights(self) -> list[list[torch.Tensor]]:
        """As ``torch.nn.RNNBase.all_weights``: per layer and direction, w_ih, w_hh, b_ih, b_hh (, w_hr)."""
        groups: dict[int, list[torch.Tensor]] = {}
        for torch_name, cell, _ in self._slots:
            groups.setdefault(id(cell), []).append(getattr(self, torch_name))
        return list(groups.values())

    def flatten_parameters(self) -> None:
        """Does nothing, and needs to: ``torch.nn`` packs its weights into one buffer for cuDNN, while
        here each call hands the kernel the parameters as they are."""

    @classmethod
    def from_torch(cls, module: nn.RNNBase, **options: Any) -> TorchFront:
        """A torchseq module with ``module``'s configuration, parameters, device and dtype."""
        return compat.from_torch(cls, module, **options)


class RNN(TorchFront):
    """Elman RNN layers, ``torch.nn.RNN``'s signature plus torchseq's keyword options."""

    cell_class = RNNCell
    torch_class = nn.RNN

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        num_layers: int = 1,
        nonlinearity: str = "tanh",
        bias: bool = True,
        batch_first: bool = False,
        dropout: float = 0.0,
        bidirectional: bool = False,
        **options: Any,
    ) -> None:
        if nonlinearity not in NONLINEARITIES:
            raise ValueError(f"nonlinearity: expected one of {NONLINEARITIES}, got {nonlinearity!r} "
                             f"(Unknown nonlinearity {nonlinearity!r}. Select from 'tanh' or 'relu'.)")
        super().__init__(input_size, hidden_size, num_layers, bias, batch_first, dropout, bidirectional,
                         {"nonlinearity": nonlinearity}, **options)

    @property
    def nonlinearity(self) -> str:
        return self.config.cell_options["nonlinearity"]

    @property
    def mode(self) -> str:
        """``torch.nn``'s name for the recurrence: ``"RNN_TANH"`` or ``"RNN_RELU"``."""
        return f"RNN_{self.nonlinearity.upper()}"

    @property
    def proj_size(self) -> int:
        return 0


class LSTM(TorchFront):
    """LSTM layers, ``torch.nn.LSTM``'s signature (``proj_size`` included) plus torchseq's options."""

    cell_class = LSTMCell
    torch_class = nn.LSTM
    mode = "LSTM"

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        num_layers: int = 1,
        bias: bool = True,
        batch_first: bool = False,
        dropout: float = 0.0,
        bidirectional: bool = False,
        proj_size: int = 0,
        **options: Any,
    ) -> None:
        super().__init__(input_size, hidden_size, num_layers, bias, batch_first, dropout, bidirectional,
                         {"proj_size": proj_size}, **options)

    @property
    def proj_size(self) -> int:
        return self.config.cell_options["proj_size"]


class GRU(TorchFront):
    """GRU layers, ``torch.nn.GRU``'s signature plus ``reset_after`` (see :class:`GRUCell`)."""

    cell_class = GRUCell
    torch_class = nn.GRU
    mode = "GRU"

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        num_layers: int = 1,
        bias: bool = True,
        batch_first: bool = False,
        dropout: float = 0.0,
        bidirectional: bool = False,
        reset_after: bool = True,
        **options: Any,
    ) -> None:
        super().__init__(input_size, hidden_size, num_layers, bias, batch_first, dropout, bidirectional,
                         {"reset_after": reset_after}, **options)

    @property
    def reset_after(self) -> bool:
        return self.config.cell_options["reset_after"]

    @property
    def proj_size(self) -> int:
        return 0
