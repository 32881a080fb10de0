"""Fast kernels for the custom path: explicit forward loops and hand-derived BPTT, one per cell type.

A cell's ``recur`` is the reference: readable, one step, differentiated by autograd. Run step by step it
costs a dozen small ops per step forward and more backward, each recorded by autograd; for small shapes
that overhead, not the arithmetic, is the time. A kernel computes the same recurrence for a whole
sequence:

- a ``torch.autograd.Function`` per cell that takes x and the weights;
- the input projection of every timestep, with every bias that is simply added folded in, as one GEMM
  into the kernel's own buffer, which the loop turns into gates in place;
- a forward loop over only the recurrent GEMM and as few in-place pointwise ops as the formulas allow,
  writing into preallocated (T, B, ·) buffers whose per-step views are made once (and, for small steps
  on CPU, kept between calls: :mod:`torchseq.kernels.workspace`), with no autograd graph;
- a backward that walks the steps in reverse with the hand-derived gradients of the gate formulas.
  Every factor that does not depend on the recurrence is computed for all timesteps before the loop;
  dW_hh, dW_ih, db and dx are one GEMM or sum each over all timesteps after it.

:class:`torchseq.recurrent.Unroll` asks :func:`find_kernel` first and falls back to stepping the cell.
Variable lengths cost nothing inside the loop (see :func:`torchseq.kernels.base.last_valid`); the
reverse direction is ``Unroll``'s time flip around the kernel. Higher-order gradients are exact: a
backward that autograd records (``create_graph=True``) differentiates the kernel's formulas written with
ordinary ops instead of running the hand-written loop. Under ``torch.func`` transforms (``grad``,
``vmap``, ``jacrev`` …) :func:`find_kernel` hands the layer to the step-by-step reference.
"""

from torchseq.kernels.dispatch import Kernel, find_kernel, kernels_are_enabled, kernels_enabled

__all__ = ["Kernel", "find_kernel", "kernels_are_enabled", "kernels_enabled"]
