"""``TrainingCurves``: a PNG of every logged epoch metric against the epoch, redrawn after each epoch."""

from __future__ import annotations

import math
import time
from collections import defaultdict

import lightning as L
from matplotlib.figure import Figure

from torchseq.callbacks.history import EpochHistory, run_dir


class TrainingCurves(EpochHistory):
    """Plot ``<run>/training_curves.png``: one panel per metric, one line per stage.

    Metrics are grouped by the name after the stage prefix, so ``train/loss`` and ``val/loss`` share the
    "loss" panel and ``val/acc`` sits with ``train/acc``. Works for any task that logs epoch values. The
    history travels in checkpoints, so a resumed run keeps drawing the whole curve.

    The figure is redrawn after an epoch when ``every_seconds`` have passed since the last drawing, and
    always at the end: drawing takes about a second, longer than an epoch of a small UCR problem.
    """

    file_name = "training_curves.png"

    def __init__(self, every_seconds: float = 30.0) -> None:
        super().__init__()
        self.every_seconds = every_seconds
        self._drawn_at = -math.inf

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        super().on_train_epoch_end(trainer, pl_module)
        if trainer.is_global_zero and time.monotonic() - self._drawn_at >= self.every_seconds:
            self.draw(trainer)

    def on_fit_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.is_global_zero:
            self.draw(trainer)

    def draw(self, trainer: L.Trainer) -> None:
        panels: dict[str, dict[str, tuple[list[float], list[float]]]] = defaultdict(dict)
        for row in self.history:
            for name, value in row.items():
                if name in ("epoch", "step"):
                    continue
                stage, _, metric = name.rpartition("/")
                epochs, values = panels[metric].setdefault(stage or metric, ([], []))
                epochs.append(row["epoch"])
                values.append(value)
        if not panels:
            return
        figure = Figure(figsize=(4.0 * len(panels), 3.2), layout="constrained")
        axes = figure.subplots(1, len(panels), squeeze=False)[0]
        for axis, (metric, lines) in zip(axes, sorted(panels.items()), strict=True):
            for stage, (epochs, values) in sorted(lines.items()):
                axis.plot(epochs, values, marker="o", markersize=3, label=stage)
            axis.set(title=metric, xlabel="epoch")
            axis.grid(alpha=0.3)
            axis.legend()
        path = run_dir(trainer) / self.file_name
        path.parent.mkdir(parents=True, exist_ok=True)
        figure.savefig(path, dpi=110)
        self._drawn_at = time.monotonic()
