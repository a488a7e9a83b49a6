"""Adaptive pooling: AdaptiveAverage/MaxPooling1D / 2D / 3D to a fixed ``output_size``.

Reference: keras/src/layers/pooling/base_adaptive_pooling.py and keras/src/backend/tensorflow/nn.py
(the "two-pool gather" method): output i of an axis of length L pools the window starting at
floor(i * L / out) of length ``big`` = ceil(L / out) + 1 when the exact window [floor(i L / out),
ceil((i + 1) L / out)) is that long, else ``small`` = ceil(L / out); one axis after the other.
"""
from __future__ import annotations

import math

import numpy as np

from .base import register
from .spatial import Spatial


def windows(length: int, out: int) -> list[tuple[int, int]]:
    """(start, size) of each output's window along one axis, as Keras's TensorFlow backend picks them."""
    small = math.ceil(length / out)
    f32 = np.float32
    starts = np.floor(np.arange(out, dtype=f32) * f32(length) / f32(out)).astype(np.int64)
    ends = np.ceil(np.arange(1, out + 1, dtype=f32) * f32(length) / f32(out)).astype(np.int64)
    starts, ends = np.minimum(starts, length - 1), np.minimum(ends, length)
    return [(int(s), small + 1 if e - s == small + 1 else small) for s, e in zip(starts, ends)]


class _AdaptivePooling(Spatial):
    """Pool each spatial axis into ``output_size`` windows with ``reduce`` (np.mean / np.max)."""

    reduce = staticmethod(np.mean)
    what = "averages"

    def __init__(self, config, name=None):
        super().__init__(config, name)
        self.init_spatial()
        self.out = self.int_tuple("output_size")

    def output_shape(self, input_shape):
        batch, spatial, channels = self.split(input_shape)
        if any(d is None for d in spatial):
            raise self.fail(f"needs known spatial sizes. Received: input_shape={tuple(input_shape)}")
        return self.join(batch, self.out, channels)

    def forward(self, x):
        for axis, out in zip(self.spatial_axes(), self.out):
            parts = [self.reduce(np.take(x, np.arange(s, min(s + n, x.shape[axis])), axis=axis), axis=axis, keepdims=True)
                     for s, n in windows(x.shape[axis], out)]
            x = np.concatenate(parts, axis=axis)  # (..., L, ...) -> (..., out, ...)
        return x

    def explain(self, input_shape, output_shape):
        return f"{self.what} windows that split the spatial axes into {'x'.join(map(str, self.out))}; 0 params"


@register("AdaptiveAveragePooling1D")
class AdaptiveAveragePooling1D(_AdaptivePooling):
    rank = 1


@register("AdaptiveAveragePooling2D")
class AdaptiveAveragePooling2D(_AdaptivePooling):
    rank = 2


@register("AdaptiveAveragePooling3D")
class AdaptiveAveragePooling3D(_AdaptivePooling):
    rank = 3


class _AdaptiveMax(_AdaptivePooling):
    reduce = staticmethod(np.max)
    what = "takes the maximum of"


@register("AdaptiveMaxPooling1D")
class AdaptiveMaxPooling1D(_AdaptiveMax):
    rank = 1


@register("AdaptiveMaxPooling2D")
class AdaptiveMaxPooling2D(_AdaptiveMax):
    rank = 2


@register("AdaptiveMaxPooling3D")
class AdaptiveMaxPooling3D(_AdaptiveMax):
    rank = 3
