"""Running a module in eval mode for a while, then handing it back in the mode it was in."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch
from torch import nn


@contextmanager
def evaluating(module: nn.Module, gradients: bool = False) -> Iterator[None]:
    """Eval mode (no dropout, fixed batch-norm statistics) inside the block, the previous mode after.

    Gradients are off inside unless ``gradients=True`` (attacks and gradient measurements need them).
    """
    was_training = module.training
    module.eval()
    try:
        with torch.set_grad_enabled(gradients):
            yield
    finally:
        module.train(was_training)
