"""Labelled anomaly series shipped in sktime, cut into windows for a sequence autoencoder.

Two sources, each a univariate series with a 0/1 label per point, in ``sktime/datasets/data/<source>/
<source>.csv`` (header ``data,label``):

- ``mitdb``: 7,500 points of an ECG (MIT-BIH arrhythmia database); one anomalous stretch of 352 points,
  indices 6936–7287;
- ``yahoo``: 1,000 points of a Yahoo Webscope series; 7 isolated anomalous points (431, 478, 610, 681,
  718, 732, 846).
"""

from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import TensorDataset

from torchseq.checks import check_choice, check_positive_int
from torchseq.data.base import SplitDataModule, Splits
from torchseq.data.files import locate_data_file
from torchseq.data.split import check_fractions, split_indices
from torchseq.data.standardize import ChannelStandardizer
from torchseq.data.tables import DataFileError, read_numeric_csv

ANOMALY_SOURCES = ("mitdb", "yahoo")
SPLIT_KINDS = ("random", "time")
SPLITS = ("train", "val", "test")


def read_labelled_series(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """Values (N, 1) float64 and point labels (N,) bool from a ``data,label`` CSV file."""
    table = read_numeric_csv(path, columns=2, header=("data", "label"))
    labels = table[:, 1]
    bad = np.flatnonzero((labels != 0) & (labels != 1))
    if len(bad):
        raise DataFileError(f"{path}, line {bad[0] + 2}: expected a label 0 or 1, got {labels[bad[0]]:g}")
    return table[:, :1], labels.astype(bool)


def block_average(values: np.ndarray, point_labels: np.ndarray, factor: int) -> tuple[np.ndarray, np.ndarray]:
    """The series at 1/``factor`` of its rate: each block of ``factor`` points becomes its mean (which
    also filters what the lower rate cannot carry), labelled anomalous when any point in it is. A last
    incomplete block is dropped."""
    blocks = len(values) // factor
    if blocks == 0:
        raise ValueError(f"downsample: expected at most the series length {len(values)}, got {factor}")
    kept = blocks * factor
    averaged = values[:kept].reshape(blocks, factor, values.shape[1]).mean(axis=1)
    return averaged, point_labels[:kept].reshape(blocks, factor).any(axis=1)


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
    offsets = starts[:, None] + np.arange(window)  # (W, window)
    return values[offsets], point_labels[offsets].any(axis=1).astype(np.int64), starts


class AnomalyDataModule(SplitDataModule):
    """Windows of a labelled series; train holds normal windows only, val and test hold both kinds.

    - Windows: ``x[s : s + window]`` for ``s = 0, stride, 2·stride, …`` (``stride`` defaults to
      ``window``: no overlap); the points after the last whole window are dropped. A window's label is 1
      when at least one of its points is labelled anomalous, else 0.
    - Splits, ``split="random"``: the normal windows are split at random (seeded) into train/val/test
      with shares ``1 - val_fraction - test_fraction``, ``val_fraction`` and ``test_fraction``; the
      anomalous windows go to val and test only, in the ratio ``val_fraction : test_fraction``. The
      training split is thus normal windows only — what an autoencoder should learn to reconstruct —
      while val and test are labelled mixtures for scoring. When windows overlap (``stride < window``),
      training windows that share a point with any val or test window are dropped, so no evaluated point
      was seen in training (val and test windows may still overlap each other).
    - Splits, ``split="time"``: the series is cut into three consecutive stretches with those shares
      (train first, then val, then test) and each split holds the windows lying wholly inside its
      stretch (windows across a boundary are dropped), so the splits are disjoint in time and overlapping
      windows never leak. The training split keeps its normal windows only; test must hold both kinds,
      val may hold normal windows only (then it selects checkpoints by reconstruction loss alone).
    - ``downsample=k`` first averages each block of k points (the series at 1/k of its rate, a point
      anomalous when any of its k is); ``window`` and ``stride`` then count points of that series.
    - Standardisation: z-normalised with the mean and standard deviation of the training windows' points.
    - Batches: ``(x (B, window, 1) float32, y (B,) int64)``, y the window label.
      ``window_starts[split]`` gives each window's first index in the series; after ``setup``,
      ``series`` (N, 1) holds the standardised series and ``point_labels`` (N,) its labels.

    ``data_dir``: a folder laid out like ``sktime/datasets/data`` (``<source>/<source>.csv``).
    """

    input_size = 1
    num_classes = 2

    def __init__(
        self,
        source: str = "mitdb",
        window: int = 64,
        stride: int | None = None,
        split: str = "random",
        batch_size: int = 32,
        num_workers: int = 0,
        seed: int = 0,
        val_fraction: float = 0.2,
        test_fraction: float = 0.2,
        data_dir: str | None = None,
        downsample: int = 1,
    ) -> None:
        super().__init__(batch_size, num_workers, seed)
        self.downsample = check_positive_int("downsample", downsample)
        self.source = check_choice("source", source, ANOMALY_SOURCES)
        self.window = check_positive_int("window", window, minimum=2)
        self.stride = check_positive_int("stride", window if stride is None else stride)
        self.split = check_choice("split", split, SPLIT_KINDS)
        check_fractions(val_fraction=val_fraction, test_fraction=test_fraction)
        self.fractions = (1 - val_fraction - test_fraction, val_fraction, test_fraction)
        self.sequence_length = self.window
        self.path = locate_data_file(data_dir, "sktime", ("datasets", "data"), source, f"{source}.csv")
        self.window_starts: dict[str, np.ndarray] = {}
        self.series: np.ndarray | None = None
        self.point_labels: np.ndarray | None = None

    def build_splits(self) -> Splits:
        values, point_labels = read_labelled_series(self.path)
        if self.downsample > 1:
            values, point_labels = block_average(values, point_labels, self.downsample)
        windows, labels, starts = cut_windows(values, point_labels, self.window, self.stride)
        if self.split == "time":
            train, val, test = self._split_in_time(len(values), labels, starts)
        else:
            train, val, test = self._split_at_random(labels, starts)
        standardize = ChannelStandardizer.fit([windows[train]])
        self.series, self.point_labels = standardize(values[None])[0], point_labels
        parts = {"train": train, "val": val, "test": test}
        self.window_starts = {name: starts[part] for name, part in parts.items()}
        datasets = {
            name: TensorDataset(
                torch.from_numpy(standardize(windows[part])).float(), torch.from_numpy(labels[part])
            )
            for name, part in parts.items()
        }
        return Splits(**datasets)

    def _split_in_time(
        self, length: int, labels: np.ndarray, starts: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Window indices of three consecutive stretches; training keeps the normal windows only."""
        bounds = np.rint(np.cumsum((0.0, *self.fractions)) * length).astype(int)  # (4,) stretch edges
        inside = [
            np.flatnonzero((starts >= begin) & (starts + self.window <= end))
            for begin, end in itertools.pairwise(bounds)
        ]
        inside[0] = inside[0][labels[inside[0]] == 0]
        for name, part, begin, end in zip(SPLITS, inside, bounds[:-1], bounds[1:], strict=True):
            if len(part) == 0:
                raise ValueError(
                    f"window: no {'normal ' * (name == 'train')}window of {self.window} points fits in the "
                    f"{name} stretch [{begin}, {end}) of the series; choose a smaller window or larger "
                    "fractions"
                )
        train, val, test = inside
        if labels[test].min() == labels[test].max():
            raise ValueError(
                f"test_fraction: the last {self.fractions[2]:g} of {self.path.name} holds "
                f"{'only anomalous' if labels[test].min() else 'no anomalous'} windows; the test split "
                "needs both kinds"
            )
        return train, val, test

    def _split_at_random(
        self, labels: np.ndarray, starts: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Normal windows at random into the three splits, anomalous ones into val and test."""
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
        return self._without_overlap(train, np.concatenate([val, test]), starts), val, test

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
