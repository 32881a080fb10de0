"""Analytic gradients equal finite differences (float64), for the cells and for small layers.

Checked with respect to everything: the input, the initial state and every parameter (passed in
through ``torch.func.functional_call`` so that gradcheck perturbs them too). Second derivatives:
gradgradcheck in full on cells, in fast mode (a random projection of the Jacobian) on layers.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest
import torch
from torch import Tensor, nn
from torch.autograd import gradcheck, gradgradcheck
from torch.func import functional_call

import torchseq
from torchseq.kernels import kernels_enabled

F64 = torch.float64


def flatten(result: Tensor | tuple) -> tuple[Tensor, ...]:
    """``output, (h_n, c_n)`` → ``(output, h_n, c_n)``: gradcheck wants a flat tuple of tensors."""
    if isinstance(result, Tensor):
        return (result,)
    return tuple(tensor for part in result for tensor in flatten(part))


def checked(module: nn.Module, inputs: tuple[Tensor, ...], arrange: Callable[..., tuple[tuple, dict]]):
    """gradcheck's function and tensors: the inputs, then every parameter, so that all are perturbed.

    ``arrange(*inputs)`` returns the module call's ``(args, kwargs)``.
    """
    names = [name for name, _ in module.named_parameters()]

    def function(*tensors: Tensor) -> tuple[Tensor, ...]:
        args, kwargs = arrange(*tensors[: len(inputs)])
        parameters = dict(zip(names, tensors[len(inputs) :], strict=True))
        return flatten(functional_call(module, parameters, args, kwargs))

    tensors = (*inputs, *(parameter.detach() for parameter in module.parameters()))
    return function, tuple(tensor.detach().clone().requires_grad_() for tensor in tensors)


CELLS = {
    "rnn_tanh": lambda: torchseq.RNNCell(3, 4, nonlinearity="tanh", dtype=F64),
    "rnn_relu": lambda: torchseq.RNNCell(3, 4, nonlinearity="relu", dtype=F64),
    "lstm": lambda: torchseq.LSTMCell(3, 4, dtype=F64),
    "lstm_proj": lambda: torchseq.LSTMCell(3, 4, proj_size=2, dtype=F64),
    "gru": lambda: torchseq.GRUCell(3, 4, dtype=F64),
    "gru_reset_before": lambda: torchseq.GRUCell(3, 4, reset_after=False, dtype=F64),
    "gru_single_bias": lambda: torchseq.GRUCell(3, 4, recurrent_bias=False, dtype=F64),
    "lstm_no_bias": lambda: torchseq.LSTMCell(3, 4, bias=False, dtype=F64),
}


def cell_check(kind: str):
    torch.manual_seed(0)
    cell = CELLS[kind]()
    generator = torch.Generator().manual_seed(1)
    x = torch.randn(2, 3, generator=generator, dtype=F64)
    states = tuple(torch.randn(2, size, generator=generator, dtype=F64)
                   for size in ((cell.output_size, cell.hidden_size) if isinstance(cell, torchseq.LSTMCell)
                                else (cell.hidden_size,)))
    return checked(cell, (x, *states), lambda x, *state: ((x, state if len(state) > 1 else state[0]), {}))


@pytest.mark.parametrize("kind", CELLS)
def test_cell_gradcheck(kind: str) -> None:
    assert gradcheck(*cell_check(kind))


@pytest.mark.parametrize("kind", CELLS)
def test_cell_gradgradcheck(kind: str) -> None:
    assert gradgradcheck(*cell_check(kind))


LAYERS = {
    "rnn_relu": lambda: torchseq.RNN(2, 2, num_layers=2, nonlinearity="relu", bidirectional=True, dtype=F64),
    "lstm": lambda: torchseq.LSTM(2, 2, num_layers=2, bidirectional=True, dtype=F64),
    "lstm_proj": lambda: torchseq.LSTM(2, 3, num_layers=2, proj_size=1, bidirectional=True, dtype=F64),
    "gru": lambda: torchseq.GRU(2, 2, num_layers=2, bidirectional=True, dtype=F64),
    "gru_reset_before": lambda: torchseq.GRU(2, 2, num_layers=2, reset_after=False, bidirectional=True,
                                             dtype=F64),
}


def layer_check(kind: str):
    """A 2-layer bidirectional layer over T=3, B=2 with unsorted lengths and a given initial state."""
    torch.manual_seed(0)
    layer = LAYERS[kind]()
    generator = torch.Generator().manual_seed(1)
    x = torch.randn(3, 2, 2, generator=generator, dtype=F64)
    states = tuple(torch.randn(4, 2, size, generator=generator, dtype=F64) for size in layer.state_sizes())
    lengths = torch.tensor([2, 3])
    return checked(layer, (x, *states),
                   lambda x, *state: ((x, state if len(state) > 1 else state[0]), {"lengths": lengths}))


@pytest.mark.parametrize("kernels", [True, False], ids=["kernels", "step_by_step"])
@pytest.mark.parametrize("kind", LAYERS)
def test_layer_gradcheck(kind: str, kernels: bool) -> None:
    with kernels_enabled(kernels):
        assert gradcheck(*layer_check(kind))


@pytest.mark.parametrize("kind", ["lstm_proj", "gru_reset_before"])
def test_layer_gradgradcheck_step_by_step(kind: str) -> None:
    with kernels_enabled(False):  # the kernels are first-order only
        assert gradgradcheck(*layer_check(kind), fast_mode=True)
