"""The long-dependency grid: the adding problem and the copy task, for RNN, LSTM and GRU, at several T.

Each grid point is one ``torchseq fit`` of a task's base config with the cell and the sequence length
overridden, run as its own process (so ``--jobs N`` runs N at once, each with ``--threads`` CPU threads).
Every run writes its usual folder under ``output_dir`` (``<task>_<cell>_T<length>/version_k``); the
table is then read back from the runs' ``metrics_summary.json``, so it can also be rebuilt at any time
from whatever has finished (``--collect_only true``), e.g. after running the grid on several machines::

    torchseq long-dependency --config experiments/long_dependency/grid.yaml --jobs 16

For each point the table gives the final validation metric and the number of optimiser steps after
which the task counted as solved (the first validation meeting the task's ``solved`` criterion).
"""

from __future__ import annotations

import itertools
import json
import os
import subprocess
import sys
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rich.console import Console

from torchseq.checks import check_positive_int
from torchseq.tools.commands import override_arguments, settings_from_command_line

CELL_KEY = "model.init_args.model.init_args.cell"
LENGTH_KEY = "data.init_args.sequence_length"


@dataclass
class Solved:
    """A task counts as solved at the first validation where ``metric`` is below ``below`` (or above
    ``above``)."""

    metric: str
    below: float | None = None
    above: float | None = None

    def __post_init__(self) -> None:
        if (self.below is None) == (self.above is None):
            raise ValueError(f"solved: give exactly one of below or above for {self.metric!r}")

    def reached(self, value: float) -> bool:
        return value < self.below if self.below is not None else value > self.above

    def describe(self) -> str:
        return f"{self.metric} < {self.below:g}" if self.below is not None else \
            f"{self.metric} > {self.above:g}"


@dataclass
class GridTask:
    """One task of the grid: its base ``torchseq fit`` config and what counts as solving it."""

    config: str
    solved: Solved


@dataclass
class Point:
    task: str
    cell: str
    length: int

    @property
    def name(self) -> str:
        return f"{self.task}_{self.cell}_T{self.length}"


@dataclass
class Grid:
    """The grid and how to run it; the fields are the keys of ``experiments/long_dependency/grid.yaml``.

    Args:
        tasks: name → :class:`GridTask`.
        cells, lengths: the other two axes.
        overrides: extra ``torchseq fit`` settings for every run (dotted keys), e.g. a shorter
            ``trainer.max_epochs`` for a quick look.
        only_tasks: run only these tasks (None: all).
        jobs: runs at once; threads: CPU threads per run (OMP_NUM_THREADS, torch's intra-op threads).
        collect_only: run nothing, only rebuild the table from the runs already in ``output_dir``.
    """

    tasks: dict[str, GridTask]
    cells: list[str] = field(default_factory=lambda: ["rnn", "lstm", "gru"])
    lengths: list[int] = field(default_factory=lambda: [50, 100, 200, 400])
    overrides: dict[str, Any] = field(default_factory=dict)
    only_tasks: list[str] | None = None
    jobs: int = 1
    threads: int = 1
    collect_only: bool = False
    output_dir: str = "runs/long_dependency"

    def __post_init__(self) -> None:
        unknown = sorted(set(self.only_tasks or []) - set(self.tasks))
        if unknown:
            raise ValueError(f"only_tasks: unknown task(s) {unknown}; the grid has {sorted(self.tasks)}")
        for name, task in self.tasks.items():
            if not Path(task.config).is_file():
                raise FileNotFoundError(f"tasks.{name}.config: no such file {task.config!r}")
        check_positive_int("jobs", self.jobs)
        check_positive_int("threads", self.threads)

    @property
    def points(self) -> list[Point]:
        tasks = [name for name in self.tasks if self.only_tasks is None or name in self.only_tasks]
        return [Point(*values) for values in itertools.product(tasks, self.cells, self.lengths)]

    # -- running --------------------------------------------------------------------------------
    def arguments(self, point: Point) -> list[str]:
        settings = {CELL_KEY: point.cell, LENGTH_KEY: point.length, "trainer.logger.init_args.save_dir":
                    self.output_dir, "trainer.logger.init_args.name": point.name,
                    "trainer.enable_progress_bar": False, **self.overrides}
        return ["fit", "--config", self.tasks[point.task].config, *override_arguments(settings)]

    def run_point(self, point: Point) -> int:
        """One ``torchseq fit`` in its own process; its output goes to ``<output_dir>/<name>.log``."""
        log = Path(self.output_dir) / f"{point.name}.log"
        threads = str(self.threads)
        environment = os.environ | {"OMP_NUM_THREADS": threads, "MKL_NUM_THREADS": threads}
        started = time.perf_counter()
        with log.open("w") as output:
            code = subprocess.call([sys.executable, "-m", "torchseq.cli", *self.arguments(point)],
                                   stdout=output, stderr=subprocess.STDOUT, env=environment)
        status = "done" if code == 0 else f"FAILED (exit {code}, see {log})"
        Console().print(f"{point.name}: {status} in {time.perf_counter() - started:.0f} s")
        return code

    def run(self) -> dict[str, dict[str, Any]]:
        Path(self.output_dir).mkdir(parents=True, exist_ok=True)
        if not self.collect_only:
            with ThreadPoolExecutor(self.jobs) as pool:
                list(pool.map(self.run_point, self.points))
        results = self.collect()
        self.write_table(results)
        return results

    # -- the table ------------------------------------------------------------------------------
    def collect(self) -> dict[str, dict[str, Any]]:
        """``{point name: {"final", "steps_to_solve", "epochs", "steps", "seconds", "run"}}`` for every
        point of the whole grid that has a finished run (the latest version of each)."""
        results = {}
        for point in [Point(*values) for values in itertools.product(self.tasks, self.cells, self.lengths)]:
            summaries = sorted(Path(self.output_dir, point.name).glob("version_*/metrics_summary.json"),
                               key=lambda path: int(path.parent.name.removeprefix("version_")))
            if summaries:
                results[point.name] = self.read_summary(summaries[-1], self.tasks[point.task].solved)
        return results

    @staticmethod
    def read_summary(path: Path, solved: Solved) -> dict[str, Any]:
        summary = json.loads(path.read_text())
        history = [row for row in summary["history"] if solved.metric in row]
        first = next((row for row in history if solved.reached(row[solved.metric])), None)
        return {
            "final": history[-1][solved.metric] if history else None,
            "steps_to_solve": None if first is None else first["step"],
            "epochs": summary["epochs"], "steps": summary["global_step"], "seconds": summary["fit_seconds"],
            "run": summary["run_dir"],
        }

    def write_table(self, results: dict[str, dict[str, Any]]) -> Path:
        lines = ["Final validation metric; in brackets the optimiser steps after which the task counted as "
                 "solved (— never, within the steps trained). Blank: not run.", ""]
        for task_name, task in self.tasks.items():
            lines += [f"**{task_name}** ({task.solved.metric}; solved: {task.solved.describe()})", "",
                      "| T | " + " | ".join(cell.upper() for cell in self.cells) + " |",
                      "|---" * (len(self.cells) + 1) + "|"]
            for length in self.lengths:
                cells = [_format(results.get(Point(task_name, cell, length).name)) for cell in self.cells]
                lines.append(f"| {length} | " + " | ".join(cells) + " |")
            lines.append("")
        table = "\n".join(lines)
        path = Path(self.output_dir) / "results.md"
        path.write_text(table)
        (Path(self.output_dir) / "results.json").write_text(json.dumps(results, indent=1))
        Console().print(table)
        Console().print(f"written: {path} and results.json")
        return path


def _format(result: dict[str, Any] | None) -> str:
    if result is None or result["final"] is None:
        return ""
    solved = "—" if result["steps_to_solve"] is None else f"{result['steps_to_solve']:,}"
    return f"{result['final']:.4g} ({solved}; {result['steps']:,} steps)"


def main(args: Sequence[str] | None = None) -> dict[str, dict[str, Any]]:
    """``torchseq long-dependency --config experiments/long_dependency/grid.yaml [--jobs N]``."""
    grid = settings_from_command_line(Grid, args, "torchseq long-dependency", "Run the long-dependency grid.")
    return grid.run()


if __name__ == "__main__":
    main()
