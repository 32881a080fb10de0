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
    assert len(first) == 2                                               # forward and backward buffers
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


def outputs_and_gradients(layer: torchseq.LSTM, x: Tensor) -> list[Tensor]:
    output, (h_n, c_n) = layer(x)
    loss = output.square().sum() + h_n.sum() + c_n.square().sum()
    return [output, h_n, c_n, *torch.autograd.grad(loss, [x, *layer.parameters()])]


@pytest.mark.parametrize("proj_size", [0, 2])
def test_a_later_call_of_the_same_shape_changes_no_earlier_result(proj_size: int) -> None:
    """Two forwards of one shape, then both backwards in reverse order: each equals the reference."""
    torch.manual_seed(0)
    layer = torchseq.LSTM(3, 4, proj_size=proj_size, **F64)
    first_x, second_x = (torch.randn(5, 2, 3, **F64, requires_grad=True) for _ in range(2))
    assert workspace.keeps(2 * 4 * 4, 5, first_x.device)  # the shape runs in kept buffers
    with kernels_enabled(False):
        expected = [outputs_and_gradients(layer, x) for x in (first_x, second_x)]

    first_output, (first_h, first_c) = layer(first_x)
    first_values = [t.detach().clone() for t in (first_output, first_h, first_c)]
    second = outputs_and_gradients(layer, second_x)                    # overwrites the kept buffers
    for kept_value, value in zip(first_values, (first_output, first_h, first_c), strict=True):
        assert torch.equal(kept_value, value)
    first_loss = first_output.square().sum() + first_h.sum() + first_c.square().sum()
    first = [*first_values, *torch.autograd.grad(first_loss, [first_x, *layer.parameters()])]

    for ours, theirs in zip([*first, *second], [*expected[0], *expected[1]], strict=True):
        assert (ours - theirs).abs().max().item() <= 1e-10


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
