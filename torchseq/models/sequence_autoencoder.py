"""``SequenceAutoencoder``: recurrent encoder → latent code → recurrent decoder, for anomaly detection.

The shape is the classic Keras LSTM autoencoder::

    LSTM(hidden) → Dense(latent) → RepeatVector(T) → LSTM(hidden, return_sequences=True)
                 → TimeDistributed(Dense(channels))

The encoder reads the window and keeps only its last hidden state; a linear layer squeezes that into
the code z. The decoder receives z at every one of the T steps and must rebuild the whole window from
it. Trained on normal windows only, it reconstructs normal shapes well and unusual ones badly, so the
reconstruction error of a window is its anomaly score (:meth:`anomaly_score`).

Both recurrent layers are :class:`torchseq.LSTM` / :class:`torchseq.GRU`, so ``impl="custom"`` runs the
book's formulas and ``impl="fused"`` torch's kernel, with identical parameters.

Shapes: windows (B, T, C) batch-first; codes (B, latent_dim).
"""

from __future__ import annotations

from torch import Tensor, nn

from torchseq.checks import check_choice, check_positive_int
from torchseq.models.recurrent_encoder import CELLS


class SequenceAutoencoder(nn.Module):
    """Recurrent autoencoder of fixed-length multichannel windows.

    Args:
        input_size: channels C per time step.
        hidden_size: units of each recurrent layer.
        latent_dim: size of the code between encoder and decoder.
        cell: ``"lstm"`` or ``"gru"``.
        num_layers: stacked recurrent layers in the encoder and in the decoder.
        impl: ``"custom"`` (explicit formulas) or ``"fused"`` (torch's kernel).
    """

    def __init__(
        self,
        input_size: int,
        hidden_size: int = 64,
        latent_dim: int = 16,
        cell: str = "lstm",
        num_layers: int = 1,
        impl: str = "custom",
    ) -> None:
        super().__init__()
        recurrent = CELLS[check_choice("cell", cell, ("lstm", "gru"))]
        for name, value in (("input_size", input_size), ("hidden_size", hidden_size),
                            ("latent_dim", latent_dim)):
            check_positive_int(name, value)
        self.input_size, self.latent_dim = input_size, latent_dim
        self.encoder = recurrent(input_size, hidden_size, num_layers, batch_first=True, impl=impl)
        self.to_code = nn.Linear(hidden_size, latent_dim)
        self.decoder = recurrent(latent_dim, hidden_size, num_layers, batch_first=True, impl=impl)
        self.to_output = nn.Linear(hidden_size, input_size)

    def encode(self, windows: Tensor) -> Tensor:
        """(B, T, C) → codes (B, latent_dim), from the encoder's last hidden state of its top layer."""
        self._check_windows(windows)
        _, state = self.encoder(windows)
        hidden = state[0] if isinstance(state, tuple) else state  # LSTM: (h_n, c_n); GRU: h_n
        return self.to_code(hidden[-1])  # (B, latent)

    def decode(self, codes: Tensor, steps: int) -> Tensor:
        """Codes (B, latent_dim) → windows (B, steps, C): the code is repeated as input at every step."""
        repeated = codes.unsqueeze(1).expand(-1, steps, -1)  # (B, T, latent)
        outputs, _ = self.decoder(repeated)  # (B, T, hidden)
        return self.to_output(outputs)  # (B, T, C)

    def forward(self, windows: Tensor) -> Tensor:
        """The reconstruction (B, T, C) of ``windows`` (B, T, C)."""
        return self.decode(self.encode(windows), windows.shape[1])

    def anomaly_score(self, windows: Tensor) -> Tensor:
        """Mean squared reconstruction error of each window, (B,)."""
        return (self(windows) - windows).square().mean(dim=(1, 2))

    def _check_windows(self, windows: Tensor) -> None:
        if windows.dim() != 3 or windows.shape[-1] != self.input_size:
            raise ValueError(
                f"windows: expected shape (B, T, {self.input_size}) batch-first, got {tuple(windows.shape)}"
            )
