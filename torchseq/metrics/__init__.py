"""Offline sample-quality and representation metrics: Fréchet distance and class coverage in the feature
space of torchseq's own MNIST-5k classifier, and the linear probe."""

from torchseq.metrics.class_coverage import ClassCoverage
from torchseq.metrics.frechet import FeatureFrechetDistance
from torchseq.metrics.linear_probe import fit_logistic_regression, linear_probe_accuracy
from torchseq.metrics.mnist_features import FrozenFeatures, MNISTFeatureNet, load_or_train_feature_net

__all__ = [
    "ClassCoverage",
    "FeatureFrechetDistance",
    "FrozenFeatures",
    "MNISTFeatureNet",
    "fit_logistic_regression",
    "linear_probe_accuracy",
    "load_or_train_feature_net",
]
