"""``Recurrent``: any :class:`~torchseq.cells.RecurrentCell` run as a layer, with ``torch.nn``'s call.

``Recurrent(cell_class, input_size, hidden_size, num_layers, …)`` builds one cell per layer and direction
(cell → :class:`Unroll` → :class:`Bidirectional` → :class:`Stack`); each cell keeps its own parameters.
It is called as ``torch.nn.LSTM`` is: ``output, h_n`` (``output, (h_n, c_n)`` for a two-part state),
(T, B, F) or batch-first or unbatched input, a ``PackedSequence``, or padded input with ``lengths=``.

Beyond ``torch.nn``, and following the Keras layers the book uses:

- ``lengths=`` in ``forward`` (an alternative to ``PackedSequence``): outputs past a sequence's end are
  zeros and its final state is the state at its last real step (Keras masking).
- ``merge_mode`` for bidirectional layers: ``"concat"`` (torch.nn's), ``"sum"``, ``"mul"``, ``"ave"``
  or ``None`` (a tuple of the forward and backward outputs). Inner layers always receive the concat.
- ``go_backwards``: read every sequence from its end; the output stays in processing (reversed) order.
- ``stateful``: the final state of a call becomes (detached) the initial state of the next call until
  :meth:`reset_states`; batch size must stay the same meanwhile.
- ``check_finite``: raise on NaN/inf input. By default NaN propagates exactly as in ``torch.nn``
  (no check: it would cost a device synchronisation per call).

``impl="fused"`` runs ``torch.nn``'s fused kernel on the same tensors, for the cells that have one
(:mod:`torchseq.compat`). Dropout between layers draws different random masks in the two
implementations, so they agree in ``eval()`` mode (or with ``dropout=0``) and in distribution in training.
The options in :data:`~torchseq.recurrent.config.MUTABLE_OPTIONS` may be set on a built layer
(``layer.dropout = 0.5``) and take effect at its next call, as in ``torch.nn``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor, nn
from torch.nn.utils.rnn import PackedSequence, pack_padded_sequence, pad_packed_sequence

from torchseq import compat
from torchseq.cells import RecurrentCell
from torchseq.cells.base import State
from torchseq.checks import check_lengths, check_sequence_input, check_shape, check_tensor_like, unpack_state
from torchseq.recurrent.bidirectional import Bidirectional, merge_directions
from torchseq.recurrent.config import IMPLS, MUTABLE_OPTIONS, RecurrentConfig
from torchseq.recurrent.stack import Stack
from torchseq.recurrent.unroll import Unroll, reverse_padded, step_mask

Output = Tensor | PackedSequence | tuple[Tensor | PackedSequence, Tensor | PackedSequence]

__all__ = ["IMPLS", "Output", "Recurrent"]


def _option(name: str) -> property:
    """``layer.<name>``, read from the config; settable (validated, effective at the next call) for the
    options of :data:`MUTABLE_OPTIONS`, refused with a clear message for those that shape parameters."""

    def get(self: Recurrent) -> Any:
        return getattr(self.config, name)

    def set_(self: Recurrent, value: Any) -> None:
        if name not in MUTABLE_OPTIONS:
            raise AttributeError(f"{name}: fixed when the layer is built (it shapes the parameters); "
                                 f"build a new layer with {name}={value!r}")
        self.config = self.config.replace(**{name: value})

    return property(get, set_, doc=f"The layer's ``{name}`` option.")


class Recurrent(nn.Module):
    """Layers of any :class:`RecurrentCell` subclass, called like ``torch.nn.LSTM`` (see the module).

    ``cell_options`` go to every cell's constructor, after ``(input_size, hidden_size, bias)`` and the
    keywords ``init``, ``recurrent_bias``, ``device`` and ``dtype``.
    """

    def __init__(
        self,
        cell_class: type[RecurrentCell],
        input_size: int,
        hidden_size: int,
        num_layers: int = 1,
        *,
        bias: bool = True,
        batch_first: bool = False,
        dropout: float = 0.0,
        bidirectional: bool = False,
        merge_mode: str | None = "concat",
        go_backwards: bool = False,
        stateful: bool = False,
        init: str = "torch",
        recurrent_bias: bool = True,
        check_finite: bool = False,
        impl: str = "custom",
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
        **cell_options: Any,
    ) -> None:
        super().__init__()
        if not (isinstance(cell_class, type) and issubclass(cell_class, RecurrentCell)):
            raise TypeError(f"cell_class: expected a subclass of RecurrentCell, got {cell_class!r}")
        self.cell_class = cell_class
        self.config = RecurrentConfig(
            input_size, hidden_size, num_layers, bias=bias, batch_first=batch_first, dropout=dropout,
            bidirectional=bidirectional, merge_mode=merge_mode, go_backwards=go_backwards, stateful=stateful,
            check_finite=check_finite, init=init, recurrent_bias=recurrent_bias, cell_options=cell_options,
        )
        self.stack = Stack(self._build_layers(device, dtype), self.config.dropout)
        first = self.stack.cells[0]
        initial = first.initial_state(1, first.weight_ih)
        self._state_sizes = tuple(part.shape[-1] for part in (initial if isinstance(initial, tuple) else
                                                               (initial,)))
        self._carried_state: tuple[Tensor, ...] | None = None
        self.impl = impl  # checked now that the configuration is complete

    def _build_layers(self, device: Any, dtype: Any) -> list[nn.Module]:
        config, layers, layer_input = self.config, [], self.config.input_size

        def make_cell(size: int) -> RecurrentCell:
            return self.cell_class(
                size, config.hidden_size, config.bias, init=config.init, recurrent_bias=config.recurrent_bias,
                device=device, dtype=dtype, **config.cell_options,
            )

        for _ in range(config.num_layers):
            layer = Unroll(make_cell(layer_input))
            if config.bidirectional:
                layer = Bidirectional(layer, Unroll(make_cell(layer_input), reverse=True))
            layers.append(layer)
            layer_input = layer.output_size
        return layers

    # -- configuration --------------------------------------------------------------------------
    @property
    def directions(self) -> int:
        return self.config.directions

    @property
    def impl(self) -> str:
        return self.config.impl

    @impl.setter
    def impl(self, value: str) -> None:
        config = self.config.replace(impl=value)
        reason = compat.fused_unsupported_reason(self.cell_class, config.cell_options)
        if value == "fused" and reason:
            raise ValueError(f"impl: 'fused' is not available for this configuration: {reason}")
        self.config = config

    @property
    def cells(self) -> list[RecurrentCell]:
        """Every cell in ``torch.nn`` order (layer-major, forward before reverse)."""
        return self.stack.cells

    def state_sizes(self) -> tuple[int, ...]:
        """Last dimension of each state tensor: (H_out,) or, for the LSTM, (H_out, H)."""
        return self._state_sizes

    @property
    def torch_class(self) -> type[nn.RNNBase] | None:
        """The ``torch.nn`` layer computing the same recurrence, if there is one."""
        return compat.torch_counterpart(self.cell_class)

    def torch_config(self) -> dict[str, Any]:
        """Constructor arguments of the equivalent ``torch.nn`` module, in (T, B, F) layout."""
        return self.config.torch_config(compat.shared_cell_options(self.cell_class))

    def reset_parameters(self, init: str | None = None) -> None:
        """(Re)initialise every cell with ``init`` (default: the scheme given at construction)."""
        for cell in self.cells:
            cell.reset_parameters(init or self.config.init)

    # -- conversion -----------------------------------------------------------------------------
    def to_torch(self) -> nn.RNNBase:
        """The equivalent ``torch.nn`` module holding a copy of our parameters."""
        reason = compat.fused_unsupported_reason(self.cell_class, self.config.cell_options)
        if reason:
            raise TypeError(f"to_torch: no torch.nn module computes this layer: {reason}")
        config = self.torch_config() | {"batch_first": self.config.batch_first}
        tensors = compat.torch_tensors(compat.torch_parameter_slots(self.cells, self.directions))
        return compat.to_torch(self.torch_class, config, tensors, self.training)

    # -- state ----------------------------------------------------------------------------------
    def reset_states(self) -> None:
        """Forget the state carried between calls in ``stateful`` mode."""
        self._carried_state = None

    def _initial_states(self, hx: Any, batch_size: int, batched: bool, like: Tensor) -> tuple[Tensor, ...]:
        """Validate ``hx`` (or make zeros / take the carried state) as (L·D, B, ·) tensors."""
        leading = (self.config.num_layers * self.directions, batch_size)
        sizes = self.state_sizes()
        if hx is None:
            if self.config.stateful and self._carried_state is not None:
                carried_batch = self._carried_state[0].shape[1]
                if carried_batch != batch_size:
                    raise ValueError(
                        f"input: stateful mode carries a state for batch size {carried_batch}, got batch "
                        f"size {batch_size}; call reset_states() before changing the batch size"
                    )
                return self._carried_state
            return tuple(like.new_zeros(*leading, size) for size in sizes)
        checked = []
        for index, (state, size) in enumerate(zip(unpack_state(hx, len(sizes)), sizes, strict=True)):
            name = f"hx[{index}]" if len(sizes) > 1 else "hx"
            check_tensor_like(name, state, like)
            expected = (*leading, size) if batched else (leading[0], size)
            check_shape(name, state, expected, "hidden" if len(sizes) == 1 else f"hidden[{index}]")
            checked.append(state if batched else state.unsqueeze(1))
        return tuple(checked)

    # -- forward --------------------------------------------------------------------------------
    def forward(
        self,
        input: Tensor | PackedSequence,
        hx: Tensor | tuple[Tensor, Tensor] | None = None,
        lengths: Tensor | None = None,
    ) -> tuple[Output, Tensor | tuple[Tensor, ...]]:
        """Same call and return as ``torch.nn``: ``output, h_n`` (``output, (h_n, c_n)`` for the LSTM)."""
        config, cells = self.config, self.cells
        parameter = cells[0].weight_ih
        packed = input if isinstance(input, PackedSequence) else None
        if packed is not None:
            if lengths is not None:
                raise ValueError("lengths: must be None for a PackedSequence input (it carries its lengths)")
            x, lengths = pad_packed_sequence(packed)                                    # (T, B, F)
            check_sequence_input(
                x, input_size=config.input_size, batch_first=False, parameter=parameter,
                check_finite=config.check_finite,
            )
            batched = True
        else:
            batched = check_sequence_input(
                input, input_size=config.input_size, batch_first=config.batch_first, parameter=parameter,
                check_finite=config.check_finite,
            )
            x = input.unsqueeze(1) if not batched else input.transpose(0, 1) if config.batch_first else input
        steps, batch_size = x.shape[:2]
        if lengths is not None:
            lengths = check_lengths(lengths, batch_size=batch_size, steps=steps)
            # Padding is never read, but 0 · NaN = NaN: zero it so that NaN/inf there cannot reach W_ih's
            # gradient through the masked steps (the fused kernel never sees it either).
            x = x.masked_fill(~step_mask(lengths, steps, x.device), 0.0)
        states = self._initial_states(hx, batch_size, batched, x)

        if config.go_backwards:
            x = reverse_padded(x, lengths)
        run = self._run_custom if config.impl == "custom" else self._run_fused
        output, final = run(x, states, lengths)
        if config.stateful:
            self._carried_state = tuple(state.detach() for state in final)

        merged = merge_directions(output, config.merge_mode) if config.bidirectional else output
        restore = self._restore_layout(packed, lengths, batched)
        output = tuple(restore(part) for part in merged) if isinstance(merged, tuple) else restore(merged)
        final = final if batched else tuple(state.squeeze(1) for state in final)
        return output, (final if len(final) > 1 else final[0])

    def _run_custom(
        self, x: Tensor, states: tuple[Tensor, ...], lengths: Tensor | None
    ) -> tuple[Tensor, tuple[Tensor, ...]]:
        per_cell: list[State] = [
            tuple(state[k] for state in states) if len(states) > 1 else states[0][k]  # type: ignore[misc]
            for k in range(len(self.stack.cells))
        ]
        self.stack.dropout = self.config.dropout
        output, finals = self.stack(x, per_cell, lengths)
        if len(states) == 1:
            return output, (torch.stack(finals),)
        return output, tuple(torch.stack([final[part] for final in finals]) for part in range(len(states)))

    def _run_fused(
        self, x: Tensor, states: tuple[Tensor, ...], lengths: Tensor | None
    ) -> tuple[Tensor, tuple[Tensor, ...]]:
        template = compat.template(self.torch_class, self.torch_config(), self.training)
        tensors = compat.torch_tensors(compat.torch_parameter_slots(self.stack.cells, self.directions))
        hx = states if len(states) > 1 else states[0]
        output, final = compat.run_fused(template, tensors, x, hx, lengths)
        return output, (final if isinstance(final, tuple) else (final,))

    def _restore_layout(
        self, packed: PackedSequence | None, lengths: Tensor | None, batched: bool
    ) -> Callable[[Tensor], Tensor | PackedSequence]:
        """Return a function that turns a (T, B, ·) output back into the caller's layout."""

        def restore(output: Tensor) -> Tensor | PackedSequence:
            if packed is not None:
                # Re-pack in the input's own order so sorted/unsorted indices are the caller's.
                sorted_lengths = lengths.index_select(0, packed.sorted_indices.cpu()) \
                    if packed.sorted_indices is not None else lengths
                ordered = output if packed.sorted_indices is None else \
                    output.index_select(1, packed.sorted_indices)
                data = pack_padded_sequence(ordered, sorted_lengths, enforce_sorted=True).data
                return PackedSequence(
                    data, packed.batch_sizes, packed.sorted_indices, packed.unsorted_indices
                )
            if not batched:
                return output.squeeze(1)
            return output.transpose(0, 1) if self.config.batch_first else output

        return restore

    def extra_repr(self) -> str:
        config = self.config
        cell = f"{self.cell_class.__name__}, " if type(self) is Recurrent else ""  # a front's name says it
        options = [f"{cell}{config.input_size}, {config.hidden_size}", f"num_layers={config.num_layers}",
                   f"impl={config.impl!r}"]
        for name, default in (("bias", True), ("batch_first", False), ("dropout", 0.0),
                              ("bidirectional", False), ("merge_mode", "concat"), ("go_backwards", False),
                              ("stateful", False)):
            if getattr(config, name) != default:
                options.append(f"{name}={getattr(config, name)!r}")
        return ", ".join(options)


# ``layer.<option>`` for every option of the config, so the list is written once, in RecurrentConfig
# (``impl`` has its own property above; ``cell_options`` are read from the config).
for _field in dataclasses.fields(RecurrentConfig):
    if _field.name not in ("impl", "cell_options"):
        setattr(Recurrent, _field.name, _option(_field.name))
