"""``torchseq sample``: a grid of images from a trained generator's checkpoint.

::

    torchseq sample --checkpoint runs/conditional_dcgan/version_0/checkpoints/best.ckpt \\
                    --digit 7 --n 64 --output sevens.png

Loads the task from a checkpoint ``torchseq fit`` wrote (a GAN or a VAE: any task with ``latent_dim``
and ``sample``), draws ``--n`` standard-normal codes (``--seed``) and writes the images as one PNG grid.
``--digit`` asks a class-conditional task (one with ``num_classes``) for that class; an unconditional
task refuses it. ``--check`` also reports how many of the images torchseq's MNIST-5k classifier reads
as the requested digit.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path

import lightning as L
import torch
from rich.console import Console
from torch import Tensor
from torchvision.utils import save_image

import torchseq.tasks  # noqa: F401  (Lightning loads only task classes that are already imported)


class SampleError(ValueError):
    """A request the checkpoint cannot serve; the message names the option."""


def load_generator_task(checkpoint: str | Path) -> L.LightningModule:
    """The task a ``torchseq fit`` checkpoint holds, on the CPU, in eval mode; it must be able to sample."""
    path = Path(checkpoint)
    if not path.is_file():
        raise SampleError(f"--checkpoint: no such file {str(path)!r}")
    task = L.LightningModule.load_from_checkpoint(path, map_location="cpu")
    missing = [name for name in ("latent_dim", "sample") if not hasattr(task, name)]
    if missing:
        raise SampleError(
            f"--checkpoint: {type(task).__name__} cannot sample (it has no {', '.join(missing)}); "
            "give a GAN or VAE checkpoint"
        )
    return task.eval()


def draw(task: L.LightningModule, count: int, digit: int | None, seed: int) -> Tensor:
    """``count`` images in [0, 1] (count, C, H, W); of class ``digit`` for a conditional task."""
    if count < 1:
        raise SampleError(f"--n: expected a positive number of images, got {count}")
    num_classes = getattr(task, "num_classes", None)
    if digit is not None and num_classes is None:
        raise SampleError(
            f"--digit: {type(task).__name__} is not class-conditional; leave --digit out to sample it"
        )
    if digit is not None and not 0 <= digit < num_classes:
        raise SampleError(f"--digit: expected a class in 0..{num_classes - 1}, got {digit}")
    noise = torch.randn(count, task.latent_dim, generator=torch.Generator().manual_seed(seed))
    with torch.no_grad():
        if digit is None:
            return task.sample(noise)
        return task.sample(noise, torch.full((count,), digit, dtype=torch.int64))


def main(args: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="torchseq sample", description=__doc__.split("\n\n")[0])
    parser.add_argument("--checkpoint", required=True, help="a GAN or VAE checkpoint written by torchseq fit")
    parser.add_argument("--digit", type=int, default=None, help="the class to draw (conditional tasks)")
    parser.add_argument("--n", type=int, default=64, help="number of images (default 64)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the codes (default 0)")
    parser.add_argument("--nrow", type=int, default=8, help="images per row of the grid (default 8)")
    parser.add_argument("--output", default=None, help="PNG to write (default: samples[_digitD].png)")
    parser.add_argument(
        "--check", action="store_true", help="report how many images the MNIST-5k classifier reads as --digit"
    )
    options = parser.parse_args(args)
    console = Console()
    output = Path(options.output or f"samples{'' if options.digit is None else f'_digit{options.digit}'}.png")
    try:
        task = load_generator_task(options.checkpoint)
        images = draw(task, options.n, options.digit, options.seed)
    except SampleError as error:
        console.print(f"error: {error}", style="red", soft_wrap=True)
        raise SystemExit(2) from None
    output.parent.mkdir(parents=True, exist_ok=True)
    save_image(images, output, nrow=options.nrow)
    console.print(f"wrote {options.n} images to {output}", soft_wrap=True)
    if options.check and options.digit is not None:
        from torchseq.metrics.mnist_features import load_or_train_feature_net

        net, _ = load_or_train_feature_net()
        with torch.no_grad():
            agreed = int((net(images).argmax(dim=1) == options.digit).sum())
        console.print(
            f"the MNIST-5k classifier reads {agreed}/{options.n} as {options.digit}", soft_wrap=True
        )
