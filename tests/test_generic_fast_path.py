"""The traced fast path for cells without a hand-written kernel (torchseq.kernels.generic): equal to the
step-by-step reference, shared between cells of one configuration, and refused where it must be."""

from __future__ import annotations

import pytest
import torch
from torch import Tensor
from torch.autograd import gradcheck, gradgradcheck
from torch.nn import functional as F

import torchseq
from torchseq.cells import LayerNormLSTMCell, LSTMCell, RNNCell
from torchseq.kernels import find_kernel, generic, kernels_enabled
from torchseq.recurrent import Unroll

F64 = torch.float64


class ScaledLSTMCell(LSTMCell):
    """A user cell: only ``recur`` changed (the output gate's product scaled by a learned vector)."""

    def __init__(self, *args, **options) -> None:
        super().__init__(*args, **options)
        factory = {"dtype": self.weight_ih.dtype, "device": self.weight_ih.device}
        self.scale = torch.nn.Parameter(torch.linspace(0.5, 1.5, self.hidden_size, **factory))

    def recur(self, projected_input: Tensor, state: tuple[Tensor, Tensor]) -> tuple[Tensor, Tensor]:
        h, c = super().recur(projected_input, state)
        return h * self.scale, c


def outputs_and_gradients(cell, x, state, lengths, enabled: bool, reverse: bool = False):
    with kernels_enabled(enabled):
        output, (final,) = Unroll(cell, reverse=reverse)(x, [state], lengths)
    parts = [output, *(final if isinstance(final, tuple) else (final,))]
    weights = [torch.linspace(-1, 1, p.numel(), dtype=p.dtype).view_as(p) for p in parts]
    loss = sum((p * w).sum() for p, w in zip(parts, weights, strict=True))
    inputs = [x, *(state if isinstance(state, tuple) else (state,)), *cell.parameters()]
    return parts, torch.autograd.grad(loss, inputs)


@pytest.mark.parametrize(("dtype", "tolerance"), [(torch.float64, 1e-10), (torch.float32, 1e-5)])
@pytest.mark.parametrize("cell_class", [LayerNormLSTMCell, ScaledLSTMCell])
@pytest.mark.parametrize("reverse", [False, True])
def test_fast_path_equals_the_reference(cell_class, dtype, tolerance, reverse) -> None:
    torch.manual_seed(0)
    cell = cell_class(3, 5, dtype=dtype)
    with torch.no_grad():
        for parameter in cell.parameters():
            parameter.add_(0.2 * torch.randn_like(parameter))
    x = torch.randn(7, 3, 3, dtype=dtype, requires_grad=True)
    state = tuple(torch.randn(3, 5, dtype=dtype, requires_grad=True) for _ in range(2))
    lengths = torch.tensor([7, 2, 5])
    assert find_kernel(cell, x).func is generic.run_generic
    fast, fast_gradients = outputs_and_gradients(cell, x, state, lengths, True, reverse)
    reference, reference_gradients = outputs_and_gradients(cell, x, state, lengths, False, reverse)
    for ours, theirs in zip([*fast, *fast_gradients], [*reference, *reference_gradients], strict=True):
        torch.testing.assert_close(ours, theirs, rtol=0, atol=tolerance)


def test_gradcheck_of_the_traced_recurrence() -> None:
    torch.manual_seed(1)
    cell = ScaledLSTMCell(2, 3, dtype=F64)
    x = torch.randn(5, 2, 2, dtype=F64, requires_grad=True)
    h0, c0 = (torch.randn(2, 3, dtype=F64, requires_grad=True) for _ in range(2))
    graphs = generic.prepare(cell, x)
    names = graphs.parameter_names
    named = dict(cell.named_parameters())

    def run(pre, h0, c0, *parameters):
        return generic.GenericRecurrence.apply(graphs, cell, pre, 2, h0, c0, *parameters)

    pre = cell.input_projection(x).detach().requires_grad_()
    inputs = (pre, h0, c0, *(named[n] for n in names))
    assert gradcheck(run, inputs, eps=1e-6, atol=1e-7)
    assert gradgradcheck(run, inputs, eps=1e-6, atol=1e-6)


def test_double_backward_equals_the_reference() -> None:
    """A gradient penalty through a user cell: d/dθ ‖∂loss/∂x‖² on the fast path = the reference."""
    torch.manual_seed(4)
    cell = LayerNormLSTMCell(3, 4, dtype=F64)
    x = torch.randn(5, 2, 3, dtype=F64, requires_grad=True)

    def penalty_gradients(enabled: bool) -> list[Tensor]:
        with kernels_enabled(enabled):
            output = Unroll(cell)(x, [cell.initial_state(2, x)])[0]
        (d_x,) = torch.autograd.grad(output.square().sum(), x, create_graph=True)
        return torch.autograd.grad(d_x.square().sum(), list(cell.parameters()), allow_unused=True)

    for ours, theirs in zip(penalty_gradients(True), penalty_gradients(False), strict=True):
        if theirs is None:
            assert ours is None or ours.abs().max() == 0
        else:
            torch.testing.assert_close(ours, theirs, rtol=0, atol=1e-10)


def test_without_gradients_the_forward_loop_alone_runs() -> None:
    cell = LayerNormLSTMCell(3, 4)
    x = torch.randn(6, 2, 3)
    with torch.no_grad():
        fast = Unroll(cell)(x, [cell.initial_state(2, x)])[0]
        with kernels_enabled(False):
            reference = Unroll(cell)(x, [cell.initial_state(2, x)])[0]
    torch.testing.assert_close(fast, reference, rtol=0, atol=1e-6)
    with torch.inference_mode():
        torch.testing.assert_close(Unroll(cell)(x, [cell.initial_state(2, x)])[0], fast, rtol=0, atol=0)


def test_a_first_call_under_inference_mode_takes_the_fast_path(recwarn) -> None:
    """Serving code may call a cell first under torch.inference_mode(): tracing still works there."""
    cell = LayerNormLSTMCell(3, 6)  # a configuration no other test traced
    x = torch.randn(6, 2, 3)
    with torch.inference_mode():
        fast = Unroll(cell)(x, [cell.initial_state(2, x)])[0]
        assert generic.prepare(cell, x) is not None
    assert not [w for w in recwarn if "keeps the step-by-step path" in str(w.message)]
    with torch.no_grad(), kernels_enabled(False):
        reference = Unroll(cell)(x, [cell.initial_state(2, x)])[0]
    torch.testing.assert_close(fast, reference, rtol=0, atol=1e-6)


def test_cells_of_one_configuration_share_graphs_and_each_is_checked() -> None:
    first, second = LayerNormLSTMCell(3, 4), LayerNormLSTMCell(3, 4)
    x = torch.randn(5, 2, 3)
    assert generic.prepare(first, x) is generic.prepare(second, x)
    assert generic.prepare(LayerNormLSTMCell(3, 4, eps=1e-3), x) is not generic.prepare(first, x)


def test_fast_path_off_is_explicit() -> None:
    cell = ScaledLSTMCell(3, 4)
    x = torch.randn(5, 2, 3)
    assert find_kernel(cell, x) is not None
    cell.fast_path = False
    assert find_kernel(cell, x) is None
    cell.fast_path = True
    with kernels_enabled(False):
        assert find_kernel(cell, x) is None


class NoisyRNNCell(RNNCell):
    def recur(self, projected_input: Tensor, h: Tensor) -> Tensor:
        return F.dropout(super().recur(projected_input, h), 0.5, self.training)


class BranchingRNNCell(RNNCell):
    """Python control flow on values: a trace would freeze one branch."""

    def recur(self, projected_input: Tensor, h: Tensor) -> Tensor:
        new = super().recur(projected_input, h)
        return new if float(new.sum()) > 0 else -new


@pytest.mark.parametrize("cell_class", [NoisyRNNCell, BranchingRNNCell])
def test_cells_a_trace_cannot_stand_for_keep_the_reference(cell_class) -> None:
    cell = cell_class(3, 4)
    x = torch.randn(5, 2, 3)
    with pytest.warns(UserWarning, match="keeps the step-by-step path"):
        assert find_kernel(cell, x) is None
    assert find_kernel(cell, x) is None  # decided once


def test_a_user_cell_trains_through_recurrent_with_the_fast_path() -> None:
    torch.manual_seed(2)
    layer = torchseq.Recurrent(ScaledLSTMCell, 3, 8, num_layers=2, bidirectional=True, batch_first=True)
    head = torch.nn.Linear(16, 1)
    optimiser = torch.optim.Adam([*layer.parameters(), *head.parameters()], lr=0.02)
    x = torch.randn(16, 6, 3)
    y = x.sum(dim=(1, 2)).unsqueeze(1)
    losses = []
    for _ in range(20):
        optimiser.zero_grad()
        loss = F.mse_loss(head(layer(x)[0][:, -1]), y)
        loss.backward()
        optimiser.step()
        losses.append(loss.item())
    assert losses[-1] < 0.5 * losses[0]
    assert all(p.grad is not None for p in layer.parameters())
