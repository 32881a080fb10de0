"""Variational recurrent dropout, zoneout and DropConnect as cell options (torchseq.cells.regularizers)."""

import pytest
import torch

import torchseq
from torchseq.cells import GRUCell, LayerNormLSTMCell, LSTMCell, RNNCell
from torchseq.cells.regularizers import (
    RegularizedGRUCell,
    RegularizedLSTMCell,
    RegularizedRNNCell,
    regularized,
)
from torchseq.kernels import kernels_enabled

PAIRS = [(RegularizedLSTMCell, LSTMCell), (RegularizedGRUCell, GRUCell), (RegularizedRNNCell, RNNCell)]
ALL_OPTIONS = {"recurrent_dropout": 0.4, "zoneout": 0.3, "weight_dropout": 0.5}


def twin_layers(regularized_class, plain_class, dtype=torch.float64, hidden=6, num_layers=2, **options):
    """A regularised layer and a plain one with the same weights."""
    torch.manual_seed(0)
    sizes = {"num_layers": num_layers, "bidirectional": num_layers > 1, "dtype": dtype}
    plain = torchseq.Recurrent(plain_class, 3, hidden, **sizes)
    reg = torchseq.Recurrent(regularized_class, 3, hidden, **sizes, **options)
    reg.load_state_dict(plain.state_dict())  # same parameter names: loads both ways
    return reg, plain


def identity_relu_rnn(hidden: int, **options):
    """h_t = relu(W_hh h_{t-1}) with W_hh = I and no input: the output exposes the masks."""
    layer = torchseq.Recurrent(RegularizedRNNCell, 2, hidden, bias=False, nonlinearity="relu", **options)
    cell = layer.stack.cells[0]
    with torch.no_grad():
        cell.weight_ih.zero_()
        cell.weight_hh.copy_(torch.eye(hidden))
    return layer, cell


@pytest.mark.parametrize(("regularized_class", "plain_class"), PAIRS)
def test_eval_without_zoneout_equals_the_plain_cell_exactly(regularized_class, plain_class):
    reg, plain = twin_layers(regularized_class, plain_class, recurrent_dropout=0.4, weight_dropout=0.5)
    reg.eval()
    plain.eval()
    x = torch.randn(5, 4, 3, dtype=torch.float64)
    lengths = torch.tensor([5, 3, 1, 4])
    with kernels_enabled(False):
        expected, (h_ref, *_) = plain(x, lengths=lengths)
        got, (h, *_) = reg(x, lengths=lengths)
    assert torch.equal(got, expected) and torch.equal(h, h_ref)


def test_eval_on_the_fast_path_matches_the_hand_kernel():
    reg, plain = twin_layers(RegularizedLSTMCell, LSTMCell, **ALL_OPTIONS | {"zoneout": 0.0})
    reg.eval()
    plain.eval()
    x = torch.randn(6, 4, 3, dtype=torch.float64, requires_grad=True)
    got, expected = reg(x)[0], plain(x)[0]
    torch.testing.assert_close(got, expected, atol=1e-10, rtol=0)
    (grad_got,) = torch.autograd.grad(got.sum(), x)
    (grad_expected,) = torch.autograd.grad(expected.sum(), x)
    torch.testing.assert_close(grad_got, grad_expected, atol=1e-10, rtol=0)


@pytest.mark.parametrize(("regularized_class", "plain_class"), PAIRS)
def test_all_options_off_equals_the_plain_cell_in_training(regularized_class, plain_class):
    reg, plain = twin_layers(regularized_class, plain_class)
    x = torch.randn(5, 4, 3, dtype=torch.float64)
    with kernels_enabled(False):
        assert torch.equal(reg(x)[0], plain(x)[0])


def test_training_takes_the_reference_path_and_eval_the_fast_path():
    cell = RegularizedLSTMCell(3, 4, recurrent_dropout=0.2)
    assert cell.fast_path is False
    cell.eval()
    assert cell.fast_path is True
    cell.fast_path = False  # the explicit switch still works
    assert cell.fast_path is False


def test_variational_mask_is_one_per_sequence_and_row():
    torch.manual_seed(1)
    layer, _ = identity_relu_rnn(50, recurrent_dropout=0.5)
    h0 = torch.ones(1, 64, 50)
    out, _ = layer(torch.zeros(4, 64, 2), h0)         # out[t] = m^(t+1), m ∈ {0, 2}
    dropped = out[0] == 0
    for t in range(4):
        assert torch.equal(out[t] == 0, dropped)       # a per-step mask would zero more units each step
        assert torch.all(out[t][~dropped] == 2.0 ** (t + 1))
    assert abs(dropped.double().mean().item() - 0.5) < 0.05
    assert not torch.equal(dropped[0], dropped[1])     # each row has its own mask
    again, _ = layer(torch.zeros(4, 64, 2), h0)
    assert not torch.equal(again[0] == 0, dropped)     # and each sequence a new one


def test_variational_gru_masks_only_the_recurrent_product():
    # With W_hh = 0 the product ignores h, so only a masked carry z ⊙ h_{t-1} could change the output.
    torch.manual_seed(0)
    plain = GRUCell(3, 5, dtype=torch.float64)
    reg = RegularizedGRUCell(3, 5, recurrent_dropout=0.9, dtype=torch.float64)
    reg.load_state_dict(plain.state_dict())
    for cell in (plain, reg):
        with torch.no_grad():
            cell.weight_hh.zero_()
    x, h = torch.randn(4, 3, dtype=torch.float64), torch.randn(4, 5, dtype=torch.float64)
    assert torch.equal(reg(x, h), plain(x, h))


def test_recur_without_begin_sequence_is_a_clear_error():
    cell = RegularizedLSTMCell(3, 4, recurrent_dropout=0.2)
    with pytest.raises(RuntimeError, match="begin_sequence"):
        cell.recur(torch.zeros(2, 16), cell.initial_state(2, cell.weight_ih))


def test_zoneout_zero_is_the_plain_cell_and_one_keeps_the_initial_state():
    reg, plain = twin_layers(RegularizedLSTMCell, LSTMCell, zoneout=0.0)
    x = torch.randn(5, 4, 3, dtype=torch.float64)
    with kernels_enabled(False):
        assert torch.equal(reg(x)[0], plain(x)[0])
    layer = torchseq.Recurrent(RegularizedLSTMCell, 3, 6, zoneout=1.0, dtype=torch.float64)
    h0, c0 = torch.randn(1, 4, 6, dtype=torch.float64), torch.randn(1, 4, 6, dtype=torch.float64)
    out, (h_n, c_n) = layer(x, (h0, c0))
    assert torch.equal(out, h0.expand(5, 4, 6)) and torch.equal(h_n, h0) and torch.equal(c_n, c0)


def test_zoneout_keeps_a_fraction_p_of_units_with_a_new_draw_each_step():
    torch.manual_seed(2)
    reg = RegularizedRNNCell(3, 400, zoneout=0.3)
    plain = RNNCell(3, 400)
    plain.load_state_dict(reg.state_dict())
    projected, h = torch.randn(64, 400), torch.randn(64, 400)  # 25 600 units: the fraction's std is 0.003
    new = plain.recur(projected, h)
    steps = [reg.recur(projected, h) for _ in range(2)]
    kept = [step == h for step in steps]
    for step, k in zip(steps, kept, strict=True):
        assert abs(k.float().mean().item() - 0.3) < 0.02
        assert torch.equal(step[~k], new[~k])          # the other units take the new value
    assert not torch.equal(kept[0], kept[1])


def test_zoneout_in_eval_is_the_expectation():
    torch.manual_seed(0)
    reg = RegularizedLSTMCell(3, 5, zoneout=0.25, zoneout_cell=0.6, dtype=torch.float64).eval()
    plain = LSTMCell(3, 5, dtype=torch.float64)
    plain.load_state_dict(reg.state_dict())
    x = torch.randn(4, 3, dtype=torch.float64)
    h, c = torch.randn(4, 5, dtype=torch.float64), torch.randn(4, 5, dtype=torch.float64)
    new_h, new_c = plain(x, (h, c))
    got_h, got_c = reg(x, (h, c))
    torch.testing.assert_close(got_h, 0.25 * h + 0.75 * new_h, atol=1e-15, rtol=0)
    torch.testing.assert_close(got_c, 0.6 * c + 0.4 * new_c, atol=1e-15, rtol=0)


def test_zoneout_cell_has_its_own_probability():
    layer = torchseq.Recurrent(RegularizedLSTMCell, 3, 6, zoneout=0.0, zoneout_cell=1.0)
    c0 = torch.randn(1, 2, 6)
    _, (h_n, c_n) = layer(torch.randn(5, 2, 3), (torch.zeros(1, 2, 6), c0))
    assert torch.equal(c_n, c0)
    assert not torch.equal(h_n, torch.zeros_like(h_n))  # h is not zoned out


def test_dropconnect_zeroes_a_fraction_p_of_weight_hh_once_per_sequence():
    torch.manual_seed(3)
    hidden, p = 100, 0.3
    cell = RegularizedRNNCell(2, hidden, bias=False, nonlinearity="relu", weight_dropout=p)
    with torch.no_grad():
        cell.weight_hh.fill_(1.0)
    eye, zeros = torch.eye(hidden), torch.zeros(hidden, hidden)
    cell.begin_sequence(hidden, eye)
    effect = cell.recur(zeros, eye)                    # row j = column j of the masked W_hh
    assert abs((effect == 0).float().mean().item() - p) < 0.02
    torch.testing.assert_close(effect[effect != 0], torch.full_like(effect[effect != 0], 1 / (1 - p)))
    assert torch.equal(cell.recur(zeros, eye), effect)  # the same mask at every step of a sequence
    cell.begin_sequence(hidden, eye)
    assert not torch.equal(cell.recur(zeros, eye), effect)
    assert isinstance(cell.weight_hh, torch.nn.Parameter) and torch.all(cell.weight_hh == 1.0)
    cell.eval()
    cell.begin_sequence(hidden, eye)
    assert torch.all(cell.recur(zeros, eye) == 1.0)    # no mask in eval


def test_dropconnect_differs_between_layer_calls_and_masks_the_gradient():
    torch.manual_seed(4)
    layer = torchseq.Recurrent(RegularizedLSTMCell, 3, 8, weight_dropout=0.5)
    x = torch.randn(6, 2, 3)
    first, second = layer(x)[0], layer(x)[0]
    assert not torch.equal(first, second)
    cell = layer.stack.cells[0]
    layer(x)[0].sum().backward()
    dropped_fraction = (cell.weight_hh.grad == 0).float().mean().item()
    assert 0.35 < dropped_fraction < 0.65               # the dropped weights get no gradient


@pytest.mark.parametrize(("regularized_class", "plain_class"), PAIRS)
def test_gradcheck_in_training_with_a_fixed_seed(regularized_class, plain_class):
    reg, _ = twin_layers(regularized_class, plain_class, hidden=3, num_layers=1, **ALL_OPTIONS)
    x = torch.randn(3, 2, 3, dtype=torch.float64, requires_grad=True)

    def run(inputs):
        torch.manual_seed(5)  # the same masks on every call
        return reg(inputs)[0]

    assert torch.autograd.gradcheck(run, (x,))


def test_gradcheck_in_eval_with_zoneout():
    reg, _ = twin_layers(RegularizedLSTMCell, LSTMCell, hidden=3, num_layers=1, **ALL_OPTIONS)
    reg.eval()
    x = torch.randn(3, 2, 3, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda inputs: reg(inputs)[0], (x,))


def test_regularized_builds_a_class_for_any_cell():
    cls = regularized(LayerNormLSTMCell)
    assert regularized(LayerNormLSTMCell) is cls and regularized(LSTMCell) is RegularizedLSTMCell
    torch.manual_seed(0)
    plain = torchseq.Recurrent(LayerNormLSTMCell, 3, 5, dtype=torch.float64).eval()
    reg = torchseq.Recurrent(cls, 3, 5, dtype=torch.float64, recurrent_dropout=0.3).eval()
    reg.load_state_dict(plain.state_dict())
    x = torch.randn(4, 2, 3, dtype=torch.float64)
    with kernels_enabled(False):
        assert torch.equal(reg(x)[0], plain(x)[0])
    reg.train()
    assert not torch.equal(reg(x)[0], plain(x)[0])
    with pytest.raises(TypeError, match="cell_class"):
        regularized(int)


@pytest.mark.parametrize(("option", "value"), [("recurrent_dropout", 1.0), ("zoneout", -0.1),
                                                ("weight_dropout", "0.5"), ("zoneout_cell", 2.0)])
def test_bad_probabilities_name_the_option(option, value):
    with pytest.raises(ValueError, match=option):
        RegularizedLSTMCell(3, 4, **{option: value})


def test_zoneout_cell_needs_a_cell_state():
    with pytest.raises(ValueError, match="zoneout_cell"):
        RegularizedGRUCell(3, 4, zoneout_cell=0.1)
