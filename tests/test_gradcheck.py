"""Analytic gradients equal finite differences (float64), for the cells and for small layers.

Checked with respect to everything: the input, the initial state and every parameter (passed in
through ``torch.func.functional_call`` so that gradcheck perturbs them too). Second derivatives:
gradgradcheck in full on cells, in fast mode (a random projection of the Jacobian) on layers, through the
kernels and step by step; a gradient penalty against the fused kernel; per-sample gradients with
``torch.func``.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest
import torch
from torch import Tensor, nn
from torch.autograd import gradcheck, gradgradcheck
from torch.func import functional_call

import torchseq
from torchseq.kernels import find_kernel, kernels_enabled

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


@pytest.mark.parametrize("kernels", [True, False], ids=["kernels", "step_by_step"])
@pytest.mark.parametrize("kind", ["lstm_proj", "gru", "gru_reset_before", "rnn_relu"])
def test_layer_gradgradcheck(kind: str, kernels: bool) -> None:
    with kernels_enabled(kernels):
        assert gradgradcheck(*layer_check(kind), fast_mode=True)


# -- second order in a training loss, and torch.func transforms ---------------------------------------
def penalty_and_task_gradients(layer: nn.Module, x: Tensor) -> tuple[Tensor, Tensor]:
    """A recurrent critic's gradient penalty (WGAN-GP) added to a task loss: dL/dW_hh of the penalty
    alone and of the whole loss."""
    x = x.clone().requires_grad_()
    output, _ = layer(x)
    score = output[-1].sum()
    (dx,) = torch.autograd.grad(score, x, create_graph=True)
    penalty = (dx.flatten(1).norm(dim=1) - 1).square().mean()
    task = output.square().mean()
    weight = layer.weight_hh_l0 if hasattr(layer, "weight_hh_l0") else layer.cells[0].weight_hh
    (penalty_share,) = torch.autograd.grad(penalty, weight, retain_graph=True)
    (total,) = torch.autograd.grad(task + penalty, weight)
    return penalty_share, total


@pytest.mark.parametrize("kind", ["lstm", "gru", "rnn_tanh"])
def test_a_gradient_penalty_in_a_task_loss_matches_the_fused_kernel(kind: str) -> None:
    make = {"lstm": torchseq.LSTM, "gru": torchseq.GRU, "rnn_tanh": torchseq.RNN}[kind]
    torch.manual_seed(3)
    layer = make(3, 5, num_layers=2, dtype=F64)
    x = torch.randn(6, 4, 3, dtype=F64)
    custom = penalty_and_task_gradients(layer, x)
    layer.impl = "fused"
    fused = penalty_and_task_gradients(layer, x)
    assert custom[0].abs().max().item() > 1e-3  # the penalty really reaches W_hh
    for ours, theirs in zip(custom, fused, strict=True):
        assert (ours - theirs).abs().max().item() <= 1e-10


def per_sample_setup(kind: str):
    make = {"lstm": torchseq.LSTM, "gru": torchseq.GRU, "rnn_tanh": torchseq.RNN}[kind]
    torch.manual_seed(4)
    layer = make(3, 4, dtype=F64)
    parameters = {name: p.detach() for name, p in layer.named_parameters()}
    inputs, targets = torch.randn(5, 6, 3, dtype=F64), torch.randn(5, 4, dtype=F64)  # (B, T, I), (B, H)

    def loss(parameters: dict[str, Tensor], sequence: Tensor, target: Tensor) -> Tensor:
        output, _ = functional_call(layer, parameters, (sequence,))                   # unbatched (T, I)
        return (output[-1] - target).square().sum()

    return layer, parameters, inputs, targets, loss


@pytest.mark.parametrize("kind", ["lstm", "gru", "rnn_tanh"])
def test_per_sample_gradients_with_vmap_of_grad_equal_a_loop(kind: str) -> None:
    """What differentially private training computes: one gradient per sample, batched by torch.func."""
    layer, parameters, inputs, targets, loss = per_sample_setup(kind)
    batched = torch.func.vmap(torch.func.grad(loss), in_dims=(None, 0, 0))(parameters, inputs, targets)
    for index in range(inputs.shape[0]):
        expected = torch.autograd.grad(loss(dict(layer.named_parameters()), inputs[index], targets[index]),
                                       list(layer.parameters()))
        for (name, got), want in zip(batched.items(), expected, strict=True):
            assert (got[index] - want).abs().max().item() <= 1e-10, name


def test_jacrev_equals_autograd_jacobian() -> None:
    layer, parameters, inputs, _, _ = per_sample_setup("lstm")

    def final_state(sequence: Tensor) -> Tensor:
        return functional_call(layer, parameters, (sequence,))[1][0]

    got = torch.func.jacrev(final_state)(inputs[0])
    expected = torch.autograd.functional.jacobian(final_state, inputs[0])
    assert (got - expected).abs().max().item() <= 1e-10


def test_kernels_step_aside_inside_torch_func_transforms() -> None:
    cell, x = torchseq.LSTMCell(3, 4, dtype=F64), torch.zeros(2, 1, 3, dtype=F64)
    assert find_kernel(cell, x) is not None
    seen = []

    def probe(x: Tensor) -> Tensor:
        seen.append(find_kernel(cell, x))
        return x.sum()

    torch.func.grad(probe)(x)
    assert seen == [None]
