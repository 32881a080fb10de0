"""``torchseq tune``: hyperparameter search with Optuna over any ``torchseq fit`` experiment.

The book's advice on tuning recurrent networks — the learning rate matters most (start near 1e-3), try
RMSprop, Adagrad or momentum besides Adam, regularise with dropout between 0.2 and 0.5, and size the
hidden layer — becomes a search space over the keys of an experiment's config::

    torchseq tune --config experiments/tune_mnist5k.yaml

Each trial is one ``torchseq fit`` of the base config with the trial's values as command-line overrides,
so anything a config can say can be tuned. Bad trials are pruned early: after every validation the
monitored metric is reported to Optuna (:class:`OptunaPruning`), and a median pruner stops a trial
that is worse than the median of earlier trials at the same epoch. A trial's score is the best value of
the metric over its epochs (the epoch its checkpoint keeps).

The study lives in an SQLite file under ``runs/tune/`` by default, so an interrupted search resumes
where it stopped; with ``storage: postgresql://…`` (or any SQLAlchemy URL reachable from several
machines) the same command run on every machine shares one study (give each machine its own
``--seed``). At the end the best trial is printed and written as ``runs/tune/<study>/best.yaml``, a
config to pass after the base config::

    torchseq fit --config experiments/mnist5k_lstm.yaml --config runs/tune/tune_mnist5k/best.yaml
"""

from __future__ import annotations

import json
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import lightning as L
import optuna
import yaml
from rich.console import Console
from rich.table import Table

from torchseq.checks import check_choice
from torchseq.cli import TorchseqCLI
from torchseq.tools.commands import override_arguments, settings_from_command_line

#: The optimisers the book recommends, by the name a search space uses: class path and fixed arguments.
OPTIMIZERS: dict[str, tuple[str, dict[str, Any]]] = {
    "Adam": ("torch.optim.Adam", {}),
    "RMSprop": ("torch.optim.RMSprop", {}),
    "Adagrad": ("torch.optim.Adagrad", {}),
    "SGD-momentum": ("torch.optim.SGD", {"momentum": 0.9}),
}
OPTIMIZER_KEY = "optimizer"   # the search-space key that picks one of OPTIMIZERS
DIRECTIONS = ("minimize", "maximize")
KINDS = ("float", "int", "categorical")
RUNS_DIR = Path("runs/tune")


@dataclass
class Distribution:
    """One dimension of the search space, as Optuna's ``suggest_*`` takes it.

    ``kind="float"`` / ``"int"``: ``low``, ``high`` and optionally ``log`` (sample the exponent) or
    ``step``; ``kind="categorical"``: ``choices``.
    """

    kind: str
    low: float | None = None
    high: float | None = None
    log: bool = False
    step: float | None = None
    choices: list[Any] | None = None

    def __post_init__(self) -> None:
        check_choice("kind", self.kind, KINDS)
        if self.kind == "categorical":
            if not self.choices:
                raise ValueError("choices: a categorical dimension needs at least one choice")
        elif self.low is None or self.high is None or not self.low <= self.high:
            raise ValueError(f"low, high: a {self.kind} dimension needs low ≤ high, got {self.low!r}, "
                             f"{self.high!r}")

    def suggest(self, trial: optuna.Trial, name: str) -> Any:
        if self.kind == "categorical":
            return trial.suggest_categorical(name, self.choices)
        if self.kind == "int":
            step = int(self.step or 1)
            return trial.suggest_int(name, int(self.low), int(self.high), step=step, log=self.log)
        return trial.suggest_float(name, self.low, self.high, step=self.step, log=self.log)


@dataclass
class Pruning:
    """Optuna's :class:`~optuna.pruners.MedianPruner`: prune a trial whose metric at an epoch is worse
    than the median of earlier trials at that epoch, once ``n_startup_trials`` trials have finished and
    from epoch ``n_warmup_steps`` on. ``enabled=False`` never prunes."""

    enabled: bool = True
    n_startup_trials: int = 3
    n_warmup_steps: int = 1

    def pruner(self) -> optuna.pruners.BasePruner:
        if not self.enabled:
            return optuna.pruners.NopPruner()
        return optuna.pruners.MedianPruner(n_startup_trials=self.n_startup_trials,
                                           n_warmup_steps=self.n_warmup_steps)


class OptunaPruning(L.Callback):
    """Report ``monitor`` to an Optuna trial after every validation; stop the trial if Optuna says so.

    (optuna-integration's ``PyTorchLightningPruningCallback`` does the same but follows Lightning's
    releases at its own pace; this is the whole of what is needed.) ``values`` keeps the reports.
    """

    def __init__(self, trial: optuna.Trial, monitor: str) -> None:
        self.trial, self.monitor = trial, monitor
        self.values: list[float] = []

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.sanity_checking:
            return
        value = trainer.callback_metrics.get(self.monitor)
        if value is None:
            logged = ", ".join(sorted(trainer.callback_metrics)) or "nothing"
            raise ValueError(f"monitor: {self.monitor!r} was not logged during validation (logged: {logged})")
        self.values.append(float(value))
        self.trial.report(float(value), step=trainer.current_epoch)
        if self.trial.should_prune():
            raise optuna.TrialPruned(f"epoch {trainer.current_epoch}: {self.monitor} = {float(value):.4g}")


class TrialCLI(TorchseqCLI):
    """``torchseq fit`` with the trial's pruning callback added to the trainer."""

    def __init__(self, pruning: OptunaPruning, args: list[str]) -> None:
        self.pruning = pruning  # before LightningCLI's __init__, which runs the fit
        with warnings.catch_warnings():
            # ``torchseq tune``'s own command line is in sys.argv; the trial's arguments are the ones meant.
            warnings.filterwarnings("ignore", ".*args parameter is intended to run from within Python.*")
            super().__init__(args=args)

    def before_fit(self) -> None:
        self.trainer.callbacks.append(self.pruning)


@dataclass
class Search:
    """Everything a tuning run needs; the fields are the keys of a ``torchseq tune`` config."""

    fit_config: str
    search_space: dict[str, Distribution]
    monitor: str = "val/loss"
    direction: str = "minimize"
    n_trials: int = 20
    timeout: float | None = None
    overrides: dict[str, Any] = field(default_factory=dict)
    study_name: str | None = None
    storage: str | None = None
    pruning: Pruning = field(default_factory=Pruning)
    seed: int = 0
    output_dir: str | None = None

    def __post_init__(self) -> None:
        check_choice("direction", self.direction, DIRECTIONS)
        if not Path(self.fit_config).is_file():
            raise FileNotFoundError(f"fit_config: no such file {self.fit_config!r}")
        if not self.search_space:
            raise ValueError("search_space: expected at least one dimension to tune")
        unknown = [name for name in self._optimizer_choices() if name not in OPTIMIZERS]
        if unknown:
            raise ValueError(f"search_space.optimizer: expected choices among {tuple(OPTIMIZERS)}, "
                             f"got {unknown}")
        self.study_name = self.study_name or Path(self.fit_config).stem
        self.directory = Path(self.output_dir) if self.output_dir else RUNS_DIR / self.study_name

    def _optimizer_choices(self) -> list[Any]:
        dimension = self.search_space.get(OPTIMIZER_KEY)
        return list(dimension.choices or []) if dimension is not None else []

    # -- one trial --------------------------------------------------------------------------------
    def objective(self, trial: optuna.Trial) -> float:
        values = {name: dimension.suggest(trial, name) for name, dimension in self.search_space.items()}
        pruning = OptunaPruning(trial, self.monitor)
        TrialCLI(pruning, args=self.trial_arguments(trial.number, values))
        if not pruning.values:
            raise RuntimeError(f"trial {trial.number}: no validation ran, so {self.monitor!r} has no value")
        return max(pruning.values) if self.direction == "maximize" else min(pruning.values)

    def trial_arguments(self, number: int, values: Mapping[str, Any]) -> list[str]:
        """``torchseq fit`` arguments for a trial: base config, fixed overrides, sampled values."""
        logger = {"trainer.logger.init_args.save_dir": str(self.directory),
                  "trainer.logger.init_args.name": f"trial_{number}", "test_after_fit": False}
        settings = {**self.overrides, **logger, **optimizer_settings(values)}
        return ["fit", "--config", self.fit_config, *override_arguments(settings)]

    # -- the study --------------------------------------------------------------------------------
    def run(self) -> optuna.Study:
        self.directory.mkdir(parents=True, exist_ok=True)
        storage = self.storage or f"sqlite:///{self.directory / 'study.db'}"
        study = optuna.create_study(study_name=self.study_name, storage=storage, load_if_exists=True,
                                    direction=self.direction, pruner=self.pruning.pruner())
        # Seeded, yet a resumed study must not draw its first trials' values again.
        study.sampler = optuna.samplers.TPESampler(seed=self.seed + len(study.trials))
        study.optimize(self.objective, n_trials=self.n_trials, timeout=self.timeout)
        self.report(study)
        return study

    def report(self, study: optuna.Study) -> None:
        """Print the best trial and write ``best.yaml`` (a config fragment) and ``trials.json``."""
        states = [trial.state.name.lower() for trial in study.trials]
        counts = ", ".join(f"{states.count(state)} {state}" for state in sorted(set(states)))
        console = Console()
        trials = [{"number": t.number, "state": t.state.name.lower(), "value": t.value, "params": t.params}
                  for t in study.trials]
        (self.directory / "trials.json").write_text(json.dumps(trials, indent=1))
        finished = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
        if not finished:
            console.print(f"study {study.study_name!r}: no trial finished ({counts})")
            return
        best = study.best_trial
        table = Table(title=f"best of {len(study.trials)} trials ({counts}): trial {best.number}, "
                            f"{self.monitor} = {best.value:.4g}")
        table.add_column("hyperparameter")
        table.add_column("value")
        for name, value in best.params.items():
            table.add_row(name, f"{value:.4g}" if isinstance(value, float) else str(value))
        console.print(table)
        path = self.directory / "best.yaml"
        header = (f"# Best trial {best.number} of study {study.study_name!r}: {self.monitor} = "
                  f"{best.value:.6g}\n# torchseq fit --config {self.fit_config} --config {path}\n")
        path.write_text(header + yaml.safe_dump(nested(optimizer_settings(best.params)), sort_keys=False))
        console.print(f"written: {path} and {self.directory / 'trials.json'} (storage: study.db unless "
                      f"--storage was given)")


def optimizer_settings(values: Mapping[str, Any]) -> dict[str, Any]:
    """Expand a sampled ``optimizer`` name into its class path and fixed arguments (dotted keys).

    The chosen class must come before its arguments (e.g. a sampled ``optimizer.init_args.lr``), since
    naming a class on the command line starts its arguments afresh.
    """
    values = dict(values)
    name = values.pop(OPTIMIZER_KEY, None)
    if name is None:
        return values
    class_path, fixed = OPTIMIZERS[name]
    chosen = {"optimizer.class_path": class_path} | {f"optimizer.init_args.{k}": v for k, v in fixed.items()}
    return chosen | values


def nested(dotted: Mapping[str, Any]) -> dict[str, Any]:
    """``{"a.b": 1, "a.c": 2}`` → ``{"a": {"b": 1, "c": 2}}``."""
    tree: dict[str, Any] = {}
    for key, value in dotted.items():
        *parents, leaf = key.split(".")
        node = tree
        for parent in parents:
            node = node.setdefault(parent, {})
        node[leaf] = value
    return tree


def main(args: Sequence[str] | None = None) -> optuna.Study:
    """``torchseq tune --config experiments/tune_X.yaml``: the config's keys are :class:`Search`'s fields."""
    search = settings_from_command_line(Search, args, "torchseq tune",
                                        "Hyperparameter search with Optuna over a torchseq fit config.")
    return search.run()


if __name__ == "__main__":
    main()
