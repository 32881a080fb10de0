"""The cell zoo: each cell against its formula written out here, float64 gradcheck through a layer, and
minGRU/minLSTM's log-space scan against their step-by-step form."""

from __future__ import annotations

import pytest
import torch
from torch import Tensor
from torch.autograd import gradcheck

import torchseq
from torchseq.cells import (
    IndRNNCell,
    LayerNormGRUCell,
    LayerNormLSTMCell,
    MinGRUCell,
    MinLSTMCell,
    PeepholeLSTMCell,
)
from torchseq.kernels import find_kernel, kernels_enabled
from torchseq.recurrent import Unroll

F64 = torch.float64


def standardise(v: Tensor, eps: float = 1e-5) -> Tensor:
    return (v - v.mean(-1, keepdim=True)) / torch.sqrt(v.var(-1, unbiased=False, keepdim=True) + eps)


# -- each cell's formula, written here from its paper ------------------------------------------------------
def layernorm_lstm_step(cell: LayerNormLSTMCell, x: Tensor, h: Tensor, c: Tensor) -> tuple[Tensor, Tensor]:
    H = cell.hidden_size
    a = (standardise(x @ cell.weight_ih.T) * cell.norm_input.weight + cell.bias_ih
         + standardise(h @ cell.weight_hh.T) * cell.norm_hidden.weight + cell.bias_hh)
    i, f, g, o = (a[:, k * H:(k + 1) * H] for k in range(4))
    c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
    return torch.sigmoid(o) * torch.tanh(standardise(c) * cell.norm_cell.weight + cell.norm_cell.bias), c


def layernorm_gru_step(cell: LayerNormGRUCell, x: Tensor, h: Tensor) -> Tensor:
    H = cell.hidden_size
    u = standardise(x @ cell.weight_ih.T) * cell.norm_input.weight + cell.bias_ih
    v = standardise(h @ cell.weight_hh.T) * cell.norm_hidden.weight + cell.bias_hh
    r = torch.sigmoid(u[:, :H] + v[:, :H])
    z = torch.sigmoid(u[:, H:2 * H] + v[:, H:2 * H])
    n = torch.tanh(u[:, 2 * H:] + r * v[:, 2 * H:])
    return (1 - z) * n + z * h


def peephole_step(cell: PeepholeLSTMCell, x: Tensor, h: Tensor, c: Tensor) -> tuple[Tensor, Tensor]:
    H = cell.hidden_size
    a = x @ cell.weight_ih.T + cell.bias_ih + h @ cell.weight_hh.T + cell.bias_hh
    i = torch.sigmoid(a[:, :H] + cell.weight_peephole[0] * c)
    f = torch.sigmoid(a[:, H:2 * H] + cell.weight_peephole[1] * c)
    c_new = f * c + i * torch.tanh(a[:, 2 * H:3 * H])
    o = torch.sigmoid(a[:, 3 * H:] + cell.weight_peephole[2] * c_new)
    return o * torch.tanh(c_new), c_new


def indrnn_step(cell: IndRNNCell, x: Tensor, h: Tensor) -> Tensor:
    return torch.relu(x @ cell.weight_ih.T + cell.bias_ih + cell.weight_hh * h + cell.bias_hh)


def positive(v: Tensor) -> Tensor:  # the papers' g
    return torch.where(v >= 0, v + 0.5, torch.sigmoid(v))


def min_gru_step(cell: MinGRUCell, x: Tensor, h: Tensor) -> Tensor:
    H = cell.hidden_size
    k = x @ cell.weight_ih.T + cell.bias_ih
    z = torch.sigmoid(k[:, :H])
    return (1 - z) * h + z * positive(k[:, H:])


def min_lstm_step(cell: MinLSTMCell, x: Tensor, h: Tensor) -> Tensor:
    H = cell.hidden_size
    k = x @ cell.weight_ih.T + cell.bias_ih
    f, i = torch.sigmoid(k[:, :H]), torch.sigmoid(k[:, H:2 * H])
    return f / (f + i) * h + i / (f + i) * positive(k[:, 2 * H:])


ZOO = [
    (LayerNormLSTMCell, layernorm_lstm_step),
    (LayerNormGRUCell, layernorm_gru_step),
    (PeepholeLSTMCell, peephole_step),
    (IndRNNCell, indrnn_step),
    (MinGRUCell, min_gru_step),
    (MinLSTMCell, min_lstm_step),
]
IDS = [cls.__name__ for cls, _ in ZOO]


def random_state(cell, batch: int) -> tuple[Tensor, ...]:
    state = cell.initial_state(batch, cell.weight_ih)
    return tuple(torch.randn_like(s) for s in (state if isinstance(state, tuple) else (state,)))


def perturb(cell) -> None:
    """Move every parameter off its initial value (LayerNorm gains start at exactly 1)."""
    with torch.no_grad():
        for parameter in cell.parameters():
            parameter.add_(0.3 * torch.randn_like(parameter))


@pytest.mark.parametrize(("cell_class", "written_out"), ZOO, ids=IDS)
def test_cell_equals_its_formula_written_out(cell_class, written_out) -> None:
    torch.manual_seed(0)
    cell = cell_class(3, 5, dtype=F64)
    perturb(cell)
    x, state = torch.randn(4, 3, dtype=F64), random_state(cell, 4)
    ours = cell(x, state if len(state) > 1 else state[0])
    theirs = written_out(cell, x, *state)
    torch.testing.assert_close(ours, theirs, rtol=0, atol=1e-12)


@pytest.mark.parametrize(("cell_class", "written_out"), ZOO, ids=IDS)
def test_layer_over_a_sequence_equals_a_loop_of_the_formula(cell_class, written_out) -> None:
    """Through the fast path (the traced graphs, or the scan while training), with lengths."""
    torch.manual_seed(1)
    cell = cell_class(3, 4, dtype=F64)
    perturb(cell)
    x, lengths = torch.randn(6, 2, 3, dtype=F64), torch.tensor([6, 4])
    state = random_state(cell, 2)
    assert find_kernel(cell, x) is not None
    output, (final,) = Unroll(cell)(x, [state if len(state) > 1 else state[0]], lengths)
    expected_outputs, expected_final = [], []
    for b in range(2):
        s = tuple(part[b : b + 1] for part in state)
        for t in range(int(lengths[b])):
            s = written_out(cell, x[t, b : b + 1], *s)
            s = s if isinstance(s, tuple) else (s,)
            expected_outputs.append(s[0])
        expected_final.append(s)
    got = [output[t, b : b + 1] for b in range(2) for t in range(int(lengths[b]))]
    torch.testing.assert_close(torch.cat(got), torch.cat(expected_outputs), rtol=0, atol=1e-10)
    final = final if isinstance(final, tuple) else (final,)
    for k, part in enumerate(final):
        torch.testing.assert_close(part, torch.cat([s[k] for s in expected_final]), rtol=0, atol=1e-10)
    assert output[4:, 1].abs().max() == 0  # past its end a sequence emits zeros


@pytest.mark.parametrize(("cell_class", "written_out"), ZOO, ids=IDS)
def test_gradcheck_through_a_bidirectional_layer(cell_class, written_out) -> None:
    torch.manual_seed(2)
    layer = torchseq.Recurrent(cell_class, 2, 3, bidirectional=True, dtype=F64)
    for cell in layer.cells:
        perturb(cell)
    x = torch.randn(4, 2, 2, dtype=F64, requires_grad=True)
    parameters = [p for p in layer.parameters()]

    def run(x, *parameters):
        return layer(x, lengths=torch.tensor([4, 3]))[0]

    assert gradcheck(run, (x, *parameters), eps=1e-6, atol=1e-7, fast_mode=True)


@pytest.mark.parametrize("cell_class", [MinGRUCell, MinLSTMCell])
def test_parallel_scan_trains_and_steps_infer_equally_in_float32(cell_class) -> None:
    torch.manual_seed(3)
    cell = cell_class(8, 16)
    x, h0 = torch.randn(200, 4, 8), torch.randn(4, 16)
    unroll = Unroll(cell)
    cell.train()
    assert find_kernel(cell, x).func.__name__ == "run_parallel_scan"
    scanned, _ = unroll(x, [h0])
    cell.eval()
    with kernels_enabled(False), torch.no_grad():
        stepped, _ = unroll(x, [h0])
    torch.testing.assert_close(scanned, stepped, rtol=0, atol=1e-5)


def test_scan_survives_gates_near_zero_and_one() -> None:
    """log-space: a_t products underflow in linear space after a few hundred steps of z ≈ 1."""
    cell = MinGRUCell(1, 2, dtype=F64)
    with torch.no_grad():
        cell.weight_ih.zero_()
        cell.bias_ih.copy_(torch.tensor([30.0, -30.0, 1.0, 2.0], dtype=F64))
    pre = cell.input_projection(torch.zeros(500, 1, 1, dtype=F64))
    h = cell.parallel_scan(pre, torch.zeros(1, 2, dtype=F64))
    z = torch.sigmoid(torch.tensor([30.0, -30.0], dtype=F64))
    h_loop = torch.zeros(2, dtype=F64)
    for _ in range(500):
        h_loop = (1 - z) * h_loop + z * torch.tensor([1.5, 2.5], dtype=F64)  # g(1), g(2)
    assert torch.isfinite(h).all()
    torch.testing.assert_close(h[-1, 0], h_loop, rtol=1e-12, atol=0)


@pytest.mark.parametrize(("name", "cell_class", "message"), [
    ("nonlinearity", lambda: IndRNNCell(2, 3, nonlinearity="gelu"), "nonlinearity: expected one of"),
    ("init", lambda: MinGRUCell(2, 3, init="he"), "init: expected one of"),
])
def test_bad_options_are_named(name, cell_class, message) -> None:
    with pytest.raises(ValueError, match=message):
        cell_class()
