"""Cells: equal to ``torch.nn.*Cell`` (weights moved both ways), the original GRU formula, and init."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import Tensor, nn

import torchseq
from torchseq.cells import RecurrentCell
from torchseq.kernels import kernels_enabled

CELLS = {
    "rnn_tanh": (lambda *a, **k: torchseq.RNNCell(*a, nonlinearity="tanh", **k),
                 lambda *a, **k: nn.RNNCell(*a, nonlinearity="tanh", **k)),
    "rnn_relu": (lambda *a, **k: torchseq.RNNCell(*a, nonlinearity="relu", **k),
                 lambda *a, **k: nn.RNNCell(*a, nonlinearity="relu", **k)),
    "lstm": (torchseq.LSTMCell, nn.LSTMCell),
    "gru": (torchseq.GRUCell, nn.GRUCell),
}
sizes = st.integers(1, 6)
seeds = st.integers(0, 2**16)


def random_state(cell: RecurrentCell, batch: tuple[int, ...], generator: torch.Generator):
    """h, or (h, c) for the LSTM, of shape (*batch, ·), float64."""
    states = [torch.randn(*batch, size, generator=generator, dtype=torch.float64)
              for size in ((cell.hidden_size, cell.hidden_size) if isinstance(cell, torchseq.LSTMCell)
                           else (cell.hidden_size,))]
    return tuple(states) if len(states) > 1 else states[0]


def step_and_gradients(cell: nn.Module, x: Tensor, hx) -> dict[str, Tensor]:
    """One step of ``cell`` and the gradients of a fixed random loss: {name: tensor} of all results."""
    x = x.clone().requires_grad_()
    hx = None if hx is None else tuple(s.clone().requires_grad_() for s in (hx if isinstance(hx, tuple)
                                                                          else (hx,)))
    new = cell(x, hx if hx is None or len(hx) > 1 else hx[0])
    new = new if isinstance(new, tuple) else (new,)
    generator = torch.Generator().manual_seed(1)
    loss = sum((s * torch.randn(s.shape, generator=generator, dtype=s.dtype)).sum() for s in new)
    inputs = {"x": x} | {f"hx[{k}]": s for k, s in enumerate(hx or ())} | dict(cell.named_parameters())
    gradients = torch.autograd.grad(loss, list(inputs.values()))
    return {f"state[{k}]": s.detach() for k, s in enumerate(new)} | {
        f"grad {name}": g for name, g in zip(inputs, gradients, strict=True)}


@pytest.mark.parametrize("kind", CELLS)
@pytest.mark.parametrize("bias", [True, False], ids=["bias", "no_bias"])
@pytest.mark.parametrize("batched", [True, False], ids=["batched", "unbatched"])
@pytest.mark.parametrize("with_hx", [True, False], ids=["hx", "no_hx"])
@pytest.mark.parametrize("weights_from", ["torch", "torchseq"])
@settings(max_examples=5)
@given(batch=sizes, input_size=sizes, hidden_size=sizes, seed=seeds)
def test_cell_equals_torch_cell(kind: str, bias: bool, batched: bool, with_hx: bool, weights_from: str,
                                batch: int, input_size: int, hidden_size: int, seed: int) -> None:
    ours_class, torch_class = CELLS[kind]
    torch.manual_seed(seed)
    ours = ours_class(input_size, hidden_size, bias, dtype=torch.float64)
    theirs = torch_class(input_size, hidden_size, bias, dtype=torch.float64)
    assert list(ours.state_dict()) == list(theirs.state_dict())
    source, target = (theirs, ours) if weights_from == "torch" else (ours, theirs)
    target.load_state_dict(source.state_dict())

    generator = torch.Generator().manual_seed(seed)
    leading = (batch,) if batched else ()
    x = torch.randn(*leading, input_size, generator=generator, dtype=torch.float64)
    hx = random_state(ours, leading, generator) if with_hx else None
    expected = step_and_gradients(theirs, x, hx)
    actual = step_and_gradients(ours, x, hx)
    assert actual.keys() == expected.keys()
    for name, value in expected.items():
        assert actual[name].shape == value.shape, name
        torch.testing.assert_close(actual[name], value, rtol=0, atol=1e-12, msg=name)


# -- the original GRU (Cho et al. 2014), reset before the recurrent matmul ----------------------------
def cho_gru_step(x: Tensor, h: Tensor, cell: torchseq.GRUCell) -> Tensor:
    """The formula of Cho et al. written out gate by gate, independently of torchseq's code."""
    W_ir, W_iz, W_in = cell.weight_ih.chunk(3)
    W_hr, W_hz, W_hn = cell.weight_hh.chunk(3)
    zeros = torch.zeros(3 * cell.hidden_size, dtype=x.dtype)
    b_ir, b_iz, b_in = (zeros if cell.bias_ih is None else cell.bias_ih).chunk(3)
    b_hr, b_hz, b_hn = (zeros if cell.bias_hh is None else cell.bias_hh).chunk(3)
    r = torch.sigmoid(x @ W_ir.T + b_ir + h @ W_hr.T + b_hr)
    z = torch.sigmoid(x @ W_iz.T + b_iz + h @ W_hz.T + b_hz)
    n = torch.tanh(x @ W_in.T + b_in + (r * h) @ W_hn.T + b_hn)
    return (1 - z) * n + z * h


@pytest.mark.parametrize("bias", ["both", "none", "input_only"])
@settings(max_examples=10)
@given(batch=sizes, input_size=sizes, hidden_size=sizes, seed=seeds)
def test_gru_reset_before_is_the_cho_formula(bias: str, batch: int, input_size: int, hidden_size: int,
                                             seed: int) -> None:
    torch.manual_seed(seed)
    cell = torchseq.GRUCell(input_size, hidden_size, bias != "none", reset_after=False,
                            recurrent_bias=bias == "both", dtype=torch.float64)
    x = torch.randn(batch, input_size, dtype=torch.float64)
    h = torch.randn(batch, hidden_size, dtype=torch.float64)
    with torch.no_grad():
        torch.testing.assert_close(cell(x, h), cho_gru_step(x, h, cell), rtol=0, atol=1e-12)


@pytest.mark.parametrize("kernels", [True, False], ids=["kernels", "step_by_step"])
def test_gru_layer_reset_before_runs_the_cho_formula(kernels: bool) -> None:
    torch.manual_seed(0)
    layer = torchseq.GRU(3, 4, reset_after=False, dtype=torch.float64)
    x, lengths = torch.randn(6, 3, 3, dtype=torch.float64), torch.tensor([4, 6, 1])
    with kernels_enabled(kernels), torch.no_grad():
        output, h_n = layer(x, lengths=lengths)
    cell = layer.cells[0]
    for b, length in enumerate(lengths.tolist()):
        h = torch.zeros(1, 4, dtype=torch.float64)
        with torch.no_grad():
            for t in range(length):
                h = cho_gru_step(x[t, b : b + 1], h, cell)
                torch.testing.assert_close(output[t, b], h[0], rtol=0, atol=1e-12)
        assert torch.count_nonzero(output[length:, b]) == 0
        torch.testing.assert_close(h_n[0, b], h[0], rtol=0, atol=1e-12)


def test_gru_reset_before_and_after_differ_for_the_same_weights() -> None:
    torch.manual_seed(0)
    after = torchseq.GRUCell(4, 5, reset_after=True, dtype=torch.float64)
    before = torchseq.GRUCell(4, 5, reset_after=False, dtype=torch.float64)
    before.load_state_dict(after.state_dict())
    x, h = torch.randn(3, 4, dtype=torch.float64), torch.randn(3, 5, dtype=torch.float64)
    with torch.no_grad():
        gap = (after(x, h) - before(x, h)).abs().max().item()
    assert gap > 1e-3, f"reset_after=True and False should be different GRUs, max gap {gap:.2e}"


# -- initialisation schemes -------------------------------------------------------------------------
def all_cells(init: str) -> list[RecurrentCell]:
    """One cell of every kind (the LSTM with and without projection), with ``init``."""
    torch.manual_seed(0)
    return [torchseq.RNNCell(7, 9, init=init), torchseq.LSTMCell(7, 9, init=init),
            torchseq.LSTMCell(7, 9, proj_size=4, init=init), torchseq.GRUCell(7, 9, init=init)]


def glorot_bound(weight: Tensor) -> float:
    fan_out, fan_in = weight.shape
    return math.sqrt(6.0 / (fan_in + fan_out))


@pytest.mark.parametrize("cell", all_cells("torch"), ids=repr)
def test_torch_init_is_uniform_within_one_over_sqrt_hidden(cell: RecurrentCell) -> None:
    bound = 1.0 / math.sqrt(cell.hidden_size)
    for name, parameter in cell.named_parameters():
        assert parameter.abs().max() <= bound, name
    values = torch.cat([parameter.detach().flatten() for parameter in cell.parameters()])  # > 100 draws
    assert values.abs().max() > 0.95 * bound, f"the parameters do not fill U(-{bound:.3f}, {bound:.3f})"


@pytest.mark.parametrize("cell", all_cells("xavier"), ids=repr)
def test_xavier_init_has_glorot_weights_and_zero_biases(cell: RecurrentCell) -> None:
    for name, parameter in cell.named_parameters():
        if name.startswith("bias"):
            assert torch.count_nonzero(parameter) == 0, name
        else:
            bound = glorot_bound(parameter)
            assert 0.8 * bound < parameter.abs().max() <= bound, name


@pytest.mark.parametrize("cell", all_cells("keras"), ids=repr)
def test_keras_init_is_orthogonal_recurrent_and_unit_forget_bias(cell: RecurrentCell) -> None:
    recurrent = cell.weight_hh.detach()                                        # (G·H, H or P)
    identity = torch.eye(recurrent.shape[1])
    torch.testing.assert_close(recurrent.T @ recurrent, identity, rtol=0, atol=1e-5)
    assert cell.weight_ih.abs().max() <= glorot_bound(cell.weight_ih)
    assert torch.count_nonzero(cell.bias_hh) == 0
    expected_bias = torch.zeros_like(cell.bias_ih)
    if isinstance(cell, torchseq.LSTMCell):  # gate order i, f, g, o: the f block is 1
        expected_bias[cell.hidden_size : 2 * cell.hidden_size] = 1.0
    assert torch.equal(cell.bias_ih.detach(), expected_bias)


@pytest.mark.parametrize("init", ["torch", "xavier", "keras"])
def test_layer_init_reaches_every_cell(init: str) -> None:
    torch.manual_seed(0)
    layer = torchseq.LSTM(3, 6, num_layers=2, bidirectional=True, init=init)
    forget = slice(6, 12)
    for cell in layer.cells:
        assert cell.init == init
        if init == "keras":
            assert torch.equal(cell.bias_ih[forget], torch.ones(6))
        else:
            assert cell.bias_ih.abs().max() <= 1 / math.sqrt(6)  # zeros (xavier) or U(±1/√H) (torch)


def test_reset_parameters_draws_new_values_with_the_given_scheme() -> None:
    torch.manual_seed(0)
    cell = torchseq.LSTMCell(3, 4)
    before = cell.weight_hh.detach().clone()
    cell.reset_parameters()
    assert not torch.equal(before, cell.weight_hh)
    cell.reset_parameters("keras")
    assert torch.equal(cell.bias_ih[4:8].detach(), torch.ones(4))
