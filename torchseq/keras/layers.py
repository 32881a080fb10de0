"""Keras-convention layers built on torchseq's recurrent core: the book's layers, read the Keras way.

Each layer takes the arguments and returns the values of its Keras 3 namesake, so a ``tf.keras`` model
from the book translates line by line. What differs is what PyTorch needs and Keras infers: the input
size comes first, as in every ``torch.nn`` layer (``SimpleRNN(12, 512)`` is Keras' ``SimpleRNN(512)``
on 12 features).

Keras conventions kept here:

- batch-first input (B, T, F); ``return_sequences`` / ``return_state`` choose the outputs;
- Keras' initialisation (Glorot kernel, orthogonal recurrent kernel, zero bias, forget bias 1) and
  Keras' parameters: *one* bias per gate (``recurrent_bias=False``), except the GRU with
  ``reset_after=True`` whose Keras bias has an input row and a recurrent row;
- ``dropout`` on the inputs with one mask per call, shared by every timestep (as Keras' RNN cells);
- ``recurrent_dropout`` on h_{t-1}, one mask per call as well; then, as Keras 3 does, the LSTM and GRU
  draw one mask per gate for h_{t-1} and for the input (see :mod:`torchseq.keras.dropout`);
- ``go_backwards`` (outputs in processing order), ``stateful`` (+ :meth:`reset_states`);
- masking: ``mask`` (B, T) as Keras' ``Masking`` layer makes it (see :mod:`torchseq.keras.masking`). A
  masked step keeps the state; it outputs the previous step's output, or zeros inside ``Bidirectional``
  (Keras' ``zero_output_for_mask``). The mask must describe trailing padding.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from functools import partial
from typing import Any, ClassVar

import torch
from torch import Tensor, nn

from torchseq.checks import check_choice
from torchseq.keras.dropout import GRUWithKerasDropout, LSTMWithKerasDropout, RNNWithKerasDropout
from torchseq.keras.masking import carry_last_output, lengths_from_mask
from torchseq.masks import lengths_mask
from torchseq.recurrent import GRU as CoreGRU
from torchseq.recurrent import LSTM as CoreLSTM
from torchseq.recurrent import RNN as CoreRNN
from torchseq.recurrent import RecurrentLayers, merge_directions, reverse_padded
from torchseq.recurrent.bidirectional import MERGE_MODES


def identity(x: Tensor) -> Tensor:
    return x


#: Keras activation names → functions (``None`` and ``"linear"`` are the identity).
ACTIVATIONS: dict[str | None, Callable[[Tensor], Tensor]] = {
    None: identity,
    "linear": identity,
    "relu": torch.relu,
    "sigmoid": torch.sigmoid,
    "tanh": torch.tanh,
    "softmax": partial(torch.softmax, dim=-1),
}

#: What a layer returns: one tensor, or (outputs…, states…) with ``return_state`` or ``merge_mode=None``.
LayerOutput = Tensor | tuple[Tensor, ...]


class KerasLayer:
    """Mixin marking a torchseq layer that holds the weights of one Keras layer (see ``weights.py``)."""

    #: The Keras class whose weights this layer takes.
    keras_class: ClassVar[str]


def time_shared_dropout(inputs: Tensor, rate: float, training: bool) -> Tensor:
    """Keras' RNN input dropout on (B, T, F): one (B, 1, F) mask per call, the same at every step."""
    if not training or rate == 0.0:
        return inputs
    keep = 1.0 - rate
    mask = inputs.new_empty(inputs.shape[0], 1, inputs.shape[2]).bernoulli_(keep)       # (B, 1, F)
    return inputs * mask / keep


# -- Dense -----------------------------------------------------------------------------------------------
class Dense(KerasLayer, nn.Linear):
    """Keras ``Dense(units, activation, use_bias)``: Glorot-uniform kernel, zero bias."""

    keras_class = "Dense"

    def __init__(
        self,
        in_features: int,
        units: int,
        activation: str | None = None,
        use_bias: bool = True,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        check_choice("activation", activation, tuple(ACTIVATIONS))
        super().__init__(in_features, units, bias=use_bias, device=device, dtype=dtype)
        self.activation = activation

    def reset_parameters(self) -> None:
        nn.init.xavier_uniform_(self.weight)
        if self.bias is not None:
            nn.init.zeros_(self.bias)

    def forward(self, inputs: Tensor) -> Tensor:
        return ACTIVATIONS[self.activation](super().forward(inputs))

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, activation={self.activation!r}"


# -- recurrent layers ----------------------------------------------------------------------------------
class KerasRecurrent(KerasLayer, nn.Module):
    """What the recurrent layers and :class:`Bidirectional` share: a torchseq core run the Keras way.

    ``self.core`` is a :class:`torchseq.RNN`/``LSTM``/``GRU`` (batch-first, one layer, one or two
    directions); this class turns Keras' call (inputs, ``initial_state``, ``mask``) into the core's
    and the core's (output, final states) into Keras' return values.
    """

    core: RecurrentLayers
    merge_mode: str | None = "concat"

    def __init__(
        self, *, dropout: float, return_sequences: bool, return_state: bool, recurrent_dropout: float = 0.0
    ) -> None:
        super().__init__()
        for name, rate in (("dropout", dropout), ("recurrent_dropout", recurrent_dropout)):
            if not 0.0 <= float(rate) < 1.0:
                raise ValueError(f"{name}: expected a probability in [0, 1), got {rate!r}")
        self.dropout, self.recurrent_dropout = float(dropout), float(recurrent_dropout)
        self.return_sequences = return_sequences
        self.return_state = return_state

    @property
    def units(self) -> int:
        return self.core.hidden_size

    @property
    def directions(self) -> int:
        return self.core.directions

    def reset_states(self) -> None:
        """Forget the state carried between calls by a ``stateful`` layer (Keras' ``reset_states``)."""
        self.core.reset_states()

    def forward(
        self,
        inputs: Tensor,
        initial_state: Sequence[Tensor] | None = None,
        mask: Tensor | None = None,
        lengths: Tensor | None = None,
    ) -> LayerOutput:
        """inputs (B, T, F) → Keras' return: output, or (output, *states) with ``return_state``.

        ``initial_state`` is Keras' list of (B, units) tensors: [h] or [h, c] per direction, forward
        first. ``mask`` (B, T) marks the real timesteps (see the module docstring); ``lengths`` (B,)
        says the same in torchseq's form (at most one of the two).
        """
        if mask is not None:
            if lengths is not None:
                raise ValueError("mask: expected mask or lengths, got both")
            lengths = lengths_from_mask(mask, inputs)
        # With recurrent_dropout the cells draw the input masks too (one per gate, as Keras 3).
        in_layer = 0.0 if self.recurrent_dropout else self.dropout
        dropped = time_shared_dropout(inputs, in_layer, self.training)
        output, final = self.core(dropped, self._core_state(initial_state), lengths)
        states = final if isinstance(final, tuple) else (final,)                   # each (D, B, H)
        if self.return_sequences:
            sequence = output if self.directions == 2 else self._keras_order(output, lengths)  # (B, T, D·H)
        else:
            sequence = torch.cat(list(states[0]), dim=-1)                       # last h per direction
        merged = merge_directions(sequence, self.merge_mode) if self.directions == 2 else sequence
        outputs = merged if isinstance(merged, tuple) else (merged,)
        if not self.return_state:
            return outputs if len(outputs) > 1 else outputs[0]
        # Keras' order: the states of the forward direction ([h] or [h, c]), then the backward ones.
        per_direction = [state[direction] for direction in range(self.directions) for state in states]
        return (*outputs, *per_direction)

    def _core_state(self, initial_state: Sequence[Tensor] | None) -> Tensor | tuple[Tensor, Tensor] | None:
        """Keras' flat [h_f, c_f, h_b, c_b] → the core's hx: h (D, B, H) or the tuple (h, c)."""
        if initial_state is None:
            return None
        per_direction = len(self.core.state_sizes())
        names = ["h", "c"][:per_direction]
        expected = [f"{name}_{side}" for side in ("f", "b")[: self.directions] for name in names] \
            if self.directions == 2 else names
        if isinstance(initial_state, Tensor):
            initial_state = [initial_state]
        if len(initial_state) != len(expected):
            raise ValueError(
                f"initial_state: expected {len(expected)} tensor(s) [{', '.join(expected)}], "
                f"got {len(initial_state)}"
            )
        directions = range(self.directions)
        stacked = tuple(
            torch.stack([initial_state[direction * per_direction + part] for direction in directions])
            for part in range(per_direction)
        )
        return stacked if per_direction > 1 else stacked[0]

    def _keras_order(self, output: Tensor, lengths: Tensor | None) -> Tensor:
        """The core's one-direction output (B, T, H) as Keras returns it under a mask.

        Unmasked, they agree (both in processing order). Masked, Keras reverses the *whole* padded
        sequence for ``go_backwards`` (so padding comes first) and repeats the last output on masked
        steps, where torchseq reverses each sequence within its length and emits zeros there.
        """
        if lengths is None:
            return output
        steps = output.shape[1]
        lengths = torch.as_tensor(lengths).cpu()
        valid = lengths_mask(lengths, steps, output.device)                         # (B, T), time order
        if self.core.go_backwards:
            in_time_order = reverse_padded(output.transpose(0, 1), lengths).transpose(0, 1)
            output, valid = in_time_order.flip(1), valid.flip(1)
        return carry_last_output(output, valid)


class Recurrent(KerasRecurrent):
    """Base of :class:`SimpleRNN`, :class:`LSTM`, :class:`GRU`: one Keras recurrent layer.

    ``torchseq_options`` go to the torchseq core: the cell's own (``nonlinearity``, ``reset_after``, set
    by the subclasses) and torchseq's, e.g. ``impl="fused"`` for the fused kernel, ``device``, ``dtype``.
    """

    core_class: ClassVar[type[RecurrentLayers]]
    #: The core whose cells draw Keras' masks themselves (used when ``recurrent_dropout > 0``).
    dropout_core_class: ClassVar[type[RecurrentLayers]]

    def __init__(
        self,
        input_size: int,
        units: int,
        *,
        use_bias: bool = True,
        dropout: float = 0.0,
        recurrent_dropout: float = 0.0,
        return_sequences: bool = False,
        return_state: bool = False,
        go_backwards: bool = False,
        stateful: bool = False,
        **torchseq_options: Any,
    ) -> None:
        super().__init__(
            dropout=dropout,
            return_sequences=return_sequences,
            return_state=return_state,
            recurrent_dropout=recurrent_dropout,
        )
        if self.recurrent_dropout > 0:  # the cells draw both kinds of masks, per gate as Keras does
            torchseq_options |= {"recurrent_dropout": self.recurrent_dropout, "input_dropout": self.dropout}
            self.core_class = self.dropout_core_class  # type: ignore[misc]
        self.use_bias = use_bias
        #: Everything needed to build the core again, e.g. bidirectional inside :class:`Bidirectional`.
        self.core_options: dict[str, Any] = {
            "input_size": input_size,
            "hidden_size": units,
            "bias": use_bias,
            "batch_first": True,
            "init": "keras",
            "recurrent_bias": self.keras_recurrent_bias(torchseq_options),
            "go_backwards": go_backwards,
            "stateful": stateful,
            **torchseq_options,
        }
        self.core = self.core_class(**self.core_options)

    @staticmethod
    def keras_recurrent_bias(options: dict[str, Any]) -> bool:
        """Whether the Keras layer has a second (recurrent) bias; only the GRU with reset_after does."""
        return False

    def extra_repr(self) -> str:
        options = [f"{self.core.input_size}, {self.units}"]
        for name in ("return_sequences", "return_state"):
            if getattr(self, name):
                options.append(f"{name}=True")
        if self.dropout:
            options.append(f"dropout={self.dropout}")
        if self.recurrent_dropout:
            options.append(f"recurrent_dropout={self.recurrent_dropout}")
        return ", ".join(options)


class SimpleRNN(Recurrent):
    """Keras ``SimpleRNN(units, activation="tanh")``: h_t = act(x_t K + h_{t-1} R + b)."""

    keras_class = "SimpleRNN"
    core_class = CoreRNN
    dropout_core_class = RNNWithKerasDropout

    def __init__(self, input_size: int, units: int, activation: str = "tanh", **options: Any) -> None:
        check_choice("activation", activation, ("tanh", "relu"))
        super().__init__(input_size, units, nonlinearity=activation, **options)


class LSTM(Recurrent):
    """Keras ``LSTM(units)``: gates i, f, c, o, one bias, forget bias initialised to 1."""

    keras_class = "LSTM"
    core_class = CoreLSTM
    dropout_core_class = LSTMWithKerasDropout


class GRU(Recurrent):
    """Keras ``GRU(units, reset_after=True)``; ``reset_after=False`` is the original Cho et al. form."""

    keras_class = "GRU"
    core_class = CoreGRU
    dropout_core_class = GRUWithKerasDropout

    def __init__(self, input_size: int, units: int, reset_after: bool = True, **options: Any) -> None:
        super().__init__(input_size, units, reset_after=reset_after, **options)

    @property
    def reset_after(self) -> bool:
        return self.core.reset_after

    @staticmethod
    def keras_recurrent_bias(options: dict[str, Any]) -> bool:
        return options["reset_after"]


class Bidirectional(KerasRecurrent):
    """Keras ``Bidirectional(layer, merge_mode="concat")``: ``layer`` read forwards and backwards.

    As in Keras, ``layer`` serves as a configuration: two fresh directions are built from it (a
    bidirectional torchseq core), and its own weights are not used. With ``dropout`` both directions
    share one input mask per call (Keras draws one per direction; the same in distribution).
    """

    keras_class = "Bidirectional"

    def __init__(self, layer: Recurrent, merge_mode: str | None = "concat") -> None:
        if not isinstance(layer, Recurrent):
            raise TypeError(
                f"layer: expected a torchseq.keras SimpleRNN, LSTM or GRU, got {type(layer).__name__}"
            )
        check_choice("merge_mode", merge_mode, MERGE_MODES)
        if layer.core.go_backwards:
            raise ValueError("layer: expected go_backwards=False (Bidirectional adds the backward direction)")
        super().__init__(
            dropout=layer.dropout,
            return_sequences=layer.return_sequences,
            return_state=layer.return_state,
            recurrent_dropout=layer.recurrent_dropout,
        )
        self.layer_class = type(layer)
        self.merge_mode = merge_mode
        self.core = layer.core_class(**layer.core_options, bidirectional=True)

    def extra_repr(self) -> str:
        layer = f"{self.layer_class.__name__}({self.core.input_size}, {self.units})"
        return f"{layer}, merge_mode={self.merge_mode!r}"


class Sequential(nn.Sequential):
    """Keras' ``Sequential``: layers in order, a padded batch's ``lengths`` reaching the recurrent ones.

    ``lengths`` (B,) plays the part of the mask a Keras ``Masking`` layer starts: every recurrent layer
    receives it (they are the layers that consume a mask); any other layer is called on the tensor alone.
    """

    def forward(self, inputs: Tensor, lengths: Tensor | None = None) -> Tensor:  # type: ignore[override]
        for layer in self:
            inputs = layer(inputs, lengths=lengths) if isinstance(layer, KerasRecurrent) else layer(inputs)
        return inputs
