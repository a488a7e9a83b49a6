"""ONNX exporters of the core layers: Dense, Flatten, Activation, Dropout.

Reference: kcompat/layers/core.py; keras/src/layers/core/dense.py, keras/src/layers/reshaping/flatten.py.
"""
from __future__ import annotations

from .registry import layer_exporter


@layer_exporter("Dense")
def dense(ctx, layer, inputs, weights):
    x = inputs[0]
    kernel = ctx.const(weights[0], "kernel", dtype=None)  # (in, units): Keras and ONNX agree
    bias = [ctx.const(weights[1], "bias", dtype=None)] if layer.use_bias else []
    shape = ctx.shape(x)
    if len(shape) == 2:
        y = ctx.op("Gemm", x, kernel, *bias)  # (N, in) @ (in, units) + (units,)
    else:
        y = ctx.op("MatMul", x, kernel)  # (N, ..., in) @ (in, units) -> (N, ..., units)
        if bias:
            y = ctx.op("Add", y, bias[0])
    return ctx.activation(layer.activation_name, y, (*shape[:-1], layer.units))


@layer_exporter("Flatten")
def flatten(ctx, layer, inputs, weights):
    x = inputs[0]
    rank = len(ctx.shape(x))
    if layer.data_format == "channels_first" and rank > 2:
        x = ctx.op("Transpose", x, perm=[0, *range(2, rank), 1])  # (N, C, ...) -> (N, ..., C)
    return ctx.op("Flatten", x, axis=1)  # (N, d1, d2, ...) -> (N, d1*d2*...)


@layer_exporter("Activation")
def activation(ctx, layer, inputs, weights):
    return ctx.activation(layer.activation_name, inputs[0], ctx.shape(inputs[0]))


@layer_exporter("Dropout")
def dropout(ctx, layer, inputs, weights):
    return inputs[0]  # identity at inference; the driver adds the Identity that carries the name
