"""ONNX exporters of pooling layers: Max/AveragePooling (1D-3D) and their Global forms.

MaxPool / AveragePool are channels-first like Conv (conv.py's layout helpers); average pooling never
counts padding (``count_include_pad=0``), as TF divides by the real cells of each window.
Reference: kcompat/layers/pooling.py.
"""
from __future__ import annotations

from onnx import TensorProto

from .conv import from_first, pad_attrs, to_first
from .masks import as_bool_mask
from .registry import layer_exporter


@layer_exporter("MaxPooling1D", "MaxPooling2D", "MaxPooling3D", "AveragePooling1D", "AveragePooling2D",
                "AveragePooling3D")
def pooling(ctx, layer, inputs, weights):
    x = inputs[0]
    ones = (1,) * layer.rank
    attrs = {"kernel_shape": list(layer.pool_size), "strides": list(layer.strides),
             **pad_attrs(ctx, x, layer, layer.pool_size, layer.strides, ones, layer.padding)}
    if layer.mode == "max":
        y = ctx.op("MaxPool", to_first(ctx, x, layer), **attrs)
    else:  # TF's mean divides by the real (unpadded) cells of each window
        y = ctx.op("AveragePool", to_first(ctx, x, layer), count_include_pad=0, **attrs)
    return from_first(ctx, y, layer)


@layer_exporter("GlobalMaxPooling1D", "GlobalMaxPooling2D", "GlobalMaxPooling3D", "GlobalAveragePooling1D",
                "GlobalAveragePooling2D", "GlobalAveragePooling3D")
def global_pooling(ctx, layer, inputs, weights):
    first = 2 if layer.channels_first else 1
    axes = list(range(first, first + layer.rank))  # the spatial axes in the layer's own layout
    op = "ReduceMax" if layer.mode == "max" else "ReduceMean"
    mask = ctx.kwargs.get("mask") if layer.mode == "average" and layer.rank == 1 else None
    if mask is not None:  # the mean of the unmasked steps (a fully masked sample: 0 / 0, NaN, as Keras)
        feature_axis = 2 if first == 1 else 1
        keep = ctx.op("Unsqueeze", as_bool_mask(ctx, mask), ctx.ints([feature_axis], "axes"))  # (N, T) -> (N, T, 1)
        total = ctx.reduce("ReduceSum", ctx.op("Where", keep, inputs[0], ctx.const(0.0)), axes, int(layer.keepdims))
        count = ctx.reduce("ReduceSum", ctx.op("Cast", keep, to=TensorProto.FLOAT), axes, int(layer.keepdims))
        return ctx.op("Div", total, count)  # (N, T, C) -> (N, C)
    return ctx.reduce(op, inputs[0], axes, int(layer.keepdims))  # (N, *sp, C) -> (N, C) or (N, 1.., C)
