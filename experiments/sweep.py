"""Run experiment configs × seeds with ``torchseq fit``, then tabulate the test results as mean ± std.

::

    python experiments/sweep.py experiments/gunpoint_*.yaml --seeds 0 1 2 --jobs 8 \\
        --table runs/sweep/results.md --update-doc docs/classification.md -- --trainer.accelerator gpu

Each run is a separate process (``python -m torchseq.cli fit --config X --seed_everything S``) whose
output goes to ``<runs-dir>/<experiment>/seed_<S>/`` — its checkpoints, ``metrics.csv``, plots and
``metrics_summary.json`` — and whose console output goes to ``<runs-dir>/<experiment>/seed_<S>.log``.
``--jobs N`` runs N processes at once, each with ``OMP_NUM_THREADS = cores // N`` unless set.
Arguments after ``--`` go to every run unchanged (``--trainer.accelerator gpu``,
``--trainer.max_epochs 1`` for a smoke test). ``--collect-only`` re-reads finished runs.

The table (Markdown) has one section per task: the test metrics of the checkpoint validation selected,
mean ± sample standard deviation over seeds; the epoch validation chose; fitting minutes; for
regression also the first optimizer step at which ``val/mse`` went below 0.01 (the adding problem's
"solved") and in how many seeds that happened. ``--update-doc`` puts the table between the markers
``<!-- sweep-results:start -->`` and ``<!-- sweep-results:end -->`` of a Markdown file.

``--folds K`` cross-validates instead, for model selection that never sees the test split: each config ×
seed runs K times, with ``--data.init_args.folds K --data.init_args.fold F`` (the data module holds out
the F-th of K disjoint stratified folds of its training data as the validation split) and
``--test_after_fit false``, into ``<runs-dir>/<experiment>/seed_<S>_fold_<F>of<K>/``. The table (which
``--update-doc`` puts between ``<!-- cv-results:start -->`` and ``<!-- cv-results:end -->``) then
gives the validation metrics at each run's selected checkpoint, mean ± std over folds and seeds: a fair
score where the checkpoint is chosen by something other than that validation split (a training-loss
monitor, or the last epoch), an optimistic one where the same fold also picked the checkpoint.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shlex
import statistics
import subprocess
import sys
import time
from collections import defaultdict
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

SWEEP_MARKERS = ("<!-- sweep-results:start -->", "<!-- sweep-results:end -->")
CV_MARKERS = ("<!-- cv-results:start -->", "<!-- cv-results:end -->")  # --folds: a block of its own
SOLVED_MSE = 0.01  # the adding problem counts as solved below this validation MSE


@dataclass(frozen=True)
class Run:
    config: Path
    seed: int
    runs_dir: Path
    fold: tuple[int, int] | None = None  # (F, K): hold out fold F of K for cross-validation

    @property
    def experiment(self) -> str:
        return self.config.stem

    @property
    def version(self) -> str:
        return f"seed_{self.seed}" + ("" if self.fold is None else "_fold_{}of{}".format(*self.fold))

    @property
    def directory(self) -> Path:
        return self.runs_dir / self.experiment / self.version

    @property
    def log(self) -> Path:
        return self.runs_dir / self.experiment / f"{self.version}.log"

    def command(self, extra: Sequence[str]) -> list[str]:
        cross_validation = [] if self.fold is None else [
            "--data.init_args.fold", str(self.fold[0]), "--data.init_args.folds", str(self.fold[1]),
            "--test_after_fit", "false",
        ]
        return [
            sys.executable, "-m", "torchseq.cli", "fit", "--config", str(self.config),
            "--seed_everything", str(self.seed),
            "--trainer.logger.init_args.save_dir", str(self.runs_dir),
            "--trainer.logger.init_args.name", self.experiment,
            "--trainer.logger.init_args.version", self.version,
            "--trainer.enable_progress_bar", "false",
            *cross_validation,
            *extra,
        ]

    def summary(self) -> dict[str, Any] | None:
        path = self.directory / "metrics_summary.json"
        return json.loads(path.read_text()) if path.is_file() else None


def execute(run: Run, extra: Sequence[str], threads: int) -> tuple[Run, int, float]:
    """Run one fit to completion; return its exit status and wall-clock seconds."""
    run.log.parent.mkdir(parents=True, exist_ok=True)
    environment = os.environ.copy()
    environment.setdefault("OMP_NUM_THREADS", str(threads))
    started = time.perf_counter()
    with run.log.open("w") as log:
        log.write("$ " + shlex.join(run.command(extra)) + "\n")
        log.flush()
        process = subprocess.run(run.command(extra), stdout=log, stderr=subprocess.STDOUT, env=environment)
    status = process.returncode
    seconds = time.perf_counter() - started
    print(f"[{'ok' if status == 0 else f'FAILED ({status})'}] {run.experiment} {run.version} "
          f"in {seconds / 60:.1f} min → {run.directory}", flush=True)
    return run, status, seconds


# -- the table --------------------------------------------------------------------------------------
def mean_std(values: Sequence[float], scale: float = 1.0, digits: int = 4) -> str:
    if not values:
        return "–"
    mean = statistics.fmean(values) * scale
    if len(values) < 2:
        return f"{mean:.{digits}f}"
    return f"{mean:.{digits}f} ± {statistics.stdev(values) * scale:.{digits}f}"


def steps_to_solve(summary: dict[str, Any]) -> int | None:
    """First optimizer step at whose epoch end ``val/mse`` was below :data:`SOLVED_MSE`."""
    return next((row["step"] for row in summary["history"] if row.get("val/mse", 1.0) < SOLVED_MSE), None)


def epoch_and_minutes(summaries: Sequence[dict[str, Any]]) -> list[str]:
    """The "best epoch" and "fit min" cells of a table row."""
    epochs = [summary["best_epoch"] for summary in summaries if summary["best_epoch"] is not None]
    seconds = [summary["fit_seconds"] for summary in summaries]
    return [mean_std(epochs, digits=1), mean_std(seconds, scale=1 / 60, digits=1)]


def test_metric_names(summaries: Sequence[dict[str, Any]]) -> list[str]:
    names = {name for summary in summaries for name in summary["test"]["metrics"]}  # one task: same names
    return sorted(name for name in names if not name.endswith("/loss"))  # the loss repeats a metric


def table_row(experiment: str, summaries: Sequence[dict[str, Any]], metrics: Sequence[str],
              regression: bool) -> list[str]:
    cells = [experiment, ",".join(str(summary["seed"]) for summary in summaries)]
    for name in metrics:
        values = [summary["test"]["metrics"].get(name) for summary in summaries]
        cells.append(mean_std([value for value in values if value is not None]))
    cells += epoch_and_minutes(summaries)
    if regression:
        steps = [step for step in map(steps_to_solve, summaries) if step is not None]
        cells += [mean_std(steps, digits=0), f"{len(steps)}/{len(summaries)}"]
    return cells


def results_table(runs: Sequence[Run], failed: Sequence[Run]) -> str:
    by_task: dict[str, dict[str, list[dict[str, Any]]]] = defaultdict(lambda: defaultdict(list))
    for run in runs:
        summary = run.summary()
        if summary is not None and "test" in summary:
            by_task[summary["task"].rsplit(".", 1)[-1]][run.experiment].append(summary)
    lines = []
    for task, experiments in sorted(by_task.items()):
        metrics = test_metric_names([s for summaries in experiments.values() for s in summaries])
        regression = task.removesuffix("Task") == "Regression"
        header = ["experiment", "seeds", *metrics, "best epoch", "fit min"]
        header += [f"steps to val/mse<{SOLVED_MSE}", "solved"] if regression else []
        selection = ("the checkpoint each config's `checkpoint.monitor` selected — a validation metric "
                     "except where the config says otherwise")
        lines += [f"**{task}** (test split, {selection}; mean ± std over seeds)", "",
                  "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
        for experiment, summaries in sorted(experiments.items()):
            lines.append("| " + " | ".join(table_row(experiment, summaries, metrics, regression)) + " |")
        lines.append("")
    if failed:
        failures = ", ".join(f"{run.experiment} seed {run.seed} ({run.log})" for run in failed)
        lines += [f"Failed runs: {failures}", ""]
    return "\n".join(lines)


def cross_validation_table(runs: Sequence[Run], failed: Sequence[Run]) -> str:
    by_experiment: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for run in runs:
        summary = run.summary()
        if summary is not None and summary.get("best_val"):
            by_experiment[run.experiment].append(summary)
    if not by_experiment:
        return "No finished cross-validation runs."
    everyone = [summary for summaries in by_experiment.values() for summary in summaries]
    metrics = sorted({name for summary in everyone for name in summary["best_val"]})
    folds = "/".join(sorted({str(run.fold[1]) for run in runs if run.fold is not None}))
    header = ["experiment", "monitor", "runs", *metrics, "best epoch", "fit min"]
    lines = [f"**Cross-validation** ({folds}-fold on the training data; validation metrics of the checkpoint "
             "each run's `checkpoint.monitor` selected, mean ± std over folds and seeds; fair only where "
             "that monitor is not the validation split itself)", "",
             "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for experiment, summaries in sorted(by_experiment.items()):
        cells = [experiment, ", ".join(sorted({str(s["monitor"]) for s in summaries})), str(len(summaries))]
        cells += [mean_std([s["best_val"][name] for s in summaries if name in s["best_val"]])
                  for name in metrics]
        cells += epoch_and_minutes(summaries)
        lines.append("| " + " | ".join(cells) + " |")
    if failed:
        names = ", ".join(f"{run.experiment} {run.version} ({run.log})" for run in failed)
        lines += ["", f"Failed runs: {names}"]
    return "\n".join(lines) + "\n"


def provenance(argv: Sequence[str]) -> str:
    import torch  # here, not at the top: the runner itself needs no torch to start runs

    device = torch.cuda.get_device_name() if torch.cuda.is_available() else "no GPU"
    return (f"Produced by `python experiments/sweep.py {shlex.join(argv)}` on {time.strftime('%Y-%m-%d')}, "
            f"{platform.machine()} with {os.cpu_count()} cores, {device}, torch {torch.__version__}.")


def update_document(path: Path, block: str, markers: tuple[str, str] = SWEEP_MARKERS) -> None:
    start, end = markers
    text = path.read_text()
    if start not in text or end not in text:
        raise SystemExit(f"--update-doc: {path} has no {start} … {end} markers")
    head, rest = text.split(start, 1)
    _, tail = rest.split(end, 1)
    path.write_text(f"{head}{start}\n{block}\n{end}{tail}")


# -- command line -------------------------------------------------------------------------------------
def parse(argv: Sequence[str]) -> tuple[argparse.Namespace, list[str]]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("configs", nargs="+", type=Path, help="experiment YAML files")
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--jobs", type=int, default=1, help="runs at the same time")
    parser.add_argument("--runs-dir", type=Path, default=Path("runs/sweep"))
    parser.add_argument("--table", type=Path, help="also write the Markdown table to this file")
    parser.add_argument("--update-doc", type=Path, help="Markdown file whose results block to replace")
    parser.add_argument("--collect-only", action="store_true", help="tabulate finished runs, run nothing")
    parser.add_argument("--folds", type=int, help="K-fold cross-validation on the training data instead")
    arguments = list(argv)
    extra = arguments[arguments.index("--") + 1 :] if "--" in arguments else []
    options = parser.parse_args(arguments[: arguments.index("--")] if "--" in arguments else arguments)
    for config in options.configs:
        if not config.is_file():
            parser.error(f"config: no such file {config}")
    if options.jobs < 1:
        parser.error(f"--jobs: expected a positive number, got {options.jobs}")
    if options.folds is not None and options.folds < 2:
        parser.error(f"--folds: expected at least 2, got {options.folds}")
    return options, extra


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    options, extra = parse(argv)
    folds = [None] if options.folds is None else [(fold, options.folds) for fold in range(options.folds)]
    runs = [Run(config, seed, options.runs_dir, fold)
            for config in options.configs for seed in options.seeds for fold in folds]
    failed: list[Run] = []
    if not options.collect_only:
        threads = max(1, (os.cpu_count() or 1) // options.jobs)
        shown = os.environ.get("OMP_NUM_THREADS", threads)  # a caller's OMP_NUM_THREADS wins (see execute)
        print(f"{len(runs)} runs, {options.jobs} at a time, {shown} thread(s) each", flush=True)
        with ThreadPoolExecutor(options.jobs) as pool:
            outcomes = list(pool.map(lambda run: execute(run, extra, threads), runs))
        failed = [run for run, status, _ in outcomes if status != 0]
    table = results_table if options.folds is None else cross_validation_table
    block = provenance(argv) + "\n\n" + table(runs, failed)
    print("\n" + block)
    if options.table:
        options.table.parent.mkdir(parents=True, exist_ok=True)
        options.table.write_text(block + "\n")
    if options.update_doc:
        update_document(options.update_doc, block, SWEEP_MARKERS if options.folds is None else CV_MARKERS)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
