# Adapted from PyTorch's test/test_modules.py (TestModule), which is
# Copyright (c) 2016- Facebook, Inc. and the PyTorch contributors, BSD-3-Clause; see LICENSE-PYTORCH.
"""PyTorch's ``TestModule`` tests over the ``module_db`` entries for ``nn.RNN``, ``nn.GRU`` and ``nn.LSTM``.

``module_db`` and its input generators come from the installed torch
(``torch.testing._internal.common_modules``); the test functions, which torch does not ship, are
adapted here. Each test runs per (module, dtype, train/eval mode), as upstream's ``@modules`` decorator
instantiates it on the CPU, and per layer family: the ModuleInfo is copied with its ``module_cls``
replaced by ``torch.nn``'s own class or by torchseq's front pinned to ``impl="custom"`` / ``"fused"``.

Adaptations (the checks are unchanged):

- ``test_pickle`` loads with ``torch.load(..., weights_only=False)``: it pickles a whole module, which
  ``torch.load``'s safe default has refused since torch 2.6.
- ``test_check_inplace`` has no ``module_db`` entry for these modules (none takes ``inplace``), so it is
  not vendored.

Not vendored: ``test_multiple_device_transfer`` and ``test_cpu_gpu_parity`` (CUDA only).

Reduced by default, to keep the suite's run time small (``TORCHSEQ_TORCH_TESTS=full`` runs everything):
the tests that run a backward pass (``test_non_contiguous_tensors``, ``test_grad``, ``test_gradgrad``,
``test_memory_format``) use a subset of each module's inputs that still sets every constructor flag
(bias, batch_first, bidirectional, nonlinearity, proj_size) both ways and passes ``hx`` or not (see
:func:`covering_inputs`); ``test_grad`` / ``test_gradgrad`` check the partial derivatives (one
parameter at a time) on the first of those inputs only, the total derivative on all of them. Every
other test runs on every input, as upstream.
"""

from __future__ import annotations

import copy
import os
import tempfile
from dataclasses import dataclass
from itertools import chain, product
from operator import methodcaller
from unittest.mock import patch

import pytest
import torch
from torch._subclasses.meta_utils import assert_metadata_eq
from torch.testing._internal.common_modules import ModuleErrorEnum, ModuleInfo, module_db
from torch.testing._internal.common_utils import (
    freeze_rng_state,
    get_tensors_from,
    gradcheck,
    gradgradcheck,
    mock_wrapper,
)
from torch.utils._pytree import tree_flatten, tree_unflatten

DEVICE = "cpu"
FULL = os.environ.get("TORCHSEQ_TORCH_TESTS") == "full"
RECURRENT = [info for info in module_db if info.module_cls in (torch.nn.RNN, torch.nn.GRU, torch.nn.LSTM)]


@dataclass(frozen=True)
class Case:
    """One instantiation of a test, as upstream's ``@modules`` makes them on the CPU."""

    info: ModuleInfo
    dtype: torch.dtype
    training: bool

    def __str__(self) -> str:
        mode = "train" if self.training else "eval"
        return f"{self.info.name}-{str(self.dtype).removeprefix('torch.')}-{mode}"


def cases(dtypes=None, modes=(True, False)) -> list[Case]:
    found = []
    for info in RECURRENT:
        allowed = [d for d in info.dtypes if dtypes is None or d in dtypes]
        training_flags = modes if info.train_and_eval_differ else modes[:1]
        found += [Case(info, dtype, training) for training, dtype in product(training_flags, allowed)]
    return found


def swapped(info: ModuleInfo, layers) -> ModuleInfo:
    """``info`` with torch.nn's class replaced by the family's (the input generators are kept)."""
    mine = copy.copy(info)
    mine.module_cls = layers.like(info.module_cls)
    return mine


def _features(module_input) -> set[tuple[str, object]]:
    kwargs = module_input.constructor_input.kwargs
    return {*kwargs.items(), ("hx given", len(module_input.forward_input.args) > 1)}


def covering_inputs(module_inputs: list) -> list:
    """All inputs with ``TORCHSEQ_TORCH_TESTS=full``; else a few, picked greedily (the input adding the
    most unseen (argument, value) pairs first) until every value any input uses is used by one of them."""
    module_inputs = [mi for mi in module_inputs if mi.forward_input is not None]
    if FULL:
        return module_inputs
    wanted = set().union(*(_features(mi) for mi in module_inputs))
    chosen: list = []
    while wanted:
        best = max(module_inputs, key=lambda mi: len(_features(mi) & wanted))
        chosen.append(best)
        wanted -= _features(best)
    return sorted(chosen, key=module_inputs.index)


def every_case(function):
    return pytest.mark.parametrize("case", cases(), ids=str)(function)


def assert_parameters_and_buffers_are(tc, module, device, dtype):
    device = torch.device(device)
    for kind, items in (("Parameter", module.named_parameters()), ("Buffer", module.named_buffers())):
        for name, item in items:
            tc.assertEqual(item.device, device, f"{kind} {name} is on {item.device} instead of {device}")
            if item.dtype.is_floating_point:
                tc.assertEqual(item.dtype, dtype, f"{kind} {name} is {item.dtype} instead of {dtype}")


@every_case
def test_forward(case, layers, tc):
    info = swapped(case.info, layers)
    to_dtype = {torch.float32: methodcaller("float"), torch.float64: methodcaller("double")}
    for module_input in info.module_inputs_func(info, device=DEVICE, dtype=case.dtype, requires_grad=False,
                                                training=case.training):
        if module_input.forward_input is None:
            continue
        with freeze_rng_state():
            args, kwargs = module_input.constructor_input.args, module_input.constructor_input.kwargs
            m = info.module_cls(*args, **kwargs)
            m.to(DEVICE).to(case.dtype)
            m.train(case.training)

            args, kwargs = module_input.forward_input.args, module_input.forward_input.kwargs
            outputs = m(*args, **kwargs)
            if module_input.reference_fn is not None:
                tc.assertEqual(outputs, module_input.reference_fn(m, *args, **kwargs))

            if case.dtype in to_dtype:
                to_dtype[case.dtype](m)
                m(*args, **kwargs)
                assert_parameters_and_buffers_are(tc, m, DEVICE, case.dtype)


@every_case
def test_factory_kwargs(case, layers, tc):
    info = swapped(case.info, layers)
    for module_input in info.module_inputs_func(info, device=DEVICE, dtype=case.dtype, requires_grad=False,
                                                training=case.training):
        args, kwargs = module_input.constructor_input.args, module_input.constructor_input.kwargs

        # Does the module create parameters or buffers from tensors it was not given? (The mocks pass
        # every call through to the real methods and only record the arguments.)
        creates_tensors = False
        parameter_new = mock_wrapper(torch.nn.Parameter.__new__)
        register_buffer = mock_wrapper(torch.nn.Module.register_buffer)
        with patch.object(torch.nn.Parameter, "__new__", parameter_new), \
                patch.object(torch.nn.Module, "register_buffer", register_buffer):
            m = info.module_cls(*args, **kwargs)
            m.train(case.training)
            given = get_tensors_from(args, kwargs)
            for mock in (parameter_new.mock, register_buffer.mock):
                for call_args, call_kwargs in mock.call_args_list:
                    made = get_tensors_from(call_args, call_kwargs)
                    if made and not given.intersection(made):
                        creates_tensors = True
                        break
        if not creates_tensors:
            continue

        m = info.module_cls(*args, **kwargs, device=DEVICE, dtype=case.dtype)
        m.train(case.training)
        assert_parameters_and_buffers_are(tc, m, DEVICE, case.dtype)


@every_case
def test_repr(case, layers):
    info = swapped(case.info, layers)
    for module_input in info.module_inputs_func(info, device=DEVICE, dtype=case.dtype, requires_grad=False,
                                                training=case.training):
        args, kwargs = module_input.constructor_input.args, module_input.constructor_input.kwargs
        m = info.module_cls(*args, **kwargs)
        m.to(DEVICE).to(case.dtype)
        m.train(case.training)
        m.__repr__()  # neither may raise
        str(m)


@every_case
def test_pickle(case, layers, tc):
    info = swapped(case.info, layers)
    for module_input in info.module_inputs_func(info, device=DEVICE, dtype=case.dtype, requires_grad=False,
                                                training=case.training):
        if module_input.forward_input is None:
            continue
        with freeze_rng_state():
            args, kwargs = module_input.constructor_input.args, module_input.constructor_input.kwargs
            m = info.module_cls(*args, **kwargs)
            m.to(DEVICE).to(case.dtype)
            m.train(case.training)

            args, kwargs = module_input.forward_input.args, module_input.forward_input.kwargs
            output = m(*args, **kwargs)
            with tempfile.TemporaryFile() as f:
                torch.save(m, f)
                f.seek(0)
                m_copy = torch.load(f, weights_only=False)
                tc.assertEqual(output, m_copy(*args, **kwargs))


def _traverse(obj, func):
    if isinstance(obj, (tuple, list)):
        return type(obj)(_traverse(o, func) for o in obj)
    if isinstance(obj, dict):
        return {name: _traverse(o, func) for name, o in obj.items()}
    if isinstance(obj, torch.Tensor):
        return func(obj)
    return None


def _retain_grad(obj):
    _traverse(obj, lambda t: t.retain_grad() if t.requires_grad else None)


def _get_grads(obj):
    return _traverse(obj, lambda t: t.grad if t.requires_grad else None)


def _zero_grad(obj):
    def clear(t):
        t.grad = None

    _traverse(obj, clear)


@every_case
def test_non_contiguous_tensors(case, layers, tc):
    info = swapped(case.info, layers)

    def non_contiguous(obj):
        def spread(t):
            if t.dim() == 0:  # a scalar cannot be made non-contiguous
                return t
            out = torch.repeat_interleave(t, 2, dim=-1)[..., ::2].detach()
            out.requires_grad = t.requires_grad
            return out

        return _traverse(obj, spread)

    def can_be_non_contiguous(obj):
        if isinstance(obj, (tuple, list)):
            return any(can_be_non_contiguous(o) for o in obj)
        if isinstance(obj, dict):
            return any(can_be_non_contiguous(o) for o in obj.values())
        return isinstance(obj, torch.Tensor) and obj.dim() > 0

    def run_backward(out, grad_out):
        for o, g in zip(tree_flatten(out)[0], tree_flatten(grad_out)[0], strict=False):
            if o.requires_grad:
                o.backward(g, retain_graph=True)

    for module_input in covering_inputs(info.module_inputs_func(info, device=DEVICE, dtype=case.dtype,
                                                                requires_grad=True, training=case.training)):
        input_args, input_kwargs = module_input.forward_input.args, module_input.forward_input.kwargs
        if not (can_be_non_contiguous(input_args) or can_be_non_contiguous(input_kwargs)):
            continue

        args, kwargs = module_input.constructor_input.args, module_input.constructor_input.kwargs
        m = info.module_cls(*args, **kwargs)
        m.to(DEVICE).to(case.dtype)
        m.train(case.training)
        _retain_grad((input_args, input_kwargs))

        with freeze_rng_state():
            default_output = m(*input_args, **input_kwargs)
            if isinstance(default_output, torch.Tensor):
                grad_output = default_output.clone().detach_().normal_()
                default_output.backward(grad_output, retain_graph=True)
            else:
                grad_output = tuple(
                    _traverse(o, lambda o: o.clone().detach_().normal_() if o.requires_grad else None)
                    for o in default_output
                )
                run_backward(default_output, grad_output)
        default_input_grads = copy.deepcopy(_get_grads((input_args, input_kwargs)))
        default_input_args_grad, default_input_kwargs_grad = default_input_grads
        default_param_grad = copy.deepcopy([p.grad for p in m.parameters()])

        nc_input_args, nc_input_kwargs = non_contiguous((input_args, input_kwargs))
        nc_grad_output = non_contiguous(grad_output)
        contiguous_or_not = [(input_args, input_kwargs), (nc_input_args, nc_input_kwargs)]
        for (in_args, in_kwargs), g_out in product(contiguous_or_not, [grad_output, nc_grad_output]):
            g_out_copy = copy.deepcopy(g_out)
            _zero_grad((in_args, in_kwargs))
            _zero_grad(list(m.parameters()))
            with freeze_rng_state():
                out = m(*in_args, **in_kwargs)
                if isinstance(out, torch.Tensor):
                    out.backward(g_out_copy, retain_graph=True)
                else:
                    run_backward(out, g_out_copy)

            input_args_grad, input_kwargs_grad = _get_grads((in_args, in_kwargs))
            tc.assertEqual(out, default_output)
            tc.assertEqual(input_args_grad, default_input_args_grad, atol=1e-4, rtol=0)
            tc.assertEqual(input_kwargs_grad, default_input_kwargs_grad, atol=1e-4, rtol=0)
            tc.assertEqual([p.grad for p in m.parameters()], default_param_grad)


def _check_gradients_of(m, module_input, tc, check, partials: bool) -> None:
    """``check`` (gradcheck or gradgradcheck) the total derivative of ``m``'s forward on ``module_input``,
    then, if ``partials``, its partial derivatives: one parameter (or keyword tensor) at a time."""
    params = tuple(m.parameters())
    input_args, input_kwargs = module_input.forward_input.args, module_input.forward_input.kwargs
    other_kwargs = {name: obj for name, obj in input_kwargs.items() if not isinstance(obj, torch.Tensor)}
    kwarg_tensors = [(name, obj) for name, obj in input_kwargs.items() if isinstance(obj, torch.Tensor)]

    def check_all():
        flat_input, spec = tree_flatten(input_args + params + tuple(obj for _, obj in kwarg_tensors))

        def fn_to_gradcheck(*flat_input_and_params):
            input_and_params = tree_unflatten(flat_input_and_params, spec)
            new_input_args = input_and_params[:len(input_args)]
            kwarg_args = input_and_params[-len(kwarg_tensors):]
            new_kwargs = {name: obj for (name, _), obj in zip(kwarg_tensors, kwarg_args, strict=False)}
            with freeze_rng_state():
                return tree_flatten(m(*new_input_args, **new_kwargs, **other_kwargs))[0]

        tc.assertTrue(check(fn_to_gradcheck, flat_input, nondet_tol=0.0))

    check_all()
    if not partials:
        return
    old_params_requires_grad = [p.requires_grad for p in params]
    for p in params:
        p.requires_grad = False
    old_kwargs_requires_grad = [obj.requires_grad for _, obj in kwarg_tensors]
    for _, obj in kwarg_tensors:
        obj.requires_grad = False
    for p, old in zip(params, old_params_requires_grad, strict=True):
        p.requires_grad = old
        check_all()
        p.requires_grad = False
    for (_, obj), old in zip(kwarg_tensors, old_kwargs_requires_grad, strict=True):
        obj.requires_grad = old
        check_all()
        obj.requires_grad = False


def _check_gradients(case, layers, tc, check):
    info = swapped(case.info, layers)
    module_inputs = info.module_inputs_func(info, device=DEVICE, dtype=case.dtype, requires_grad=True,
                                            training=case.training)
    for index, module_input in enumerate(covering_inputs(module_inputs)):
        args, kwargs = module_input.constructor_input.args, module_input.constructor_input.kwargs
        m = info.module_cls(*args, **kwargs)
        m.to(DEVICE).to(case.dtype)
        m.train(case.training)
        _check_gradients_of(m, module_input, tc, check, partials=FULL or index == 0)


@pytest.mark.parametrize("case", cases(dtypes=(torch.float64,)), ids=str)
def test_grad(case, layers, tc):
    _check_gradients(case, layers, tc, gradcheck)


@pytest.mark.parametrize("case", [c for c in cases(dtypes=(torch.float64,)) if c.info.supports_gradgrad],
                         ids=str)
def test_gradgrad(case, layers, tc):
    _check_gradients(case, layers, tc, gradgradcheck)


@every_case
def test_memory_format(case, layers, tc):
    # Recurrent inputs are 2-D or 3-D, so only the contiguous and preserve formats apply.
    info = swapped(case.info, layers)
    input_mem_formats = [torch.contiguous_format]
    module_mem_formats = [torch.preserve_format, torch.contiguous_format]

    def requires_grad(t):
        return isinstance(t, torch.Tensor) and t.requires_grad

    def to_mem_format(mem_format, obj):
        return _traverse(obj, lambda t: t.clone().to(memory_format=mem_format).detach().requires_grad_(
            t.requires_grad))

    def check_out_mem_format(output):
        _traverse(output, lambda t: tc.assertTrue(t.is_contiguous()))

    for module_input in covering_inputs(info.module_inputs_func(info, device=DEVICE, dtype=case.dtype,
                                                                requires_grad=True, training=case.training)):
        with freeze_rng_state():
            args, kwargs = module_input.constructor_input.args, module_input.constructor_input.kwargs
            m = info.module_cls(*args, **kwargs)
            m.to(DEVICE).to(case.dtype)
            m.train(case.training)

            args, kwargs = module_input.forward_input.args, module_input.forward_input.kwargs
            desired_outputs = m(*args, **kwargs)
            ref_diff_outputs = tuple(t for t in tree_flatten(desired_outputs)[0] if requires_grad(t))
            if case.training and ref_diff_outputs:
                params = tuple(m.parameters())
                ref_diff_inputs = tuple(filter(requires_grad, tree_flatten((args, kwargs, params))[0]))
                ref_grad_outputs = tuple(torch.rand_like(t) for t in ref_diff_outputs)
                ref_grad_inputs = torch.autograd.grad(ref_diff_outputs, ref_diff_inputs,
                                                      grad_outputs=ref_grad_outputs)

            for input_mem_format in input_mem_formats:
                d_args = to_mem_format(input_mem_format, module_input.forward_input.args)
                d_kwargs = to_mem_format(input_mem_format, module_input.forward_input.kwargs)
                module_input.forward_input.args = d_args
                module_input.forward_input.kwargs = d_kwargs

                for module_mem_format in module_mem_formats:
                    m.to(memory_format=module_mem_format)
                    args, kwargs = module_input.forward_input.args, module_input.forward_input.kwargs
                    outputs = m(*args, **kwargs)
                    reformatted = (input_mem_format != torch.contiguous_format
                                   or module_mem_format != torch.contiguous_format)
                    if reformatted:
                        tc.assertEqual(outputs, desired_outputs)
                    check_out_mem_format(outputs)

                    diff_outputs = tuple(t for t in tree_flatten(outputs)[0] if requires_grad(t))
                    if case.training and diff_outputs:
                        params = tuple(m.parameters())
                        diff_inputs = tuple(filter(requires_grad, tree_flatten((args, kwargs, params))[0]))
                        grad_outputs = tuple(torch.empty_like(t1).copy_(t2)
                                             for t1, t2 in zip(diff_outputs, ref_grad_outputs, strict=True))
                        grad_inputs = torch.autograd.grad(diff_outputs, diff_inputs,
                                                          grad_outputs=grad_outputs)
                        if reformatted:
                            tc.assertEqual(grad_inputs, ref_grad_inputs)
                        check_out_mem_format(grad_inputs)


@pytest.mark.parametrize("case", cases(modes=(True,)), ids=str)
def test_if_train_and_eval_modes_differ(case, layers, tc):
    info = swapped(case.info, layers)
    for module_input in info.module_inputs_func(info, device=DEVICE, dtype=case.dtype, requires_grad=False,
                                                training=case.training):
        if module_input.forward_input is None:
            continue
        args, kwargs = module_input.constructor_input.args, module_input.constructor_input.kwargs
        m = info.module_cls(*args, **kwargs)
        m.to(DEVICE).to(case.dtype)
        m.train(case.training)

        # Without its training attribute, a module whose forward reads it fails; then the entry must say
        # that train and eval differ.
        delattr(m, "training")
        try:
            args, kwargs = module_input.forward_input.args, module_input.forward_input.kwargs
            m(*args, **kwargs)
        except AttributeError as error:
            if "'training'" not in str(error):
                raise
            tc.assertTrue(info.train_and_eval_differ,
                          f"{info.name}: the training flag affects forward but train_and_eval_differ=False")


@every_case
def test_device_ctx_init(case, layers, tc):
    info = swapped(case.info, layers)
    module_inputs = info.module_inputs_func(info, device=DEVICE, dtype=case.dtype, requires_grad=False,
                                            training=case.training)
    with torch.device("meta"):
        module_inputs_meta = info.module_inputs_func(info, device=None, dtype=case.dtype, requires_grad=False,
                                                     training=case.training)

    for module_input, module_input_meta in zip(module_inputs, module_inputs_meta, strict=True):
        c_args, c_kwargs = module_input.constructor_input.args, module_input.constructor_input.kwargs
        c_args_meta = module_input_meta.constructor_input.args
        c_kwargs_meta = module_input_meta.constructor_input.kwargs
        m_cpu = info.module_cls(*c_args, **c_kwargs)
        with torch.device("meta"):
            m = info.module_cls(*c_args_meta, **c_kwargs_meta)
        for p_meta, p_cpu in chain(zip(m.parameters(), m_cpu.parameters(), strict=True),
                                   zip(m.buffers(), m_cpu.buffers(), strict=True)):
            if torch.nn.parameter.is_lazy(p_meta):
                continue
            tc.assertTrue(p_meta.is_meta)
            assert_metadata_eq(tc.assertEqual, p_meta, p_cpu)


@every_case
def test_errors(case, layers, tc):
    info = swapped(case.info, layers)
    for error_input in info.module_error_inputs_func(info, device=DEVICE, dtype=case.dtype,
                                                     requires_grad=False, training=case.training):
        module_input = error_input.module_error_input
        c_args, c_kwargs = module_input.constructor_input.args, module_input.constructor_input.kwargs
        if error_input.error_on == ModuleErrorEnum.CONSTRUCTION_ERROR:
            with tc.assertRaisesRegex(error_input.error_type, error_input.error_regex):
                info.module_cls(*c_args, **c_kwargs)
        elif error_input.error_on == ModuleErrorEnum.FORWARD_ERROR:
            m = info.module_cls(*c_args, **c_kwargs)
            fw_args, fw_kwargs = module_input.forward_input.args, module_input.forward_input.kwargs
            with tc.assertRaisesRegex(error_input.error_type, error_input.error_regex):
                m(*fw_args, **fw_kwargs)
        else:
            raise NotImplementedError(f"Unknown error type {error_input.error_on}")
