"""LightningModules: the training logic around a :mod:`torchseq.models` network (see :mod:`torchseq.cli`)."""

from torchseq.tasks.autoencoding import AnomalyAutoencoderTask, AutoencoderTask
from torchseq.tasks.classification import Classification
from torchseq.tasks.gan import GANTask
from torchseq.tasks.regression import Regression
from torchseq.tasks.step_classification import StepClassification
from torchseq.tasks.supervised import SupervisedSequenceTask, split_batch
from torchseq.tasks.vae import VAETask

__all__ = [
    "AnomalyAutoencoderTask",
    "AutoencoderTask",
    "Classification",
    "GANTask",
    "Regression",
    "StepClassification",
    "SupervisedSequenceTask",
    "VAETask",
    "split_batch",
]
