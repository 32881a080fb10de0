"""One training step of the DCGAN of ``experiments/dcgan.yaml`` on the CPU, per precision and layout.

::

    python -m benchmarks.gan_step [--threads 1 2] [--rounds 15] [--clock wall|cpu]
                                  [--discriminator config|tutorial] [--out FOLDER]

A step is what :class:`~torchseq.tasks.gan.GANTask` does per batch with that config: a discriminator
step (generator forward without gradient, D on the real and the generated batch, the R1 penalty's double
backward with the config's γ = 1, Adam) and a generator step (generator forward and backward through D,
Adam), batch 64 of 28×28 images (``dcgan.yaml`` trains at 32; 64 is the batch the reference
snapshots time), the DCGAN tutorial's generator and the config's discriminator (channels
128/256, no dropout); ``--discriminator tutorial`` times the tutorial's own (64/128, dropout 0.3).
Contenders:

- ``float32``: ``--trainer.precision 32-true``, for CPUs without bfloat16 instructions;
- ``float32, channels_last``: the same with NHWC images and weights;
- ``bf16-mixed``: the same step under ``torch.autocast("cpu", torch.bfloat16)``, which is what
  ``precision: bf16-mixed`` (the config's) gives a Lightning run. Weights, Adam and the losses stay float32.

The contenders run interleaved in one process (round r starts at contender r mod n), after 3 warm-up
steps each; the table gives the median and the interquartile spread per step, and the ratio to
``float32``. Writes ``gan_step.md``, ``gan_step.json`` and ``gan_step.png`` to ``--out`` (default
``runs/benchmarks/gan_step``), with the CPU and thread counts. Speed only: what bf16 does to the
quality of the trained generator is measured by training runs (docs/generative.md).
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable
from contextlib import nullcontext
from functools import partial
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import torch

from benchmarks.machine import describe
from benchmarks.timing import CpuClock, Workload, time_interleaved
from torchseq.models.gan import DCGANDiscriminator, DCGANGenerator
from torchseq.tasks.gan import GANTask

BATCH, R1_GAMMA, LR, BETAS = 64, 1.0, 2e-4, (0.5, 0.999)
DISCRIMINATORS = {  # name → DCGANDiscriminator's arguments
    "config": {"channels": (128, 256), "dropout": 0.0},  # experiments/dcgan.yaml
    "tutorial": {"channels": (64, 128), "dropout": 0.3},  # the TensorFlow DCGAN tutorial's
}
CONTENDERS = ("float32", "float32, channels_last", "bf16-mixed")


def training_step(contender: str, discriminator: str) -> Callable[[], None]:
    """A closure running one D step and one G step of the DCGAN with R1, as ``contender`` computes them.

    The losses are :class:`~torchseq.tasks.gan.GANTask`'s own (``discriminator_loss``, ``r1``,
    ``generator_loss``), called without a trainer, so the benchmark times what training computes,
    without Lightning's loop and logging around it.
    """
    torch.manual_seed(0)
    task = GANTask(
        DCGANGenerator,
        partial(DCGANDiscriminator, **DISCRIMINATORS[discriminator]),
        lr=LR,
        betas=BETAS,
        r1_penalty=R1_GAMMA,
    )
    real = torch.rand(BATCH, 1, 28, 28) * 2 - 1
    if contender.endswith("channels_last"):
        task = task.to(memory_format=torch.channels_last)
        real = real.contiguous(memory_format=torch.channels_last)
    d_optimizer, g_optimizer = task.configure_optimizers()

    def precision() -> torch.autocast | nullcontext:
        return torch.autocast("cpu", dtype=torch.bfloat16) if contender == "bf16-mixed" else nullcontext()

    def noise() -> torch.Tensor:
        return torch.randn(BATCH, task.latent_dim)

    def step() -> None:
        with precision():
            with torch.no_grad():
                fake = task.generate(noise(), None)
            d_loss, _ = task.discriminator_loss(real, fake, augment=True)
            d_loss = d_loss + task.r1(real, None)
        d_optimizer.zero_grad()
        d_loss.backward()
        d_optimizer.step()
        with precision():
            g_loss = task.generator_loss(task.generate(noise(), None), None)
        g_optimizer.zero_grad()
        g_loss.backward()
        g_optimizer.step()

    return step


def measure(threads: int, rounds: int, clock: str, discriminator: str) -> list[dict]:
    torch.set_num_threads(threads)
    timings = time_interleaved(
        {name: Workload(training_step(name, discriminator)) for name in CONTENDERS},
        CpuClock(clock),
        warmup=3,
        repeats=rounds,
    )
    baseline = timings["float32"].median_ms
    return [
        {
            "threads": threads,
            "discriminator": discriminator,
            "contender": name,
            "median_ms": timing.median_ms,
            "spread": timing.spread,
            "vs_float32": timing.median_ms / baseline,
        }
        for name, timing in timings.items()
    ]


def discriminator_text(rows: list[dict]) -> str:
    name = rows[0]["discriminator"]
    arguments = DISCRIMINATORS[name]
    channels = "/".join(map(str, arguments["channels"]))
    return f"{name} discriminator: channels {channels}, dropout {arguments['dropout']:g}"


def markdown(rows: list[dict], machine: dict, clock: str, rounds: int) -> str:
    lines = [
        f"DCGAN training step (D step with R1 γ = {R1_GAMMA:g} + G step, batch {BATCH}, "
        f"{discriminator_text(rows)}) on {machine['cpu']} "
        f"({machine['logical_cpus']} logical CPUs, load average at start "
        f"{', '.join(f'{v:.1f}' for v in machine['load_average_at_start'])}), torch {machine['torch']}; "
        f"median {clock} ms per step over {rounds} interleaved rounds.",
        "",
        "| threads | contender | ms / step | spread (IQR / median) | vs float32 |",
        "| --- | --- | --- | --- | --- |",
    ]
    lines += [
        f"| {r['threads']} | {r['contender']} | {r['median_ms']:.0f} | {r['spread']:.2f} "
        f"| {r['vs_float32']:.2f}× |"
        for r in rows
    ]
    return "\n".join(lines) + "\n"


def plot(rows: list[dict], machine: dict, path: Path) -> None:
    thread_counts = sorted({r["threads"] for r in rows})
    figure, axes = plt.subplots(figsize=(7, 3.5))
    width = 0.8 / len(CONTENDERS)
    for index, contender in enumerate(CONTENDERS):
        values = [
            next(r["median_ms"] for r in rows if r["threads"] == t and r["contender"] == contender)
            for t in thread_counts
        ]
        axes.bar([t + (index - 1) * width for t in range(len(thread_counts))], values, width, label=contender)
    axes.set_xticks(range(len(thread_counts)), [f"{t} thread{'s' * (t > 1)}" for t in thread_counts])
    axes.set_ylabel("ms per training step (median)")
    axes.set_title(f"DCGAN step, batch {BATCH}, R1: {machine['cpu']}", fontsize=9)
    axes.legend(fontsize=8)
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)


def main(args: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--threads", type=int, nargs="+", default=[1, torch.get_num_threads()])
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument(
        "--clock",
        choices=("wall", "cpu"),
        default="wall",
        help="elapsed time, or the process' CPU time (steadier at 1 thread on a shared machine)",
    )
    parser.add_argument(
        "--discriminator",
        choices=tuple(DISCRIMINATORS),
        default="config",
        help="dcgan.yaml's discriminator (channels 128/256, no dropout) or the tutorial's (64/128, 0.3)",
    )
    parser.add_argument("--out", type=Path, default=Path("runs/benchmarks/gan_step"))
    options = parser.parse_args(args)
    machine = describe(torch.device("cpu"), torch.float32)
    rows = [
        row
        for threads in dict.fromkeys(options.threads)
        for row in measure(threads, options.rounds, options.clock, options.discriminator)
    ]
    options.out.mkdir(parents=True, exist_ok=True)
    table = markdown(rows, machine, options.clock, options.rounds)
    (options.out / "gan_step.md").write_text(table)
    (options.out / "gan_step.json").write_text(json.dumps({"machine": machine, "rows": rows}, indent=2))
    plot(rows, machine, options.out / "gan_step.png")
    print(table)


if __name__ == "__main__":
    main()
