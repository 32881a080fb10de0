"""The kernels' C++ loops: built on this machine, equal to the Python loops, switchable off."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

import pytest
import torch

import torchseq
from torchseq.kernels.base import RecurrentProduct
from torchseq.kernels.native import native_loop_for, native_loops, use_native_loops

has_compiler = shutil.which(os.environ.get("CXX", "c++")) is not None  # ninja is a dependency


@pytest.mark.skipif(not has_compiler, reason="no C++ compiler: the Python loops run")
def test_the_native_loops_build_here() -> None:
    module = native_loops()
    assert (
        module is not None and hasattr(module, "lstm_forward_loop") and hasattr(module, "lstm_backward_loop")
    )


def run(
    model: torch.nn.Module, x: torch.Tensor, lengths: torch.Tensor | None, native: bool
) -> list[torch.Tensor]:
    with use_native_loops(native):
        model.zero_grad()
        x = x.detach().requires_grad_()
        y, state = model(x, lengths=lengths) if lengths is not None else model(x)
        h, c = state if isinstance(state, tuple) else (state, state)
        (y.square().sum() + h.sum() + (c * c).sum()).backward()
        with torch.inference_mode():
            inference = model(x)[0]
    return [y.detach(), h.detach(), c.detach(), x.grad, *(p.grad for p in model.parameters()), inference]


CELLS = {"lstm": torchseq.LSTM, "gru": torchseq.GRU}


@pytest.mark.skipif(not has_compiler, reason="no C++ compiler: the Python loops run")
@pytest.mark.parametrize(
    ("steps", "batch", "inputs", "hidden", "layers", "bidirectional", "variable"),
    [
        (7, 3, 4, 5, 1, False, False),
        (30, 16, 1, 64, 2, True, False),
        (9, 1, 8, 16, 1, False, False),
        (12, 17, 6, 20, 2, False, True),
    ],
)
@pytest.mark.parametrize("cell", sorted(CELLS))
def test_native_and_python_loops_agree(
    steps, batch, inputs, hidden, layers, bidirectional, variable, cell
) -> None:
    torch.manual_seed(0)
    model = CELLS[cell](inputs, hidden, layers, bidirectional=bidirectional).double()
    x = torch.randn(steps, batch, inputs, dtype=torch.float64)
    lengths = torch.randint(1, steps + 1, (batch,)) if variable else None
    for native, python in zip(run(model, x, lengths, True), run(model, x, lengths, False), strict=True):
        torch.testing.assert_close(native, python, rtol=0, atol=1e-12)


@pytest.mark.skipif(not has_compiler, reason="no C++ compiler: the Python loops run")
# The C++ GEMM: tiles of 4 rows, one row, up to 32 rows for a small operand, MKL above.
@pytest.mark.parametrize("batch", [1, 4, 5, 16, 24, 40])
@pytest.mark.parametrize("hidden", [33, 64])  # 4H = 132: whole tiles and left-over columns
@pytest.mark.parametrize("cell", sorted(CELLS))
def test_native_and_python_loops_agree_in_float32(batch: int, hidden: int, cell: str) -> None:
    torch.manual_seed(0)
    model = CELLS[cell](7, hidden)
    x = torch.randn(11, batch, 7)
    for native, python in zip(run(model, x, None, True), run(model, x, None, False), strict=True):
        torch.testing.assert_close(native, python, rtol=1e-6, atol=1e-5)  # weight gradients reach ~100


@pytest.mark.skipif(not has_compiler, reason="no C++ compiler: the Python loops run")
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("batch", [40, 41])  # split 20 / 20 and 21 / 20 rows over two threads
@pytest.mark.parametrize("cell", sorted(CELLS))
def test_loops_split_over_two_threads_equal_the_python_loops(
    batch: int, dtype: torch.dtype, cell: str
) -> None:
    torch.manual_seed(0)
    model = CELLS[cell](5, 64).to(dtype)  # B·H·4H above the one-thread bound: the loop may use two threads
    x = torch.randn(9, batch, 5, dtype=dtype)
    threads = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        pairs = zip(run(model, x, None, True), run(model, x, None, False), strict=True)
        for native, python in pairs:
            if dtype == torch.float64:
                torch.testing.assert_close(native, python, rtol=0, atol=1e-12)
            else:
                torch.testing.assert_close(native, python, rtol=1e-6, atol=1e-5)
    finally:
        torch.set_num_threads(threads)


@pytest.mark.skipif(not has_compiler or not torch.backends.mkldnn.is_available(),
                    reason="no C++ compiler, or a torch build without oneDNN")
def test_a_large_float32_weight_runs_the_native_loop_on_the_onednn_packed_operand() -> None:
    torch.manual_seed(0)
    model = torchseq.LSTM(8, 512)  # W_hh 2048 x 512: packed for oneDNN (RecurrentProduct)
    x = torch.randn(9, 3, 8)
    product = RecurrentProduct(model.weight_hh_l0, batch=3, steps=9)
    assert product.packed is not None and product.native_operand is product.packed
    assert native_loop_for(x, product) is not None
    for native, python in zip(run(model, x, None, True), run(model, x, None, False), strict=True):
        torch.testing.assert_close(native, python, rtol=1e-5, atol=1e-5)


@pytest.mark.skipif(not has_compiler, reason="no C++ compiler: the Python loops run")
def test_gradcheck_through_the_native_loops() -> None:
    torch.manual_seed(0)
    model = torchseq.LSTM(3, 4).double()
    x = torch.randn(5, 2, 3, dtype=torch.float64, requires_grad=True)
    weights = tuple(model.parameters())

    def layer(x: torch.Tensor, *parameters: torch.Tensor) -> torch.Tensor:
        output, (_, c) = torch.func.functional_call(
            model, dict(zip(dict(model.named_parameters()), parameters, strict=True)), (x,)
        )
        return output.sum() + c.sum()

    with use_native_loops(True):
        assert torch.autograd.gradcheck(layer, (x, *weights))


@pytest.mark.skipif(not has_compiler, reason="no C++ compiler: the Python loops run")
def test_the_native_loops_step_aside_for_a_projection_and_when_switched_off() -> None:
    x = torch.randn(4, 2, 3)
    small = RecurrentProduct(torch.randn(20, 5), batch=2, steps=4)
    assert native_loop_for(x, small) is not None
    assert native_loop_for(x, small, RecurrentProduct(torch.randn(5, 5), 2, 4)) is None  # projection
    with use_native_loops(False):
        assert native_loop_for(x, small, None) is None


def test_torchseq_native_0_turns_them_off() -> None:
    code = "from torchseq.kernels.native import native_loops; print(native_loops())"
    result = subprocess.run(
        [sys.executable, "-c", code],
        env={**os.environ, "TORCHSEQ_NATIVE": "0"},
        capture_output=True,
        text=True,
        check=True,
    )
    assert result.stdout.strip() == "None"


@pytest.mark.skipif(not has_compiler, reason="no C++ compiler: the Python loops run")
@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("batch_first", [True, False])
@pytest.mark.parametrize("batch", [1, 6, 40])  # one row, a 4-row tile and a rest, two threads' blocks
def test_inference_with_the_projection_inside_the_loop_equals_the_python_loop(
    bias: bool, batch_first: bool, batch: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    from torchseq.kernels.lstm import projects_in_loop

    module, calls = native_loops(), []
    inner = module.lstm_inference_loop
    monkeypatch.setattr(module, "lstm_inference_loop", lambda *args: calls.append(1) or inner(*args))

    torch.manual_seed(0)
    model = torchseq.LSTM(3, 64, num_layers=2, bias=bias, batch_first=batch_first).double()
    assert projects_in_loop(3, 64) and projects_in_loop(64, 256) and not projects_in_loop(64, 64)
    x = torch.randn(batch, 13, 3, dtype=torch.float64) if batch_first else torch.randn(13, batch, 3).double()
    h0 = torch.randn(2, batch, 64, dtype=torch.float64)
    c0 = torch.randn(2, batch, 64, dtype=torch.float64)
    threads = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        with torch.inference_mode():
            with use_native_loops(True):
                native_out, (native_h, native_c) = model(x, (h0, c0))
            with use_native_loops(False):
                python_out, (python_h, python_c) = model(x, (h0, c0))
    finally:
        torch.set_num_threads(threads)
    assert len(calls) == 1  # layer 0 (I = 3) ran it; layer 1 (I = H = 64) projects before its loop
    for native, python in ((native_out, python_out), (native_h, python_h), (native_c, python_c)):
        torch.testing.assert_close(native, python, rtol=0, atol=1e-12)


@pytest.mark.skipif(not has_compiler, reason="no C++ compiler: the Python loops run")
@pytest.mark.skipif(not torch.backends.mkldnn.is_available(), reason="no oneDNN: the weights stay unpacked")
def test_inference_with_both_weights_packed_projects_inside_the_loop(monkeypatch: pytest.MonkeyPatch) -> None:
    """Large float32 weights: W_ih and W_hh both packed for oneDNN, x_t W_ihᵀ computed a step at a time."""
    module, calls = native_loops(), []
    inner = module.lstm_inference_loop
    monkeypatch.setattr(module, "lstm_inference_loop",
                        lambda *args: calls.append(args[3].is_mkldnn) or inner(*args))
    torch.manual_seed(0)
    model = torchseq.LSTM(512, 512, num_layers=2, bidirectional=True)  # W_ih of layer 1: 2048 × 1024
    reference = torch.nn.LSTM(512, 512, num_layers=2, bidirectional=True)
    reference.load_state_dict(model.state_dict())
    x, h0, c0 = torch.randn(9, 3, 512), torch.randn(4, 3, 512), torch.randn(4, 3, 512)
    with torch.inference_mode():
        ours, (h, c) = model(x, (h0, c0))
        theirs, (h_ref, c_ref) = reference(x, (h0, c0))
    assert calls == [True] * 4  # two layers, two directions
    for mine, torchs in ((ours, theirs), (h, h_ref), (c, c_ref)):
        torch.testing.assert_close(mine, torchs, rtol=0, atol=1e-5)
    with pytest.raises(RuntimeError, match="a oneDNN-packed W_ih needs a oneDNN-packed W_hh"):
        packed = torch.ops.mkldnn._reorder_linear_weight(torch.randn(2048, 512), 3)
        unpacked = torch.randn(512, 2048)
        inner(x, h0[0], c0[0], packed, None, unpacked, torch.empty(9, 3, 512), torch.empty(3, 512))
