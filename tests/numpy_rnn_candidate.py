"""A user's own NumPy LSTM and SimpleRNN as a verify / conformance adapter that honours Keras masks.

``rnn`` reads the mask the call gets from ``layer["masks"][0]`` (propagated from an
Embedding(mask_zero=True), or given in the graph); ``rnn_ignores_mask`` is the same code with the mask
dropped, the bug a port makes when it never heard of masks. Every other layer (the Embedding in front,
the NotEqual op node Keras writes for a mask) falls back to kcompat, and so does every layer in
``everything_by_kcompat`` (which must then pass any case: the adapter contract carries all a call needs).
Written from Keras's definitions (keras/src/layers/rnn/lstm.py, simple_rnn.py, backend/tensorflow/rnn.py):
a masked step keeps the states and repeats the previous output (zeros before the first step), or outputs
zeros with ``zero_output_for_mask``.
"""
from __future__ import annotations

import numpy as np

from kcompat.layers.activations import get_activation
from kcompat.verify.candidate import kcompat_call


def _recurrent(layer, weights, inputs, use_mask):
    cfg = layer["config"]
    if layer.get("kwargs", {}).get("initial_state") is not None or len(layer.get("args", [])) > 1:
        raise NotImplementedError("initial states")
    if cfg.get("stateful"):
        raise NotImplementedError("stateful")
    x = inputs[0]  # (N, T, F)
    mask = layer["masks"][0] if use_mask else None
    lstm = layer["class_name"] == "LSTM"
    act = get_activation(cfg.get("activation") or "linear")
    gate = get_activation(cfg.get("recurrent_activation") or "linear") if lstm else None
    kernel, recurrent = weights[0], weights[1]
    bias = weights[2] if cfg.get("use_bias", True) else 0.0
    n, units = x.shape[0], recurrent.shape[0]
    h, c, out = (np.zeros((n, units), np.float32) for _ in range(3))
    steps = range(x.shape[1] - 1, -1, -1) if cfg.get("go_backwards") else range(x.shape[1])
    outputs = []
    for t in steps:
        z = x[:, t] @ kernel + h @ recurrent + bias  # (N, F) @ (F, G*U) -> (N, G*U)
        if lstm:
            i, f, g, o = np.split(z, 4, axis=-1)  # Keras's gate order: input, forget, cell, output
            new_c = gate(f) * c + gate(i) * act(g)
            new_h = gate(o) * act(new_c)
        else:
            new_c, new_h = c, act(z)
        if mask is None:
            h, c, out = new_h, new_c, new_h
        else:
            keep = mask[:, t].astype(bool)[:, None]  # (N,) -> (N, 1)
            fill = 0.0 if cfg.get("zero_output_for_mask") else out
            h, c, out = np.where(keep, new_h, h), np.where(keep, new_c, c), np.where(keep, new_h, fill)
        outputs.append(out)
    y = np.stack(outputs, axis=1) if cfg.get("return_sequences") else out  # (N, T, U) or (N, U)
    if cfg.get("return_state"):
        return [y, h, c] if lstm else [y, h]
    return y


def _run(layer, weights, inputs, use_mask=True):
    if layer["class_name"] in ("LSTM", "SimpleRNN"):
        return _recurrent(layer, weights, inputs, use_mask)
    return kcompat_call(layer, weights, inputs)


def rnn(layer, weights, inputs):
    return _run(layer, weights, inputs)


def rnn_ignores_mask(layer, weights, inputs):
    return _run(layer, weights, inputs, use_mask=False)


def everything_by_kcompat(layer, weights, inputs):
    return kcompat_call(layer, weights, inputs)
