"""ONNX exporters of pooling layers: Max/AveragePooling (1D-3D) and their Global forms.

MaxPool / AveragePool are channels-first like Conv (conv.py's layout helpers); average pooling never
counts padding (``count_include_pad=0``), as TF divides by the real cells of each window.
Reference: kcompat/layers/pooling.py.
"""
from __future__ import annotations

from .conv import from_first, pad_attrs, to_first
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
    return ctx.reduce(op, inputs[0], axes, int(layer.keepdims))  # (N, *sp, C) -> (N, C) or (N, 1.., C)
