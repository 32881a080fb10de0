"""Kept buffers (torchseq.kernels.workspace): reused per shape and thread, bounded, never leaking a result.

A call that runs in kept buffers must copy out everything it hands back: the next call of the same shape
overwrites them. These tests fail if a result (output, saved tensor or gradient) is left in them.
"""

from __future__ import annotations

import threading

import pytest
import torch
from torch import Tensor

import torchseq
from torchseq.kernels import kernels_enabled, workspace
from torchseq.kernels.native import native_loops

F64 = {"dtype": torch.float64}


def test_only_small_cpu_calls_are_kept() -> None:
    cpu, row = torch.device("cpu"), workspace.SMALL_STEP
    assert workspace.keeps(row, 1, cpu)
    assert not workspace.keeps(row + 1, 1, cpu)                          # a step too wide
    assert workspace.keeps(row, workspace.KEPT_ELEMENTS // row, cpu)
    assert not workspace.keeps(row, workspace.KEPT_ELEMENTS // row + 1, cpu)  # too many steps to hold
    assert not workspace.keeps(1, 1, torch.device("cuda"))  # another stream could still be reading them


@pytest.mark.parametrize("kind", ["LSTM", "GRU", "RNN"])
def test_every_kernel_reuses_its_buffers_and_release_drops_them(kind: str) -> None:
    workspace.release()
    layer = getattr(torchseq, kind)(3, 4, **F64)
    x = torch.randn(5, 2, 3, **F64, requires_grad=True)
    layer(x)[0].sum().backward()
    store = workspace._kept.store
    first = dict(store)
    # forward and backward buffers; the C++ LSTM forward writes what it returns into new tensors
    assert len(first) == (1 if kind == "LSTM" and native_loops() is not None else 2)
    layer(x)[0].sum().backward()
    assert all(store[key] is buffers for key, buffers in first.items())  # the same objects, reused
    workspace.release()
    assert not getattr(workspace._kept, "store", None)


def test_buffers_are_built_once_per_key_and_thread_and_the_oldest_go_first() -> None:
    built: list[str] = []

    def build(name: str) -> object:
        built.append(name)
        return object()

    first = workspace.kept(("test", 0), lambda: build("first"))
    assert workspace.kept(("test", 0), lambda: build("again")) is first
    elsewhere: list[object] = []
    in_thread = lambda: elsewhere.append(workspace.kept(("test", 0), lambda: build("t")))  # noqa: E731
    thread = threading.Thread(target=in_thread)
    thread.start()
    thread.join()
    assert elsewhere[0] is not first and built == ["first", "t"]
    for index in range(1, workspace.KEPT + 1):  # KEPT newer keys push the first one out
        workspace.kept(("test", index), lambda: build("other"))
    assert workspace.kept(("test", 0), lambda: build("rebuilt")) is not first
    assert built[-1] == "rebuilt"


LAYERS = {
    "lstm": lambda: torchseq.LSTM(3, 4, **F64),
    "lstm_proj": lambda: torchseq.LSTM(3, 4, proj_size=2, **F64),
    "gru": lambda: torchseq.GRU(3, 4, **F64),
    "gru_reset_before": lambda: torchseq.GRU(3, 4, reset_after=False, **F64),
    "rnn": lambda: torchseq.RNN(3, 4, **F64),
}


def final_states(final: Tensor | tuple[Tensor, ...]) -> tuple[Tensor, ...]:
    return final if isinstance(final, tuple) else (final,)


def outputs_and_gradients(layer: torchseq.RNN, x: Tensor) -> list[Tensor]:
    output, final = layer(x)
    return [output, *final_states(final), *torch.autograd.grad(loss(output, final), [x, *layer.parameters()])]


def loss(output: Tensor, final: Tensor | tuple[Tensor, ...]) -> Tensor:
    return output.square().sum() + sum(state.sum() for state in final_states(final))


@pytest.mark.parametrize("kind", LAYERS)
def test_a_later_call_of_the_same_shape_changes_no_earlier_result(kind: str) -> None:
    """Two forwards of one shape, then both backwards in reverse order: each equals the reference."""
    torch.manual_seed(0)
    layer = LAYERS[kind]()
    first_x, second_x = (torch.randn(5, 2, 3, **F64, requires_grad=True) for _ in range(2))
    assert workspace.keeps(2 * 4 * 4, 5, first_x.device)  # the shape runs in kept buffers
    with kernels_enabled(False):
        expected = [outputs_and_gradients(layer, x) for x in (first_x, second_x)]

    first_output, first_final = layer(first_x)
    first_results = [first_output, *final_states(first_final)]
    first_values = [t.detach().clone() for t in first_results]
    second = outputs_and_gradients(layer, second_x)                    # overwrites the kept buffers
    for kept_value, value in zip(first_values, first_results, strict=True):
        assert torch.equal(kept_value, value)
    first_loss = loss(first_output, first_final)
    first = [*first_values, *torch.autograd.grad(first_loss, [first_x, *layer.parameters()])]

    for ours, theirs in zip([*first, *second], [*expected[0], *expected[1]], strict=True):
        assert (ours - theirs).abs().max().item() <= 1e-10


@pytest.mark.parametrize("kind", LAYERS)
def test_buffers_first_made_in_inference_mode_serve_later_calls(kind: str) -> None:
    """Lightning validates under inference mode, callbacks then run under no_grad, training with grad."""
    workspace.release()
    torch.manual_seed(2)
    layer = LAYERS[kind]()
    x = torch.randn(5, 2, 3, **F64)
    with torch.inference_mode():
        in_inference, _ = layer(x)
    with torch.no_grad():
        in_no_grad, _ = layer(x)
    with_grad, _ = layer(x)
    assert torch.equal(in_inference, in_no_grad) and torch.equal(in_no_grad, with_grad.detach())


def test_threads_running_one_shape_at_once_get_their_own_buffers() -> None:
    torch.manual_seed(1)
    layer = torchseq.LSTM(3, 4, **F64)
    inputs = [torch.randn(30, 1, 3, **F64, requires_grad=True) for _ in range(4)]
    with kernels_enabled(False):
        expected = [outputs_and_gradients(layer, x) for x in inputs]
    results: dict[int, list[list[Tensor]]] = {}

    def work(index: int) -> None:
        results[index] = [outputs_and_gradients(layer, inputs[index]) for _ in range(20)]

    threads = [threading.Thread(target=work, args=(index,)) for index in range(len(inputs))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for index, runs in results.items():
        for run in runs:
            for ours, theirs in zip(run, expected[index], strict=True):
                assert (ours - theirs).abs().max().item() <= 1e-10
    assert len(results) == len(inputs)


@pytest.mark.parametrize("kind", LAYERS)
def test_kept_and_fresh_buffers_give_bit_identical_results(
    kind: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Same ops on the same data: whether a shape ran before must not change a single bit (runs resume
    and reproduce exactly whatever was called earlier in the process)."""
    torch.manual_seed(3)
    layer = LAYERS[kind]().float()
    x = torch.randn(9, 2, 3, requires_grad=True)
    in_kept = outputs_and_gradients(layer, x)
    monkeypatch.setattr(workspace, "SMALL_STEP", -1)                    # nothing is kept any more
    in_fresh = outputs_and_gradients(layer, x)
    assert all(torch.equal(a, b) for a, b in zip(in_kept, in_fresh, strict=True))
