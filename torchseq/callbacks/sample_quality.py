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
"""

from __future__ import annotations

from pathlib import Path

import lightning as L
import torch
from torch import Tensor

from torchseq.callbacks.image_grids import evaluating, require_methods
from torchseq.checks import check_choice
from torchseq.metrics.class_coverage import ClassCoverage
from torchseq.metrics.frechet import FeatureFrechetDistance
from torchseq.metrics.mnist_features import DEFAULT_PATH, FrozenFeatures, load_or_train_feature_net


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

    def on_fit_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        require_methods(pl_module, self, "latent_dim", "sample")
        if trainer.datamodule is None:
            raise RuntimeError("SampleQuality needs a datamodule: its training split is the real reference")
        net, _ = load_or_train_feature_net(self.feature_net_path)
        self.features = FrozenFeatures(net)
        self.frechet = FeatureFrechetDistance(self.features)
        for images, *_ in trainer.datamodule.train_dataloader():
            self.frechet.update(images.float(), real=True)
        held_out_loader = getattr(trainer.datamodule, f"{self.held_out}_dataloader")()
        held_out = torch.cat([images for images, *_ in held_out_loader]).float()
        self.floor = {
            "val/fd_real_floor": self._frechet_distance(held_out),
            "val/class_coverage_real": self._class_coverage(held_out),
        }
        count = self.num_samples or len(held_out)
        self.noise = torch.randn(
            count, pl_module.latent_dim, generator=torch.Generator().manual_seed(self.seed)
        )

    def on_validation_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.sanity_checking or (trainer.current_epoch + 1) % self.every_n_epochs:
            return
        with evaluating(pl_module):
            samples = torch.cat(
                [
                    pl_module.sample(noise.to(pl_module.device)).cpu()
                    for noise in self.noise.split(self.batch_size)
                ]
            )
        quality = {
            "val/fd": self._frechet_distance(samples),
            "val/class_coverage": self._class_coverage(samples),
        }
        pl_module.log_dict(quality | self.floor)

    def _frechet_distance(self, images: Tensor) -> float:
        for chunk in images.split(self.batch_size):
            self.frechet.update(chunk, real=False)
        distance = float(self.frechet.compute())
        self.frechet.reset()  # forgets the generated set only: the real reference stays
        return distance

    def _class_coverage(self, images: Tensor) -> float:
        coverage = ClassCoverage(num_classes=self.features.net.head.out_features)
        with torch.no_grad():
            for chunk in images.split(self.batch_size):
                coverage.update(self.features.logits(chunk))
        return float(coverage.compute())
