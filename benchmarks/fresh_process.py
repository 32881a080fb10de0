"""A cross-check of the harness's LSTM ratios: one fresh process per shape and thread count.

::

    python -m benchmarks.fresh_process [--threads 1 2] [--calls 60] [--out FILE.json]

Each process builds ``nn.LSTM`` and ``torchseq.LSTM`` with the same weights, warms both up, then times
them alternately (the order flips every call) for ``--calls`` calls per workload (7 at the fastrnns
shape) and reports the median of each side and their ratio. Processes share nothing (no allocator or
thread-pool state left by other shapes), which the harness's single process does; where the two
disagree, the spread is the machine's. Prints a Markdown table; ``--out`` also writes the rows as JSON.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch

from benchmarks.machine import cpu_model
from benchmarks.shapes import NAMED

SHAPES = ("fastrnns", "mnist-rows", "ucr", "batch-1")
WORKLOADS = ("forward", "forward+backward", "inference")


def measure(shape_name: str, threads: int, calls: int) -> dict[str, list[float]]:
    """Median ms of (nn.LSTM, torchseq.LSTM) per workload, in this process."""
    import torchseq

    torch.set_num_threads(threads)
    torch.manual_seed(0)
    shape = NAMED[shape_name]
    fused = torch.nn.LSTM(shape.input_size, shape.hidden_size)
    custom = torchseq.LSTM(shape.input_size, shape.hidden_size)
    custom.load_state_dict(fused.state_dict())
    x = torch.randn(shape.steps, shape.batch, shape.input_size)
    grad = torch.randn(shape.steps, shape.batch, shape.hidden_size)

    def workload(module: torch.nn.Module, name: str):
        def run() -> None:
            if name == "inference":
                with torch.inference_mode():
                    module(x)
            elif name == "forward":
                with torch.no_grad():
                    module(x)
            else:
                module.zero_grad(set_to_none=True)
                module(x)[0].backward(grad)
        return run

    medians = {}
    for name in WORKLOADS:
        runs = [workload(fused, name), workload(custom, name)]
        for run in runs:
            for _ in range(3):
                run()
        times: list[list[float]] = [[], []]
        for call in range(calls):
            for side in (0, 1) if call % 2 == 0 else (1, 0):
                start = time.perf_counter()
                runs[side]()
                times[side].append((time.perf_counter() - start) * 1e3)
        medians[name] = [statistics.median(times[0]), statistics.median(times[1])]
    return medians


def main(args: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, nargs="+", default=[1, torch.get_num_threads()])
    parser.add_argument("--calls", type=int, default=60)
    parser.add_argument("--out", type=Path)
    parser.add_argument("--one", nargs=3, metavar=("SHAPE", "THREADS", "CALLS"), help=argparse.SUPPRESS)
    options = parser.parse_args(args)
    if options.one:  # the child process: one shape, one thread count, JSON on stdout
        shape, threads, calls = options.one
        print(json.dumps(measure(shape, int(threads), int(calls))))
        return
    rows = []
    for threads in options.threads:
        for shape in SHAPES:
            calls = 7 if shape == "fastrnns" else options.calls
            child = [sys.executable, "-m", "benchmarks.fresh_process", "--one", shape, str(threads),
                     str(calls)]
            result = json.loads(subprocess.run(child, check=True, capture_output=True, text=True).stdout)
            for workload, (fused_ms, custom_ms) in result.items():
                rows.append({"threads": threads, "shape": shape, "workload": workload, "fused_ms": fused_ms,
                             "custom_ms": custom_ms, "ratio": custom_ms / fused_ms})
    print(f"CPU: {cpu_model()}; torch {torch.__version__}; LSTM, nn.LSTM (fused) against torchseq.LSTM "
          "(custom), one fresh process per shape and thread count, medians of alternating calls\n")
    print("| threads | shape | workload | fused ms | custom ms | custom/fused |")
    print("|---|---|---|---:|---:|---:|")
    for row in rows:
        print(f"| {row['threads']} | {row['shape']} | {row['workload']} | {row['fused_ms']:.2f} | "
              f"{row['custom_ms']:.2f} | {row['ratio']:.2f} |")
    if options.out is not None:
        options.out.write_text(json.dumps({"cpu": cpu_model(), "rows": rows}, indent=1))


if __name__ == "__main__":
    main()
