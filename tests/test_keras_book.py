"""The chapter's Keras models against their torchseq versions: the same parameters, the same outputs.

Each Keras model is the book's code (Keras 3 spelling: ``keras.Input`` instead of ``input_shape=``,
``negative_slope`` instead of ``alpha``); the counts compared are those of Keras' ``model.summary()``.
"""

import os
from collections.abc import Callable

import numpy as np
import pytest
import torch
from torch import nn

import torchseq.keras as tk
from torchseq.models.gan import (
    DCGANDiscriminator,
    DCGANGenerator,
    MLPDiscriminator,
    MLPGenerator,
    keras_param_count,
)

os.environ["KERAS_BACKEND"] = "torch"  # read once, at Keras' first import
# Keras computes the reference in float32 on the CPU: on a GPU its cuDNN kernels would use TF32.
os.environ.setdefault("KERAS_TORCH_DEVICE", "cpu")
keras = pytest.importorskip("keras", reason="comparing with Keras needs Keras 3: pip install keras")
if keras.backend.backend() != "torch":
    pytest.skip(f"Keras was imported with the {keras.backend.backend()!r} backend", allow_module_level=True)
layers = keras.layers


# -- the book's recurrent examples -------------------------------------------------------------------
def keras_simple_rnn():
    return keras.Sequential([
        keras.Input((30, 12)),
        layers.SimpleRNN(units=512, dropout=0.2),
        layers.Dense(5, activation="softmax"),
    ])


def keras_lstm(timesteps: int = 28, features: int = 28, num_classes: int = 10):
    return keras.Sequential([
        keras.Input((timesteps, features)),
        layers.LSTM(128),
        layers.Dense(num_classes, activation="softmax"),
    ])


def keras_bilstm():
    return keras.Sequential([
        keras.Input((5, 10)),
        layers.Bidirectional(layers.LSTM(10, return_sequences=True)),
        layers.Bidirectional(layers.LSTM(10)),
        layers.Dense(5, activation="softmax"),
    ])


#: name → (Keras model, torchseq model, input shape (T, F))
RECURRENT_EXAMPLES: dict[str, tuple[Callable, Callable[..., nn.Module], tuple[int, int]]] = {
    "simple_rnn": (keras_simple_rnn, tk.SimpleRNNClassifier, (30, 12)),
    "lstm": (keras_lstm, tk.LSTMClassifier, (28, 28)),
    "bilstm": (keras_bilstm, tk.BiLSTMClassifier, (5, 10)),
}


@pytest.mark.parametrize("name", list(RECURRENT_EXAMPLES))
def test_book_model_has_the_parameters_of_keras_summary(name):
    make_keras, make_ours, _ = RECURRENT_EXAMPLES[name]
    model, ours = make_keras(), make_ours()
    assert [sum(p.numel() for p in layer.parameters()) for layer in ours] == \
        [layer.count_params() for layer in model.layers]
    assert keras_param_count(ours) == model.count_params()


@pytest.mark.parametrize("name", list(RECURRENT_EXAMPLES))
def test_book_model_loaded_from_keras_gives_keras_probabilities(name):
    make_keras, make_ours, (steps, features) = RECURRENT_EXAMPLES[name]
    model = make_keras()
    rng = np.random.default_rng(0)
    # Scaled by 1/√(fan-in) so that SimpleRNN(512) stays out of the chaotic regime, where any float32
    # rounding difference (a different summation order) grows over the 30 steps.
    model.set_weights([rng.uniform(-1, 1, w.shape).astype("float32") / np.sqrt(w.shape[0])
                       for w in model.get_weights()])
    ours = make_ours(output_activation="softmax").eval()
    tk.load_keras_weights(ours, model)
    x = torch.tensor(rng.normal(size=(4, steps, features)), dtype=torch.float32)
    expected = keras.ops.convert_to_numpy(model(x, training=False))
    np.testing.assert_allclose(ours(x).detach().numpy(), expected, rtol=0, atol=1e-5)


# -- the chapter's GANs (networks in torchseq.models.gan) ----------------------------------------------
def keras_mlp_generator():
    model = keras.Sequential([keras.Input((100,))])
    for width in (256, 512, 1024):
        model.add(layers.Dense(width))
        model.add(layers.LeakyReLU(negative_slope=0.2))
        model.add(layers.BatchNormalization(momentum=0.8))
    model.add(layers.Dense(28 * 28 * 1, activation="tanh"))
    model.add(layers.Reshape((28, 28, 1)))
    return model


def keras_mlp_discriminator():
    return keras.Sequential([
        keras.Input((28, 28, 1)),
        layers.Flatten(),
        layers.Dense(512), layers.LeakyReLU(negative_slope=0.2),
        layers.Dense(256), layers.LeakyReLU(negative_slope=0.2),
        layers.Dense(1, activation="sigmoid"),
    ])


def keras_dcgan_generator():
    return keras.Sequential([
        keras.Input((100,)),
        layers.Dense(7 * 7 * 256, use_bias=False), layers.BatchNormalization(), layers.LeakyReLU(),
        layers.Reshape((7, 7, 256)),
        layers.Conv2DTranspose(128, (5, 5), strides=(1, 1), padding="same", use_bias=False),
        layers.BatchNormalization(), layers.LeakyReLU(),
        layers.Conv2DTranspose(64, (5, 5), strides=(2, 2), padding="same", use_bias=False),
        layers.BatchNormalization(), layers.LeakyReLU(),
        layers.Conv2DTranspose(1, (5, 5), strides=(2, 2), padding="same", use_bias=False, activation="tanh"),
    ])


def keras_dcgan_discriminator():
    return keras.Sequential([
        keras.Input((28, 28, 1)),
        layers.Conv2D(64, (5, 5), strides=(2, 2), padding="same"), layers.LeakyReLU(), layers.Dropout(0.3),
        layers.Conv2D(128, (5, 5), strides=(2, 2), padding="same"), layers.LeakyReLU(), layers.Dropout(0.3),
        layers.Flatten(),
        layers.Dense(1),
    ])


GAN_NETWORKS: dict[str, tuple[Callable, Callable[[], nn.Module]]] = {
    "mlp_generator": (keras_mlp_generator, MLPGenerator),
    "mlp_discriminator": (keras_mlp_discriminator, MLPDiscriminator),
    "dcgan_generator": (keras_dcgan_generator, DCGANGenerator),
    "dcgan_discriminator": (keras_dcgan_discriminator, DCGANDiscriminator),
}


@pytest.mark.parametrize("name", list(GAN_NETWORKS))
def test_gan_network_has_the_parameters_of_keras_summary(name):
    make_keras, make_ours = GAN_NETWORKS[name]
    model, ours = make_keras(), make_ours()
    trainable = sum(int(np.prod(w.shape)) for w in model.trainable_weights)
    assert sum(p.numel() for p in ours.parameters()) == trainable
    assert keras_param_count(ours) == model.count_params()   # + BatchNorm moving statistics


@pytest.mark.parametrize("name", ["mlp_generator", "dcgan_generator"])
def test_generators_make_keras_shaped_images(name):
    make_keras, make_ours = GAN_NETWORKS[name]
    height, width, channels = make_keras().output_shape[1:]
    assert make_ours().eval()(torch.randn(2, 100)).shape == (2, channels, height, width)
