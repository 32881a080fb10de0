"""Lightning callbacks that show a run: curves, confusion matrix, metrics summary (PNG/JSON, any logger)."""

from torchseq.callbacks.confusion_matrix import ConfusionMatrixPlot
from torchseq.callbacks.metrics_summary import MetricsSummary, render_summary
from torchseq.callbacks.training_curves import TrainingCurves

__all__ = ["ConfusionMatrixPlot", "MetricsSummary", "TrainingCurves", "render_summary"]
