"""Lightning callbacks: curves, confusion matrix, metrics summary (PNG/JSON, any logger), exact resume."""

from torchseq.callbacks.confusion_matrix import ConfusionMatrixPlot
from torchseq.callbacks.gradient_flow import GradientFlowPlot
from torchseq.callbacks.image_grids import LatentInterpolation, ReconstructionGrid, SampleGrid
from torchseq.callbacks.latent_scatter import LatentScatter
from torchseq.callbacks.linear_probe import LinearProbe
from torchseq.callbacks.metrics_summary import MetricsSummary, render_summary
from torchseq.callbacks.nan_guard import NaNGuard
from torchseq.callbacks.rng_state import RNGState
from torchseq.callbacks.sample_quality import SampleQuality
from torchseq.callbacks.stateful import StatefulTraining
from torchseq.callbacks.training_curves import TrainingCurves

__all__ = [
    "ConfusionMatrixPlot",
    "GradientFlowPlot",
    "LatentInterpolation",
    "LatentScatter",
    "LinearProbe",
    "MetricsSummary",
    "NaNGuard",
    "RNGState",
    "ReconstructionGrid",
    "SampleGrid",
    "SampleQuality",
    "StatefulTraining",
    "TrainingCurves",
    "render_summary",
]
