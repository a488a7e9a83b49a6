"""Pooling layers in NumPy: Max/AveragePooling1D-3D and their Global forms.

References: keras/src/layers/pooling/base_pooling.py, base_global_pooling.py,
keras/src/ops/operation_utils.py compute_pooling_output_shape, and TF's pooling
(keras/src/backend/tensorflow/nn.py max_pool / average_pool): 'same' pads with the
odd pixel at the end, and average pooling divides by the number of real (unpadded)
cells in each window. The windows are computed tap by tap in cache-sized blocks (conv_kernels.pool).
"""
from __future__ import annotations

import numpy as np

from .base import fmt_shape, register
from .conv_geometry import same_pads
from .tap_kernels import pool
from .spatial import Spatial


class _Pooling(Spatial):
    """Max or average over pool_size windows; strides default to pool_size."""

    mode = "max"
    per_sample = True

    def __init__(self, config, name=None):
        super().__init__(config, name)
        self.init_spatial()
        self.pool_size = self.int_tuple("pool_size", 2)
        self.strides = self.int_tuple("strides", self.pool_size)
        self.padding = self.choice("padding", ("valid", "same"), "valid")

    def describe_window(self):
        return f"pool_size={self.pool_size}, strides={self.strides}, padding={self.padding}"

    def output_shape(self, input_shape):
        batch, sp, c = self.split(input_shape)
        if self.padding == "valid":
            out = tuple(None if n is None else (n - k) // s + 1 for n, k, s in zip(sp, self.pool_size, self.strides))
        else:
            out = tuple(None if n is None else (n - 1) // s + 1 for n, s in zip(sp, self.strides))
        self.check_positive(sp, out, input_shape)
        return self.join(batch, out, c)

    def forward(self, x):
        x = self.to_last(x)  # (N, *sp, C)
        pads = ([(0, 0)] * self.rank if self.padding == "valid"
                else [same_pads(n, k, s, 1) for n, k, s in zip(x.shape[1:-1], self.pool_size, self.strides)])
        return self.from_last(pool(x, self.pool_size, self.strides, pads, self.mode))  # (N, *out, C)

    def explain(self, input_shape, output_shape):
        _, sp_in, c = self.split(input_shape)
        sp_out = self.split(output_shape)[1]
        mode = "max" if self.mode == "max" else "mean"
        avg_note = " (padding not counted in the mean)" if self.mode == "average" and self.padding == "same" else ""
        return (f"{mode} over {'x'.join(map(str, self.pool_size))} windows, stride "
                f"{self.strides[0] if len(set(self.strides)) == 1 else self.strides}, {self.padding} padding"
                f"{avg_note}: {fmt_shape(sp_in)} -> {fmt_shape(sp_out)}, {c} channels kept; 0 params")


@register("MaxPooling1D", "MaxPool1D")
class MaxPooling1D(_Pooling):
    rank = 1


@register("MaxPooling2D", "MaxPool2D")
class MaxPooling2D(_Pooling):
    rank = 2


@register("MaxPooling3D", "MaxPool3D")
class MaxPooling3D(_Pooling):
    rank = 3


@register("AveragePooling1D", "AvgPool1D")
class AveragePooling1D(_Pooling):
    rank, mode = 1, "average"


@register("AveragePooling2D", "AvgPool2D")
class AveragePooling2D(_Pooling):
    rank, mode = 2, "average"


@register("AveragePooling3D", "AvgPool3D")
class AveragePooling3D(_Pooling):
    rank, mode = 3, "average"


class _GlobalPooling(Spatial):
    """Max or mean over every spatial axis, per channel; keepdims leaves size-1 axes."""

    mode = "max"
    per_sample = True

    def __init__(self, config, name=None):
        super().__init__(config, name)
        self.init_spatial()
        self.keepdims = bool(self.get("keepdims", False))

    def output_shape(self, input_shape):
        batch, sp, c = self.split(input_shape)
        if self.keepdims:
            return self.join(batch, (1,) * self.rank, c)
        return (batch, c)

    def forward(self, x):
        axes = tuple(range(2, 2 + self.rank)) if self.channels_first else tuple(range(1, 1 + self.rank))
        reduce = np.max if self.mode == "max" else np.mean
        return reduce(x, axis=axes, keepdims=self.keepdims)  # (N, *sp, C) -> (N, C)

    def explain(self, input_shape, output_shape):
        sp = self.split(input_shape)[1]
        mode = "max" if self.mode == "max" else "mean"
        keep = " (kept as size-1 axes)" if self.keepdims else ""
        return f"{mode} over all {fmt_shape(sp)} positions, one value per channel{keep}; 0 params"


@register("GlobalMaxPooling1D", "GlobalMaxPool1D")
class GlobalMaxPooling1D(_GlobalPooling):
    rank = 1


@register("GlobalMaxPooling2D", "GlobalMaxPool2D")
class GlobalMaxPooling2D(_GlobalPooling):
    rank = 2


@register("GlobalMaxPooling3D", "GlobalMaxPool3D")
class GlobalMaxPooling3D(_GlobalPooling):
    rank = 3


@register("GlobalAveragePooling1D", "GlobalAvgPool1D")
class GlobalAveragePooling1D(_GlobalPooling):
    """Mean over the steps; with a Keras mask, over the unmasked steps only (a fully masked sample: NaN)."""

    rank, mode = 1, "average"
    supports_masking = True
    call_params = ("inputs", "mask")

    def compute_mask(self, inputs, mask, keras2=False):
        return None

    def call_node(self, args, kwargs, weights):
        mask = kwargs.get("mask")
        if mask is None:
            return self.forward(args[0])
        x = args[0]
        keep = np.expand_dims(np.asarray(mask).astype(bool), 1 if self.channels_first else 2)  # (N, T) -> (N, T, 1)
        axis = 2 if self.channels_first else 1
        total = np.sum(np.where(keep, x, np.asarray(0, x.dtype)), axis=axis, keepdims=self.keepdims)  # (N, C)
        count = np.sum(keep.astype(x.dtype), axis=axis, keepdims=self.keepdims)  # (N, 1)
        with np.errstate(invalid="ignore", divide="ignore"):
            return total / count


@register("GlobalAveragePooling2D", "GlobalAvgPool2D")
class GlobalAveragePooling2D(_GlobalPooling):
    rank, mode = 2, "average"


@register("GlobalAveragePooling3D", "GlobalAvgPool3D")
class GlobalAveragePooling3D(_GlobalPooling):
    rank, mode = 3, "average"
