"""Lightning callbacks: curves, confusion matrix, metrics summary (PNG/JSON, any logger), exact resume."""

from torchseq.callbacks.confusion_matrix import ConfusionMatrixPlot
from torchseq.callbacks.metrics_summary import MetricsSummary, render_summary
from torchseq.callbacks.rng_state import RNGState
from torchseq.callbacks.training_curves import TrainingCurves

__all__ = ["ConfusionMatrixPlot", "MetricsSummary", "RNGState", "TrainingCurves", "render_summary"]
