"""The shapes benchmarked: the fastrnns point, the small shapes of the book's tasks, and a grid."""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import asdict, dataclass


@dataclass(frozen=True)
class Shape:
    """One benchmark configuration: sequence length T, batch B, input I, hidden H, layers, directions."""

    name: str
    steps: int
    batch: int
    input_size: int
    hidden_size: int
    num_layers: int = 1
    bidirectional: bool = False

    @property
    def label(self) -> str:
        layers = f" L{self.num_layers}" if self.num_layers > 1 else ""
        extra = layers + (" bi" if self.bidirectional else "")
        return f"{self.name} T{self.steps} B{self.batch} I{self.input_size} H{self.hidden_size}{extra}"

    def as_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def parse(cls, text: str) -> Shape:
        """``"T,B,I,H[,layers[,bi]]"`` → a shape named "custom", e.g. ``"5,2,3,4,1,bi"``."""
        parts = [part.strip() for part in text.split(",")]
        if not 4 <= len(parts) <= 6 or (len(parts) == 6 and parts[5] not in ("bi", "uni")):
            raise ValueError(f"--shape: expected 'T,B,I,H[,layers[,bi|uni]]', got {text!r}")
        try:
            numbers = [int(part) for part in parts[:5]]
        except ValueError:
            raise ValueError(f"--shape: expected integers for T,B,I,H[,layers], got {text!r}") from None
        if min(numbers) < 1:
            raise ValueError(f"--shape: every size must be ≥ 1, got {text!r}")
        return cls("custom", *numbers, bidirectional=len(parts) == 6 and parts[5] == "bi")


#: PyTorch's ``benchmarks/fastrnns`` default point.
FASTRNNS = Shape("fastrnns", steps=100, batch=64, input_size=512, hidden_size=512)

#: The book's tasks: MNIST read row by row, a UCR-like univariate series, and one sequence at a time.
SMALL = (
    Shape("mnist-rows", steps=28, batch=64, input_size=28, hidden_size=128),
    Shape("ucr", steps=150, batch=16, input_size=1, hidden_size=64),
    Shape("batch-1", steps=100, batch=1, input_size=64, hidden_size=128),
)

NAMED = {shape.name: shape for shape in (FASTRNNS, *SMALL)}

GRID_STEPS = (25, 100, 400)
GRID_BATCHES = (1, 16, 64, 256)
GRID_HIDDEN = (128, 512, 1024)


def grid(
    steps: Sequence[int] = GRID_STEPS,
    batches: Sequence[int] = GRID_BATCHES,
    hidden: Sequence[int] = GRID_HIDDEN,
) -> list[Shape]:
    """T × B × H × layers 1–2 × uni/bidirectional, with I = H: 144 shapes (a GPU-sized job), or the part
    of it on the given T, B and H values."""
    return [
        Shape("grid", length, batch, size, size, layers, bidirectional)
        for length, batch, size, layers, bidirectional in itertools.product(
            steps, batches, hidden, (1, 2), (False, True)
        )
    ]


def quick() -> list[Shape]:
    """The CPU subset: the named shapes and the cheapest grid corner with every layer/direction option."""
    corner = [
        Shape("grid", GRID_STEPS[0], 16, GRID_HIDDEN[0], GRID_HIDDEN[0], layers, bidirectional)
        for layers, bidirectional in itertools.product((1, 2), (False, True))
    ]
    return [FASTRNNS, *SMALL, *corner]
