"""Evaluation under DDP that sees every sample exactly once.

Lightning shards a loader across processes with ``DistributedSampler``, which pads the shards to equal
length by repeating samples: with 359 test sequences on 2 processes one is evaluated twice, and the
accuracy, loss and confusion matrix a DDP run reports differ from a single process's. Validation and
test loaders get :class:`UnrepeatedDistributedSampler` instead (shards may differ by one sample; the
metrics are summed across processes, so uneven shards are exact). Lightning keeps a loader's sampler
when it is already a ``DistributedSampler``.
"""

from __future__ import annotations

import torch.distributed as dist
from lightning.pytorch.overrides.distributed import UnrepeatedDistributedSampler
from torch.utils.data import Dataset, Sampler


def evaluation_sampler(dataset: Dataset) -> Sampler | None:
    """This process's unpadded shard of ``dataset`` in a multi-process run; None (every sample) otherwise."""
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return None
    return UnrepeatedDistributedSampler(dataset, shuffle=False)
