"""Controls for the equivalence harness itself: a NaN or an infinity anywhere is a failure, never a zero."""

from __future__ import annotations

import math

import pytest
import torch
from _equivalence import Config, Differences, Outcome, Shape, assert_equivalent, compare, measure

from torchseq import compat

SHAPE = Shape(steps=3, batch=2, input_size=2, hidden_size=3, lengths=(3, 2))


def outcome() -> Outcome:
    generator = torch.Generator().manual_seed(0)
    draw = lambda *size: torch.randn(*size, generator=generator, dtype=torch.float64)  # noqa: E731
    return Outcome(draw(3, 2, 3), (draw(1, 2, 3), draw(1, 2, 3)),
                   {"input": draw(3, 2, 2), "hx[0]": draw(1, 2, 3), "weight_hh_l0": draw(12, 3)})


def poisoned(place: str, value: float) -> Outcome:
    result = outcome()
    tensor = {"output": result.output, "state": result.states[-1], **result.gradients}[place]
    tensor.view(-1)[-1] = value
    return result


@pytest.mark.parametrize("value", [math.nan, math.inf, -math.inf])
@pytest.mark.parametrize(("place", "field"), [("output", "output"), ("state", "states"),
                                              ("weight_hh_l0", "parameter_grads"), ("input", "input_grad"),
                                              ("hx[0]", "input_grad")])
def test_a_non_finite_value_fails_wherever_it_appears(place: str, field: str, value: float) -> None:
    assert compare(outcome(), outcome()).overall == 0.0  # identical outcomes: the baseline passes
    for ours, reference in ((poisoned(place, value), outcome()), (outcome(), poisoned(place, value))):
        differences = compare(ours, reference)
        assert getattr(differences, field) == math.inf
        assert Differences(0.0, 0.0, 0.0, 0.0).worst(differences).overall == math.inf
        with pytest.raises(AssertionError, match="differs from the reference"):
            assert_equivalent({"kernel vs fused": differences}, torch.float64)


def test_a_fused_path_with_a_nan_input_gradient_fails_the_equivalence_check(monkeypatch) -> None:
    """The mutation that once passed every equivalence test: the fused path's input gradient is NaN."""
    config = Config("lstm", input="lengths")
    assert_equivalent(measure(config, SHAPE, seed=1), torch.float64)  # unmutated: equivalent

    run_fused = compat.run_fused

    def nan_input_gradient(template, parameters, x, hx, lengths):
        x = x.clone()
        x.register_hook(lambda gradient: torch.full_like(gradient, math.nan))
        return run_fused(template, parameters, x, hx, lengths)

    monkeypatch.setattr(compat, "run_fused", nan_input_gradient)
    differences = measure(config, SHAPE, seed=1)
    assert differences["kernel vs fused"].input_grad == math.inf
    assert differences["kernel vs torch.nn"].overall <= 1e-10  # the real torch.nn reference is untouched
    with pytest.raises(AssertionError, match="differs from the reference"):
        assert_equivalent(differences, torch.float64)
