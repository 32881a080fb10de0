"""Write a run's rows as a Markdown table, a JSON file and a PNG plot of the ratios to fused."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

from benchmarks.contenders import MODES
from benchmarks.results import Row

OTHER_SIDES = ("custom", "reference", "compiled", "compiled-step")


def write_all(rows: Sequence[Row], machine: dict, settings: dict, folder: Path) -> dict[str, Path]:
    folder.mkdir(parents=True, exist_ok=True)
    paths = {"md": folder / "results.md", "json": folder / "results.json", "png": folder / "ratios.png"}
    paths["json"].write_text(json.dumps(
        {"machine": machine, "settings": settings, "rows": [row.as_dict() for row in rows]}, indent=1
    ))
    paths["md"].write_text(markdown(rows, machine, settings))
    try:
        plot(rows, machine, paths["png"])
    except ImportError as error:  # a bare GPU image without matplotlib still gets its table and JSON
        print(f"no plot: {error}")
        del paths["png"]
    return paths


def _load(machine: dict) -> str:
    load = machine.get("load_average_at_start")
    return "–" if load is None else " / ".join(f"{value:.1f}" for value in load)


def _number(value: float | None, digits: int = 2) -> str:
    return "–" if value is None else f"{value:.{digits}f}"


def _megabytes(value: int | None) -> str:
    return "–" if value is None else f"{value / 2**20:.2f}"


def markdown(rows: Sequence[Row], machine: dict, settings: dict) -> str:
    present = [side for side in OTHER_SIDES if any(side in row.timings for row in rows)]
    device = machine.get("gpu") or f"{machine['cpu']}, {machine['torch_threads']} thread(s)"
    precision = ""
    if "gpu" in machine:
        precision = f", TF32 matmul={machine['tf32_matmul']} cuDNN={machine['tf32_cudnn']}"
    lines = [
        f"# Custom vs fused recurrent layers — {device}",
        "",
        f"torch {machine['torch']}, {machine['dtype']}, device {machine['device']}"
        + precision
        + f"; clock {settings['clock']}, median of ≥ {settings['repeats']} interleaved calls (more while "
        f"{settings['budget_s']} s per row last) after {settings['warmup']} warm-up; "
        f"load average at start {_load(machine)}.",
        "",
        "Ratios are side / fused (lower is better, < 1 beats the fused kernel). The floor is the time of the "
        "layer's matrix products batched into one GEMM per layer and direction (backward: scaled by its "
        "FLOP, ×3 less the input gradient of data); "
        "`/floor` is how many floors a side takes. Peak memory: extra bytes allocated during one call. "
        "`met` judges custom, or for a user cell the faster of custom and compiled-step.",
        "",
    ]
    header = ["cell", "shape", "workload", "fused ms"]
    for side in present:
        header += [f"{side} ms", f"{side}/fused"]
    if "compiled" in present:
        header.append("compile s")
    header += ["floor ms", "GFLOP/s", "fused/floor", "custom/floor", "peak MB fused", "peak MB custom",
               "target", "met"]
    lines += ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for row in rows:
        cells = [row.cell, row.shape.label, row.mode, _number(row.ms("fused"))]
        for side in present:
            cells += [_number(row.ms(side)), _number(row.ratio(side))]
        if "compiled" in present:
            cells.append(_number(row.compile_s, 1))
        met = {True: "yes", False: "**no**", None: ""}[row.meets_target]
        cells += [
            _number(row.floor.ms(row.backward), 3), f"{row.floor.rate_gflops:.0f}",
            _number(row.from_floor("fused"), 1), _number(row.from_floor("custom"), 1),
            _megabytes(row.peak_bytes.get("fused")), _megabytes(row.peak_bytes.get("custom")),
            "" if row.target is None else f"≤ {row.target}", met,
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def plot(rows: Sequence[Row], machine: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt
    from matplotlib.ticker import FuncFormatter

    plain = FuncFormatter(lambda value, _: f"{value:g}")

    size = (max(8, 0.45 * len(rows)), 4 * len(MODES))
    figure, axes = plt.subplots(len(MODES), 1, figsize=size, squeeze=False)
    for axis, mode in zip(axes[:, 0], MODES, strict=True):
        selected = [row for row in rows if row.mode == mode]
        labels = [f"{row.cell} {row.shape.label}" for row in selected]
        positions = range(len(selected))
        sides = [side for side in OTHER_SIDES if any(side in row.timings for row in selected)]
        width = 0.8 / max(len(sides), 1)
        for index, side in enumerate(sides):
            ratios = [row.ratio(side) or float("nan") for row in selected]
            offset = (index - (len(sides) - 1) / 2) * width
            axis.bar([position + offset for position in positions], ratios, width, label=side)
        for position, row in zip(positions, selected, strict=True):
            if row.target is not None:
                axis.hlines(row.target, position - 0.45, position + 0.45, colors="red", linestyles="dashed")
        axis.axhline(1.0, color="black", linewidth=0.8)
        axis.set_yscale("log")
        axis.yaxis.set_major_formatter(plain)
        axis.yaxis.set_minor_formatter(plain)
        axis.set_ylabel("time / fused")
        axis.set_title(f"{mode} (red dashes: targets)")
        axis.set_xticks(list(positions), labels, rotation=60, ha="right", fontsize=7)
        if sides and selected:
            axis.legend(fontsize=8)
    figure.suptitle(machine.get("gpu") or f"{machine['cpu']}, {machine['torch_threads']} thread(s)")
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)
