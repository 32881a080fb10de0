"""The fronts' parameters are ``torch.nn``'s: same names in the same order, and every parameter utility
of torch (weight norm, spectral norm, pruning, a weight drop, functional_call) works by those names,
in both implementations, with the results of ``torch.nn``."""

from __future__ import annotations

import itertools
import warnings

import pytest
import torch
from torch import Tensor, nn
from torch.func import functional_call
from torch.nn.utils import parametrizations, prune

import torchseq

F64 = torch.float64
FRONTS = {nn.RNN: torchseq.RNN, nn.LSTM: torchseq.LSTM, nn.GRU: torchseq.GRU}

CONFIGURATIONS = [
    (torch_class, extra, num_layers, bidirectional, bias)
    for torch_class, extra in ((nn.RNN, {}), (nn.RNN, {"nonlinearity": "relu"}), (nn.LSTM, {}),
                               (nn.LSTM, {"proj_size": 2}), (nn.GRU, {}))
    for num_layers, bidirectional, bias in itertools.product((1, 3), (False, True), (True, False))
]


@pytest.mark.parametrize(("torch_class", "extra", "num_layers", "bidirectional", "bias"), CONFIGURATIONS)
def test_named_parameters_are_torch_nn_ones_in_torch_nn_order(torch_class, extra, num_layers, bidirectional,
                                                               bias) -> None:
    arguments = {"num_layers": num_layers, "bidirectional": bidirectional, "bias": bias, **extra}
    ours, theirs = FRONTS[torch_class](3, 4, **arguments), torch_class(3, 4, **arguments)
    assert [(name, p.shape) for name, p in ours.named_parameters()] == \
        [(name, p.shape) for name, p in theirs.named_parameters()]
    assert list(ours.state_dict()) == list(theirs.state_dict())


def pair(torch_class: type[nn.RNNBase], impl: str, **arguments) -> tuple[nn.Module, nn.Module]:
    """A torch.nn module and the torchseq front holding the same weights (float64, eval mode)."""
    torch.manual_seed(0)
    theirs = torch_class(3, 4, dtype=F64, **arguments).eval()
    return theirs, FRONTS[torch_class].from_torch(theirs, impl=impl).eval()


def run(module: nn.Module, x: Tensor) -> tuple[Tensor, dict[str, Tensor]]:
    """Output and the gradient of every parameter (by name) of a fixed loss."""
    module.zero_grad()
    output, _ = module(x)
    (output * torch.linspace(-1, 1, output.shape[-1], dtype=F64)).sum().backward()
    return output.detach(), {name: p.grad.clone() for name, p in module.named_parameters()}


def assert_same(ours: tuple[Tensor, dict], theirs: tuple[Tensor, dict]) -> None:
    assert ours[1].keys() == theirs[1].keys()
    for got, expected in zip([ours[0], *ours[1].values()], [theirs[0], *theirs[1].values()], strict=True):
        assert (got - expected).abs().max().item() <= 1e-10


X = torch.randn(5, 2, 3, dtype=F64, generator=torch.Generator().manual_seed(1))
IMPLS = ("custom", "fused")
KINDS = {"rnn": nn.RNN, "lstm": nn.LSTM, "gru": nn.GRU}


def old_weight_norm(module: nn.Module, name: str) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # deprecated in favour of parametrizations
        nn.utils.weight_norm(module, name)


UTILITIES = {
    "weight_norm": lambda module: old_weight_norm(module, "weight_hh_l0"),
    "parametrizations.weight_norm": lambda module: parametrizations.weight_norm(module, "weight_ih_l0"),
    "spectral_norm": lambda module: parametrizations.spectral_norm(module, "weight_hh_l1_reverse"),
    "prune.l1_unstructured": lambda module: prune.l1_unstructured(module, "weight_ih_l0", amount=0.3),
}


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("utility", UTILITIES)
def test_torch_parameter_utilities_work_by_torch_name(utility: str, kind: str, impl: str) -> None:
    theirs, ours = pair(KINDS[kind], impl, num_layers=2, bidirectional=True)
    for module in (theirs, ours):
        torch.manual_seed(2)  # spectral_norm draws its starting vector
        UTILITIES[utility](module)
    assert list(ours.state_dict()) == list(theirs.state_dict())
    assert_same(run(ours, X), run(theirs, X))
    # A checkpoint of the modified module loads into the other, and the results stay equal.
    ours.load_state_dict(theirs.state_dict())
    assert_same(run(ours, X), run(theirs, X))


class WeightDrop(nn.Module):
    """AWD-LSTM's weight drop: the raw weight is a new parameter, and each call puts a dropped copy in
    the wrapped module's place of ``name`` as a plain tensor."""

    def __init__(self, module: nn.Module, name: str, p: float) -> None:
        super().__init__()
        self.module, self.name, self.p = module, name, p
        raw = module._parameters.pop(name)
        module.register_parameter(f"{name}_raw", nn.Parameter(raw.detach().clone()))

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        raw = getattr(self.module, f"{self.name}_raw")
        setattr(self.module, self.name, nn.functional.dropout(raw, self.p, training=True))
        return self.module(x)


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("kind", KINDS)
def test_a_weight_drop_replacing_the_parameter_works(kind: str, impl: str) -> None:
    theirs, ours = pair(KINDS[kind], impl)
    theirs, ours = WeightDrop(theirs, "weight_hh_l0", 0.5), WeightDrop(ours, "weight_hh_l0", 0.5)
    results = []
    for module in (ours, theirs):
        torch.manual_seed(3)
        results.append(run(module, X))
    assert_same(*results)
    with torch.no_grad():
        undropped = functional_call(ours.module, {"weight_hh_l0": ours.module.weight_hh_l0_raw}, (X,))[0]
    assert not torch.allclose(results[0][0], undropped)  # the dropped weight is what ran


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("kind", KINDS)
def test_functional_call_by_torch_names(kind: str, impl: str) -> None:
    theirs, ours = pair(KINDS[kind], impl, num_layers=2)
    replaced = {name: torch.randn_like(p) for name, p in theirs.named_parameters()}
    got, expected = functional_call(ours, replaced, (X,)), functional_call(theirs, replaced, (X,))
    torch.testing.assert_close(got[0], expected[0], rtol=0, atol=1e-10)
    assert not torch.allclose(got[0], ours(X)[0])  # the replacements ran, not the parameters


@pytest.mark.parametrize("impl", IMPLS)
def test_options_set_after_construction_take_effect_at_the_next_call(impl: str) -> None:
    _, ours = pair(nn.GRU, impl, num_layers=2)
    ours.train()
    quiet = ours(X)[0]
    ours.dropout = 0.5
    assert ours.dropout == 0.5 and ours.to_torch().dropout == 0.5
    assert not torch.equal(ours(X)[0], quiet)                           # dropout now between the layers
    ours.dropout = 0.0
    torch.testing.assert_close(ours(X)[0], quiet, rtol=0, atol=0)
    ours.batch_first = True
    torch.testing.assert_close(ours(X.transpose(0, 1))[0].transpose(0, 1), quiet, rtol=0, atol=0)
    with pytest.raises(ValueError, match=r"dropout: expected a probability in \[0, 1\], got 1.5"):
        ours.dropout = 1.5
    with pytest.raises(AttributeError, match=r"hidden_size: fixed when the layer is built"):
        ours.hidden_size = 8


def test_parameters_follow_the_module_to_another_dtype_and_through_deepcopy() -> None:
    import copy

    theirs, ours = pair(nn.LSTM, "custom", bidirectional=True)
    ours, theirs = ours.float(), theirs.float()
    torch.testing.assert_close(ours(X.float())[0], theirs(X.float())[0])
    twin = copy.deepcopy(ours)
    with torch.no_grad():
        twin.weight_hh_l0.zero_()
    assert not torch.allclose(twin(X.float())[0], ours(X.float())[0])
    assert twin.cells[0].weight_hh is twin.weight_hh_l0


def test_a_parametrized_cell_of_a_generic_layer_saves_and_loads() -> None:
    """Where the cells own their parameters (``torchseq.Recurrent``), torch's utilities apply to them."""

    def build() -> torchseq.Recurrent:
        layer = torchseq.Recurrent(torchseq.LSTMCell, 3, 4, dtype=F64)
        parametrizations.weight_norm(layer.cells[0], "weight_hh")
        return layer

    torch.manual_seed(4)
    ours, other = build(), build()
    assert "stack.layers.0.cell.parametrizations.weight_hh.original0" in ours.state_dict()
    assert not torch.allclose(ours(X)[0], other(X)[0])
    other.load_state_dict(ours.state_dict())
    torch.testing.assert_close(other(X)[0], ours(X)[0], rtol=0, atol=0)
