"""torchseq.keras against Keras 3 itself: same weights in, same outputs and final states out.

Keras runs on its PyTorch backend. Every Keras layer gets random weights (biases included, so a
misplaced bias cannot hide behind Keras' zero initialisation), which load_keras_weights copies into
the torchseq layer; outputs and states must then agree to float32 rounding (≤ 1e-5).
"""

import os
from collections.abc import Callable

import numpy as np
import pytest
import torch

import torchseq.keras as tk

os.environ["KERAS_BACKEND"] = "torch"  # read once, at Keras' first import
# Keras computes the reference in float32 on the CPU: on a GPU its cuDNN kernels would use TF32.
os.environ.setdefault("KERAS_TORCH_DEVICE", "cpu")
keras = pytest.importorskip("keras", reason="comparing with Keras needs Keras 3: pip install keras")
if keras.backend.backend() != "torch":
    pytest.skip(f"Keras was imported with the {keras.backend.backend()!r} backend", allow_module_level=True)

BATCH, STEPS, FEATURES, UNITS = 3, 6, 4, 5
TOLERANCE = 1e-5

#: name → (Keras layer factory, torchseq.keras layer factory); both take the shared Keras options.
LAYERS: dict[str, tuple[Callable, Callable]] = {
    "simple_rnn": (
        lambda **o: keras.layers.SimpleRNN(UNITS, **o),
        lambda **o: tk.SimpleRNN(FEATURES, UNITS, **o),
    ),
    "simple_rnn_relu": (
        lambda **o: keras.layers.SimpleRNN(UNITS, activation="relu", **o),
        lambda **o: tk.SimpleRNN(FEATURES, UNITS, activation="relu", **o),
    ),
    "lstm": (lambda **o: keras.layers.LSTM(UNITS, **o), lambda **o: tk.LSTM(FEATURES, UNITS, **o)),
    "lstm_no_bias": (
        lambda **o: keras.layers.LSTM(UNITS, use_bias=False, **o),
        lambda **o: tk.LSTM(FEATURES, UNITS, use_bias=False, **o),
    ),
    "gru": (lambda **o: keras.layers.GRU(UNITS, **o), lambda **o: tk.GRU(FEATURES, UNITS, **o)),
    "gru_reset_before": (
        lambda **o: keras.layers.GRU(UNITS, reset_after=False, **o),
        lambda **o: tk.GRU(FEATURES, UNITS, reset_after=False, **o),
    ),
    "gru_no_bias": (
        lambda **o: keras.layers.GRU(UNITS, use_bias=False, **o),
        lambda **o: tk.GRU(FEATURES, UNITS, use_bias=False, **o),
    ),
}
BIDIRECTIONAL_KINDS = ["simple_rnn", "lstm", "gru", "gru_reset_before"]
#: Where our layers run (Keras places itself); CUDA only on a machine that has it.
DEVICES = ["cpu", *(["cuda"] if torch.cuda.is_available() else [])]
MERGE_MODES = ["concat", "sum", "mul", "ave", None]


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(0)


def sequences(rng: np.random.Generator, batch: int = BATCH) -> torch.Tensor:
    return torch.tensor(rng.normal(size=(batch, STEPS, FEATURES)), dtype=torch.float32)


def randomize(layer, rng: np.random.Generator) -> None:
    layer.set_weights([rng.uniform(-0.6, 0.6, w.shape).astype("float32") for w in layer.get_weights()])


def as_arrays(outputs) -> list[np.ndarray]:
    outputs = list(outputs) if isinstance(outputs, list | tuple) else [outputs]
    return [keras.ops.convert_to_numpy(o) if not isinstance(o, torch.Tensor) else o.detach().cpu().numpy()
            for o in outputs]


def assert_same(keras_outputs, torch_outputs) -> None:
    expected, actual = as_arrays(keras_outputs), as_arrays(torch_outputs)
    assert len(actual) == len(expected), f"expected {len(expected)} returned tensors, got {len(actual)}"
    for index, (want, got) in enumerate(zip(expected, actual, strict=True)):
        assert got.shape == want.shape, f"output {index}: shape {got.shape} != Keras {want.shape}"
        np.testing.assert_allclose(got, want, rtol=0, atol=TOLERANCE, err_msg=f"output {index}")


def paired(kind: str, rng: np.random.Generator, bidirectional: dict | None = None, **options):
    """A built Keras layer with random weights and the torchseq layer loaded from it."""
    make_keras, make_ours = LAYERS[kind]
    if bidirectional is None:
        keras_layer, ours = make_keras(**options), make_ours(**options)
    else:
        keras_layer = keras.layers.Bidirectional(make_keras(**options), **bidirectional)
        ours = tk.Bidirectional(make_ours(**options), **bidirectional)
    keras_layer.build((BATCH, STEPS, FEATURES))
    randomize(keras_layer, rng)
    tk.load_keras_weights(ours, keras_layer)
    return keras_layer, ours.eval()


@pytest.mark.parametrize("options", [
    {}, {"return_sequences": True}, {"return_state": True}, {"go_backwards": True},
    {"return_sequences": True, "return_state": True, "go_backwards": True},
], ids=lambda o: "-".join(o) or "default")
@pytest.mark.parametrize("kind", list(LAYERS))
def test_recurrent_layer_matches_keras(kind, options, rng):
    keras_layer, ours = paired(kind, rng, **options)
    x = sequences(rng)
    assert_same(keras_layer(x), ours(x))


@pytest.mark.parametrize("return_sequences", [False, True])
@pytest.mark.parametrize("merge_mode", MERGE_MODES, ids=str)
@pytest.mark.parametrize("kind", BIDIRECTIONAL_KINDS)
def test_bidirectional_matches_keras(kind, merge_mode, return_sequences, rng):
    keras_layer, ours = paired(kind, rng, {"merge_mode": merge_mode}, return_sequences=return_sequences)
    x = sequences(rng)
    assert_same(keras_layer(x), ours(x))


@pytest.mark.parametrize("merge_mode", MERGE_MODES, ids=str)
@pytest.mark.parametrize("kind", ["lstm", "gru"])
def test_bidirectional_states_match_keras(kind, merge_mode, rng):
    keras_layer, ours = paired(kind, rng, {"merge_mode": merge_mode}, return_sequences=True,
                               return_state=True)
    x = sequences(rng)
    assert_same(keras_layer(x), ours(x))


@pytest.mark.parametrize("bidirectional", [None, {}], ids=["one_direction", "bidirectional"])
@pytest.mark.parametrize("kind", ["simple_rnn", "lstm", "gru"])
def test_stateful_carries_state_across_calls_like_keras(kind, bidirectional, rng):
    keras_layer, ours = paired(kind, rng, bidirectional, stateful=True, return_sequences=True)
    first, second = sequences(rng), sequences(rng)
    assert_same(keras_layer(first), ours(first))
    assert_same(keras_layer(second), ours(second))      # starts from the state the first call left
    keras_layer.reset_states()
    ours.reset_states()
    assert_same(keras_layer(second), ours(second))      # starts from zeros again


LENGTHS = [STEPS, 3, 1]  # full, padded, a single real step


def trailing_mask(lengths: list[int]) -> torch.Tensor:
    return torch.arange(STEPS).unsqueeze(0) < torch.tensor(lengths).unsqueeze(1)   # (B, T)


@pytest.mark.parametrize("options", [
    {}, {"return_sequences": True}, {"return_state": True}, {"go_backwards": True},
    {"return_sequences": True, "go_backwards": True, "return_state": True},
], ids=lambda o: "-".join(o) or "default")
@pytest.mark.parametrize("kind", ["simple_rnn", "lstm", "gru", "gru_reset_before"])
def test_mask_argument_matches_keras(kind, options, rng):
    keras_layer, ours = paired(kind, rng, **options)
    x, mask = sequences(rng), trailing_mask(LENGTHS)
    assert_same(keras_layer(x, mask=mask), ours(x, mask=mask))


@pytest.mark.parametrize("merge_mode", ["concat", "ave", None], ids=str)
@pytest.mark.parametrize("return_sequences", [False, True])
@pytest.mark.parametrize("kind", ["lstm", "gru"])
def test_bidirectional_mask_matches_keras(kind, return_sequences, merge_mode, rng):
    keras_layer, ours = paired(kind, rng, {"merge_mode": merge_mode}, return_sequences=return_sequences,
                               return_state=True)
    x, mask = sequences(rng), trailing_mask(LENGTHS)
    assert_same(keras_layer(x, mask=mask), ours(x, mask=mask))


def test_keras_masking_layer_matches_padding_mask(rng):
    """The book's way to feed padded sequences: Masking(0.0) in front of the recurrent layers."""
    model = keras.Sequential([
        keras.Input((STEPS, FEATURES)),
        keras.layers.Masking(0.0),
        keras.layers.Bidirectional(keras.layers.LSTM(UNITS, return_sequences=True)),
        keras.layers.LSTM(UNITS),
    ])
    for layer in model.layers:
        randomize(layer, rng)
    first = tk.Bidirectional(tk.LSTM(FEATURES, UNITS, return_sequences=True))
    second = tk.LSTM(2 * UNITS, UNITS)
    ours = torch.nn.ModuleList([first, second]).eval()
    tk.load_keras_weights(ours, model)
    x = sequences(rng).masked_fill(~trailing_mask(LENGTHS).unsqueeze(-1), 0.0)
    mask = tk.padding_mask(x, 0.0)
    assert_same(model(x), second(first(x, mask=mask), mask=mask))


@pytest.mark.parametrize("bidirectional", [None, {}], ids=["one_direction", "bidirectional"])
@pytest.mark.parametrize("kind", ["lstm", "gru"])
def test_initial_state_matches_keras(kind, bidirectional, rng):
    keras_layer, ours = paired(kind, rng, bidirectional, return_state=True)
    count = (2 if kind == "lstm" else 1) * (1 if bidirectional is None else 2)
    initial = [torch.tensor(rng.normal(size=(BATCH, UNITS)), dtype=torch.float32) for _ in range(count)]
    x = sequences(rng)
    assert_same(keras_layer(x, initial_state=initial), ours(x, initial_state=initial))


@pytest.mark.parametrize("activation", [None, "relu", "sigmoid", "tanh", "softmax"])
@pytest.mark.parametrize("use_bias", [True, False])
def test_dense_matches_keras(activation, use_bias, rng):
    keras_layer = keras.layers.Dense(UNITS, activation=activation, use_bias=use_bias)
    keras_layer.build((BATCH, FEATURES))
    randomize(keras_layer, rng)
    ours = tk.Dense(FEATURES, UNITS, activation=activation, use_bias=use_bias)
    tk.load_keras_weights(ours, keras_layer)
    x = sequences(rng)           # Dense acts on the last axis, (B, T, F) included
    assert_same(keras_layer(x), ours(x))


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("impl", ["custom", "fused"])
@pytest.mark.parametrize("bidirectional", [None, {}], ids=["one_direction", "bidirectional"])
@pytest.mark.parametrize("kind", ["simple_rnn", "lstm", "gru"])
def test_both_implementations_give_keras_outputs_on_each_device(kind, bidirectional, impl, device, rng,
                                                               monkeypatch):
    monkeypatch.setattr(torch.backends.cudnn, "allow_tf32", False)   # cuDNN's RNNs would round to TF32
    keras_layer, ours = paired(kind, rng, bidirectional, return_sequences=True, return_state=True)
    ours.core.impl = impl
    ours.to(device)
    x, mask = sequences(rng), trailing_mask(LENGTHS)
    assert_same(keras_layer(x, mask=mask), ours(x.to(device), mask=mask.to(device)))


def test_dropout_is_off_in_eval_like_keras_inference(rng):
    keras_layer, ours = paired("lstm", rng, dropout=0.5)
    x = sequences(rng)
    assert_same(keras_layer(x, training=False), ours.eval()(x))
