"""``torchseq.Recurrent``: any RecurrentCell as a layer, with the fronts' call and options."""

from __future__ import annotations

import pytest
import torch
from torch import Tensor
from torch.nn import functional as F

import torchseq
from torchseq.cells import GRUCell, LSTMCell, RNNCell
from torchseq.kernels import kernels_enabled

F64 = torch.float64


class LeakyRNNCell(RNNCell):
    """A cell with its own formula (h_t = ½ h_{t-1} + ½ tanh(…)) and an extra option."""

    def __init__(self, *args, leak: float = 0.5, **options) -> None:
        super().__init__(*args, **options)
        self.leak = leak

    def recur(self, projected_input: Tensor, h: Tensor) -> Tensor:
        update = torch.tanh(projected_input + F.linear(h, self.weight_hh, self.bias_hh))
        return self.leak * h + (1 - self.leak) * update


def copy_front_weights(front: torchseq.RNN, layer: torchseq.Recurrent) -> None:
    with torch.no_grad():
        for theirs, ours in zip(front.cells, layer.cells, strict=True):
            for name, parameter in ours.named_parameters():
                parameter.copy_(getattr(theirs, name))


@pytest.mark.parametrize(("cell_class", "front", "options"), [
    (LSTMCell, torchseq.LSTM, {"proj_size": 2}),
    (GRUCell, torchseq.GRU, {"reset_after": False}),
    (RNNCell, torchseq.RNN, {"nonlinearity": "relu"}),
])
def test_a_stock_cell_as_a_layer_equals_its_front(cell_class, front, options) -> None:
    torch.manual_seed(0)
    theirs = front(3, 4, num_layers=2, bidirectional=True, dtype=F64, **options)
    ours = torchseq.Recurrent(cell_class, 3, 4, num_layers=2, bidirectional=True, dtype=F64, **options)
    copy_front_weights(theirs, ours)
    assert all(".cell." in name for name, _ in ours.named_parameters())  # the cells keep their parameters
    x, lengths = torch.randn(5, 2, 3, dtype=F64), torch.tensor([5, 3])
    ours_output, ours_final = ours(x, lengths=lengths)
    their_output, their_final = theirs(x, lengths=lengths)
    torch.testing.assert_close(ours_output, their_output, rtol=0, atol=1e-12)
    torch.testing.assert_close(ours_final, their_final, rtol=0, atol=1e-12)


def test_a_stock_cell_layer_runs_the_fused_kernel_too() -> None:
    torch.manual_seed(1)
    layer = torchseq.Recurrent(LSTMCell, 3, 4, num_layers=2, dtype=F64)
    x = torch.randn(6, 2, 3, dtype=F64)
    custom = layer(x)[0]
    layer.impl = "fused"
    torch.testing.assert_close(layer(x)[0], custom, rtol=0, atol=1e-12)
    torch.testing.assert_close(layer.to_torch()(x)[0], custom, rtol=0, atol=1e-12)


def test_a_user_cell_runs_with_every_option_and_its_own_parameters() -> None:
    torch.manual_seed(2)
    layer = torchseq.Recurrent(LeakyRNNCell, 3, 4, num_layers=2, bidirectional=True, batch_first=True,
                               merge_mode="sum", leak=0.25, dtype=F64)
    assert [cell.leak for cell in layer.cells] == [0.25] * 4
    x, lengths = torch.randn(2, 5, 3, dtype=F64, requires_grad=True), torch.tensor([5, 2])
    output, h_n = layer(x, lengths=lengths)
    assert output.shape == (2, 5, 4) and h_n.shape == (4, 2, 4)
    assert torch.all(output[1, 2:] == 0)                                # past the end of sequence 1
    output.square().sum().backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in layer.parameters())

    # The leak is really used: the same weights in a plain RNN cell give another output.
    plain = torchseq.Recurrent(RNNCell, 3, 4, num_layers=2, bidirectional=True, batch_first=True,
                               merge_mode="sum", dtype=F64)
    plain.load_state_dict(layer.state_dict())
    assert not torch.allclose(plain(x, lengths=lengths)[0], output)


def test_a_user_cell_layer_equals_its_step_by_step_formulas_with_kernels_on_or_off() -> None:
    torch.manual_seed(3)
    layer = torchseq.Recurrent(LeakyRNNCell, 3, 4, dtype=F64)
    x = torch.randn(4, 2, 3, dtype=F64)
    output, _ = layer(x)
    with kernels_enabled(False):
        reference, _ = layer(x)
    torch.testing.assert_close(output, reference, rtol=0, atol=1e-12)
    cell, h, expected = layer.cells[0], torch.zeros(2, 4, dtype=F64), []
    for x_t in x:
        h = cell(x_t, h)
        expected.append(h)
    torch.testing.assert_close(output, torch.stack(expected), rtol=0, atol=1e-12)


def test_bad_cell_classes_and_fused_requests_are_refused() -> None:
    with pytest.raises(TypeError, match=r"cell_class: expected a subclass of RecurrentCell, got <class"):
        torchseq.Recurrent(torch.nn.LSTMCell, 3, 4)
    with pytest.raises(ValueError, match=r"impl: 'fused' is not available .*LeakyRNNCell has no torch.nn"):
        torchseq.Recurrent(LeakyRNNCell, 3, 4, impl="fused")
    layer = torchseq.Recurrent(LeakyRNNCell, 3, 4)
    with pytest.raises(TypeError, match=r"to_torch: no torch.nn module computes this layer"):
        layer.to_torch()


def test_the_repr_names_the_cell_class_of_a_generic_layer_only() -> None:
    assert torchseq.Recurrent(LeakyRNNCell, 3, 4, num_layers=2).extra_repr() == \
        "LeakyRNNCell, 3, 4, num_layers=2, impl='custom'"
    assert torchseq.GRU(3, 4, dropout=0.5, num_layers=2).extra_repr() == \
        "3, 4, num_layers=2, impl='custom', dropout=0.5"
