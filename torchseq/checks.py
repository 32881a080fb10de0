"""Input validation shared by every front: one place, clear messages.

Every error names the argument, what was expected and what was given, so that a wrong call fails at
our door rather than deep inside a kernel, or worse, silently broadcasts.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import Tensor


class InputError(ValueError, RuntimeError):
    """A tensor that does not fit the module (shape, size, device, lengths). A ValueError, and a
    RuntimeError as ``torch.nn`` raises for the same mistakes, so code written for either catches it."""


class DtypeError(TypeError, ValueError):
    """A tensor of the wrong dtype. A TypeError, and a ValueError as ``torch.nn`` raises for it."""


class IntOptionError(ValueError, TypeError):
    """An option that must be an int in a range is not. A ValueError, and a TypeError as ``torch.nn``
    raises for a size that is not an int."""


def check_choice(name: str, value: Any, allowed: Sequence[Any]) -> Any:
    if value not in allowed:
        raise ValueError(f"{name}: expected one of {tuple(allowed)}, got {value!r}")
    return value


def check_positive_int(name: str, value: Any, minimum: int = 1, *, optional: bool = False) -> Any:
    """``value`` must be an int ≥ ``minimum`` (a bool is not an int here), or None when ``optional``."""
    if optional and value is None:
        return value
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        expected = "a positive int" if minimum == 1 else f"an integer ≥ {minimum}"
        raise IntOptionError(f"{name}: expected {expected}{' or None' if optional else ''}, got {value!r}")
    return value


def check_bool(name: str, value: Any) -> bool:
    """``value`` must be a bool: as in ``torch.nn``, 0/1 and strings such as ``'False'`` (truthy) are
    refused rather than read as flags."""
    if not isinstance(value, bool):
        given = type(value).__name__
        raise TypeError(
            f"{name}: expected a bool, got {given} {value!r} ({name} should be of type bool, got: {given})"
        )
    return value


def check_data_sizes(owner: str, sizes: Mapping[str, Any], datamodule: Any, prefix: str = "") -> None:
    """Every size ``owner`` was made for (``input_size``, ``num_classes``…) must be the one the data
    module provides, where it provides one: a model built for other data fails before training."""
    for name, ours in sizes.items():
        theirs = getattr(datamodule, name, None)
        if theirs is not None and theirs != ours:
            raise ValueError(
                f"{prefix}{name}: {owner} for {name}={ours}, but the data module "
                f"{type(datamodule).__name__} provides {name}={theirs}"
            )


def check_tensor_like(name: str, tensor: Any, reference: Tensor) -> None:
    """``tensor`` must be a tensor with ``reference``'s dtype and device."""
    if not isinstance(tensor, Tensor):
        raise TypeError(f"{name}: expected a torch.Tensor, got {type(tensor).__name__}")
    if tensor.dtype != reference.dtype:
        raise DtypeError(f"{name}: expected dtype {reference.dtype} (the parameters'), got {tensor.dtype}")
    if tensor.device != reference.device:
        raise InputError(f"{name}: expected device {reference.device} (the parameters'), got {tensor.device}")


def check_shape(name: str, tensor: Tensor, expected: tuple[int, ...], torch_name: str | None = None) -> None:
    """``tensor`` must have the ``expected`` shape; with ``torch_name``, the message also carries
    torch.nn's wording for the same mistake (``Expected hidden size …``), which code may look for."""
    if tuple(tensor.shape) != tuple(expected):
        torch_wording = "" if torch_name is None else \
            f" (Expected {torch_name} size {tuple(expected)}, got {list(tensor.shape)})"
        given = tuple(tensor.shape)
        raise InputError(f"{name}: expected shape {tuple(expected)}, got {given}{torch_wording}")


def unpack_state(hx: Any, parts: int) -> tuple[Any, ...]:
    """``hx`` as a tuple of its ``parts`` tensors: a bare tensor ``h_0`` (RNN, GRU) when ``parts`` is 1,
    else a tuple or list ``(h_0, c_0)`` (LSTM), as ``torch.nn`` takes them. The tensors are checked by
    the caller."""
    if parts == 1:
        if isinstance(hx, tuple | list):
            # A (h_0,) or an LSTM-style (h_0, c_0) would otherwise be half-accepted or fail deep inside.
            raise TypeError(f"hx: expected a torch.Tensor h_0, got {type(hx).__name__} of length {len(hx)}")
        return (hx,)
    if not isinstance(hx, tuple | list):
        raise TypeError(f"hx: expected a tuple (h_0, c_0), got {type(hx).__name__}")
    if len(hx) != parts:
        raise InputError(f"hx: expected {parts} tensor(s), got {len(hx)}")
    return tuple(hx)


def check_sequence_input(
    input: Tensor, *, input_size: int, batch_first: bool, parameter: Tensor, check_finite: bool
) -> bool:
    """Validate a layer's padded input; return whether it is batched. Messages end with torch.nn's
    wording for the same mistake in parentheses, which code written for torch.nn may look for."""
    if isinstance(input, Tensor) and input.dtype != parameter.dtype:
        raise DtypeError(
            f"input: expected dtype {parameter.dtype} (the parameters'), got {input.dtype} (RNN input dtype "
            f"({input.dtype}) does not match weight dtype ({parameter.dtype}). Convert input: "
            f"input.to({parameter.dtype}), or convert model: model.to({input.dtype}))"
        )
    check_tensor_like("input", input, parameter)
    layout = "(B, T, F)" if batch_first else "(T, B, F)"
    if input.dim() not in (2, 3):
        raise InputError(
            f"input: expected 2 dimensions (T, F) unbatched or 3 dimensions {layout} batched, "
            f"got {input.dim()} with shape {tuple(input.shape)}"
        )
    if input.shape[-1] != input_size:
        raise InputError(
            f"input: expected feature size (last dimension) {input_size}, got {input.shape[-1]} "
            f"in shape {tuple(input.shape)} (input.size(-1) must be equal to input_size. Expected "
            f"{input_size}, got {input.shape[-1]})"
        )
    time_dim = 1 if (batch_first and input.dim() == 3) else 0
    if input.shape[time_dim] == 0:
        raise InputError(f"input: empty sequence (T=0) in shape {tuple(input.shape)}; expected T ≥ 1 "
                         "(Expected sequence length to be larger than 0 in RNN)")
    if check_finite and not torch.isfinite(input).all():
        raise ValueError("input: contains NaN or infinite values (check_finite=True)")
    return input.dim() == 3


def check_lengths(lengths: Any, *, batch_size: int, steps: int) -> Tensor:
    """Sequence lengths: an integer tensor (B,) with 1 ≤ length ≤ T. Returns it as int64 on the CPU."""
    if not isinstance(lengths, Tensor):
        lengths = torch.as_tensor(lengths)
    if lengths.dtype.is_floating_point or lengths.dtype == torch.bool or lengths.is_complex():
        raise TypeError(f"lengths: expected an integer tensor, got dtype {lengths.dtype}")
    if tuple(lengths.shape) != (batch_size,):
        raise InputError(
            f"lengths: expected shape ({batch_size},) (one per sequence), got {tuple(lengths.shape)}"
        )
    lengths = lengths.to("cpu", torch.int64)
    if torch.compiler.is_compiling() or not batch_size:  # traced: values unknown; or no sequences at all
        return lengths
    low, high = int(lengths.min()), int(lengths.max())
    if low < 1 or high > steps:
        raise InputError(f"lengths: expected every length in [1, T={steps}], got min {low} and max {high}")
    return lengths


def check_cell_call(cell: Any, input: Tensor, hx: Any) -> tuple[bool, Any]:
    """Validate a one-step ``cell(input, hx)`` call; return whether it is batched, and ``hx`` as the cell
    keeps its state (a tensor, or a tuple where torch.nn also takes a list)."""
    check_tensor_like("input", input, cell.weight_ih)
    if input.dim() not in (1, 2):
        raise InputError(
            f"input: expected 1 dimension (F,) or 2 dimensions (B, F), got {input.dim()} "
            f"with shape {tuple(input.shape)}"
        )
    if input.shape[-1] != cell.input_size:
        raise InputError(f"input: expected feature size {cell.input_size}, got {input.shape[-1]}")
    if hx is None:
        return input.dim() == 2, None
    batch = (input.shape[0],) if input.dim() == 2 else ()
    expected = cell.initial_state(1, cell.weight_ih)
    templates = expected if isinstance(expected, tuple) else (expected,)
    states = unpack_state(hx, len(templates))
    for index, (state, template) in enumerate(zip(states, templates, strict=True)):
        name = f"hx[{index}]" if len(templates) > 1 else "hx"
        check_tensor_like(name, state, cell.weight_ih)
        check_shape(name, state, (*batch, template.shape[-1]))
    return input.dim() == 2, states if len(templates) > 1 else states[0]
