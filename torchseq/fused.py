"""The one seam with ``torch.nn``'s fused kernels (oneDNN/native on CPU, cuDNN on CUDA).

Our layers keep their parameters in their cells. To run the fused kernel on those very tensors (so
gradients land on the same parameters) we call a *parameter-less template* ``torch.nn.LSTM`` (built on
the meta device, never holding memory) through ``torch.func.functional_call``, handing it our
parameters under the names ``torch.nn`` uses: ``weight_ih_l{k}[_reverse]`` and friends.
"""

from __future__ import annotations

from collections.abc import Iterator

from torch import Tensor, nn
from torch.func import functional_call
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from torchseq.cells.base import RecurrentCell

PARAMETER_NAMES = ("weight_ih", "weight_hh", "bias_ih", "bias_hh", "weight_hr")


def torch_parameter_name(name: str, layer: int, reverse: bool) -> str:
    """``weight_ih`` of layer 1's backward cell → ``weight_ih_l1_reverse``."""
    return f"{name}_l{layer}{'_reverse' if reverse else ''}"


def cell_parameter_names(cell: RecurrentCell) -> list[str]:
    """The parameters ``cell`` has, in torch.nn's order (w_ih, w_hh, b_ih, b_hh, w_hr): biases and the
    projection may be absent."""
    return [name for name in PARAMETER_NAMES if getattr(cell, name, None) is not None]


def torch_parameter_slots(
    cells: list[RecurrentCell], directions: int
) -> Iterator[tuple[str, RecurrentCell, str]]:
    """Yield (torch.nn name, the cell holding that parameter, its name there) for every cell in nn order."""
    for index, cell in enumerate(cells):
        layer, direction = divmod(index, directions)
        for name in cell_parameter_names(cell):
            yield torch_parameter_name(name, layer, direction == 1), cell, name


def named_torch_parameters(
    cells: list[RecurrentCell], directions: int
) -> Iterator[tuple[str, str, nn.Parameter]]:
    """Yield (torch.nn name, the cell's own attribute name, parameter) for every cell in nn order."""
    for torch_name, cell, name in torch_parameter_slots(cells, directions):
        yield torch_name, name, getattr(cell, name)


def make_template(torch_class: type[nn.RNNBase], **config) -> nn.RNNBase:
    """An ``nn.RNN/LSTM/GRU`` with our configuration and no real memory (meta device)."""
    return torch_class(**config, device="meta")


def run_fused(
    template: nn.RNNBase,
    parameters: dict[str, Tensor],
    x: Tensor,
    hx: Tensor | tuple[Tensor, Tensor],
    lengths: Tensor | None,
) -> tuple[Tensor, Tensor | tuple[Tensor, Tensor]]:
    """Fused forward of x (T, B, I) with lengths (B,) or None; returns output (T, B, ·) and final states."""
    steps = x.shape[0]
    sequence = x if lengths is None else pack_padded_sequence(x, lengths, enforce_sorted=False)
    output, final = functional_call(template, parameters, (sequence, hx))
    if lengths is not None:
        output, _ = pad_packed_sequence(output, total_length=steps)
    return output, final
