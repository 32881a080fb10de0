"""The three layer families the vendored tests run on: ``torch.nn`` itself, and torchseq's fronts pinned to
``impl="custom"`` or ``impl="fused"``.

The pinned fronts are module-level classes (not closures) so that ``torch.save(module)`` can pickle
them, as two of the vendored tests do.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from torch import nn

import torchseq


def _pinned(front: type[nn.Module], impl: str) -> type[nn.Module]:
    """``front`` with ``impl`` fixed, taking torch.nn's constructor arguments unchanged."""

    def __init__(self: nn.Module, *args: Any, **kwargs: Any) -> None:
        front.__init__(self, *args, impl=impl, **kwargs)

    name = f"{impl.capitalize()}{front.__name__}"
    return type(name, (front,), {"__init__": __init__, "__module__": __name__, "__qualname__": name})


CustomRNN = _pinned(torchseq.RNN, "custom")
CustomLSTM = _pinned(torchseq.LSTM, "custom")
CustomGRU = _pinned(torchseq.GRU, "custom")
FusedRNN = _pinned(torchseq.RNN, "fused")
FusedLSTM = _pinned(torchseq.LSTM, "fused")
FusedGRU = _pinned(torchseq.GRU, "fused")


@dataclass(frozen=True)
class Layers:
    """One family: ``name`` ("torch", "custom" or "fused") and its RNN, LSTM and GRU classes."""

    name: str
    RNN: type[nn.Module]
    LSTM: type[nn.Module]
    GRU: type[nn.Module]

    def by_mode(self, mode: str) -> type[nn.Module]:
        """The class for torch's mode name ("RNN", "LSTM" or "GRU"), as ``getattr(nn, mode)`` upstream."""
        return getattr(self, mode)

    def like(self, torch_class: type[nn.Module]) -> type[nn.Module]:
        """This family's class standing in for ``torch_class`` (nn.RNN, nn.LSTM or nn.GRU)."""
        return self.by_mode(torch_class.__name__)


FAMILIES = {
    "torch": Layers("torch", nn.RNN, nn.LSTM, nn.GRU),
    "custom": Layers("custom", CustomRNN, CustomLSTM, CustomGRU),
    "fused": Layers("fused", FusedRNN, FusedLSTM, FusedGRU),
}
