"""The GEMM floor: the time the layer's matrix products alone take when batched over all timesteps.

A recurrent layer does, per layer and direction, 2·T·B·(I + H)·G·H FLOP of matrix products forward
(G gates: 1 RNN, 3 GRU, 4 LSTM), and about twice that again backward (data and weight gradients), so
×3 for forward+backward. Everything else (activations, gate products) is linear in T·B·H and cheap in
FLOP. The floor runs exactly those products as one big GEMM per layer and direction, in the same run
and on the same machine, so ``time / floor`` says how far an implementation is from the arithmetic.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from benchmarks.shapes import Shape
from benchmarks.timing import Clock, Workload, time_interleaved

GATES = {"RNN": 1, "GRU": 3, "LSTM": 4}
BACKWARD_FACTOR = 3  # forward GEMMs + data-gradient GEMMs + weight-gradient GEMMs


def layer_inputs(shape: Shape) -> list[int]:
    """Input size of each (layer, direction) pair: I for the first layer, H·directions after it."""
    directions = 2 if shape.bidirectional else 1
    sizes = [shape.input_size] + [shape.hidden_size * directions] * (shape.num_layers - 1)
    return [size for size in sizes for _ in range(directions)]


def gemm_flops(shape: Shape, cell: str, backward: bool) -> float:
    gates = GATES[cell]
    flops = sum(
        2 * shape.steps * shape.batch * (inputs + shape.hidden_size) * gates * shape.hidden_size
        for inputs in layer_inputs(shape)
    )
    return flops * (BACKWARD_FACTOR if backward else 1)


@dataclass(frozen=True)
class Floor:
    forward_ms: float
    forward_flops: float

    @property
    def rate_gflops(self) -> float:
        """Matmul rate this machine reached on this shape's batched products."""
        return self.forward_flops / self.forward_ms / 1e6

    def ms(self, backward: bool) -> float:
        return self.forward_ms * (BACKWARD_FACTOR if backward else 1)


def measure_floor(
    shape: Shape, cell: str, clock: Clock, device: torch.device, dtype: torch.dtype, repeats: int
) -> Floor:
    """Time the forward products, one (T·B, I_l + H) @ (I_l + H, G·H) GEMM per layer and direction."""
    rows, columns = shape.steps * shape.batch, GATES[cell] * shape.hidden_size
    factory = {"device": device, "dtype": dtype}
    operands = [
        (torch.randn(rows, inputs + shape.hidden_size, **factory),
         torch.randn(inputs + shape.hidden_size, columns, **factory))
        for inputs in layer_inputs(shape)
    ]

    def products() -> None:
        for left, right in operands:
            torch.mm(left, right)

    timing = time_interleaved({"floor": Workload(products)}, clock, warmup=1, repeats=repeats)["floor"]
    return Floor(timing.median_ms, gemm_flops(shape, cell, backward=False))
