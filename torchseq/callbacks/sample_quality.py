"""Per-epoch sample quality of an MNIST generator, offline: Fréchet distance and class coverage.

Both are measured with torchseq's own MNIST-5k classifier (:mod:`torchseq.metrics.mnist_features`,
trained once and cached), not with downloaded Inception weights:

- ``val/fd``: Fréchet distance between the classifier's 64-d features of ``num_samples`` generated
  images (fixed noise) and of the whole training split;
- ``val/fd_real_floor``: the same distance for as many *real held-out* images — what a perfect
  generator would score with this many samples (the estimator is biased upwards for finite samples);
- ``val/class_coverage`` / ``val/class_coverage_real``: fraction of the 10 digits that hold at
  least half their uniform share (5 %) of the classifier's predictions, for the samples / held-out images.

The real statistics are computed once, at the start of fitting; the samples are measured at the end of
each validation epoch during fitting (so the values sit in that epoch's history and a checkpoint can
monitor ``val/fd``). Needs ``pl_module.latent_dim`` and ``pl_module.sample(z)`` (images in [0, 1]),
a validation loop, and a datamodule with train and held-out loaders.

At the end of ``test`` the same figures are logged as ``test/fd``, ``test/fd_real_floor`` (the test
images), ``test/class_coverage`` (``_real``) and ``test/min_class_share`` (the rarest digit's share of
the samples), from noise drawn with ``seed + 1``: not the noise validation selected the checkpoint on.
``test/class_share_<d>`` is the share of the samples the classifier reads as digit d (the per-class
histogram). ``test/nn_distance`` and ``test/nn_distance_real`` are the median pixel-space distances from
the samples and from the test images to their nearest training image, ``test/nn_feature_distance`` and
``test/nn_feature_distance_real`` the same in the classifier's feature space
(:mod:`torchseq.metrics.memorisation`): a sample median far below the real one would mean the generator
copies training images.
"""

from __future__ import annotations

from pathlib import Path

import lightning as L
import torch
from torch import Tensor

from torchseq.callbacks.image_grids import require_methods
from torchseq.checks import check_choice
from torchseq.metrics.class_coverage import ClassCoverage
from torchseq.metrics.frechet import FeatureFrechetDistance
from torchseq.metrics.memorisation import nearest_neighbour_distances
from torchseq.metrics.mnist_features import DEFAULT_PATH, FrozenFeatures, load_or_train_feature_net
from torchseq.modes import evaluating


class SampleQuality(L.Callback):
    """Log Fréchet distance and class coverage of samples every ``every_n_epochs`` validation epochs.

    Args:
        feature_net_path: cached MNIST-5k classifier (trained there on first use).
        held_out: the real split giving the floor, ``"val"`` or ``"test"``.
        num_samples: generated images per evaluation; default: as many as the held-out split holds,
            so that samples and floor suffer the same finite-sample bias.
        seed: seed of the fixed noise.
        every_n_epochs: how often to measure.
        batch_size: images generated per forward pass.
    """

    def __init__(
        self,
        feature_net_path: str = str(DEFAULT_PATH),
        held_out: str = "val",
        num_samples: int | None = None,
        seed: int = 0,
        every_n_epochs: int = 1,
        batch_size: int = 500,
    ) -> None:
        self.feature_net_path = Path(feature_net_path)
        self.held_out = check_choice("held_out", held_out, ("val", "test"))
        self.num_samples, self.seed = num_samples, seed
        self.every_n_epochs, self.batch_size = every_n_epochs, batch_size
        self.floor: dict[str, float] = {}
        self.frechet: FeatureFrechetDistance | None = None

    def on_fit_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        held_out = self._prepare(trainer, pl_module, self.held_out)
        self.floor = self._real_figures(held_out, "val")
        self.noise = self._noise(self.num_samples or len(held_out), pl_module.latent_dim, self.seed)

    def on_validation_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.sanity_checking or (trainer.current_epoch + 1) % self.every_n_epochs:
            return
        pl_module.log_dict(self._sample_figures(pl_module, self.noise, "val") | self.floor)

    def on_test_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        test = self._prepare(trainer, pl_module, "test")
        self.test_floor = self._real_figures(test, "test")
        self.train_images = torch.cat(
            [images for images, *_ in trainer.datamodule.train_dataloader()]
        ).float()
        self.train_features = self._features(self.train_images)
        self.test_floor |= self._distances_to_training(
            test, "test/nn_distance_real", "test/nn_feature_distance_real"
        )
        self.test_noise = self._noise(self.num_samples or len(test), pl_module.latent_dim, self.seed + 1)

    def on_test_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        pl_module.log_dict(self._sample_figures(pl_module, self.test_noise, "test") | self.test_floor)

    def _prepare(self, trainer: L.Trainer, pl_module: L.LightningModule, split: str) -> Tensor:
        """Load the feature net and the training split's statistics (once); return ``split``'s images."""
        require_methods(pl_module, self, "latent_dim", "sample")
        if trainer.datamodule is None:
            raise RuntimeError("SampleQuality needs a datamodule: its training split is the real reference")
        if self.frechet is None:
            net, _ = load_or_train_feature_net(self.feature_net_path)
            self.features = FrozenFeatures(net)
            self.frechet = FeatureFrechetDistance(self.features)
            for images, *_ in trainer.datamodule.train_dataloader():
                self.frechet.update(images.float(), real=True)
        loader = getattr(trainer.datamodule, f"{split}_dataloader")()
        return torch.cat([images for images, *_ in loader]).float()

    def _real_figures(self, images: Tensor, stage: str) -> dict[str, float]:
        return {
            f"{stage}/fd_real_floor": self._frechet_distance(images),
            f"{stage}/class_coverage_real": float(self._class_counts(images).compute()),
        }

    def _sample_figures(self, pl_module: L.LightningModule, noise: Tensor, stage: str) -> dict[str, float]:
        with evaluating(pl_module):
            samples = torch.cat(
                [pl_module.sample(chunk.to(pl_module.device)).cpu() for chunk in noise.split(self.batch_size)]
            )
        counts = self._class_counts(samples)
        figures = {
            f"{stage}/fd": self._frechet_distance(samples),
            f"{stage}/class_coverage": float(counts.compute()),
        }
        if stage == "test":
            shares = counts.shares()
            figures["test/min_class_share"] = float(shares.min())
            figures |= {f"test/class_share_{digit}": float(share) for digit, share in enumerate(shares)}
            figures |= self._distances_to_training(samples, "test/nn_distance", "test/nn_feature_distance")
        return figures

    def _distances_to_training(self, images: Tensor, pixel_key: str, feature_key: str) -> dict[str, float]:
        """Median distance from ``images`` to their nearest training image, in pixels and in features."""
        return {
            pixel_key: float(nearest_neighbour_distances(images, self.train_images).median()),
            feature_key: float(
                nearest_neighbour_distances(self._features(images), self.train_features).median()
            ),
        }

    def _features(self, images: Tensor) -> Tensor:
        with torch.no_grad():
            return torch.cat([self.features(chunk) for chunk in images.split(self.batch_size)])

    @staticmethod
    def _noise(count: int, latent_dim: int, seed: int) -> Tensor:
        return torch.randn(count, latent_dim, generator=torch.Generator().manual_seed(seed))

    def _frechet_distance(self, images: Tensor) -> float:
        for chunk in images.split(self.batch_size):
            self.frechet.update(chunk, real=False)
        distance = float(self.frechet.compute())
        self.frechet.reset()  # forgets the generated set only: the real reference stays
        return distance

    def _class_counts(self, images: Tensor) -> ClassCoverage:
        coverage = ClassCoverage(num_classes=self.features.net.head.out_features)
        with torch.no_grad():
            for chunk in images.split(self.batch_size):
                coverage.update(self.features.logits(chunk))
        return coverage


class ClassConditionalAccuracy(L.Callback):
    """How often a class-conditional generator draws the digit it was asked for, judged by the classifier.

    Each validation epoch (during fitting) logs ``val/conditional_accuracy``: the MNIST-5k classifier's
    accuracy on ``per_class`` samples of every class, labelled with the class they were conditioned on.
    After ``test`` it logs ``test/conditional_accuracy`` and ``test/conditional_accuracy_min`` (the
    worst class), with fresh noise (``seed + 1``), and keeps the per-class figures in
    :attr:`per_class_accuracy`. Needs ``pl_module.latent_dim``, ``pl_module.num_classes`` and
    ``pl_module.sample(z, labels)`` (images in [0, 1]).
    """

    def __init__(
        self,
        feature_net_path: str = str(DEFAULT_PATH),
        per_class: int = 100,
        seed: int = 0,
        batch_size: int = 500,
    ) -> None:
        if per_class < 1:
            raise ValueError(f"per_class: expected a positive number of samples, got {per_class!r}")
        self.feature_net_path, self.per_class = Path(feature_net_path), per_class
        self.seed, self.batch_size = seed, batch_size
        self.per_class_accuracy: list[float] = []
        self.net: torch.nn.Module | None = None

    def _accuracies(self, pl_module: L.LightningModule, seed: int) -> Tensor:
        require_methods(pl_module, self, "latent_dim", "num_classes", "sample")
        if self.net is None:
            self.net, _ = load_or_train_feature_net(self.feature_net_path)
        num_classes = pl_module.num_classes
        labels = torch.arange(num_classes).repeat_interleave(self.per_class)
        noise = torch.randn(len(labels), pl_module.latent_dim, generator=torch.Generator().manual_seed(seed))
        correct = torch.zeros(num_classes)
        with evaluating(pl_module):
            for chunk, chunk_labels in zip(
                noise.split(self.batch_size), labels.split(self.batch_size), strict=True
            ):
                images = pl_module.sample(chunk.to(pl_module.device), chunk_labels.to(pl_module.device)).cpu()
                hits = (self.net(images).argmax(dim=1) == chunk_labels).float()
                correct.index_add_(0, chunk_labels, hits)
        return correct / self.per_class

    def on_validation_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.sanity_checking or trainer.state.fn != "fit":
            return
        pl_module.log("val/conditional_accuracy", float(self._accuracies(pl_module, self.seed).mean()))

    def on_test_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        accuracies = self._accuracies(pl_module, self.seed + 1)
        self.per_class_accuracy = accuracies.tolist()
        pl_module.log_dict(
            {
                "test/conditional_accuracy": float(accuracies.mean()),
                "test/conditional_accuracy_min": float(accuracies.min()),
            }
        )
