"""Shapes, parameter counts and input checks of the generative networks (torchseq.models)."""

from __future__ import annotations

import math

import pytest
import torch

from torchseq.models.autoencoder import Autoencoder
from torchseq.models.gan import (
    ConditionalDCGANDiscriminator,
    DCGANDiscriminator,
    DCGANGenerator,
    MLPDiscriminator,
    MLPGenerator,
    ProjectionDiscriminator,
    SameConv2d,
    SameConvTranspose2d,
    keras_param_count,
    tf_same_padding,
)
from torchseq.models.sequence_autoencoder import SequenceAutoencoder
from torchseq.models.vae import VAE

IMAGE = (1, 28, 28)


@pytest.mark.parametrize("architecture", ["dense", "conv"])
def test_autoencoder_shapes(architecture: str) -> None:
    model = Autoencoder(IMAGE, latent_dim=5, architecture=architecture, hidden_sizes=(32,))
    images = torch.rand(3, *IMAGE)
    codes = model.encode(images)
    assert codes.shape == (3, 5)
    assert model.decode(codes).shape == (3, *IMAGE)
    reconstruction = model.reconstruct(images)
    assert reconstruction.shape == (3, *IMAGE)
    assert reconstruction.min() >= 0 and reconstruction.max() <= 1


@pytest.mark.parametrize("architecture", ["dense", "conv"])
def test_vae_shapes(architecture: str) -> None:
    model = VAE(IMAGE, latent_dim=3, architecture=architecture, hidden_sizes=(16,))
    logits, mean, log_variance = model(torch.rand(4, *IMAGE))
    assert logits.shape == (4, *IMAGE)
    assert mean.shape == log_variance.shape == (4, 3)
    samples = model.sample(torch.randn(6, 3))
    assert samples.shape == (6, *IMAGE) and samples.min() >= 0 and samples.max() <= 1


def test_reparameterisation_has_the_posterior_moments() -> None:
    torch.manual_seed(0)
    mean, log_variance = torch.full((20000, 1), 2.0), torch.full((20000, 1), math.log(0.25))
    codes = VAE.reparameterise(mean, log_variance)
    assert codes.mean().item() == pytest.approx(2.0, abs=0.02)
    assert codes.std().item() == pytest.approx(0.5, abs=0.02)


@pytest.mark.parametrize(("cell", "impl"), [("lstm", "custom"), ("gru", "custom"), ("lstm", "fused")])
def test_sequence_autoencoder_shapes(cell: str, impl: str) -> None:
    model = SequenceAutoencoder(2, hidden_size=8, latent_dim=4, cell=cell, impl=impl)
    windows = torch.randn(5, 7, 2)
    assert model.encode(windows).shape == (5, 4)
    assert model(windows).shape == (5, 7, 2)
    expected = (model(windows) - windows).square().mean(dim=(1, 2))
    torch.testing.assert_close(model.anomaly_score(windows), expected)


def test_sequence_autoencoder_custom_and_fused_agree() -> None:
    torch.manual_seed(0)
    custom = SequenceAutoencoder(1, hidden_size=6, latent_dim=3, impl="custom")
    fused = SequenceAutoencoder(1, hidden_size=6, latent_dim=3, impl="fused")
    fused.load_state_dict(custom.state_dict())
    windows = torch.randn(4, 9, 1)
    torch.testing.assert_close(custom(windows), fused(windows), rtol=1e-5, atol=1e-5)


def test_gan_networks_shapes() -> None:
    noise = torch.randn(3, 100)
    for generator in (MLPGenerator().eval(), DCGANGenerator().eval()):
        images = generator(noise)
        assert images.shape == (3, *IMAGE)
        assert images.min() >= -1 and images.max() <= 1  # tanh
        unit = generator.to_unit_interval(images)
        assert unit.min() >= 0 and unit.max() <= 1
        torch.testing.assert_close(generator.from_unit_interval(unit), images)
    for discriminator in (MLPDiscriminator(), DCGANDiscriminator()):
        assert discriminator(torch.rand(3, *IMAGE)).shape == (3,)


# Keras' parameter formulas, to compare with model.summary()'s "Total params" of the mirrored models.
def dense(inputs: int, units: int, bias: bool = True) -> int:
    return inputs * units + (units if bias else 0)


def batch_norm(features: int) -> int:
    return 4 * features  # gamma, beta, moving mean, moving variance


def conv(kernel: int, inputs: int, filters: int, bias: bool = True) -> int:
    return kernel * kernel * inputs * filters + (filters if bias else 0)


def test_parameter_counts_match_the_keras_models() -> None:
    mlp_generator = sum(
        (
            dense(100, 256),
            batch_norm(256),
            dense(256, 512),
            batch_norm(512),
            dense(512, 1024),
            batch_norm(1024),
        )
    ) + dense(1024, 784)
    mlp_discriminator = dense(784, 512) + dense(512, 256) + dense(256, 1)
    dcgan_generator = dense(100, 7 * 7 * 256, bias=False) + batch_norm(7 * 7 * 256)
    dcgan_generator += conv(5, 256, 128, bias=False) + batch_norm(128)
    dcgan_generator += conv(5, 128, 64, bias=False) + batch_norm(64) + conv(5, 64, 1, bias=False)
    dcgan_discriminator = conv(5, 1, 64) + conv(5, 64, 128) + dense(7 * 7 * 128, 1)
    assert keras_param_count(MLPGenerator()) == mlp_generator
    assert keras_param_count(MLPDiscriminator()) == mlp_discriminator
    assert keras_param_count(DCGANGenerator()) == dcgan_generator
    assert keras_param_count(DCGANDiscriminator()) == dcgan_discriminator


@pytest.mark.parametrize(
    ("size", "kernel", "stride", "expected"), [(28, 5, 2, (1, 2)), (7, 5, 1, (2, 2)), (6, 3, 2, (0, 1))]
)
def test_tf_same_padding_puts_the_odd_pixel_last(
    size: int, kernel: int, stride: int, expected: tuple
) -> None:
    assert tf_same_padding(size, kernel, stride) == expected


@pytest.mark.parametrize("stride", [1, 2])
def test_same_transposed_convolution_is_the_adjoint_of_same_convolution(stride: int) -> None:
    """⟨conv(x), y⟩ = ⟨convᵀ(y), x⟩ with shared weights: the crop is exactly the transpose of the pad."""
    torch.manual_seed(0)
    forward = SameConv2d(2, 3, 5, stride=stride, bias=False).double()
    transposed = SameConvTranspose2d(3, 2, 5, stride=stride, bias=False).double()
    transposed.weight.data.copy_(forward.weight.data)  # both (in=…, out=…) layouts are (3, 2, 5, 5)
    x = torch.randn(1, 2, 14, 14, dtype=torch.float64)
    y = torch.randn(1, 3, 14 // stride, 14 // stride, dtype=torch.float64)
    assert forward(x).shape == y.shape and transposed(y).shape == x.shape
    torch.testing.assert_close((forward(x) * y).sum(), (transposed(y) * x).sum())


def test_bad_arguments_are_named() -> None:
    with pytest.raises(ValueError, match=r"image_shape: expected three positive sizes"):
        Autoencoder((28, 28))
    with pytest.raises(ValueError, match=r"image_shape: the conv architecture .* multiples of 4"):
        Autoencoder((1, 30, 30), architecture="conv")
    with pytest.raises(ValueError, match=r"architecture: expected one of \('dense', 'conv'\)"):
        VAE(architecture="mlp")
    with pytest.raises(ValueError, match=r"latent_dim: expected a positive int"):
        VAE(latent_dim=0)
    with pytest.raises(ValueError, match=r"images: expected shape \(B, 1, 28, 28\), got \(2, 784\)"):
        Autoencoder().encode(torch.rand(2, 784))
    with pytest.raises(ValueError, match=r"cell: expected one of \('lstm', 'gru'\)"):
        SequenceAutoencoder(1, cell="rnn")
    with pytest.raises(ValueError, match=r"windows: expected shape \(B, T, 2\) batch-first"):
        SequenceAutoencoder(2).encode(torch.randn(3, 5, 1))
    with pytest.raises(ValueError, match=r"output_activation: expected one of"):
        MLPGenerator(output_activation="relu")


@pytest.mark.parametrize("make", [
    lambda: MLPDiscriminator(spectral_norm=True),
    lambda: DCGANDiscriminator(spectral_norm=True),
    lambda: ConditionalDCGANDiscriminator(spectral_norm=True),
    lambda: ProjectionDiscriminator(spectral_norm=True),
], ids=["mlp", "dcgan", "conditional", "projection"])
def test_spectral_norm_bounds_every_weight_and_keeps_the_parameter_count(make) -> None:
    torch.manual_seed(0)
    discriminator, plain = make(), type(make())()
    assert keras_param_count(discriminator) == keras_param_count(plain)
    images, labels = torch.rand(4, 1, 28, 28), torch.arange(4)
    conditional = isinstance(discriminator, ConditionalDCGANDiscriminator | ProjectionDiscriminator)
    layers = [m for m in discriminator.modules() if isinstance(m, (torch.nn.Linear, torch.nn.Conv2d))]
    assert len(layers) == 3  # two hidden layers (dense or conv) and the output layer
    with torch.no_grad():  # weights far from norm 1, so that the check below cannot pass by itself
        for layer in layers:
            layer.parametrizations.weight.original.mul_(3.0)
    for _ in range(50):  # one power iteration per training-mode forward
        discriminator(images, labels) if conditional else discriminator(images)
    for layer in layers:
        # the weight the layer computes with has largest singular value 1 (the conv's as a matrix)
        sigma = torch.linalg.matrix_norm(layer.weight.detach().flatten(1), ord=2)
        assert sigma == pytest.approx(1.0, abs=1e-2)  # power iteration: the estimate converges slowly
        raw = torch.linalg.matrix_norm(layer.parametrizations.weight.original.detach().flatten(1), ord=2)
        assert raw > 1.5
