"""LightningModules: the training logic around a :mod:`torchseq.models` network (see :mod:`torchseq.cli`)."""

from torchseq.tasks.classification import Classification
from torchseq.tasks.regression import Regression
from torchseq.tasks.supervised import SupervisedSequenceTask, split_batch

__all__ = ["Classification", "Regression", "SupervisedSequenceTask", "split_batch"]
