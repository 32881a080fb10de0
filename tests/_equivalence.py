"""Run a torchseq layer both ways on the same call and measure how far apart the results are.

"Both ways" means ``impl="custom"`` (the cells' explicit formulas, stepped under autograd or run by
the kernels) against two references: the same module with ``impl="fused"`` (our seam to torch's
kernels) and ``module.to_torch()`` (a real ``torch.nn`` module, fed a ``PackedSequence`` where we
use ``lengths=``). Compared are the output, the final
states and the gradient of one fixed random loss with respect to every parameter, the input and
the initial state.

Shared by the CPU tests, the CUDA tests and ``benchmarks/equivalence_report.py``, so that the figures
the report prints come from exactly the grid the tests assert on.
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import itertools
import math
from dataclasses import dataclass, field

import torch
from hypothesis import settings
from hypothesis import strategies as st
from torch import Tensor, nn
from torch.nn.utils.rnn import PackedSequence, pack_padded_sequence, pad_packed_sequence

import torchseq
from torchseq.compat import named_torch_parameters
from torchseq.kernels import kernels_enabled
from torchseq.recurrent import RecurrentLayers

#: Largest difference allowed between the implementations, per dtype (the project's promise).
TOLERANCE = {torch.float64: 1e-10, torch.float32: 1e-5}
#: ...except against cuDNN in float32, whose tanh and sigmoid are approximations (its ReLU RNN agrees to
#: 1e-5). Measured on an H100 (torch 2.11, cuDNN 9.19, TF32 off): cuDNN's outputs and gradients lie up to
#: 1.7e-4 from the float64 truth where ours lie within 7.5e-6; see ``measure_accuracy``.
CUDNN_FLOAT32_TOLERANCE = 5e-4


def tolerance(dtype: torch.dtype, device: str | torch.device = "cpu") -> float:
    """Largest difference allowed between custom and fused for ``dtype`` on ``device``."""
    if torch.device(device).type == "cuda" and dtype == torch.float32:
        return CUDNN_FLOAT32_TOLERANCE
    return TOLERANCE[dtype]

#: Hypothesis settings of tests parametrized over a grid: each grid point sees hypothesis' simplest
#: shape (T = B = 1) and one random one. No ``derandomize``: it sets ``database=None``, with which
#: hypothesis 6.170 hits a RecursionError after about 950 parametrized tests.
grid_examples = settings(max_examples=2)

#: Cell kinds: the front and its cell-specific options (the LSTM projection is sized from H).
KINDS = ("rnn_tanh", "rnn_relu", "lstm", "lstm_proj", "gru")
#: How the sequence is handed over: a padded tensor, one unbatched (T, F) sequence, a
#: PackedSequence with unsorted lengths, or a padded tensor plus the ``lengths=`` keyword.
INPUTS = ("padded", "unbatched", "packed", "lengths")
#: Bias variants: both biases (torch.nn's default), none, or Keras' single bias (the fused side then
#: runs with a zero ``bias_hh``).
BIASES = ("both", "none", "input_only")


@dataclass(frozen=True)
class Config:
    """One combination of layer options."""

    kind: str
    num_layers: int = 1
    bidirectional: bool = False
    input: str = "padded"
    batch_first: bool = False
    bias: str = "both"
    initial_state: bool = False
    dropout: float = 0.0  # > 0 is compared in eval() mode, where both implementations skip it

    @property
    def id(self) -> str:
        parts = [self.kind, f"L{self.num_layers}", "bi" if self.bidirectional else "uni", self.input]
        parts += ["bf"] if self.batch_first else []
        parts += [] if self.bias == "both" else [f"bias_{self.bias}"]
        parts += ["hx"] if self.initial_state else []
        parts += [f"dropout{self.dropout}"] if self.dropout else []
        return "-".join(parts)

    def build(self, input_size: int, hidden_size: int, **front_options) -> RecurrentLayers:
        """The torchseq layer of this configuration (``impl="custom"``, default init); ``front_options``
        (device, dtype, merge_mode …) go to the constructor as well."""
        options = {
            "num_layers": self.num_layers, "bidirectional": self.bidirectional,
            "batch_first": self.batch_first, "bias": self.bias != "none",
            "recurrent_bias": self.bias == "both", "dropout": self.dropout, **front_options,
        }
        if self.kind.startswith("rnn"):
            return torchseq.RNN(input_size, hidden_size, nonlinearity=self.kind[4:], **options)
        if self.kind.startswith("lstm"):
            proj_size = hidden_size // 2 if self.kind == "lstm_proj" else 0
            return torchseq.LSTM(input_size, hidden_size, proj_size=proj_size, **options)
        return torchseq.GRU(input_size, hidden_size, **options)


def option_grid() -> list[Config]:
    """Every combination of kind, depth, direction, input form, layout, bias and initial state."""
    axes = (KINDS, (1, 2, 3), (False, True), INPUTS, (False, True), BIASES, (False, True))
    return [Config(*values) for values in itertools.product(*axes)]


def float32_grid() -> list[Config]:
    """The options that shape the computation, for the float32 check on larger shapes.

    Bias variants and the batch-first layout move no arithmetic (they are checked in float64).
    """
    return [config for config in option_grid()
            if config.num_layers == 2 and config.bias == "both" and not config.batch_first]


def dropout_grid() -> list[Config]:
    """Stacks with dropout between layers (compared in eval mode)."""
    return [Config(kind, num_layers, bidirectional, "lengths", dropout=0.5)
            for kind, num_layers, bidirectional in itertools.product(KINDS, (2, 3), (False, True))]


@dataclass(frozen=True)
class Shape:
    """Sizes of one call; ``lengths`` (one per batch entry) is used by the packed and lengths inputs."""

    steps: int
    batch: int
    input_size: int
    hidden_size: int
    lengths: tuple[int, ...]


#: A fixed, moderately sized call for the report (unsorted lengths, the longest shorter than T).
REPORT_SHAPE = Shape(steps=9, batch=5, input_size=6, hidden_size=8, lengths=(7, 2, 8, 1, 5))


@st.composite
def shapes(draw: st.DrawFn, max_steps: int = 6, max_batch: int = 4, max_features: int = 5) -> Shape:
    """Small shapes; ``hidden_size ≥ 2`` leaves room for a projection ``hidden_size // 2 ≥ 1``."""
    steps = draw(st.integers(1, max_steps))
    batch = draw(st.integers(1, max_batch))
    lengths = draw(st.lists(st.integers(1, steps), min_size=batch, max_size=batch))
    return Shape(steps, batch, draw(st.integers(1, max_features)), draw(st.integers(2, max_features)),
                 tuple(lengths))


@dataclass
class Outcome:
    """What one implementation produced: output, final states and named gradients."""

    output: Tensor
    states: tuple[Tensor, ...]
    gradients: dict[str, Tensor] = field(default_factory=dict)


@dataclass(frozen=True)
class Differences:
    """Max abs differences between two outcomes, each scaled by the reference tensor's magnitude where
    that exceeds 1 (see :func:`compare`). ``input_grad`` covers the input and hx."""

    output: float
    states: float
    parameter_grads: float
    input_grad: float

    @property
    def overall(self) -> float:
        return max(self.output, self.states, self.parameter_grads, self.input_grad)

    def worst(self, other: Differences) -> Differences:
        return Differences(*(max(a, b) for a, b in zip(self.as_tuple(), other.as_tuple(), strict=True)))

    def as_tuple(self) -> tuple[float, float, float, float]:
        return self.output, self.states, self.parameter_grads, self.input_grad


# -- one call, run by any module -----------------------------------------------------------------------
@dataclass
class Call:
    """The arguments of one forward call (padded input in the module's layout) and the loss weights."""

    config: Config
    shape: Shape
    input: Tensor
    hx: tuple[Tensor, ...] | None
    lengths: Tensor | None
    generator_seed: int


def make_call(config: Config, shape: Shape, module: RecurrentLayers, seed: int) -> Call:
    """Random input (and hx) for ``module``, drawn in float64 on the CPU so that every device and dtype
    sees the same numbers (rounded)."""
    generator = torch.Generator().manual_seed(seed)
    parameter = module.cells[0].weight_ih
    factory = {"device": parameter.device, "dtype": parameter.dtype}
    batch = () if config.input == "unbatched" else (shape.batch,)
    if not batch:
        dims = (shape.steps, shape.input_size)
    else:
        dims = (shape.batch, shape.steps, shape.input_size) if config.batch_first else \
            (shape.steps, shape.batch, shape.input_size)
    x = torch.randn(dims, generator=generator, dtype=torch.float64).to(**factory)
    hx = None
    if config.initial_state:
        leading = (module.num_layers * module.directions, *batch)
        hx = tuple(torch.randn(*leading, size, generator=generator, dtype=torch.float64).to(**factory)
                   for size in module.state_sizes())
    lengths = torch.tensor(shape.lengths) if config.input in ("packed", "lengths") else None
    return Call(config, shape, x, hx, lengths, seed)


def run(module: nn.Module, call: Call) -> Outcome:
    """Forward ``call`` through ``module`` (torchseq or torch.nn), then backward a fixed random loss."""
    x = call.input.detach().clone().requires_grad_()
    hx = None if call.hx is None else tuple(state.detach().clone().requires_grad_() for state in call.hx)
    hx_argument = hx if hx is None or len(hx) > 1 else hx[0]
    # torch.nn has no lengths=: it gets the same sequences packed.
    torch_with_lengths = call.lengths is not None and not isinstance(module, RecurrentLayers)
    if call.config.input == "packed" or torch_with_lengths:
        sequence = pack_padded_sequence(x, call.lengths, batch_first=call.config.batch_first,
                                        enforce_sorted=False)
        output, final = module(sequence, hx_argument)
    elif call.lengths is not None:
        output, final = module(x, hx_argument, lengths=call.lengths)
    else:
        output, final = module(x, hx_argument)
    if isinstance(output, PackedSequence):
        output, _ = pad_packed_sequence(output, batch_first=call.config.batch_first,
                                        total_length=call.shape.steps)
    states = final if isinstance(final, tuple) else (final,)

    generator = torch.Generator().manual_seed(call.generator_seed + 1)
    loss = sum((tensor * torch.randn(tensor.shape, generator=generator, dtype=torch.float64)
                .to(tensor.device, tensor.dtype)).sum() for tensor in (output, *states))
    named = {"input": x} | {f"hx[{k}]": state for k, state in enumerate(hx or ())}
    named |= torch_named_parameters(module)
    gradients = torch.autograd.grad(loss, list(named.values()))
    return Outcome(output.detach(), tuple(s.detach() for s in states),
                   dict(zip(named, gradients, strict=True)))


def torch_named_parameters(module: nn.Module) -> dict[str, Tensor]:
    """Parameters under torch.nn's names (``weight_ih_l0`` …) for a torchseq or a torch.nn module."""
    if isinstance(module, RecurrentLayers):
        named = named_torch_parameters(module.cells, module.directions)
        return {name: parameter for name, _, parameter in named}
    return dict(module.named_parameters())


def compare(ours: Outcome, reference: Outcome) -> Differences:
    """Max abs differences; every gradient of ``ours`` must have a counterpart in ``reference``.

    A tensor whose largest magnitude m exceeds 1 has its difference divided by m: rounding scales
    with magnitude, and float32 gradients of a ReLU RNN over a dozen steps reach 50, where one ulp is
    4e-6 and two summation orders differ by a few. For tensors within [-1, 1] (the outputs and states
    of every cell but the ReLU RNN) this is the plain max abs difference.
    """
    def gap(a: Tensor, b: Tensor) -> float:
        assert a.shape == b.shape, f"shapes differ: {tuple(a.shape)} vs {tuple(b.shape)}"
        if not a.numel():
            return 0.0
        difference = ((a - b).abs().max() / b.abs().max().clamp(min=1.0)).item()
        # NaN would vanish in the max() below (max(0.0, nan) is 0.0): score any non-finite value as inf.
        return difference if math.isfinite(difference) else math.inf

    missing = set(ours.gradients) - set(reference.gradients)
    assert not missing, f"the reference has no gradient for {sorted(missing)}"
    assert len(ours.states) == len(reference.states)
    by_kind: dict[bool, list[float]] = {True: [0.0], False: [0.0]}
    for name, gradient in ours.gradients.items():
        by_kind[name == "input" or name.startswith("hx")].append(gap(gradient, reference.gradients[name]))
    return Differences(
        output=gap(ours.output, reference.output),
        states=max(gap(a, b) for a, b in zip(ours.states, reference.states, strict=True)),
        parameter_grads=max(by_kind[False]),
        input_grad=max(by_kind[True]),
    )


def measure(config: Config, shape: Shape, *, seed: int, device: str | torch.device = "cpu",
            dtype: torch.dtype = torch.float64) -> dict[str, Differences]:
    """Differences of both custom paths from both references, for one call.

    The custom paths are the cells' formulas stepped under autograd (kernels switched off) and the
    default, the same formulas run by :mod:`torchseq.kernels` with their hand-derived BPTT; the
    references are ``impl="fused"`` and ``to_torch()``. Keys read ``"custom path vs reference"``.
    """
    torch.manual_seed(seed)
    module = config.build(shape.input_size, shape.hidden_size, device=device, dtype=dtype)
    module.train(config.dropout == 0)  # dropout masks are random: compare stacks with dropout in eval()
    call = make_call(config, shape, module, seed)
    with kernels_enabled(False):
        customs = {"step": run(module, call)}
    customs["kernel"] = run(module, call)
    module.impl = "fused"
    # cuDNN cannot differentiate in eval mode (dropout stacks): there torch's native CUDA kernel stands in.
    # (Only ever call cudnn.flags to disable: its defaults would also switch TF32 back on.)
    with contextlib.nullcontext() if module.training else torch.backends.cudnn.flags(enabled=False):
        references = {"fused": run(module, call), "torch.nn": run(module.to_torch(), call)}
    return {f"{path} vs {name}": compare(custom, reference)
            for path, custom in customs.items() for name, reference in references.items()}


def measure_accuracy(config: Config, shape: Shape, *, seed: int,
                     device: str | torch.device = "cpu") -> dict[str, Differences]:
    """How far each float32 implementation lies from the float64 truth: the cells' formulas stepped in
    float64 on the very same (float32-rounded) weights and inputs."""
    torch.manual_seed(seed)
    module = config.build(shape.input_size, shape.hidden_size, device=device, dtype=torch.float32)
    call = make_call(config, shape, module, seed)
    exact_call = dataclasses.replace(call, input=call.input.double(),
                                     hx=None if call.hx is None else tuple(s.double() for s in call.hx))
    with kernels_enabled(False):
        truth = run(copy.deepcopy(module).double(), exact_call)
        results = {"custom step": run(module, call)}
    results["custom kernel"] = run(module, call)
    module.impl = "fused"
    results["fused"] = run(module, call)
    return {name: compare(outcome, truth) for name, outcome in results.items()}


def assert_equivalent(differences: dict[str, Differences], dtype: torch.dtype,
                      device: str | torch.device = "cpu") -> None:
    """Fail with the offending figures when any difference exceeds the tolerance of ``dtype``."""
    allowed = tolerance(dtype, device)
    too_far = {reference: d for reference, d in differences.items() if not d.overall <= allowed}
    assert not too_far, f"custom differs from the reference by more than {allowed:g}: {too_far}"
