"""Classifier models: shapes, pooling semantics, padding invariance, custom = fused, clear input errors."""

from __future__ import annotations

import itertools
import warnings

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from torchseq.models import FCN, LSTMFCN, RecurrentClassifier, masked_mean
from torchseq.models.lstm_fcn import ConvolutionBlock, MaskedBatchNorm1d

LENGTHS = torch.tensor([6, 2, 4])


def padded_batch(input_size: int = 3, lengths: torch.Tensor = LENGTHS, seed: int = 0) -> torch.Tensor:
    """(B, T_max, F) random sequences whose padding holds garbage, not zeros: it must never matter."""
    generator = torch.Generator().manual_seed(seed)
    return torch.randn(len(lengths), int(lengths.max()), input_size, generator=generator, dtype=torch.float64)


def assert_padding_invariant(model: nn.Module, x: torch.Tensor, lengths: torch.Tensor) -> None:
    """A padded batch gives every sequence the outputs it gives alone, unpadded."""
    batched = model(x, lengths)
    for index, length in enumerate(lengths.tolist()):
        alone = model(x[index : index + 1, :length])
        torch.testing.assert_close(batched[index : index + 1], alone, rtol=0, atol=1e-10)


@pytest.mark.parametrize(
    ("cell", "bidirectional", "pooling"),
    list(itertools.product(("rnn", "lstm", "gru"), (False, True), ("last", "mean"))),
)
def test_recurrent_classifier_ignores_padding(cell: str, bidirectional: bool, pooling: str) -> None:
    torch.manual_seed(0)
    model = RecurrentClassifier(
        3, 4, hidden_size=5, num_layers=2, cell=cell, bidirectional=bidirectional, pooling=pooling
    ).double()
    assert_padding_invariant(model, padded_batch(), LENGTHS)


def test_last_pooling_reads_each_direction_at_its_own_end() -> None:
    """Forward state after the last real step, backward state after reading back to step 0."""
    torch.manual_seed(0)
    model = RecurrentClassifier(3, 2, hidden_size=4, bidirectional=True, pooling="last").double()
    x = padded_batch()
    output, _ = model.encoder.layers(x, lengths=LENGTHS)                 # (B, T, 2H)
    features = model.encoder(x, LENGTHS)                                 # (B, 2H)
    for index, length in enumerate(LENGTHS.tolist()):
        torch.testing.assert_close(features[index, :4], output[index, length - 1, :4])
        torch.testing.assert_close(features[index, 4:], output[index, 0, 4:])


def test_mean_pooling_averages_real_steps_only() -> None:
    values = torch.tensor([[[1.0], [3.0], [100.0]], [[2.0], [4.0], [6.0]]])
    torch.testing.assert_close(masked_mean(values, torch.tensor([2, 3])), torch.tensor([[2.0], [4.0]]))
    torch.testing.assert_close(masked_mean(values, None), values.mean(dim=1))


@pytest.mark.parametrize("cell", ["rnn", "lstm", "gru"])
def test_custom_and_fused_cells_give_the_same_classifier(cell: str) -> None:
    torch.manual_seed(0)
    model = RecurrentClassifier(3, 4, hidden_size=6, num_layers=2, cell=cell, bidirectional=True).double()
    x = padded_batch()
    custom = model(x, LENGTHS)
    model.encoder.layers.impl = "fused"
    torch.testing.assert_close(model(x, LENGTHS), custom, rtol=0, atol=1e-10)


def test_lstm_fcn_ignores_padding_in_eval_mode() -> None:
    torch.manual_seed(0)
    model = LSTMFCN(3, 4, hidden_size=5, channels=(6, 7, 5)).double().eval()
    assert_padding_invariant(model, padded_batch(), LENGTHS)


def test_fcn_is_lstm_fcn_without_its_recurrent_branch() -> None:
    torch.manual_seed(0)
    fcn = FCN(3, 4, channels=(6, 7, 5)).double().eval()
    assert_padding_invariant(fcn, padded_batch(), LENGTHS)
    lstm_fcn = LSTMFCN(3, 4, hidden_size=5, channels=(6, 7, 5)).double().eval()
    lstm_fcn.encoder.convolutional.load_state_dict(fcn.encoder.state_dict())
    x = padded_batch()
    torch.testing.assert_close(lstm_fcn.encoder(x, LENGTHS)[:, 5:], fcn.encoder(x, LENGTHS), rtol=0, atol=0)


def test_masked_batch_norm_uses_and_writes_real_steps_only() -> None:
    torch.manual_seed(0)
    x = torch.randn(3, 4, 6, dtype=torch.float64)                        # (B, C, T)
    mask = torch.arange(6).unsqueeze(0) < LENGTHS.unsqueeze(1)           # (B, T)
    masked, plain = MaskedBatchNorm1d(4).double(), nn.BatchNorm1d(4).double()
    result = masked(x, mask)
    real_steps = x.transpose(1, 2)[mask]                                 # (N_real, C)
    torch.testing.assert_close(result.transpose(1, 2)[mask], plain(real_steps))
    assert (result.transpose(1, 2)[~mask] == 0).all()
    torch.testing.assert_close(masked.running_mean, plain.running_mean)
    torch.testing.assert_close(masked.running_var, plain.running_var)


@pytest.mark.parametrize("kernel_size", [3, 5, 8])
def test_convolution_block_pads_like_same_padding(kernel_size: int) -> None:
    torch.manual_seed(0)
    block = ConvolutionBlock(2, 3, kernel_size).double().eval()
    x = torch.randn(2, 2, 11, dtype=torch.float64)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch's note that even kernels need an internal padded copy
        same = F.conv1d(x, block.conv.weight, block.conv.bias, padding="same")
    torch.testing.assert_close(block.conv(block.padding(x)), same)
    assert block(x).shape == (2, 3, 11)


@pytest.mark.parametrize(
    "model",
    [RecurrentClassifier(3, 4, hidden_size=5, num_layers=2, dropout=0.2, head_dropout=0.1),
     LSTMFCN(3, 4, channels=(4, 5, 6)), FCN(3, 4, channels=(4, 5, 6))],
    ids=["recurrent", "lstm_fcn", "fcn"],
)
def test_every_parameter_learns(model: nn.Module) -> None:
    x = padded_batch().float()
    F.cross_entropy(model(x, LENGTHS), torch.tensor([0, 1, 3])).backward()
    for name, parameter in model.named_parameters():
        assert parameter.grad is not None and parameter.grad.abs().sum() > 0, name


def test_regression_head_has_one_output() -> None:
    assert RecurrentClassifier(2, 1, hidden_size=3)(torch.randn(5, 7, 2)).shape == (5, 1)
    assert LSTMFCN(2, 1, channels=(3, 3, 3))(torch.randn(5, 7, 2)).shape == (5, 1)


@pytest.mark.parametrize(
    ("call", "match"),
    [
        (lambda m: m(torch.randn(2, 5, 4)), r"input: expected feature size .* 3, got 4"),
        (lambda m: m(torch.randn(5, 3)), r"x: expected a batch of shape \(B, T, F\), got shape \(5, 3\)"),
        (lambda m: m(torch.randn(2, 5, 3), torch.tensor([5, 6])), r"lengths: expected every length in \[1,"),
        (lambda m: m(torch.randn(2, 5, 3), torch.tensor([5.0, 2.0])), "lengths: expected an integer tensor"),
        (lambda m: m(torch.randn(2, 5, 3, dtype=torch.float64)), "input: expected dtype torch.float32"),
    ],
    ids=["feature_size", "unbatched", "length_too_long", "float_lengths", "dtype"],
)
@pytest.mark.parametrize("make", [lambda: RecurrentClassifier(3, 2, hidden_size=4), lambda: LSTMFCN(3, 2)],
                         ids=["recurrent", "lstm_fcn"])
def test_bad_input_is_named(make, call, match: str) -> None:
    with pytest.raises((ValueError, TypeError), match=match):
        call(make())


@pytest.mark.parametrize(
    ("make", "match"),
    [
        (lambda: RecurrentClassifier(3, 2, cell="transformer"), "cell: expected one of"),
        (lambda: RecurrentClassifier(3, 2, pooling="max"), "pooling: expected one of"),
        (lambda: RecurrentClassifier(3, 0), "num_outputs: expected a positive int, got 0"),
        (lambda: LSTMFCN(3, 2, channels=(4, 4), kernel_sizes=(3,)), "kernel_sizes: expected one per conv"),
    ],
)
def test_bad_configuration_is_named(make, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        make()
