"""Image autoencoders: dense (MLP) and convolutional encoder/decoder pairs, and the ``Autoencoder``.

The chapter uses autoencoders for *dimensionality reduction* (a 784-pixel digit squeezed into a
2-number code that can be plotted) and *feature extraction* (the code as input to another model).
An ``Autoencoder`` is just ``decoder(encoder(x))``; the four building blocks below are shared with
the :mod:`torchseq.models.vae` (whose encoder outputs twice the latent size: μ and log σ²).

Decoders return **logits**: the sigmoid that maps them to pixel intensities in [0, 1] lives in the
loss (``binary_cross_entropy_with_logits``, numerically stable) and in :meth:`Autoencoder.reconstruct`.

Shapes: images (B, C, H, W); codes (B, latent_dim).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from itertools import pairwise

import torch
from torch import Tensor, nn

from torchseq.checks import check_choice, check_positive_int

ARCHITECTURES = ("dense", "conv")
ImageShape = tuple[int, int, int]


def check_image_shape(image_shape: Sequence[int]) -> ImageShape:
    if len(image_shape) != 3 or any(int(size) < 1 for size in image_shape):
        raise ValueError(f"image_shape: expected three positive sizes (C, H, W), got {tuple(image_shape)}")
    channels, height, width = (int(size) for size in image_shape)
    return channels, height, width


def check_images(images: Tensor, image_shape: ImageShape) -> None:
    """``images`` must be a batch (B, C, H, W) of ``image_shape``."""
    if images.dim() != 4 or tuple(images.shape[1:]) != image_shape:
        raise ValueError(
            f"images: expected shape (B, {', '.join(map(str, image_shape))}), got {tuple(images.shape)}"
        )


def _dense_stack(widths: Sequence[int]) -> list[nn.Module]:
    """Linear → ReLU between consecutive widths, no activation after the last Linear."""
    layers: list[nn.Module] = []
    for index, (width_in, width_out) in enumerate(pairwise(widths)):
        layers.append(nn.Linear(width_in, width_out))
        if index < len(widths) - 2:
            layers.append(nn.ReLU())
    return layers


class DenseEncoder(nn.Sequential):
    """Flatten → [Linear → ReLU] per hidden size → Linear(out_features)."""

    def __init__(self, image_shape: Sequence[int], hidden_sizes: Sequence[int], out_features: int) -> None:
        pixels = math.prod(check_image_shape(image_shape))
        super().__init__(nn.Flatten(), *_dense_stack([pixels, *hidden_sizes, out_features]))


class DenseDecoder(nn.Sequential):
    """The mirror of :class:`DenseEncoder`: code → hidden sizes reversed → pixel logits (B, C, H, W)."""

    def __init__(self, latent_dim: int, hidden_sizes: Sequence[int], image_shape: Sequence[int]) -> None:
        shape = check_image_shape(image_shape)
        widths = [latent_dim, *reversed(list(hidden_sizes)), math.prod(shape)]
        super().__init__(*_dense_stack(widths), nn.Unflatten(1, shape))


def _check_conv_shape(image_shape: Sequence[int]) -> ImageShape:
    shape = check_image_shape(image_shape)
    if shape[1] % 4 or shape[2] % 4:
        raise ValueError(
            f"image_shape: the conv architecture halves H and W twice, so both must be multiples of 4; "
            f"got {shape}"
        )
    return shape


class ConvEncoder(nn.Sequential):
    """Two stride-2 3×3 convolutions (H → H/4), then a dense layer: the Keras VAE example's encoder.

    Conv(C→c₁, s2) → ReLU → Conv(c₁→c₂, s2) → ReLU → Flatten → Linear(hidden) → ReLU → Linear(out).
    """

    def __init__(
        self,
        image_shape: Sequence[int],
        channels: Sequence[int] = (32, 64),
        hidden_size: int = 128,
        out_features: int = 2,
    ) -> None:
        in_channels, height, width = _check_conv_shape(image_shape)
        first, second = channels
        super().__init__(
            nn.Conv2d(in_channels, first, 3, stride=2, padding=1),  # (B, c₁, H/2, W/2)
            nn.ReLU(),
            nn.Conv2d(first, second, 3, stride=2, padding=1),  # (B, c₂, H/4, W/4)
            nn.ReLU(),
            nn.Flatten(),
            *_dense_stack([second * (height // 4) * (width // 4), hidden_size, out_features]),
        )


class ConvDecoder(nn.Sequential):
    """The mirror of :class:`ConvEncoder` with stride-2 transposed convolutions (H/4 → H)."""

    def __init__(
        self,
        latent_dim: int,
        image_shape: Sequence[int],
        channels: Sequence[int] = (32, 64),
        hidden_size: int = 128,
    ) -> None:
        out_channels, height, width = _check_conv_shape(image_shape)
        first, second = channels
        grid = (second, height // 4, width // 4)
        super().__init__(
            *_dense_stack([latent_dim, hidden_size, math.prod(grid)]),
            nn.ReLU(),
            nn.Unflatten(1, grid),  # (B, c₂, H/4, W/4)
            nn.ConvTranspose2d(second, first, 3, stride=2, padding=1, output_padding=1),  # (B, c₁, H/2, W/2)
            nn.ReLU(),
            nn.ConvTranspose2d(first, out_channels, 3, stride=2, padding=1, output_padding=1),  # (B, C, H, W)
        )


def make_encoder_decoder(
    architecture: str,
    image_shape: Sequence[int],
    latent_dim: int,
    hidden_sizes: Sequence[int],
    encoder_outputs: int,
) -> tuple[nn.Module, nn.Module]:
    """An encoder (images → ``encoder_outputs`` numbers) and a decoder (``latent_dim`` → pixel logits).

    ``"dense"``: one Linear per hidden size, mirrored in the decoder; ``"conv"``: the conv trunks with one
    dense layer of ``hidden_sizes[0]`` units.
    """
    check_choice("architecture", architecture, ARCHITECTURES)
    check_positive_int("latent_dim", latent_dim)
    if not hidden_sizes:
        raise ValueError("hidden_sizes: expected at least one hidden width, got an empty sequence")
    if architecture == "dense":
        encoder = DenseEncoder(image_shape, hidden_sizes, encoder_outputs)
        return encoder, DenseDecoder(latent_dim, hidden_sizes, image_shape)
    encoder = ConvEncoder(image_shape, hidden_size=hidden_sizes[0], out_features=encoder_outputs)
    return encoder, ConvDecoder(latent_dim, image_shape, hidden_size=hidden_sizes[0])


class Autoencoder(nn.Module):
    """``decoder(encoder(x))`` for images, with a ``latent_dim``-number code in between.

    Args:
        image_shape: (C, H, W) of the inputs.
        latent_dim: size of the code (2 for a code you can plot directly).
        architecture: ``"dense"`` (MLP, the Keras ``Dense`` autoencoder) or ``"conv"``.
        hidden_sizes: widths of the dense hidden layers, input side first (the decoder mirrors them);
            the conv architecture uses ``hidden_sizes[0]`` for its one dense layer.
    """

    def __init__(
        self,
        image_shape: Sequence[int] = (1, 28, 28),
        latent_dim: int = 2,
        architecture: str = "dense",
        hidden_sizes: Sequence[int] = (512, 128),
    ) -> None:
        super().__init__()
        self.image_shape = check_image_shape(image_shape)
        self.latent_dim, self.architecture = latent_dim, architecture
        self.encoder, self.decoder = make_encoder_decoder(
            architecture, image_shape, latent_dim, hidden_sizes, encoder_outputs=latent_dim
        )

    def encode(self, images: Tensor) -> Tensor:
        """(B, C, H, W) → codes (B, latent_dim)."""
        check_images(images, self.image_shape)
        return self.encoder(images)

    def decode(self, codes: Tensor) -> Tensor:
        """Codes (B, latent_dim) → pixel logits (B, C, H, W)."""
        return self.decoder(codes)

    def forward(self, images: Tensor) -> Tensor:
        """Pixel logits of the reconstruction, (B, C, H, W)."""
        return self.decode(self.encode(images))

    def reconstruct(self, images: Tensor) -> Tensor:
        """Reconstructed images in [0, 1]."""
        return torch.sigmoid(self(images))
