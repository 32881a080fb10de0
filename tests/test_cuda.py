"""The equivalence checks of test_equivalence.py on CUDA, where the fused side is cuDNN.

cuDNN has no float64 RNNs, so float64 compares against torch's native CUDA kernel (≤ 1e-10); float32
compares against cuDNN itself, with TF32 off so that both sides multiply in float32. There cuDNN's
approximate tanh/sigmoid, not ours, set the gap (``CUDNN_FLOAT32_TOLERANCE``): ours stay within 1e-5 of
the float64 truth, which ``test_float32_custom_is_within_1e_5_of_the_float64_truth`` checks.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import torch
from _equivalence import (
    KINDS,
    REPORT_SHAPE,
    Config,
    Shape,
    assert_equivalent,
    dropout_grid,
    float32_grid,
    grid_examples,
    measure,
    measure_accuracy,
    option_grid,
    shapes,
)
from hypothesis import given, settings
from hypothesis import strategies as st

import torchseq
from torchseq.recurrent.config import IMPLS

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(),
                                reason="needs CUDA (torch.cuda.is_available() is False)")
seeds = st.integers(0, 2**16)


@pytest.fixture(autouse=True)
def no_tf32() -> Iterator[None]:
    """float32 means float32: no TF32 in cuBLAS or cuDNN while a test runs."""
    previous = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    yield
    torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = previous


@pytest.mark.parametrize("config", option_grid(), ids=lambda config: config.id)
@grid_examples
@given(shape=shapes(), seed=seeds)
def test_float64_option_grid_on_cuda(config: Config, shape: Shape, seed: int) -> None:
    assert_equivalent(measure(config, shape, seed=seed, device="cuda", dtype=torch.float64), torch.float64)


@pytest.mark.parametrize("config", option_grid(), ids=lambda config: config.id)
@grid_examples
@given(shape=shapes(), seed=seeds)
def test_float32_option_grid_against_cudnn(config: Config, shape: Shape, seed: int) -> None:
    assert_equivalent(measure(config, shape, seed=seed, device="cuda", dtype=torch.float32),
                      torch.float32, "cuda")


@pytest.mark.parametrize("config", float32_grid(), ids=lambda config: config.id)
@settings(max_examples=3)
@given(shape=shapes(max_steps=12, max_batch=6, max_features=16), seed=seeds)
def test_float32_larger_shapes_against_cudnn(config: Config, shape: Shape, seed: int) -> None:
    assert_equivalent(measure(config, shape, seed=seed, device="cuda", dtype=torch.float32),
                      torch.float32, "cuda")


@pytest.mark.parametrize("config", dropout_grid(), ids=lambda config: config.id)
@grid_examples
@given(shape=shapes(), seed=seeds)
def test_dropout_between_layers_in_eval_mode_on_cuda(config: Config, shape: Shape, seed: int) -> None:
    assert_equivalent(measure(config, shape, seed=seed, device="cuda", dtype=torch.float64), torch.float64)


@pytest.mark.parametrize("kind", KINDS)
def test_float32_custom_is_within_1e_5_of_the_float64_truth(kind: str) -> None:
    accuracy = measure_accuracy(Config(kind, 2, True, "lengths"), REPORT_SHAPE, seed=0, device="cuda")
    worst = max(differences.overall for name, differences in accuracy.items() if name.startswith("custom"))
    assert worst <= 1e-5, accuracy


@pytest.mark.parametrize("impl", IMPLS)
def test_lengths_may_live_on_the_gpu(impl: str) -> None:
    layer = torchseq.GRU(3, 4, impl=impl, device="cuda")
    x = torch.randn(5, 2, 3, device="cuda")
    on_cpu, _ = layer(x, lengths=torch.tensor([5, 3]))
    on_gpu, _ = layer(x, lengths=torch.tensor([5, 3], device="cuda"))
    assert torch.equal(on_cpu, on_gpu)


@pytest.mark.parametrize("impl", IMPLS)
def test_a_cpu_tensor_for_a_gpu_layer_is_refused(impl: str) -> None:
    layer = torchseq.LSTM(3, 4, impl=impl, device="cuda")
    x = torch.randn(5, 2, 3, device="cuda")
    with pytest.raises(ValueError, match=r"input: expected device cuda:0 \(the parameters'\), got cpu"):
        layer(x.cpu())
    with pytest.raises(ValueError, match=r"hx\[0\]: expected device cuda:0 \(the parameters'\), got cpu"):
        layer(x, (torch.zeros(1, 2, 4), torch.zeros(1, 2, 4, device="cuda")))


def test_cells_on_cuda_equal_torch_cells() -> None:
    torch.manual_seed(0)
    for ours, theirs in ((torchseq.LSTMCell(3, 4, device="cuda"), torch.nn.LSTMCell(3, 4, device="cuda")),
                         (torchseq.GRUCell(3, 4, device="cuda"), torch.nn.GRUCell(3, 4, device="cuda"))):
        ours.load_state_dict(theirs.state_dict())
        x = torch.randn(2, 3, device="cuda")
        expected, actual = theirs(x), ours(x)
        for a, e in zip(actual if isinstance(actual, tuple) else (actual,),
                        expected if isinstance(expected, tuple) else (expected,), strict=True):
            torch.testing.assert_close(a, e, rtol=0, atol=1e-5)
