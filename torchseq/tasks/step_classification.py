"""``StepClassificationTask``: one class per *timestep* (the copy task), cross-entropy over every step.

Batches are ``(x (B, T, F), y (B, T))`` with int64 targets; the model gives logits (B, T, C). Logged:
``{stage}/loss`` (mean cross-entropy per step), ``{stage}/acc`` (accuracy over all steps) and, with
``answer_steps=k``, ``{stage}/answer_acc``: accuracy over the last k steps only — for the copy task
(k = the copy length) the part that needs memory; the blanks before it are easy to get right.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor
from torchmetrics import Metric, MetricCollection

from torchseq.checks import check_positive_int
from torchseq.tasks.supervised import ModelFactory, SupervisedSequenceTask
from torchseq.tbptt import TruncatedBPTT


class StepAccuracy(Metric):
    """Fraction of correct steps of (B, T, C) logits against (B, T) targets; ``last=k``: of the last k."""

    def __init__(self, last: int | None = None) -> None:
        super().__init__()
        self.last = last
        self.add_state("correct", torch.tensor(0), dist_reduce_fx="sum")
        self.add_state("total", torch.tensor(0), dist_reduce_fx="sum")

    def update(self, output: Tensor, target: Tensor) -> None:
        hits = output.argmax(dim=-1) == target                           # (B, T)
        if self.last is not None:
            hits = hits[:, -self.last:]
        self.correct += hits.sum()
        self.total += hits.numel()

    def compute(self) -> Tensor:
        return self.correct.float() / self.total


class StepClassificationTask(SupervisedSequenceTask):
    """Per-step classification: the model maps (B, T, F) to logits (B, T, num_classes).

    Args:
        model: builds the network as ``model(input_size, num_classes)``, e.g. a
            :class:`~torchseq.models.tagger.RecurrentTagger`.
        input_size: features per step (linked from the data module by the CLI).
        num_classes: classes per step (linked from the data module by the CLI).
        answer_steps: also report the accuracy over the last ``answer_steps`` steps (None: don't).
        tbptt: train with truncated BPTT over chunks of ``tbptt.steps`` timesteps (None: full BPTT);
            with per-step targets every chunk has a loss and an optimiser step.
    """

    target_dtype = torch.int64

    def __init__(
        self, model: ModelFactory, input_size: int, num_classes: int, answer_steps: int | None = None,
        tbptt: TruncatedBPTT | None = None,
    ) -> None:
        if not isinstance(num_classes, int) or num_classes < 2:
            raise ValueError(f"num_classes: per-step classification needs at least 2 classes, got "
                             f"{num_classes!r}")
        check_positive_int("answer_steps", answer_steps, optional=True)
        self.answer_steps = answer_steps  # read by make_metrics() during super().__init__
        super().__init__(model, input_size, num_outputs=num_classes, tbptt=tbptt)

    @property
    def num_classes(self) -> int:
        return self.num_outputs

    def make_metrics(self) -> MetricCollection:
        metrics = {"acc": StepAccuracy()}
        if self.answer_steps is not None:
            metrics["answer_acc"] = StepAccuracy(last=self.answer_steps)
        return MetricCollection(metrics)

    def loss(self, output: Tensor, target: Tensor) -> Tensor:
        return F.cross_entropy(output.flatten(0, 1), target.flatten())

    def predict(self, output: Tensor) -> Tensor:
        return output.argmax(dim=-1)                                     # (B, T)


#: The same class under its short name, which configs and checkpoints may still name.
StepClassification = StepClassificationTask
