"""The VAE's ELBO: its two terms, their reduction, the KL warm-up and what the task logs."""

from __future__ import annotations

import math
from functools import partial

import lightning as L
import pytest
import torch
import torch.nn.functional as F

from tests._tiny_generative import TinyImages, tiny_trainer
from torchseq.models.vae import VAE, bernoulli_nll, gaussian_kl
from torchseq.tasks.vae import VAETask


def test_gaussian_kl_of_known_moments() -> None:
    # μ = (1, 0), σ² = (1, 4):  KL = ½ Σ (σ² + μ² − 1 − log σ²) = ½ (1 + 1 − 1 − 0) + ½ (4 + 0 − 1 − log 4)
    mean = torch.tensor([[1.0, 0.0]])
    log_variance = torch.tensor([[0.0, math.log(4.0)]])
    expected = 0.5 * 1.0 + 0.5 * (3.0 - math.log(4.0))
    assert gaussian_kl(mean, log_variance).item() == pytest.approx(expected, rel=1e-6)
    assert gaussian_kl(torch.zeros(3, 5), torch.zeros(3, 5)).tolist() == [0.0, 0.0, 0.0]  # q = prior


def test_bernoulli_nll_sums_over_pixels_per_image() -> None:
    torch.manual_seed(0)
    logits, images = torch.randn(2, 1, 4, 4), torch.rand(2, 1, 4, 4)
    p = torch.sigmoid(logits)
    expected = -(images * p.log() + (1 - images) * (1 - p).log()).flatten(1).sum(dim=1)
    torch.testing.assert_close(bernoulli_nll(logits, images), expected)


def test_elbo_decomposition_recon_plus_kl_is_minus_elbo(tmp_path) -> None:
    L.seed_everything(0)
    task = VAETask(partial(VAE, latent_dim=2, hidden_sizes=(16,)))
    images = torch.rand(8, 1, 28, 28)

    torch.manual_seed(1)
    recon, kl = task.elbo_terms(images)
    torch.manual_seed(1)  # the same ε: recompute the terms by hand from the model's outputs
    logits, mean, log_variance = task.model(images)
    by_hand_recon = (
        F.binary_cross_entropy_with_logits(logits, images, reduction="sum") / 8
    )  # Σ pixels, mean B
    by_hand_kl = (-0.5 * (1 + log_variance - mean**2 - log_variance.exp())).sum(dim=1).mean()
    torch.testing.assert_close(recon, by_hand_recon)
    torch.testing.assert_close(kl, by_hand_kl)

    results = tiny_trainer(tmp_path).validate(task, datamodule=TinyImages(), verbose=False)[0]
    assert results["val/elbo"] == pytest.approx(-(results["val/recon"] + results["val/kl"]), rel=1e-5)
    assert results["val/kl"] > 0 and results["val/recon"] > 0


class RecordBeta(L.Callback):
    def __init__(self) -> None:
        self.betas: list[float] = []

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        self.betas.append(pl_module.current_beta())


def test_kl_warmup_is_linear_in_optimizer_steps(tmp_path) -> None:
    task = VAETask(partial(VAE, latent_dim=2, hidden_sizes=(8,)), beta=2.0, kl_warmup_steps=4)
    recorder = RecordBeta()
    tiny_trainer(tmp_path, max_steps=6, callbacks=[recorder], limit_val_batches=0).fit(
        task, TinyImages(size=96)
    )
    assert recorder.betas == pytest.approx([0.0, 0.5, 1.0, 1.5, 2.0, 2.0])


def test_training_lowers_the_negative_elbo(tmp_path) -> None:
    L.seed_everything(0)
    task = VAETask(partial(VAE, latent_dim=2, hidden_sizes=(32,)))
    data = TinyImages()
    trainer = tiny_trainer(tmp_path, max_epochs=10)
    before = trainer.validate(task, datamodule=data, verbose=False)[0]["val/elbo"]
    trainer.fit(task, data)
    after = trainer.validate(task, datamodule=data, verbose=False)[0]["val/elbo"]
    assert after > before + 50  # nats per image; an untrained decoder scores about −784·log 2 ≈ −543


def test_vae_task_checks_its_arguments() -> None:
    with pytest.raises(ValueError, match=r"beta: expected a non-negative KL weight, got -1"):
        VAETask(VAE, beta=-1.0)
    with pytest.raises(ValueError, match=r"kl_warmup_steps: expected a non-negative number of steps"):
        VAETask(VAE, kl_warmup_steps=-5)
