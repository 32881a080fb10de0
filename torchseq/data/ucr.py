"""UCR/UEA time-series classification problems from the ``.ts`` files that sktime ships."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset, TensorDataset

from torchseq.data.base import SplitDataModule, Splits
from torchseq.data.files import locate_data_dir
from torchseq.data.split import check_fractions, fold_indices, split_indices
from torchseq.data.standardize import ChannelStandardizer
from torchseq.data.ts_format import TsData, TsFormatError, read_ts
from torchseq.data.variable_length import VariableLengthDataset

UCR_FOLDER = ("datasets", "data")  # inside the sktime package


def available_ucr_datasets(folder: Path) -> list[str]:
    """Names ``<Name>`` with a ``<Name>/<Name>_TRAIN.ts`` file in ``folder``."""
    return sorted(entry.name for entry in folder.iterdir() if (entry / f"{entry.name}_TRAIN.ts").is_file())


class UCRDataModule(SplitDataModule):
    """A UCR/UEA problem: ``sktime/datasets/data/<name>/<name>_TRAIN.ts`` and ``_TEST.ts``.

    - Splits: the archive's official test file is the test split; the validation split is carved from
      the official training file (stratified by class, seeded): a ``val_fraction`` of it, or, with
      ``folds`` = K, its ``fold``-th K-th for K-fold cross-validation (``val_fraction`` is then unused).
      The K folds of one ``seed`` are disjoint and cover the training file, so running ``fold`` = 0 … K-1
      scores every training case once on a model that did not fit it, and never touches the test file
      (``experiments/sweep.py --folds K`` runs and tabulates that).
    - Labels: mapped to 0..K-1 in the order the header's ``@classLabel`` declares them (``class_names``).
      Problems with ``@targetLabel true`` (regression) give float32 targets and ``num_classes = 0``.
    - Standardisation: each channel is z-normalised with the mean and standard deviation of the training
      split (after the validation cases are removed), over all its time steps; the same statistics are
      applied to validation and test. Missing values ('?') become 0, the training mean.
    - Batches: ``(x (B, T, C) float32, y (B,))`` for equal-length problems; when lengths vary
      (e.g. JapaneseVowels) ``(x (B, T_max, C), y (B,), lengths int64 (B,))`` with the true lengths,
      zero padding after each case's end.
    - Attributes (known after ``__init__``): ``input_size`` = channels C, ``num_classes``,
      ``sequence_length`` = the longest case in either file, ``variable_length``, ``class_names``.

    ``data_dir``: a folder laid out like ``sktime/datasets/data`` (``<name>/<name>_TRAIN.ts`` …) to use
    instead of sktime's. The files are small and read in ``__init__``, since the attributes need them.
    """

    def __init__(
        self,
        name: str,
        batch_size: int = 16,
        num_workers: int = 0,
        seed: int = 0,
        val_fraction: float = 0.2,
        data_dir: str | None = None,
        folds: int | None = None,
        fold: int = 0,
    ) -> None:
        super().__init__(batch_size, num_workers, seed)
        check_fractions(val_fraction=val_fraction)
        self.name = name
        self.val_fraction = val_fraction
        self.folds, self.fold = folds, fold
        folder = locate_data_dir(data_dir, "sktime", *UCR_FOLDER)
        available = available_ucr_datasets(folder)
        if name not in available:
            known = ", ".join(available)
            raise ValueError(f"name: unknown UCR/UEA dataset {name!r}; available in {folder}: {known}")
        self.train_file, self.test_file = (folder / name / f"{name}_{part}.ts" for part in ("TRAIN", "TEST"))
        if not self.test_file.is_file():
            raise FileNotFoundError(f"name: {name!r} has a training file but no test file {self.test_file}")
        self.train_data, self.test_data = read_ts(self.train_file), read_ts(self.test_file)
        self._check_compatible()
        self.class_names = self.train_data.class_names
        self.input_size = self.train_data.dimensions
        self.num_classes = len(self.class_names)
        lengths = np.concatenate([self.train_data.lengths, self.test_data.lengths])
        self.sequence_length = int(lengths.max())
        self.variable_length = bool((lengths != lengths[0]).any())
        self._fit_and_validation_indices()  # a bad fold or fraction for this file fails here, not in setup

    def _check_compatible(self) -> None:
        train, test = self.train_data, self.test_data
        if (train.dimensions, train.class_names) != (test.dimensions, test.class_names):
            raise TsFormatError(
                f"{self.test_file}: {test.dimensions} dimension(s) and classes {test.class_names}, but "
                f"{self.train_file} has {train.dimensions} and {train.class_names}"
            )

    def build_splits(self) -> Splits:
        fit, val = self._fit_and_validation_indices()
        train = self.train_data
        standardize = ChannelStandardizer.fit([train.series[index] for index in fit])
        return Splits(
            train=self._dataset(train, fit, standardize),
            val=self._dataset(train, val, standardize),
            test=self._dataset(self.test_data, np.arange(len(self.test_data.series)), standardize),
        )

    def _fit_and_validation_indices(self) -> tuple[np.ndarray, np.ndarray]:
        train = self.train_data
        labels = None if train.is_regression else train.targets
        if self.folds is None:
            shares = (1 - self.val_fraction, self.val_fraction)
            fit, val = split_indices(len(train.series), shares, self.seed, labels)
            return fit, val
        return fold_indices(len(train.series), self.folds, self.fold, self.seed, labels)

    def _dataset(self, data: TsData, indices: np.ndarray, standardize: ChannelStandardizer) -> Dataset:
        sequences = [torch.from_numpy(standardize(data.series[index])).to(torch.float32) for index in indices]
        targets = torch.from_numpy(data.targets[indices])
        targets = targets.to(torch.float32 if data.is_regression else torch.int64)
        if self.variable_length:
            return VariableLengthDataset(sequences, targets)
        return TensorDataset(torch.stack(sequences), targets)
