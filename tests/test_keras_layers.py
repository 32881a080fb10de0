"""torchseq.keras layers on their own (no Keras needed): parameters, returns, masks, dropout, errors.

Keras itself is the reference in test_keras_equivalence.py; these tests pin down what holds without it.
"""

import subprocess
import sys

import pytest
import torch

import torchseq.keras as tk

B, T, F, U = 3, 7, 4, 5


@pytest.fixture
def x() -> torch.Tensor:
    return torch.randn(B, T, F, generator=torch.Generator().manual_seed(0))


def count(module: torch.nn.Module) -> int:
    return sum(parameter.numel() for parameter in module.parameters())


# Keras' own arithmetic for its summary: gates × units × (inputs + units + biases per gate).
@pytest.mark.parametrize(("layer", "keras_count"), [
    (lambda: tk.SimpleRNN(F, U), U * (F + U + 1)),
    (lambda: tk.SimpleRNN(F, U, use_bias=False), U * (F + U)),
    (lambda: tk.LSTM(F, U), 4 * U * (F + U + 1)),
    (lambda: tk.GRU(F, U), 3 * U * (F + U + 2)),                     # reset_after: input and recurrent bias
    (lambda: tk.GRU(F, U, reset_after=False), 3 * U * (F + U + 1)),
    (lambda: tk.Bidirectional(tk.LSTM(F, U)), 2 * 4 * U * (F + U + 1)),
    (lambda: tk.Dense(F, U), F * U + U),
], ids=["simple_rnn", "simple_rnn_no_bias", "lstm", "gru", "gru_reset_before", "bidirectional", "dense"])
def test_parameter_count_follows_keras(layer, keras_count):
    assert count(layer()) == keras_count


def test_keras_initialisation_of_the_lstm():
    core = tk.LSTM(F, U).core.cells[0]
    assert core.bias_hh is None                                       # one bias per gate, as in Keras
    torch.testing.assert_close(core.bias_ih[U : 2 * U], torch.ones(U))  # unit_forget_bias
    assert core.bias_ih[:U].abs().sum() == 0 and core.bias_ih[2 * U :].abs().sum() == 0
    gram = core.weight_hh.T @ core.weight_hh                          # Keras' orthogonal recurrent kernel
    torch.testing.assert_close(gram, torch.eye(U), atol=1e-5, rtol=0)


def test_dense_starts_with_zero_bias_and_applies_its_activation(x):
    dense = tk.Dense(F, U, activation="softmax")
    assert dense.bias.abs().sum() == 0
    torch.testing.assert_close(dense(x).sum(-1), torch.ones(B, T))


@pytest.mark.parametrize(("options", "shapes"), [
    ({}, [(B, U)]),
    ({"return_sequences": True}, [(B, T, U)]),
    ({"return_state": True}, [(B, U), (B, U), (B, U)]),
    ({"return_sequences": True, "return_state": True}, [(B, T, U), (B, U), (B, U)]),
])
def test_lstm_returns_what_keras_returns(options, shapes, x):
    outputs = tk.LSTM(F, U, **options)(x)
    outputs = outputs if isinstance(outputs, tuple) else (outputs,)
    assert [tuple(o.shape) for o in outputs] == shapes


@pytest.mark.parametrize(("merge_mode", "shapes"), [
    ("concat", [(B, T, 2 * U), (B, U), (B, U)]),
    ("sum", [(B, T, U), (B, U), (B, U)]),
    (None, [(B, T, U), (B, T, U), (B, U), (B, U)]),
])
def test_bidirectional_gru_returns_outputs_then_states_per_direction(merge_mode, shapes, x):
    layer = tk.Bidirectional(tk.GRU(F, U, return_sequences=True, return_state=True), merge_mode=merge_mode)
    assert [tuple(o.shape) for o in layer(x)] == shapes


def test_last_output_is_the_final_state(x):
    output, h, _ = tk.LSTM(F, U, return_state=True)(x)
    torch.testing.assert_close(output, h)


def test_go_backwards_reads_the_reversed_sequence(x):
    backwards = tk.LSTM(F, U, go_backwards=True, return_sequences=True)
    forwards = tk.LSTM(F, U, return_sequences=True)
    forwards.load_state_dict(backwards.state_dict())
    torch.testing.assert_close(backwards(x), forwards(x.flip(1)))


def test_stateful_layer_continues_where_it_stopped_until_reset(x):
    layer = tk.GRU(F, U, stateful=True)
    whole = tk.GRU(F, U)
    whole.load_state_dict(layer.state_dict())
    layer(x[:, :3])
    torch.testing.assert_close(layer(x[:, 3:]), whole(x))          # two chunks = one pass
    layer.reset_states()
    torch.testing.assert_close(layer(x[:, 3:]), whole(x[:, 3:]))
    with pytest.raises(ValueError, match="reset_states"):
        layer(x[:2])


def test_sequential_with_lengths_equals_each_sequence_alone(x):
    model = tk.BiLSTMClassifier(F, 3, units=U).eval()
    lengths = torch.tensor([T, 4, 1])
    batched = model(x, lengths)
    for row, length in enumerate(lengths.tolist()):
        torch.testing.assert_close(batched[row], model(x[row : row + 1, :length])[0], atol=1e-6, rtol=0)


def test_masked_steps_repeat_the_last_output_like_keras(x):
    layer = tk.SimpleRNN(F, U, return_sequences=True)
    mask = torch.arange(T) < torch.tensor([[T], [4], [1]])
    output = layer(x, mask=mask)
    torch.testing.assert_close(output[1, 4:], output[1, 3].expand(T - 4, U))
    torch.testing.assert_close(output[1, :4], layer(x[1:2, :4])[0])


def test_padding_mask_marks_steps_that_are_not_all_mask_value():
    padded = torch.tensor([[[1.0, 0.0], [0.0, 0.0]], [[0.0, 2.0], [3.0, 0.0]]])
    assert tk.padding_mask(padded).tolist() == [[True, False], [True, True]]
    assert tk.padding_mask(padded, mask_value=3.0).tolist() == [[True, True], [True, True]]


@pytest.mark.parametrize(("mask", "message"), [
    (torch.tensor([[True, False, True]]), r"trailing padding.*row\(s\) \[0\]"),
    (torch.tensor([[False, False, False]]), r"at least one True step.*row\(s\) \[0\]"),
    (torch.tensor([[True, True]]), r"mask: expected shape \(1, 3\), got \(1, 2\)"),
    ([[True, True, True]], "mask: expected a torch.Tensor, got list"),
])
def test_unusable_masks_are_refused(mask, message):
    with pytest.raises((ValueError, TypeError), match=message):
        tk.LSTM(2, U)(torch.randn(1, 3, 2), mask=mask)


def test_mask_and_lengths_together_are_refused(x):
    with pytest.raises(ValueError, match="mask or lengths, got both"):
        tk.LSTM(F, U)(x, mask=torch.ones(B, T, dtype=torch.bool), lengths=torch.full((B,), T))


def test_time_shared_dropout_uses_one_mask_for_every_step():
    ones = torch.ones(64, T, F)
    dropped = tk.time_shared_dropout(ones, 0.5, training=True)
    assert set(dropped.unique().tolist()) <= {0.0, 2.0}                   # inverted dropout, 1 / (1 − 0.5)
    assert (dropped == dropped[:, :1]).all()                             # the same at every timestep
    assert 0 < (dropped == 0).float().mean() < 1
    assert tk.time_shared_dropout(ones, 0.5, training=False) is ones


@pytest.mark.parametrize(("make", "error", "message"), [
    (lambda: tk.Dense(F, U, activation="gelu"), ValueError, "activation: expected one of"),
    (lambda: tk.SimpleRNN(F, U, activation="sigmoid"), ValueError, "activation: expected one of"),
    (lambda: tk.LSTM(F, U, dropout=1.0), ValueError, r"dropout: expected a probability in \[0, 1\)"),
    (lambda: tk.Bidirectional(tk.Dense(F, U)), TypeError, "layer: expected a torchseq.keras SimpleRNN"),
    (lambda: tk.Bidirectional(tk.LSTM(F, U, go_backwards=True)), ValueError, "go_backwards=False"),
    (lambda: tk.Bidirectional(tk.LSTM(F, U), merge_mode="max"), ValueError, "merge_mode: expected one of"),
])
def test_bad_configurations_are_refused(make, error, message):
    with pytest.raises(error, match=message):
        make()


@pytest.mark.parametrize(("layer", "given", "message"), [
    (lambda: tk.LSTM(F, U), 1, r"expected 2 tensor\(s\) \[h, c\], got 1"),
    (lambda: tk.Bidirectional(tk.GRU(F, U)), 1, r"expected 2 tensor\(s\) \[h_f, h_b\], got 1"),
])
def test_wrong_number_of_initial_states_is_refused(layer, given, message, x):
    with pytest.raises(ValueError, match=message):
        layer()(x, initial_state=[torch.zeros(B, U)] * given)


def test_importing_torchseq_keras_needs_neither_keras_nor_h5py():
    code = "import sys, torchseq.keras; print(sorted({'keras', 'h5py'} & set(sys.modules)))"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]"
