"""A PNG of where a window-scoring anomaly detector fires: the series, the score, the labelled stretches.

After ``test`` the test windows are scored with ``pl_module.anomaly_score(windows)`` (one number per
window) and each point gets the mean score of the test windows that cover it. The figure has two
panels over the test windows' span: the (standardised) series and that per-point score, both with the
labelled anomalous points shaded. Needs a data module with ``series``, ``point_labels`` and
``window_starts["test"]`` (:class:`~torchseq.data.anomaly.AnomalyDataModule`). Written to
``<run>/anomaly_scores_test.png``.
"""

from __future__ import annotations

import lightning as L
import numpy as np
import torch
from matplotlib.figure import Figure

from torchseq.callbacks.history import run_dir
from torchseq.callbacks.image_grids import require_methods
from torchseq.modes import evaluating


def point_scores(window_scores: np.ndarray, starts: np.ndarray, window: int, length: int) -> np.ndarray:
    """Mean score of the windows covering each point, (length,); NaN where no window covers it."""
    total, count = np.zeros(length), np.zeros(length)
    for score, start in zip(window_scores, starts, strict=True):
        total[start : start + window] += score
        count[start : start + window] += 1
    with np.errstate(invalid="ignore"):
        return np.where(count > 0, total / np.maximum(count, 1), np.nan)


def labelled_runs(labels: np.ndarray) -> list[tuple[int, int]]:
    """[begin, end) of each run of consecutive True labels."""
    edges = np.flatnonzero(np.diff(np.concatenate([[0], labels.astype(np.int8), [0]])))
    return list(zip(edges[::2].tolist(), edges[1::2].tolist(), strict=True))


class AnomalyScorePlot(L.Callback):
    """Draw the test split's series, per-point anomaly score and labelled stretches after testing.

    Args:
        file_name: the PNG's name inside the run folder.
        batch_size: windows scored per forward pass.
    """

    def __init__(self, file_name: str = "anomaly_scores_test.png", batch_size: int = 64) -> None:
        self.file_name, self.batch_size = file_name, batch_size

    def on_test_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        require_methods(pl_module, self, "anomaly_score")
        data = trainer.datamodule
        windows, _ = data.splits.test.tensors
        with evaluating(pl_module):
            scores = torch.cat(
                [
                    pl_module.anomaly_score(chunk.to(pl_module.device)).cpu()
                    for chunk in windows.split(self.batch_size)
                ]
            ).numpy()
        starts, window = data.window_starts["test"], windows.shape[1]
        score = point_scores(scores, starts, window, len(data.series))
        begin, end = int(starts.min()), int(starts.max()) + window
        self.path = run_dir(trainer) / self.file_name
        self.path.parent.mkdir(parents=True, exist_ok=True)
        plot(data.series[begin:end, 0], score[begin:end], data.point_labels[begin:end], begin, self.path)


def plot(series: np.ndarray, score: np.ndarray, labels: np.ndarray, offset: int, path) -> None:
    figure = Figure(figsize=(10, 5))
    top, bottom = figure.subplots(2, 1, sharex=True)
    steps = np.arange(offset, offset + len(series))
    top.plot(steps, series, linewidth=0.7, color="black")
    bottom.plot(steps, score, linewidth=1.0, color="tab:red")
    for axes in (top, bottom):
        for begin, end in labelled_runs(labels):
            axes.axvspan(
                offset + begin, offset + end, color="tab:orange", alpha=0.3, label="labelled anomalous"
            )
    handles, names = top.get_legend_handles_labels()
    if handles:
        top.legend(handles[:1], names[:1], loc="upper left", fontsize="small")
    top.set(ylabel="series (standardised)", title="test split: series, anomaly score, labelled stretch")
    bottom.set(xlabel="time step", ylabel="reconstruction MSE\n(mean over covering windows)")
    figure.tight_layout()
    figure.savefig(path, dpi=100)
