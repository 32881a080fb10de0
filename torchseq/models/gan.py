"""GAN networks: the book's MLP generator/discriminator and the "CNN-like" (DCGAN-style) pair.

Each class mirrors a well-known Keras model layer for layer, with the Keras constructor defaults, so
``sum(p.numel() for p in m.parameters())`` plus the BatchNorm running statistics equals the "Total
params" of the Keras ``model.summary()`` (Keras counts BatchNorm's moving mean and variance as
non-trainable params; torch keeps them as buffers). The Keras code is in each class's docstring.

Differences from Keras that change no parameter count, and why:

- Discriminators return **logits**; the MLP's final ``sigmoid`` lives in the loss
  (``binary_cross_entropy_with_logits``), which is the numerically stable form of the same thing.
- Tensors are NCHW (torch) where Keras is NHWC, so importing the Dense weight next to a
  ``Reshape``/``Flatten`` needs its units permuted between (H, W, C) and (C, H, W) order.
- BatchNorm: Keras ``momentum=m`` is torch ``momentum=1 − m``; Keras' ``epsilon=1e-3`` is kept.
- ``padding="same"`` with stride 2 pads (or, transposed, crops) the extra pixel at the bottom/right in
  TensorFlow; :class:`SameConv2d` and :class:`SameConvTranspose2d` do exactly that, so outputs match
  Keras pixel for pixel once the weights are the same.

Every constructor takes ``image_shape`` first, so a task can build the network from a config-made
factory as ``factory(image_shape)`` (see :mod:`torchseq.tasks.gan`).

Generators emit ``output_activation`` = ``"tanh"`` images in [−1, 1] (the tutorials' choice, data scaled
by 2x − 1) or ``"sigmoid"`` in [0, 1]; :meth:`ImageGenerator.to_unit_interval` and
:meth:`ImageGenerator.from_unit_interval` convert, so callers work with [0, 1] images throughout.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from torchseq.checks import check_choice, check_positive_int

OUTPUT_ACTIVATIONS = {"tanh": nn.Tanh, "sigmoid": nn.Sigmoid}


def with_spectral_norm(network: nn.Module) -> nn.Module:
    """Every Linear and Conv2d weight of ``network`` divided by its largest singular value (Miyato et al.
    2018), estimated by one power iteration per training forward (``torch.nn.utils.parametrizations``).

    It bounds D's Lipschitz constant, the usual cure when D wins too easily and G collapses; the
    parameter count is unchanged (the power-iteration vectors are buffers).
    """
    for module in network.modules():
        if isinstance(module, (nn.Linear, nn.Conv2d)):
            nn.utils.parametrizations.spectral_norm(module)
    return network


def tf_same_padding(size: int, kernel: int, stride: int) -> tuple[int, int]:
    """TensorFlow's ``padding="same"`` for one spatial dimension: (before, after), the odd pixel after."""
    total = max((math.ceil(size / stride) - 1) * stride + kernel - size, 0)
    return total // 2, total - total // 2


class SameConv2d(nn.Conv2d):
    """``Conv2d`` with TensorFlow's ``padding="same"``: output size ⌈size / stride⌉, odd pad bottom/right."""

    def forward(self, input: Tensor) -> Tensor:
        (k_h, k_w), (s_h, s_w) = self.kernel_size, self.stride
        top, bottom = tf_same_padding(input.shape[-2], k_h, s_h)
        left, right = tf_same_padding(input.shape[-1], k_w, s_w)
        return super().forward(F.pad(input, (left, right, top, bottom)))


class SameConvTranspose2d(nn.ConvTranspose2d):
    """``ConvTranspose2d`` with TensorFlow's ``padding="same"``: output size = size · stride.

    The full transposed convolution is (size − 1)·stride + kernel long; TensorFlow crops the kernel −
    stride extra pixels, the odd one at the bottom/right (the transpose of :class:`SameConv2d`'s pad).
    """

    def forward(self, input: Tensor) -> Tensor:  # type: ignore[override]
        full = super().forward(input)  # (B, C, (H−1)·s + k, (W−1)·s + k)
        (k_h, k_w), (s_h, s_w) = self.kernel_size, self.stride
        top, bottom = _crop_of(k_h, s_h)
        left, right = _crop_of(k_w, s_w)
        return full[..., top : full.shape[-2] - bottom, left : full.shape[-1] - right]


def _crop_of(kernel: int, stride: int) -> tuple[int, int]:
    total = max(kernel - stride, 0)
    return total // 2, total - total // 2


class ImageGenerator(nn.Module):
    """Base of the generators: ``latent_dim``, ``image_shape`` and the conversion to [0, 1] images."""

    def __init__(self, image_shape: Sequence[int], latent_dim: int, output_activation: str) -> None:
        super().__init__()
        check_choice("output_activation", output_activation, tuple(OUTPUT_ACTIVATIONS))
        check_positive_int("latent_dim", latent_dim)
        self.latent_dim, self.output_activation = latent_dim, output_activation
        self.image_shape = tuple(int(size) for size in image_shape)

    def to_unit_interval(self, generated: Tensor) -> Tensor:
        """Generator output → images in [0, 1]."""
        return (generated + 1) / 2 if self.output_activation == "tanh" else generated

    def from_unit_interval(self, images: Tensor) -> Tensor:
        """Images in [0, 1] → the generator's output range (what the discriminator sees)."""
        return images * 2 - 1 if self.output_activation == "tanh" else images


class MLPGenerator(ImageGenerator):
    """The chapter's dense generator, as in the canonical Keras MNIST GAN (Keras-GAN ``gan.py``)::

        model = Sequential()
        model.add(Dense(256, input_dim=100))
        model.add(LeakyReLU(alpha=0.2))
        model.add(BatchNormalization(momentum=0.8))
        model.add(Dense(512))
        model.add(LeakyReLU(alpha=0.2))
        model.add(BatchNormalization(momentum=0.8))
        model.add(Dense(1024))
        model.add(LeakyReLU(alpha=0.2))
        model.add(BatchNormalization(momentum=0.8))
        model.add(Dense(28 * 28 * 1, activation="tanh"))
        model.add(Reshape((28, 28, 1)))
        # Total params: 1,493,520 (trainable 1,489,936; BatchNorm moving statistics 3,584)

    ``batch_norm=False`` gives the smaller variant without BatchNorm.
    """

    def __init__(
        self,
        image_shape: Sequence[int] = (1, 28, 28),
        latent_dim: int = 100,
        hidden_sizes: Sequence[int] = (256, 512, 1024),
        negative_slope: float = 0.2,
        batch_norm: bool = True,
        output_activation: str = "tanh",
    ) -> None:
        super().__init__(image_shape, latent_dim, output_activation)
        layers: list[nn.Module] = []
        width_in = latent_dim
        for width in hidden_sizes:
            layers += [nn.Linear(width_in, width), nn.LeakyReLU(negative_slope)]
            if batch_norm:
                layers.append(nn.BatchNorm1d(width, eps=1e-3, momentum=0.2))  # Keras momentum=0.8
            width_in = width
        self.net = nn.Sequential(
            *layers,
            nn.Linear(width_in, math.prod(self.image_shape)),
            OUTPUT_ACTIVATIONS[output_activation](),
            nn.Unflatten(1, self.image_shape),
        )

    def forward(self, noise: Tensor) -> Tensor:
        """Noise (B, latent_dim) → images (B, C, H, W) in the output activation's range."""
        return self.net(noise)


class MLPDiscriminator(nn.Module):
    """The chapter's dense discriminator, as in the canonical Keras MNIST GAN::

    model = Sequential()
    model.add(Flatten(input_shape=(28, 28, 1)))
    model.add(Dense(512))
    model.add(LeakyReLU(alpha=0.2))
    model.add(Dense(256))
    model.add(LeakyReLU(alpha=0.2))
    model.add(Dense(1, activation="sigmoid"))   # here: logits, the sigmoid is in the loss
    # Total params: 533,505
    """

    def __init__(
        self,
        image_shape: Sequence[int] = (1, 28, 28),
        hidden_sizes: Sequence[int] = (512, 256),
        negative_slope: float = 0.2,
        spectral_norm: bool = False,
    ) -> None:
        super().__init__()
        layers: list[nn.Module] = [nn.Flatten()]
        width_in = math.prod(image_shape)
        for width in hidden_sizes:
            layers += [nn.Linear(width_in, width), nn.LeakyReLU(negative_slope)]
            width_in = width
        self.net = nn.Sequential(*layers, nn.Linear(width_in, 1))
        if spectral_norm:
            with_spectral_norm(self.net)

    def forward(self, images: Tensor) -> Tensor:
        """Images (B, C, H, W) → real-vs-fake logits (B,)."""
        return self.net(images).squeeze(1)


class DCGANGenerator(ImageGenerator):
    """The "CNN-like" generator of the TensorFlow/Keras DCGAN tutorial::

        model = Sequential()
        model.add(layers.Dense(7 * 7 * 256, use_bias=False, input_shape=(100,)))
        model.add(layers.BatchNormalization())
        model.add(layers.LeakyReLU())                      # alpha=0.3
        model.add(layers.Reshape((7, 7, 256)))
        model.add(layers.Conv2DTranspose(128, (5, 5), strides=(1, 1), padding="same", use_bias=False))
        model.add(layers.BatchNormalization())
        model.add(layers.LeakyReLU())
        model.add(layers.Conv2DTranspose(64, (5, 5), strides=(2, 2), padding="same", use_bias=False))
        model.add(layers.BatchNormalization())
        model.add(layers.LeakyReLU())
        model.add(layers.Conv2DTranspose(1, (5, 5), strides=(2, 2), padding="same", use_bias=False,
                                         activation="tanh"))
        # Total params: 2,330,944 (trainable 2,305,472; BatchNorm moving statistics 25,472)

    ``channels`` are the (256, 128, 64) widths; the image grows 7 → 7 → 14 → 28.
    """

    def __init__(
        self,
        image_shape: Sequence[int] = (1, 28, 28),
        latent_dim: int = 100,
        channels: Sequence[int] = (256, 128, 64),
        negative_slope: float = 0.3,
        output_activation: str = "tanh",
    ) -> None:
        super().__init__(image_shape, latent_dim, output_activation)
        out_channels, height, width = self.image_shape
        if height % 4 or width % 4:
            raise ValueError(
                f"image_shape: H and W must be multiples of 4 (7 → 14 → 28), got {self.image_shape}"
            )
        first, second, third = channels
        grid = (first, height // 4, width // 4)

        def normalised(module: nn.Module, features: int, batch_norm: type[nn.Module]) -> list[nn.Module]:
            # Keras BatchNormalization defaults: momentum=0.99 (torch 0.01), epsilon=1e-3
            return [module, batch_norm(features, eps=1e-3, momentum=0.01), nn.LeakyReLU(negative_slope)]

        self.net = nn.Sequential(
            *normalised(nn.Linear(latent_dim, math.prod(grid), bias=False), math.prod(grid), nn.BatchNorm1d),
            nn.Unflatten(1, grid),  # (B, 256, 7, 7)
            *normalised(SameConvTranspose2d(first, second, 5, stride=1, bias=False), second, nn.BatchNorm2d),
            *normalised(SameConvTranspose2d(second, third, 5, stride=2, bias=False), third, nn.BatchNorm2d),
            SameConvTranspose2d(third, out_channels, 5, stride=2, bias=False),  # (B, 1, 28, 28)
            OUTPUT_ACTIVATIONS[output_activation](),
        )

    def forward(self, noise: Tensor) -> Tensor:
        """Noise (B, latent_dim) → images (B, C, H, W) in the output activation's range."""
        return self.net(noise)


class DCGANDiscriminator(nn.Module):
    """The "CNN-like" discriminator of the TensorFlow/Keras DCGAN tutorial::

    model = Sequential()
    model.add(layers.Conv2D(64, (5, 5), strides=(2, 2), padding="same", input_shape=[28, 28, 1]))
    model.add(layers.LeakyReLU())                      # alpha=0.3
    model.add(layers.Dropout(0.3))
    model.add(layers.Conv2D(128, (5, 5), strides=(2, 2), padding="same"))
    model.add(layers.LeakyReLU())
    model.add(layers.Dropout(0.3))
    model.add(layers.Flatten())
    model.add(layers.Dense(1))                         # logits
    # Total params: 212,865
    """

    def __init__(
        self,
        image_shape: Sequence[int] = (1, 28, 28),
        channels: Sequence[int] = (64, 128),
        negative_slope: float = 0.3,
        dropout: float = 0.3,
        spectral_norm: bool = False,
    ) -> None:
        super().__init__()
        in_channels, height, width = (int(size) for size in image_shape)
        first, second = channels
        flat = second * math.ceil(math.ceil(height / 2) / 2) * math.ceil(math.ceil(width / 2) / 2)
        self.net = nn.Sequential(
            SameConv2d(in_channels, first, 5, stride=2),  # (B, 64, H/2, W/2)
            nn.LeakyReLU(negative_slope),
            nn.Dropout(dropout),
            SameConv2d(first, second, 5, stride=2),  # (B, 128, H/4, W/4)
            nn.LeakyReLU(negative_slope),
            nn.Dropout(dropout),
            nn.Flatten(),
            nn.Linear(flat, 1),
        )
        if spectral_norm:
            with_spectral_norm(self.net)

    def forward(self, images: Tensor) -> Tensor:
        """Images (B, C, H, W) → real-vs-fake logits (B,)."""
        return self.net(images).squeeze(1)


def keras_param_count(module: nn.Module) -> int:
    """What Keras' ``model.summary()`` calls "Total params": parameters plus BatchNorm moving statistics."""
    statistics = sum(
        buffer.numel()
        for name, buffer in module.named_buffers()
        if name.endswith(("running_mean", "running_var"))
    )
    return sum(parameter.numel() for parameter in module.parameters()) + statistics


@torch.no_grad()
def sample_noise(count: int, latent_dim: int, generator: torch.Generator | None = None) -> Tensor:
    """Standard normal noise (count, latent_dim), the generators' input distribution."""
    return torch.randn(count, latent_dim, generator=generator)


def check_labels(labels: Tensor, count: int, num_classes: int) -> None:
    """Class labels (count,) int64 in 0..num_classes − 1, or a ValueError naming what came instead."""
    if labels.shape != (count,) or labels.dtype != torch.int64:
        raise ValueError(
            f"labels: expected int64 labels of shape ({count},), got {labels.dtype} {tuple(labels.shape)}"
        )
    if count and (int(labels.min()) < 0 or int(labels.max()) >= num_classes):
        raise ValueError(
            f"labels: expected values in 0..{num_classes - 1}, got {int(labels.min())}..{int(labels.max())}"
        )


class ConditionalDCGANGenerator(DCGANGenerator):
    """The DCGAN generator conditioned on a class: a learned embedding of the label joins the noise.

    The network is :class:`DCGANGenerator`'s with ``latent_dim + embedding_dim`` inputs (as in the Keras
    conditional-GAN examples); ``latent_dim`` stays the size of the noise alone.
    """

    def __init__(
        self,
        image_shape: Sequence[int] = (1, 28, 28),
        num_classes: int = 10,
        latent_dim: int = 100,
        embedding_dim: int = 50,
        channels: Sequence[int] = (256, 128, 64),
        negative_slope: float = 0.3,
        output_activation: str = "tanh",
    ) -> None:
        if num_classes < 2:
            raise ValueError(f"num_classes: expected at least 2 classes, got {num_classes!r}")
        super().__init__(image_shape, latent_dim + embedding_dim, channels, negative_slope, output_activation)
        self.latent_dim, self.num_classes = latent_dim, num_classes
        self.embedding = nn.Embedding(num_classes, embedding_dim)

    def forward(self, noise: Tensor, labels: Tensor) -> Tensor:  # type: ignore[override]
        """Noise (B, latent_dim) and labels (B,) → images (B, C, H, W) of those classes."""
        check_labels(labels, len(noise), self.num_classes)
        return self.net(torch.cat([noise, self.embedding(labels)], dim=1))


class ConditionalDCGANDiscriminator(DCGANDiscriminator):
    """The DCGAN discriminator conditioned on a class: the label, embedded as one extra H×W channel.

    A learned ``Embedding(num_classes, H·W)`` turns the label into an image-sized map stacked on the
    input (the Keras conditional-GAN tutorial's choice), so D judges "a real image *of this class*".
    """

    def __init__(
        self,
        image_shape: Sequence[int] = (1, 28, 28),
        num_classes: int = 10,
        channels: Sequence[int] = (64, 128),
        negative_slope: float = 0.3,
        dropout: float = 0.3,
        spectral_norm: bool = False,
    ) -> None:
        in_channels, height, width = (int(size) for size in image_shape)
        super().__init__((in_channels + 1, height, width), channels, negative_slope, dropout, spectral_norm)
        self.num_classes, self.grid = num_classes, (height, width)
        self.label_map = nn.Embedding(num_classes, height * width)

    def forward(self, images: Tensor, labels: Tensor) -> Tensor:  # type: ignore[override]
        """Images (B, C, H, W) and labels (B,) → real-vs-fake logits (B,)."""
        check_labels(labels, len(images), self.num_classes)
        maps = self.label_map(labels).unflatten(1, (1, *self.grid))  # (B, 1, H, W)
        return self.net(torch.cat([images, maps], dim=1)).squeeze(1)


class ProjectionDiscriminator(DCGANDiscriminator):
    r"""The DCGAN discriminator conditioned by projection (Miyato & Koyama 2018): the label is compared
    with the image's features instead of being stacked on the image.

    .. math::
        D(x, y) = w^\top \phi(x) + b + e_y^\top \phi(x)

    where :math:`\phi(x)` are the flattened convolutional features (the input of the output layer) and
    :math:`e_y` a learned embedding of class :math:`y`. The embeddings start at zero, so at
    initialisation D is the unconditional one and the class term grows only as far as the data asks.
    """

    def __init__(
        self,
        image_shape: Sequence[int] = (1, 28, 28),
        num_classes: int = 10,
        channels: Sequence[int] = (64, 128),
        negative_slope: float = 0.3,
        dropout: float = 0.3,
        spectral_norm: bool = False,
    ) -> None:
        if num_classes < 2:
            raise ValueError(f"num_classes: expected at least 2 classes, got {num_classes!r}")
        super().__init__(image_shape, channels, negative_slope, dropout, spectral_norm)
        self.num_classes = num_classes
        self.class_embedding = nn.Embedding(num_classes, self.net[-1].in_features)
        nn.init.zeros_(self.class_embedding.weight)

    def forward(self, images: Tensor, labels: Tensor) -> Tensor:  # type: ignore[override]
        """Images (B, C, H, W) and labels (B,) → real-vs-fake logits (B,)."""
        check_labels(labels, len(images), self.num_classes)
        features = self.net[:-1](images)  # φ(x): (B, F)
        return self.net[-1](features).squeeze(1) + (self.class_embedding(labels) * features).sum(dim=1)


class AuxiliaryClassifierDiscriminator(DCGANDiscriminator):
    """The DCGAN discriminator with a second head that names the class (AC-GAN, Odena, Olah & Shlens
    2017): it sees only the image, and two Linear layers on the same flattened features give the
    real-vs-fake logit and the ``num_classes`` class logits.

    ``forward(images, labels)`` gives the real-vs-fake logits (the labels are not read: they are in the
    signature of a conditional discriminator); ``both(images)`` gives both heads in one pass.
    """

    def __init__(
        self,
        image_shape: Sequence[int] = (1, 28, 28),
        num_classes: int = 10,
        channels: Sequence[int] = (64, 128),
        negative_slope: float = 0.3,
        dropout: float = 0.3,
        spectral_norm: bool = False,
    ) -> None:
        super().__init__(image_shape, channels, negative_slope, dropout, spectral_norm)
        self.num_classes = num_classes
        self.classes = nn.Linear(self.net[-1].in_features, num_classes)
        if spectral_norm:
            with_spectral_norm(self.classes)

    def both(self, images: Tensor) -> tuple[Tensor, Tensor]:
        """Images (B, C, H, W) → real-vs-fake logits (B,) and class logits (B, num_classes)."""
        features = self.net[:-1](images)
        return self.net[-1](features).squeeze(1), self.classes(features)

    def forward(self, images: Tensor, labels: Tensor | None = None) -> Tensor:  # type: ignore[override]
        """Images (B, C, H, W) → real-vs-fake logits (B,)."""
        if labels is not None:
            check_labels(labels, len(images), self.num_classes)
        return self.net(images).squeeze(1)
