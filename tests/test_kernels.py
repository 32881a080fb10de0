"""The BPTT kernels (torchseq.kernels) against autograd: gradcheck, and equality with the cells' formulas.

The reference is ``Unroll.step_by_step``: ``cell.recur`` once per step, differentiated by autograd
(``kernels_enabled(False)``). Every test also checks that the kernel really ran, so that an equality
can never pass by both sides falling back to the same reference.
"""

from __future__ import annotations

import pytest
import torch
from torch import Tensor
from torch.autograd import gradcheck, gradgradcheck

import torchseq
from torchseq.cells import GRUCell, LSTMCell, RNNCell
from torchseq.kernels import base, find_kernel, kernels_are_enabled, kernels_enabled, workspace
from torchseq.kernels.gru import GRURecurrence, GRUResetBeforeRecurrence
from torchseq.kernels.lstm import LSTMRecurrence, kernel_order, run_lstm
from torchseq.kernels.rnn import RNNRecurrence

F64 = {"dtype": torch.float64}


@pytest.fixture(params=["kept", "fresh"])
def buffers(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Run a test with the kernels' buffers kept between calls (every shape here is small enough) and
    again made fresh for each call (what larger shapes get): both paths must give the same results."""
    if request.param == "fresh":
        monkeypatch.setattr(workspace, "SMALL_STEP", -1)
    return request.param


def tensor(*shape: int, grad: bool = True) -> Tensor:
    return torch.randn(*shape, **F64).requires_grad_(grad)


def graph_nodes(output: Tensor) -> set[str]:
    """Names of every autograd node behind ``output``."""
    seen, pending = set(), [output.grad_fn]
    while pending:
        node = pending.pop()
        if node is None or node.name() in seen:
            continue
        seen.add(node.name())
        pending.extend(next_node for next_node, _ in node.next_functions)
    return seen


# -- gradcheck of each autograd.Function, float64, tiny shapes --------------------------------------
T, B, IN, H, P = 4, 3, 2, 3, 2

FUNCTIONS = {
    "lstm": lambda: (
        LSTMRecurrence,
        (tensor(T, B, IN), tensor(B, H), tensor(B, H), tensor(4 * H, IN), tensor(4 * H), tensor(4 * H, H),
         None),
    ),
    "lstm_no_bias": lambda: (
        LSTMRecurrence,
        (tensor(T, B, IN), tensor(B, H), tensor(B, H), tensor(4 * H, IN), None, tensor(4 * H, H), None),
    ),
    "lstm_proj": lambda: (
        LSTMRecurrence,
        (tensor(T, B, IN), tensor(B, P), tensor(B, H), tensor(4 * H, IN), tensor(4 * H), tensor(4 * H, P),
         tensor(P, H)),
    ),
    "gru": lambda: (
        GRURecurrence,
        (tensor(T, B, IN), tensor(B, H), tensor(3 * H, IN), tensor(3 * H), tensor(3 * H, H), tensor(H)),
    ),
    "gru_no_bias": lambda: (
        GRURecurrence, (tensor(T, B, IN), tensor(B, H), tensor(3 * H, IN), None, tensor(3 * H, H), None)
    ),
    "gru_reset_before": lambda: (
        GRUResetBeforeRecurrence,
        (tensor(T, B, IN), tensor(B, H), tensor(3 * H, IN), tensor(3 * H), tensor(3 * H, H)),
    ),
    "rnn_tanh": lambda: (
        RNNRecurrence, (tensor(T, B, IN), tensor(B, H), tensor(H, IN), tensor(H), tensor(H, H), "tanh")
    ),
    "rnn_relu": lambda: (
        RNNRecurrence, (tensor(T, B, IN), tensor(B, H), tensor(H, IN), tensor(H), tensor(H, H), "relu")
    ),
    "rnn_no_bias": lambda: (
        RNNRecurrence, (tensor(T, B, IN), tensor(B, H), tensor(H, IN), None, tensor(H, H), "tanh")
    ),
}


@pytest.mark.parametrize("name", FUNCTIONS)
def test_gradcheck(name: str, buffers: str) -> None:
    torch.manual_seed(0)
    function, inputs = FUNCTIONS[name]()
    assert gradcheck(function.apply, inputs)


@pytest.mark.parametrize("name", FUNCTIONS)
def test_results_and_gradients_are_ordinary_tensors(name: str) -> None:
    """The loops run in inference mode; nothing they hand back may be an inference tensor, so outputs
    feed further autograd ops and gradients accumulate over several backward passes."""
    torch.manual_seed(2)
    function, inputs = FUNCTIONS[name]()
    leaves = [x for x in inputs if isinstance(x, Tensor)]

    def backward_once() -> None:
        outputs = function.apply(*inputs)
        outputs = outputs if isinstance(outputs, tuple) else (outputs,)
        assert not any(output.is_inference() for output in outputs)
        sum((output * output).sum() for output in outputs).backward()

    backward_once()
    once = [x.grad.clone() for x in leaves]
    backward_once()
    for x, grad in zip(leaves, once, strict=True):
        assert not x.grad.is_inference()
        torch.testing.assert_close(x.grad, 2 * grad)  # accumulated in place, not overwritten


#: Positions of the weights among each function's inputs.
WEIGHTS = {"lstm": (3, 4, 5), "gru": (2, 3, 4, 5), "rnn_tanh": (2, 3, 4)}


@pytest.mark.parametrize("name", WEIGHTS)
def test_gradcheck_with_frozen_weights(name: str) -> None:
    """Inputs that need no gradient take the needs_input_grad branches (returning None)."""
    torch.manual_seed(1)
    function, inputs = FUNCTIONS[name]()
    inputs = tuple(x.detach() if index in WEIGHTS[name] else x for index, x in enumerate(inputs))
    assert gradcheck(function.apply, inputs)


@pytest.mark.parametrize("name", FUNCTIONS)
def test_batched_gradients(name: str) -> None:
    """gradcheck's batched check runs the backward under vmap (as jacrev/hessian do): it must agree."""
    torch.manual_seed(0)
    function, inputs = FUNCTIONS[name]()
    assert gradcheck(function.apply, inputs, check_batched_grad=True)


@pytest.mark.parametrize("name", FUNCTIONS)
def test_gradgradcheck(name: str) -> None:
    """Second derivatives of every Function equal finite differences of its first derivatives."""
    torch.manual_seed(0)
    function, inputs = FUNCTIONS[name]()
    assert gradgradcheck(function.apply, inputs)


@pytest.mark.parametrize("name", ["lstm_proj", "gru", "gru_reset_before", "rnn_tanh"])
def test_double_backward_equals_the_step_by_step_reference(name: str) -> None:
    """The gradient of a gradient: through the kernel (create_graph=True) and through the cells'
    formulas under autograd, on the same layer and data."""
    torch.manual_seed(2)
    layer = KINDS[name](num_layers=2, bidirectional=True)
    x = tensor(5, 2, 4)

    def second_order() -> list[Tensor]:
        output, _ = layer(x)
        (dx,) = torch.autograd.grad(output.sin().sum(), x, create_graph=True)
        return list(torch.autograd.grad(dx.square().sum(), [x, *layer.parameters()]))

    ours = second_order()
    with kernels_enabled(False):
        reference = second_order()
    for got, expected in zip(ours, reference, strict=True):
        assert (got - expected).abs().max().item() <= 1e-10
    assert max(g.abs().max().item() for g in ours) > 1e-3  # not the constant a once-only backward gives


# -- the layers: kernel vs the cells' formulas under autograd, outputs and every gradient -------------
KINDS = {
    "lstm": lambda **o: torchseq.LSTM(4, 5, **o, **F64),
    "lstm_proj": lambda **o: torchseq.LSTM(4, 5, proj_size=3, **o, **F64),
    "gru": lambda **o: torchseq.GRU(4, 5, **o, **F64),
    "gru_reset_before": lambda **o: torchseq.GRU(4, 5, reset_after=False, **o, **F64),
    "rnn_tanh": lambda **o: torchseq.RNN(4, 5, **o, **F64),
    "rnn_relu": lambda **o: torchseq.RNN(4, 5, nonlinearity="relu", **o, **F64),
}
KERNEL_NODES = {
    "lstm": "LSTMRecurrenceBackward", "lstm_proj": "LSTMRecurrenceBackward", "gru": "GRURecurrenceBackward",
    "gru_reset_before": "GRUResetBeforeRecurrenceBackward", "rnn_tanh": "RNNRecurrenceBackward",
    "rnn_relu": "RNNRecurrenceBackward",
}
#: (num_layers, bidirectional, lengths, bias): the options that change what the kernel must do.
OPTIONS = [
    (1, False, False, "both"),
    (2, True, True, "both"),
    (1, True, False, "none"),
    (1, False, True, "input_only"),
]


def forward_and_gradients(layer: torchseq.RNN, x: Tensor, hx, lengths: Tensor | None) -> list[Tensor]:
    output, final = layer(x, hx, lengths=lengths)
    states = final if isinstance(final, tuple) else (final,)
    weights = torch.Generator().manual_seed(7)
    loss = sum((t * torch.randn(t.shape, generator=weights, **F64)).sum() for t in (output, *states))
    given = () if hx is None else hx if isinstance(hx, tuple) else (hx,)
    inputs = [x, *given, *layer.parameters()]
    return [output, *states, *torch.autograd.grad(loss, inputs)]


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize(("layers", "bidirectional", "use_lengths", "bias"), OPTIONS)
def test_kernel_equals_the_cell_formulas(kind: str, layers: int, bidirectional: bool, use_lengths: bool,
                                         bias: str, buffers: str) -> None:
    torch.manual_seed(3)
    layer = KINDS[kind](num_layers=layers, bidirectional=bidirectional, bias=bias != "none",
                        recurrent_bias=bias == "both")
    steps, batch = 6, 3
    x = tensor(steps, batch, 4)
    leading = (layers * (2 if bidirectional else 1), batch)
    hx = tuple(tensor(*leading, size) for size in layer.state_sizes())
    hx = hx if len(hx) > 1 else hx[0]
    lengths = torch.tensor([6, 2, 4]) if use_lengths else None

    with_kernel = forward_and_gradients(layer, x, hx, lengths)
    assert KERNEL_NODES[kind] in graph_nodes(with_kernel[0])
    with kernels_enabled(False):
        reference = forward_and_gradients(layer, x, hx, lengths)
    assert KERNEL_NODES[kind] not in graph_nodes(reference[0])
    assert len(with_kernel) == len(reference)
    for ours, theirs in zip(with_kernel, reference, strict=True):
        assert (ours - theirs).abs().max().item() <= 1e-10


@pytest.mark.parametrize("kind", KINDS)
def test_inference_path_equals_the_cell_formulas(kind: str, buffers: str) -> None:
    """Under no_grad the kernels run their loop directly, keeping only one step of gates."""
    torch.manual_seed(4)
    layer = KINDS[kind](bidirectional=True)
    x = tensor(7, 2, 4, grad=False)
    with torch.no_grad():
        output, final = layer(x, lengths=torch.tensor([7, 3]))
        with kernels_enabled(False):
            expected_output, expected_final = layer(x, lengths=torch.tensor([7, 3]))
    torch.testing.assert_close(output, expected_output, rtol=0, atol=1e-12)
    torch.testing.assert_close(final, expected_final, rtol=0, atol=1e-12)


def test_go_backwards_and_unbatched_input_run_through_the_kernel() -> None:
    torch.manual_seed(5)
    layer = torchseq.GRU(4, 5, go_backwards=True, **F64)
    x = tensor(6, 4)
    output, h_n = layer(x)
    assert "GRURecurrenceBackward" in graph_nodes(output)
    with kernels_enabled(False):
        expected_output, expected_h_n = layer(x)
    torch.testing.assert_close(output, expected_output, rtol=0, atol=1e-12)
    torch.testing.assert_close(h_n, expected_h_n, rtol=0, atol=1e-12)


@pytest.mark.parametrize("kind", ["lstm", "gru", "rnn_tanh"])
def test_float32_agrees_with_the_cell_formulas(kind: str) -> None:
    torch.manual_seed(6)
    layer = KINDS[kind]().float()
    x = torch.randn(20, 4, 4)
    output, _ = layer(x)
    output.square().mean().backward()
    gradients = [p.grad.clone() for p in layer.parameters()]
    layer.zero_grad()
    with kernels_enabled(False):
        expected, _ = layer(x)
        expected.square().mean().backward()
    torch.testing.assert_close(output, expected, rtol=1e-5, atol=1e-6)
    for ours, theirs in zip(gradients, [p.grad for p in layer.parameters()], strict=True):
        torch.testing.assert_close(ours, theirs, rtol=1e-4, atol=1e-6)


def test_kernel_order_rolls_torch_gate_blocks_to_o_i_f_g() -> None:
    """The forward loop's gate order: torch's blocks i, f, g, o become o, i, f, g (rows or last dim)."""
    blocks = torch.arange(4).repeat_interleave(2)                                  # i i f f g g o o
    assert kernel_order(blocks).tolist() == [3, 3, 0, 0, 1, 1, 2, 2]
    rows = blocks.unsqueeze(1).expand(8, 3)
    assert torch.equal(kernel_order(rows), kernel_order(rows.t().contiguous(), dim=-1).t())
    assert kernel_order(None) is None


# -- dispatch ------------------------------------------------------------------------------------------
CELLS = [LSTMCell(3, 4), GRUCell(3, 4), GRUCell(3, 4, reset_after=False), RNNCell(3, 4)]


@pytest.mark.parametrize("cell", CELLS, ids=lambda cell: type(cell).__name__)
def test_find_kernel_covers_every_cell_in_float32_and_float64(cell) -> None:
    for dtype in (torch.float32, torch.float64):
        assert find_kernel(cell.to(dtype), torch.zeros(2, 1, 3, dtype=dtype)) is not None


def test_find_kernel_falls_back_where_it_must() -> None:
    class PeepholeLSTMCell(LSTMCell):  # other formulas: the kernel would compute the wrong ones
        pass

    cell = LSTMCell(3, 4)
    subclass = PeepholeLSTMCell(3, 4)
    assert find_kernel(subclass, torch.zeros(2, 1, 3)).func is not run_lstm  # the traced generic path
    subclass.fast_path = False
    assert find_kernel(subclass, torch.zeros(2, 1, 3)) is None
    assert find_kernel(cell.to(torch.bfloat16), torch.zeros(2, 1, 3, dtype=torch.bfloat16)) is None
    with kernels_enabled(False):
        assert not kernels_are_enabled()
        assert find_kernel(cell.float(), torch.zeros(2, 1, 3)) is None
    assert kernels_are_enabled()


def test_kernels_enabled_restores_the_setting_after_an_error() -> None:
    with pytest.raises(KeyError), kernels_enabled(False):
        raise KeyError("boom")
    assert kernels_are_enabled()


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("kind", ["lstm", "gru", "rnn_tanh"])
def test_kernel_on_cuda_equals_the_cell_formulas(kind: str) -> None:
    torch.manual_seed(8)
    layer = KINDS[kind](num_layers=2, bidirectional=True).cuda()
    x = tensor(6, 3, 4).cuda()
    lengths = torch.tensor([6, 2, 4])
    with_kernel = forward_and_gradients(layer, x, None, lengths)
    assert KERNEL_NODES[kind] in graph_nodes(with_kernel[0])
    with kernels_enabled(False):
        reference = forward_and_gradients(layer, x, None, lengths)
    for ours, theirs in zip(with_kernel, reference, strict=True):
        assert (ours - theirs).abs().max().item() <= 1e-10


# -- the loop levers: wide tanh, packed recurrent GEMM, one thread for small steps -----------------
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_wide_tanh_is_tanh(dtype: torch.dtype, monkeypatch: pytest.MonkeyPatch) -> None:
    """2σ(2x) − 1, which wide steps use, is tanh to rounding, saturation included."""
    monkeypatch.setattr(base, "WIDE_TANH", 0)
    saturated = torch.tensor([-torch.inf, torch.inf], dtype=dtype)
    x = torch.cat([torch.linspace(-30, 30, 10_001, dtype=dtype), saturated])
    expected = torch.tanh(x)
    tolerance = 4e-7 if dtype == torch.float32 else 1e-15
    tanh_, tanh_out = base.tanh_in_place(x.numel()), base.tanh_out(x.numel())
    assert tanh_ is not torch.Tensor.tanh_ and tanh_out is not torch.tanh                 # the wide path
    assert (tanh_(x.clone()) - expected).abs().max().item() <= tolerance
    assert (tanh_out(x, out=torch.empty_like(x)) - expected).abs().max().item() <= tolerance
    assert tanh_(x.clone())[-2:].tolist() == [-1.0, 1.0]


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("lever", ["wide_tanh", "one_thread"])
def test_loop_levers_keep_the_kernel_equal_to_the_cell_formulas(
    kind: str, lever: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each lever forced on for these small shapes: float64 results and gradients stay within 1e-10,
    and the thread count is back to what it was after the call."""
    if lever == "wide_tanh":
        monkeypatch.setattr(base, "WIDE_TANH", 0)
    else:
        monkeypatch.setattr(base, "SINGLE_THREAD_MACS", 1 << 40)
    threads = torch.get_num_threads()
    torch.manual_seed(8)
    layer = KINDS[kind](num_layers=2, bidirectional=True)
    x, lengths = tensor(6, 3, 4), torch.tensor([6, 2, 4])
    with_kernel = forward_and_gradients(layer, x, None, lengths)
    assert torch.get_num_threads() == threads
    with kernels_enabled(False):
        reference = forward_and_gradients(layer, x, None, lengths)
    for ours, theirs in zip(with_kernel, reference, strict=True):
        assert (ours - theirs).abs().max().item() <= 1e-10


@pytest.mark.skipif(not torch.backends.mkldnn.is_available(), reason="needs oneDNN (mkldnn)")
@pytest.mark.parametrize("kind", KINDS)
def test_packed_recurrent_gemm_equals_the_cell_formulas_in_float32(
    kind: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """oneDNN's packed GEMM, forced on for a small float32 layer (it is taken from H = 512), forward and
    backward: results and gradients within float32 rounding of the step-by-step formulas."""
    monkeypatch.setattr(base, "PACKED_ELEMENTS", 0)
    monkeypatch.setattr(base, "PACKED_STEPS", 0)
    packed = []
    original_init = base.RecurrentProduct.__init__

    def spy(self, weight, batch, steps):
        original_init(self, weight, batch, steps)
        packed.append(self.packed is not None)

    monkeypatch.setattr(base.RecurrentProduct, "__init__", spy)
    torch.manual_seed(9)
    layer = KINDS[kind](bidirectional=True).float()
    x = torch.randn(12, 3, 4, requires_grad=True)
    output, _ = layer(x)
    output.square().mean().backward()
    gradients = [x.grad.clone(), *(p.grad.clone() for p in layer.parameters())]
    assert packed and all(packed)
    x.grad = None
    layer.zero_grad()
    with kernels_enabled(False):
        expected, _ = layer(x)
        expected.square().mean().backward()
    torch.testing.assert_close(output, expected, rtol=1e-5, atol=1e-6)
    for ours, theirs in zip(gradients, [x.grad, *(p.grad for p in layer.parameters())], strict=True):
        torch.testing.assert_close(ours, theirs, rtol=1e-4, atol=1e-6)


def test_loop_threads_restores_the_thread_count_after_an_error(monkeypatch: pytest.MonkeyPatch) -> None:
    threads = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        with pytest.raises(RuntimeError, match="inside"), base.loop_threads(step_macs=1):
            assert torch.get_num_threads() == 1
            raise RuntimeError("inside")
        assert torch.get_num_threads() == 2
        with base.loop_threads(step_macs=base.SINGLE_THREAD_MACS + 1):
            assert torch.get_num_threads() == 2                                     # a large step keeps both
    finally:
        torch.set_num_threads(threads)
