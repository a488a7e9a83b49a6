"""ONNX exporters of preprocessing layers: Rescaling, Normalization (both compute in float32).

Reference: kcompat/layers/preprocessing.py.
"""
from __future__ import annotations

import numpy as np

from .operands import as_float
from .registry import layer_exporter


@layer_exporter("Rescaling")
def rescaling(ctx, layer, inputs, weights):
    x = as_float(ctx, inputs[0])
    y = ctx.op("Mul", x, ctx.const(layer.scale, "scale"))
    return ctx.op("Add", y, ctx.const(layer.offset, "offset"))


@layer_exporter("Normalization")
def normalization(ctx, layer, inputs, weights):
    x = as_float(ctx, inputs[0])
    shape = ctx.shape(inputs[0])
    keep = layer.kept_axes(shape)
    if weights:  # adapted: statistics have the kept axes' sizes
        bshape = [shape[d] if d in keep else 1 for d in range(len(shape))]
        mean, variance = weights[0].reshape(bshape), weights[1].reshape(bshape)
    else:  # from the config: a scalar broadcasts; an array fills the last kept axes
        mean, variance = layer.mean, layer.variance
        bshape = [1] * len(shape)
        for i in range(1, mean.ndim + 1):
            bshape[keep[-i]] = mean.shape[-i]
        mean, variance = mean.reshape(bshape), variance.reshape(bshape)
    std = np.maximum(np.sqrt(variance.astype(np.float32)), np.float32(1e-7))
    mean = ctx.const(mean, "mean")
    if layer.invert:
        return ctx.op("Add", mean, ctx.op("Mul", x, ctx.const(std, "std")))
    return ctx.op("Div", ctx.op("Sub", x, mean), ctx.const(std, "std"))
