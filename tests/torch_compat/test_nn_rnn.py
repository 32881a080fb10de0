# Adapted from PyTorch's test/test_nn.py (TestNN and TestNNDeviceType, CPU), which is
# Copyright (c) 2016- Facebook, Inc. and the PyTorch contributors, BSD-3-Clause; see LICENSE-PYTORCH.
"""PyTorch's CPU tests of ``nn.RNN`` / ``nn.LSTM`` / ``nn.GRU`` from ``test/test_nn.py``.

Each test keeps its upstream name and checks, and runs once per layer family (``layers`` fixture):
``torch.nn`` itself, torchseq with ``impl="custom"``, torchseq with ``impl="fused"``. Where upstream
writes ``nn.LSTM(...)`` these tests write ``layers.LSTM(...)``.

Adaptations (the checks are unchanged):

- ``test_rnn_weight_norm`` counts the layer's weights that are still ``nn.Parameter`` through the public
  ``all_weights`` instead of the private ``_flat_weights`` (same tensors, in the same order).
- ``test_RNN_dropout``, ``test_error_RNN_seq_len_zero``, ``test_RNN_dropout_state`` and
  ``test_RNN_change_dropout`` loop over CPU and CUDA upstream and are skipped there without cuDNN;
  here their CPU half runs everywhere.
- ``test_LSTM_differentiable_backward_using_oneDNN`` toggles oneDNN with ``torch.backends.mkldnn.flags``
  (restored afterwards) instead of ``torch._C._set_mkldnn_enabled``; upstream's bfloat16 variant is
  not repeated because the test body never uses its dtype argument.
- Device tests (``TestNNDeviceType``) run on the CPU with their upstream CPU dtype.

Not vendored (none is a CPU test of the three layers):

- CUDA or cuDNN only: ``test_cudnn_rnn_dropout_states_device``, ``test_cudnn_weight_format``,
  ``test_cudnn_weight_tying``, ``test_RNN_cpu_vs_cudnn_no_dropout``, ``test_RNN_cpu_vs_cudnn_with_dropout``,
  ``test_RNN_cudnn_weight_norm``, ``test_partial_flat_weights``, ``test_pack_sequence_batch_sizes_throw``,
  ``test_rnn_fused``, ``test_lstmcell_backward_only_one_output_grad``; two CUDA devices:
  ``test_rnn_check_device``, ``test_projections_lstm_check_device``.
- Cell modules (``nn.RNNCell`` / ``nn.LSTMCell`` / ``nn.GRUCell``), not the layers:
  ``test_RNN_cell``, ``test_RNN_cell_no_broadcasting``, ``test_RNN_cell_forward_zero_hidden_size``,
  ``test_LSTM_cell``, ``test_LSTM_cell_forward_input_size``, ``test_LSTM_cell_forward_hidden_size``.
"""

from __future__ import annotations

import copy
import io
import re
from functools import partial
from itertools import product

import torch
from torch import nn
from torch.nn.utils import rnn as rnn_utils
from torch.testing._internal.common_utils import (
    dtype2prec_DONTUSE,
    gradcheck,
    gradgradcheck,
    set_default_dtype,
)


def _parameters_among_weights(module: nn.Module) -> int:
    return sum(isinstance(weight, nn.Parameter) for layer in module.all_weights for weight in layer)


# -- TestNN ----------------------------------------------------------------------------------------
def test_RNN_nonlinearity(layers, tc):
    tc.assertEqual(layers.RNN(1, 10).nonlinearity, "tanh")
    tc.assertEqual(layers.RNN(1, 10, nonlinearity="relu").nonlinearity, "relu")
    with tc.assertRaisesRegex(ValueError, "Unknown nonlinearity"):
        layers.RNN(1, 10, nonlinearity="garbage")


def test_RNN_nonlinearity_passed_as_arg(layers, tc):
    tc.assertEqual(layers.RNN(2, 3, 1, "relu").nonlinearity, "relu")


def test_rnn_weight_norm(layers, tc):
    def check_weight_norm(module, name, num_params):
        # weight norm turns the parameter `name` into a computed tensor ...
        module = torch.nn.utils.weight_norm(module, name=name)
        tc.assertEqual(_parameters_among_weights(module), num_params - 1)
        # ... and removing it makes `name` a parameter again, its reparametrization gone
        module = torch.nn.utils.remove_weight_norm(module, name=name)
        tc.assertEqual(_parameters_among_weights(module), num_params)
        tc.assertTrue(name in module._parameters)
        tc.assertIsNotNone(module._parameters[name])
        tc.assertTrue(name + "_v" not in module._parameters)
        tc.assertTrue(name + "_g" not in module._parameters)
        named = dict(module.named_parameters())
        tc.assertTrue(name in named)
        tc.assertIsNotNone(named[name])
        tc.assertTrue(name + "_v" not in named)
        tc.assertTrue(name + "_g" not in named)

    check_weight_norm(layers.LSTM(32, 32), "weight_ih_l0", 4)
    check_weight_norm(layers.LSTM(32, 32, proj_size=16), "weight_hr_l0", 5)


def test_cudnn_forward_exception(layers, tc):
    # Runs on every device upstream despite its name: torch's argument checks are device-independent.
    rnns = [
        (layers.LSTM(10, 20, batch_first=True), (torch.zeros(1, 2, 19), torch.zeros(1, 2, 19))),
        (layers.LSTM(10, 20, batch_first=True, proj_size=10), (torch.zeros(1, 2, 19), torch.zeros(1, 2, 19))),
        (layers.GRU(10, 20, batch_first=True), torch.zeros(1, 2, 19)),
        (layers.RNN(10, 20, batch_first=True), torch.zeros(1, 2, 19)),
    ]
    x_wrong = torch.randn(2, 3, 3)
    x_right = torch.randn(2, 3, 10)
    for rnn, hidden in rnns:
        tc.assertRaisesRegex(RuntimeError, "Expected hidden.*size.*got", rnn, x_right, hidden)
        wrong_input_size = re.escape("input.size(-1) must be equal to input_size")
        tc.assertRaisesRegex(RuntimeError, wrong_input_size, rnn, x_wrong)


def _with_size(shape, dim, size):
    changed = list(shape)
    changed[dim] = size
    return tuple(changed)


def test_rnn_args_check(layers, tc):
    input_size, hidden_size, num_layers, batch_size, seq_len = 3, 5, 2, 4, 6
    bad_size = 7  # prime: divides no other size
    good_input = (seq_len, batch_size, input_size)
    good_hidden = (num_layers, batch_size, hidden_size)

    def inputs(input_shape, hidden_shape, mode):
        x, hidden = torch.randn(input_shape), torch.randn(hidden_shape)
        if mode != "LSTM":
            return [(x, hidden)]
        if hidden_shape == good_hidden:
            return [(x, (hidden, hidden))]
        fine = torch.randn(good_hidden)
        return [(x, (hidden, fine)), (x, (fine, hidden))]

    def expect_error(input_shape, hidden_shape, mode):
        for x, hidden in inputs(input_shape, hidden_shape, mode):
            model = layers.by_mode(mode)(input_size, hidden_size, num_layers)
            tc.assertRaises(RuntimeError, lambda: model(x, hidden))  # noqa: B023

    for mode in ("RNN", "GRU", "LSTM"):
        expect_error(_with_size(good_input, 1, bad_size), good_hidden, mode)   # input batch size
        expect_error(good_input, _with_size(good_hidden, 1, bad_size), mode)   # hidden batch size
        expect_error(_with_size(good_input, 2, bad_size), good_hidden, mode)   # input size
        expect_error(good_input, _with_size(good_hidden, 2, bad_size), mode)   # hidden size
        expect_error(good_input, _with_size(good_hidden, 0, bad_size), mode)   # hidden[0]


def test_projections_lstm_args_check(layers, tc):
    input_size, hidden_size, proj_size, num_layers, batch_size, seq_len = 3, 5, 2, 2, 4, 6
    bad_size = 7
    good_input = (seq_len, batch_size, input_size)
    good_h = (num_layers, batch_size, proj_size)
    good_c = (num_layers, batch_size, hidden_size)

    def expect_error(input_shape, h_shape, c_shape):
        model = layers.LSTM(input_size, hidden_size, num_layers, proj_size=proj_size)
        x, hidden = torch.randn(input_shape), (torch.randn(h_shape), torch.randn(c_shape))
        tc.assertRaises(RuntimeError, lambda: model(x, hidden))

    expect_error(_with_size(good_input, 1, bad_size), good_h, good_c)  # input batch size
    expect_error(good_input, _with_size(good_h, 1, bad_size), _with_size(good_c, 1, bad_size))  # hidden batch
    expect_error(_with_size(good_input, 2, bad_size), good_h, good_c)  # input size
    expect_error(good_input, _with_size(good_h, 2, bad_size), _with_size(good_c, 2, bad_size))  # hidden size
    expect_error(good_input, _with_size(good_h, 0, bad_size), _with_size(good_c, 0, bad_size))  # hidden[0]
    expect_error(good_input, _with_size(good_h, 0, hidden_size), good_c)  # h sized like hidden, not proj
    expect_error(good_input, _with_size(good_h, 0, bad_size), good_c)  # h of another wrong size
    expect_error(good_input, good_h, _with_size(good_c, 0, bad_size))  # c of a wrong size


def test_rnn_initial_hidden_state(layers, tc):
    for mode in ("RNN", "GRU", "LSTM"):
        rnn = layers.by_mode(mode)(30, 20, 2)
        x = torch.randn(10, 32, 30)
        hidden = torch.zeros(2, 32, 20)
        if mode == "LSTM":
            hidden = (hidden, hidden)
        output1, hidden1 = rnn(x, hidden)
        output2, hidden2 = rnn(x)
        tc.assertEqual(output1, output2)
        tc.assertEqual(hidden1, hidden2)


def test_projections_lstm_initial_hidden_state(layers, tc):
    for bidirectional in (False, True):
        rnn = layers.LSTM(30, 20, 2, bidirectional=bidirectional, proj_size=10)
        directions = 2 if bidirectional else 1
        x = torch.randn(10, 32, 30)
        hidden = (torch.zeros(2 * directions, 32, 10), torch.zeros(2 * directions, 32, 20))
        output1, hidden1 = rnn(x, hidden)
        output2, hidden2 = rnn(x)
        tc.assertEqual(output1, output2)
        tc.assertEqual(hidden1, hidden2)


def test_projections_errors_on_gru_and_rnn(layers, tc):
    message = "proj_size argument is only supported for LSTM, not RNN or GRU"
    for mode in ("RNN", "GRU"):
        with tc.assertRaisesRegex(ValueError, message):
            layers.by_mode(mode)(30, 20, 2, proj_size=10)


def test_RNN_dropout(layers, tc):
    # Checks that dropout sits between the layers: all-ones weights make every unit equal.
    with set_default_dtype(torch.double):
        for p, train in product((0, 0.276, 0.731, 1), (True, False)):
            rnn = layers.RNN(10, 1000, 2, bias=False, dropout=p, nonlinearity="relu")
            rnn.train(train)
            for name in ("weight_ih_l0", "weight_hh_l0", "weight_ih_l1", "weight_hh_l1"):
                getattr(rnn, name).data.fill_(1)
            output, hy = rnn(torch.ones(1, 1, 10), torch.zeros(2, 1, 1000))
            tc.assertEqual(output.data.min(), output.data.max())
            value = output.data[0][0][0]
            if p == 0 or not train:
                tc.assertEqual(value, 10000)
            elif p == 1:
                tc.assertEqual(value, 0)
            else:
                tc.assertGreater(value, 8000)
                tc.assertLess(value, 12000)
                remainder = (value * (1 - p)) % 10
                tc.assertLess(min(remainder, 10 - remainder), 1e-2)
            tc.assertEqual(hy[0].data.min(), hy[0].data.max())
            tc.assertEqual(hy[1].data.min(), hy[1].data.max())
            tc.assertEqual(hy.data[0][0][0], 10)
            tc.assertEqual(hy.data[1][0][0], value)


def test_error_RNN_seq_len_zero(layers, tc):
    with set_default_dtype(torch.double):
        for mode, bidirectional in product(("RNN", "LSTM", "GRU"), (True, False)):
            rnn = layers.by_mode(mode)(5, 6, bidirectional=bidirectional)
            with tc.assertRaisesRegex(RuntimeError, "Expected sequence length to be larger than 0 in RNN"):
                rnn(torch.ones(0, 10, 5))


def test_RNN_input_size_zero(layers, tc):
    for mode in ("RNN", "LSTM", "GRU"):
        rnn = layers.by_mode(mode)(input_size=3, hidden_size=4)
        outs = rnn(torch.zeros((5, 0, 3)))
        tc.assertEqual(outs[0].shape, torch.Size([5, 0, 4]))
        outs[0].sum().backward()  # must not raise


def test_RNN_dropout_state(layers, tc):
    for p, train in product((0, 0.1234), (True, False)):
        rnn = layers.RNN(100, 100, 2, bias=False, dropout=p, nonlinearity="relu")
        rnn.train(train)
        x, hx = torch.rand(1, 1, 100), torch.rand(2, 1, 100)
        output1, hy1 = rnn(x, hx)
        output2, hy2 = rnn(x, hx)

        buffer = io.BytesIO()
        torch.save(rnn, buffer)
        buffer.seek(0)
        rnn2 = torch.load(buffer, weights_only=False)  # a whole pickled module, as upstream
        rnn2.flatten_parameters()
        output3, hy3 = rnn2(x, hx)

        if p == 0 or not train:
            tc.assertEqual(output1, output2)
            tc.assertEqual(output1, output3)
            tc.assertEqual(hy1, hy2)
            tc.assertEqual(hy1, hy3)
        else:
            tc.assertNotEqual(output1, output2)
            tc.assertNotEqual(output1, output3)
            tc.assertNotEqual(hy1, hy2)
            tc.assertNotEqual(hy1, hy3)


def test_RNN_change_dropout(layers, tc):
    with set_default_dtype(torch.double):
        for train in (True, False):
            rnn = layers.RNN(100, 100, 2, dropout=0, nonlinearity="relu")
            x = torch.rand(3, 2, 100)
            rnn.train(train)
            previous = None
            for p in (0, 0.5, 0, 0.7, 0.2, 1, 0.2, 0):
                rnn.dropout = p
                output1, hy1 = rnn(x)
                output2, hy2 = rnn(x)
                if p in (0, 1) or not train:
                    tc.assertEqual(output1, output2)
                    tc.assertEqual(hy1, hy2)
                else:
                    tc.assertNotEqual(output1, output2)
                    tc.assertNotEqual(hy1, hy2)
                if previous is not None:
                    if not train:
                        tc.assertEqual(output1.data, previous)
                        tc.assertEqual(output2.data, previous)
                    else:
                        tc.assertNotEqual(output1.data, previous)
                        tc.assertNotEqual(output2.data, previous)
                previous = output1.data


# -- TestNNDeviceType, on the CPU ------------------------------------------------------------------
def test_rnn_retain_variables(layers, tc):
    dtype = torch.double
    for rnn in (layers.LSTM(10, 20, num_layers=2), layers.GRU(10, 20, num_layers=2),
                layers.RNN(10, 20, num_layers=2)):
        rnn = rnn.to(dtype)
        x = torch.randn(5, 6, 10, dtype=dtype, requires_grad=True)
        output = rnn(x)
        output[0].sum().backward(retain_graph=True)
        grads = [x.grad.data.clone()] + [p.grad.data.clone() for p in rnn.parameters()]
        for _ in range(4):
            rnn.zero_grad()
            x.grad.data.zero_()
            output[0].sum().backward(retain_graph=True)
            tc.assertEqual(grads, [x.grad.data] + [p.grad.data for p in rnn.parameters()])


def test_variable_sequence(layers, tc):
    dtype = torch.float

    def pad(tensor, length):
        if tensor.size(0) == length:
            return tensor
        return torch.cat([tensor, tensor.new_zeros(length - tensor.size(0), *tensor.size()[1:])])

    def column(states, index):
        return None if states is None else tuple(s[:, index:index + 1, :].contiguous() for s in states)

    def check_lengths(lengths, enforce_sorted, use_default_hiddens, proj_size):
        input_size, hidden_size, num_layers, directions = 3, 4, 2, 2
        max_length = max(lengths)
        x_leaf = torch.randn(max_length, len(lengths), input_size, dtype=dtype, requires_grad=True)
        lstm = layers.LSTM(input_size, hidden_size, bidirectional=True, num_layers=num_layers,
                           proj_size=proj_size).to(dtype)
        lstm2 = copy.deepcopy(lstm).to(dtype)
        x = x_leaf

        hidden0 = None
        if not use_default_hiddens:
            h_size = hidden_size if proj_size == 0 else proj_size
            hidden0 = (torch.randn(directions * num_layers, len(lengths), h_size, dtype=dtype),
                       torch.randn(directions * num_layers, len(lengths), hidden_size, dtype=dtype))

        # one sequence at a time
        seq_outs, seq_hiddens = [], []
        for i, length in enumerate(lengths):
            out, hid = lstm2(x[:length, i:i + 1], column(hidden0, i))
            seq_outs.append(pad(out, max_length))
            seq_hiddens.append(hid)
        seq_out = torch.cat(seq_outs, 1)
        seq_hidden = tuple(torch.cat(parts, 1) for parts in zip(*seq_hiddens, strict=True))

        # all at once, packed
        packed = rnn_utils.pack_padded_sequence(x, lengths, enforce_sorted=enforce_sorted)
        packed_out, packed_hidden = lstm(packed, hidden0)
        unpacked, unpacked_len = rnn_utils.pad_packed_sequence(packed_out)

        prec = dtype2prec_DONTUSE[dtype]
        tc.assertEqual(packed_hidden, seq_hidden, atol=prec, rtol=0)
        tc.assertEqual(unpacked, seq_out, atol=prec, rtol=0)
        tc.assertEqual(unpacked_len, lengths, atol=prec, rtol=0)

        seq_out.sum().backward()
        grad_x = x_leaf.grad.data.clone()
        x_leaf.grad.data.zero_()
        unpacked.sum().backward()
        tc.assertEqual(x_leaf.grad, grad_x, atol=dtype2prec_DONTUSE[dtype], rtol=0)
        for p1, p2 in zip(lstm.parameters(), lstm2.parameters(), strict=True):
            tc.assertEqual(p1.grad, p2.grad, atol=2e-4, rtol=0)  # upstream's float32 tolerance

    cases = [  # enforce_sorted, lengths
        (True, [5]),
        (False, [5]),
        (True, [10, 10, 6, 2, 2, 1, 1]),
        (False, [10, 10, 6, 2, 2, 1, 1]),
        (False, [2, 1, 3, 2, 10, 5, 3]),
    ]
    for (enforce_sorted, lengths), use_default_hiddens, proj_size in product(cases, (True, False), (0, 2)):
        check_lengths(lengths, enforce_sorted, use_default_hiddens, proj_size)


def _flat_outputs(module, x):
    output, final = module(x)
    return (output, *final) if isinstance(final, tuple) else (output, final)


def _check_rnn_grad_and_gradgrad(module, x):
    check = partial(_flat_outputs, module)
    gradcheck(check, x, check_batched_grad=False)
    gradgradcheck(check, x, check_batched_grad=False)


def test_LSTM_grad_and_gradgrad(layers):
    hidden = 4
    x = torch.rand(1, 3, hidden, dtype=torch.double, requires_grad=True)
    for bias in (True, False):
        _check_rnn_grad_and_gradgrad(layers.LSTM(hidden, hidden, bias=bias).to(torch.double), x)


def test_GRU_grad_and_gradgrad(layers):
    hidden = 4
    x = torch.rand(1, 3, hidden, dtype=torch.double, requires_grad=True)
    for bias in (True, False):
        _check_rnn_grad_and_gradgrad(layers.GRU(hidden, hidden, bias=bias).to(torch.double), x)


def test_LSTM_differentiable_backward_using_oneDNN(layers):
    batch, seq_len, features = 10, 12, 3
    net = layers.LSTM(features, 3, 20, batch_first=True)
    x = torch.rand(batch, seq_len, features)
    x1 = x.clone().requires_grad_(True)
    x2 = x.clone().requires_grad_(True)

    def input_gradient_and_its_backward(module, inputs):
        out, _ = module(inputs)
        (gradient,) = torch.autograd.grad(out, inputs, grad_outputs=torch.ones_like(out), retain_graph=True,
                                          create_graph=True)
        gradient.sum().backward(retain_graph=True)
        return gradient

    with torch.backends.mkldnn.flags(enabled=False):
        der_out1 = input_gradient_and_its_backward(net, x1)
    with torch.backends.mkldnn.flags(enabled=True):
        der_out2 = input_gradient_and_its_backward(net, x2)
    assert torch.allclose(der_out1, der_out2)
    assert torch.allclose(x1.grad, x2.grad)
