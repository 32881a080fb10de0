"""Training a VAE: maximise the ELBO, optionally with a linearly warmed-up KL weight β.

The reduction is fixed in :mod:`torchseq.models.vae`: each term is summed over its own dimensions
(pixels for the reconstruction, latent units for the KL) and then averaged over the batch, so every
number below is in **nats per image** and ``recon + kl = −elbo``.

Training minimises ``recon + β·kl``. With ``kl_warmup_steps = N > 0``, β grows linearly from 0 to
``beta`` over the first N optimizer steps (KL annealing: the decoder learns to use the code before the
KL term pulls every posterior onto the prior); afterwards it stays at ``beta``. Validation and test
always report the true ELBO (β = 1) whatever β training uses.

Logged per stage (``train``/``val``/``test``): ``recon``, ``kl``, ``elbo`` (the bound itself, negative);
training also logs ``loss`` (the β-weighted objective) and ``beta``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import lightning as L
import torch
from torch import Tensor

from torchseq.models.autoencoder import ImageShape
from torchseq.models.vae import VAE, bernoulli_nll, gaussian_kl


class VAETask(L.LightningModule):
    """Fit a :class:`~torchseq.models.vae.VAE` by maximising its ELBO.

    The optimiser is Adam(lr=1e-3) unless a config's ``optimizer:`` replaces it.

    Args:
        model: builds the VAE as ``model(image_shape)``, e.g.
            ``functools.partial(VAE, architecture="conv", latent_dim=2)``.
        image_shape: (C, H, W) of the images (linked from the data module by the CLI).
        beta: the KL weight after warm-up (1 = the ELBO; > 1 = β-VAE).
        kl_warmup_steps: optimizer steps over which β rises linearly from 0 (0 = no warm-up).
    """

    def __init__(
        self,
        model: Callable[[ImageShape], VAE],
        image_shape: ImageShape = (1, 28, 28),
        beta: float = 1.0,
        kl_warmup_steps: int = 0,
    ) -> None:
        super().__init__()
        if beta < 0:
            raise ValueError(f"beta: expected a non-negative KL weight, got {beta!r}")
        if kl_warmup_steps < 0:
            raise ValueError(
                f"kl_warmup_steps: expected a non-negative number of steps, got {kl_warmup_steps!r}"
            )
        self.save_hyperparameters()
        self.model = model(tuple(image_shape))

    @property
    def latent_dim(self) -> int:
        return self.model.latent_dim

    def current_beta(self) -> float:
        """β at the current optimizer step: linear warm-up to ``beta`` over ``kl_warmup_steps``."""
        warmup = self.hparams.kl_warmup_steps
        progress = 1.0 if warmup == 0 else min(1.0, self.global_step / warmup)
        return self.hparams.beta * progress

    def elbo_terms(self, images: Tensor) -> tuple[Tensor, Tensor]:
        """Batch means of the reconstruction term −log p(x|z) and of KL(q(z|x) ‖ p(z)), nats per image."""
        logits, mean, log_variance = self.model(images)
        return bernoulli_nll(logits, images).mean(), gaussian_kl(mean, log_variance).mean()

    def _log_terms(self, stage: str, recon: Tensor, kl: Tensor, batch_size: int) -> None:
        on_step = stage == "train"
        values = {f"{stage}/recon": recon, f"{stage}/kl": kl, f"{stage}/elbo": -(recon + kl)}
        self.log_dict(values, on_step=on_step, on_epoch=True, batch_size=batch_size)

    def training_step(self, batch: tuple[Tensor, ...], batch_idx: int) -> Tensor:
        images = batch[0]
        recon, kl = self.elbo_terms(images)
        beta = self.current_beta()
        loss = recon + beta * kl
        self._log_terms("train", recon, kl, len(images))
        self.log("train/loss", loss, on_step=True, on_epoch=True, prog_bar=True, batch_size=len(images))
        self.log("train/beta", beta, on_step=True, on_epoch=False)
        return loss

    def _evaluate(self, batch: tuple[Tensor, ...], stage: str) -> None:
        images = batch[0]
        recon, kl = self.elbo_terms(images)
        self._log_terms(stage, recon, kl, len(images))
        self.log(f"{stage}/loss", recon + kl, prog_bar=True, batch_size=len(images))

    def validation_step(self, batch: tuple[Tensor, ...], batch_idx: int) -> None:
        self._evaluate(batch, "val")

    def test_step(self, batch: tuple[Tensor, ...], batch_idx: int) -> None:
        self._evaluate(batch, "test")

    def configure_optimizers(self) -> Any:
        return torch.optim.Adam(self.parameters(), lr=1e-3)

    # -- what the image callbacks call ------------------------------------------------------------
    def sample(self, codes: Tensor) -> Tensor:
        """Images in [0, 1] decoded from prior codes (B, latent_dim)."""
        return self.model.sample(codes)

    def encode(self, images: Tensor) -> Tensor:
        """The posterior means μ (B, latent_dim): the deterministic code of each image."""
        return self.model.encode(images)[0]

    def decode(self, codes: Tensor) -> Tensor:
        return self.model.sample(codes)

    def reconstruct(self, images: Tensor) -> Tensor:
        """Images in [0, 1] decoded from the posterior means."""
        return self.decode(self.encode(images))
