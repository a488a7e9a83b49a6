"""A user's own NumPy implementation of Dense, Flatten, Activation and Dropout, as a verify adapter.

``candidate`` is correct; ``flatten_ignores_channels_first`` and ``dense_drops_bias`` each plant one
bug. The activation math is looked up by Keras name in kcompat's table (a NumPy library like any
other here); the layer plumbing (kernel layout, bias, Flatten order, Dropout) is written out.
"""
from __future__ import annotations

import numpy as np

from kcompat.layers.activations import get_activation


def _run(layer, weights, inputs, flatten_bug=False, bias_bug=False):
    cfg, x = layer["config"], inputs[0]
    kind = layer["class_name"]
    if kind == "Dense":
        y = np.tensordot(x, weights[0], axes=[[-1], [0]])  # (N, ..., K) @ (K, U) -> (N, ..., U)
        if cfg.get("use_bias", True) and not bias_bug:
            y = y + weights[1]
        return get_activation(cfg.get("activation") or "linear")(y)
    if kind == "Flatten":
        if cfg.get("data_format") == "channels_first" and x.ndim > 2 and not flatten_bug:
            x = np.moveaxis(x, 1, -1)  # (N, C, ...) -> (N, ..., C): Keras flattens channels last
        return x.reshape(x.shape[0], -1)
    if kind == "Activation":
        return get_activation(cfg["activation"])(x)
    if kind == "Dropout":
        return x  # identity at inference
    raise NotImplementedError(f"{kind} is not in this implementation")


def candidate(layer, weights, inputs):
    return _run(layer, weights, inputs)


def flatten_ignores_channels_first(layer, weights, inputs):
    return _run(layer, weights, inputs, flatten_bug=True)


def dense_drops_bias(layer, weights, inputs):
    return _run(layer, weights, inputs, bias_bug=True)
