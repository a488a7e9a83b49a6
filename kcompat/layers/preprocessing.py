"""Numeric preprocessing layers: Rescaling and Normalization.

References: keras/src/layers/preprocessing/rescaling.py and normalization.py. Normalization stores
``mean``, ``variance`` and an integer ``count`` as non-trainable weights after ``adapt``, or keeps
``mean`` / ``variance`` in its config (then it has no weights).
"""
from __future__ import annotations

from typing import Any

import numpy as np

from .base import Layer, Weight, fmt_shape, register


def config_array(value: Any) -> Any:
    """A number / list / tuple / ``__numpy__`` value as Keras serializes it; None stays None."""
    if isinstance(value, dict) and value.get("class_name") in ("__numpy__", "__tuple__"):
        value = value.get("config", {}).get("value")
    if value is None:
        return None
    return np.asarray(value, np.float32)


@register("Rescaling")
class Rescaling(Layer):
    """x * scale + offset (scale / offset: numbers or per-channel lists)."""

    supports_masking = True  # passes its input's mask on
    keras2_supports_masking = False  # tf_keras's drops it

    def __init__(self, config, name=None):
        super().__init__(config, name)
        try:
            self.scale = config_array(self.config.get("scale"))
            self.offset = config_array(self.get("offset", 0.0))
        except (TypeError, ValueError):
            raise self.fail(f"'scale' and 'offset' must be numbers or lists of numbers. Received: "
                            f"scale={self.config.get('scale')!r}, offset={self.config.get('offset')!r}") from None
        if self.scale is None:
            raise self.fail("needs a 'scale'. Received: scale=None")

    def forward(self, x):
        x = x.astype(np.float32, copy=False)
        return x * self.scale + self.offset

    def explain(self, input_shape, output_shape):
        return f"x * {self.scale.tolist()} + {self.offset.tolist()} elementwise; 0 params"


@register("Normalization")
class Normalization(Layer):
    """(x - mean) / max(sqrt(variance), 1e-7) on the kept ``axis``; ``invert`` undoes it."""

    supports_masking = True  # passes its input's mask on
    keras2_supports_masking = False  # tf_keras's drops it

    def __init__(self, config, name=None):
        super().__init__(config, name)
        axis = self.config.get("axis", -1)
        axis = () if axis is None else (axis,) if isinstance(axis, int) else tuple(axis)
        if any(isinstance(a, bool) or not isinstance(a, int) for a in axis):
            raise self.fail(f"'axis' must be null, an integer or a list of integers. Received: axis={axis!r}")
        self.axis = axis
        self.invert = bool(self.get("invert", False))
        try:
            self.mean = config_array(self.config.get("mean"))
            self.variance = config_array(self.config.get("variance"))
        except (TypeError, ValueError):
            raise self.fail("'mean' and 'variance' must be numbers or lists of numbers") from None
        if (self.mean is None) != (self.variance is None):
            raise self.fail("needs both 'mean' and 'variance' in its config, or neither")

    def kept_axes(self, input_shape) -> tuple:
        ndim = len(input_shape)
        if any(not -ndim <= a < ndim for a in self.axis):
            raise self.fail(f"axis values must be in [-{ndim}, {ndim}). Received: axis={list(self.axis)}")
        keep = tuple(sorted(a % ndim for a in self.axis))
        if any(input_shape[a] is None for a in keep):
            raise self.fail(f"the kept axes need known sizes. Received: input_shape={fmt_shape(input_shape)}")
        return keep

    def weights(self, input_shape):
        if self.mean is not None:
            return []
        shape = tuple(input_shape[a] for a in self.kept_axes(input_shape))
        return [Weight("mean", shape, False), Weight("variance", shape, False), Weight("count", (), False)]

    def output_shape(self, input_shape):
        self.kept_axes(input_shape)
        return input_shape

    def random_weight(self, w, rng):
        if w.name == "variance":
            return rng.uniform(0.5, 2.0, size=w.shape)
        if w.name == "count":
            return np.asarray(100, np.int64)
        return None

    def forward(self, x, mean=None, variance=None, count=None):
        x = x.astype(np.float32, copy=False)
        keep = self.kept_axes(x.shape)
        bshape = [x.shape[d] if d in keep else 1 for d in range(x.ndim)]  # e.g. (1, 1, C)
        if mean is None:  # from the config: a scalar broadcasts; an array fills the last kept axes
            mean, variance = self.mean, self.variance
            shape = [1] * x.ndim
            for i in range(1, mean.ndim + 1):
                shape[keep[-i]] = mean.shape[-i]
        else:
            shape = bshape
        mean = mean.astype(np.float32).reshape(shape)  # (1, .., C)
        variance = variance.astype(np.float32).reshape(shape)
        std = np.maximum(np.sqrt(variance), np.float32(1e-7))
        return mean + x * std if self.invert else (x - mean) / std
