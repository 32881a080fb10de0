"""Keras' ``recurrent_dropout`` in ``torchseq.keras``: Keras 3's masks in training, nothing in eval.

The training reference is Keras 3's own gate-by-gate computation (``implementation=1``, which Keras
switches to whenever ``recurrent_dropout > 0``), written out here in Keras' layout — kernel (F, G·H),
recurrent kernel (H, G·H), gates i, f, c, o (LSTM) and z, r, h (GRU) — with the masks the layer drew.
"""

from __future__ import annotations

import pytest
import torch

from torchseq import keras as K

B, T, F, H = 3, 6, 4, 5


def drawn_masks(layer: K.Recurrent) -> tuple[torch.Tensor, torch.Tensor]:
    """The (input, recurrent) masks the layer's cell drew for its last call, in Keras' gate order."""
    cell = layer.core.cells[0]
    masks = cell._input_mask, cell._hidden_mask
    if isinstance(layer, K.GRU):  # torchseq's gates r, z, n hold Keras' r, z, h masks
        return tuple(None if m is None else m[[1, 0, 2]] for m in masks)
    return masks


def keras_layout(layer: K.Recurrent) -> list[torch.Tensor]:
    """kernel (F, G·H), recurrent kernel (H, G·H), bias as Keras holds them, from the torch parameters."""
    core = layer.core

    def keras_gate_order(stacked: torch.Tensor) -> torch.Tensor:  # torch r, z, n → Keras z, r, h
        if not isinstance(layer, K.GRU):
            return stacked
        r, z, n = stacked.split(H)
        return torch.cat([z, r, n])

    kernel, recurrent = (keras_gate_order(w).T for w in (core.weight_ih_l0, core.weight_hh_l0))
    bias = keras_gate_order(core.bias_ih_l0)
    if isinstance(layer, K.GRU) and layer.reset_after:
        bias = torch.stack([bias, keras_gate_order(core.bias_hh_l0)])
    return [kernel.detach(), recurrent.detach(), bias.detach()]


def keras_lstm(x, kernel, recurrent_kernel, bias, input_masks, recurrent_masks):
    h = c = x.new_zeros(B, H)
    k, r, b = kernel.split(H, 1), recurrent_kernel.split(H, 1), bias.split(H)
    outputs = []
    for t in range(T):
        xs = [x[:, t] * input_masks[g] @ k[g] + b[g] for g in range(4)]
        hs = [h * recurrent_masks[g] @ r[g] for g in range(4)]
        i, f = torch.sigmoid(xs[0] + hs[0]), torch.sigmoid(xs[1] + hs[1])
        c = f * c + i * torch.tanh(xs[2] + hs[2])
        h = torch.sigmoid(xs[3] + hs[3]) * torch.tanh(c)
        outputs.append(h)
    return torch.stack(outputs, 1)


def keras_gru(x, kernel, recurrent_kernel, bias, input_masks, recurrent_masks, reset_after):
    h = x.new_zeros(B, H)
    input_bias, recurrent_bias = (bias[0], bias[1]) if reset_after else (bias, torch.zeros_like(bias))
    k, r = kernel.split(H, 1), recurrent_kernel.split(H, 1)
    bi, br = input_bias.split(H), recurrent_bias.split(H)
    outputs = []
    for t in range(T):
        x_z, x_r, x_h = (x[:, t] * input_masks[g] @ k[g] + bi[g] for g in range(3))
        h_z, h_r, h_h = (h * recurrent_masks[g] for g in range(3))
        z = torch.sigmoid(x_z + h_z @ r[0] + br[0])
        rr = torch.sigmoid(x_r + h_r @ r[1] + br[1])
        recurrent_h = rr * (h_h @ r[2] + br[2]) if reset_after else (rr * h_h) @ r[2]
        h = z * h + (1 - z) * torch.tanh(x_h + recurrent_h)
        outputs.append(h)
    return torch.stack(outputs, 1)


def keras_simple_rnn(x, kernel, recurrent_kernel, bias, input_mask, recurrent_mask):
    h, outputs = x.new_zeros(B, H), []
    for t in range(T):
        h = torch.tanh(x[:, t] * input_mask @ kernel + bias + h * recurrent_mask @ recurrent_kernel)
        outputs.append(h)
    return torch.stack(outputs, 1)


LAYERS = {
    "lstm": (lambda **kw: K.LSTM(F, H, **kw), keras_lstm),
    "gru": (lambda **kw: K.GRU(F, H, **kw), lambda *a: keras_gru(*a, reset_after=True)),
    "gru_reset_before": (lambda **kw: K.GRU(F, H, reset_after=False, **kw), lambda *a: keras_gru(*a, False)),
    "simple_rnn": (lambda **kw: K.SimpleRNN(F, H, **kw), keras_simple_rnn),
}


@pytest.mark.parametrize("name", sorted(LAYERS))
@pytest.mark.parametrize("dropout", [0.0, 0.3])
def test_training_applies_keras_masks_one_per_gate_and_sequence(name: str, dropout: float) -> None:
    build, reference = LAYERS[name]
    torch.manual_seed(0)
    layer = build(dropout=dropout, recurrent_dropout=0.4, return_sequences=True).double().train()
    with torch.no_grad():
        for parameter in layer.parameters():
            parameter.uniform_(-0.5, 0.5)  # biases too, which Keras initialises to zero
    x = torch.randn(B, T, F, dtype=torch.float64)
    output = layer(x)
    input_masks, recurrent_masks = drawn_masks(layer)
    gates = 1 if name == "simple_rnn" else len(layer.core.cells[0].gates)
    per_gate = (gates,) if gates > 1 else ()
    assert recurrent_masks.shape == (*per_gate, B, H)
    assert set(recurrent_masks.unique().tolist()) <= {0.0, 1 / 0.6}
    if dropout:
        assert input_masks.shape == (*per_gate, B, F)
    else:
        assert input_masks is None
        input_masks = torch.ones(*per_gate, B, F, dtype=torch.float64)
    weights = keras_layout(layer)
    expected = reference(x, *weights, input_masks, recurrent_masks)
    torch.testing.assert_close(output, expected, rtol=0, atol=1e-12)
    output.sum().backward()  # the masks are constants of the graph
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in layer.parameters())


@pytest.mark.parametrize("name", sorted(LAYERS))
def test_each_call_draws_new_masks_and_eval_applies_none(name: str) -> None:
    build, _ = LAYERS[name]
    torch.manual_seed(0)
    layer = build(dropout=0.2, recurrent_dropout=0.5, return_sequences=True).double()
    plain = build(return_sequences=True).double()
    plain.load_state_dict(layer.state_dict())
    x = torch.randn(B, T, F, dtype=torch.float64)
    layer.train()
    assert not torch.equal(layer(x), layer(x))
    layer.eval(), plain.eval()
    torch.testing.assert_close(layer(x), plain(x), rtol=0, atol=0)


def test_bidirectional_draws_masks_for_each_direction_and_matches_in_eval() -> None:
    torch.manual_seed(0)
    layer = K.Bidirectional(K.LSTM(F, H, recurrent_dropout=0.3, return_sequences=True))
    plain = K.Bidirectional(K.LSTM(F, H, return_sequences=True))
    plain.load_state_dict(layer.state_dict())
    x = torch.randn(B, T, F)
    layer.train()(x)
    forward, backward = (cell._hidden_mask for cell in layer.core.cells)
    assert forward.shape == backward.shape == (4, B, H) and not torch.equal(forward, backward)
    torch.testing.assert_close(layer.eval()(x), plain.eval()(x), rtol=0, atol=0)


@pytest.mark.parametrize("rate", [-0.1, 1.0, 1.5])
def test_recurrent_dropout_outside_0_1_is_refused(rate: float) -> None:
    expected = rf"recurrent_dropout: expected a probability in \[0, 1\), got {rate}"
    with pytest.raises(ValueError, match=expected):
        K.LSTM(F, H, recurrent_dropout=rate)
