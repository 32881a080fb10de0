"""LightningDataModules, one file per source; the shared pieces live in base, split, files and tables."""

from torchseq.data.adding_problem import AddingProblemDataModule
from torchseq.data.anomaly import AnomalyDataModule
from torchseq.data.base import SplitDataModule, Splits
from torchseq.data.copy_task import CopyTaskDataModule
from torchseq.data.digits import DigitsDataModule
from torchseq.data.files import find_package_file
from torchseq.data.mnist import MNISTDataModule
from torchseq.data.mnist5k import MNIST5kDataModule
from torchseq.data.tables import DataFileError
from torchseq.data.ts_format import TsData, TsFormatError, parse_ts, read_ts
from torchseq.data.ucr import UCRDataModule
from torchseq.data.variable_length import VariableLengthDataset, pad_collate

__all__ = [
    "AddingProblemDataModule",
    "AnomalyDataModule",
    "CopyTaskDataModule",
    "DataFileError",
    "DigitsDataModule",
    "MNIST5kDataModule",
    "MNISTDataModule",
    "SplitDataModule",
    "Splits",
    "TsData",
    "TsFormatError",
    "UCRDataModule",
    "VariableLengthDataset",
    "find_package_file",
    "pad_collate",
    "parse_ts",
    "read_ts",
]
