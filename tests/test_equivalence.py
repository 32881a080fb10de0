"""The core promise: ``impl="custom"`` equals torch's fused kernels, outputs, states and every gradient.

Options come from the parametrized grids of ``_equivalence``; hypothesis draws the shapes, the
(unsorted) lengths and the seed of parameters, inputs and loss weights.
"""

from __future__ import annotations

import pytest
import torch
from _equivalence import (
    KINDS,
    REPORT_SHAPE,
    Config,
    Shape,
    assert_equivalent,
    dropout_grid,
    float32_grid,
    grid_examples,
    measure,
    measure_accuracy,
    option_grid,
    shapes,
)
from hypothesis import given, settings
from hypothesis import strategies as st

seeds = st.integers(0, 2**16)


@pytest.mark.parametrize("config", option_grid(), ids=lambda config: config.id)
@grid_examples
@given(shape=shapes(), seed=seeds)
def test_float64_option_grid(config: Config, shape: Shape, seed: int) -> None:
    assert_equivalent(measure(config, shape, seed=seed, dtype=torch.float64), torch.float64)


@pytest.mark.parametrize("config", float32_grid(), ids=lambda config: config.id)
@settings(max_examples=3)  # the simplest shape and two larger random ones
@given(shape=shapes(max_steps=12, max_batch=6, max_features=16), seed=seeds)
def test_float32_larger_shapes(config: Config, shape: Shape, seed: int) -> None:
    assert_equivalent(measure(config, shape, seed=seed, dtype=torch.float32), torch.float32)


@pytest.mark.parametrize("config", dropout_grid(), ids=lambda config: config.id)
@grid_examples
@given(shape=shapes(), seed=seeds)
def test_dropout_between_layers_in_eval_mode(config: Config, shape: Shape, seed: int) -> None:
    assert_equivalent(measure(config, shape, seed=seed, dtype=torch.float64), torch.float64)


@pytest.mark.parametrize("kind", KINDS)
def test_float32_custom_is_within_1e_5_of_the_float64_truth(kind: str) -> None:
    accuracy = measure_accuracy(Config(kind, 2, True, "lengths"), REPORT_SHAPE, seed=0)
    worst = max(differences.overall for name, differences in accuracy.items() if name.startswith("custom"))
    assert worst <= 1e-5, accuracy
