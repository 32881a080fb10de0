r"""``VAE``: a variational autoencoder for images, and the two terms of its ELBO.

The encoder maps an image x to a Gaussian q(z|x) = N(μ, diag σ²) over codes; the decoder maps a code z
to Bernoulli pixel probabilities p(x|z) = sigmoid(logits). Training maximises the evidence lower bound

.. math::
    \mathrm{ELBO}(x) = \mathbb{E}_{q(z|x)}[\log p(x|z)] - \mathrm{KL}(q(z|x)\,\|\,\mathcal{N}(0, I))

**Reduction, stated once for the whole package** (:func:`bernoulli_nll`, :func:`gaussian_kl`): each term
is *summed* over its own dimensions (pixels, latent units) and returned per image; the task then
*averages over the batch*. So the numbers are nats per image, and recon + KL = −ELBO exactly.

- Reconstruction: −log p(x|z) = Σ_pixels BCE-with-logits(logits, x), one sample z per image.
  MNIST pixels are grey levels in [0, 1], not binary, so this is a cross-entropy rather than a
  normalised likelihood of grey images (the common practice; the "nats" are on that scale).
- KL (closed form for a diagonal Gaussian against N(0, I)):
  KL = −½ Σ_j (1 + log σ²_j − μ_j² − σ²_j).

Reparameterisation: z = μ + σ ⊙ ε with ε ~ N(0, I), so the sample is differentiable in μ and log σ².
The encoder/decoder trunks are those of :mod:`torchseq.models.autoencoder` (``"dense"`` or ``"conv"``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from torchseq.models.autoencoder import check_image_shape, check_images, make_encoder_decoder


def bernoulli_nll(logits: Tensor, images: Tensor) -> Tensor:
    """−log p(x|z) per image: binary cross-entropy with logits summed over all pixels, (B,)."""
    return F.binary_cross_entropy_with_logits(logits, images, reduction="none").flatten(1).sum(dim=1)


def gaussian_kl(mean: Tensor, log_variance: Tensor) -> Tensor:
    """KL(N(μ, diag σ²) ‖ N(0, I)) per image, summed over latent units, (B,)."""
    return -0.5 * (1 + log_variance - mean.square() - log_variance.exp()).sum(dim=1)


class VAEOutput(NamedTuple):
    logits: Tensor  # (B, C, H, W) pixel logits of the reconstruction
    mean: Tensor  # (B, latent) μ of q(z|x)
    log_variance: Tensor  # (B, latent) log σ² of q(z|x)


class VAE(nn.Module):
    """Variational autoencoder of images with a dense (MLP) or convolutional encoder/decoder.

    The defaults mirror the Keras VAE example (MLP: 784 → 512 → 2-D latent; conv: two stride-2 3×3
    convolutions and a dense layer).

    Args:
        image_shape: (C, H, W) of the inputs.
        latent_dim: size of z.
        architecture: ``"dense"`` or ``"conv"``.
        hidden_sizes: dense hidden widths, input side first (conv uses ``hidden_sizes[0]``).
    """

    def __init__(
        self,
        image_shape: Sequence[int] = (1, 28, 28),
        latent_dim: int = 2,
        architecture: str = "dense",
        hidden_sizes: Sequence[int] = (512,),
    ) -> None:
        super().__init__()
        self.image_shape = check_image_shape(image_shape)
        self.latent_dim, self.architecture = latent_dim, architecture
        self.encoder, self.decoder = make_encoder_decoder(
            architecture,
            image_shape,
            latent_dim,
            hidden_sizes,
            encoder_outputs=2 * latent_dim,  # μ ‖ log σ²
        )

    def encode(self, images: Tensor) -> tuple[Tensor, Tensor]:
        """(B, C, H, W) → (μ, log σ²), each (B, latent_dim)."""
        check_images(images, self.image_shape)
        mean, log_variance = self.encoder(images).chunk(2, dim=1)
        return mean, log_variance

    def decode(self, codes: Tensor) -> Tensor:
        """Codes (B, latent_dim) → pixel logits (B, C, H, W)."""
        return self.decoder(codes)

    @staticmethod
    def reparameterise(mean: Tensor, log_variance: Tensor) -> Tensor:
        """z = μ + σ ⊙ ε, ε ~ N(0, I): a sample of q(z|x) through which gradients flow."""
        return mean + torch.randn_like(mean) * (0.5 * log_variance).exp()

    def forward(self, images: Tensor) -> VAEOutput:
        mean, log_variance = self.encode(images)
        return VAEOutput(self.decode(self.reparameterise(mean, log_variance)), mean, log_variance)

    def sample(self, codes: Tensor) -> Tensor:
        """Images in [0, 1] (Bernoulli means) decoded from prior codes z ~ N(0, I), (B, C, H, W)."""
        return torch.sigmoid(self.decode(codes))
