"""Errors as ``torch.nn`` raises them: for every mistake torch.nn refuses, torchseq's error is an instance
of torch.nn's exception class (so code written for torch.nn catches it), with torchseq's message naming
the argument and what was expected and given. And what torch.nn accepts (an empty batch), torchseq
returns alike."""

from __future__ import annotations

from collections.abc import Callable

import pytest
import torch
from torch import nn

import torchseq

x = torch.zeros(5, 2, 3)
zeros = torch.zeros
FRONTS = {nn.RNN: torchseq.RNN, nn.LSTM: torchseq.LSTM, nn.GRU: torchseq.GRU}

# (torch.nn class, constructor keywords, the call, torchseq's message)
CALLS: dict[str, tuple[type[nn.RNNBase], dict, Callable, str]] = {
    "hx shape": (nn.GRU, {}, lambda m: m(x, zeros(1, 3, 4)),
                 r"hx: expected shape \(1, 2, 4\), got \(1, 3, 4\)"),
    "c_0 shape": (nn.LSTM, {}, lambda m: m(x, (zeros(1, 2, 4), zeros(2, 2, 4))),
                  r"hx\[1\]: expected shape \(1, 2, 4\), got \(2, 2, 4\)"),
    "projected h_0 shape": (nn.LSTM, {"proj_size": 2}, lambda m: m(x, (zeros(1, 2, 4), zeros(1, 2, 4))),
                            r"hx\[0\]: expected shape \(1, 2, 2\), got \(1, 2, 4\)"),
    "batched hx for unbatched input": (nn.RNN, {}, lambda m: m(x[:, 0], zeros(1, 2, 4)),
                                       r"hx: expected shape \(1, 4\), got \(1, 2, 4\)"),
    "feature size": (nn.RNN, {}, lambda m: m(zeros(5, 2, 7)),
                     r"input: expected feature size \(last dimension\) 3, got 7"),
    "empty sequence": (nn.LSTM, {}, lambda m: m(zeros(0, 2, 3)), r"input: empty sequence \(T=0\)"),
    "4-d input": (nn.GRU, {}, lambda m: m(zeros(5, 2, 3, 1)), r"input: expected 2 dimensions"),
    "input dtype": (nn.LSTM, {}, lambda m: m(x.double()),
                    r"input: expected dtype torch\.float32 \(the parameters'\), got torch\.float64"),
}


def raised(call: Callable[[], object]) -> type[BaseException]:
    try:
        call()
    except Exception as error:  # the class is what is compared
        return type(error)
    raise AssertionError("torch.nn accepted a call it is expected to refuse")


@pytest.mark.parametrize("impl", ["custom", "fused"])
@pytest.mark.parametrize("case", CALLS)
def test_a_bad_call_raises_what_torch_nn_raises(case: str, impl: str) -> None:
    torch_class, options, call, message = CALLS[case]
    torch_error = raised(lambda: call(torch_class(3, 4, **options)))
    with pytest.raises(torch_error, match=message):
        call(FRONTS[torch_class](3, 4, impl=impl, **options))


# (torch.nn class, constructor keywords, torchseq's message)
CONSTRUCTIONS: dict[str, tuple[type[nn.RNNBase], dict, str]] = {
    "bias 1": (nn.LSTM, {"bias": 1}, r"bias: expected a bool, got int 1"),
    "bias 'True'": (nn.GRU, {"bias": "True"}, r"bias: expected a bool, got str 'True'"),
    "batch_first 0": (nn.RNN, {"batch_first": 0}, r"batch_first: expected a bool, got int 0"),
    "batch_first 'False'": (nn.LSTM, {"batch_first": "False"},
                            r"batch_first: expected a bool, got str 'False'"),
    "hidden_size float": (nn.LSTM, {"hidden_size": 4.0}, r"hidden_size: expected a positive int, got 4\.0"),
    "hidden_size 0": (nn.GRU, {"hidden_size": 0}, r"hidden_size: expected a positive int, got 0"),
    "input_size 0": (nn.RNN, {"input_size": 0}, r"input_size: expected a positive int, got 0"),
    "num_layers 0": (nn.LSTM, {"num_layers": 0}, r"num_layers: expected a positive int, got 0"),
    "dropout 2": (nn.GRU, {"dropout": 2}, r"dropout: expected a probability in \[0, 1\], got 2"),
    "dropout True": (nn.GRU, {"dropout": True}, r"dropout: expected a probability in \[0, 1\], got True"),
    "proj_size of a GRU": (nn.GRU, {"proj_size": 2},
                           r"proj_size argument is only supported for LSTM, not RNN or GRU"),
    "proj_size of an RNN": (nn.RNN, {"proj_size": 2}, r"proj_size: only the LSTM has a projection, got 2"),
    "proj_size too large": (nn.LSTM, {"proj_size": 4}, r"proj_size: expected an int in \[0, hidden_size=4\)"),
    "nonlinearity": (nn.RNN, {"nonlinearity": "sigmoid"}, r"nonlinearity: expected one of"),
}


@pytest.mark.parametrize("case", CONSTRUCTIONS)
def test_a_bad_construction_raises_what_torch_nn_raises(case: str) -> None:
    torch_class, options, message = CONSTRUCTIONS[case]
    arguments = {"input_size": 3, "hidden_size": 4} | options
    torch_error = raised(lambda: torch_class(**arguments))
    with pytest.raises(torch_error, match=message):
        FRONTS[torch_class](**arguments)


@pytest.mark.parametrize("impl", ["custom", "fused"])
@pytest.mark.parametrize("torch_class", FRONTS, ids=lambda cls: cls.__name__)
def test_an_empty_batch_returns_empty_results_like_torch_nn(torch_class: type[nn.RNNBase], impl: str) -> None:
    theirs = torch_class(3, 4, num_layers=2, bidirectional=True)
    ours = FRONTS[torch_class].from_torch(theirs, impl=impl)
    empty = torch.zeros(5, 0, 3, requires_grad=True)
    (output, final), (their_output, their_final) = ours(empty), theirs(empty)
    assert output.shape == their_output.shape == (5, 0, 8)
    finals = final if isinstance(final, tuple) else (final,)
    their_finals = their_final if isinstance(their_final, tuple) else (their_final,)
    assert [f.shape for f in finals] == [f.shape for f in their_finals]
    output.sum().backward()                                                  # a graph, with empty gradients
    assert empty.grad.shape == empty.shape
    assert ours(empty, lengths=torch.zeros(0, dtype=torch.long))[0].shape == (5, 0, 8)
