"""How far apart are torchseq's custom path and torch's fused kernels? A Markdown report.

Runs the option grid of the equivalence tests (every cell kind × depth 1–3 × direction × input form ×
layout × bias variant × initial state, plus the dropout stacks) on one fixed call, and prints, per
configuration and dtype, the max absolute difference of the output, the final states, the parameter
gradients and the input gradient (input and initial state; a tensor whose magnitude m exceeds 1 has its
difference divided by m, see tests/_equivalence.compare), each the worst over the four comparisons
{custom step-by-step, custom kernels} × {impl="fused", to_torch()}; then the overall max per
comparison. For float32 it adds each implementation's distance from the float64 truth, which shows
whose rounding a gap is (on CUDA: cuDNN's approximate tanh/sigmoid).

    python benchmarks/equivalence_report.py                       # CPU, float64 and float32
    python benchmarks/equivalence_report.py --device cuda         # cuDNN as the fused side

On CUDA, TF32 is switched off so that float32 means float32 on both sides.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

# The grid, the runner and the comparison are the test-suite's own (tests/_equivalence.py), so the
# figures printed here are those of exactly what the tests assert on.
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from _equivalence import (
    REPORT_SHAPE,
    Differences,
    dropout_grid,
    float32_grid,
    measure,
    measure_accuracy,
    option_grid,
    tolerance,
)

DTYPES = {"float64": torch.float64, "float32": torch.float32}
COLUMNS = ("output", "states", "param grads", "input grad", "overall")


def report(device: str, dtype: torch.dtype, seed: int) -> list[str]:
    """Markdown lines for one dtype: a per-configuration table, then the overall max per comparison."""
    name = str(dtype).removeprefix("torch.")
    lines = [f"### {device}, {name} (tolerance {tolerance(dtype, device):g})", "",
             "| configuration | " + " | ".join(COLUMNS) + " |", "|---" * (len(COLUMNS) + 1) + "|"]
    overall: dict[str, float] = {}
    start = time.perf_counter()
    for config in option_grid() + dropout_grid():
        by_comparison = measure(config, REPORT_SHAPE, seed=seed, device=device, dtype=dtype)
        worst = Differences(0.0, 0.0, 0.0, 0.0)
        for comparison, differences in by_comparison.items():
            worst = worst.worst(differences)
            overall[comparison] = max(overall.get(comparison, 0.0), differences.overall)
        figures = (*worst.as_tuple(), worst.overall)
        lines.append(f"| {config.id} | " + " | ".join(f"{value:.1e}" for value in figures) + " |")
    lines += ["", f"Overall max abs difference ({len(option_grid() + dropout_grid())} configurations, "
              f"{time.perf_counter() - start:.0f} s):", ""]
    lines += [f"- custom {comparison}: {value:.2e}" for comparison, value in overall.items()]
    lines += [f"- **all: {max(overall.values()):.2e}**", ""]
    return lines


def accuracy_report(device: str, seed: int) -> list[str]:
    """Markdown lines: how far each float32 implementation lies from the float64 truth, over the
    float32 grid (the options that shape the arithmetic)."""
    worst: dict[str, float] = {}
    for config in float32_grid():
        for name, differences in measure_accuracy(config, REPORT_SHAPE, seed=seed, device=device).items():
            worst[name] = max(worst.get(name, 0.0), differences.overall)
    return [f"### {device}, float32: max abs distance from the float64 truth "
            f"({len(float32_grid())} configurations)", ""] + [
        f"- {name}: {value:.2e}" for name, value in worst.items()] + [""]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu", help="cpu or cuda (default: cpu)")
    parser.add_argument("--dtype", choices=[*DTYPES, "both"], default="both")
    parser.add_argument("--seed", type=int, default=0, help="seed of parameters, inputs and loss weights")
    args = parser.parse_args()
    if args.device.startswith("cuda"):
        if not torch.cuda.is_available():
            parser.error("--device cuda: torch.cuda.is_available() is False")
        torch.backends.cuda.matmul.allow_tf32 = False
        torch.backends.cudnn.allow_tf32 = False
    dtypes = DTYPES.values() if args.dtype == "both" else [DTYPES[args.dtype]]
    shape = REPORT_SHAPE
    print(f"## Custom vs fused: max abs differences (torch {torch.__version__}, T={shape.steps}, "
          f"B={shape.batch}, input_size={shape.input_size}, hidden_size={shape.hidden_size}, "
          f"lengths={list(shape.lengths)}, seed {args.seed})\n")
    for dtype in dtypes:
        print("\n".join(report(args.device, dtype, args.seed)))
    if torch.float32 in dtypes:
        print("\n".join(accuracy_report(args.device, args.seed)))


if __name__ == "__main__":
    main()
