"""Seeded, stratified partitions of a dataset into parts of given shares (train/val/test).

Stratified means every class is cut in the same proportions, so each part keeps the class balance of
the whole; the rounding is arranged so that each class keeps its size *and* each part gets as close to
its share of the total as integers allow. The same seed always gives the same partition.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from torchseq.checks import check_positive_int


def check_fractions(**fractions: float) -> None:
    """Each named fraction lies in (0, 1) and together they leave a positive share for training."""
    for name, value in fractions.items():
        if not 0.0 < value < 1.0:
            raise ValueError(f"{name}: expected a fraction in (0, 1), got {value!r}")
    if sum(fractions.values()) >= 1.0:
        total = sum(fractions.values())
        raise ValueError(
            f"{' + '.join(fractions)}: expected a sum below 1 (the rest is for training), got {total:g}"
        )


def split_indices(
    size: int, fractions: Sequence[float], seed: int, labels: np.ndarray | None = None
) -> list[np.ndarray]:
    """Partition ``range(size)`` into ``len(fractions)`` sorted index arrays with those shares.

    ``fractions`` sum to 1. With ``labels`` (one per item) the partition is stratified by label.
    Raises ValueError when a part with a positive share would come out empty.
    """
    shares = np.asarray(fractions, dtype=np.float64)
    if shares.ndim != 1 or (shares < 0).any() or not np.isclose(shares.sum(), 1.0):
        raise ValueError(f"fractions: expected non-negative shares that sum to 1, got {list(fractions)}")
    if labels is None:
        groups = [np.arange(size)]
    else:
        labels = np.asarray(labels)
        if labels.shape != (size,):
            raise ValueError(f"labels: expected shape ({size},), got {labels.shape}")
        groups = [np.flatnonzero(labels == value) for value in np.unique(labels)]
    counts = _allocate(np.array([len(group) for group in groups]), shares)  # (groups, parts)
    rng = np.random.default_rng(seed)
    parts: list[list[np.ndarray]] = [[] for _ in shares]
    for group, group_counts in zip(groups, counts, strict=True):
        pieces = np.split(rng.permutation(group), np.cumsum(group_counts)[:-1])
        for part, piece in zip(parts, pieces, strict=True):
            part.append(piece)
    result = [np.sort(np.concatenate(part)) for part in parts]
    for index, (indices, share) in enumerate(zip(result, shares, strict=True)):
        if share > 0 and len(indices) == 0:
            raise ValueError(
                f"too few items ({size}) to give part {index} of the split a share of {share:g}: "
                "it would be empty"
            )
    return result


def _allocate(group_sizes: np.ndarray, shares: np.ndarray) -> np.ndarray:
    """Integer counts (groups, parts): rows sum to the group sizes, columns to the parts' rounded totals."""
    ideal = np.outer(group_sizes, shares)
    counts = np.floor(ideal).astype(np.int64)
    row_need = group_sizes - counts.sum(axis=1)
    column_need = _round_preserving_sum(group_sizes.sum() * shares) - counts.sum(axis=0)
    # Hand out the units lost to flooring, largest remainder first. Visiting every cell always finishes
    # the job: the rows' total need equals the columns', so a row still in need meets a column with room.
    for flat in np.argsort(-(ideal - counts), axis=None, kind="stable"):
        row, column = np.unravel_index(flat, counts.shape)
        if row_need[row] > 0 and column_need[column] > 0:
            counts[row, column] += 1
            row_need[row] -= 1
            column_need[column] -= 1
    return counts


def _round_preserving_sum(values: np.ndarray) -> np.ndarray:
    """Largest-remainder rounding: integers that sum to round(values.sum())."""
    floors = np.floor(values).astype(np.int64)
    missing = round(float(values.sum())) - int(floors.sum())
    floors[np.argsort(-(values - floors), kind="stable")[:missing]] += 1
    return floors


def fold_indices(
    size: int, folds: int, fold: int, seed: int, labels: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """K-fold cross-validation: ``(fit, held_out)`` indices for fold ``fold`` of ``folds``.

    The ``folds`` held-out parts are one seeded, stratified :func:`split_indices` partition into equal
    shares, so for a given seed they are disjoint and together cover ``range(size)`` once: every item is
    held out in exactly one fold. ``fit`` is everything else.
    """
    check_positive_int("folds", folds, minimum=2)
    if isinstance(fold, bool) or not isinstance(fold, int) or not 0 <= fold < folds:
        raise ValueError(f"fold: expected an integer in [0, {folds - 1}] (folds={folds}), got {fold!r}")
    parts = split_indices(size, [1 / folds] * folds, seed, labels)
    held_out = parts.pop(fold)
    return np.sort(np.concatenate(parts)), held_out
