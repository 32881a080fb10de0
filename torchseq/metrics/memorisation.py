"""Is a generator copying its training images? Nearest-neighbour distances to the training set.

For each query image the L2 distance (in pixel space, images in [0, 1]) to its nearest training image.
A generator that memorises draws samples sitting on training images, so the median distance of its
samples falls well below that of *real held-out* images, which are new digits of the same kind. A
sample median close to (or above) the held-out median says the samples are as far from the training
set as new real digits are: not copies.
"""

from __future__ import annotations

import torch
from torch import Tensor


def nearest_neighbour_distances(queries: Tensor, references: Tensor, chunk: int = 256) -> Tensor:
    """L2 distance from each of ``queries`` (N, ...) to its nearest row of ``references`` (M, ...), (N,)."""
    if queries.shape[1:] != references.shape[1:]:
        raise ValueError(
            f"queries: expected images of shape {tuple(references.shape[1:])} like the references, "
            f"got {tuple(queries.shape[1:])}"
        )
    flat_references = references.flatten(1).double()
    return torch.cat(
        [
            torch.cdist(part.flatten(1).double(), flat_references).min(dim=1).values
            for part in queries.split(chunk)
        ]
    )
