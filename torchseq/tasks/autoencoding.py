"""Training autoencoders: reconstruction for images and windows, and reconstruction-based anomaly scores.

- :class:`AutoencoderTask` (images): the model outputs pixel logits and the loss is
  ``binary_cross_entropy_with_logits`` averaged over every pixel (Keras' ``binary_crossentropy``).
  Builds its network as ``model(image_shape)``, e.g. from
  :class:`~torchseq.models.autoencoder.Autoencoder`.
- :class:`AnomalyAutoencoderTask` (windows of a series): the model outputs the values themselves and
  the loss is the mean squared error over every element. The *anomaly score* of a window is its mean
  squared reconstruction error, and the validation and test AUROC of that score against the window
  labels (1 = anomalous) is logged with ``torchmetrics``. Builds its network as
  ``model(input_size)``, e.g. from :class:`~torchseq.models.sequence_autoencoder.SequenceAutoencoder`.

Both take a model factory, so the CLI links the sizes from the data module (``image_shape``,
``input_size``) while the config chooses the architecture. The optimiser is Adam(lr=1e-3) unless a
config's ``optimizer:`` replaces it.

Logged: ``{train,val,test}/loss``; the anomaly task adds ``val/auroc`` and ``test/auroc``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import lightning as L
import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torchmetrics.classification import BinaryAUROC

from torchseq.models.autoencoder import ImageShape


class ReconstructionTask(L.LightningModule):
    """What both autoencoder tasks share: fit ``model`` (``encode``/``decode``/``forward``) to its inputs.

    Subclasses choose :meth:`reconstruction_loss` and :meth:`output_to_data`.
    """

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    @property
    def latent_dim(self) -> int:
        return self.model.latent_dim

    def forward(self, inputs: Tensor) -> Tensor:
        return self.model(inputs)

    def reconstruction_loss(self, outputs: Tensor, inputs: Tensor) -> Tensor:
        raise NotImplementedError

    def output_to_data(self, outputs: Tensor) -> Tensor:
        """Model outputs → the data's space."""
        return outputs

    # -- what the callbacks call -------------------------------------------------------------------
    def encode(self, inputs: Tensor) -> Tensor:
        """Codes (B, latent_dim): the features of the inputs."""
        return self.model.encode(inputs)

    def decode(self, codes: Tensor, *args: Any) -> Tensor:
        return self.output_to_data(self.model.decode(codes, *args))

    def reconstruct(self, inputs: Tensor) -> Tensor:
        return self.output_to_data(self(inputs))

    # -- steps -------------------------------------------------------------------------------------
    def shared_step(self, batch: Sequence[Tensor], stage: str) -> tuple[Tensor, Tensor]:
        """Log ``{stage}/loss``; return the loss and the model outputs."""
        inputs = batch[0]
        outputs = self(inputs)
        loss = self.reconstruction_loss(outputs, inputs)
        training = stage == "train"
        self.log(
            f"{stage}/loss", loss, on_step=training, on_epoch=True, prog_bar=True, batch_size=len(inputs)
        )
        return loss, outputs

    def training_step(self, batch: Sequence[Tensor], batch_idx: int) -> Tensor:
        return self.shared_step(batch, "train")[0]

    def validation_step(self, batch: Sequence[Tensor], batch_idx: int) -> None:
        self.shared_step(batch, "val")

    def test_step(self, batch: Sequence[Tensor], batch_idx: int) -> None:
        self.shared_step(batch, "test")

    def configure_optimizers(self) -> Any:
        return torch.optim.Adam(self.parameters(), lr=1e-3)


class AutoencoderTask(ReconstructionTask):
    """Image autoencoder: pixel logits out, binary cross-entropy against the [0, 1] pixels.

    Args:
        model: builds the network as ``model(image_shape)``, e.g.
            ``functools.partial(Autoencoder, architecture="conv", latent_dim=16)``.
        image_shape: (C, H, W) of the images (linked from the data module by the CLI).
    """

    def __init__(
        self, model: Callable[[ImageShape], nn.Module], image_shape: ImageShape = (1, 28, 28)
    ) -> None:
        super().__init__(model(tuple(image_shape)))
        self.save_hyperparameters()

    def reconstruction_loss(self, outputs: Tensor, inputs: Tensor) -> Tensor:
        return F.binary_cross_entropy_with_logits(outputs, inputs)

    def output_to_data(self, outputs: Tensor) -> Tensor:
        return torch.sigmoid(outputs)


def window_labels(labels: Tensor) -> Tensor:
    """Per-window 0/1 labels (B,): a window with per-step labels (B, T) is anomalous if any step is."""
    if labels.dim() == 2:
        labels = labels.amax(dim=1)
    if labels.dim() != 1:
        raise ValueError(f"labels: expected shape (B,) or (B, T), got {tuple(labels.shape)}")
    return labels.long()


class AnomalyAutoencoderTask(ReconstructionTask):
    """Sequence autoencoder whose reconstruction error scores windows as anomalous.

    Train it on normal windows only (the anomaly data modules' train split); validation and test windows
    carry labels, and ``val/auroc`` / ``test/auroc`` measure how well the score ranks anomalous windows
    above normal ones (1.0 = perfect, 0.5 = chance). A split without both classes (a validation
    stretch of normal windows only, say) logs no AUROC.

    Args:
        model: builds the network as ``model(input_size)``, e.g.
            ``functools.partial(SequenceAutoencoder, hidden_size=64, latent_dim=16)``.
        input_size: channels per time step (linked from the data module by the CLI).
    """

    def __init__(self, model: Callable[[int], nn.Module], input_size: int = 1) -> None:
        super().__init__(model(input_size))
        self.save_hyperparameters()
        self.val_auroc, self.test_auroc = BinaryAUROC(), BinaryAUROC()
        self._classes_seen: dict[str, set[int]] = {"val": set(), "test": set()}

    def reconstruction_loss(self, outputs: Tensor, inputs: Tensor) -> Tensor:
        return F.mse_loss(outputs, inputs)

    def anomaly_score(self, windows: Tensor, outputs: Tensor | None = None) -> Tensor:
        """Mean squared reconstruction error per window, (B,); ``outputs``: the model's, if at hand."""
        reconstruction = self.output_to_data(self(windows) if outputs is None else outputs)
        return (reconstruction - windows).square().flatten(1).mean(dim=1)

    def scored_step(self, batch: Sequence[Tensor], stage: str, auroc: BinaryAUROC) -> None:
        windows, labels = batch[0], window_labels(batch[1])
        _, outputs = self.shared_step(batch, stage)
        auroc.update(self.anomaly_score(windows, outputs), labels)
        self._classes_seen[stage] |= set(labels.unique().tolist())

    def log_auroc(self, stage: str, auroc: BinaryAUROC) -> None:
        """Log ``{stage}/auroc`` when the epoch saw both classes (a split of normal windows only has none)."""
        if self._classes_seen[stage] == {0, 1}:
            self.log(f"{stage}/auroc", auroc.compute(), prog_bar=True)
        auroc.reset()
        self._classes_seen[stage] = set()

    def validation_step(self, batch: Sequence[Tensor], batch_idx: int) -> None:
        self.scored_step(batch, "val", self.val_auroc)

    def on_validation_epoch_end(self) -> None:
        self.log_auroc("val", self.val_auroc)

    def test_step(self, batch: Sequence[Tensor], batch_idx: int) -> None:
        self.scored_step(batch, "test", self.test_auroc)

    def on_test_epoch_end(self) -> None:
        self.log_auroc("test", self.test_auroc)
