"""What every recurrent cell shares: parameters in PyTorch's layout and the split of a step in two.

A step of any cell here is ``state_t = recur(W_ih x_t + b_ih, state_{t-1})``. Splitting off the input
projection lets a layer compute it for all timesteps in one GEMM (the expensive half of the FLOPs) and
loop only over the recurrent part. ``forward`` is the one-step API of ``torch.nn.*Cell``.
"""

from __future__ import annotations

from typing import TypeAlias

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from torchseq.checks import check_positive_int
from torchseq.init import initialise_cell_

#: A cell's recurrent state: ``h`` for RNN/GRU, ``(h, c)`` for the LSTM.
State: TypeAlias = Tensor | tuple[Tensor, Tensor]


class RecurrentCell(nn.Module):
    """Base of the explicit-formula cells; subclasses define ``gates`` and ``recur``.

    Parameters are named and shaped exactly as in ``torch.nn.RNNCell/LSTMCell/GRUCell`` so that
    ``load_state_dict`` works in both directions. ``recurrent_bias=False`` drops ``bias_hh`` and keeps
    one bias per gate, as Keras layers have (only their sum ever mattered).
    """

    #: Gate names in the order PyTorch stacks them in ``weight_ih``/``weight_hh``.
    gates: tuple[str, ...] = ()
    #: Index of the forget gate in ``gates`` (LSTM only), used by the Keras initialisation.
    forget_gate_index: int | None = None
    #: Whether a layer may run ``recur`` through the traced fast path (:mod:`torchseq.kernels.generic`)
    #: when the cell has no hand-written kernel; False keeps the step-by-step autograd reference.
    fast_path: bool = True
    #: Whether that fast path runs the step compiled by AOTInductor from a C++ loop (about 15 s of
    #: compiling per cell type, batch size, dtype and thread count, kept on disk) instead of TorchScript loops
    #: (:mod:`torchseq.kernels.compiled_steps`).
    compiled_step: bool = False

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        bias: bool = True,
        *,
        recurrent_bias: bool = True,
        recurrent_size: int | None = None,
        init: str = "torch",
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__()
        check_positive_int("input_size", input_size)
        check_positive_int("hidden_size", hidden_size)
        factory = {"device": device, "dtype": dtype}
        stacked = len(self.gates) * hidden_size
        self.input_size = input_size
        self.hidden_size = hidden_size
        self.bias = bias
        self.recurrent_bias = bias and recurrent_bias
        self.init = init
        # recurrent_size differs from hidden_size only for the projected LSTM (h has size P < H).
        recurrent_size = hidden_size if recurrent_size is None else recurrent_size
        self.weight_ih = nn.Parameter(torch.empty(stacked, input_size, **factory))
        self.weight_hh = nn.Parameter(torch.empty(stacked, recurrent_size, **factory))
        if bias:
            self.bias_ih = nn.Parameter(torch.empty(stacked, **factory))
        else:
            self.register_parameter("bias_ih", None)
        if self.recurrent_bias:
            self.bias_hh = nn.Parameter(torch.empty(stacked, **factory))
        else:
            self.register_parameter("bias_hh", None)

    def reset_parameters(self, init: str | None = None) -> None:
        """(Re)initialise with ``init`` (default: the scheme given at construction)."""
        initialise_cell_(self, init or self.init)

    # -- the two halves of a step ---------------------------------------------------------------
    def input_projection(self, x: Tensor) -> Tensor:
        """W_ih x + b_ih for any leading shape, e.g. all timesteps at once: (T, B, I) → (T, B, G·H)."""
        return F.linear(x, self.weight_ih, self.bias_ih)

    def recur(self, projected_input: Tensor, state: State) -> State:
        """One step of the recurrence given the projected input (B, G·H) and the previous state."""
        raise NotImplementedError

    # -- state helpers ----------------------------------------------------------------------------
    @property
    def output_size(self) -> int:
        """Size of h (the LSTM's projection makes it smaller than hidden_size)."""
        return self.weight_hh.shape[1]

    def initial_state(self, batch_size: int, like: Tensor) -> State:
        return like.new_zeros(batch_size, self.output_size)

    @property
    def computes_as(self) -> type[RecurrentCell]:
        """The cell class whose formulas this cell computes now: its own type, except for a cell that
        wraps a built-in one and currently adds nothing to it (a regulariser in ``eval()``), which
        names that built-in class so that its hand-written kernel runs it."""
        return type(self)

    @staticmethod
    def hidden(state: State) -> Tensor:
        """The part of the state that is the cell's output, h."""
        return state[0] if isinstance(state, tuple) else state

    # -- the torch.nn.*Cell one-step API ----------------------------------------------------------
    def forward(self, input: Tensor, hx: State | None = None) -> State:
        from torchseq.checks import check_cell_call  # local: checks imports cells for type names

        batched, hx = check_cell_call(self, input, hx)
        if not batched:
            input = input.unsqueeze(0)
            if hx is not None:
                hx = tuple(s.unsqueeze(0) for s in hx) if isinstance(hx, tuple) else hx.unsqueeze(0)
        if hx is None:
            hx = self.initial_state(input.shape[0], input)
        state = self.recur(self.input_projection(input), hx)
        if not batched:
            state = tuple(s.squeeze(0) for s in state) if isinstance(state, tuple) else state.squeeze(0)
        return state

    def extra_repr(self) -> str:
        return f"{self.input_size}, {self.hidden_size}, bias={self.bias}, init={self.init!r}"
