"""Per-channel z-normalisation with statistics fitted on the training split only.

Fitting on training data alone keeps the validation and test splits unseen, as they would be in use.
Missing values (NaN) are ignored when fitting and become 0 after transforming, i.e. the training mean
of their channel.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


class ChannelStandardizer:
    """``(x - mean) / std`` per channel (last axis); a constant channel keeps std 1 rather than 0."""

    def __init__(self, mean: np.ndarray, std: np.ndarray) -> None:
        self.mean = mean
        self.std = std

    @classmethod
    def fit(cls, arrays: Sequence[np.ndarray]) -> ChannelStandardizer:
        """Statistics over every step of every array (each (..., C)), NaN ignored."""
        values = np.concatenate([array.reshape(-1, array.shape[-1]) for array in arrays])  # (steps, C)
        if np.isnan(values).all(axis=0).any():
            raise ValueError("cannot standardise: a channel has no observed value in the training split")
        mean = np.nanmean(values, axis=0)
        std = np.nanstd(values, axis=0)
        return cls(mean, np.where(std > 0, std, 1.0))

    def __call__(self, array: np.ndarray) -> np.ndarray:
        return np.nan_to_num((array - self.mean) / self.std, nan=0.0)
