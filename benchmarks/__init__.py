"""Custom (explicit-formula) vs fused (oneDNN/native, cuDNN) recurrent layers: timing, memory, GEMM floor.

Run ``python -m benchmarks.run --quick`` (CPU subset) or ``python -m benchmarks.run --device cuda``;
see docs/benchmarks.md.
"""
