"""Labelled anomaly series shipped in sktime, cut into windows for a sequence autoencoder.

Two sources, each a univariate series with a 0/1 label per point, in ``sktime/datasets/data/<source>/
<source>.csv`` (header ``data,label``):

- ``mitdb``: 7,500 points of an ECG (MIT-BIH arrhythmia database); one anomalous stretch of 352 points,
  indices 6936–7287;
- ``yahoo``: 1,000 points of a Yahoo Webscope series; 7 isolated anomalous points (431, 478, 610, 681,
  718, 732, 846).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch.utils.data import TensorDataset

from torchseq.checks import check_choice
from torchseq.data.base import SplitDataModule, Splits, check_positive_int
from torchseq.data.files import locate_data_file
from torchseq.data.split import check_fractions, split_indices
from torchseq.data.standardize import ChannelStandardizer
from torchseq.data.tables import DataFileError, read_numeric_csv

ANOMALY_SOURCES = ("mitdb", "yahoo")


def read_labelled_series(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """Values (N, 1) float64 and point labels (N,) bool from a ``data,label`` CSV file."""
    table = read_numeric_csv(path, columns=2, header=("data", "label"))
    labels = table[:, 1]
    bad = np.flatnonzero((labels != 0) & (labels != 1))
    if len(bad):
        raise DataFileError(f"{path}, line {bad[0] + 2}: expected a label 0 or 1, got {labels[bad[0]]:g}")
    return table[:, :1], labels.astype(bool)


def cut_windows(
    values: np.ndarray, point_labels: np.ndarray, window: int, stride: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Windows ``values[s : s + window]`` for ``s = 0, stride, 2·stride, …`` while they fit.

    Returns the windows (W, window, C), their labels (W,) int64 — 1 when any point inside is anomalous —
    and their start indices (W,). Points after the last whole window are dropped.
    """
    if len(values) < window:
        raise ValueError(f"window: expected at most the series length {len(values)}, got {window}")
    starts = np.arange(0, len(values) - window + 1, stride)
    offsets = starts[:, None] + np.arange(window)                        # (W, window)
    return values[offsets], point_labels[offsets].any(axis=1).astype(np.int64), starts


class AnomalyDataModule(SplitDataModule):
    """Windows of a labelled series; train holds normal windows only, val and test hold both kinds.

    - Windows: ``x[s : s + window]`` for ``s = 0, stride, 2·stride, …`` (``stride`` defaults to
      ``window``: no overlap); the points after the last whole window are dropped. A window's label is 1
      when at least one of its points is labelled anomalous, else 0.
    - Splits: the normal windows are split at random (seeded) into train/val/test with shares
      ``1 - val_fraction - test_fraction``, ``val_fraction`` and ``test_fraction``; the anomalous windows
      go to val and test only, in the ratio ``val_fraction : test_fraction``. The training split is thus
      normal windows only — what an autoencoder should learn to reconstruct — while val and test are
      labelled mixtures for scoring. When windows overlap (``stride < window``), training windows that
      share a point with any val or test window are dropped, so no evaluated point was seen in training
      (val and test windows may still overlap each other).
    - Standardisation: z-normalised with the mean and standard deviation of the training windows' points.
    - Batches: ``(x (B, window, 1) float32, y (B,) int64)``, y the window label.
      ``window_starts[split]`` gives each window's first index in the series.

    ``data_dir``: a folder laid out like ``sktime/datasets/data`` (``<source>/<source>.csv``).
    """

    input_size = 1
    num_classes = 2

    def __init__(
        self,
        source: str = "mitdb",
        window: int = 64,
        stride: int | None = None,
        batch_size: int = 32,
        num_workers: int = 0,
        seed: int = 0,
        val_fraction: float = 0.2,
        test_fraction: float = 0.2,
        data_dir: str | None = None,
    ) -> None:
        super().__init__(batch_size, num_workers, seed)
        self.source = check_choice("source", source, ANOMALY_SOURCES)
        self.window = check_positive_int("window", window, minimum=2)
        self.stride = check_positive_int("stride", window if stride is None else stride)
        check_fractions(val_fraction=val_fraction, test_fraction=test_fraction)
        self.fractions = (1 - val_fraction - test_fraction, val_fraction, test_fraction)
        self.sequence_length = self.window
        self.path = locate_data_file(data_dir, "sktime", ("datasets", "data"), source, f"{source}.csv")
        self.window_starts: dict[str, np.ndarray] = {}

    def build_splits(self) -> Splits:
        values, point_labels = read_labelled_series(self.path)
        windows, labels, starts = cut_windows(values, point_labels, self.window, self.stride)
        normal, anomalous = np.flatnonzero(labels == 0), np.flatnonzero(labels == 1)
        if len(anomalous) < 2:
            raise ValueError(
                f"window/stride: {len(anomalous)} anomalous window(s) in {self.path}; val and test need one "
                "each — choose a smaller window or stride"
            )
        train, val, test = (normal[part] for part in split_indices(len(normal), self.fractions, self.seed))
        val_share = self.fractions[1] / (self.fractions[1] + self.fractions[2])  # of the anomalous windows
        anomalous_parts = split_indices(len(anomalous), (val_share, 1 - val_share), self.seed)
        val = np.sort(np.concatenate([val, anomalous[anomalous_parts[0]]]))
        test = np.sort(np.concatenate([test, anomalous[anomalous_parts[1]]]))
        train = self._without_overlap(train, np.concatenate([val, test]), starts)
        standardize = ChannelStandardizer.fit([windows[train]])
        parts = {"train": train, "val": val, "test": test}
        self.window_starts = {name: starts[part] for name, part in parts.items()}
        datasets = {
            name: TensorDataset(
                torch.from_numpy(standardize(windows[part])).float(), torch.from_numpy(labels[part])
            )
            for name, part in parts.items()
        }
        return Splits(**datasets)

    def _without_overlap(self, train: np.ndarray, evaluation: np.ndarray, starts: np.ndarray) -> np.ndarray:
        """Training windows that share no point with an evaluation window (two windows overlap when their
        starts are less than ``window`` apart)."""
        distance = np.abs(starts[train][:, None] - starts[evaluation][None, :])  # (train, evaluation)
        kept = train[(distance >= self.window).all(axis=1)]
        if len(kept) == 0:
            raise ValueError(
                f"stride: with window {self.window} and stride {self.stride} every training window overlaps "
                "a val or test window; use a larger stride"
            )
        return kept
