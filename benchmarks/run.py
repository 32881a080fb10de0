"""``python -m benchmarks.run``: time custom vs fused RNN/LSTM/GRU layers and write md/json/png.

Examples::

    python -m benchmarks.run --quick                      # CPU subset: named shapes + a grid corner
    python -m benchmarks.run --device cuda --grid         # the whole grid on a GPU (cuDNN as fused)
    python -m benchmarks.run --shape 100,64,512,512 --cells LSTM --compile
"""

from __future__ import annotations

import argparse
import warnings
from collections.abc import Sequence
from pathlib import Path

import torch

from benchmarks.contenders import CELLS, MODES, SIDES, USER_CELLS, build_sides, inputs, workload
from benchmarks.floor import measure_floor
from benchmarks.machine import describe, machine_tag
from benchmarks.report import write_all
from benchmarks.results import Row
from benchmarks.shapes import GRID_BATCHES, GRID_HIDDEN, GRID_STEPS, NAMED, Shape, grid, quick
from benchmarks.timing import make_clock, peak_memory_bytes, time_interleaved

DTYPES = {"float32": torch.float32, "float64": torch.float64}
DEFAULT_OUT = Path(__file__).resolve().parent / "results"


def parse_arguments(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.run", description=__doc__.splitlines()[0])
    chosen = parser.add_argument_group("shapes (combined; default: --quick)")
    chosen.add_argument("--quick", action="store_true", help="named shapes and the cheapest grid corner")
    chosen.add_argument("--grid", action="store_true", help="the T×B×H×layers×directions grid (144 shapes)")
    chosen.add_argument("--grid-steps", type=_integers, default=GRID_STEPS, help="grid T values, e.g. 25,100")
    chosen.add_argument("--grid-batches", type=_integers, default=GRID_BATCHES, help="grid B values")
    chosen.add_argument("--grid-hidden", type=_integers, default=GRID_HIDDEN, help="grid H (= I) values")
    chosen.add_argument("--named", action="append", default=[], choices=sorted(NAMED), help="a named shape")
    chosen.add_argument("--shape", action="append", default=[], type=Shape.parse,
                        help="T,B,I,H[,layers[,bi]]"
                        )
    parser.add_argument("--cells", default="RNN,LSTM,GRU",
                        help=f"comma-separated subset of {','.join(CELLS)} (the last two: user cells)")
    parser.add_argument("--modes", default=",".join(MODES), help="forward and/or forward+backward")
    parser.add_argument("--sides", default="fused,custom,reference", help=f"subset of {','.join(SIDES)}")
    parser.add_argument("--compile", action="store_true", help="add the torch.compile side where T is small")
    parser.add_argument("--compile-mode", default="default",
                        choices=("default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs"),
                        help="torch.compile mode of the compiled side (reduce-overhead: CUDA graphs)")
    parser.add_argument("--compile-max-steps", type=int, default=30,
                        help="compile only shapes with T at most this (compile time grows with T)")
    parser.add_argument("--compile-sweep", default="",
                        help="T values, e.g. 5,10,20: B16 I64 H64 rows, compiled side on (compile s vs T)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--dtype", default="float32", choices=sorted(DTYPES))
    parser.add_argument("--tf32", default="default", choices=("default", "on", "off"),
                        help="CUDA: TF32 for both matmuls and cuDNN (default: leave torch's settings)")
    parser.add_argument("--repeats", type=int, default=5, help="at least this many timed calls per side")
    parser.add_argument("--budget", type=float, default=2.0,
                        help="seconds of timed rounds per row: fast shapes get more rounds (up to 100)")
    parser.add_argument("--warmup", type=int, default=1, help="untimed calls per side first")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    parser.add_argument("--clock", default="wall", choices=("wall", "cpu"),
                        help="CPU timing: elapsed (wall) or this process's CPU time (cpu)")
    parser.add_argument("--no-memory", action="store_true", help="skip the peak-memory call per side")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="results folder (a machine subfolder)")
    parser.add_argument("--tag", default=None, help="subfolder name instead of the machine tag")
    args = parser.parse_args(argv)
    args.cells = _subset("--cells", args.cells, CELLS)
    args.modes = _subset("--modes", args.modes, MODES)
    args.sides = _subset("--sides", args.sides, SIDES)
    if "fused" not in args.sides:
        parser.error("--sides: 'fused' is the baseline every ratio divides by and cannot be left out")
    if args.repeats < 1 or args.warmup < 0:
        parser.error(f"--repeats must be ≥ 1 and --warmup ≥ 0, got {args.repeats} and {args.warmup}")
    args.compile_sweep = _integers(args.compile_sweep) if args.compile_sweep else []
    return args


def _integers(text: str) -> list[int]:
    try:
        return [int(item) for item in text.split(",") if item.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}") from None


def _subset(flag: str, text: str, allowed: Sequence[str]) -> list[str]:
    chosen = [item.strip() for item in text.split(",") if item.strip()]
    unknown = [item for item in chosen if item not in allowed]
    if unknown or not chosen:
        raise SystemExit(f"{flag}: expected a comma-separated subset of {','.join(allowed)}, got {text!r}")
    return chosen


def select_shapes(args: argparse.Namespace) -> list[Shape]:
    shapes = [NAMED[name] for name in args.named] + list(args.shape)
    sweep = [Shape("compile-sweep", steps, 16, 64, 64) for steps in args.compile_sweep]
    if args.grid:
        shapes += grid(args.grid_steps, args.grid_batches, args.grid_hidden)
    if args.quick or not (shapes or sweep):
        shapes += quick()
    return list(dict.fromkeys(shapes + sweep))


def sides_for(shape: Shape, args: argparse.Namespace, cell: str = "LSTM") -> list[str]:
    """The sides of one row: ``compiled`` where T is small enough to compile, ``compiled-step`` for user
    cells only (the built-in cells have hand-written kernels instead)."""
    sides = [side for side in args.sides if side != "compiled"]
    if cell not in USER_CELLS:
        sides = [side for side in sides if side != "compiled-step"]
    wants_compile = args.compile or "compiled" in args.sides or shape.name == "compile-sweep"
    if wants_compile and (shape.steps <= args.compile_max_steps or shape.name == "compile-sweep"):
        sides.append("compiled")
    return sides


def main(argv: Sequence[str] | None = None) -> dict[str, Path]:
    args = parse_arguments(argv)
    device, dtype = configure_torch(args)
    clock = make_clock(device, args.clock)
    machine = describe(device, dtype)
    settings = {
        "clock": clock.name, "repeats": args.repeats, "budget_s": args.budget, "warmup": args.warmup,
        "seed": args.seed, "compile_mode": args.compile_mode,
        "forward": "torch.no_grad() inference", "forward+backward": "output.backward(fixed random gradient)",
    }
    folder = args.out / (args.tag or machine_tag(machine))
    print(f"{machine.get('gpu') or machine['cpu']}: {machine['torch_threads']} thread(s), torch "
          f"{machine['torch']}, {args.dtype}; writing to {folder}", flush=True)

    rows: list[Row] = []
    paths: dict[str, Path] = {}
    for shape in select_shapes(args):
        x, grad_output = inputs(shape, device, dtype, args.seed)
        for cell in args.cells:
            floor = measure_floor(shape, cell, clock, device, dtype, args.repeats)
            for mode in args.modes:
                modules = build_sides(cell, shape, sides_for(shape, args, cell), device, dtype, args.seed)
                workloads = {
                    side: workload(module, side, mode, x, grad_output, args.compile_mode)
                    for side, module in modules.items()
                }
                timings = time_interleaved(workloads, clock, args.warmup, args.repeats, args.budget)
                peaks = {
                    side: None if args.no_memory else peak_memory_bytes(work, device)
                    for side, work in workloads.items()
                }
                rows.append(Row(cell, shape, mode, timings, peaks, floor))
                print(progress_line(rows[-1]), flush=True)
                paths = write_all(rows, machine, settings, folder)  # after every row: partial runs keep data
    for kind, path in paths.items():
        print(f"{kind}: {path}")
    return paths


def configure_torch(args: argparse.Namespace) -> tuple[torch.device, torch.dtype]:
    """Threads, device check, TF32 and the compile cache, as the arguments ask."""
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise SystemExit("--device cuda: no CUDA device is available here")
    if args.tf32 != "default":
        # Both switches together, so the matmuls of the custom path and cuDNN use the same precision.
        torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = args.tf32 == "on"
    if args.compile or "compiled" in args.sides or args.compile_sweep:
        # "compile s" must be a cold compilation, not a hit in the on-disk cache of an earlier run.
        from torch._inductor import config as inductor_config

        inductor_config.force_disable_caches = True
        warnings.filterwarnings("ignore", message="dynamo_pgo force disabled")  # says just that, per row
    return device, DTYPES[args.dtype]


def progress_line(row: Row) -> str:
    parts = [f"{row.cell:4} {row.shape.label:38} {row.mode:16} fused {row.ms('fused'):9.2f} ms"]
    for side in row.timings:
        if side != "fused":
            parts.append(f"{side} {row.ms(side):9.2f} ms ({row.ratio(side):.2f}x)")
    if row.compile_s is not None:
        parts.append(f"compile {row.compile_s:.1f} s")
    if row.target is not None:
        parts.append(f"target ≤{row.target}: {'met' if row.meets_target else 'NOT met'}")
    return " | ".join(parts)


if __name__ == "__main__":
    main()
