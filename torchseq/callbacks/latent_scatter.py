"""A PNG scatter of the validation set's codes, coloured by label: what the encoder learned to separate.

With a 2-number code (the chapter's "dimensionality reduction" example) the points are the codes
themselves; a wider code is projected onto its first two principal components (``torch.pca_lowrank``),
and the axis labels say so. Files go to ``<run>/<folder>/epoch_NNN.png``.
"""

from __future__ import annotations

from typing import Any

import lightning as L
import torch
from matplotlib.figure import Figure  # the object API draws to files without pyplot or a display
from torch import Tensor

from torchseq.callbacks.image_grids import figure_path, require_methods


def project_2d(codes: Tensor) -> tuple[Tensor, tuple[str, str]]:
    """Codes (N, D) → points (N, 2) and axis names: the codes if D ≤ 2, else their two leading PCs."""
    if codes.shape[1] == 1:
        return torch.cat([codes, torch.zeros_like(codes)], dim=1), ("z₁", "")
    if codes.shape[1] == 2:
        return codes, ("z₁", "z₂")
    centred = codes - codes.mean(dim=0)
    _, _, components = torch.pca_lowrank(centred, q=2, center=False)
    return centred @ components, ("PC 1 of z", "PC 2 of z")


def plot_scatter(points: Tensor, labels: Tensor, axes_names: tuple[str, str], title: str, path: Any) -> None:
    figure = Figure(figsize=(6, 5))
    axes = figure.subplots()
    scatter = axes.scatter(points[:, 0], points[:, 1], c=labels, cmap="tab10", s=6, alpha=0.8)
    axes.legend(*scatter.legend_elements(), title="label", loc="best", fontsize="small", markerscale=0.8)
    axes.set(xlabel=axes_names[0], ylabel=axes_names[1], title=title)
    figure.tight_layout()
    figure.savefig(path, dpi=100)


class LatentScatter(L.Callback):
    """Scatter the codes ``pl_module.encode(x)`` of up to ``max_points`` validation items, by label.

    Args:
        max_points: validation items encoded (from the start of the validation loader).
        every_n_epochs: how often to write a figure.
        folder: subfolder of the log directory.
    """

    def __init__(self, max_points: int = 2000, every_n_epochs: int = 1, folder: str = "latent") -> None:
        self.max_points, self.every_n_epochs, self.folder = max_points, every_n_epochs, folder
        self._codes: list[Tensor] = []
        self._labels: list[Tensor] = []

    def on_fit_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        require_methods(pl_module, self, "encode")

    def _due(self, trainer: L.Trainer) -> bool:
        return not trainer.sanity_checking and (trainer.current_epoch + 1) % self.every_n_epochs == 0

    def on_validation_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._codes, self._labels = [], []

    def on_validation_batch_end(
        self,
        trainer: L.Trainer,
        pl_module: L.LightningModule,
        outputs: Any,
        batch: Any,
        batch_idx: int,
        dataloader_idx: int = 0,
    ) -> None:
        collected = sum(len(codes) for codes in self._codes)
        if not self._due(trainer) or collected >= self.max_points:
            return
        inputs, labels = batch[0][: self.max_points - collected], batch[1][: self.max_points - collected]
        with torch.no_grad():  # validation already runs in eval mode
            self._codes.append(pl_module.encode(inputs).float().cpu())
        self._labels.append(labels.cpu())

    def on_validation_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if not self._due(trainer) or not self._codes:
            return
        points, axes_names = project_2d(torch.cat(self._codes))
        model = getattr(pl_module, "model", pl_module)
        title = f"{type(model).__name__} codes, epoch {trainer.current_epoch}"
        path = figure_path(trainer, self.folder, trainer.current_epoch)
        plot_scatter(points, torch.cat(self._labels), axes_names, title, path)
