"""LightningModules: the training logic around a :mod:`torchseq.models` network (see :mod:`torchseq.cli`).

Naming rule: a task is ``<What>Task`` (``ClassificationTask``, ``VAETask``, ``GANTask``…), so it never
shares a name with the network it trains (``torchseq.models.VAE``). ``Classification``, ``Regression``
and ``StepClassification`` remain as aliases of their tasks, for configs and checkpoints that name them.
"""

from torchseq.tasks.autoencoding import AnomalyAutoencoderTask, AutoencoderTask
from torchseq.tasks.classification import Classification, ClassificationTask
from torchseq.tasks.gan import GANTask
from torchseq.tasks.regression import Regression, RegressionTask
from torchseq.tasks.step_classification import StepClassification, StepClassificationTask
from torchseq.tasks.supervised import SupervisedSequenceTask, split_batch
from torchseq.tasks.vae import VAETask

__all__ = [
    "AnomalyAutoencoderTask",
    "AutoencoderTask",
    "Classification",
    "ClassificationTask",
    "GANTask",
    "Regression",
    "RegressionTask",
    "StepClassification",
    "StepClassificationTask",
    "SupervisedSequenceTask",
    "VAETask",
    "split_batch",
]
