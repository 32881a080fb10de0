"""load_keras_weights: Keras 3 models, .keras archives and .weights.h5 files into torchseq.keras modules."""

import itertools
import os
import zipfile

import numpy as np
import pytest
import torch
from torch import nn

import torchseq.keras as tk

os.environ["KERAS_BACKEND"] = "torch"  # read once, at Keras' first import
# Keras computes the reference in float32 on the CPU: on a GPU its cuDNN kernels would use TF32.
os.environ.setdefault("KERAS_TORCH_DEVICE", "cpu")
keras = pytest.importorskip("keras", reason="writing Keras weights needs Keras 3: pip install keras")
h5py = pytest.importorskip("h5py", reason="reading Keras weight files needs h5py: pip install h5py")
if keras.backend.backend() != "torch":
    pytest.skip(f"Keras was imported with the {keras.backend.backend()!r} backend", allow_module_level=True)

STEPS, FEATURES = 5, 3


def randomized(model, seed: int = 0):
    rng = np.random.default_rng(seed)
    model.set_weights([rng.uniform(-0.5, 0.5, w.shape).astype("float32") for w in model.get_weights()])
    return model


def keras_model():
    """Every layer type once, so a single file exercises each layout."""
    return randomized(keras.Sequential([
        keras.Input((STEPS, FEATURES)),
        keras.layers.Bidirectional(keras.layers.GRU(4, return_sequences=True), merge_mode="sum"),
        keras.layers.SimpleRNN(6, return_sequences=True),
        keras.layers.LSTM(5),
        keras.layers.Dense(2, activation="softmax"),
    ]))


def torchseq_model() -> tk.Sequential:
    return tk.Sequential(
        tk.Bidirectional(tk.GRU(FEATURES, 4, return_sequences=True), merge_mode="sum"),
        tk.SimpleRNN(4, 6, return_sequences=True),
        tk.LSTM(6, 5),
        tk.Dense(5, 2, activation="softmax"),
    ).eval()


def inputs(batch: int = 4) -> torch.Tensor:
    return torch.randn(batch, STEPS, FEATURES, generator=torch.Generator().manual_seed(1))


def assert_same_outputs(model, ours: nn.Module) -> None:
    x = inputs()
    expected = keras.ops.convert_to_numpy(model(x))
    np.testing.assert_allclose(ours(x).detach().numpy(), expected, rtol=0, atol=1e-5)


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    """The reference model and the two files Keras writes for it."""
    folder = tmp_path_factory.mktemp("keras")
    model = keras_model()
    model.save(folder / "model.keras")
    model.save_weights(folder / "model.weights.h5")
    return model, folder


@pytest.mark.parametrize("source", ["object", "model.keras", "model.weights.h5"])
def test_loaded_model_computes_what_keras_computes(saved, source):
    model, folder = saved
    ours = torchseq_model()
    pairs = tk.load_keras_weights(ours, model if source == "object" else folder / source)
    assert [torchseq_name for _, torchseq_name in pairs] == ["0", "1", "2", "3"]
    assert_same_outputs(model, ours)


def test_weights_file_pairs_layers_of_a_class_by_number_not_by_name(tmp_path):
    """dense_10 comes after dense_2: the file's group names must be ordered by their number."""
    widths = list(range(2, 15))
    model = randomized(keras.Sequential([keras.Input((widths[0],)),
                                         *[keras.layers.Dense(width) for width in widths[1:]]]))
    model.save_weights(tmp_path / "dense.weights.h5")
    ours = tk.Sequential(*[tk.Dense(a, b) for a, b in itertools.pairwise(widths)])
    tk.load_keras_weights(ours, tmp_path / "dense.weights.h5")
    x = torch.randn(3, widths[0])
    np.testing.assert_allclose(ours(x).detach().numpy(), keras.ops.convert_to_numpy(model(x)), atol=1e-5)


def nested_functional_model():
    sequence = keras.Input((STEPS, FEATURES))
    encoded = keras.layers.LSTM(4)(sequence)
    head = keras.Sequential([keras.layers.Dense(3), keras.layers.Dense(2)], name="head")
    return randomized(keras.Model(sequence, keras.layers.Dense(2)(head(encoded))))


def nested_torchseq_model() -> nn.Module:
    return tk.Sequential(tk.LSTM(FEATURES, 4), tk.Sequential(tk.Dense(4, 3), tk.Dense(3, 2)), tk.Dense(2, 2))


def test_keras_archive_keeps_the_order_of_nested_models(tmp_path):
    model = nested_functional_model()
    model.save(tmp_path / "nested.keras")
    ours = nested_torchseq_model().eval()
    tk.load_keras_weights(ours, tmp_path / "nested.keras")
    assert_same_outputs(model, ours)


def test_weights_file_of_a_nested_model_is_refused(tmp_path):
    nested_functional_model().save_weights(tmp_path / "nested.weights.h5")
    with pytest.raises(ValueError, match=r"nested model .*'sequential'.* load the \.keras file"):
        tk.load_keras_weights(nested_torchseq_model(), tmp_path / "nested.weights.h5")


def test_shape_mismatch_names_both_layers_and_both_shapes(saved):
    model, _ = saved
    ours = torchseq_model()
    ours[2] = tk.LSTM(6, 7)       # Keras has LSTM(5)
    with pytest.raises(ValueError, match=(
        r"Keras layer 'lstm(_\d+)?' \(LSTM\) → torchseq '2': kernel: expected shape \(6, 28\) "
        r"\(Keras' layout of core.weight_ih_l0 \(28, 6\)\), got \(6, 20\)"
    )):
        tk.load_keras_weights(ours, model)


def test_missing_layer_is_reported_by_class(saved):
    model, _ = saved
    message = r"expected Keras layers with weights \{'Dense': 1\}.*got \{'Bidirectional'"
    with pytest.raises(ValueError, match=message):
        tk.load_keras_weights(tk.Dense(5, 2), model)


def test_bias_mismatch_is_reported(saved):
    model, _ = saved
    ours = torchseq_model()
    ours[3] = tk.Dense(5, 2, use_bias=False)
    with pytest.raises(ValueError, match=r"'3': expected 1 variables \(kernel\), got 2"):
        tk.load_keras_weights(ours, model)


def test_bidirectional_of_another_layer_class_is_refused(saved):
    model, _ = saved
    ours = torchseq_model()
    ours[0] = tk.Bidirectional(tk.LSTM(FEATURES, 4, return_sequences=True), merge_mode="sum")
    with pytest.raises(ValueError, match=r"expected Bidirectional\(LSTM\), got Bidirectional\(GRU\)"):
        tk.load_keras_weights(ours, model)


def test_failed_load_leaves_earlier_layers_loaded_but_never_half_a_layer(saved):
    model, _ = saved
    ours = torchseq_model()
    ours[2] = tk.LSTM(6, 7)
    before = {name: value.clone() for name, value in ours[2].state_dict().items()}
    with pytest.raises(ValueError):
        tk.load_keras_weights(ours, model)
    for name, value in ours[2].state_dict().items():
        torch.testing.assert_close(value, before[name])


@pytest.mark.parametrize(("source", "error", "message"), [
    ("missing.keras", FileNotFoundError, "source: no such file"),
    ("model.txt", ValueError, r"expected a '.keras' or '.weights.h5' file"),
    ("legacy.h5", ValueError, "not a Keras 3 weights file"),
    ("broken.keras", ValueError, "not a Keras 3 archive"),
    (42, TypeError, "source: expected a Keras model or layer, or a path"),
])
def test_unusable_sources_are_refused(tmp_path, source, error, message):
    (tmp_path / "model.txt").write_text("not weights")
    with h5py.File(tmp_path / "legacy.h5", "w") as file:
        file.create_group("model_weights")            # the Keras 2 layout
    with zipfile.ZipFile(tmp_path / "broken.keras", "w") as archive:
        archive.writestr("config.json", "{}")
    path = source if isinstance(source, int) else tmp_path / source
    with pytest.raises(error, match=message):
        tk.load_keras_weights(tk.Dense(2, 2), path)
