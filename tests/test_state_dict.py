"""Checkpoints move freely between torchseq and torch.nn: same keys, loading both ways, conversions."""

from __future__ import annotations

import io

import pytest
import torch
from _equivalence import KINDS, Config
from torch import nn

import torchseq
from torchseq.recurrent import RecurrentLayers

STRUCTURES = [Config(kind, num_layers, bidirectional, bias=bias)
              for kind in KINDS for num_layers in (1, 3) for bidirectional in (False, True)
              for bias in ("both", "none")]


def build(config: Config, **options) -> RecurrentLayers:
    torch.manual_seed(0)
    return config.build(3, 4, **options)


def fresh_torch_module(config: Config) -> nn.RNNBase:
    """A torch.nn module of the same configuration with other (seeded) weights."""
    ours = build(config)
    torch.manual_seed(1)
    return ours.torch_class(**ours.torch_config())


def outputs_equal(ours: nn.Module, theirs: nn.Module) -> bool:
    x = torch.randn(5, 2, 3, generator=torch.Generator().manual_seed(2))
    (ours_output, ours_final), (their_output, their_final) = ours(x), theirs(x)
    finals = (zip(ours_final, their_final, strict=True) if isinstance(ours_final, tuple)
              else [(ours_final, their_final)])
    return torch.allclose(ours_output, their_output, atol=1e-6) and all(
        torch.allclose(a, b, atol=1e-6) for a, b in finals)


@pytest.mark.parametrize("config", STRUCTURES, ids=lambda config: config.id)
def test_keys_and_shapes_are_torch_nn_ones(config: Config) -> None:
    ours, theirs = build(config).state_dict(), fresh_torch_module(config).state_dict()
    assert list(ours) == list(theirs)
    assert {key: value.shape for key, value in ours.items()} == {k: v.shape for k, v in theirs.items()}


@pytest.mark.parametrize("config", STRUCTURES, ids=lambda config: config.id)
def test_loading_works_both_ways(config: Config) -> None:
    ours, theirs = build(config), fresh_torch_module(config)
    assert not outputs_equal(ours, theirs)
    ours.load_state_dict(theirs.state_dict())
    assert outputs_equal(ours, theirs)

    ours, theirs = build(config), fresh_torch_module(config)
    theirs.load_state_dict(ours.state_dict())
    assert outputs_equal(ours, theirs)


def test_a_saved_torch_checkpoint_loads_into_torchseq() -> None:
    theirs = nn.LSTM(3, 4, num_layers=2, bidirectional=True, proj_size=2)
    buffer = io.BytesIO()
    torch.save(theirs.state_dict(), buffer)
    buffer.seek(0)
    ours = torchseq.LSTM(3, 4, num_layers=2, bidirectional=True, proj_size=2)
    ours.load_state_dict(torch.load(buffer, weights_only=True))
    assert outputs_equal(ours, theirs)


@pytest.mark.parametrize("torch_module", [
    nn.RNN(3, 4, num_layers=2, nonlinearity="relu", batch_first=True),
    nn.LSTM(3, 4, bidirectional=True, proj_size=3, bias=False),
    nn.GRU(3, 4, num_layers=3, dropout=0.25, dtype=torch.float64),
], ids=lambda module: type(module).__name__)
def test_from_torch_and_to_torch_round_trip(torch_module: nn.RNNBase) -> None:
    ours = type_of(torch_module).from_torch(torch_module)
    config_names = [*ours.torch_config(), "batch_first"]  # nonlinearity, proj_size where they apply
    assert {name: getattr(ours, name) for name in config_names} == {
        name: getattr(torch_module, name) for name in config_names}
    assert ours.cells[0].weight_ih.dtype == torch_module.weight_ih_l0.dtype
    back = ours.to_torch()
    assert type(back) is type(torch_module)
    assert {name: getattr(back, name) for name in config_names} == {
        name: getattr(torch_module, name) for name in config_names}
    for state in (ours.state_dict(), back.state_dict()):
        assert state.keys() == torch_module.state_dict().keys()
        assert all(torch.equal(state[key], value) for key, value in torch_module.state_dict().items())


def type_of(torch_module: nn.RNNBase) -> type[RecurrentLayers]:
    return {nn.RNN: torchseq.RNN, nn.LSTM: torchseq.LSTM, nn.GRU: torchseq.GRU}[type(torch_module)]


def test_from_torch_passes_torchseq_options_on() -> None:
    ours = torchseq.GRU.from_torch(nn.GRU(3, 4), impl="fused", stateful=True)
    assert (ours.impl, ours.stateful) == ("fused", True)


def test_to_torch_copies_the_training_mode_and_does_not_share_storage() -> None:
    ours = torchseq.LSTM(3, 4).eval()
    theirs = ours.to_torch()
    assert not theirs.training
    with torch.no_grad():
        theirs.weight_ih_l0.zero_()
    assert ours.cells[0].weight_ih.abs().sum() > 0


def test_keras_single_bias_converts_with_a_zero_recurrent_bias() -> None:
    ours = torchseq.LSTM(3, 4, num_layers=2, recurrent_bias=False)
    assert [key for key in ours.state_dict() if key.startswith("bias")] == ["bias_ih_l0", "bias_ih_l1"]
    theirs = ours.to_torch()
    assert torch.count_nonzero(theirs.bias_hh_l0) == torch.count_nonzero(theirs.bias_hh_l1) == 0
    assert outputs_equal(ours, theirs)


def test_switching_impl_keeps_the_very_same_parameters() -> None:
    ours = torchseq.GRU(3, 4, num_layers=2, bidirectional=True)
    before = list(ours.parameters())
    ours.impl = "fused"
    assert all(a is b for a, b in zip(before, ours.parameters(), strict=True))
    assert ours.state_dict().keys() == fresh_torch_module(Config("gru", 2, True)).state_dict().keys()


class Encoder(nn.Module):
    """A parent module holding a torchseq layer, so its keys carry a prefix."""

    def __init__(self) -> None:
        super().__init__()
        self.rnn = torchseq.LSTM(3, 4, num_layers=2, bidirectional=True, proj_size=2)
        self.head = nn.Linear(4, 1)


class TorchEncoder(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.rnn = nn.LSTM(3, 4, num_layers=2, bidirectional=True, proj_size=2)
        self.head = nn.Linear(4, 1)


def test_nested_keys_carry_the_prefix_and_load_from_a_torch_parent() -> None:
    torch.manual_seed(0)
    ours, theirs = Encoder(), TorchEncoder()
    assert list(ours.state_dict()) == list(theirs.state_dict())
    ours.load_state_dict(theirs.state_dict())
    assert outputs_equal(ours.rnn, theirs.rnn)
    theirs.load_state_dict(Encoder().state_dict())  # and the other way


def test_strict_loading_names_missing_keys_as_torch_does() -> None:
    state = TorchEncoder().state_dict()
    del state["rnn.weight_hr_l1_reverse"]
    with pytest.raises(RuntimeError, match=r'Missing key\(s\) in state_dict: "rnn\.weight_hr_l1_reverse"'):
        Encoder().load_state_dict(state)
    result = Encoder().load_state_dict(state, strict=False)
    assert result.missing_keys == ["rnn.weight_hr_l1_reverse"]


def test_strict_loading_catches_unexpected_keys() -> None:
    state = nn.GRU(3, 4).state_dict() | {"weight_ih_l1": torch.zeros(12, 4)}
    with pytest.raises(RuntimeError, match=r'Unexpected key\(s\) in state_dict: "weight_ih_l1"'):
        torchseq.GRU(3, 4).load_state_dict(state)


@pytest.mark.parametrize("strict", [True, False])
def test_a_differently_sized_checkpoint_is_refused_under_torch_nn_keys(strict: bool) -> None:
    ours = torchseq.GRU(3, 4, num_layers=2, bidirectional=True)
    theirs = nn.GRU(3, 5, num_layers=2, bidirectional=True)
    with pytest.raises(RuntimeError) as refused:
        ours.load_state_dict(theirs.state_dict(), strict=strict)
    message = str(refused.value)
    for key, value in theirs.state_dict().items():
        expected = tuple(ours.state_dict()[key].shape)
        assert (f"size mismatch for {key}: expected shape {expected} (the current model's), "
                f"got {tuple(value.shape)} from the checkpoint") in message
    assert "stack." not in message and "cell." not in message  # nothing of our internal layout


def test_a_size_mismatch_inside_a_parent_names_the_prefixed_torch_nn_key() -> None:
    state = TorchEncoder().state_dict()
    state["rnn.weight_hr_l1_reverse"] = torch.zeros(3, 4)
    with pytest.raises(RuntimeError, match=r"size mismatch for rnn\.weight_hr_l1_reverse: "
                                           r"expected shape \(2, 4\) .*, got \(3, 4\) from the checkpoint"):
        Encoder().load_state_dict(state, strict=False)


def test_a_non_tensor_in_the_checkpoint_is_refused_under_its_torch_nn_key() -> None:
    state = nn.LSTM(3, 4).state_dict() | {"bias_hh_l0": [0.0] * 16}
    with pytest.raises(RuntimeError, match=r"bias_hh_l0: expected a torch\.Tensor, got list"):
        torchseq.LSTM(3, 4).load_state_dict(state)


def test_a_refused_load_leaves_the_mismatched_parameter_alone() -> None:
    ours = torchseq.RNN(3, 4)
    before = ours.state_dict()
    state = nn.RNN(3, 4).state_dict() | {"weight_hh_l0": torch.zeros(4, 5)}
    with pytest.raises(RuntimeError, match=r"size mismatch for weight_hh_l0"):
        ours.load_state_dict(state)
    assert torch.equal(ours.state_dict()["weight_hh_l0"], before["weight_hh_l0"])


def test_from_torch_refuses_a_module_whose_parameters_do_not_fit_its_configuration() -> None:
    theirs = nn.LSTM(3, 4)
    theirs.weight_hh_l0 = nn.Parameter(torch.zeros(16, 5))  # replaced after construction
    with pytest.raises(ValueError, match=r"(?s)module: its parameters do not fit its own configuration .*"
                                         r"size mismatch for weight_hh_l0: expected shape \(16, 4\) .*, "
                                         r"got \(16, 5\)"):
        torchseq.LSTM.from_torch(theirs)
