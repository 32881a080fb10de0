"""Inference keeps the kernels' weight layouts between calls (torchseq/kernels/prepared.py): kept while
the parameters are unchanged, made anew after every kind of change, never read under a transform."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import torchseq
from torchseq.kernels.prepared import forget_prepared, prepared_for


def fresh_copy(model: torchseq.LSTM) -> torchseq.LSTM:
    """A model with the same parameters and nothing kept for it."""
    copy = torchseq.LSTM(model.input_size, model.hidden_size, num_layers=model.num_layers).double()
    copy.load_state_dict(model.state_dict())
    return copy


def infer(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    with torch.inference_mode():
        return model(x)[0]


@pytest.fixture
def model_and_input() -> tuple[torchseq.LSTM, torch.Tensor]:
    torch.manual_seed(0)
    return torchseq.LSTM(3, 8, num_layers=2).double(), torch.randn(5, 4, 3, dtype=torch.float64)


def test_the_layout_is_kept_while_the_weights_are_unchanged() -> None:
    cell = nn.Linear(2, 3)
    calls = []

    def prepare() -> object:
        calls.append(1)
        return object()

    first = prepared_for(cell, (cell.weight, cell.bias), prepare)
    assert prepared_for(cell, (cell.weight, cell.bias), prepare) is first and len(calls) == 1
    with torch.no_grad():
        cell.weight.add_(1.0)  # bumps the version counter
    assert prepared_for(cell, (cell.weight, cell.bias), prepare) is not first and len(calls) == 2
    forget_prepared()
    prepared_for(cell, (cell.weight, cell.bias), prepare)
    assert len(calls) == 3


@pytest.mark.parametrize(
    "change",
    ["in_place", "optimizer_step", "load_state_dict", "data_swap"],
)
def test_inference_sees_every_change_of_the_weights(model_and_input, change: str) -> None:
    model, x = model_and_input
    infer(model, x)  # keeps the layouts
    weight = model.weight_hh_l0
    if change == "in_place":
        with torch.no_grad():
            weight.mul_(1.5)
    elif change == "optimizer_step":
        model(x)[0].square().sum().backward()
        torch.optim.SGD(model.parameters(), lr=0.5).step()
    elif change == "load_state_dict":
        other = torchseq.LSTM(3, 8, num_layers=2).double()
        model.load_state_dict(other.state_dict())
    else:
        weight.data = torch.randn_like(weight)
    torch.testing.assert_close(infer(model, x), infer(fresh_copy(model), x), rtol=0, atol=0)


def test_a_weight_recomputed_on_every_access_is_laid_out_anew(model_and_input) -> None:
    model, x = model_and_input
    nn.utils.parametrizations.weight_norm(model, "weight_hh_l0")
    before = infer(model, x)
    with torch.no_grad():
        model.parametrizations.weight_hh_l0.original0.mul_(2.0)  # the norm: the weight doubles
    after = infer(model, x)
    plain = fresh_copy(torchseq.LSTM(3, 8, num_layers=2).double())
    state = {name.replace("parametrizations.", "").replace(".original", ""): value
             for name, value in model.state_dict().items() if "original" not in name}
    state["weight_hh_l0"] = model.weight_hh_l0.detach()
    plain.load_state_dict(state)
    assert not torch.equal(before, after)
    torch.testing.assert_close(after, infer(plain, x), rtol=0, atol=1e-12)


def test_functional_call_reads_the_parameters_it_is_given(model_and_input) -> None:
    model, x = model_and_input
    infer(model, x)  # keeps the layouts of the module's own parameters
    other = {name: torch.randn_like(value) for name, value in model.named_parameters()}
    with torch.inference_mode():
        got = torch.func.functional_call(model, other, (x,))[0]
    reference = fresh_copy(model)
    reference.load_state_dict(other, strict=False)
    torch.testing.assert_close(got, infer(reference, x), rtol=0, atol=0)
