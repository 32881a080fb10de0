"""A fast path for any cell: its ``recur`` traced once into a forward and a backward step graph, run by
TorchScript loops over the whole sequence, with no Python and no autograd bookkeeping per step.

A cell without a hand-written kernel runs its ``recur`` step by step under autograd: every one of a
dozen small ops a step pays Python, dispatch and graph recording, forward and again backward, which at
small shapes is most of the time. Here, on a cell's first call with a given batch, dtype and device:

1. AOTAutograd traces one step, ``new_state = recur(pre_t, state)`` with the parameters ``recur``
   reads as inputs, into an ATen forward graph (which also returns what backward needs) and a backward
   graph (the step's vector-Jacobian product), split by its default partitioner.
2. Both graphs become TorchScript functions of one list of tensors; TorchScript loops
   (:class:`ForwardLoop`, :class:`BackwardLoop`) run them over all timesteps, so a step is a run of
   ATen calls from C++.
3. The traced forward step is compared with ``recur`` once, on that first call; a cell the trace does
   not reproduce, or whose step draws random numbers, keeps the step-by-step reference (with a warning).

The input projection stays outside (``cell.input_projection`` for all timesteps, differentiated by
autograd), as in the hand-written kernels. A double backward (a gradient penalty) steps ``recur``
under autograd in the recorded backward, so it is exact too. The step graphs depend on every shape but
the time dimension, so they are made per cell type and configuration, batch size, dtype and device,
and shared by the cells that match (:func:`prepare`). ``kernels_enabled(False)`` or
``cell.fast_path = False`` keeps the reference.
"""

from __future__ import annotations

import logging
import operator
import time
import warnings
import weakref
from collections.abc import Callable
from typing import NamedTuple

import torch
from torch import Tensor, fx, nn

from torchseq.cells.base import RecurrentCell, State
from torchseq.kernels import compiled_steps
from torchseq.kernels.base import last_valid, needs_graph, one_thread_if
from torchseq.kernels.compiled_steps import CompiledSteps

#: ATen ops that draw random numbers: a step with one of them has no deterministic trace to replay.
RANDOM_OPS = ("bernoulli", "dropout", "rand", "normal", "multinomial", "uniform", "exponential")


class StepGraphs(NamedTuple):
    """One cell's traced step, for one batch size, dtype and device."""

    forward: ForwardLoop
    backward: BackwardLoop
    parameter_names: tuple[str, ...]   # the parameters ``recur`` reads, in the graphs' input order
    state_count: int                   # tensors in the state: 1 (h) or more ((h, c), …)
    seconds: float                     # what tracing and scripting took
    forward_graph: fx.GraphModule      # the ATen step graphs the loops run, kept for compiling
    backward_graph: fx.GraphModule
    compiled: CompiledSteps | None = None  # the same steps compiled by AOTInductor, where asked for


class ForwardLoop(nn.Module):
    """Runs the forward step graph over all timesteps; keeps each step's saved tensors when asked."""

    def __init__(self, step: torch.jit.ScriptModule, state_count: int) -> None:
        super().__init__()
        self.step = step
        self.state_count = state_count

    def forward(
        self, pre: Tensor, state: list[Tensor], parameters: list[Tensor], keep: bool
    ) -> tuple[list[Tensor], list[list[Tensor]]]:
        """pre (T, B, G), the initial state, the parameters → every state part stacked over time
        ((T, B, ·) each) and, if ``keep``, each step's saved tensors."""
        sequences: list[list[Tensor]] = [[] for _ in range(self.state_count)]
        saved: list[list[Tensor]] = []
        for pre_t in pre.unbind(0):
            result = self.step([pre_t] + state + parameters)  # noqa: RUF005 (TorchScript has no list unpacking)
            state = result[: self.state_count]
            for k in range(self.state_count):
                sequences[k].append(state[k])
            if keep:
                saved.append(result[self.state_count :])
        return [torch.stack(part) for part in sequences], saved


class BackwardLoop(nn.Module):
    """Runs the backward step graph from the last step to the first, accumulating parameter gradients."""

    def __init__(self, step: torch.jit.ScriptModule, state_count: int) -> None:
        super().__init__()
        self.step = step
        self.state_count = state_count

    def forward(
        self, saved: list[list[Tensor]], d_sequences: list[Tensor], parameters: list[Tensor]
    ) -> tuple[Tensor, list[Tensor], list[Tensor]]:
        """Each step's saved tensors and the gradients of the stacked states → d pre (T, B, G), the
        gradient of the initial state, and of each parameter."""
        count = self.state_count
        carried = [torch.zeros_like(d[0]) for d in d_sequences]
        d_parameters = [torch.zeros_like(p) for p in parameters]
        d_pre: list[Tensor] = []
        for t in range(len(saved) - 1, -1, -1):
            incoming = [d_sequences[k][t] + carried[k] for k in range(count)]  # this step's total dstate
            result = self.step(saved[t] + incoming)
            d_pre.append(result[0])
            carried = result[1 : 1 + count]
            for k in range(len(d_parameters)):
                d_parameters[k].add_(result[1 + count + k])
        d_pre.reverse()
        return torch.stack(d_pre), carried, d_parameters


# -- tracing ---------------------------------------------------------------------------------------
class _Recur(nn.Module):
    """``cell.recur`` as a module call on flat state tensors, so ``functional_call`` can swap in inputs."""

    def __init__(self, cell: RecurrentCell) -> None:
        super().__init__()
        self.cell = cell

    def forward(self, pre: Tensor, *state: Tensor) -> tuple[Tensor, ...]:
        new_state = self.cell.recur(pre, state if len(state) > 1 else state[0])
        return tuple(new_state) if isinstance(new_state, tuple) else (new_state,)


def flat_state(state: State) -> list[Tensor]:
    return list(state) if isinstance(state, tuple) else [state]


def parameters_read_by_recur(cell: RecurrentCell, pre: Tensor, state: list[Tensor]) -> tuple[str, ...]:
    """Names of the parameters ``recur`` depends on (weight_ih, read only by the input projection,
    is not one of them)."""
    named = dict(cell.named_parameters())
    with torch.enable_grad():
        new_state = [s for s in _Recur(cell)(pre, *state) if s.requires_grad]
        if not new_state:
            return ()  # recur reads no parameter (minGRU: its gates see only the projected input)
        gradients = torch.autograd.grad(
            [s.sum() for s in new_state], list(named.values()), allow_unused=True
        )
    return tuple(name for name, gradient in zip(named, gradients, strict=True) if gradient is not None)


def list_signature(graph_module: fx.GraphModule) -> torch.jit.ScriptModule:
    """An ATen graph of n tensor inputs as a TorchScript function of one list of n tensors returning a
    list (the loops call any step with one signature); ``detach`` dropped (the loops record no graph)."""
    graph = fx.Graph()
    inputs = graph.placeholder("inputs", type_expr=list[Tensor])
    env: dict[fx.Node, fx.Node] = {}
    placeholders = 0
    for node in graph_module.graph.nodes:
        if node.op == "placeholder":
            env[node] = graph.call_function(operator.getitem, (inputs, placeholders))
            placeholders += 1
        elif node.op == "output":
            graph.output([env[value] for value in node.args[0]], type_expr=list[Tensor])
        elif node.target is torch.ops.aten.detach.default:
            env[node] = env[node.args[0]]
        else:
            env[node] = graph.node_copy(node, lambda value: env[value])
            if isinstance(node.target, torch._ops.OpOverload):
                env[node].target = node.target.overloadpacket  # TorchScript picks the overload itself
    return script(fx.GraphModule(graph_module, graph))


def script(module: nn.Module) -> torch.jit.ScriptModule:
    """``torch.jit.script``, without its deprecation notice: TorchScript is what runs a loop of ATen calls
    outside Python with no compiler at hand (``torch.compile`` pays tens of seconds a graph here)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        warnings.simplefilter("ignore", UserWarning)
        return torch.jit.script(module)


def plain_interpreter() -> torch.jit.optimized_execution:
    """Run TorchScript without its profiling optimiser: on CPU it has nothing to fuse these graphs with,
    yet re-profiles and recompiles them for seconds whenever an input's properties change."""
    return torch.jit.optimized_execution(False)


def draws_random_numbers(graph_module: fx.GraphModule) -> bool:
    return any(
        node.op == "call_function" and any(name in str(node.target) for name in RANDOM_OPS)
        for node in graph_module.graph.nodes
    )


class Untraceable(Exception):
    """The step cannot run on the fast path; the message says why."""


def trace_step(cell: RecurrentCell, pre: Tensor, state: list[Tensor]) -> StepGraphs:
    """Trace, check and script one step of ``cell`` for inputs shaped like ``pre`` (B, G) and ``state``."""
    from torch._functorch.aot_autograd import aot_function
    from torch._functorch.partitioners import default_partition

    started = time.perf_counter()
    pre, state = pre.detach(), [s.detach() for s in state]
    names = parameters_read_by_recur(cell, pre, state)
    named = dict(cell.named_parameters())
    recur = _Recur(cell)

    def step(pre: Tensor, *rest: Tensor) -> tuple[Tensor, ...]:
        values = dict(zip((f"cell.{name}" for name in names), rest[len(state) :], strict=True))
        return torch.func.functional_call(recur, values, (pre, *rest[: len(state)]))

    graphs: dict[str, fx.GraphModule] = {}

    def keep_graph(kind: str) -> Callable[[fx.GraphModule, object], fx.GraphModule]:
        def compiler(graph_module: fx.GraphModule, example: object) -> fx.GraphModule:
            graphs[kind] = graph_module
            return graph_module
        return compiler

    traced = aot_function(
        step, fw_compiler=keep_graph("forward"), bw_compiler=keep_graph("backward"),
        partition_fn=default_partition,
    )
    inputs = [t.clone().requires_grad_() for t in (pre, *state, *(named[n].detach() for n in names))]
    with torch.enable_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # AOTAutograd's note on boxed calling conventions
        outputs = traced(*inputs)
        torch.autograd.backward(outputs, [torch.ones_like(o) for o in outputs])
    if draws_random_numbers(graphs["forward"]):
        raise Untraceable("recur draws random numbers")
    forward_names = [node.name for node in graphs["forward"].graph.output_node().args[0]]
    backward_inputs = [n.name for n in graphs["backward"].graph.nodes if n.op == "placeholder"]
    saved_count = len(backward_inputs) - len(state)
    if forward_names[len(state) :] != backward_inputs[:saved_count]:
        raise Untraceable("the backward graph does not read the forward graph's saved tensors in order")
    backward_outputs = graphs["backward"].graph.output_node().args[0]
    if any(value is None for value in backward_outputs):
        raise Untraceable("recur's output does not depend on every part of its input and state")

    forward_step, backward_step = list_signature(graphs["forward"]), list_signature(graphs["backward"])
    check_against_recur(cell, forward_step, pre, state, [named[n].detach() for n in names])
    return StepGraphs(
        script(ForwardLoop(forward_step, len(state))),
        script(BackwardLoop(backward_step, len(state))),
        names, len(state), time.perf_counter() - started, graphs["forward"], graphs["backward"],
    )


def check_against_recur(
    cell: RecurrentCell, forward_step: torch.jit.ScriptModule, pre: Tensor, state: list[Tensor],
    parameters: list[Tensor],
) -> None:
    """The scripted step must give ``recur``'s new state on the trace's own inputs (to rounding)."""
    with torch.no_grad():
        expected = _Recur(cell)(pre, *state)
        got = forward_step([pre, *state, *parameters])[: len(state)]
    for want, have in zip(expected, got, strict=True):
        if want.shape != have.shape or not torch.allclose(want, have, rtol=1e-5, atol=1e-6):
            raise Untraceable("the traced step differs from recur (Python control flow on values?)")


# -- the cache and the kernel ----------------------------------------------------------------------------
#: Step graphs by cell type, configuration (``repr``), mode, batch size, dtype, device and state shapes.
_graphs: dict[tuple, StepGraphs | None] = {}
#: Cells whose own ``recur`` has been compared with the shared graphs.
_checked: weakref.WeakKeyDictionary[RecurrentCell, set[tuple]] = weakref.WeakKeyDictionary()


def prepare(cell: RecurrentCell, x: Tensor) -> StepGraphs | None:
    """The step graphs of ``cell`` for input ``x`` (T, B, I), or None where the cell keeps the reference
    (``cell.fast_path`` False, or the trace was refused: warned once).

    Graphs take the parameters as inputs, so cells of one type and configuration share them: the cost
    of tracing (about a second) is paid once per cell type, configuration, batch size, dtype and
    device in a process. Each further cell's ``recur`` is still compared with the graphs once.
    """
    if not getattr(cell, "fast_path", True):
        return None
    # Outside inference mode: tracing saves tensors for a backward, which a first call under
    # torch.inference_mode() would otherwise refuse (and keep the reference for good).
    with torch.inference_mode(False):
        return _prepare(cell, x[0].detach())


def first_projection(cell: RecurrentCell, x: Tensor) -> Tensor:
    """The cell's projection of the first step's input x (B, I), an example for tracing, checking and
    compiling; x is copied first, since an inference tensor cannot be saved for the projection's
    backward."""
    return cell.input_projection(x.clone()).detach()


def _prepare(cell: RecurrentCell, x: Tensor) -> StepGraphs | None:
    """:func:`prepare` for the first step's input x (B, I)."""
    state = [torch.randn_like(s) for s in flat_state(cell.initial_state(x.shape[0], x))]  # a check's example
    key = (type(cell), repr(cell), cell.training, x.shape[0], x.dtype, x.device, *(s.shape for s in state))
    if key not in _graphs:
        pre = first_projection(cell, x)
        try:
            _graphs[key] = trace_step(cell, pre, state)
        except Exception as reason:  # any failure to trace or script the step keeps the reference
            warnings.warn(f"{type(cell).__name__} keeps the step-by-step path: {reason}", stacklevel=4)
            _graphs[key] = None
        _checked.setdefault(cell, set()).add(key)
    graphs = _graphs[key]
    if graphs is not None and key not in _checked.setdefault(cell, set()):
        pre = first_projection(cell, x)
        named = dict(cell.named_parameters())
        try:
            check_against_recur(
                cell, graphs.forward.step, pre, state, [named[n].detach() for n in graphs.parameter_names]
            )
        except Untraceable as reason:
            warnings.warn(f"{type(cell).__name__} keeps the step-by-step path: {reason}", stacklevel=4)
            cell.fast_path = False
            return None
        _checked[cell].add(key)
    if graphs is not None and compiled_steps.requested(cell) and x.device.type == "cpu":
        graphs = graphs._replace(compiled=compiled(graphs, cell, x, state, key))
    return graphs


logger = logging.getLogger(__name__)

#: Compiled steps by the step graphs' key and the thread count they were compiled for.
_compiled: dict[tuple, CompiledSteps | None] = {}


def compiled(
    graphs: StepGraphs, cell: RecurrentCell, x: Tensor, state: list[Tensor], key: tuple
) -> CompiledSteps | None:
    """``graphs`` compiled by AOTInductor (:mod:`torchseq.kernels.compiled_steps`) for the first step's
    input x (B, I), or None where that is unavailable or failed (warned once: the TorchScript loops run)."""
    key = (*key, torch.get_num_threads())  # the generated loops are written for a thread count
    if key not in _compiled:
        _compiled[key] = None
        if not compiled_steps.available():
            warnings.warn(f"{type(cell).__name__}: compiled steps need torchseq's native module and torch's "
                          "AOTInductor package loader; the TorchScript loops run", stacklevel=5)
            return None
        named = dict(cell.named_parameters())
        pre = first_projection(cell, x)
        examples = [pre, *state, *(named[name].detach() for name in graphs.parameter_names)]
        try:
            _compiled[key] = CompiledSteps(graphs.forward_graph, graphs.backward_graph, examples,
                                           graphs.state_count)
            logger.info("%s: step compiled (or loaded from %s) in %.1f s for batch %d, %s, %d thread(s)",
                        type(cell).__name__, compiled_steps.cache_dir(), _compiled[key].seconds, x.shape[0],
                        x.dtype, torch.get_num_threads())
        except Exception as reason:  # a failed compile keeps the TorchScript loops
            warnings.warn(f"{type(cell).__name__}: compiling its step failed, the TorchScript loops run: "
                          f"{type(reason).__name__}: {reason}", stacklevel=5)
    return _compiled[key]


def run_generic(
    graphs: StepGraphs, cell: RecurrentCell, x: Tensor, state: State, lengths: Tensor | None
) -> tuple[Tensor, State]:
    """x (T, B, I), the initial state → outputs (T, B, H_out) and the final state, as ``Unroll`` returns."""
    pre = cell.input_projection(x)                                           # (T, B, G), under autograd
    named = dict(cell.named_parameters())
    parameters = [named[name] for name in graphs.parameter_names]
    initial = flat_state(state)
    if needs_graph(pre, *initial, *parameters):
        sequences = GenericRecurrence.apply(graphs, cell, pre, len(initial), *initial, *parameters)
    elif graphs.compiled is not None:
        with torch.no_grad():
            sequences, _ = graphs.compiled.forward(pre, initial, parameters, False)
    else:
        with torch.no_grad(), plain_interpreter(), one_thread_if(is_narrow(initial)):
            sequences, _ = graphs.forward(pre, initial, parameters, False)
    finals = tuple(last_valid(sequence, lengths) for sequence in sequences)
    return cell.hidden(tuple(sequences)), finals if len(finals) > 1 else finals[0]


#: TorchScript loops whose state has at most this many elements per step (B·H; MNIST rows: 64 · 128) run
#: on one thread (compiled steps run on torch's threads: their fused loops gain from two). A traced
#: step is a dozen or more small ATen ops; a second thread waits at each of them.
#: LayerNorm LSTM, forward+backward, AMD EPYC: MNIST rows 20.5 ms on one thread against 22.0 ms on two,
#: UCR (16 · 64) 19.3 against 30.2 ms; at B 64, H 512 two threads win (690 against 1,018 ms).
NARROW_STATE = 1 << 14


def is_narrow(state: list[Tensor]) -> bool:
    return sum(part.numel() for part in state) <= NARROW_STATE


class GenericRecurrence(torch.autograd.Function):
    """(graphs, cell, pre (T, B, G), state count, *initial state, *parameters) → each state part over
    time. A backward that is itself recorded (``create_graph=True``, for a double backward) steps
    ``recur`` under autograd instead of the graphs, so second derivatives are exact too."""

    @staticmethod
    def forward(ctx, graphs, cell, pre, state_count, *rest):
        initial, parameters = list(rest[:state_count]), list(rest[state_count:])
        if graphs.compiled is not None:
            sequences, saved = graphs.compiled.forward(pre, initial, parameters, True)
        else:
            with plain_interpreter(), one_thread_if(is_narrow(initial)):
                sequences, saved = graphs.forward(pre, initial, parameters, True)
        ctx.graphs, ctx.cell, ctx.saved_steps, ctx.state_count = graphs, cell, saved, state_count
        ctx.save_for_backward(pre, *initial, *parameters)
        return tuple(sequences)

    @staticmethod
    def backward(ctx, *d_sequences):
        pre, *rest = ctx.saved_tensors
        initial, parameters = rest[: ctx.state_count], rest[ctx.state_count :]
        if torch.is_grad_enabled():
            gradients = recorded_backward(ctx.cell, ctx.graphs.parameter_names, pre, initial, parameters,
                                          d_sequences)
            return None, None, *gradients[:1], None, *gradients[1:]
        if ctx.graphs.compiled is not None:
            d_pre, d_initial, d_parameters = ctx.graphs.compiled.backward(ctx.saved_steps, d_sequences,
                                                                          parameters)
            return None, None, d_pre, None, *d_initial, *d_parameters
        with plain_interpreter(), one_thread_if(is_narrow(initial)):
            steps = ctx.saved_steps
            d_pre, d_initial, d_parameters = ctx.graphs.backward(steps, list(d_sequences), parameters)
        return None, None, d_pre, None, *d_initial, *d_parameters


def recorded_backward(
    cell: RecurrentCell, names: tuple[str, ...], pre: Tensor, initial: list[Tensor], parameters: list[Tensor],
    d_sequences: tuple[Tensor, ...],
) -> list[Tensor | None]:
    """The gradients of pre, the initial state and the parameters, by stepping ``recur`` on exactly these
    tensors under autograd, with the graph of the gradients kept (``create_graph``)."""
    recur = _Recur(cell)
    values = {f"cell.{name}": parameter for name, parameter in zip(names, parameters, strict=True)}
    state, parts = list(initial), [[] for _ in initial]
    for pre_t in pre.unbind(0):
        state = list(torch.func.functional_call(recur, values, (pre_t, *state)))
        for part, value in zip(parts, state, strict=True):
            part.append(value)
    inputs = [pre, *initial, *parameters]
    wanted = [i for i in inputs if i.requires_grad]
    gradients = iter(torch.autograd.grad(
        [torch.stack(part) for part in parts], wanted, d_sequences, create_graph=True, allow_unused=True
    ))
    return [next(gradients) if i.requires_grad else None for i in inputs]


def run_parallel_scan(
    cell: RecurrentCell, x: Tensor, state: Tensor, lengths: Tensor | None
) -> tuple[Tensor, Tensor]:
    """A cell with a ``parallel_scan`` (minGRU, minLSTM): every h_t at once, differentiated by autograd."""
    outputs = cell.parallel_scan(cell.input_projection(x), state)          # (T, B, H)
    return outputs, last_valid(outputs, lengths)
