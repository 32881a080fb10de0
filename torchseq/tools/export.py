"""``torchseq export``: a trained checkpoint's model as an ONNX file or a torch.export ExportedProgram.

::

    torchseq export --checkpoint runs/mnist5k_lstm/version_0/checkpoints/last.ckpt \\
                    --format onnx --output mnist5k_lstm.onnx

Loads the task from any checkpoint ``torchseq fit`` wrote, exports what the task's ``forward`` computes
(the model's outputs, e.g. class logits) with a dynamic batch size and, for sequences, a dynamic length,
and a ``lengths`` input where the model takes one (``--no-lengths`` leaves it out). The example the
tracer runs is made from the task's sizes (``input_size``, ``image_shape``, ``latent_dim``);
``--example-shape`` gives it for other tasks. See :mod:`torchseq.export` for what each layer becomes.
"""

from __future__ import annotations

import argparse
import inspect
from collections.abc import Sequence
from pathlib import Path

import lightning as L
import torch
from rich.console import Console
from torch import Tensor, nn

import torchseq.tasks  # noqa: F401  (Lightning loads only task classes that are already imported)
from torchseq import export
from torchseq.export import FORMATS, ExportError

#: Length of the example sequence when the task does not record one; any length ≥ 2 serves every length.
EXAMPLE_LENGTH = 8
EXAMPLE_BATCH = 2


def load_task(checkpoint: str | Path) -> L.LightningModule:
    """The task a ``torchseq fit`` checkpoint holds, on the CPU, in eval mode."""
    path = Path(checkpoint)
    if not path.is_file():
        raise ExportError(f"--checkpoint: no such file {str(path)!r}")
    try:
        task = L.LightningModule.load_from_checkpoint(path, map_location="cpu")
    except (KeyError, TypeError, ValueError, RuntimeError) as error:
        raise ExportError(
            f"--checkpoint: cannot rebuild the task from {str(path)!r} (a checkpoint written by torchseq fit "
            f"records its class and arguments): {type(error).__name__}: {error}"
        ) from error
    return task.eval()


def served_module(task: L.LightningModule) -> nn.Module:
    """What to export: the task's own ``forward`` where it defines one, else its ``model``."""
    if type(task).forward is not L.LightningModule.forward:
        return task
    model = getattr(task, "model", None)
    if not isinstance(model, nn.Module):
        raise ExportError(f"{type(task).__name__} has neither a forward nor a model to export")
    return model


def example_input(task: L.LightningModule, shape: Sequence[int] | None) -> Tensor:
    """A float32 example for ``task``: ``shape`` if given, else from the task's recorded sizes."""
    if shape is None:
        hparams = task.hparams
        if hparams.get("image_shape") is not None:
            shape = (EXAMPLE_BATCH, *hparams["image_shape"])
        elif getattr(task, "input_size", None) is not None:
            length = hparams.get("sequence_length") or EXAMPLE_LENGTH
            shape = (EXAMPLE_BATCH, length, task.input_size)
        elif getattr(task, "latent_dim", None) is not None:
            shape = (EXAMPLE_BATCH, task.latent_dim)
        else:
            raise ExportError(
                f"--example-shape: {type(task).__name__} records no input size; give the input's shape, "
                "e.g. --example-shape 2,28,28"
            )
    return torch.randn(*shape)


def takes_lengths(module: nn.Module) -> bool:
    return "lengths" in inspect.signature(module.forward).parameters


def export_task(
    task: L.LightningModule,
    output: str | Path,
    format: str = "onnx",
    *,
    loop: bool = False,
    lengths: bool = True,
    example_shape: Sequence[int] | None = None,
) -> Path:
    """Export what ``task`` computes to ``output`` in ``format`` (see :data:`FORMATS`); returns the path."""
    if format not in FORMATS:
        raise ExportError(f"--format: expected one of {FORMATS}, got {format!r}")
    module = served_module(task)
    x = example_input(task, example_shape)
    arguments: tuple[Tensor, ...] = (x,)
    if lengths and x.dim() == 3 and takes_lengths(module):
        arguments += (torch.full((x.shape[0],), x.shape[1], dtype=torch.int64),)
    output = Path(output)
    output.parent.mkdir(parents=True, exist_ok=True)
    if format == "onnx":
        export.onnx(module, arguments, output, loop=loop)
    else:
        export.exported_program(module, arguments, output, loop=loop)
    return output


def main(args: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="torchseq export", description=__doc__.split("\n\n")[0])
    parser.add_argument("--checkpoint", required=True, help="a checkpoint written by torchseq fit")
    parser.add_argument("--format", choices=FORMATS, default="onnx")
    parser.add_argument("--output", required=True, help="the file to write (.onnx or .pt2)")
    parser.add_argument("--loop", action="store_true",
                        help="every cell as its formula in a loop (scan), not as the runtime's fused op")
    parser.add_argument("--no-lengths", dest="lengths", action="store_false",
                        help="no lengths input (every sequence of a batch has the full length)")
    parser.add_argument("--example-shape", type=lambda text: [int(size) for size in text.split(",")],
                        help="shape of the example input, comma-separated (default: from the task)")
    options = parser.parse_args(args)
    console = Console()
    try:
        task = load_task(options.checkpoint)
        layers = export.plan(served_module(task), loop=options.loop)
        output = export_task(
            task, options.output, options.format, loop=options.loop,
            lengths=options.lengths, example_shape=options.example_shape,
        )
    except ExportError as error:
        console.print(f"error: {error}", style="red", soft_wrap=True)
        raise SystemExit(2) from None
    for layer in layers:
        why = f" ({layer.reason})" if layer.reason else ""
        console.print(f"{layer.path}: {layer.cell} → {layer.as_}{why}", soft_wrap=True)
    console.print(f"wrote {output}", soft_wrap=True)
