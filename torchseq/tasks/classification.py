"""``ClassificationTask``: one class per sequence, cross-entropy, accuracy and macro-F1."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor
from torchmetrics import MetricCollection
from torchmetrics.classification import MulticlassAccuracy, MulticlassF1Score

from torchseq.tasks.supervised import ModelFactory, SupervisedSequenceTask
from torchseq.tbptt import TruncatedBPTT


class ClassificationTask(SupervisedSequenceTask):
    """Sequence classification: the model gives ``num_classes`` logits per sequence.

    Logs ``{stage}/loss`` (cross-entropy), ``{stage}/acc`` (accuracy over all sequences) and
    ``{stage}/f1`` (F1 averaged over classes, so a rare class counts as much as a common one).
    ``predict`` returns class indices (B,).

    Args:
        model: builds the network as ``model(input_size, num_classes)``, e.g.
            ``functools.partial(RecurrentClassifier, hidden_size=128)``.
        input_size: features per step (linked from the data module by the CLI).
        num_classes: number of classes (linked from the data module by the CLI).
        tbptt: train with truncated BPTT over chunks of ``tbptt.steps`` timesteps (None: full BPTT).
    """

    target_dtype = torch.int64

    def __init__(
        self, model: ModelFactory, input_size: int, num_classes: int, tbptt: TruncatedBPTT | None = None
    ) -> None:
        if not isinstance(num_classes, int) or num_classes < 2:
            raise ValueError(
                f"num_classes: classification needs at least 2 classes, got {num_classes!r}"
                + (" (0 means the data has regression targets: use torchseq.tasks.RegressionTask)"
                   if num_classes == 0 else "")
            )
        super().__init__(model, input_size, num_outputs=num_classes, tbptt=tbptt)

    @property
    def num_classes(self) -> int:
        return self.num_outputs

    def make_metrics(self) -> MetricCollection:
        return MetricCollection({
            "acc": MulticlassAccuracy(self.num_classes, average="micro"),
            "f1": MulticlassF1Score(self.num_classes, average="macro"),
        })

    def loss(self, output: Tensor, target: Tensor) -> Tensor:
        return F.cross_entropy(output, target)

    def predict(self, output: Tensor) -> Tensor:
        return output.argmax(dim=-1)


#: The same class under its short name, which configs and checkpoints may still name.
Classification = ClassificationTask
