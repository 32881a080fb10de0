"""The one seam with ``torch.nn``: its parameter names, its modules and its fused kernels.

- Names: layer 1's reverse ``weight_ih`` is ``weight_ih_l1_reverse`` (:func:`torch_parameter_slots`).
- The fronts hold their parameters under those names (:func:`adopt_parameters`) and hand each cell the
  tensor ``getattr(front, name)`` gives before every call (:func:`bind_parameters`), so that whatever
  ``torch.nn``'s utilities put there (a weight-normed, pruned or dropped weight) is what runs.
- A cell with one bias (``recurrent_bias=False``, as Keras) meets ``torch.nn`` with a zero recurrent
  bias (:func:`torch_tensors`), both for the fused kernel and for :func:`to_torch`.
- The fused kernel runs through a parameter-less *template* module (meta device, no memory) called with
  ``torch.func.functional_call`` on our tensors, so gradients land on our parameters (:func:`run_fused`).
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Sequence
from typing import Any

import torch
from torch import Tensor, nn
from torch.func import functional_call
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from torchseq.cells import GRUCell, LSTMCell, RecurrentCell, RNNCell

PARAMETER_NAMES = ("weight_ih", "weight_hh", "bias_ih", "bias_hh", "weight_hr")
#: The constructor options every ``torch.nn.RNNBase`` has.
TORCH_OPTIONS = ("input_size", "hidden_size", "num_layers", "bias", "batch_first", "dropout", "bidirectional")
#: Cell type → its ``torch.nn`` layer and the cell options that layer shares. Exact types: a subclass
#: may compute other formulas.
TORCH_COUNTERPARTS: dict[type[RecurrentCell], tuple[type[nn.RNNBase], tuple[str, ...]]] = {
    RNNCell: (nn.RNN, ("nonlinearity",)),
    LSTMCell: (nn.LSTM, ("proj_size",)),
    GRUCell: (nn.GRU, ()),
}

#: (torch.nn name, the cell holding that parameter, its name in the cell)
Slot = tuple[str, RecurrentCell, str]


# -- names -----------------------------------------------------------------------------------------
def torch_parameter_name(name: str, layer: int, reverse: bool) -> str:
    """``weight_ih`` of layer 1's backward cell → ``weight_ih_l1_reverse``."""
    return f"{name}_l{layer}{'_reverse' if reverse else ''}"


def cell_parameter_names(cell: RecurrentCell) -> list[str]:
    """The parameters ``cell`` has, in torch.nn's order (w_ih, w_hh, b_ih, b_hh, w_hr): biases and the
    projection may be absent."""
    return [name for name in PARAMETER_NAMES if getattr(cell, name, None) is not None]


def torch_parameter_slots(cells: Sequence[RecurrentCell], directions: int) -> list[Slot]:
    """(torch.nn name, cell, name in the cell) for every parameter of ``cells`` (in torch.nn's order:
    layer-major, forward before reverse), in the order ``torch.nn`` registers them."""
    slots = []
    for index, cell in enumerate(cells):
        layer, direction = divmod(index, directions)
        slots += [(torch_parameter_name(name, layer, direction == 1), cell, name)
                  for name in cell_parameter_names(cell)]
    return slots


def named_torch_parameters(cells: Sequence[RecurrentCell], directions: int) -> list[tuple[str, str, Tensor]]:
    """(torch.nn name, the cell's own name, tensor) for every parameter of ``cells``."""
    return [(torch_name, own, getattr(cell, own)) for torch_name, cell, own in
            torch_parameter_slots(cells, directions)]


# -- the fronts' parameters under torch.nn's names --------------------------------------------------
def adopt_parameters(module: nn.Module, cells: Sequence[RecurrentCell], directions: int) -> list[Slot]:
    """Move every parameter of ``cells`` to ``module`` under its ``torch.nn`` name, in torch.nn's
    order, and bind the cells to them; returns the slots for :func:`bind_parameters`.

    Afterwards the cells register no parameters of their own: ``named_parameters()`` and
    ``state_dict()`` of ``module`` are those of the ``torch.nn`` module built alike.
    """
    slots = torch_parameter_slots(cells, directions)
    for torch_name, cell, own in slots:
        module.register_parameter(torch_name, cell._parameters.pop(own))
    bind_parameters(module, slots)
    return slots


def bind_parameters(module: nn.Module, slots: Iterable[Slot]) -> None:
    """Give each cell, as a plain attribute, the tensor ``module`` now has under the torch.nn name: its
    parameter, or what a parametrization, pruning or weight drop computes or put there."""
    for torch_name, cell, own in slots:
        cell.__dict__[own] = getattr(module, torch_name)


def check_replacement(module: nn.Module, name: str, value: Any) -> None:
    """A registered parameter is replaced by a parameter of its shape (e.g. ``lstm.weight_hh_l0 = …``)."""
    current = module._parameters.get(name)
    if current is None or (isinstance(value, nn.Parameter) and value.shape == current.shape):
        return
    given = f"{type(value).__name__} of shape {tuple(value.shape)}" if isinstance(value, Tensor) \
        else type(value).__name__
    raise TypeError(f"{name}: expected an nn.Parameter of shape {tuple(current.shape)}, got {given}")


def refuse_misfit_values(
    module: nn.Module, state_dict: dict, prefix: str, local_metadata: Any, strict: bool,
    missing_keys: list[str], unexpected_keys: list[str], error_msgs: list[str],
) -> None:
    """A ``load_state_dict`` pre-hook: a checkpoint value that is not a tensor of the parameter's shape
    is reported under its key with what was expected and given, and the parameter is left alone."""
    for name, parameter in module._parameters.items():
        key = prefix + name
        if parameter is None or key not in state_dict:
            continue
        value = state_dict[key]
        if not isinstance(value, Tensor):
            error_msgs.append(f"{key}: expected a torch.Tensor, got {type(value).__name__}")
        elif value.shape != parameter.shape:
            error_msgs.append(
                f"size mismatch for {key}: expected shape {tuple(parameter.shape)} (the current model's), "
                f"got {tuple(value.shape)} from the checkpoint"
            )
        else:
            continue
        state_dict[key] = parameter  # loads onto itself: torch reports nothing more under this key


# -- torch.nn's modules ------------------------------------------------------------------------------
def torch_counterpart(cell_class: type[RecurrentCell]) -> type[nn.RNNBase] | None:
    counterpart = TORCH_COUNTERPARTS.get(cell_class)
    return None if counterpart is None else counterpart[0]


def shared_cell_options(cell_class: type[RecurrentCell]) -> tuple[str, ...]:
    """The cell options ``torch.nn``'s counterpart of ``cell_class`` also has (``proj_size`` …)."""
    counterpart = TORCH_COUNTERPARTS.get(cell_class)
    return () if counterpart is None else counterpart[1]


def fused_unsupported_reason(cell_class: type[RecurrentCell], cell_options: dict[str, Any]) -> str | None:
    """Why no fused kernel computes layers of ``cell_class`` with ``cell_options`` (None when one does)."""
    if cell_class not in TORCH_COUNTERPARTS:
        return f"{cell_class.__name__} has no torch.nn counterpart with a fused kernel; use impl='custom'"
    if cell_class is GRUCell and not cell_options.get("reset_after", True):
        return ("GRU(reset_after=False), the original Cho et al. formula, has no fused kernel "
                "(cuDNN and torch.nn.GRU compute reset_after=True); use impl='custom'")
    return None


def torch_tensors(slots: Iterable[Slot]) -> dict[str, Tensor]:
    """torch.nn's name → the tensor each cell computes with; a cell with one bias per gate
    (``recurrent_bias=False``) gets a zero ``bias_hh``, the form torch.nn's modules and kernels take."""
    tensors = {torch_name: getattr(cell, own) for torch_name, cell, own in slots}
    for name, value in list(tensors.items()):
        recurrent = name.replace("bias_ih", "bias_hh")
        if name.startswith("bias_ih") and recurrent not in tensors:
            tensors[recurrent] = torch.zeros_like(value)
    return tensors


def to_torch(
    torch_class: type[nn.RNNBase], config: dict[str, Any], tensors: dict[str, Tensor], training: bool
) -> nn.RNNBase:
    """A ``torch.nn`` module built with ``config`` holding a copy of ``tensors``."""
    like = next(iter(tensors.values()))
    module = torch_class(**config, device=like.device, dtype=like.dtype)
    module.load_state_dict({name: value.detach().clone() for name, value in tensors.items()})
    return module.train(training)


def from_torch(cls: type[nn.Module], module: nn.RNNBase, **options: Any) -> Any:
    """A ``cls`` (a front with ``torch_class`` and ``cell_class``) with ``module``'s configuration,
    parameters, device and dtype, and torchseq's ``options``."""
    if not isinstance(module, cls.torch_class):
        raise TypeError(f"module: expected {cls.torch_class.__name__}, got {type(module).__name__}")
    config = {name: getattr(module, name) for name in (*TORCH_OPTIONS, *shared_cell_options(cls.cell_class))}
    parameter = next(module.parameters())
    ours = cls(**config, **options, device=parameter.device, dtype=parameter.dtype)
    try:
        ours.load_state_dict(module.state_dict())
    except RuntimeError as error:  # parameters replaced after construction, or a subclass adding some
        raise ValueError(f"module: its parameters do not fit its own configuration {config}: {error}") \
            from error
    return ours


# -- the fused kernel ------------------------------------------------------------------------------
_templates = threading.local()


def template(torch_class: type[nn.RNNBase], config: dict[str, Any], training: bool) -> nn.RNNBase:
    """A parameter-less ``torch_class(**config)`` on the meta device in the given mode, one per thread
    and configuration: ``functional_call`` swaps tensors into it for the length of a call."""
    store = _templates.__dict__.setdefault("store", {})
    key = (torch_class, tuple(sorted(config.items())), training)
    if key not in store:
        store[key] = torch_class(**config, device="meta").train(training)
    return store[key]


def run_fused(
    module: nn.RNNBase,
    tensors: dict[str, Tensor],
    x: Tensor,
    hx: Tensor | tuple[Tensor, ...],
    lengths: Tensor | None,
) -> tuple[Tensor, Tensor | tuple[Tensor, Tensor]]:
    """Fused forward of x (T, B, I) with lengths (B,) or None; returns output (T, B, ·) and final states."""
    steps = x.shape[0]
    lengths = None if x.shape[1] == 0 else lengths  # no sequence to pack: the empty batch as it is
    sequence = x if lengths is None else pack_padded_sequence(x, lengths, enforce_sorted=False)
    output, final = functional_call(module, tensors, (sequence, hx))
    if lengths is not None:
        output, _ = pad_packed_sequence(output, total_length=steps)
    return output, final
