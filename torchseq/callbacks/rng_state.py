"""``RNGState``: random-number-generator states travel in checkpoints, so resumed training is exact.

Dropout masks come from the global generators. Lightning restores weights, optimiser, loops and the
batch order (an epoch-seeded sampler) but not these generators, so a resumed run would draw other
dropout masks than the uninterrupted run. With this callback it draws the same ones: single-process
training resumed from a checkpoint ends with the same weights, bit for bit. (Under DDP every process has
its own generators and the checkpoint holds rank 0's; there the resumed run is statistically, not
exactly, the same.)
"""

from __future__ import annotations

import random
from typing import Any

import lightning as L
import numpy as np
import torch

KEY = "rng_states"


def rng_states() -> dict[str, Any]:
    """The global generators' states, as types ``torch.load(weights_only=True)`` accepts."""
    numpy_state = np.random.get_state(legacy=False)
    numpy_state["state"]["key"] = numpy_state["state"]["key"].tolist()
    states = {"torch": torch.get_rng_state(), "numpy": numpy_state, "python": random.getstate()}
    if torch.cuda.is_available():
        states["cuda"] = torch.cuda.get_rng_state_all()
    return states


def set_rng_states(states: dict[str, Any]) -> None:
    torch.set_rng_state(states["torch"])
    numpy_state = {**states["numpy"], "state": dict(states["numpy"]["state"])}
    numpy_state["state"]["key"] = np.asarray(numpy_state["state"]["key"], dtype=np.uint32)
    np.random.set_state(numpy_state)
    random.setstate(states["python"])
    if "cuda" in states and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(states["cuda"])


class RNGState(L.Callback):
    """Save the generators' states with every checkpoint; restore them when fitting resumes from one.

    Testing or validating a checkpoint leaves the generators alone.
    """

    def on_save_checkpoint(self, trainer: L.Trainer, pl_module: L.LightningModule, checkpoint: dict) -> None:
        checkpoint[KEY] = rng_states()

    def on_load_checkpoint(self, trainer: L.Trainer, pl_module: L.LightningModule, checkpoint: dict) -> None:
        if KEY in checkpoint and trainer.state.fn == "fit":
            set_rng_states(checkpoint[KEY])
