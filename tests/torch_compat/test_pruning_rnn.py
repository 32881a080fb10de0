# Adapted from PyTorch's test/nn/test_pruning.py, which is
# Copyright (c) 2016- Facebook, Inc. and the PyTorch contributors, BSD-3-Clause; see LICENSE-PYTORCH.
"""PyTorch's recurrent-layer pruning test (``TestPruningNN.test_rnn_pruning``), once per layer family.

Adaptation: the weights still held as ``nn.Parameter`` are counted through the public ``all_weights``
instead of the private ``_flat_weights`` (same tensors, in the same order). The other tests of that file
prune ``nn.Linear`` / ``nn.Conv3d`` only and are not vendored.
"""

from __future__ import annotations

import torch
from torch.nn.utils import prune


def _parameters_among_weights(module: torch.nn.Module) -> int:
    return sum(isinstance(weight, torch.nn.Parameter) for layer in module.all_weights for weight in layer)


def test_rnn_pruning(layers):
    lstm = layers.LSTM(32, 32)  # parameters weight_ih_l0, weight_hh_l0, bias_ih_l0, bias_hh_l0

    # pruning one of them turns it into a computed tensor
    prune.l1_unstructured(lstm, "weight_ih_l0", 0.5)
    assert _parameters_among_weights(lstm) == 3

    # removing the reparametrization makes it a parameter again
    prune.remove(lstm, "weight_ih_l0")
    assert _parameters_among_weights(lstm) == 4

    # the original name is back among the parameters, the reparametrization's gone
    assert "weight_ih_l0" in lstm._parameters
    assert lstm._parameters["weight_ih_l0"] is not None
    assert "weight_ih_l0_orig" not in lstm._parameters
    named = dict(lstm.named_parameters())
    assert "weight_ih_l0" in named
    assert named["weight_ih_l0"] is not None
    assert "weight_ih_l0_orig" not in named
