"""``RNN``, ``LSTM``, ``GRU``: drop-in fronts for ``torch.nn.RNN/LSTM/GRU`` with one switch, ``impl``.

``impl="custom"`` runs the explicit formulas of :mod:`torchseq.cells` (cell → :class:`Unroll` →
:class:`Bidirectional` → :class:`Stack`); ``impl="fused"`` runs torch's fused kernel (oneDNN/native on
CPU, cuDNN on CUDA) on the *same* parameter tensors. ``state_dict()`` uses ``torch.nn``'s keys
(``weight_ih_l0``, ``bias_hh_l1_reverse``, ``weight_hr_l0`` …) so checkpoints move freely between
torchseq and ``torch.nn``; :meth:`from_torch` and :meth:`to_torch` convert whole modules.

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

Dropout between layers draws different random masks in the two implementations, so they agree in
``eval()`` mode (or with ``dropout=0``) and agree in distribution in training.
"""

from __future__ import annotations

import re
from typing import Any, ClassVar

import torch
from torch import Tensor, nn
from torch.nn.utils.rnn import PackedSequence, pack_padded_sequence, pad_packed_sequence

from torchseq.cells import GRUCell, LSTMCell, RecurrentCell, RNNCell
from torchseq.cells.base import State
from torchseq.checks import (
    check_choice,
    check_lengths,
    check_sequence_input,
    check_shape,
    check_tensor_like,
    unpack_state,
)
from torchseq.fused import (
    PARAMETER_NAMES,
    cell_parameter_names,
    make_template,
    named_torch_parameters,
    run_fused,
    torch_parameter_slots,
)
from torchseq.init import check_init_name
from torchseq.recurrent.bidirectional import MERGE_MODES, Bidirectional, merge_directions
from torchseq.recurrent.stack import Stack
from torchseq.recurrent.unroll import Unroll, reverse_padded, step_mask

IMPLS = ("custom", "fused")
TORCH_PARAMETER_NAME = re.compile(rf"({'|'.join(PARAMETER_NAMES)})_l\d+(_reverse)?")  # weight_ih_l0 …
Output = Tensor | PackedSequence | tuple[Tensor | PackedSequence, Tensor | PackedSequence]


class RecurrentLayers(nn.Module):
    """Shared front of :class:`RNN`, :class:`LSTM` and :class:`GRU`; subclasses name cell and torch class."""

    cell_class: ClassVar[type[RecurrentCell]]
    torch_class: ClassVar[type[nn.RNNBase]]

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        num_layers: int = 1,
        bias: bool = True,
        batch_first: bool = False,
        dropout: float = 0.0,
        bidirectional: bool = False,
        *,
        impl: str = "custom",
        init: str = "torch",
        recurrent_bias: bool = True,
        merge_mode: str | None = "concat",
        go_backwards: bool = False,
        stateful: bool = False,
        check_finite: bool = False,
        cell_options: dict[str, Any] | None = None,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__()
        if not isinstance(num_layers, int) or num_layers < 1:
            raise ValueError(f"num_layers: expected a positive int, got {num_layers!r}")
        if not 0.0 <= float(dropout) <= 1.0:
            raise ValueError(f"dropout: expected a probability in [0, 1], got {dropout!r}")
        check_choice("merge_mode", merge_mode, MERGE_MODES)
        if merge_mode != "concat" and not bidirectional:
            raise ValueError(f"merge_mode: {merge_mode!r} needs bidirectional=True (got bidirectional=False)")
        self.input_size, self.hidden_size, self.num_layers = input_size, hidden_size, num_layers
        self.bias, self.batch_first, self.dropout = bias, batch_first, float(dropout)
        self.bidirectional, self.merge_mode, self.go_backwards = bidirectional, merge_mode, go_backwards
        self.stateful, self.check_finite = stateful, check_finite
        self.recurrent_bias = bias and recurrent_bias
        self.init = check_init_name(init)
        self.cell_options = dict(cell_options or {})

        def make_cell(layer_input: int) -> RecurrentCell:
            return self.cell_class(
                layer_input, hidden_size, bias, init=init, recurrent_bias=recurrent_bias, device=device,
                dtype=dtype, **self.cell_options,
            )

        layers: list[nn.Module] = []
        layer_input = input_size
        for _ in range(num_layers):
            forward_layer = Unroll(make_cell(layer_input))
            layer = (
                Bidirectional(forward_layer, Unroll(make_cell(layer_input), reverse=True))
                if bidirectional
                else forward_layer
            )
            layers.append(layer)
            layer_input = layer.output_size
        self.stack = Stack(layers, self.dropout)
        self.impl = impl
        self._carried_state: tuple[Tensor, ...] | None = None
        self.register_state_dict_post_hook(_rename_to_torch_keys)
        self.register_load_state_dict_pre_hook(_rename_from_torch_keys)
        self.register_load_state_dict_post_hook(_report_missing_keys_in_torch_names)

    # -- configuration --------------------------------------------------------------------------
    @property
    def directions(self) -> int:
        return 2 if self.bidirectional else 1

    @property
    def mode(self) -> str:
        """``torch.nn``'s name for the recurrence: ``"LSTM"``, ``"GRU"``, ``"RNN_TANH"`` or ``"RNN_RELU"``."""
        return self.torch_class.__name__

    @property
    def proj_size(self) -> int:
        """Size of the projection of h: 0 (none), as on every ``torch.nn.RNNBase``; only the LSTM has one."""
        return 0

    @property
    def impl(self) -> str:
        return self._impl

    @impl.setter
    def impl(self, value: str) -> None:
        check_choice("impl", value, IMPLS)
        reason = self.fused_unsupported_reason()
        if value == "fused" and reason:
            raise ValueError(f"impl: 'fused' is not available for this configuration: {reason}")
        self._impl = value

    def fused_unsupported_reason(self) -> str | None:
        """Why no fused kernel computes this configuration (None when one does)."""
        return None

    def torch_config(self) -> dict[str, Any]:
        """Constructor arguments of the equivalent ``torch.nn`` module."""
        return {
            "input_size": self.input_size,
            "hidden_size": self.hidden_size,
            "num_layers": self.num_layers,
            "bias": self.bias,
            "batch_first": False,  # our fronts hand (T, B, F) to the kernel
            "dropout": self.dropout,
            "bidirectional": self.bidirectional,
        }

    @property
    def cells(self) -> list[RecurrentCell]:
        """Every cell in ``torch.nn`` order (layer-major, forward before reverse)."""
        return self.stack.cells

    def state_sizes(self) -> tuple[int, ...]:
        """Last dimension of each state tensor: (H_out,) or, for the LSTM, (H_out, H)."""
        return (self.cells[0].output_size,)

    # -- torch.nn's parameter attributes ---------------------------------------------------------
    # Code written for torch.nn reads and replaces parameters by name (``lstm.weight_hh_l0``) and walks
    # ``all_weights``; here those names lead to the cells' own parameters, the very tensors both
    # implementations use, so reading, writing in place and replacing all act on the model.
    def _torch_parameter_home(self, name: str) -> tuple[RecurrentCell, str] | None:
        """(the cell holding torch.nn's parameter ``name``, its name there), or None."""
        if not TORCH_PARAMETER_NAME.fullmatch(name) or "stack" not in self.__dict__.get("_modules", {}):
            return None  # not such a name (most lookups; cheap), or still inside __init__
        slots = torch_parameter_slots(self.cells, self.directions)
        return next(((cell, own) for torch_name, cell, own in slots if torch_name == name), None)

    def __getattr__(self, name: str) -> Any:
        try:
            return super().__getattr__(name)
        except AttributeError:
            home = self._torch_parameter_home(name)
            if home is None:
                raise
            return getattr(*home)

    def __setattr__(self, name: str, value: Any) -> None:
        home = self._torch_parameter_home(name)
        if home is None:
            super().__setattr__(name, value)
            return
        cell, own_name = home
        current = getattr(cell, own_name)
        if not isinstance(value, nn.Parameter) or value.shape != current.shape:
            given = f"{type(value).__name__} of shape {tuple(value.shape)}" if isinstance(value, Tensor) \
                else type(value).__name__
            raise TypeError(f"{name}: expected an nn.Parameter of shape {tuple(current.shape)}, got {given}")
        setattr(cell, own_name, value)

    @property
    def all_weights(self) -> list[list[nn.Parameter]]:
        """As ``torch.nn.RNNBase.all_weights``: per layer and direction, w_ih, w_hh, b_ih, b_hh (, w_hr)."""
        return [[getattr(cell, name) for name in cell_parameter_names(cell)] for cell in self.cells]

    def flatten_parameters(self) -> None:
        """Does nothing, and needs to: ``torch.nn`` packs its weights into one buffer for cuDNN, while
        here each cell owns its tensors and the fused path hands them to the kernel as they are."""

    # -- conversion -----------------------------------------------------------------------------
    @classmethod
    def from_torch(cls, module: nn.RNNBase, **options: Any) -> RecurrentLayers:
        """A torchseq module with ``module``'s configuration, parameters, device and dtype."""
        if not isinstance(module, cls.torch_class):
            raise TypeError(f"module: expected {cls.torch_class.__name__}, got {type(module).__name__}")
        config = {name: getattr(module, name) for name in cls._torch_config_names()}
        config["batch_first"] = module.batch_first
        parameter = next(module.parameters())
        ours = cls(**config, **options, device=parameter.device, dtype=parameter.dtype)
        try:
            ours.load_state_dict(module.state_dict())
        except RuntimeError as error:  # parameters replaced after construction, or a subclass adding some
            raise ValueError(f"module: its parameters do not fit its own configuration {config}: {error}") \
                from error
        return ours

    def to_torch(self) -> nn.RNNBase:
        """The equivalent ``torch.nn`` module holding a copy of our parameters."""
        parameter = self.cells[0].weight_ih
        config = self.torch_config() | {"batch_first": self.batch_first}
        module = self.torch_class(**config, device=parameter.device, dtype=parameter.dtype)
        state = self.state_dict()
        for name in module.state_dict():
            if name.startswith("bias_hh") and name not in state:  # recurrent_bias=False: Keras' single bias
                state[name] = torch.zeros_like(state[name.replace("bias_hh", "bias_ih")])
        module.load_state_dict(state)
        return module.train(self.training)

    @classmethod
    def _torch_config_names(cls) -> list[str]:
        return ["input_size", "hidden_size", "num_layers", "bias", "dropout", "bidirectional"]

    # -- state ----------------------------------------------------------------------------------
    def reset_states(self) -> None:
        """Forget the state carried between calls in ``stateful`` mode."""
        self._carried_state = None

    def _initial_states(self, hx: Any, batch_size: int, batched: bool, like: Tensor) -> tuple[Tensor, ...]:
        """Validate ``hx`` (or make zeros / take the carried state) as (L·D, B, ·) tensors."""
        leading = (self.num_layers * self.directions, batch_size)
        sizes = self.state_sizes()
        if hx is None:
            if self.stateful and self._carried_state is not None:
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
            check_shape(name, state, expected)
            checked.append(state if batched else state.unsqueeze(1))
        return tuple(checked)

    # -- forward --------------------------------------------------------------------------------
    def forward(
        self,
        input: Tensor | PackedSequence,
        hx: Tensor | tuple[Tensor, Tensor] | None = None,
        lengths: Tensor | None = None,
    ) -> tuple[Output, Tensor | tuple[Tensor, Tensor]]:
        """Same call and return as ``torch.nn``: ``output, h_n`` (``output, (h_n, c_n)`` for the LSTM)."""
        parameter = self.cells[0].weight_ih
        packed = input if isinstance(input, PackedSequence) else None
        if packed is not None:
            if lengths is not None:
                raise ValueError("lengths: must be None for a PackedSequence input (it carries its lengths)")
            x, lengths = pad_packed_sequence(packed)                                    # (T, B, F)
            check_sequence_input(
                x, input_size=self.input_size, batch_first=False, parameter=parameter,
                check_finite=self.check_finite,
            )
            batched = True
        else:
            batched = check_sequence_input(
                input, input_size=self.input_size, batch_first=self.batch_first, parameter=parameter,
                check_finite=self.check_finite,
            )
            x = input.unsqueeze(1) if not batched else input.transpose(0, 1) if self.batch_first else input
        steps, batch_size = x.shape[:2]
        if lengths is not None:
            lengths = check_lengths(lengths, batch_size=batch_size, steps=steps)
            # Padding is never read, but 0 · NaN = NaN: zero it so that NaN/inf there cannot reach W_ih's
            # gradient through the masked steps (the fused kernel never sees it either).
            x = x.masked_fill(~step_mask(lengths, steps, x.device), 0.0)
        states = self._initial_states(hx, batch_size, batched, x)

        if self.go_backwards:
            x = reverse_padded(x, lengths)
        output, final = self._run_custom(x, states, lengths) if self.impl == "custom" else \
            self._run_fused(x, states, lengths)
        if self.stateful:
            self._carried_state = tuple(state.detach() for state in final)

        merged = merge_directions(output, self.merge_mode) if self.bidirectional else output
        restore = self._restore_layout(packed, lengths, batched)
        output = tuple(restore(part) for part in merged) if isinstance(merged, tuple) else restore(merged)
        final = final if batched else tuple(state.squeeze(1) for state in final)
        return output, (final if len(final) > 1 else final[0])

    def _run_custom(
        self, x: Tensor, states: tuple[Tensor, ...], lengths: Tensor | None
    ) -> tuple[Tensor, tuple[Tensor, ...]]:
        per_cell: list[State] = [
            tuple(state[k] for state in states) if len(states) > 1 else states[0][k]  # type: ignore[misc]
            for k in range(len(self.cells))
        ]
        output, finals = self.stack(x, per_cell, lengths)
        if len(states) == 1:
            return output, (torch.stack(finals),)
        return output, tuple(torch.stack([final[part] for final in finals]) for part in range(len(states)))

    def _run_fused(
        self, x: Tensor, states: tuple[Tensor, ...], lengths: Tensor | None
    ) -> tuple[Tensor, tuple[Tensor, ...]]:
        template = self.__dict__.get("_template")
        if template is None:
            # Plain attribute, not a submodule: the template holds no parameters of its own.
            template = self.__dict__["_template"] = make_template(self.torch_class, **self.torch_config())
        template.train(self.training)
        parameters = {name: p for name, _, p in named_torch_parameters(self.cells, self.directions)}
        for name, p in list(parameters.items()):
            # Keras-style cells (recurrent_bias=False) have one bias; the kernel wants two: add zeros.
            recurrent_name = name.replace("bias_ih", "bias_hh")
            if name.startswith("bias_ih") and recurrent_name not in parameters:
                parameters[recurrent_name] = torch.zeros_like(p)
        hx = states if len(states) > 1 else states[0]
        output, final = run_fused(template, parameters, x, hx, lengths)
        return output, (final if isinstance(final, tuple) else (final,))

    def _restore_layout(self, packed: PackedSequence | None, lengths: Tensor | None, batched: bool):
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
            return output.transpose(0, 1) if self.batch_first else output

        return restore

    def extra_repr(self) -> str:
        options = [f"{self.input_size}, {self.hidden_size}", f"num_layers={self.num_layers}",
                   f"impl={self.impl!r}"]
        for name, default in (("bias", True), ("batch_first", False), ("dropout", 0.0),
                              ("bidirectional", False), ("merge_mode", "concat"), ("go_backwards", False),
                              ("stateful", False)):
            if getattr(self, name) != default:
                options.append(f"{name}={getattr(self, name)!r}")
        return ", ".join(options)


# -- state_dict in torch.nn's keys ---------------------------------------------------------------
def _key_map(module: RecurrentLayers) -> dict[str, str]:
    """Our key (relative to the module) → torch.nn's key, e.g. ``stack.layers.0.cell.weight_ih`` →
    ``weight_ih_l0``."""
    own_names = {id(parameter): name for name, parameter in module.named_parameters()}
    return {
        own_names[id(parameter)]: torch_name
        for torch_name, _, parameter in named_torch_parameters(module.cells, module.directions)
    }


def _rename_to_torch_keys(
    module: RecurrentLayers, state_dict: dict, prefix: str, local_metadata: Any
) -> None:
    for own, torch_name in _key_map(module).items():
        if prefix + own in state_dict:
            state_dict[prefix + torch_name] = state_dict.pop(prefix + own)


def _rename_from_torch_keys(
    module: RecurrentLayers, state_dict: dict, prefix: str, local_metadata: Any, strict: bool,
    missing_keys: list[str], unexpected_keys: list[str], error_msgs: list[str],
) -> None:
    """Rename torch.nn's keys to ours, checking each value first so that errors name the torch.nn key."""
    parameters = dict(module.named_parameters())
    for own, torch_name in _key_map(module).items():
        if prefix + torch_name not in state_dict:
            continue
        value = state_dict.pop(prefix + torch_name)
        problem = _checkpoint_value_problem(prefix + torch_name, value, parameters[own])
        if problem:
            error_msgs.append(problem)
            # Loading the parameter onto itself is a no-op that keeps torch from reporting the same
            # problem again under our internal key (stack.layers.0.cell.weight_ih) or as a missing key.
            value = parameters[own]
        state_dict[prefix + own] = value


def _checkpoint_value_problem(key: str, value: Any, parameter: Tensor) -> str | None:
    """What is wrong with the checkpoint's ``value`` at ``key`` for ``parameter`` (None if it loads)."""
    if not isinstance(value, Tensor):
        return f"{key}: expected a torch.Tensor, got {type(value).__name__}"
    if value.shape != parameter.shape:
        return (f"size mismatch for {key}: expected shape {tuple(parameter.shape)} (the current model's), "
                f"got {tuple(value.shape)} from the checkpoint")
    return None


def _report_missing_keys_in_torch_names(module: RecurrentLayers, incompatible_keys: Any) -> None:
    """Missing keys were never renamed by the pre-hook: name them as the caller's state_dict would."""
    missing = incompatible_keys.missing_keys
    for own, torch_name in _key_map(module).items():
        for index, key in enumerate(missing):
            if key == own or key.endswith("." + own):
                missing[index] = key[: len(key) - len(own)] + torch_name


# -- the three fronts ----------------------------------------------------------------------------
class RNN(RecurrentLayers):
    """Elman RNN layers, ``torch.nn.RNN``'s signature plus torchseq's keyword options."""

    cell_class = RNNCell
    torch_class = nn.RNN

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        num_layers: int = 1,
        nonlinearity: str = "tanh",
        bias: bool = True,
        batch_first: bool = False,
        dropout: float = 0.0,
        bidirectional: bool = False,
        **options: Any,
    ) -> None:
        super().__init__(
            input_size, hidden_size, num_layers, bias, batch_first, dropout, bidirectional,
            cell_options={"nonlinearity": nonlinearity}, **options,
        )

    @property
    def nonlinearity(self) -> str:
        return self.cell_options["nonlinearity"]

    @property
    def mode(self) -> str:
        return f"RNN_{self.nonlinearity.upper()}"

    def torch_config(self) -> dict[str, Any]:
        return super().torch_config() | {"nonlinearity": self.nonlinearity}

    @classmethod
    def _torch_config_names(cls) -> list[str]:
        return [*super()._torch_config_names(), "nonlinearity"]


class LSTM(RecurrentLayers):
    """LSTM layers, ``torch.nn.LSTM``'s signature (``proj_size`` included) plus torchseq's options."""

    cell_class = LSTMCell
    torch_class = nn.LSTM

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        num_layers: int = 1,
        bias: bool = True,
        batch_first: bool = False,
        dropout: float = 0.0,
        bidirectional: bool = False,
        proj_size: int = 0,
        **options: Any,
    ) -> None:
        super().__init__(
            input_size, hidden_size, num_layers, bias, batch_first, dropout, bidirectional,
            cell_options={"proj_size": proj_size}, **options,
        )

    @property
    def proj_size(self) -> int:
        return self.cell_options["proj_size"]

    def state_sizes(self) -> tuple[int, ...]:
        return (self.proj_size or self.hidden_size, self.hidden_size)

    def torch_config(self) -> dict[str, Any]:
        return super().torch_config() | {"proj_size": self.proj_size}

    @classmethod
    def _torch_config_names(cls) -> list[str]:
        return [*super()._torch_config_names(), "proj_size"]


class GRU(RecurrentLayers):
    """GRU layers, ``torch.nn.GRU``'s signature plus ``reset_after`` (see :class:`GRUCell`)."""

    cell_class = GRUCell
    torch_class = nn.GRU

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        num_layers: int = 1,
        bias: bool = True,
        batch_first: bool = False,
        dropout: float = 0.0,
        bidirectional: bool = False,
        reset_after: bool = True,
        **options: Any,
    ) -> None:
        self._reset_after = reset_after  # read by fused_unsupported_reason() during super().__init__
        super().__init__(
            input_size, hidden_size, num_layers, bias, batch_first, dropout, bidirectional,
            cell_options={"reset_after": reset_after}, **options,
        )

    @property
    def reset_after(self) -> bool:
        return self._reset_after

    def fused_unsupported_reason(self) -> str | None:
        if not self._reset_after:
            return ("GRU(reset_after=False), the original Cho et al. formula, has no fused kernel "
                    "(cuDNN and torch.nn.GRU compute reset_after=True); use impl='custom'")
        return None
