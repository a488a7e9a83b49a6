"""Activation layers: ReLU, LeakyReLU, PReLU, ELU, Softmax.

References: keras/src/layers/activations/*.py and ``ReLU.static_call`` in
keras/src/activations/activations.py (threshold, max_value and negative_slope together).
ELU has no get_config of its own; Keras 3 still saves ``alpha`` through its automatic config.
"""
from __future__ import annotations

import numpy as np

from .activations import elu, log_softmax, softmax
from .base import Layer, Weight, fmt_shape, register


def _leaky(x: np.ndarray, slope: float) -> np.ndarray:
    """TF's LeakyRelu kernel: x > 0 ? x : slope * x (also right for slopes above 1)."""
    return np.where(x > 0, x, np.asarray(slope, x.dtype) * x)


class _Elementwise(Layer):
    layout = "elementwise"

    """Shape-preserving layer reading float config values."""

    supports_masking = True  # passes its input's mask on
    per_sample = True

    def number(self, key: str, default, minimum: float | None = 0.0):
        value = self.get(key, default)
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, (int, float)) or (minimum is not None and value < minimum):
            raise self.fail(f"'{key}' must be a number >= {minimum}. Received: {key}={value!r}")
        return float(value)


@register("ReLU")
class ReLU(_Elementwise):
    """x above ``threshold`` (clipped at ``max_value``), else negative_slope * (x - threshold)."""

    def __init__(self, config, name=None):
        super().__init__(config, name)
        self.max_value = self.number("max_value", None)
        self.negative_slope = self.number("negative_slope", 0.0)
        self.threshold = self.number("threshold", 0.0)

    def forward(self, x):
        c = lambda v: np.asarray(v, x.dtype)  # noqa: E731
        if self.negative_slope and self.max_value is None and not self.threshold:
            return _leaky(x, self.negative_slope)
        y = np.where(x > c(self.threshold), x, c(0)) if self.threshold else np.maximum(x, c(0))
        if self.max_value is not None:
            y = np.clip(y, c(0), c(self.max_value))
        if self.negative_slope:
            y = y - c(self.negative_slope) * np.maximum(c(self.threshold) - x, c(0))
        return y

    def as_activation(self):
        if self.negative_slope or self.threshold:
            return None
        return {None: "relu", 6.0: "relu6"}.get(self.max_value)

    def explain(self, input_shape, output_shape):
        parts = [f"max_value={self.max_value:g}" if self.max_value is not None else "",
                 f"negative_slope={self.negative_slope:g}" if self.negative_slope else "",
                 f"threshold={self.threshold:g}" if self.threshold else ""]
        opts = ", ".join(p for p in parts if p)
        return f"relu{f' ({opts})' if opts else ''} elementwise, shape unchanged; 0 params"


@register("LeakyReLU")
class LeakyReLU(_Elementwise):
    """max(x, negative_slope * x); tf.keras called the slope ``alpha``."""

    def __init__(self, config, name=None):
        super().__init__(config, name)
        keras2 = self.config.get("negative_slope") is None and "alpha" in self.config
        self.negative_slope = self.number("alpha" if keras2 else "negative_slope", 0.3)

    def forward(self, x):
        return _leaky(x, self.negative_slope)


@register("ELU")
class ELU(_Elementwise):
    """x if x > 0 else alpha * (exp(x) - 1)."""

    def __init__(self, config, name=None):
        super().__init__(config, name)
        self.alpha = self.number("alpha", 1.0, minimum=None)

    def forward(self, x):
        return elu(x, self.alpha)


@register("PReLU")
class PReLU(Layer):
    """max(x, 0) - alpha * max(-x, 0), with a learned alpha shared over ``shared_axes``."""

    layout = "prelu"
    supports_masking = True  # passes its input's mask on

    def __init__(self, config, name=None):
        super().__init__(config, name)
        axes = self.get("shared_axes")
        axes = [] if axes is None else [axes] if isinstance(axes, int) else list(axes)
        if any(isinstance(a, bool) or not isinstance(a, int) or a < 1 for a in axes):
            raise self.fail(f"'shared_axes' must be positive axis numbers. Received: shared_axes={axes!r}")
        self.shared_axes = axes

    def weights(self, input_shape):
        shape = list(input_shape[1:])
        for a in self.shared_axes:
            if a > len(shape):
                raise self.fail(f"shared axis {a} is out of range for input {fmt_shape(input_shape)}")
            shape[a - 1] = 1
        if None in shape:
            raise self.fail(f"alpha needs known sizes on unshared axes. Received: input_shape={fmt_shape(input_shape)}")
        return [Weight("alpha", tuple(shape))]

    def forward(self, x, alpha):
        zero = np.asarray(0, x.dtype)
        return np.maximum(x, zero) - alpha.astype(x.dtype) * np.maximum(-x, zero)  # alpha (1.., C) broadcasts


@register("Softmax")
class Softmax(Layer):
    """exp(x - logsumexp(x)) over ``axis`` (an int or a list); an optional mask input zeroes entries."""

    layout = "axis"
    supports_masking = True  # and uses the mask it receives, like an explicit one
    call_params = ("inputs", "mask")

    def __init__(self, config, name=None):
        super().__init__(config, name)
        axis = self.get("axis", -1)
        items = axis if isinstance(axis, (list, tuple)) else [axis]
        if not items or any(isinstance(a, bool) or not isinstance(a, int) for a in items):
            raise self.fail(f"'axis' must be an integer or a list of integers. Received: axis={axis!r}")
        self.axis = tuple(items) if isinstance(axis, (list, tuple)) else axis

    def output_shape(self, input_shape):
        for a in (self.axis if isinstance(self.axis, tuple) else (self.axis,)):
            if not -len(input_shape) <= a < len(input_shape):
                raise self.fail(f"axis {a} is out of bounds for input {fmt_shape(input_shape)}")
        return input_shape

    def call_node(self, args, kwargs, weights):
        mask = kwargs.get("mask", args[1] if len(args) > 1 else None)
        return self.forward(args[0], mask)

    def forward(self, x, mask=None):
        if mask is not None:  # keep where mask is True (or > 0.5), else -1e9; zero afterwards
            mask = mask if mask.dtype == bool else mask > np.asarray(0.5, mask.dtype)
            x = np.where(mask, x, np.asarray(-1e9, x.dtype))
        if isinstance(self.axis, tuple) and len(self.axis) > 1:
            y = np.exp(log_softmax(x, axis=self.axis))
        else:
            y = softmax(x, axis=self.axis[0] if isinstance(self.axis, tuple) else self.axis)
        return y if mask is None else np.where(mask, y, np.asarray(0, x.dtype))
