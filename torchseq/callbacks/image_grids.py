"""PNG image grids of generative models, written every epoch whatever the logger.

- :class:`SampleGrid`: images generated from a fixed noise batch (the same codes every epoch, so the
  files show one set of samples improving). Needs ``pl_module.latent_dim`` and ``pl_module.sample(z)``.
- :class:`ReconstructionGrid`: validation images and their reconstructions in alternating rows.
  Needs ``pl_module.reconstruct(x)``.
- :class:`LatentInterpolation`: a strip per image pair, decoding codes on the straight line between
  the two images' codes. Needs ``pl_module.encode(x)`` and ``pl_module.decode(z)``.

The model methods return images in [0, 1]. Files go to ``<run>/<folder>/epoch_NNN.png`` (the run folder
of :func:`torchseq.callbacks.history.run_dir`: ``runs/<experiment>/<version>`` under the CLI), written
with ``torchvision.utils.save_image``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import lightning as L
import torch
from torch import Tensor
from torchvision.utils import save_image

from torchseq.callbacks.history import run_dir
from torchseq.modes import evaluating


def figure_path(trainer: L.Trainer, folder: str, epoch: int) -> Path:
    """``<run>/<folder>/epoch_NNN.png``, creating the folder."""
    directory = run_dir(trainer) / folder
    directory.mkdir(parents=True, exist_ok=True)
    return directory / f"epoch_{epoch:03d}.png"


def require_methods(pl_module: L.LightningModule, callback: L.Callback, *names: str) -> None:
    missing = [name for name in names if not hasattr(pl_module, name)]
    if missing:
        raise TypeError(
            f"{type(callback).__name__} needs a LightningModule with {', '.join(names)}; "
            f"{type(pl_module).__name__} lacks {', '.join(missing)}"
        )


class SampleGrid(L.Callback):
    """At the end of every ``every_n_epochs``-th training epoch, save ``sample(z)`` for a fixed noise z.

    Args:
        num_samples: images in the grid.
        nrow: images per row.
        seed: seed of the fixed noise (drawn from its own generator: the training stream is untouched).
        every_n_epochs: how often to write a grid.
        folder: subfolder of the log directory.
    """

    def __init__(
        self,
        num_samples: int = 64,
        nrow: int = 8,
        seed: int = 0,
        every_n_epochs: int = 1,
        folder: str = "samples",
    ) -> None:
        self.num_samples, self.nrow, self.seed = num_samples, nrow, seed
        self.every_n_epochs, self.folder = every_n_epochs, folder
        self.noise: Tensor | None = None

    def on_fit_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        require_methods(pl_module, self, "latent_dim", "sample")
        generator = torch.Generator().manual_seed(self.seed)
        self.noise = torch.randn(self.num_samples, pl_module.latent_dim, generator=generator)

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        epoch = trainer.current_epoch
        if self.noise is None or (epoch + 1) % self.every_n_epochs:
            return
        with evaluating(pl_module):
            images = pl_module.sample(self.noise.to(pl_module.device))
        save_image(images.cpu(), figure_path(trainer, self.folder, epoch), nrow=self.nrow)


class _ValidationImages(L.Callback):
    """Picks ``count`` validation images during the first validation epoch and draws them every epoch.

    Labels are told apart where the batches carry them: the first image of each new label comes first
    (so a label-sorted validation set still shows every digit), then further images in loader order.
    """

    def __init__(self, count: int, every_n_epochs: int) -> None:
        self.count, self.every_n_epochs = count, every_n_epochs
        self.images: Tensor | None = None
        self._distinct: list[Tensor] = []
        self._others: list[Tensor] = []
        self._labels_seen: set[int] = set()

    def on_validation_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._distinct, self._others, self._labels_seen = [], [], set()  # the sanity check sees only a part

    def on_validation_batch_end(
        self,
        trainer: L.Trainer,
        pl_module: L.LightningModule,
        outputs: Any,
        batch: Any,
        batch_idx: int,
        dataloader_idx: int = 0,
    ) -> None:
        if self.images is not None:
            return
        images = batch[0].detach().cpu()
        labels = batch[1].tolist() if len(batch) > 1 and batch[1].dim() == 1 else [None] * len(images)
        for image, label in zip(images, labels, strict=True):
            if label is not None and label not in self._labels_seen and len(self._distinct) < self.count:
                self._labels_seen.add(label)
                self._distinct.append(image)
            elif len(self._others) < self.count:
                self._others.append(image)

    def on_validation_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.sanity_checking:
            return
        if self.images is None and (self._distinct or self._others):
            self.images = torch.stack((self._distinct + self._others)[: self.count])
        epoch = trainer.current_epoch
        if self.images is None or (epoch + 1) % self.every_n_epochs:
            return
        with evaluating(pl_module):
            grid, nrow = self.figure(pl_module, self.images.to(pl_module.device))
        save_image(grid.cpu(), figure_path(trainer, self.folder, epoch), nrow=nrow)

    def figure(self, pl_module: L.LightningModule, images: Tensor) -> tuple[Tensor, int]:
        """The images of the grid (N, C, H, W) and how many go in a row."""
        raise NotImplementedError


class ReconstructionGrid(_ValidationImages):
    """Validation images and their reconstructions, in alternating rows of ``nrow`` images.

    Args:
        num_images: images shown (rounded down to a multiple of ``nrow``).
        nrow: images per row.
        every_n_epochs: how often to write a grid.
        folder: subfolder of the log directory.
    """

    def __init__(
        self, num_images: int = 32, nrow: int = 8, every_n_epochs: int = 1, folder: str = "reconstructions"
    ) -> None:
        super().__init__(num_images, every_n_epochs)
        self.nrow, self.folder = nrow, folder

    def on_fit_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        require_methods(pl_module, self, "reconstruct")

    def figure(self, pl_module: L.LightningModule, images: Tensor) -> tuple[Tensor, int]:
        rows = len(images) // self.nrow
        originals = images[: rows * self.nrow]
        reconstructions = pl_module.reconstruct(originals)
        pairs = torch.stack([originals, reconstructions]).unflatten(
            1, (rows, self.nrow)
        )  # (2, rows, nrow, C, H, W)
        return pairs.transpose(0, 1).flatten(0, 2), self.nrow  # row r: originals, then their reconstructions


class LatentInterpolation(_ValidationImages):
    """For each pair of validation images, decode ``steps`` evenly spaced codes between their codes.

    Row i runs from image 2i's code (left) to image 2i+1's (right); codes are ``encode`` outputs (the
    posterior means for a VAE).

    Args:
        num_pairs: rows of the strip.
        steps: images per row, both ends included.
        every_n_epochs: how often to write a strip.
        folder: subfolder of the log directory.
    """

    def __init__(
        self, num_pairs: int = 4, steps: int = 10, every_n_epochs: int = 1, folder: str = "interpolation"
    ) -> None:
        if steps < 2:
            raise ValueError(f"steps: expected at least 2 (the two ends), got {steps!r}")
        super().__init__(2 * num_pairs, every_n_epochs)
        self.steps, self.folder = steps, folder

    def on_fit_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        require_methods(pl_module, self, "encode", "decode")

    def figure(self, pl_module: L.LightningModule, images: Tensor) -> tuple[Tensor, int]:
        pairs = len(images) // 2
        codes = pl_module.encode(images[: 2 * pairs]).unflatten(0, (pairs, 2))  # (pairs, 2, latent)
        weights = torch.linspace(0, 1, self.steps, device=codes.device)[None, :, None]  # (1, steps, 1)
        path = torch.lerp(codes[:, :1], codes[:, 1:], weights)  # (pairs, steps, latent)
        return pl_module.decode(path.flatten(0, 1)), self.steps


class LatentManifold(L.Callback):
    """The decoder's map of a 2-D latent space: an ``n``×``n`` grid of codes, decoded, as one image.

    The codes sit at the Gaussian quantiles ``Φ⁻¹(p)`` for ``p`` evenly spaced in
    [``edge``, 1 − ``edge``] on each axis, so the grid covers the prior N(0, I) where it has mass (the
    Keras VAE example's figure); z₁ runs left to right, z₂ bottom to top. Written every
    ``every_n_epochs`` training epochs to ``<run>/<folder>/epoch_NNN.png``. Needs ``pl_module.decode``
    (images in [0, 1]) and ``pl_module.latent_dim == 2``.
    """

    def __init__(
        self, n: int = 15, edge: float = 0.05, every_n_epochs: int = 1, folder: str = "manifold"
    ) -> None:
        if n < 2:
            raise ValueError(f"n: expected at least 2 codes per axis, got {n!r}")
        if not 0.0 < edge < 0.5:
            raise ValueError(f"edge: expected a probability in (0, 0.5), got {edge!r}")
        self.n, self.edge, self.every_n_epochs, self.folder = n, edge, every_n_epochs, folder

    def on_fit_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        require_methods(pl_module, self, "decode", "latent_dim")
        if pl_module.latent_dim != 2:
            raise ValueError(
                f"LatentManifold: expected a 2-D latent space, got latent_dim={pl_module.latent_dim}"
            )

    def codes(self) -> Tensor:
        """(n·n, 2): row r of the grid holds z₂ = q[n − 1 − r], column c holds z₁ = q[c]."""
        quantiles = torch.distributions.Normal(0.0, 1.0).icdf(
            torch.linspace(self.edge, 1 - self.edge, self.n)
        )
        z2, z1 = torch.meshgrid(quantiles.flip(0), quantiles, indexing="ij")
        return torch.stack([z1, z2], dim=-1).reshape(-1, 2)

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        epoch = trainer.current_epoch
        if (epoch + 1) % self.every_n_epochs:
            return
        with evaluating(pl_module):
            images = pl_module.decode(self.codes().to(pl_module.device))
        save_image(images.cpu(), figure_path(trainer, self.folder, epoch), nrow=self.n, padding=0)
