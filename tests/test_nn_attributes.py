"""The fronts expose ``torch.nn.RNNBase``'s public configuration attributes, with torch.nn's values."""

from __future__ import annotations

from typing import Any

import pytest
import torch
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


# -- torch.nn's parameter attributes: weight_ih_l0 …, all_weights, flatten_parameters -------------
@pytest.mark.parametrize("case", CASES)
def test_parameter_attributes_are_the_models_own_tensors(case: str) -> None:
    front, torch_class, arguments = CASES[case]
    theirs = torch_class(3, 4, **arguments)
    ours = front.from_torch(theirs)
    own = {id(parameter) for parameter in ours.parameters()}
    for name, their_parameter in theirs.named_parameters():
        mine = getattr(ours, name)
        assert id(mine) in own and torch.equal(mine, their_parameter)
        with torch.no_grad():
            mine.add_(1.0)  # written in place: the model (and its state_dict) change
        torch.testing.assert_close(ours.state_dict()[name], their_parameter + 1.0)


@pytest.mark.parametrize("case", CASES)
def test_replacing_a_parameter_by_name_acts_like_torch_nn(case: str) -> None:
    front, torch_class, arguments = CASES[case]
    torch.manual_seed(0)
    theirs = torch_class(3, 4, **arguments).eval()
    ours = front.from_torch(theirs).eval()
    for name, parameter in list(theirs.named_parameters()):
        replacement = torch.randn_like(parameter)
        setattr(theirs, name, nn.Parameter(replacement.clone()))
        setattr(ours, name, nn.Parameter(replacement.clone()))
    assert len(list(ours.parameters())) == len(list(theirs.parameters()))  # replaced, not added
    x = torch.randn(5, 2, 3).transpose(0, 1) if theirs.batch_first else torch.randn(5, 2, 3)
    # Unit-variance weights (not the init's small ones) grow the ReLU RNN's outputs to a few units and its
    # float32 rounding with them (once measured: 1.6e-5 at an output of 2.4): relative 1e-5 is the bound.
    torch.testing.assert_close(ours(x)[0], theirs(x)[0], rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("case", CASES)
def test_all_weights_lists_each_layer_and_direction_as_torch_nn_does(case: str) -> None:
    front, torch_class, arguments = CASES[case]
    theirs = torch_class(3, 4, **arguments)
    ours = front.from_torch(theirs)
    assert [[p.shape for p in group] for group in ours.all_weights] == \
        [[p.shape for p in group] for group in theirs.all_weights]
    assert all(torch.equal(a, b) for mine, its in zip(ours.all_weights, theirs.all_weights, strict=True)
               for a, b in zip(mine, its, strict=True))
    assert ours.flatten_parameters() is None


def test_parameter_attribute_errors_are_clear() -> None:
    lstm = torchseq.LSTM(3, 4)
    with pytest.raises(AttributeError, match="'LSTM' object has no attribute 'weight_ih_l1'"):
        lstm.weight_ih_l1  # noqa: B018 — one layer only
    with pytest.raises(TypeError, match=r"weight_hh_l0: expected an nn.Parameter of shape \(16, 4\), "
                                        r"got Tensor of shape \(4, 16\)"):
        lstm.weight_hh_l0 = torch.zeros(4, 16)
