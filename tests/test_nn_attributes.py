"""The fronts expose ``torch.nn.RNNBase``'s public configuration attributes, with torch.nn's values."""

from __future__ import annotations

from typing import Any

import pytest
from torch import nn

import torchseq
from torchseq.recurrent import RecurrentLayers

#: Every public configuration attribute of ``torch.nn.RNNBase`` (``nn.RNN`` adds ``nonlinearity``).
ATTRIBUTES = ("mode", "input_size", "hidden_size", "num_layers", "bias", "batch_first", "dropout",
              "bidirectional", "proj_size")

NON_DEFAULT = {"num_layers": 2, "bias": False, "batch_first": True, "dropout": 0.25, "bidirectional": True}

#: (our front, torch.nn's class, constructor arguments after (input_size=3, hidden_size=4))
CASES: dict[str, tuple[type[RecurrentLayers], type[nn.RNNBase], dict[str, Any]]] = {
    "rnn": (torchseq.RNN, nn.RNN, {}),
    "rnn_relu": (torchseq.RNN, nn.RNN, {"nonlinearity": "relu", **NON_DEFAULT}),
    "lstm": (torchseq.LSTM, nn.LSTM, {}),
    "lstm_proj": (torchseq.LSTM, nn.LSTM, {"proj_size": 2, **NON_DEFAULT}),
    "gru": (torchseq.GRU, nn.GRU, {}),
    "gru_options": (torchseq.GRU, nn.GRU, NON_DEFAULT),
}


def attributes(module: nn.Module) -> dict[str, tuple[type, Any]]:
    """Type and value of each attribute, so that e.g. dropout=0 (int) cannot stand in for 0.0."""
    names = [*ATTRIBUTES, "nonlinearity"] if isinstance(module, nn.RNN | torchseq.RNN) else ATTRIBUTES
    return {name: (type(getattr(module, name)), getattr(module, name)) for name in names}


@pytest.mark.parametrize("case", CASES)
def test_attributes_equal_those_of_torch_nn_built_alike(case: str) -> None:
    front, torch_class, arguments = CASES[case]
    assert attributes(front(3, 4, **arguments)) == attributes(torch_class(3, 4, **arguments))


@pytest.mark.parametrize("case", CASES)
def test_attributes_survive_the_conversions(case: str) -> None:
    front, torch_class, arguments = CASES[case]
    theirs = torch_class(3, 4, **arguments)
    ours = front.from_torch(theirs)
    assert attributes(ours) == attributes(theirs) == attributes(ours.to_torch())
