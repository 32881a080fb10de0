"""LSTM-FCN (Karim, Majumdar, Darabi & Chen 2017): a recurrent and a convolutional view of one sequence.

Two branches read the same input and their features are concatenated for the linear head::

    x ─┬─ LSTM(hidden_size) → last state → Dropout(0.8) ──────────────────────────────┬─ concat → Linear
       └─ Conv1d(128, k=8) → BN → ReLU → Conv1d(256, k=5) → BN → ReLU                  │
                           → Conv1d(128, k=3) → BN → ReLU → global average pool ───────┘

The convolutional branch is the fully convolutional network (FCN) of Wang, Yan & Oates 2017. The paper
feeds the LSTM a "dimension shuffled" view (the whole series as one step of T features); here the LSTM
reads the sequence step by step, which also serves multivariate and variable-length problems.

Variable lengths: every stage sees only each sequence's real steps. Batch normalisation takes its
statistics over real steps only, padded steps are zero before every convolution (as "same" padding
would be for the sequence alone) and the pooling averages real steps only, so a padded sequence gives
the features it gives alone.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from torchseq.models.classifier import SequenceClassifier
from torchseq.models.pooling import masked_mean, valid_steps
from torchseq.models.recurrent_encoder import RecurrentEncoder


class MaskedBatchNorm1d(nn.BatchNorm1d):
    """``BatchNorm1d`` over the channels of (B, C, T) that uses, and writes, only the steps in ``mask``."""

    def forward(self, x: Tensor, mask: Tensor | None = None) -> Tensor:
        """x (B, C, T), mask (B, T) boolean or None (every step real) → (B, C, T), zero where not mask."""
        if mask is None:
            return super().forward(x)
        if not self.training and self.running_mean is not None:
            # Running statistics: each step is normalised alone, so padding cannot reach the real steps
            # (and no data-dependent shape: the form torch.export and ONNX can trace).
            return super().forward(x).masked_fill(~mask.unsqueeze(1), 0.0)
        steps = x.transpose(1, 2)                                        # (B, T, C)
        normalized = super().forward(steps[mask])                        # (N_real, C)
        return steps.new_zeros(steps.shape).index_put((mask,), normalized).transpose(1, 2)


class ConvolutionBlock(nn.Module):
    """Conv1d with "same" zero padding → batch norm → ReLU, on (B, C, T).

    Even kernels pad one step more on the right than on the left, as Keras and ``padding="same"`` do;
    the padding is explicit because torch warns about even kernels with ``padding="same"``.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int) -> None:
        super().__init__()
        left = (kernel_size - 1) // 2
        self.padding = nn.ConstantPad1d((left, kernel_size - 1 - left), 0.0)
        self.conv = nn.Conv1d(in_channels, out_channels, kernel_size)
        self.norm = MaskedBatchNorm1d(out_channels)
        nn.init.kaiming_uniform_(self.conv.weight, nonlinearity="relu")  # Keras' he_uniform, as the paper
        nn.init.zeros_(self.conv.bias)

    def forward(self, x: Tensor, mask: Tensor | None = None) -> Tensor:
        return torch.relu(self.norm(self.conv(self.padding(x)), mask))   # (B, C_out, T)


class FullyConvolutionalEncoder(nn.Module):
    """Convolution blocks over time, then the average over each sequence's real steps: (B, T, F) → (B, C)."""

    def __init__(
        self,
        input_size: int,
        channels: Sequence[int] = (128, 256, 128),
        kernel_sizes: Sequence[int] = (8, 5, 3),
    ) -> None:
        super().__init__()
        if len(channels) != len(kernel_sizes) or not channels:
            raise ValueError(
                f"kernel_sizes: expected one per convolution ({len(channels)} channels given), "
                f"got {len(kernel_sizes)}"
            )
        widths = [input_size, *channels]
        self.blocks = nn.ModuleList(
            ConvolutionBlock(widths[k], widths[k + 1], kernel_sizes[k]) for k in range(len(channels))
        )
        self.input_size = input_size
        self.output_size = channels[-1]

    def forward(self, x: Tensor, lengths: Tensor | None = None) -> Tensor:
        """x (B, T, F), lengths (B,) or None → (B, C_last)."""
        mask = None if lengths is None else valid_steps(lengths, x.shape[0], x.shape[1], x.device)  # (B, T)
        if mask is not None:
            x = x.masked_fill(~mask.unsqueeze(-1), 0.0)                  # whatever the padding held
        h = x.transpose(1, 2)                                            # (B, F, T)
        for block in self.blocks:
            h = block(h, mask)                                           # (B, C_k, T)
        return masked_mean(h.transpose(1, 2), lengths)                   # (B, C_last)


class LSTMFCNEncoder(nn.Module):
    """The two branches side by side: [dropout(LSTM last state), FCN pooled features] → (B, H + C_last)."""

    def __init__(
        self,
        input_size: int,
        hidden_size: int = 8,
        dropout: float = 0.8,
        channels: Sequence[int] = (128, 256, 128),
        kernel_sizes: Sequence[int] = (8, 5, 3),
        impl: str = "custom",
    ) -> None:
        super().__init__()
        self.recurrent = RecurrentEncoder(input_size, hidden_size, cell="lstm", pooling="last", impl=impl)
        self.recurrent_dropout = nn.Dropout(dropout)
        self.convolutional = FullyConvolutionalEncoder(input_size, channels, kernel_sizes)
        self.input_size = input_size
        self.output_size = self.recurrent.output_size + self.convolutional.output_size

    def forward(self, x: Tensor, lengths: Tensor | None = None) -> Tensor:
        recurrent = self.recurrent_dropout(self.recurrent(x, lengths))  # (B, H)
        convolutional = self.convolutional(x, lengths)                   # (B, C_last)
        return torch.cat([recurrent, convolutional], dim=1)              # (B, H + C_last)


class LSTMFCN(SequenceClassifier):
    """LSTM-FCN with a linear head (the paper's softmax layer; the task applies the loss).

    Defaults follow the paper: 8 LSTM units (it also tries 64 and 128), dropout 0.8 on the LSTM branch,
    convolutions of 128/256/128 filters with kernels 8/5/3.
    """

    def __init__(
        self,
        input_size: int,
        num_outputs: int,
        hidden_size: int = 8,
        dropout: float = 0.8,
        channels: Sequence[int] = (128, 256, 128),
        kernel_sizes: Sequence[int] = (8, 5, 3),
        impl: str = "custom",
    ) -> None:
        encoder = LSTMFCNEncoder(input_size, hidden_size, dropout, channels, kernel_sizes, impl=impl)
        super().__init__(encoder, num_outputs)


class FCN(SequenceClassifier):
    """The fully convolutional network alone (Wang, Yan & Oates 2017): LSTM-FCN without its LSTM branch.

    The strong convolutional baseline of the UCR benchmarks (Fawaz et al. 2019); on long, scarce series
    such as ArrowHead (36 training series of 251 steps) it is the branch that carries LSTM-FCN.
    """

    def __init__(
        self,
        input_size: int,
        num_outputs: int,
        channels: Sequence[int] = (128, 256, 128),
        kernel_sizes: Sequence[int] = (8, 5, 3),
    ) -> None:
        super().__init__(FullyConvolutionalEncoder(input_size, channels, kernel_sizes), num_outputs)
