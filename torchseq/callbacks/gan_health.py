"""``GANHealth``: flags the two classic GAN failures while training runs, and sums them up at the end.

- **Mode collapse**: the generator maps different noise to (nearly) the same image. Measured by the
  *diversity ratio*: the mean pairwise L2 distance between ``num_samples`` samples from fixed noise,
  divided by the same mean over as many real validation images (≈ 1 for a varied generator, 0 for one
  that ignores its noise). When :class:`~torchseq.callbacks.sample_quality.SampleQuality` logs
  ``val/class_coverage``, a coverage below ``min_class_coverage`` counts as collapse too. For a
  class-conditional task (``pl_module.num_classes`` and ``sample(z, labels)``) the same ratio is also
  taken *within* each class — samples of class c against the real validation images of class c — and
  the worst class, ``health/class_diversity``, below ``min_diversity`` counts as collapse: a generator
  that draws one image per class has a healthy overall diversity but a within-class ratio near 0.
- **Divergence**: the discriminator wins outright and the generator's gradient vanishes, or training
  blows up. Flagged when a loss is not finite, or when the epoch means of D's probabilities separate by
  at least ``max_separation`` (``train/d_real − train/d_fake``, 1 = perfect separation), or the
  generator loss (−log D(G(z))) exceeds ``max_g_loss``.

A flag is raised after its condition held for ``patience`` consecutive epochs (a non-finite loss
flags at once). Each epoch logs ``health/diversity``, ``health/collapse`` and ``health/divergence``
(0/1) to the progress bar and the metrics; the first epoch a flag rises prints a warning naming the
numbers, and :meth:`summary` (printed when fitting ends) lists every flagged epoch. Needs
``pl_module.latent_dim``, ``pl_module.sample(z)`` (images in [0, 1]) and the GAN task's ``train/d_real``,
``train/d_fake``, ``train/d_loss`` and ``train/g_loss`` epoch metrics.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import lightning as L
import torch
from lightning.pytorch.utilities import rank_zero_info, rank_zero_warn
from torch import Tensor

from torchseq.callbacks.history import epoch_metrics
from torchseq.callbacks.image_grids import require_methods
from torchseq.modes import evaluating


def mean_pairwise_distance(images: Tensor) -> float:
    """Mean L2 distance between the distinct pairs of ``images`` (N, ...), N ≥ 2."""
    flat = images.flatten(1).double()
    count = len(flat)
    return float(torch.cdist(flat, flat).sum() / (count * (count - 1)))


@dataclass
class HealthRules:
    """The thresholds of :class:`GANHealth` and the rules that apply them to one epoch's numbers."""

    min_diversity: float = 0.4
    min_class_coverage: float = 0.5
    max_separation: float = 0.9
    max_g_loss: float = 6.0

    def collapse(
        self,
        diversity: float | None,
        class_coverage: float | None,
        worst_class: tuple[int, float] | None = None,
    ) -> str | None:
        """Why these numbers mean mode collapse, or None. ``worst_class``: (class, its within-class
        diversity ratio) of the class with the lowest one."""
        if diversity is not None and diversity < self.min_diversity:
            return f"sample diversity {diversity:.3f} of the real images' (< {self.min_diversity})"
        if worst_class is not None and worst_class[1] < self.min_diversity:
            label, ratio = worst_class
            real = f"the real class-{label} images'"
            return f"class {label}: sample diversity {ratio:.3f} of {real} (< {self.min_diversity})"
        if class_coverage is not None and class_coverage < self.min_class_coverage:
            return f"class coverage {class_coverage:.2f} (< {self.min_class_coverage})"
        return None

    def divergence(self, metrics: dict[str, float]) -> str | None:
        """Why an epoch's ``train/*`` means show divergence, or None."""
        losses = {name: metrics[name] for name in ("train/d_loss", "train/g_loss") if name in metrics}
        broken = [name for name, value in losses.items() if not math.isfinite(value)]
        if broken:
            return f"{', '.join(broken)} not finite"
        d_real, d_fake = metrics.get("train/d_real"), metrics.get("train/d_fake")
        if d_real is not None and d_fake is not None and d_real - d_fake >= self.max_separation:
            return (
                f"discriminator separates real from fake (D(x) {d_real:.3f}, D(G(z)) {d_fake:.3f}, "
                f"gap ≥ {self.max_separation})"
            )
        g_loss = losses.get("train/g_loss")
        if g_loss is not None and g_loss > self.max_g_loss:
            return f"generator loss {g_loss:.2f} (> {self.max_g_loss})"
        return None


@dataclass
class Flag:
    """One failure kind: how many epochs in a row its condition held, and the epochs it was raised."""

    name: str
    streak: int = 0
    epochs: list[int] = field(default_factory=list)
    reasons: list[str] = field(default_factory=list)

    def update(self, epoch: int, reason: str | None, patience: int, immediate: bool = False) -> bool:
        """Record one epoch; return whether the flag is up."""
        self.streak = self.streak + 1 if reason else 0
        raised = reason is not None and (immediate or self.streak >= patience)
        if raised:
            if not self.epochs:
                rank_zero_warn(f"GAN health: {self.name} at epoch {epoch}: {reason}")
            self.epochs.append(epoch)
            self.reasons.append(reason)
        return raised


class GANHealth(L.Callback):
    """Flag mode collapse and divergence of a GAN each epoch (see the module docstring).

    Args:
        num_samples: samples (and real validation images) for the diversity ratio.
        seed: seed of the fixed noise.
        patience: consecutive epochs a condition must hold before its flag rises.
        min_diversity: collapse below this diversity ratio.
        min_class_coverage: collapse below this ``val/class_coverage`` (when logged).
        max_separation: divergence at or above this ``train/d_real − train/d_fake``.
        max_g_loss: divergence above this ``train/g_loss`` epoch mean.
    """

    def __init__(
        self,
        num_samples: int = 256,
        seed: int = 0,
        patience: int = 2,
        min_diversity: float = 0.4,
        min_class_coverage: float = 0.5,
        max_separation: float = 0.9,
        max_g_loss: float = 6.0,
    ) -> None:
        if num_samples < 2:
            raise ValueError(f"num_samples: expected at least 2 (pairs of samples), got {num_samples!r}")
        if patience < 1:
            raise ValueError(f"patience: expected a positive number of epochs, got {patience!r}")
        self.num_samples, self.seed, self.patience = num_samples, seed, patience
        self.rules = HealthRules(min_diversity, min_class_coverage, max_separation, max_g_loss)
        self.collapse, self.divergence = Flag("mode collapse"), Flag("divergence")
        self.epochs_checked = 0
        self.real_diversity: float | None = None
        self.diversity: float | None = None
        self.real_class_diversity: dict[int, float] = {}
        self.worst_class: tuple[int, float] | None = None

    def on_fit_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        require_methods(pl_module, self, "latent_dim", "sample")
        generator = torch.Generator().manual_seed(self.seed)
        self.noise = torch.randn(self.num_samples, pl_module.latent_dim, generator=generator)
        real, labels = [], []
        for images, *rest in trainer.datamodule.val_dataloader():
            real.append(images)
            labels.extend(rest[:1])
        images = torch.cat(real)
        self.real_diversity = mean_pairwise_distance(images[: self.num_samples])
        if hasattr(pl_module, "num_classes") and labels:  # conditional: the real spread of each class
            labels = torch.cat(labels)
            self.real_class_diversity = {
                label: mean_pairwise_distance(images[labels == label][: self.num_samples])
                for label in range(pl_module.num_classes)
                if int((labels == label).sum()) >= 2
            }

    def on_validation_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.sanity_checking:
            return
        noise = self.noise.to(pl_module.device)
        with evaluating(pl_module):
            samples = pl_module.sample(noise).cpu()
            per_class = {
                label: pl_module.sample(noise, torch.full((len(noise),), label, device=noise.device)).cpu()
                for label in self.real_class_diversity
            }
        self.diversity = mean_pairwise_distance(samples) / max(self.real_diversity or 0.0, 1e-12)
        ratios = {
            label: mean_pairwise_distance(images) / max(self.real_class_diversity[label], 1e-12)
            for label, images in per_class.items()
        }
        self.worst_class = min(ratios.items(), key=lambda item: item[1]) if ratios else None

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        epoch, metrics = trainer.current_epoch, epoch_metrics(trainer)
        collapse_reason = self.rules.collapse(
            self.diversity, metrics.get("val/class_coverage"), self.worst_class
        )
        divergence_reason = self.rules.divergence(metrics)
        not_finite = divergence_reason is not None and divergence_reason.endswith("not finite")
        flags = {
            "health/collapse": float(self.collapse.update(epoch, collapse_reason, self.patience)),
            "health/divergence": float(
                self.divergence.update(epoch, divergence_reason, self.patience, immediate=not_finite)
            ),
        }
        if self.diversity is not None:
            flags["health/diversity"] = self.diversity
        if self.worst_class is not None:
            flags["health/class_diversity"] = self.worst_class[1]
        self.diversity = self.worst_class = None  # an epoch without validation judges on no stale number
        self.epochs_checked += 1
        pl_module.log_dict(flags, prog_bar=True)

    def on_fit_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        rank_zero_info(self.summary())

    def summary(self) -> str:
        """One line per failure kind: healthy, or the epochs it was flagged and the first reason."""
        lines = [f"GAN health over {self.epochs_checked} epochs:"]
        for flag in (self.collapse, self.divergence):
            if flag.epochs:
                epochs = ", ".join(str(epoch) for epoch in flag.epochs)
                lines.append(f"  {flag.name}: FLAGGED at epoch(s) {epochs}; first: {flag.reasons[0]}")
            else:
                lines.append(f"  {flag.name}: not flagged")
        return "\n".join(lines)

    def state_dict(self) -> dict[str, Any]:
        return {
            "epochs_checked": self.epochs_checked,
            "flags": {flag.name: vars(flag).copy() for flag in (self.collapse, self.divergence)},
        }

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.epochs_checked = state_dict["epochs_checked"]
        self.collapse = Flag(**state_dict["flags"]["mode collapse"])
        self.divergence = Flag(**state_dict["flags"]["divergence"])
