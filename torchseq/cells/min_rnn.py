"""minGRU and minLSTM (Feng et al. 2024): gates that read only the input, so a whole sequence is a
linear recurrence h_t = a_t ⊙ h_{t-1} + b_t, computed for all t at once by a scan in log space."""

from __future__ import annotations

import torch
from torch import Tensor
from torch.nn import functional as F

from torchseq.cells.base import RecurrentCell
from torchseq.init import initialise_input_side_


def g(x: Tensor) -> Tensor:
    """The paper's positive activation for the candidate state: x + ½ for x ≥ 0, σ(x) below."""
    return torch.where(x >= 0, x + 0.5, torch.sigmoid(x))


def log_g(x: Tensor) -> Tensor:
    """log g(x), computed without forming g (σ(x) underflows for very negative x)."""
    return torch.where(x >= 0, torch.log(F.relu(x) + 0.5), -F.softplus(-x))


def scan_in_log_space(log_a: Tensor, log_b: Tensor, h0: Tensor) -> Tensor:
    r"""All :math:`h_t = a_t h_{t-1} + b_t` (T, B, H) at once, with a_t, b_t > 0 given as logarithms
    (Heinsen 2023, "Efficient Parallelization of a Ubiquitous Sequential Computation", arXiv:2311.06281):

    .. math::
        a^*_t = \textstyle\sum_{k \le t} \log a_k, \qquad
        h_t = e^{a^*_t} h_0 + \exp\big(a^*_t + \operatorname{logcumsumexp}_{k \le t}(\log b_k - a^*_k)\big)

    h_0 enters linearly, so it may have any sign. Float32 input is scanned in float64: a*_t grows like
    t, and its rounding error, carried into every later step, put float32 scans of 200 steps 1.5e-5 off
    the step-by-step recurrence.
    """
    dtype = log_a.dtype
    if dtype == torch.float32:
        log_a, log_b, h0 = log_a.double(), log_b.double(), h0.double()
    a_star = log_a.cumsum(0)
    h = a_star.exp() * h0 + (a_star + torch.logcumsumexp(log_b - a_star, dim=0)).exp()
    return h.to(dtype)


class MinimalCell(RecurrentCell):
    """What minGRU and minLSTM share: no recurrent weights, a log-space ``parallel_scan``."""

    def __init__(self, input_size: int, hidden_size: int, bias: bool = True, **options) -> None:
        super().__init__(input_size, hidden_size, bias, **options)
        del self.weight_hh, self.bias_hh  # the gates read only x_t
        self.register_parameter("weight_hh", None)
        self.register_parameter("bias_hh", None)
        self.reset_parameters()

    @property
    def output_size(self) -> int:
        return self.hidden_size

    def reset_parameters(self, init: str | None = None) -> None:
        initialise_input_side_(self.weight_ih, (self.bias_ih,), self.hidden_size, init or self.init)

    def coefficients_in_log_space(self, projected: Tensor) -> tuple[Tensor, Tensor]:
        """(log a_t, log b_t) of the linear recurrence, from the projected input (T, B, G·H)."""
        raise NotImplementedError

    def parallel_scan(self, projected: Tensor, h0: Tensor) -> Tensor:
        """Every h_t (T, B, H) from the projected input (T, B, G·H) and h_0 (B, H), with no loop."""
        return scan_in_log_space(*self.coefficients_in_log_space(projected), h0)


class MinGRUCell(MinimalCell):
    r"""minGRU (gate order z, h).

    .. math::
        \begin{aligned}
        z_t &= \sigma(W_{iz} x_t + b_{iz}) \qquad \tilde h_t = g(W_{ih} x_t + b_{ih}) \\
        h_t &= (1 - z_t) \odot h_{t-1} + z_t \odot \tilde h_t
        \end{aligned}

    with :math:`g(x) = x + \tfrac12` for :math:`x \ge 0` and :math:`\sigma(x)` below (positive, so that
    the scan can run in log space). Feng, Tung, Ahmed, Bengio & Hajimirsadeghi, "Were RNNs All We
    Needed?", arXiv:2410.01201 (2024), section 3.1 and appendix.
    """

    gates = ("z", "h")

    def recur(self, projected_input: Tensor, h: Tensor) -> Tensor:
        k_z, k_h = projected_input.chunk(2, dim=-1)
        z = torch.sigmoid(k_z)
        return (1 - z) * h + z * g(k_h)

    def coefficients_in_log_space(self, projected: Tensor) -> tuple[Tensor, Tensor]:
        k_z, k_h = projected.chunk(2, dim=-1)
        return -F.softplus(k_z), -F.softplus(-k_z) + log_g(k_h)     # log(1 − z), log z + log h̃


class MinLSTMCell(MinimalCell):
    r"""minLSTM (gate order f, i, h), with the gates normalised to sum to one.

    .. math::
        \begin{aligned}
        f_t &= \sigma(W_{if} x_t + b_{if}) \qquad i_t = \sigma(W_{ii} x_t + b_{ii}) \qquad
        \tilde h_t = g(W_{ih} x_t + b_{ih}) \\
        f'_t &= \frac{f_t}{f_t + i_t} \qquad i'_t = \frac{i_t}{f_t + i_t} \\
        h_t &= f'_t \odot h_{t-1} + i'_t \odot \tilde h_t
        \end{aligned}

    Feng, Tung, Ahmed, Bengio & Hajimirsadeghi, "Were RNNs All We Needed?", arXiv:2410.01201 (2024),
    section 3.2 and appendix.
    """

    gates = ("f", "i", "h")

    def recur(self, projected_input: Tensor, h: Tensor) -> Tensor:
        k_f, k_i, k_h = projected_input.chunk(3, dim=-1)
        f, i = torch.sigmoid(k_f), torch.sigmoid(k_i)
        return (f * h + i * g(k_h)) / (f + i)

    def coefficients_in_log_space(self, projected: Tensor) -> tuple[Tensor, Tensor]:
        k_f, k_i, k_h = projected.chunk(3, dim=-1)
        difference = F.softplus(-k_f) - F.softplus(-k_i)                   # log i − log f
        return -F.softplus(difference), -F.softplus(-difference) + log_g(k_h)  # log f', log i' + log h̃
