"""``torchseq attack``: robust accuracy of a trained torchseq classifier under FGSM and PGD.

::

    torchseq attack --config experiments/attack_mnist5k.yaml

Trains the fit config first (or loads ``--checkpoint``), attacks the chosen split at every ε of each
:class:`AttackCurve` and writes ``robust_accuracy.{png,md,json}``. The attacks are
:mod:`torchseq.attacks`.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from itertools import islice
from pathlib import Path

from jsonargparse import auto_cli
from rich.console import Console

from torchseq.attacks import NORMS, Attack, robust_accuracy
from torchseq.checks import check_choice


@dataclass
class AttackCurve(Attack):
    """An :class:`Attack` and the radii ε at which to measure accuracy (ε = 0: clean accuracy)."""

    epsilons: list[float] = field(default_factory=lambda: [0.0, 0.05, 0.1, 0.2])


def run_attack_experiment(
    fit_config: str,
    attacks: Sequence[AttackCurve],
    checkpoint: str | None = None,
    split: str = "test",
    max_batches: int | None = None,
    seed: int = 0,
    output_dir: str = "runs/attack",
) -> dict[str, dict[float, float]]:
    """Robust accuracy vs ε of the classifier that ``torchseq fit --config fit_config`` trains.

    With ``checkpoint`` its weights are loaded; without, the fit runs first (as the config says) and its
    best checkpoint is attacked. Writes ``robust_accuracy.{png,md,json}`` to ``output_dir``.
    Returns ``{attack name: {ε: accuracy}}``.
    """
    from torchseq.cli import TorchseqCLI

    check_choice("split", split, ("val", "test"))
    # Either way the weights come in through trainer.validate(ckpt_path=…), which also shows their
    # clean validation metrics.
    if checkpoint is None:
        cli = TorchseqCLI(args=["fit", "--config", fit_config])
        checkpoint = cli.trainer.checkpoint_callback.best_model_path or None
        if checkpoint:
            cli.trainer.validate(cli.model, datamodule=cli.datamodule, ckpt_path=checkpoint)
    else:
        cli = TorchseqCLI(args=["validate", "--config", fit_config, f"--ckpt_path={checkpoint}",
                                "--trainer.logger=false", f"--trainer.default_root_dir={output_dir}"])
    task, data = cli.model, cli.datamodule
    data.setup("test" if split == "test" else "validate")
    loader = data.test_dataloader() if split == "test" else data.val_dataloader()
    batches = list(islice(loader, max_batches))
    results = {}
    for attack in attacks:
        results[attack.name] = robust_accuracy(task, batches, attack, attack.epsilons, seed=seed)
        curve = ", ".join(f"ε={e:g}: {a:.3f}" for e, a in results[attack.name].items())
        Console().print(f"{attack.name}: {curve}")
    title = f"{Path(fit_config).stem} ({split} split, {sum(len(batch[1]) for batch in batches)} examples)"
    write_robustness_report(results, {curve.name: curve.norm for curve in attacks}, Path(output_dir), title,
                            checkpoint)
    return results


def write_robustness_report(
    results: Mapping[str, Mapping[float, float]], norms: Mapping[str, str], output_dir: Path, title: str,
    checkpoint: str | None,
) -> None:
    """``robust_accuracy.png`` (one panel per norm), ``.md`` (one table per attack) and ``.json``."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    output_dir.mkdir(parents=True, exist_ok=True)
    panels = [norm for norm in NORMS if norm in norms.values()]
    figure, axes = plt.subplots(1, len(panels), figsize=(5 * len(panels), 4), squeeze=False)
    for axis, norm in zip(axes[0], panels, strict=True):
        for name, curve in results.items():
            if norms[name] == norm:
                axis.plot(list(curve), list(curve.values()), marker="o", label=name)
        axis.set(title=f"{'L∞' if norm == 'linf' else 'L2'} attacks", xlabel="ε", ylabel="accuracy",
                 ylim=(0, 1.02))
        axis.grid(True, alpha=0.3)
        axis.legend()
    figure.suptitle(title)
    figure.tight_layout()
    figure.savefig(output_dir / "robust_accuracy.png", dpi=120)
    plt.close(figure)

    lines = [f"Robust accuracy of {title}; checkpoint {checkpoint or '(final weights)'}.", ""]
    for name, curve in results.items():
        lines += [f"| {name} | " + " | ".join(f"ε = {e:g}" for e in curve) + " |",
                  "|---" * (len(curve) + 1) + "|",
                  "| accuracy | " + " | ".join(f"{a:.3f}" for a in curve.values()) + " |", ""]
    (output_dir / "robust_accuracy.md").write_text("\n".join(lines))
    payload = {"title": title, "checkpoint": checkpoint,
               "results": {name: {str(e): a for e, a in curve.items()} for name, curve in results.items()}}
    (output_dir / "robust_accuracy.json").write_text(json.dumps(payload, indent=1))
    Console().print(f"written: {output_dir / 'robust_accuracy.png'}, .md, .json")


def main(args: Sequence[str] | None = None) -> None:
    """``torchseq attack --config experiments/attack_mnist5k.yaml`` (see :func:`run_attack_experiment`)."""
    auto_cli(run_attack_experiment, args=args, prog="torchseq attack")



if __name__ == "__main__":
    main()
