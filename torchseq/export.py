"""Export a trained model for serving: ONNX (onnxruntime and other runtimes) or torch.export's
ExportedProgram, with the batch size and the sequence length left dynamic.

::

    import torchseq.export
    torchseq.export.onnx(model, (x, lengths), "model.onnx")            # x (B, T, F), lengths (B,)
    program = torchseq.export.exported_program(model, x, "model.pt2")

What each recurrent layer becomes (one graph node per layer and direction):

- a built-in cell (``LSTMCell``, ``GRUCell``, ``RNNCell`` themselves, not subclasses) → the runtime's fused
  op: ONNX ``LSTM`` / ``GRU`` / ``RNN`` with ``sequence_lens`` for ``lengths``. ``GRU(reset_after=True)``
  is ``GRU`` with ``linear_before_reset=1`` and ``reset_after=False`` the same op with
  ``linear_before_reset=0`` (ONNX's default, the original formula). In an ExportedProgram the same
  layer is one ``torchseq_export`` operator that runs torchseq's kernel (loading needs
  ``import torchseq.export``).
- any other cell, an LSTM with ``proj_size`` (no ONNX op has a projection), or every cell with
  ``loop=True`` → the cell's own ``recur`` inside torch's ``scan`` operator: ONNX ``Scan`` / the ``scan``
  higher-order op of torch.export. The loop is not unrolled, so T stays dynamic.

Layers the export cannot serve are refused with :class:`ExportError` naming the reason (``stateful``
layers, whose state lives between calls).
"""

from __future__ import annotations

import contextlib
import copy
import functools
import os
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn
from torch.func import functional_call

from torchseq.cells import GRUCell, LSTMCell, RecurrentCell, RNNCell
from torchseq.cells.base import State
from torchseq.recurrent import RecurrentLayers
from torchseq.recurrent.unroll import Unroll, keep_where, reverse_padded, step_mask

FORMATS = ("onnx", "exported-program")
FUSED_CELLS: tuple[type[RecurrentCell], ...] = (LSTMCell, GRUCell, RNNCell)


class ExportError(ValueError):
    """A model that cannot be exported; the message names the reason."""


# -- one layer and direction of a built-in cell as one operator ----------------------------------
# torch.export keeps a custom operator as one node (its fake implementation gives the shapes), and the
# ONNX exporter translates that node into the runtime's fused op (see _onnx_translations).

def _reference_unroll(kind: str, input_size: int, hidden_size: int, reverse: bool, option: Any) -> Unroll:
    """A weightless (meta) Unroll of the cell ``kind``, run with real weights by functional_call (one a call:
    functional_call swaps the weights in place, so a shared one would race between serving threads)."""
    cell_class = {"lstm": LSTMCell, "gru": GRUCell, "rnn": RNNCell}[kind]
    options = {"gru": {"reset_after": option}, "rnn": {"nonlinearity": option}}.get(kind, {})
    return Unroll(cell_class(input_size, hidden_size, device="meta", **options), reverse=reverse)


def _run_direction(
    kind: str, option: Any, x: Tensor, state: State, lengths: Tensor | None, weights: Sequence[Tensor],
    reverse: bool,
) -> tuple[Tensor, State]:
    w_ih, w_hh, b_ih, b_hh = weights
    unroll = _reference_unroll(kind, w_ih.shape[1], w_hh.shape[1], reverse, option)
    parameters = {"cell.weight_ih": w_ih, "cell.weight_hh": w_hh, "cell.bias_ih": b_ih, "cell.bias_hh": b_hh}
    with torch.no_grad():
        output, (final,) = functional_call(unroll, parameters, (x, [state], lengths))
    return output, final


@torch.library.custom_op("torchseq_export::lstm", mutates_args=())
def lstm_direction(
    x: Tensor, h0: Tensor, c0: Tensor, lengths: Tensor | None, weight_ih: Tensor, weight_hh: Tensor,
    bias_ih: Tensor, bias_hh: Tensor, reverse: bool,
) -> tuple[Tensor, Tensor, Tensor]:
    """One LSTM direction: x (T, B, I), h0 and c0 (B, H), lengths (B,) or None → output (T, B, H), h, c."""
    output, (h, c) = _run_direction(
        "lstm", None, x, (h0, c0), lengths, (weight_ih, weight_hh, bias_ih, bias_hh), reverse
    )
    return output, h, c


@torch.library.custom_op("torchseq_export::gru", mutates_args=())
def gru_direction(
    x: Tensor, h0: Tensor, lengths: Tensor | None, weight_ih: Tensor, weight_hh: Tensor, bias_ih: Tensor,
    bias_hh: Tensor, reverse: bool, reset_after: bool,
) -> tuple[Tensor, Tensor]:
    """One GRU direction: x (T, B, I), h0 (B, H), lengths (B,) or None → output (T, B, H), h_n."""
    return _run_direction(
        "gru", reset_after, x, h0, lengths, (weight_ih, weight_hh, bias_ih, bias_hh), reverse
    )


@torch.library.custom_op("torchseq_export::rnn", mutates_args=())
def rnn_direction(
    x: Tensor, h0: Tensor, lengths: Tensor | None, weight_ih: Tensor, weight_hh: Tensor, bias_ih: Tensor,
    bias_hh: Tensor, reverse: bool, nonlinearity: str,
) -> tuple[Tensor, Tensor]:
    """One Elman RNN direction: x (T, B, I), h0 (B, H), lengths (B,) or None → output (T, B, H), h_n."""
    return _run_direction(
        "rnn", nonlinearity, x, h0, lengths, (weight_ih, weight_hh, bias_ih, bias_hh), reverse
    )


def _output_like(x: Tensor, h0: Tensor) -> Tensor:
    return x.new_empty(x.shape[0], x.shape[1], h0.shape[-1])


@lstm_direction.register_fake
def _(x, h0, c0, lengths, weight_ih, weight_hh, bias_ih, bias_hh, reverse):
    return _output_like(x, h0), torch.empty_like(h0), torch.empty_like(c0)


@gru_direction.register_fake
def _(x, h0, lengths, weight_ih, weight_hh, bias_ih, bias_hh, reverse, reset_after):
    return _output_like(x, h0), torch.empty_like(h0)


@rnn_direction.register_fake
def _(x, h0, lengths, weight_ih, weight_hh, bias_ih, bias_hh, reverse, nonlinearity):
    return _output_like(x, h0), torch.empty_like(h0)


# -- their ONNX translations -------------------------------------------------------------------
# torch orders the gates i f g o (LSTM) and r z n (GRU); ONNX orders them i o f c and z r h.
LSTM_GATES_IN_ONNX_ORDER = (0, 3, 1, 2)
GRU_GATES_IN_ONNX_ORDER = (1, 0, 2)


@functools.lru_cache(maxsize=1)
def _onnx_translations() -> dict:
    """{torchseq_export operator: the function building its ONNX op}: torch.onnx's translation table."""
    from onnx import TensorProto
    from onnxscript import opset18 as op

    def ints(*values: int):
        return op.Constant(value_ints=list(values))

    def gates(tensor, order: Sequence[int], hidden_size: int):
        """The (G·H, ·) weight or (G·H,) bias with its gates in ``order``, and a leading direction axis."""
        size = hidden_size
        blocks = [op.Slice(tensor, ints(k * size), ints((k + 1) * size), ints(0)) for k in order]
        return op.Unsqueeze(op.Concat(*blocks, axis=0), ints(0))

    def onnx_arguments(x, h0, lengths, weights, order, reverse):
        w_ih, w_hh, b_ih, b_hh = weights
        hidden_size = h0.shape[-1]
        W, R = gates(w_ih, order, hidden_size), gates(w_hh, order, hidden_size)
        B = op.Concat(gates(b_ih, order, hidden_size), gates(b_hh, order, hidden_size), axis=1)
        sequence_lens = None if lengths is None else op.Cast(lengths, to=TensorProto.INT32)
        attributes = {"hidden_size": hidden_size, "direction": "reverse" if reverse else "forward"}
        return (x, W, R, B, sequence_lens, op.Unsqueeze(h0, ints(0))), attributes

    def lstm(x, h0, c0, lengths, weight_ih, weight_hh, bias_ih, bias_hh, reverse):
        inputs, attributes = onnx_arguments(
            x, h0, lengths, (weight_ih, weight_hh, bias_ih, bias_hh), LSTM_GATES_IN_ONNX_ORDER, reverse
        )
        y, h, c = op.LSTM(*inputs, op.Unsqueeze(c0, ints(0)), **attributes)
        return op.Squeeze(y, ints(1)), op.Squeeze(h, ints(0)), op.Squeeze(c, ints(0))

    def gru(x, h0, lengths, weight_ih, weight_hh, bias_ih, bias_hh, reverse, reset_after):
        inputs, attributes = onnx_arguments(
            x, h0, lengths, (weight_ih, weight_hh, bias_ih, bias_hh), GRU_GATES_IN_ONNX_ORDER, reverse
        )
        y, h = op.GRU(*inputs, linear_before_reset=int(reset_after), **attributes)
        return op.Squeeze(y, ints(1)), op.Squeeze(h, ints(0))

    def rnn(x, h0, lengths, weight_ih, weight_hh, bias_ih, bias_hh, reverse, nonlinearity):
        inputs, attributes = onnx_arguments(
            x, h0, lengths, (weight_ih, weight_hh, bias_ih, bias_hh), (0,), reverse
        )
        y, h = op.RNN(*inputs, activations=[nonlinearity.capitalize()], **attributes)
        return op.Squeeze(y, ints(1)), op.Squeeze(h, ints(0))

    return {
        torch.ops.torchseq_export.lstm.default: lstm,
        torch.ops.torchseq_export.gru.default: gru,
        torch.ops.torchseq_export.rnn.default: rnn,
    }


# -- the two ways a direction is exported ----------------------------------------------------------
def fused_unsupported_reason(cell: RecurrentCell) -> str | None:
    """Why ``cell`` has no runtime fused op (None when ONNX LSTM / GRU / RNN computes it)."""
    if type(cell) not in FUSED_CELLS:
        return f"{type(cell).__name__} is not a built-in cell (its own recur is exported)"
    if getattr(cell, "weight_hr", None) is not None:
        return "LSTM with proj_size: ONNX LSTM has no projection"
    return None


class FusedUnroll(Unroll):
    """An :class:`Unroll` of a built-in cell traced as one ``torchseq_export`` operator."""

    def forward(
        self, x: Tensor, states: Sequence[State], lengths: Tensor | None = None
    ) -> tuple[Tensor, list[State]]:
        (state,) = states
        cell = self.cell
        # The runtime ops always take both biases: a missing one adds zeros (bias=False, Keras' one bias).
        zeros = cell.weight_ih.new_zeros(cell.weight_ih.shape[0])
        weights = (
            cell.weight_ih, cell.weight_hh,
            zeros if cell.bias_ih is None else cell.bias_ih, zeros if cell.bias_hh is None else cell.bias_hh,
        )
        if isinstance(cell, LSTMCell):
            output, h, c = lstm_direction(x, *state, lengths, *weights, self.reverse)
            return output, [(h, c)]
        if isinstance(cell, GRUCell):
            output, h = gru_direction(x, state, lengths, *weights, self.reverse, cell.reset_after)
        else:
            output, h = rnn_direction(x, state, lengths, *weights, self.reverse, cell.nonlinearity)
        return output, [h]


class _Recur(nn.Module):
    """``cell.recur`` as a module's forward, for functional_call."""

    def __init__(self, cell: RecurrentCell) -> None:
        super().__init__()
        self.cell = cell

    def forward(self, projected_input: Tensor, state: State) -> State:
        return self.cell.recur(projected_input, state)


class ScanUnroll(Unroll):
    """An :class:`Unroll` whose loop over time is torch's ``scan`` operator: exported as a loop (ONNX
    ``Scan``) with any number of steps, running the cell's own ``recur``."""

    def forward(
        self, x: Tensor, states: Sequence[State], lengths: Tensor | None = None
    ) -> tuple[Tensor, list[State]]:
        from torch._higher_order_ops.scan import scan  # torch's (still private) home of the operator

        (state,) = states
        cell = self.cell
        if self.reverse:
            x = reverse_padded(x, lengths)
        projected = cell.input_projection(x)                                     # (T, B, G·H)
        mask = None if lengths is None else step_mask(lengths, x.shape[0], x.device)  # (T, B, 1)

        recur = _Recur(cell)
        # The loop body reads copies of the parameters: scan refuses a body whose inputs alias one
        # another, as views of one parameter would (``p_i, p_f, p_o = self.weight_peephole``).
        parameters = dict(recur.named_parameters())

        def step(previous: State, inputs: tuple[Tensor, ...]) -> tuple[State, Tensor]:
            copies = {name: parameter.clone() for name, parameter in parameters.items()}
            new = functional_call(recur, copies, (inputs[0], previous))
            new = new if mask is None else keep_where(inputs[1], new, previous)
            return new, cell.hidden(new).clone()  # scan's outputs may not alias its carried state

        final, output = scan(step, state, (projected,) if mask is None else (projected, mask))
        if mask is not None:
            output = output.masked_fill(~mask, 0.0)
        if self.reverse:
            output = reverse_padded(output, lengths)
        return output, [final]


@dataclass(frozen=True)
class LayerPlan:
    """How one layer-direction is exported: ``path`` names it in the model, ``as_`` says what it becomes."""

    path: str
    cell: str
    as_: str
    reason: str | None = None


def plan(module: nn.Module, *, loop: bool = False) -> list[LayerPlan]:
    """What every recurrent layer and direction of ``module`` becomes on export (nothing is changed)."""
    plans = []
    for path, unroll in module.named_modules():
        if not isinstance(unroll, Unroll):
            continue
        cell = unroll.cell
        reason = "loop=True" if loop else fused_unsupported_reason(cell)
        if reason is None:
            kind = {LSTMCell: "LSTM", GRUCell: "GRU", RNNCell: "RNN"}[type(cell)]
            detail = f"linear_before_reset={int(cell.reset_after)}" if kind == "GRU" else \
                f"activation={cell.nonlinearity}" if kind == "RNN" else ""
            plans.append(LayerPlan(path, type(cell).__name__, f"fused {kind} {detail}".strip()))
        else:
            plans.append(LayerPlan(path, type(cell).__name__, "loop (scan)", reason))
    return plans


def serving_copy(module: nn.Module, *, loop: bool = False) -> nn.Module:
    """An eval-mode copy of ``module`` whose recurrent layers trace as exportable operators.

    ``module`` itself is left as it is. Raises :class:`ExportError` for layers that cannot be served.
    """
    served = copy.deepcopy(module).eval().requires_grad_(False)  # serving needs no graph for gradients
    for name, front in served.named_modules():
        if isinstance(front, RecurrentLayers):
            if front.stateful:
                raise ExportError(
                    f"{name or type(front).__name__}: stateful=True carries the final state into the next "
                    "call, which an exported graph cannot keep; set stateful=False to export a model that "
                    "starts every call from a zero state"
                )
            front.impl = "custom"  # the layer stack, whose Unrolls are replaced below
    for parent in list(served.modules()):
        for child_name, child in list(parent.named_children()):
            if type(child) is Unroll:
                fused = not loop and fused_unsupported_reason(child.cell) is None
                replacement = (FusedUnroll if fused else ScanUnroll)(child.cell, reverse=child.reverse)
                setattr(parent, child_name, replacement)
    return served


# -- inputs, dynamic shapes and the traced program -----------------------------------------------
class _Serving(nn.Module):
    """``module(x)`` or ``module(x, lengths=lengths)``: one signature for fronts, models and tasks."""

    def __init__(self, module: nn.Module) -> None:
        super().__init__()
        self.module = module

    def forward(self, x: Tensor, lengths: Tensor | None = None) -> Any:
        return self.module(x) if lengths is None else self.module(x, lengths=lengths)


def _example_arguments(example_input: Tensor | Sequence[Tensor]) -> tuple[Tensor, ...]:
    arguments = (example_input,) if isinstance(example_input, Tensor) else tuple(example_input)
    if not 1 <= len(arguments) <= 2 or not all(isinstance(a, Tensor) for a in arguments):
        raise ExportError(
            "example_input: expected a tensor x or a tuple (x, lengths) of tensors, got "
            f"{type(example_input).__name__} of {[type(a).__name__ for a in arguments]}"
        )
    return arguments


def _time_and_batch_axes(module: nn.Module, batch_first: bool | None) -> tuple[int, int]:
    """(time axis, batch axis) of x: the front's own layout, batch-first for torchseq's models."""
    if batch_first is None:
        batch_first = module.batch_first if isinstance(module, RecurrentLayers) else True
    return (1, 0) if batch_first else (0, 1)


def _dynamic_shapes(
    arguments: tuple[Tensor, ...], time_axis: int | None, batch_axis: int
) -> tuple[dict, ...]:
    x = arguments[0]
    if x.dim() != 3:  # not a sequence (images, noise): only the batch size is dynamic
        time_axis, batch_axis = None, 0
    # torch.export treats sizes 0 and 1 of an example as constants, so they cannot become dynamic.
    for axis, name in ((batch_axis, "batch size"), (time_axis, "sequence length")):
        if axis is None:
            continue
        if x.shape[axis] < 2:
            raise ExportError(f"example_input: a dynamic {name} needs an example with at least 2 (axis "
                              f"{axis} of x), got shape {tuple(x.shape)}")
    batch, time = torch.export.Dim("batch"), torch.export.Dim("time")
    shapes: tuple[dict, ...] = ({batch_axis: batch} | ({} if time_axis is None else {time_axis: time}),)
    if len(arguments) == 2:
        shapes += ({0: batch},)
    return shapes


def _trace(
    module: nn.Module, example_input: Tensor | Sequence[Tensor], *, dynamic: bool, loop: bool,
    batch_first: bool | None,
) -> tuple[nn.Module, tuple[Tensor, ...], tuple[dict, ...] | None]:
    arguments = _example_arguments(example_input)
    time_axis, batch_axis = _time_and_batch_axes(module, batch_first)
    shapes = _dynamic_shapes(arguments, time_axis, batch_axis) if dynamic else None
    return _Serving(serving_copy(module, loop=loop)).eval(), arguments, shapes


@contextlib.contextmanager
def _quiet_tracer() -> Iterator[None]:
    """Silence two tracer notices that are expected here and ask nothing of the user."""
    with warnings.catch_warnings():
        # torch's snapshot of module attributes reads the parameters swapped in during tracing as new.
        warnings.filterwarnings("ignore", message=".*assigned during export.*")
        # lengths share x's batch dimension, so its own name for that axis is dropped.
        warnings.filterwarnings("ignore", message=".*shares the same shape constraints with another axis.*")
        yield


def _explain(error: Exception, loop: bool) -> ExportError:
    """The export failure in the user's terms: most often a loop over T that fixed T to the example's."""
    text = str(error)
    if "specialized it to be a constant" in text or "Constraints violated" in text:
        return ExportError(
            "the model's code fixes a dimension marked dynamic to the example's size (typically a Python "
            "loop over time outside torchseq's layers, or a shape used as a Python number); the model "
            f"cannot be exported with a dynamic batch size and sequence length, or export with "
            f"dynamic=False to fix both to the example's.\ntorch.export said: {text.splitlines()[0]}"
        )
    hint = "" if loop else " (loop=True exports every cell as its formula instead)"
    return ExportError(f"the model cannot be traced for export{hint}: {type(error).__name__}: {text}")


def exported_program(
    module: nn.Module,
    example_input: Tensor | Sequence[Tensor],
    path: str | os.PathLike | None = None,
    *,
    dynamic: bool = True,
    loop: bool = False,
    batch_first: bool | None = None,
) -> torch.export.ExportedProgram:
    """``module`` as a :class:`torch.export.ExportedProgram` (saved with ``torch.export.save`` to ``path``).

    ``example_input`` is ``x`` or ``(x, lengths)``; with ``dynamic`` the batch size and the sequence length
    of x (and lengths' batch size) are symbolic: the program serves any. ``batch_first`` says x's layout
    (default: the layer's own for a torchseq RNN/LSTM/GRU, (B, T, F) for anything else). Call the result's
    ``.module()(x, lengths)``.
    """
    served, arguments, shapes = _trace(module, example_input, dynamic=dynamic, loop=loop,
                                       batch_first=batch_first)
    try:
        with _quiet_tracer():
            program = torch.export.export(served, arguments, dynamic_shapes=shapes)
    except Exception as error:
        raise _explain(error, loop) from error
    if path is not None:
        torch.export.save(program, os.fspath(path))
    return program


def onnx(
    module: nn.Module,
    example_input: Tensor | Sequence[Tensor],
    path: str | os.PathLike,
    *,
    dynamic: bool = True,
    loop: bool = False,
    batch_first: bool | None = None,
    input_names: Sequence[str] | None = None,
    output_names: Sequence[str] | None = None,
    opset_version: int | None = None,
) -> Path:
    """Write ``module`` as an ONNX model to ``path``; returns the path.

    Inputs are named ``x`` and ``lengths`` (``input_names`` to change), both with a dynamic batch size and x
    with a dynamic sequence length when ``dynamic``. See :func:`exported_program` for the arguments and the
    module docstring for what each recurrent layer becomes. Needs the ``export`` extra
    (``pip install torchseq[export]``).
    """
    try:
        import onnxscript  # noqa: F401  (the ONNX exporter's translations are written in it)
    except ImportError as error:
        raise ExportError("ONNX export needs onnx and onnxscript: pip install 'torchseq[export]'") from error

    served, arguments, shapes = _trace(module, example_input, dynamic=dynamic, loop=loop,
                                       batch_first=batch_first)
    names = list(input_names or ["x", "lengths"][: len(arguments)])
    try:
        with _quiet_tracer():
            program = torch.onnx.export(
                served, arguments, dynamic_shapes=shapes, input_names=names, output_names=output_names,
                opset_version=opset_version, custom_translation_table=_onnx_translations(), dynamo=True,
                verbose=False,
            )
    except Exception as error:
        raise _explain(error, loop) from error
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    program.save(os.fspath(path), external_data=False)
    return path

