"""Latency of the demo model exported to ONNX (onnxruntime) against PyTorch eager, CPU.

::

    python -m benchmarks.export_latency [--rounds 15] [--calls 10] [--threads 1 2]

The model is the demo's (``experiments/mnist5k_lstm.yaml``): ``RecurrentClassifier`` with an LSTM(128) over
MNIST-5k rows (T=28, I=28), 10 classes; latency does not depend on the weights, so they are the seeded
initial ones. Contenders, at batch sizes 1 and 64, inference only:

- PyTorch eager, ``impl="custom"`` (torchseq's kernels, the demo's setting) and ``impl="fused"`` (oneDNN),
  both under ``torch.inference_mode``;
- onnxruntime running the default export (ONNX ``LSTM``) and the ``loop=True`` export (ONNX ``Scan``).

``--clock cpu`` times the process' CPU time instead of elapsed time: on a busy machine it leaves out the
time spent waiting for a core (at one thread it is then close to the latency on an idle core).

All four run interleaved in one process, one timed block of ``--calls`` calls per contender per round;
the table gives the median per call over ``--rounds`` rounds. Each thread count sets torch's intra-op
threads and onnxruntime's ``intra_op_num_threads`` alike, with onnxruntime's threads not spinning while
idle (they would compete with torch's for the cores). Outputs are checked equal (≤ 1e-5) first.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import onnxruntime as ort
import torch

from benchmarks.machine import cpu_model
from torchseq import export
from torchseq.models import RecurrentClassifier

STEPS, FEATURES, HIDDEN, CLASSES = 28, 28, 128, 10
BATCH_SIZES = (1, 64)


def session(path: Path, threads: int) -> ort.InferenceSession:
    options = ort.SessionOptions()
    options.intra_op_num_threads, options.inter_op_num_threads = threads, 1
    # onnxruntime's idle intra-op threads spin by default; in this one process, interleaved with torch's
    # OpenMP threads, they would take the cores that torch's threads wait for (eager custom at batch 64,
    # 2 threads: 6.6 ms per call with spinning, against 3.0 ms alone).
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def contenders(folder: Path, threads: int) -> dict[str, Callable[[torch.Tensor], np.ndarray]]:
    torch.manual_seed(0)
    custom = RecurrentClassifier(FEATURES, CLASSES, hidden_size=HIDDEN, impl="custom").eval()
    fused = RecurrentClassifier(FEATURES, CLASSES, hidden_size=HIDDEN, impl="fused").eval()
    fused.load_state_dict(custom.state_dict())
    example = torch.randn(2, STEPS, FEATURES)
    onnx_fused = session(export.onnx(custom, example, folder / "fused.onnx"), threads)
    onnx_loop = session(export.onnx(custom, example, folder / "loop.onnx", loop=True), threads)

    def eager(model: torch.nn.Module) -> Callable[[torch.Tensor], np.ndarray]:
        def run(x: torch.Tensor) -> np.ndarray:
            with torch.inference_mode():
                return model(x).numpy()
        return run

    def runtime(served: ort.InferenceSession) -> Callable[[torch.Tensor], np.ndarray]:
        return lambda x: served.run(None, {"x": x.numpy()})[0]

    return {
        "PyTorch eager, impl=custom": eager(custom),
        "PyTorch eager, impl=fused (oneDNN)": eager(fused),
        "onnxruntime, ONNX LSTM (default export)": runtime(onnx_fused),
        "onnxruntime, ONNX Scan (loop=True)": runtime(onnx_loop),
    }


CLOCKS = {"wall": time.perf_counter, "cpu": time.process_time}


def measure(
    runs: dict[str, Callable], x: torch.Tensor, rounds: int, calls: int, clock: Callable[[], float]
) -> dict[str, float]:
    """Median milliseconds per call of each contender, rounds interleaved."""
    reference = next(iter(runs.values()))(x)
    for name, run in runs.items():
        difference = float(np.abs(run(x) - reference).max())
        if difference > 1e-5:
            raise AssertionError(f"{name}: outputs differ from PyTorch's by {difference:.2e}")
        run(x)  # warm-up
    samples: dict[str, list[float]] = {name: [] for name in runs}
    for _ in range(rounds):
        for name, run in runs.items():
            start = clock()
            for _ in range(calls):
                run(x)
            samples[name].append((clock() - start) / calls * 1e3)
    return {name: statistics.median(values) for name, values in samples.items()}


def main(args: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--calls", type=int, default=10)
    parser.add_argument("--threads", type=int, nargs="+", default=[1, torch.get_num_threads()])
    parser.add_argument("--clock", choices=CLOCKS, default="wall",
                        help="elapsed time, or the process' CPU time (steadier on a shared machine)")
    options = parser.parse_args(args)
    load = ", ".join(f"{value:.1f}" for value in os.getloadavg())
    print(f"CPU: {cpu_model()} ({os.cpu_count()} logical CPUs, load average {load}); torch "
          f"{torch.__version__}, onnxruntime {ort.__version__}; LSTM({HIDDEN}) classifier, T={STEPS}, "
          f"I={FEATURES}; median {options.clock} ms per call over {options.rounds} rounds of "
          f"{options.calls} calls\n")
    print("| threads | batch | " + " | ".join(["contender", "ms / call", "vs eager custom"]) + " |")
    print("|---|---|---|---|---|")
    with tempfile.TemporaryDirectory() as folder:
        for threads in dict.fromkeys(options.threads):
            torch.set_num_threads(threads)
            runs = contenders(Path(folder), threads)
            for batch in BATCH_SIZES:
                x = torch.randn(batch, STEPS, FEATURES)
                medians = measure(runs, x, options.rounds, options.calls, CLOCKS[options.clock])
                baseline = medians["PyTorch eager, impl=custom"]
                for name, value in medians.items():
                    print(f"| {threads} | {batch} | {name} | {value:.3f} | {value / baseline:.2f}× |")


if __name__ == "__main__":
    main()
