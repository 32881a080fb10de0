"""The GEMM floor: the time the layer's matrix products alone take when batched over all timesteps.

A recurrent layer does, per layer and direction, 2·T·B·(I + H)·G·H FLOP of matrix products forward
(G gates: 1 RNN, 3 GRU, 4 LSTM). Backward repeats them twice: once for the weight gradients and once
for the data gradients (of h_{t-1} and of the input), so ×3 for forward+backward, less the first
layer's input gradient 2·T·B·I·G·H, which nobody asks for when the input is data (as here; both sides
skip it). Everything else (activations, gate products) is linear in T·B·H and cheap in FLOP. The floor
runs the forward products as one big GEMM per layer and direction, in the same run and on the same
machine, and scales that time by the FLOP ratio for backward, so ``time / floor`` says how far an
implementation is from the arithmetic.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from benchmarks.shapes import Shape
from benchmarks.timing import Clock, Workload, time_interleaved

GATES = {"RNN": 1, "GRU": 3, "LSTM": 4, "LayerNormLSTM": 4, "PeepholeLSTM": 4}


def layer_inputs(shape: Shape) -> list[int]:
    """Input size of each (layer, direction) pair: I for the first layer, H·directions after it."""
    directions = 2 if shape.bidirectional else 1
    sizes = [shape.input_size] + [shape.hidden_size * directions] * (shape.num_layers - 1)
    return [size for size in sizes for _ in range(directions)]


def gemm_flops(shape: Shape, cell: str, backward: bool) -> float:
    """Matrix-product FLOP of a forward pass, or of forward and backward (no gradient for the input)."""
    per_product = 2 * shape.steps * shape.batch * GATES[cell] * shape.hidden_size  # × the inner size
    forward = sum(per_product * (inputs + shape.hidden_size) for inputs in layer_inputs(shape))
    if not backward:
        return forward
    first_layer_inputs = layer_inputs(shape)[: 2 if shape.bidirectional else 1]
    return 3 * forward - sum(per_product * inputs for inputs in first_layer_inputs)


@dataclass(frozen=True)
class Floor:
    forward_ms: float
    forward_flops: float
    backward_flops: float  # forward and backward together

    @property
    def rate_gflops(self) -> float:
        """Matmul rate this machine reached on this shape's batched products."""
        return self.forward_flops / self.forward_ms / 1e6

    def flops(self, backward: bool) -> float:
        return self.backward_flops if backward else self.forward_flops

    def ms(self, backward: bool) -> float:
        """The products' time at the measured rate."""
        return self.flops(backward) / self.rate_gflops / 1e6


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
    flops = (gemm_flops(shape, cell, backward=False), gemm_flops(shape, cell, backward=True))
    return Floor(timing.median_ms, *flops)
