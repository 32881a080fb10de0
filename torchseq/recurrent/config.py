"""The options of a recurrent layer, written once: validated on construction, frozen, and the
``torch.nn`` constructor arguments derived from them."""

from __future__ import annotations

import dataclasses
import numbers
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from torchseq.checks import IntOptionError, check_bool, check_choice, check_positive_int
from torchseq.compat import TORCH_OPTIONS
from torchseq.init import INIT_SCHEMES
from torchseq.recurrent.bidirectional import MERGE_MODES

IMPLS = ("custom", "fused")
#: Options that can be changed on a built layer and take effect at its next call, as in ``torch.nn``;
#: the others shape the parameters.
MUTABLE_OPTIONS = ("batch_first", "dropout", "merge_mode", "go_backwards", "stateful", "check_finite", "impl")


def check_size(name: str, value: Any) -> None:
    """A positive int, refused with torch.nn's wording too (which code written for it may look for)."""
    try:
        check_positive_int(name, value)
    except IntOptionError as error:
        torch_wording = f"{name} must be greater than zero" if isinstance(value, int) else \
            f"{name} should be of type int, got: {type(value).__name__}"
        raise IntOptionError(f"{error} ({torch_wording})") from None


@dataclass(frozen=True)
class RecurrentConfig:
    """Everything a recurrent layer is built from, besides its cell class, device and dtype.

    ``cell_options`` go to every cell's constructor (``proj_size``, ``nonlinearity``, ``reset_after`` or
    a custom cell's own). ``recurrent_bias`` is False when ``bias`` is: a layer without biases has no
    recurrent one either.
    """

    input_size: int
    hidden_size: int
    num_layers: int = 1
    bias: bool = True
    batch_first: bool = False
    dropout: float = 0.0
    bidirectional: bool = False
    merge_mode: str | None = "concat"
    go_backwards: bool = False
    stateful: bool = False
    check_finite: bool = False
    init: str = "torch"
    recurrent_bias: bool = True
    impl: str = "custom"
    cell_options: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for name in ("input_size", "hidden_size", "num_layers"):
            check_size(name, getattr(self, name))
        for name in ("bias", "batch_first", "bidirectional", "go_backwards", "stateful", "check_finite",
                     "recurrent_bias"):
            check_bool(name, getattr(self, name))
        # torch.nn's rule: any real number in [0, 1], but not a bool.
        if isinstance(self.dropout, bool) or not isinstance(self.dropout, numbers.Real) \
                or not 0.0 <= self.dropout <= 1.0:
            raise ValueError(f"dropout: expected a probability in [0, 1], got {self.dropout!r}")
        check_choice("merge_mode", self.merge_mode, MERGE_MODES)
        if self.merge_mode != "concat" and not self.bidirectional:
            raise ValueError(
                f"merge_mode: {self.merge_mode!r} needs bidirectional=True (got bidirectional=False)"
            )
        check_choice("init", self.init, INIT_SCHEMES)
        check_choice("impl", self.impl, IMPLS)
        object.__setattr__(self, "dropout", float(self.dropout))
        object.__setattr__(self, "recurrent_bias", self.bias and self.recurrent_bias)
        object.__setattr__(self, "cell_options", dict(self.cell_options))

    @property
    def directions(self) -> int:
        return 2 if self.bidirectional else 1

    def replace(self, **changes: Any) -> RecurrentConfig:
        """A validated copy with ``changes``."""
        return dataclasses.replace(self, **changes)

    def torch_config(self, cell_options: Iterable[str] = ()) -> dict[str, Any]:
        """Constructor arguments of the equivalent ``torch.nn`` module, in (T, B, F) layout (what the
        fronts hand a fused kernel), with the named ``cell_options`` that ``torch.nn`` shares."""
        shared = {name: self.cell_options[name] for name in cell_options if name in self.cell_options}
        return {name: getattr(self, name) for name in TORCH_OPTIONS} | {"batch_first": False} | shared
