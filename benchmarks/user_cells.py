"""User-cell rows: a cell without a hand-written kernel through ``torchseq.Recurrent``, forward+backward,
on the traced fast path and on the step-by-step reference, each against ``nn.LSTM`` of the same shape.

    python -m benchmarks.user_cells --threads 1 --shapes ucr,mnist,b1,large --rounds 9

Each round calls the three sides in turn (interleaved, so machine load hits all alike); the table gives
medians and their ratio to ``nn.LSTM``, with the CPU and thread count, and the first call's time
(which includes tracing the cell's step).
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

import torch
from torch import nn

import torchseq
from benchmarks.machine import cpu_model
from torchseq import cells
from torchseq.kernels import kernels_enabled

#: (T, B, I, H) of the issue's targets.
SHAPES = {"ucr": (150, 16, 1, 64), "mnist": (28, 64, 28, 128), "b1": (100, 1, 64, 128),
          "large": (100, 64, 512, 512)}
USER_CELLS = {"LayerNormLSTM": cells.LayerNormLSTMCell, "PeepholeLSTM": cells.PeepholeLSTMCell}


def sides(cell_class: type[cells.RecurrentCell], shape: tuple[int, ...]) -> tuple[dict[str, Callable], float]:
    """The three forward+backward calls, and the first (tracing) call's seconds."""
    steps, batch, inputs, hidden = shape
    torch.manual_seed(0)
    layer, lstm = torchseq.Recurrent(cell_class, inputs, hidden), nn.LSTM(inputs, hidden)
    x = torch.randn(steps, batch, inputs, requires_grad=True)

    def fast() -> None:
        layer(x)[0].sum().backward()

    def reference() -> None:
        with kernels_enabled(False):
            layer(x)[0].sum().backward()

    def fused() -> None:
        lstm(x)[0].sum().backward()

    started = time.perf_counter()
    fast()
    return {"nn.LSTM": fused, "fast path": fast, "reference": reference}, time.perf_counter() - started


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--shapes", default="ucr,mnist,b1")
    parser.add_argument("--cells", default="LayerNormLSTM")
    parser.add_argument("--rounds", type=int, default=9)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    print(f"{cpu_model()}, {args.threads} thread(s), medians of {args.rounds} interleaved rounds\n")
    print("| cell | T, B, I, H | nn.LSTM ms | fast path ms (×) | reference ms (×) | first call s |")
    print("|---|---|---|---|---|---|")
    for cell_name in args.cells.split(","):
        for shape_name in args.shapes.split(","):
            calls, first = sides(USER_CELLS[cell_name], SHAPES[shape_name])
            for call in calls.values():
                call()
            times: dict[str, list[float]] = {name: [] for name in calls}
            for _ in range(args.rounds):
                for name, call in calls.items():
                    started = time.perf_counter()
                    call()
                    times[name].append(time.perf_counter() - started)
            ms = {name: 1e3 * statistics.median(values) for name, values in times.items()}
            base = ms["nn.LSTM"]
            print(f"| {cell_name} | {', '.join(map(str, SHAPES[shape_name]))} | {base:.1f} | "
                  f"{ms['fast path']:.1f} ({ms['fast path'] / base:.2f}×) | "
                  f"{ms['reference']:.1f} ({ms['reference'] / base:.2f}×) | {first:.2f} |", flush=True)


if __name__ == "__main__":
    main()
