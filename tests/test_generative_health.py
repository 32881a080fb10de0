"""GANHealth on deliberately broken GANs: a generator that ignores its noise, a discriminator that wins."""

from __future__ import annotations

import math
from functools import partial

import lightning as L
import pytest
import torch
from torch import Tensor, nn

from tests._tiny_generative import TinyImages, tiny_trainer
from torchseq.callbacks.gan_health import GANHealth, HealthRules, mean_pairwise_distance
from torchseq.models.gan import (
    ConditionalDCGANDiscriminator,
    ImageGenerator,
    MLPDiscriminator,
    MLPGenerator,
)
from torchseq.tasks.gan import ConditionalGANTask, GANTask


class ConstantGenerator(ImageGenerator):
    """Broken on purpose: one learned image whatever the noise (total mode collapse)."""

    def __init__(self, image_shape, latent_dim: int = 8) -> None:
        super().__init__(image_shape, latent_dim, "tanh")
        self.image = nn.Parameter(torch.zeros(1, *self.image_shape))

    def forward(self, noise: Tensor) -> Tensor:
        return torch.tanh(self.image).expand(len(noise), *self.image_shape) + 0 * noise.sum()


class FrozenNoiseGenerator(ImageGenerator):
    """Broken on purpose: varied images (a fixed random map of the noise) that cannot learn."""

    def __init__(self, image_shape, latent_dim: int = 8) -> None:
        super().__init__(image_shape, latent_dim, "tanh")
        self.register_buffer("projection", torch.randn(latent_dim, math.prod(self.image_shape)))
        self.unused = nn.Parameter(torch.zeros(()))  # something for the generator's optimizer to hold

    def forward(self, noise: Tensor) -> Tensor:
        images = torch.tanh(noise @ self.projection).unflatten(1, self.image_shape)
        return images + 0 * self.unused


def run(tmp_path, generator, lr: float, epochs: int, health: GANHealth) -> L.Trainer:
    L.seed_everything(0)
    task = GANTask(generator, partial(MLPDiscriminator, hidden_sizes=(32, 16)), lr=lr)
    trainer = tiny_trainer(tmp_path, max_epochs=epochs, callbacks=[health])
    trainer.fit(task, TinyImages())
    return trainer


def test_a_generator_that_ignores_its_noise_is_flagged_as_collapse(tmp_path) -> None:
    health = GANHealth(num_samples=32, patience=2)
    with pytest.warns(UserWarning, match="GAN health: mode collapse at epoch 1: sample diversity 0.000"):
        trainer = run(tmp_path, ConstantGenerator, lr=2e-4, epochs=3, health=health)
    assert health.collapse.epochs == [1, 2]  # patience 2: raised on the second collapsed epoch
    assert float(trainer.callback_metrics["health/collapse"]) == 1.0
    assert float(trainer.callback_metrics["health/diversity"]) == pytest.approx(0.0, abs=1e-6)
    assert "mode collapse: FLAGGED at epoch(s) 1, 2" in health.summary()


def test_a_discriminator_that_wins_outright_is_flagged_as_divergence(tmp_path) -> None:
    health = GANHealth(num_samples=32, patience=2)
    with pytest.warns(UserWarning, match="GAN health: divergence at epoch"):
        trainer = run(tmp_path, FrozenNoiseGenerator, lr=1e-2, epochs=6, health=health)
    assert health.divergence.epochs and health.divergence.epochs[-1] == 5
    assert (
        float(trainer.callback_metrics["train/d_real"]) - float(trainer.callback_metrics["train/d_fake"])
        >= 0.9
    )
    assert not health.collapse.epochs  # the frozen map still draws varied images
    assert float(trainer.callback_metrics["health/diversity"]) > 0.4
    assert "divergence: FLAGGED" in health.summary() and "mode collapse: not flagged" in health.summary()


def test_a_learning_gan_raises_no_flag(tmp_path) -> None:
    health = GANHealth(num_samples=32)
    generator = partial(MLPGenerator, latent_dim=8, hidden_sizes=(16, 32))
    run(tmp_path, generator, lr=2e-4, epochs=3, health=health)
    assert health.epochs_checked == 3
    assert not health.collapse.epochs and not health.divergence.epochs
    assert health.summary().count("not flagged") == 2


def test_rules_on_given_numbers() -> None:
    rules = HealthRules()
    assert rules.collapse(0.9, 1.0) is None
    assert "diversity 0.100" in rules.collapse(0.1, 1.0)
    assert "class coverage 0.20" in rules.collapse(0.9, 0.2)
    balanced = {"train/d_real": 0.6, "train/d_fake": 0.4, "train/d_loss": 0.6, "train/g_loss": 0.9}
    assert rules.divergence(balanced) is None
    assert "separates" in rules.divergence(balanced | {"train/d_real": 0.99, "train/d_fake": 0.02})
    assert "generator loss 7.00" in rules.divergence(balanced | {"train/g_loss": 7.0})
    assert "train/d_loss not finite" in rules.divergence(balanced | {"train/d_loss": float("nan")})


def test_mean_pairwise_distance_and_bad_arguments() -> None:
    points = torch.tensor([[0.0, 0.0], [3.0, 4.0], [0.0, 0.0]])  # distances 5, 0, 5
    assert mean_pairwise_distance(points) == pytest.approx(10 / 3)
    with pytest.raises(ValueError, match="num_samples: expected at least 2"):
        GANHealth(num_samples=1)
    with pytest.raises(ValueError, match="patience: expected a positive number of epochs, got 0"):
        GANHealth(patience=0)


class OneImagePerClassGenerator(ImageGenerator):
    """Broken on purpose: a learned image per class, whatever the noise (collapse within each class)."""

    def __init__(self, image_shape, num_classes: int, latent_dim: int = 8) -> None:
        super().__init__(image_shape, latent_dim, "tanh")
        self.images = nn.Parameter(torch.randn(num_classes, *self.image_shape))

    def forward(self, noise: Tensor, labels: Tensor) -> Tensor:
        return torch.tanh(self.images[labels]) + 0 * noise.sum()


def test_a_conditional_generator_with_one_image_per_class_is_flagged_within_the_classes(tmp_path) -> None:
    L.seed_everything(0)
    health = GANHealth(num_samples=32, patience=2)
    task = ConditionalGANTask(
        OneImagePerClassGenerator, partial(ConditionalDCGANDiscriminator, channels=(4, 8)), num_classes=4
    )
    with pytest.warns(UserWarning, match=r"mode collapse at epoch 1: class \d: sample diversity 0.000"):
        trainer = tiny_trainer(tmp_path, max_epochs=2, callbacks=[health])
        trainer.fit(task, TinyImages())
    assert float(trainer.callback_metrics["health/diversity"]) > 0.4  # the classes differ from each other
    assert float(trainer.callback_metrics["health/class_diversity"]) == pytest.approx(0.0, abs=1e-4)
    assert sorted(health.real_class_diversity) == [0, 1, 2, 3]
    assert health.collapse.epochs == [1]


class NoisyPerClassGenerator(OneImagePerClassGenerator):
    """A class image plus a fixed random map of the noise: varied within every class."""

    def __init__(self, image_shape, num_classes: int, latent_dim: int = 8) -> None:
        super().__init__(image_shape, num_classes, latent_dim)
        self.register_buffer("projection", torch.randn(latent_dim, math.prod(self.image_shape)))

    def forward(self, noise: Tensor, labels: Tensor) -> Tensor:
        return torch.tanh(self.images[labels] + (noise @ self.projection).unflatten(1, self.image_shape))


def test_a_conditional_generator_varied_within_each_class_is_not_flagged(tmp_path) -> None:
    L.seed_everything(0)
    health = GANHealth(num_samples=32)
    task = ConditionalGANTask(
        NoisyPerClassGenerator, partial(ConditionalDCGANDiscriminator, channels=(4, 8)), num_classes=4
    )
    trainer = tiny_trainer(tmp_path, max_epochs=2, callbacks=[health])
    trainer.fit(task, TinyImages())
    assert float(trainer.callback_metrics["health/class_diversity"]) > 0.4
    assert not health.collapse.epochs
