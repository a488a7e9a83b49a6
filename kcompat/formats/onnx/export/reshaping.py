"""ONNX exporters of reshaping layers: Reshape, Permute, RepeatVector, ZeroPadding, Cropping, UpSampling.

Pad, Slice, Resize (nearest: asymmetric / floor, i.e. repeats; bilinear: half_pixel like TF; bicubic:
TF's table-based cubic as one matrix per axis), Tile. Reference: kcompat/layers/reshaping.py.
"""
from __future__ import annotations

import numpy as np

from ....errors import UnsupportedError
from ....layers.reshaping import cubic_axis
from ..common import INT64_MAX
from .registry import layer_exporter


@layer_exporter("Reshape")
def reshape(ctx, layer, inputs, weights):
    return ctx.op("Reshape", inputs[0], ctx.ints([0, *layer.target_shape], "shape"))  # batch kept


@layer_exporter("Permute")
def permute(ctx, layer, inputs, weights):
    return ctx.op("Transpose", inputs[0], perm=[0, *[int(d) for d in layer.config["dims"]]])


@layer_exporter("RepeatVector")
def repeat_vector(ctx, layer, inputs, weights):
    y = ctx.op("Unsqueeze", inputs[0], ctx.ints([1], "axes"))  # (N, F) -> (N, 1, F)
    return ctx.op("Tile", y, ctx.ints([1, layer.n, 1], "repeats"))  # -> (N, n, F)


@layer_exporter("ZeroPadding1D", "ZeroPadding2D", "ZeroPadding3D")
def zero_padding(ctx, layer, inputs, weights):
    x = inputs[0]
    rank = len(ctx.shape(x))
    begin, end = [0] * rank, [0] * rank
    for a, (lo, hi) in zip(layer.spatial_axes(), layer.padding):
        begin[a], end[a] = lo, hi
    return ctx.op("Pad", x, ctx.ints(begin + end, "pads"))  # constant 0


@layer_exporter("Cropping1D", "Cropping2D", "Cropping3D")
def cropping(ctx, layer, inputs, weights):
    axes = layer.spatial_axes()
    starts = [lo for lo, _ in layer.cropping]
    ends = [-hi if hi else INT64_MAX for _, hi in layer.cropping]
    return ctx.op("Slice", inputs[0], ctx.ints(starts, "starts"), ctx.ints(ends, "ends"), ctx.ints(axes, "axes"))


@layer_exporter("UpSampling1D", "UpSampling2D", "UpSampling3D")
def upsampling(ctx, layer, inputs, weights):
    x = inputs[0]
    scales = [1.0] * len(ctx.shape(x))
    for a, s in zip(layer.spatial_axes(), layer.size):
        scales[a] = float(s)
    attrs = {"mode": "nearest", "coordinate_transformation_mode": "asymmetric", "nearest_mode": "floor"}
    if layer.interpolation == "bilinear":
        attrs = {"mode": "linear", "coordinate_transformation_mode": "half_pixel"}
    elif layer.interpolation == "bicubic":
        return _bicubic(ctx, layer, x)
    return ctx.op("Resize", x, "", ctx.const(scales, "scales"), **attrs)  # "area" == nearest for whole factors


def _bicubic(ctx, layer, x: str) -> str:
    """TF's ResizeBicubic is a fixed matrix per axis (its 1024-entry coefficient table is not ONNX's
    exact cubic: 1e-3 apart at size 3): one Einsum per axis, width first like TF."""
    shape = ctx.shape(x)
    letters = "abcdefgh"[:len(shape)]
    for a, s in reversed(list(zip(layer.spatial_axes(), layer.size))):
        if shape[a] is None:
            raise UnsupportedError(f"layer '{layer.name}': bicubic UpSampling2D needs known spatial sizes. "
                                   f"Received: input_shape={shape}")
        matrix = cubic_axis(np.eye(shape[a], dtype=np.float32), 0, shape[a] * s)  # (out, in)
        out = letters.replace(letters[a], "z")
        x = ctx.op("Einsum", x, ctx.const(matrix, "interpolation"), equation=f"{letters},z{letters[a]}->{out}")
    return x
