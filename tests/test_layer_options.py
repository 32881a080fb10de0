"""Keras-style layer options: merge_mode, go_backwards, stateful; each the same in both implementations."""

from __future__ import annotations

import pytest
import torch
from _equivalence import KINDS, Config
from torch import Tensor
from torch.nn.utils.rnn import pack_padded_sequence

from torchseq.recurrent import RecurrentLayers
from torchseq.recurrent.config import IMPLS

F64 = torch.float64
STEPS, BATCH, INPUT, HIDDEN = 6, 3, 4, 5
LENGTHS = torch.tensor([4, 6, 2])


def build(kind: str, impl: str, *, bidirectional: bool, num_layers: int = 1, **options) -> RecurrentLayers:
    """A float64 layer with the given front options; seeded, so equal calls give equal weights."""
    torch.manual_seed(0)
    layer = Config(kind, num_layers, bidirectional).build(INPUT, HIDDEN, dtype=F64, **options)
    layer.impl = impl
    return layer


def sequence(steps: int = STEPS, batch: int = BATCH, seed: int = 1) -> Tensor:
    return torch.randn(steps, batch, INPUT, generator=torch.Generator().manual_seed(seed), dtype=F64)


def states_of(final) -> tuple[Tensor, ...]:
    return final if isinstance(final, tuple) else (final,)


def assert_same(actual, expected) -> None:
    """Equal up to float64 round-off: tensors, or tuples of them (outputs or states)."""
    actual, expected = states_of(actual), states_of(expected)
    assert len(actual) == len(expected)
    for a, e in zip(actual, expected, strict=True):
        torch.testing.assert_close(a, e, rtol=0, atol=1e-12)


# -- merge_mode ------------------------------------------------------------------------------------
MERGES = {
    "sum": lambda forward, backward: forward + backward,
    "mul": lambda forward, backward: forward * backward,
    "ave": lambda forward, backward: (forward + backward) / 2,
    None: lambda forward, backward: (forward, backward),
}


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("merge_mode", list(MERGES), ids=str)
@pytest.mark.parametrize("num_layers", [1, 2])
@pytest.mark.parametrize("form", ["padded", "lengths", "packed"])
def test_merge_mode_combines_the_concatenated_halves(kind: str, impl: str, merge_mode: str | None,
                                                      num_layers: int, form: str) -> None:
    concat = build(kind, impl, bidirectional=True, num_layers=num_layers)
    merged = build(kind, impl, bidirectional=True, num_layers=num_layers, merge_mode=merge_mode)
    x = sequence()
    arguments = {"padded": ((x,), {}), "lengths": ((x,), {"lengths": LENGTHS}),
                 "packed": ((pack_padded_sequence(x, LENGTHS, enforce_sorted=False),), {})}[form]
    concat_output, concat_final = concat(*arguments[0], **arguments[1])
    merged_output, merged_final = merged(*arguments[0], **arguments[1])
    if form == "packed":  # the halves of a packed output are packed alike: compare their data
        concat_output = concat_output.data
        merged_output = (tuple(part.data for part in merged_output) if merge_mode is None
                         else merged_output.data)
    assert_same(merged_output, MERGES[merge_mode](*concat_output.chunk(2, dim=-1)))
    assert_same(merged_final, concat_final)  # merging touches the last layer's output only


# -- go_backwards ----------------------------------------------------------------------------------
def reversed_within_lengths(x: Tensor, lengths: Tensor | None) -> Tensor:
    """Each sequence read from its last real step back to its first; padding left in place."""
    if lengths is None:
        return x.flip(0)
    result = x.clone()
    for b, length in enumerate(lengths.tolist()):
        result[:length, b] = x[:length, b].flip(0)
    return result


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("bidirectional", [False, True], ids=["uni", "bi"])
@pytest.mark.parametrize("lengths", [None, LENGTHS], ids=["padded", "lengths"])
def test_go_backwards_runs_on_the_reversed_sequence(kind: str, impl: str, bidirectional: bool,
                                                    lengths: Tensor | None) -> None:
    backwards = build(kind, impl, bidirectional=bidirectional, go_backwards=True)
    plain = build(kind, impl, bidirectional=bidirectional)
    x = sequence()
    output, final = backwards(x, lengths=lengths)
    expected_output, expected_final = plain(reversed_within_lengths(x, lengths), lengths=lengths)
    assert_same(output, expected_output)  # in processing order, as Keras returns it
    assert_same(final, expected_final)


# -- stateful --------------------------------------------------------------------------------------
@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("bidirectional", [False, True], ids=["uni", "bi"])
def test_stateful_carries_the_final_state_until_reset(kind: str, impl: str, bidirectional: bool) -> None:
    stateful = build(kind, impl, bidirectional=bidirectional, num_layers=2, stateful=True)
    plain = build(kind, impl, bidirectional=bidirectional, num_layers=2)
    first, second = sequence(seed=1), sequence(seed=2)

    output, final = stateful(first)
    assert_same(output, plain(first)[0])
    output, next_final = stateful(second)
    expected_output, expected_final = plain(second, final)
    assert_same(output, expected_output)
    assert_same(next_final, expected_final)

    stateful.reset_states()
    assert_same(stateful(second)[0], plain(second)[0])


@pytest.mark.parametrize("impl", IMPLS)
def test_stateful_explicit_hx_wins_over_the_carried_state(impl: str) -> None:
    stateful = build("lstm", impl, bidirectional=False, stateful=True)
    plain = build("lstm", impl, bidirectional=False)
    hx = tuple(torch.randn(1, BATCH, HIDDEN, dtype=F64) for _ in range(2))
    stateful(sequence(seed=1))
    assert_same(stateful(sequence(seed=2), hx)[0], plain(sequence(seed=2), hx)[0])


@pytest.mark.parametrize("impl", IMPLS)
def test_stateful_state_is_detached_between_calls(impl: str) -> None:
    stateful = build("gru", impl, bidirectional=False, stateful=True)
    stateful(sequence(seed=1))[0].sum().backward()
    # Were the carried state still attached, this would backpropagate into the freed first graph.
    stateful(sequence(seed=2))[0].sum().backward()


@pytest.mark.parametrize("impl", IMPLS)
def test_stateful_refuses_a_new_batch_size_until_reset(impl: str) -> None:
    stateful = build("rnn_tanh", impl, bidirectional=False, stateful=True)
    stateful(sequence(batch=3))
    with pytest.raises(ValueError, match=r"stateful mode carries a state for batch size 3, got batch size 2"):
        stateful(sequence(batch=2))
    stateful.reset_states()
    assert stateful(sequence(batch=2))[0].shape == (STEPS, 2, HIDDEN)


# -- the two implementations agree on every option ---------------------------------------------------
@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("options", [
    {"merge_mode": "sum"}, {"merge_mode": "mul"}, {"merge_mode": "ave"}, {"merge_mode": None},
    {"go_backwards": True}, {"go_backwards": True, "merge_mode": "ave"}, {"stateful": True},
], ids=lambda options: ",".join(f"{key}={value}" for key, value in options.items()))
def test_custom_and_fused_agree_on_keras_options(kind: str, options: dict) -> None:
    layers = {impl: build(kind, impl, bidirectional=True, num_layers=2, **options) for impl in IMPLS}
    for seed in (1, 2):  # a second call, to see the stateful carry
        results = {impl: layer(sequence(seed=seed), lengths=LENGTHS) for impl, layer in layers.items()}
        assert_same(results["custom"][0], results["fused"][0])
        assert_same(results["custom"][1], results["fused"][1])
