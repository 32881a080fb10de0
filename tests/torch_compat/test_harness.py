"""The harness of the vendored tests does what they rely on: the swapped families really are torchseq in
the named impl, they pickle, and importing torch's test helpers leaves torch.backends flags settable."""

from __future__ import annotations

import io

import pytest
import torch

import torchseq

from ._fronts import FAMILIES


@pytest.mark.parametrize("impl", ["custom", "fused"])
@pytest.mark.parametrize("mode", ["RNN", "LSTM", "GRU"])
def test_swapped_classes_are_torchseq_fronts_in_their_impl(impl, mode):
    layer = FAMILIES[impl].by_mode(mode)(3, 4, 2, batch_first=True)
    assert isinstance(layer, getattr(torchseq, mode))
    assert not isinstance(layer, getattr(torch.nn, mode))
    assert layer.impl == impl
    assert layer.batch_first and layer.num_layers == 2  # torch.nn's arguments pass through unchanged


def test_torch_family_is_torch_nn_itself():
    assert (FAMILIES["torch"].RNN, FAMILIES["torch"].LSTM, FAMILIES["torch"].GRU) == \
        (torch.nn.RNN, torch.nn.LSTM, torch.nn.GRU)


@pytest.mark.parametrize("impl", ["custom", "fused"])
def test_swapped_layers_pickle_whole(impl):
    layer = FAMILIES[impl].LSTM(3, 4)
    buffer = io.BytesIO()
    torch.save(layer, buffer)
    buffer.seek(0)
    loaded = torch.load(buffer, weights_only=False)
    assert type(loaded) is type(layer) and loaded.impl == impl
    x = torch.randn(5, 2, 3)
    torch.testing.assert_close(loaded(x)[0], layer(x)[0], rtol=0, atol=0)


def test_backends_flags_stay_settable_after_torch_test_helpers_are_imported():
    assert not torch.backends.flags_frozen()
    previous = torch.backends.mkldnn.enabled
    torch.backends.mkldnn.enabled = previous  # raises when the flags are frozen
