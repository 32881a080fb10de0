"""One measured row (cell × shape × workload) and the targets it is judged against."""

from __future__ import annotations

from dataclasses import dataclass

from benchmarks.floor import Floor
from benchmarks.shapes import FASTRNNS, SMALL, Shape
from benchmarks.timing import Timing

#: custom/fused ratios to reach (issue #5), for the LSTM and the GRU: (shape name, workload) → bound.
TARGETS = {
    (FASTRNNS.name, "forward"): 1.3,
    (FASTRNNS.name, "forward+backward"): 1.15,
    **{(shape.name, "forward+backward"): 2.0 for shape in SMALL},
}
TARGET_CELLS = ("LSTM", "GRU")


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
        return TARGETS.get((self.shape.name, self.mode)) if self.cell in TARGET_CELLS else None

    @property
    def meets_target(self) -> bool | None:
        ratio = self.ratio("custom")
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
