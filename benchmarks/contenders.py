"""The sides compared, all holding the same weights, and the two workloads each side runs.

- ``fused``: ``impl="fused"``, torch.nn's kernel (oneDNN/native on CPU, cuDNN on CUDA);
- ``custom``: ``impl="custom"``, the explicit formulas through the hand-derived BPTT kernels;
- ``reference``: ``impl="custom"`` with the kernels switched off: ``cell.recur`` step by step, autograd;
- ``compiled``: ``torch.compile`` of the custom module (it traces the step-by-step formulas);
- ``compiled-step`` (user cells only): ``custom`` with ``compiled_step=True`` on every cell, the step
  compiled by AOTInductor and run from C++ (:mod:`torchseq.kernels.compiled_steps`). The first call of a
  new configuration compiles (about ten seconds, once per machine: the packages are kept on disk).

User cells (:data:`USER_CELLS`, cells with no hand-written kernel) run through ``torchseq.Recurrent``:
``custom`` is then the generic traced fast path (:mod:`torchseq.kernels.generic`), ``reference`` the
step-by-step formulas, and ``fused`` is ``nn.LSTM``'s kernel on an LSTM of the same size — the layer a
user would otherwise take (its weights are its own: the user cell has other parameters).

Workloads: ``forward`` is a forward under ``torch.no_grad()``; ``forward+backward`` is a training step's
share: forward with autograd, then backward of the output against a fixed random gradient; ``inference``
is a forward under ``torch.inference_mode()``, what serving runs.
"""

from __future__ import annotations

import torch
from torch import Tensor

import torchseq
from benchmarks.shapes import Shape
from benchmarks.timing import Workload
from torchseq import cells
from torchseq.kernels import kernels_enabled
from torchseq.recurrent import RecurrentLayers

BUILT_IN: dict[str, type[RecurrentLayers]] = {"RNN": torchseq.RNN, "LSTM": torchseq.LSTM, "GRU": torchseq.GRU}
USER_CELLS: dict[str, type[cells.RecurrentCell]] = {
    "LayerNormLSTM": cells.LayerNormLSTMCell,
    "PeepholeLSTM": cells.PeepholeLSTMCell,
}
CELLS = (*BUILT_IN, *USER_CELLS)
SIDES = ("fused", "custom", "reference", "compiled", "compiled-step")
MODES = ("forward", "forward+backward", "inference")


def build_layer(
    cell: str, shape: Shape, impl: str, device: torch.device, dtype: torch.dtype
) -> RecurrentLayers:
    """A layer of ``cell`` for ``shape``: a built-in front with ``impl``, or a user cell through
    ``torchseq.Recurrent`` (with ``impl="fused"``: the LSTM it is compared with)."""
    size = {
        "num_layers": shape.num_layers,
        "bidirectional": shape.bidirectional,
        "device": device,
        "dtype": dtype,
    }
    if cell in USER_CELLS and impl != "fused":
        return torchseq.Recurrent(USER_CELLS[cell], shape.input_size, shape.hidden_size, **size)
    front = BUILT_IN.get(cell, torchseq.LSTM)
    return front(shape.input_size, shape.hidden_size, impl=impl, **size)


def build_sides(
    cell: str, shape: Shape, sides: list[str], device: torch.device, dtype: torch.dtype, seed: int
) -> dict[str, RecurrentLayers]:
    """One module per side, the same weights in each (so a compiled module never sees another's changes;
    a user cell's ``fused`` LSTM keeps its own)."""
    modules: dict[str, RecurrentLayers] = {}
    for side in sides:
        torch.manual_seed(seed)
        impl = "fused" if side == "fused" else "custom"
        modules[side] = build_layer(cell, shape, impl, device, dtype)
        if side == "compiled-step":
            for module in modules[side].modules():
                if isinstance(module, cells.RecurrentCell):
                    module.compiled_step = True
    return _share_weights(modules, cell)


def _share_weights(modules: dict[str, RecurrentLayers], cell: str) -> dict[str, RecurrentLayers]:
    """Every side takes the weights of the first side of its kind (a user cell's LSTM is its own kind)."""
    kinds: dict[bool, RecurrentLayers] = {}
    for side, module in modules.items():
        kind = cell in USER_CELLS and side == "fused"
        if kind in kinds:
            module.load_state_dict(kinds[kind].state_dict())
        else:
            kinds[kind] = module
    return modules


def workload(
    module: RecurrentLayers,
    side: str,
    mode: str,
    x: Tensor,
    grad_output: Tensor,
    compile_mode: str = "default",
) -> Workload:
    """The call a side makes for ``mode``; the module is compiled here for the ``compiled`` side
    (``compile_mode="reduce-overhead"`` adds CUDA graphs on a GPU)."""
    if side == "compiled":
        # A fresh start per row: dynamo stops compiling a function after a few recompilations (new
        # shapes, new modules) and silently runs it eagerly, which would make later rows meaningless.
        torch.compiler.reset()
    call = torch.compile(module, dynamic=False, mode=compile_mode) if side == "compiled" else module
    use_kernels = side != "reference"

    if mode == "forward":

        def run() -> None:
            with torch.no_grad(), kernels_enabled(use_kernels):
                call(x)

        return Workload(run)

    if mode == "inference":

        def serve() -> None:
            with torch.inference_mode(), kernels_enabled(use_kernels):
                call(x)

        return Workload(serve)

    def clear_gradients() -> None:
        for parameter in module.parameters():
            parameter.grad = None

    def run_training() -> None:
        with kernels_enabled(use_kernels):
            output, _ = call(x)
            output.backward(grad_output)

    return Workload(run_training, clear_gradients)


def inputs(shape: Shape, device: torch.device, dtype: torch.dtype, seed: int) -> tuple[Tensor, Tensor]:
    """x (T, B, I) and the gradient fed to the output (T, B, D·H)."""
    generator = torch.Generator().manual_seed(seed)
    directions = 2 if shape.bidirectional else 1
    x = torch.randn(shape.steps, shape.batch, shape.input_size, generator=generator, dtype=dtype)
    output_size = directions * shape.hidden_size
    grad = torch.randn(shape.steps, shape.batch, output_size, generator=generator, dtype=dtype)
    return x.to(device), grad.to(device)
