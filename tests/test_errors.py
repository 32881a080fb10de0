"""Bad input fails at our door, with a message naming the argument and the expected vs given value."""

from __future__ import annotations

from collections.abc import Callable

import pytest
import torch
from torch import Tensor, nn
from torch.nn.utils.rnn import pack_padded_sequence

import torchseq
from torchseq.kernels import kernels_enabled
from torchseq.recurrent.config import IMPLS

x = torch.randn(5, 2, 3)  # (T, B, F) for layers with input_size=3, hidden_size=4


def zeros(*shape: int, **options) -> Tensor:
    return torch.zeros(*shape, **options)


# (front, call on a layer built as front(3, 4, impl=impl), error, message)
CALL_ERRORS = {
    "input 4-d": (torchseq.GRU, lambda m: m(zeros(5, 2, 3, 1)), ValueError,
                  r"input: expected 2 dimensions \(T, F\) unbatched or 3 dimensions \(T, B, F\) batched, "
                  r"got 4 with shape \(5, 2, 3, 1\)"),
    "input 1-d": (torchseq.GRU, lambda m: m(zeros(5)), ValueError, r"input: expected 2 dimensions .* got 1"),
    "input feature size": (torchseq.RNN, lambda m: m(zeros(5, 2, 7)), ValueError,
                           r"input: expected feature size \(last dimension\) 3, got 7 in shape \(5, 2, 7\)"),
    "input dtype": (torchseq.LSTM, lambda m: m(x.double()), TypeError,
                    r"input: expected dtype torch\.float32 \(the parameters'\), got torch\.float64"),
    "input integer dtype": (torchseq.LSTM, lambda m: m(x.long()), TypeError,
                            r"input: expected dtype torch\.float32 .* got torch\.int64"),
    "input device": (torchseq.LSTM, lambda m: m(x.to("meta")), ValueError,
                     r"input: expected device cpu \(the parameters'\), got meta"),
    "input not a tensor": (torchseq.GRU, lambda m: m(x.tolist()), TypeError,
                           r"input: expected a torch\.Tensor, got list"),
    "empty sequence": (torchseq.LSTM, lambda m: m(zeros(0, 2, 3)), ValueError,
                       r"input: empty sequence \(T=0\) in shape \(0, 2, 3\); expected T ≥ 1"),
    "empty unbatched sequence": (torchseq.LSTM, lambda m: m(zeros(0, 3)), ValueError,
                                 r"input: empty sequence \(T=0\) in shape \(0, 3\)"),
    "hx shape": (torchseq.GRU, lambda m: m(x, zeros(1, 3, 4)), ValueError,
                 r"hx: expected shape \(1, 2, 4\), got \(1, 3, 4\)"),
    "hx missing layer dimension": (torchseq.GRU, lambda m: m(x, zeros(2, 4)), ValueError,
                                   r"hx: expected shape \(1, 2, 4\), got \(2, 4\)"),
    "hx batched for unbatched input": (torchseq.RNN, lambda m: m(x[:, 0], zeros(1, 2, 4)), ValueError,
                                       r"hx: expected shape \(1, 4\), got \(1, 2, 4\)"),
    "hx dtype": (torchseq.GRU, lambda m: m(x, zeros(1, 2, 4, dtype=torch.float64)), TypeError,
                 r"hx: expected dtype torch\.float32 \(the parameters'\), got torch\.float64"),
    "hx device": (torchseq.GRU, lambda m: m(x, zeros(1, 2, 4, device="meta")), ValueError,
                  r"hx: expected device cpu \(the parameters'\), got meta"),
    "hx not a tensor": (torchseq.RNN, lambda m: m(x, "h0"), TypeError,
                        r"hx: expected a torch\.Tensor, got str"),
    "hx unbatched missing layer dimension": (torchseq.GRU, lambda m: m(x[:, 0], zeros(4)), ValueError,
                                             r"hx: expected shape \(1, 4\), got \(4,\)"),
    "gru hx a 1-tuple": (torchseq.GRU, lambda m: m(x, (zeros(1, 2, 4),)), TypeError,
                         r"hx: expected a torch\.Tensor h_0, got tuple of length 1"),
    "gru hx an lstm-style pair": (torchseq.GRU, lambda m: m(x, (zeros(1, 2, 4),) * 2), TypeError,
                                  r"hx: expected a torch\.Tensor h_0, got tuple of length 2"),
    "rnn hx a list": (torchseq.RNN, lambda m: m(x, [zeros(1, 2, 4)]), TypeError,
                      r"hx: expected a torch\.Tensor h_0, got list of length 1"),
    "rnn unbatched hx a 1-tuple": (torchseq.RNN, lambda m: m(x[:, 0], (zeros(1, 4),)), TypeError,
                                   r"hx: expected a torch\.Tensor h_0, got tuple of length 1"),
    "lstm hx not a tuple": (torchseq.LSTM, lambda m: m(x, zeros(1, 2, 4)), TypeError,
                            r"hx: expected a tuple \(h_0, c_0\), got Tensor"),
    "lstm unbatched hx not a tuple": (torchseq.LSTM, lambda m: m(x[:, 0], zeros(1, 4)), TypeError,
                                      r"hx: expected a tuple \(h_0, c_0\), got Tensor"),
    "lstm hx of one": (torchseq.LSTM, lambda m: m(x, (zeros(1, 2, 4),)), ValueError,
                       r"hx: expected 2 tensor\(s\), got 1"),
    "lstm hx of three": (torchseq.LSTM, lambda m: m(x, (zeros(1, 2, 4),) * 3), ValueError,
                         r"hx: expected 2 tensor\(s\), got 3"),
    "lstm c_0 shape": (torchseq.LSTM, lambda m: m(x, (zeros(1, 2, 4), zeros(1, 2, 5))), ValueError,
                       r"hx\[1\]: expected shape \(1, 2, 4\), got \(1, 2, 5\)"),
    "lstm c_0 dtype": (torchseq.LSTM, lambda m: m(x, (zeros(1, 2, 4), zeros(1, 2, 4).double())), TypeError,
                       r"hx\[1\]: expected dtype torch\.float32"),
    "lstm h_0 device": (torchseq.LSTM, lambda m: m(x, (zeros(1, 2, 4, device="meta"), zeros(1, 2, 4))),
                        ValueError, r"hx\[0\]: expected device cpu \(the parameters'\), got meta"),
    "lengths longer than T": (torchseq.GRU, lambda m: m(x, lengths=torch.tensor([6, 2])), ValueError,
                              r"lengths: expected every length in \[1, T=5\], got min 2 and max 6"),
    "lengths zero": (torchseq.GRU, lambda m: m(x, lengths=torch.tensor([0, 2])), ValueError,
                     r"lengths: expected every length in \[1, T=5\], got min 0 and max 2"),
    "lengths negative": (torchseq.GRU, lambda m: m(x, lengths=torch.tensor([-1, 2])), ValueError,
                         r"lengths: expected every length in \[1, T=5\], got min -1"),
    "lengths shape": (torchseq.RNN, lambda m: m(x, lengths=torch.tensor([1, 2, 3])), ValueError,
                      r"lengths: expected shape \(2,\) \(one per sequence\), got \(3,\)"),
    "lengths 2-d": (torchseq.RNN, lambda m: m(x, lengths=torch.tensor([[1, 2]])), ValueError,
                    r"lengths: expected shape \(2,\) \(one per sequence\), got \(1, 2\)"),
    "lengths float": (torchseq.LSTM, lambda m: m(x, lengths=torch.tensor([1.0, 2.0])), TypeError,
                      r"lengths: expected an integer tensor, got dtype torch\.float32"),
    "lengths bool": (torchseq.LSTM, lambda m: m(x, lengths=torch.tensor([True, True])), TypeError,
                     r"lengths: expected an integer tensor, got dtype torch\.bool"),
    "lengths with a PackedSequence": (
        torchseq.LSTM, lambda m: m(pack_padded_sequence(x, [5, 3]), lengths=torch.tensor([5, 3])), ValueError,
        r"lengths: must be None for a PackedSequence input"),
    "packed input feature size": (
        torchseq.LSTM, lambda m: m(pack_padded_sequence(zeros(5, 2, 7), [5, 3])), ValueError,
        r"input: expected feature size \(last dimension\) 3, got 7"),
}


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("case", CALL_ERRORS)
def test_bad_call_is_refused_with_a_clear_message(case: str, impl: str) -> None:
    front, call, error, message = CALL_ERRORS[case]
    with pytest.raises(error, match=message):
        call(front(3, 4, impl=impl))


def test_layout_in_the_message_follows_batch_first() -> None:
    with pytest.raises(ValueError, match=r"3 dimensions \(B, T, F\) batched"):
        torchseq.GRU(3, 4, batch_first=True)(zeros(2, 5, 3, 1))
    with pytest.raises(ValueError, match=r"empty sequence \(T=0\) in shape \(2, 0, 3\)"):
        torchseq.GRU(3, 4, batch_first=True)(zeros(2, 0, 3))


@pytest.mark.parametrize("impl", IMPLS)
def test_lstm_takes_hx_as_a_list_too_like_torch_nn(impl: str) -> None:
    torch.manual_seed(0)
    ours = torchseq.LSTM(3, 4, impl=impl)
    state = (torch.randn(1, 2, 4), torch.randn(1, 2, 4))
    theirs = ours.to_torch()
    for given in (state, list(state)):
        torch.testing.assert_close(ours(x, given), theirs(x, state))


def test_lstm_cell_takes_hx_as_a_list_too_like_torch_nn() -> None:
    torch.manual_seed(0)
    ours, state = torchseq.LSTMCell(3, 4), (torch.randn(4), torch.randn(4))
    theirs = nn.LSTMCell(3, 4)
    theirs.load_state_dict(ours.state_dict())
    for given in (state, list(state)):
        torch.testing.assert_close(ours(x[0, 0], given), theirs(x[0, 0], state))


def test_projected_lstm_expects_h_of_proj_size() -> None:
    with pytest.raises(ValueError, match=r"hx\[0\]: expected shape \(1, 2, 2\), got \(1, 2, 4\)"):
        torchseq.LSTM(3, 4, proj_size=2)(x, (zeros(1, 2, 4), zeros(1, 2, 4)))


CONSTRUCTION_ERRORS: dict[str, tuple[Callable[[], object], type[Exception], str]] = {
    "impl": (lambda: torchseq.LSTM(3, 4, impl="cudnn"), ValueError,
             r"impl: expected one of \('custom', 'fused'\), got 'cudnn'"),
    "init": (lambda: torchseq.GRU(3, 4, init="he"), ValueError,
             r"init: expected one of \('torch', 'xavier', 'keras'\), got 'he'"),
    "cell init": (lambda: torchseq.GRUCell(3, 4, init="he"), ValueError,
                  r"init: expected one of .* got 'he'"),
    "merge_mode": (lambda: torchseq.LSTM(3, 4, bidirectional=True, merge_mode="max"), ValueError,
                   r"merge_mode: expected one of \('concat', 'sum', 'mul', 'ave', None\), got 'max'"),
    "merge_mode without bidirectional": (
        lambda: torchseq.LSTM(3, 4, merge_mode="sum"), ValueError,
        r"merge_mode: 'sum' needs bidirectional=True \(got bidirectional=False\)"),
    "merge_mode None without bidirectional": (
        lambda: torchseq.GRU(3, 4, merge_mode=None), ValueError,
        r"merge_mode: None needs bidirectional=True"),
    "nonlinearity": (lambda: torchseq.RNN(3, 4, nonlinearity="sigmoid"), ValueError,
                     r"nonlinearity: expected one of \('tanh', 'relu'\), got 'sigmoid'"),
    "cell nonlinearity": (lambda: torchseq.RNNCell(3, 4, nonlinearity="gelu"), ValueError,
                          r"nonlinearity: expected one of \('tanh', 'relu'\), got 'gelu'"),
    "reset_after=False with impl=fused": (
        lambda: torchseq.GRU(3, 4, reset_after=False, impl="fused"), ValueError,
        r"impl: 'fused' is not available for this configuration: GRU\(reset_after=False\)"),
    "proj_size equal to hidden_size": (lambda: torchseq.LSTM(3, 4, proj_size=4), ValueError,
                                       r"proj_size: expected an int in \[0, hidden_size=4\), got 4"),
    "proj_size above hidden_size": (lambda: torchseq.LSTM(3, 4, proj_size=9), ValueError,
                                    r"proj_size: expected an int in \[0, hidden_size=4\), got 9"),
    "proj_size negative": (lambda: torchseq.LSTMCell(3, 4, proj_size=-1), ValueError,
                           r"proj_size: expected an int in \[0, hidden_size=4\), got -1"),
    "hidden_size": (lambda: torchseq.GRU(3, 0), ValueError, r"hidden_size: expected a positive int, got 0"),
    "input_size": (lambda: torchseq.LSTMCell(2.5, 4), ValueError,
                   r"input_size: expected a positive int, got 2\.5"),
    "num_layers": (lambda: torchseq.RNN(3, 4, num_layers=0), ValueError,
                   r"num_layers: expected a positive int, got 0"),
    "dropout": (lambda: torchseq.LSTM(3, 4, dropout=1.5), ValueError,
                r"dropout: expected a probability in \[0, 1\], got 1\.5"),
    "from_torch of another class": (lambda: torchseq.GRU.from_torch(nn.LSTM(3, 4)), TypeError,
                                    r"module: expected GRU, got LSTM"),
}


@pytest.mark.parametrize("case", CONSTRUCTION_ERRORS)
def test_bad_construction_is_refused_with_a_clear_message(case: str) -> None:
    build, error, message = CONSTRUCTION_ERRORS[case]
    with pytest.raises(error, match=message):
        build()


def test_setting_impl_fused_on_a_reset_before_gru_is_refused() -> None:
    gru = torchseq.GRU(3, 4, reset_after=False)
    with pytest.raises(ValueError, match=r"impl: 'fused' is not available .* use impl='custom'"):
        gru.impl = "fused"
    assert gru.impl == "custom"
    with pytest.raises(ValueError, match=r"impl: expected one of \('custom', 'fused'\), got 'Fused'"):
        gru.impl = "Fused"


def test_reset_parameters_with_an_unknown_scheme_is_refused() -> None:
    with pytest.raises(ValueError, match=r"init: expected one of .* got 'orthogonal'"):
        torchseq.LSTMCell(3, 4).reset_parameters("orthogonal")


CELL_ERRORS = {
    "input 3-d": (torchseq.GRUCell, lambda c: c(zeros(2, 5, 3)), ValueError,
                  r"input: expected 1 dimension \(F,\) or 2 dimensions \(B, F\), "
                  r"got 3 with shape \(2, 5, 3\)"),
    "input feature size": (torchseq.RNNCell, lambda c: c(zeros(2, 7)), ValueError,
                           r"input: expected feature size 3, got 7"),
    "input dtype": (torchseq.LSTMCell, lambda c: c(zeros(2, 3, dtype=torch.float64)), TypeError,
                    r"input: expected dtype torch\.float32 \(the parameters'\), got torch\.float64"),
    "hx shape": (torchseq.GRUCell, lambda c: c(zeros(2, 3), zeros(3, 4)), ValueError,
                 r"hx: expected shape \(2, 4\), got \(3, 4\)"),
    "hx batched for unbatched input": (torchseq.RNNCell, lambda c: c(zeros(3), zeros(1, 4)), ValueError,
                                       r"hx: expected shape \(4,\), got \(1, 4\)"),
    "hx device": (torchseq.GRUCell, lambda c: c(zeros(2, 3), zeros(2, 4, device="meta")), ValueError,
                  r"hx: expected device cpu \(the parameters'\), got meta"),
    "gru hx a tuple": (torchseq.GRUCell, lambda c: c(zeros(2, 3), (zeros(2, 4),)), TypeError,
                       r"hx: expected a torch\.Tensor h_0, got tuple of length 1"),
    "rnn hx a list": (torchseq.RNNCell, lambda c: c(zeros(2, 3), [zeros(2, 4)]), TypeError,
                      r"hx: expected a torch\.Tensor h_0, got list of length 1"),
    "lstm hx not a tuple": (torchseq.LSTMCell, lambda c: c(zeros(2, 3), zeros(2, 4)), TypeError,
                            r"hx: expected a tuple \(h_0, c_0\), got Tensor"),
    "lstm hx of one": (torchseq.LSTMCell, lambda c: c(zeros(2, 3), (zeros(2, 4),)), ValueError,
                       r"hx: expected 2 tensor\(s\), got 1"),
    "lstm c_0 shape": (torchseq.LSTMCell, lambda c: c(zeros(2, 3), (zeros(2, 4), zeros(2, 5))), ValueError,
                       r"hx\[1\]: expected shape \(2, 4\), got \(2, 5\)"),
}


@pytest.mark.parametrize("case", CELL_ERRORS)
def test_bad_cell_call_is_refused_with_a_clear_message(case: str) -> None:
    cell_class, call, error, message = CELL_ERRORS[case]
    with pytest.raises(error, match=message):
        call(cell_class(3, 4))


# -- non-finite input ------------------------------------------------------------------------------
def with_nan(sequence: Tensor, *index: int) -> Tensor:
    sequence = sequence.clone()
    sequence[index] = float("nan")
    return sequence


@pytest.mark.parametrize("front", [torchseq.RNN, torchseq.LSTM, torchseq.GRU], ids=lambda f: f.__name__)
def test_nan_propagates_alike_in_both_impls_by_default(front: type) -> None:
    torch.manual_seed(0)
    layer = front(3, 4, num_layers=2, bidirectional=True)
    poisoned = with_nan(x, 2, 1, 0)  # step 2 of sequence 1: both directions carry it on
    results = []
    for impl in IMPLS:
        layer.impl = impl
        for kernels in (True, False):
            with kernels_enabled(kernels):
                output, _ = layer(poisoned)
            results.append(output)
    expected = layer.to_torch()(poisoned)[0]
    assert expected[:, 1].isnan().all() and not expected[:, 0].isnan().any()
    for output in results:
        torch.testing.assert_close(output, expected, equal_nan=True)


@pytest.mark.parametrize("impl", IMPLS)
def test_non_finite_padding_is_ignored_like_the_fused_kernel_does(impl: str) -> None:
    layer = torchseq.GRU(3, 4, impl=impl)
    poisoned = with_nan(x, 4, 1, 0)  # beyond sequence 1's length 3
    output, h_n = layer(poisoned, lengths=torch.tensor([5, 3]))
    (output.sum() + h_n.sum()).backward()
    assert torch.isfinite(output).all() and torch.isfinite(h_n).all()
    assert all(torch.isfinite(parameter.grad).all() for parameter in layer.parameters())


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("value", [float("nan"), float("inf")], ids=["nan", "inf"])
def test_check_finite_refuses_non_finite_input(impl: str, value: float) -> None:
    poisoned = x.clone()
    poisoned[0, 0, 0] = value
    layer = torchseq.LSTM(3, 4, impl=impl, check_finite=True)
    with pytest.raises(ValueError, match=r"input: contains NaN or infinite values \(check_finite=True\)"):
        layer(poisoned)
    assert layer(x)[0].shape == (5, 2, 4)  # finite input passes
