"""``MetricsSummary``: one JSON per run with what a reader (or the sweep runner) needs, and its rich view.

``<run>/metrics_summary.json`` holds the run's identity (experiment, version, config files, seed, task,
model, data), how long it trained (epochs, steps, seconds), which checkpoint validation selected and its
validation metrics, the test metrics of the checkpoint that was tested, the per-epoch history and the
files the run wrote. It is rewritten after fitting, validating and testing, so it is complete whichever
subcommands ran; :func:`render_summary` turns it into the table the CLI prints at the end.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

import lightning as L
from rich.console import Group
from rich.table import Table
from rich.text import Text

from torchseq.callbacks.history import EpochHistory, epoch_metrics, run_dir


def qualified_name(obj: Any) -> str:
    return f"{type(obj).__module__}.{type(obj).__qualname__}"


def stage_metrics(trainer: L.Trainer, stage: str) -> dict[str, float]:
    return {name: value for name, value in epoch_metrics(trainer).items() if name.startswith(f"{stage}/")}


class MetricsSummary(EpochHistory):
    """Collect a run's summary and write ``<run>/metrics_summary.json`` (rank 0 only).

    ``config_paths`` is set by the CLI (the ``--config`` files). A resumed run's summary covers every
    epoch and adds up the fitting time of both parts.
    """

    file_name = "metrics_summary.json"

    def __init__(self) -> None:
        super().__init__()
        self.config_paths: list[str] = []
        self.fit_seconds = 0.0
        self.results: dict[str, Any] = {}  # "validate" / "test" metrics and their checkpoint
        self._started: float | None = None

    # -- collecting --------------------------------------------------------------------------------
    def on_fit_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._started = time.perf_counter()

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        super().on_train_epoch_end(trainer, pl_module)
        self.write(trainer, pl_module)  # a long run's progress can be read while it trains

    def on_fit_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self._started is not None:
            self.fit_seconds += time.perf_counter() - self._started
            self._started = None
        self.write(trainer, pl_module)

    def on_validation_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._evaluation_started = time.perf_counter()

    def on_test_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._evaluation_started = time.perf_counter()

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.state.fn == "validate":  # during fit, validation results live in the history
            self._record_evaluation(trainer, pl_module, "validate", "val")

    def on_test_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._record_evaluation(trainer, pl_module, "test", "test")

    def _record_evaluation(
        self, trainer: L.Trainer, pl_module: L.LightningModule, key: str, stage: str
    ) -> None:
        self.results[key] = {
            "checkpoint": trainer.ckpt_path,  # None: the weights in memory
            "seconds": round(time.perf_counter() - self._evaluation_started, 3),
            "metrics": stage_metrics(trainer, stage),
        }
        self.write(trainer, pl_module)

    # -- the summary -------------------------------------------------------------------------------
    def summary(self, trainer: L.Trainer, pl_module: L.LightningModule) -> dict[str, Any]:
        directory = run_dir(trainer)
        logger = trainer.logger
        checkpoint = trainer.checkpoint_callback
        monitor = getattr(checkpoint, "monitor", None)
        best = self._best_row(monitor, getattr(checkpoint, "mode", "min"))
        best_path = getattr(checkpoint, "best_model_path", "") or None
        model = getattr(pl_module, "model", pl_module)
        return {
            "experiment": getattr(logger, "name", None),
            "version": getattr(logger, "version", None),
            "run_dir": str(directory),
            "config": list(self.config_paths),
            "seed": _seed(),
            "task": qualified_name(pl_module),
            "model": qualified_name(model),
            "parameters": sum(parameter.numel() for parameter in pl_module.parameters()),
            "data": qualified_name(trainer.datamodule) if trainer.datamodule is not None else None,
            "world_size": trainer.world_size,  # processes (devices × nodes) that trained
            "epochs": len(self.history),
            "global_step": trainer.global_step,
            "fit_seconds": round(self.fit_seconds + self._running_seconds(), 3),
            "monitor": monitor,
            "best_checkpoint": best_path,
            "best_epoch": None if best is None else best["epoch"],
            "best_val": {} if best is None else _metrics_of(best, "val"),
            "final_val": _metrics_of(self.history[-1], "val") if self.history else {},
            **self.results,
            "history": self.history,
            "files": _files(directory),
        }

    def _running_seconds(self) -> float:
        """Time of the fit in progress (0 between fits)."""
        return 0.0 if self._started is None else time.perf_counter() - self._started

    def _best_row(self, monitor: str | None, mode: str) -> dict[str, float] | None:
        """The epoch the checkpoint callback judged best (the last one when nothing is monitored)."""
        if monitor is not None:
            monitor = monitor.removesuffix("_epoch")  # the history's names drop it (see epoch_metrics)
        rows = [row for row in self.history if monitor is None or monitor in row]
        if not rows:
            return None
        if monitor is None:
            return rows[-1]
        pick = max if mode == "max" else min
        return pick(rows, key=lambda row: row[monitor])

    def write(self, trainer: L.Trainer, pl_module: L.LightningModule) -> Path | None:
        if not trainer.is_global_zero:
            return None
        self.latest = self.summary(trainer, pl_module)
        path = run_dir(trainer) / self.file_name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(self.latest, indent=2) + "\n")
        return path

    def state_dict(self) -> dict[str, Any]:
        return {**super().state_dict(), "fit_seconds": self.fit_seconds}

    def resume(self, state: dict[str, Any]) -> None:
        super().resume(state)
        self.fit_seconds = float(state["fit_seconds"])


def _seed() -> int | None:
    seed = os.environ.get("PL_GLOBAL_SEED")  # set by lightning.seed_everything
    return None if seed is None else int(seed)


def _metrics_of(row: dict[str, float], stage: str) -> dict[str, float]:
    return {name: value for name, value in row.items() if name.startswith(f"{stage}/")}


def _files(directory: Path) -> dict[str, list[str]]:
    """What the run wrote, by kind (checkpoints, plots, logs)."""
    kinds = {"checkpoints": ("*.ckpt",), "plots": ("*.png",), "logs": ("*.csv", "*.yaml", "*.pt")}
    return {
        kind: sorted(str(path) for pattern in patterns for path in directory.rglob(pattern))
        for kind, patterns in kinds.items()
    }


def render_summary(summary: dict[str, Any]) -> Group:
    """The summary as rich tables: metrics by stage, then where everything was written."""
    metrics = Table(title=f"{summary['experiment']}: {Path(summary['run_dir']).name}", title_justify="left")
    metrics.add_column("metric")
    metrics.add_column("value", justify="right")
    rows = [("best epoch", summary["best_epoch"]), ("epochs trained", summary["epochs"]),
            ("fit time (s)", f"{summary['fit_seconds']:.1f}")]
    rows += [(f"{name} (best)", value) for name, value in summary["best_val"].items()]
    for key in ("validate", "test"):
        rows += [(name, value) for name, value in summary.get(key, {}).get("metrics", {}).items()]
    for name, value in rows:
        if value is not None:
            metrics.add_row(name, f"{value:.4f}" if isinstance(value, float) else str(value))
    places = [("run folder", summary["run_dir"]),
              ("best checkpoint", summary["best_checkpoint"] or "none saved")]
    if "test" in summary:
        places.append(("tested checkpoint", summary["test"]["checkpoint"] or "the weights in memory"))
    places += [(kind.rstrip("s"), path) for kind in ("plots", "logs") for path in summary["files"][kind]]
    places.append(("summary", str(Path(summary["run_dir"]) / MetricsSummary.file_name)))
    width = max(len(what) for what, _ in places)
    # Plain lines, not a table: a path must stay whole on one line to be copied.
    return Group(metrics, *(Text(f"{what:<{width}}  {where}") for what, where in places))
