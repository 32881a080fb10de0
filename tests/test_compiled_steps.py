"""The compiled generic fast path (torchseq.kernels.compiled_steps): a user cell's step compiled by
AOTInductor and run from C++ equals the step-by-step reference, is kept on disk, and falls back to the
TorchScript loops, with a warning, where compiling fails.

Each compile takes about ten seconds, so the tests share a few small configurations and one on-disk
cache for all xdist workers."""

from __future__ import annotations

import os

import pytest
import torch
from torch import Tensor

import torchseq
from torchseq import cells
from torchseq.cells import LayerNormLSTMCell
from torchseq.kernels import compiled_steps, generic, kernels_enabled

# The compiled steps check their inputs' sizes and strides against what they were compiled for (a
# mismatch otherwise reads memory wrongly and silently).
os.environ["AOTI_RUNTIME_CHECK_INPUTS"] = "1"

pytestmark = pytest.mark.skipif(
    not compiled_steps.available(), reason="needs torchseq's native module and torch's AOTInductor loader"
)


class CompiledLayerNormLSTMCell(LayerNormLSTMCell):
    compiled_step = True


def compiled(cell_class: type) -> type:
    return type(f"Compiled{cell_class.__name__}", (cell_class,), {"compiled_step": True})


ZOO = [compiled(cell) for cell in (cells.LayerNormGRUCell, cells.PeepholeLSTMCell, cells.IndRNNCell,
                                   cells.MinGRUCell, cells.MinLSTMCell)]


@pytest.fixture(autouse=True)
def shared_cache(tmp_path_factory, monkeypatch) -> None:
    """One package cache for the session's workers (compiles are written atomically)."""
    monkeypatch.setenv("TORCHSEQ_CACHE_DIR", str(tmp_path_factory.getbasetemp().parent / "torchseq-cache"))


def perturbed_layer(cell_class, dtype: torch.dtype, **options) -> torchseq.Recurrent:
    torch.manual_seed(0)
    layer = torchseq.Recurrent(cell_class, 3, 5, dtype=dtype, **options)
    with torch.no_grad():
        for parameter in layer.parameters():  # off the init's ones and zeros, so every term matters
            parameter.add_(0.2 * torch.randn_like(parameter))
    return layer


def outputs_and_gradients(layer, x: Tensor, lengths: Tensor | None, enabled: bool) -> list[Tensor]:
    with kernels_enabled(enabled):
        output, state = layer(x, lengths=lengths)
    parts = [output, *state] if isinstance(state, tuple) else [output, state]
    weights = [torch.linspace(-1, 1, p.numel(), dtype=p.dtype).view_as(p) for p in parts]
    loss = sum((p * w).sum() for p, w in zip(parts, weights, strict=True))
    return [*parts, *torch.autograd.grad(loss, [x, *layer.parameters()])]


@pytest.mark.parametrize(("dtype", "tolerance"), [(torch.float64, 1e-10), (torch.float32, 1e-5)])
@pytest.mark.parametrize("bidirectional", [False, True])
def test_layernorm_lstm_equals_the_reference(dtype, tolerance, bidirectional) -> None:
    layer = perturbed_layer(CompiledLayerNormLSTMCell, dtype, bidirectional=bidirectional, batch_first=True)
    x = torch.randn(3, 4, 3, dtype=dtype, requires_grad=True)
    lengths = torch.tensor([4, 2, 3])
    compiled = outputs_and_gradients(layer, x, lengths, True)
    reference = outputs_and_gradients(layer, x, lengths, False)
    for ours, theirs in zip(compiled, reference, strict=True):
        torch.testing.assert_close(ours, theirs, rtol=0, atol=tolerance)
    cell = next(module for module in layer.modules() if isinstance(module, CompiledLayerNormLSTMCell))
    assert generic.prepare(cell, x.transpose(0, 1)).compiled is not None  # it did run compiled


@pytest.mark.parametrize("cell_class", ZOO, ids=lambda cell: cell.__name__)
def test_zoo_cells_equal_the_reference(cell_class) -> None:
    """The LayerNorm GRU's saved gates are strided slices: its backward step must be compiled for them."""
    layer = perturbed_layer(cell_class, torch.float64)
    layer.train(not issubclass(cell_class, (cells.MinGRUCell, cells.MinLSTMCell)))  # these scan in training
    x = torch.randn(4, 3, 3, dtype=torch.float64, requires_grad=True)
    compiled_run = outputs_and_gradients(layer, x, None, True)
    reference = outputs_and_gradients(layer, x, None, False)
    for ours, theirs in zip(compiled_run, reference, strict=True):
        torch.testing.assert_close(ours, theirs, rtol=0, atol=1e-10)
    cell = next(module for module in layer.modules() if isinstance(module, cell_class))
    assert generic.prepare(cell, x).compiled is not None


def test_without_gradients_the_compiled_forward_runs() -> None:
    layer = perturbed_layer(CompiledLayerNormLSTMCell, torch.float64, batch_first=True)
    x = torch.randn(3, 4, 3, dtype=torch.float64)
    with torch.inference_mode():
        fast = layer(x)[0]
        with kernels_enabled(False):
            reference = layer(x)[0]
    torch.testing.assert_close(fast, reference, rtol=0, atol=1e-10)
    cell = next(module for module in layer.modules() if isinstance(module, CompiledLayerNormLSTMCell))
    with torch.inference_mode():  # the first call above was in inference mode too, and compiled
        assert generic.prepare(cell, x.transpose(0, 1)).compiled is not None


def test_packages_are_kept_on_disk_and_loaded_by_a_later_process(monkeypatch) -> None:
    layer = perturbed_layer(CompiledLayerNormLSTMCell, torch.float64, batch_first=True)
    x = torch.randn(3, 4, 3, dtype=torch.float64)
    layer(x)
    packages = {path: path.stat().st_mtime_ns for path in compiled_steps.cache_dir().glob("*.pt2")}
    assert len(packages) >= 2  # a forward and a backward package
    monkeypatch.setattr(generic, "_compiled", {})  # what a new process starts with
    again = outputs_and_gradients(layer, x.requires_grad_(), None, True)
    assert {path: path.stat().st_mtime_ns for path in compiled_steps.cache_dir().glob("*.pt2")} == packages
    reference = outputs_and_gradients(layer, x, None, False)
    for ours, theirs in zip(again, reference, strict=True):
        torch.testing.assert_close(ours, theirs, rtol=0, atol=1e-10)


def test_a_failed_compile_warns_and_the_torchscript_loops_run(monkeypatch) -> None:
    def failing(*args, **kwargs):
        raise RuntimeError("no C++ compiler")

    monkeypatch.setattr(generic, "_compiled", {})
    monkeypatch.setattr(generic, "CompiledSteps", failing)
    layer = perturbed_layer(CompiledLayerNormLSTMCell, torch.float64)
    x = torch.randn(3, 2, 3, dtype=torch.float64, requires_grad=True)
    with pytest.warns(UserWarning, match="compiling its step failed.*no C\\+\\+ compiler"):
        fast = outputs_and_gradients(layer, x, None, True)
    reference = outputs_and_gradients(layer, x, None, False)
    for ours, theirs in zip(fast, reference, strict=True):
        torch.testing.assert_close(ours, theirs, rtol=0, atol=1e-10)


def test_the_switch_is_per_cell_or_for_every_cell(monkeypatch) -> None:
    monkeypatch.delenv(compiled_steps.ENVIRONMENT_SWITCH, raising=False)
    assert not compiled_steps.requested(LayerNormLSTMCell(2, 3))
    assert compiled_steps.requested(CompiledLayerNormLSTMCell(2, 3))
    monkeypatch.setenv(compiled_steps.ENVIRONMENT_SWITCH, "1")
    assert compiled_steps.requested(LayerNormLSTMCell(2, 3))


def test_weight_gradients_are_factored_for_one_gemm_after_the_loop() -> None:
    cell = LayerNormLSTMCell(3, 5)
    graphs = generic.prepare(cell, torch.randn(4, 2, 3))
    _, kinds = compiled_steps.factor_weight_gradients(graphs.backward_graph, graphs.state_count)
    factored = {name for name, kind in zip(graphs.parameter_names, kinds, strict=True) if kind is not None}
    assert "weight_hh" in factored
    assert not any(name.startswith("norm_") for name in factored)  # elementwise: summed per step
