"""ONNX exporter of AdaptiveAverage/MaxPooling1D-3D: each spatial axis in turn, one ReduceMean / ReduceMax per
output window (a Slice of the input; Keras's TensorFlow windows, kcompat's ``windows``), concatenated.

Reference: kcompat/layers/adaptive_pooling.py.
"""
from __future__ import annotations

from ....layers.adaptive_pooling import windows
from .registry import layer_exporter


@layer_exporter("AdaptiveAveragePooling1D", "AdaptiveAveragePooling2D", "AdaptiveAveragePooling3D",
                "AdaptiveMaxPooling1D", "AdaptiveMaxPooling2D", "AdaptiveMaxPooling3D")
def adaptive_pooling(ctx, layer, inputs, weights):
    x = inputs[0]
    shape = list(ctx.shape(x))
    op = "ReduceMax" if layer.class_name.startswith("AdaptiveMax") else "ReduceMean"
    for axis, out in zip(layer.spatial_axes(), layer.out):
        length = shape[axis]
        parts = [ctx.reduce(op, ctx.op("Slice", x, ctx.ints([s]), ctx.ints([min(s + n, length)]), ctx.ints([axis])),
                            [axis]) for s, n in windows(length, out)]  # (..., L, ...) -> (..., 1, ...) each
        x = ctx.op("Concat", *parts, axis=axis) if len(parts) > 1 else parts[0]  # -> (..., out, ...)
        shape[axis] = out
    return x
