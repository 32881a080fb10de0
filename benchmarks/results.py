"""One measured row (cell × shape × workload) and the targets it is judged against."""

from __future__ import annotations

from dataclasses import dataclass

from benchmarks.floor import Floor
from benchmarks.shapes import FASTRNNS, SMALL, Shape
from benchmarks.timing import Timing

#: custom/fused ratios the LSTM must reach (issue 15), at 1 thread and at torch's default thread count:
#: (shape name, workload) → bound. Every named shape's ``inference`` row has :data:`INFERENCE_TARGET`.
LSTM_TARGETS = {
    (FASTRNNS.name, "forward"): 1.3,
    (FASTRNNS.name, "forward+backward"): 1.15,
    **{(shape.name, "forward+backward"): 1.5 for shape in SMALL},
}
INFERENCE_TARGET = 1.2
#: A user cell's fast path, forward+backward, against nn.LSTM of the same size (issue 13).
USER_CELL_TARGETS = {
    (FASTRNNS.name, "forward+backward"): 1.5,
    **{(shape.name, "forward+backward"): 2.5 for shape in SMALL},
}
#: The GRU and the RNN must not be slower than torch's at any named shape and workload.
OTHER_CELLS_TARGET = 1.0
NAMED_SHAPES = {FASTRNNS.name, *(shape.name for shape in SMALL)}


def target_for(cell: str, shape_name: str, mode: str) -> float | None:
    """The custom/fused bound a row is judged against, or None (grid and custom shapes have none)."""
    if shape_name not in NAMED_SHAPES:
        return None
    if cell in ("GRU", "RNN"):
        return OTHER_CELLS_TARGET
    if cell != "LSTM":  # a user cell
        return USER_CELL_TARGETS.get((shape_name, mode))
    return INFERENCE_TARGET if mode == "inference" else LSTM_TARGETS.get((shape_name, mode))


@dataclass
class Row:
    cell: str
    shape: Shape
    mode: str
    timings: dict[str, Timing]
    peak_bytes: dict[str, int | None]
    floor: Floor

    @property
    def backward(self) -> bool:
        return self.mode == "forward+backward"

    def ms(self, side: str) -> float | None:
        return self.timings[side].median_ms if side in self.timings else None

    def ratio(self, side: str) -> float | None:
        """side / fused (< 1: the side is faster)."""
        if side not in self.timings or "fused" not in self.timings:
            return None
        return self.timings[side].median_ms / self.timings["fused"].median_ms

    def from_floor(self, side: str) -> float | None:
        """side / GEMM floor (≥ 1 in practice: how many times the batched matmuls' time)."""
        if side not in self.timings:
            return None
        return self.timings[side].median_ms / self.floor.ms(self.backward)

    @property
    def compile_s(self) -> float | None:
        """First call (elapsed) minus a steady call of the compiled side: the compilation time, s."""
        timing = self.timings.get("compiled")
        return None if timing is None else (timing.first_wall_ms - timing.median_ms) / 1e3

    @property
    def target(self) -> float | None:
        return target_for(self.cell, self.shape.name, self.mode)

    @property
    def meets_target(self) -> bool | None:
        """Judged on ``custom``, or for a user cell on the faster of its two fast paths (``custom``, the
        TorchScript loops, and ``compiled-step``, the opt-in compiled step)."""
        ratios = [self.ratio(side) for side in ("custom", "compiled-step")]
        ratios = [ratio for ratio in ratios if ratio is not None]
        ratio = min(ratios) if ratios else None
        return None if self.target is None or ratio is None else ratio <= self.target

    def as_dict(self) -> dict:
        sides = list(self.timings)
        return {
            "cell": self.cell,
            "shape": self.shape.as_dict(),
            "mode": self.mode,
            "median_ms": {side: self.ms(side) for side in sides},
            "spread_iqr_over_median": {side: self.timings[side].spread for side in sides},
            "times_ms": {side: self.timings[side].times_ms for side in sides},
            "first_call_ms": {side: self.timings[side].first_ms for side in sides},
            "first_call_wall_ms": {side: self.timings[side].first_wall_ms for side in sides},
            "ratio_to_fused": {side: self.ratio(side) for side in sides},
            "peak_bytes": self.peak_bytes,
            "gemm_flops": self.floor.flops(self.backward),
            "gemm_rate_gflops": self.floor.rate_gflops,
            "floor_ms": self.floor.ms(self.backward),
            "ratio_to_floor": {side: self.from_floor(side) for side in sides},
            "compile_s": self.compile_s,
            "target": self.target,
            "meets_target": self.meets_target,
        }
