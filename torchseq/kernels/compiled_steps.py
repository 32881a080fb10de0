"""The compiled generic fast path: a cell's traced step graphs compiled ahead of time by AOTInductor and
called from a C++ loop (``step_loops.cpp``). Opt-in: ``cell.compiled_step = True`` (per cell, or on the
class), or ``TORCHSEQ_COMPILED_STEPS=1`` for every cell without a hand-written kernel.

The TorchScript loops of :mod:`torchseq.kernels.generic` pay for every ATen op of a step: a dispatch, an
allocation, a pass over memory, a few microseconds each. AOTInductor fuses a step's pointwise ops and
normalisations into one or two loops of generated C++ around the step's GEMMs, and the loop that calls
it is C++ too, so a step costs about its kernels. The backward step is compiled with what the
TorchScript loop does around it (adding the incoming gradient to the carried one, accumulating the
parameter gradients), so those fuse as well.

What it costs: AOTInductor compiles two C++ packages per cell type and configuration, batch size,
dtype and thread count (the generated loops are written for a thread count), about 15 s on a 2-core
machine. The packages are kept on disk (``TORCHSEQ_CACHE_DIR``, default ``~/.cache/torchseq``), so a
later process loads them in a fraction of a second. A failed compile warns once, naming the reason, and
the TorchScript loops run.
"""

from __future__ import annotations

import copy
import hashlib
import os
import time
import warnings
from collections.abc import Sequence
from pathlib import Path

import torch
from torch import Tensor, fx, nn

from torchseq.kernels.native import cpu_features, native_loops

#: Part of every package's cache key: raised when what the packages compute or take changes.
PACKAGE_FORMAT = 4

#: Set to 1 to compile the step of every cell that has no hand-written kernel.
ENVIRONMENT_SWITCH = "TORCHSEQ_COMPILED_STEPS"


def requested(cell: nn.Module) -> bool:
    """Whether ``cell`` asks for compiled steps (its ``compiled_step``, or the environment switch)."""
    return bool(getattr(cell, "compiled_step", False)) or os.environ.get(ENVIRONMENT_SWITCH, "0") == "1"


def cache_dir() -> Path:
    root = os.environ.get("TORCHSEQ_CACHE_DIR") or Path.home() / ".cache" / "torchseq"
    return Path(root) / "compiled_steps"


class _Step(nn.Module):
    """An ATen step graph as a module, for ``torch.export``."""

    def __init__(self, graph: fx.GraphModule) -> None:
        super().__init__()
        self.graph = graph

    def forward(self, *inputs: Tensor) -> tuple[Tensor, ...]:
        return tuple(self.graph(*inputs))


class _BackwardStep(_Step):
    """The backward step graph with the loop's bookkeeping around it.

    (dynamic saved…, d state_t (this step's output gradient)…, carried…, the running sums of the summed
    parameter gradients…, parameters…) → (d pre_t, d state_{t-1}…, then per parameter either its running
    sum including this step or, for a factored one, the step's two GEMM factors).

    The saved tensors computed from the parameters alone (a transposed weight, the parameters themselves)
    are made here from the parameters rather than passed from the forward: AOTInductor returns an output
    that aliases an input as a copy, which for a weight costs more per step than the step's GEMM."""

    def __init__(self, graph: fx.GraphModule, static: fx.GraphModule, is_static: Sequence[bool],
                 state_count: int, factored: Sequence[bool]) -> None:
        super().__init__(graph)
        self.static = static
        self.is_static, self.state_count, self.factored = tuple(is_static), state_count, tuple(factored)

    def forward(self, *inputs: Tensor) -> tuple[Tensor, ...]:
        count, dynamic_count = self.state_count, self.is_static.count(False)
        dynamic, rest = iter(inputs[:dynamic_count]), inputs[dynamic_count:]
        parameters = rest[len(rest) - len(self.factored) :]
        static = iter(self.static(*parameters))
        saved = [next(static) if is_static else next(dynamic) for is_static in self.is_static]
        incoming = [d + carried for d, carried in zip(rest[:count], rest[count : 2 * count], strict=True)]
        result = self.graph(*saved, *incoming)
        so_far, step = iter(rest[2 * count : len(rest) - len(self.factored)]), iter(result[1 + count :])
        gradients: list[Tensor] = []
        for factored in self.factored:
            gradients += [next(step), next(step)] if factored else [next(so_far) + next(step)]
        return (result[0], *result[1 : 1 + count], *gradients)


def _is_transpose(node: fx.Node) -> bool:
    return node.op == "call_function" and (
        node.target is torch.ops.aten.t.default
        or (node.target is torch.ops.aten.permute.default and list(node.args[1]) == [1, 0])
    )


def factor_weight_gradients(backward_graph: fx.GraphModule, state_count: int
                            ) -> tuple[fx.GraphModule, list[int | None]]:
    """Rewrite the backward step so that a parameter gradient that is one GEMM, a_t @ b_t (possibly
    transposed), returns its factors instead: the loop keeps them and makes the sum over steps one GEMM
    at the end, Σ_t a_t b_t = ``[a_1 … a_T] [b_1; …; b_T]``, instead of T small GEMMs each reading and
    writing the whole gradient (at batch 1 that rank-1 update costs more than the step's other work).
    → the rewritten graph, and per parameter how its factors come (None: not factored; else bit 1: the
    gradient is (a b)ᵀ, bit 2: the step returns a_tᵀ, bit 4: it returns b_tᵀ)."""
    module = copy.deepcopy(backward_graph)
    output = module.graph.output_node()
    values = list(output.args[0])
    transposed: list[int | None] = []
    new_values = values[: 1 + state_count]
    for value in values[1 + state_count :]:
        node, flips = value, 0
        while isinstance(node, fx.Node) and _is_transpose(node):
            node, flips = node.args[0], flips + 1
        is_product = isinstance(node, fx.Node) and node.op == "call_function"
        if is_product and node.target is torch.ops.aten.mm.default:
            # A factor that is a transpose is returned untransposed (contiguous), which the loop
            # concatenates over steps along the other dimension and transposes back once.
            kind = int(flips % 2 == 1)
            for bit, factor in ((2, node.args[0]), (4, node.args[1])):
                if _is_transpose(factor):
                    kind, factor = kind | bit, factor.args[0]
                new_values.append(factor)
            transposed.append(kind)
        else:
            transposed.append(None)
            new_values.append(value)
    output.args = (tuple(new_values),)
    module.graph.eliminate_dead_code()
    module.recompile()
    return module, transposed


def split_saved(forward_graph: fx.GraphModule, dynamic_inputs: int, state_count: int
                ) -> tuple[fx.GraphModule, fx.GraphModule, list[bool]]:
    """Split the forward step's saved tensors into those that depend on its first ``dynamic_inputs``
    inputs (pre_t and the state) and the static rest (functions of the parameters alone) → the forward
    graph returning the state and the dynamic saved tensors, a graph of the parameters returning the
    static ones, and which saved tensors are static."""
    placeholders = [node for node in forward_graph.graph.nodes if node.op == "placeholder"]
    dynamic = set(placeholders[:dynamic_inputs])
    for node in forward_graph.graph.nodes:
        if any(value in dynamic for value in node.all_input_nodes):
            dynamic.add(node)
    outputs = list(forward_graph.graph.output_node().args[0])
    saved = outputs[state_count:]
    is_static = [node not in dynamic for node in saved]

    def keeping(values: list[fx.Node], drop_dynamic_inputs: bool) -> fx.GraphModule:
        module = copy.deepcopy(forward_graph)
        names = [value.name for value in values]
        nodes = {node.name: node for node in module.graph.nodes}
        output = module.graph.output_node()
        output.args = (tuple(nodes[name] for name in names),)
        module.graph.eliminate_dead_code()
        if drop_dynamic_inputs:
            for node in [n for n in module.graph.nodes if n.op == "placeholder"][:dynamic_inputs]:
                module.graph.erase_node(node)  # unused: the static values read parameters only
        module.recompile()
        return module

    dynamic_saved = [node for node, static in zip(saved, is_static, strict=True) if not static]
    forward = keeping(outputs[:state_count] + dynamic_saved, False)
    static = keeping([node for node, static in zip(saved, is_static, strict=True) if static], True)
    return forward, static, is_static


def _copy_with_strides(tensor: Tensor) -> Tensor:
    """A copy of ``tensor`` in storage of its own, with its sizes, strides and offset: a compiled step
    assumes the strides of its example inputs (a saved gate may be a strided slice of a wider buffer),
    which ``clone()`` would make contiguous."""
    storage = tensor.untyped_storage().clone()
    return torch.empty(0, dtype=tensor.dtype, device=tensor.device).set_(
        storage, tensor.storage_offset(), tensor.size(), tensor.stride()
    )


def _digest(*parts: object) -> str:
    return hashlib.sha256("\n".join(str(part) for part in parts).encode()).hexdigest()[:20]


def _package(module: nn.Module, examples: Sequence[Tensor], path: Path) -> str:
    """AOTInductor's package of ``module`` for inputs shaped like ``examples``, compiled unless on disk."""
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        partial = path.with_suffix(f".{os.getpid()}.tmp.pt2")  # another process may compile it meanwhile
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            program = torch.export.export(module, tuple(examples), strict=False)
            torch._inductor.aoti_compile_and_package(program, package_path=str(partial))
        partial.replace(path)
    return str(path)


class CompiledSteps:
    """A cell's forward and backward step, compiled, with the C++ loops that run them."""

    def __init__(self, forward_graph: fx.GraphModule, backward_graph: fx.GraphModule,
                 examples: Sequence[Tensor], state_count: int) -> None:
        """``examples``: a forward step's inputs (pre_t, the state parts, the parameters ``recur`` reads)."""
        started = time.perf_counter()
        examples = [example.detach().clone().contiguous() for example in examples]
        state, parameters = examples[1 : 1 + state_count], examples[1 + state_count :]
        key = _digest(PACKAGE_FORMAT, forward_graph.code, backward_graph.code,
                      [(tuple(e.shape), e.dtype, e.device) for e in examples], torch.__version__,
                      cpu_features(), torch.get_num_threads())
        folder = cache_dir()
        forward_graph, static, is_static = split_saved(forward_graph, 1 + state_count, state_count)
        forward_package = _package(_Step(forward_graph), examples, folder / f"{key}-forward.pt2")
        # The backward step reads the saved tensors with the strides the compiled forward gives them,
        # which its compiled code assumes: take them from a run of it, and keep them in the copies.
        # Distinct tensors for distinct inputs: export treats an example passed twice as one aliased
        # input.
        with torch.no_grad():
            saved = torch._inductor.aoti_load_package(forward_package)(*examples)[state_count:]
        backward_graph, transposed = factor_weight_gradients(backward_graph, state_count)
        factored = [flag is not None for flag in transposed]
        backward = _BackwardStep(backward_graph, static, is_static, state_count, factored)
        summed = [p for p, is_factored in zip(parameters, factored, strict=True) if not is_factored]
        backward_examples = [_copy_with_strides(t) for t in (*saved, *state, *state, *summed, *parameters)]
        backward_package = _package(backward, backward_examples, folder / f"{key}-backward.pt2")
        self.loops = native_loops().CompiledStepLoops(forward_package, backward_package,
                                                      [-1 if kind is None else kind for kind in transposed])
        self.seconds = time.perf_counter() - started

    def forward(self, pre: Tensor, state: list[Tensor], parameters: list[Tensor], keep: bool
                ) -> tuple[list[Tensor], object]:
        """pre (T, B, G) → each state part over time, and the saved steps (for :meth:`backward`)."""
        return self.loops.forward(pre.contiguous(), [s.contiguous() for s in state],
                                  [p.detach().contiguous() for p in parameters], keep)

    def backward(self, saved: object, d_sequences: Sequence[Tensor], parameters: list[Tensor]
                 ) -> tuple[Tensor, list[Tensor], list[Tensor]]:
        """→ d pre (T, B, G), the initial state's gradient, each parameter's gradient."""
        return self.loops.backward(saved, [d.contiguous() for d in d_sequences],
                                   [p.detach().contiguous() for p in parameters])


def available() -> bool:
    """The native module built, with the compiled loops (torch with AOTInductor's package loader)."""
    module = native_loops()
    return module is not None and hasattr(module, "CompiledStepLoops")
