"""ONNX exporter of ContrastLimitedAdaptiveHistogramEqualization, step by step as kcompat/layers/clahe.py
(Keras's algorithm): symmetric padding to whole tiles (a Gather of reflected indices: ONNX's Pad has no
symmetric mode), per tile and channel a 256-bin histogram (Equal against 0..255, summed), clipped with the
excess spread evenly, its normalized CumSum as the tile's mapping (edge tiles repeated); each pixel reads
the four nearest tiles' mappings at its value (GatherND over (image, channel)) and blends them. Needs a
known height and width. Reference: kcompat/layers/clahe.py.
"""
from __future__ import annotations

import numpy as np
from onnx import TensorProto, helper

from ....layers.clahe import tile_grid
from .image_preprocessing import known_size
from .registry import layer_exporter

F32, I32, I64 = TensorProto.FLOAT, TensorProto.INT32, TensorProto.INT64


@layer_exporter("ContrastLimitedAdaptiveHistogramEqualization")
def clahe(ctx, layer, inputs, weights):
    x = inputs[0]
    h, w = known_size(ctx, layer, x)
    c = layer.split(ctx.shape(x))[2]
    images = ctx.op("Cast", x, to=F32)
    if layer.channels_first:
        images = ctx.op("Transpose", images, perm=[0, 2, 3, 1])  # (N, C, H, W) -> (N, H, W, C)
    ranged = (layer.low, layer.high) != (0.0, 255.0)
    if ranged:
        images = ctx.op("Mul", ctx.op("Div", ctx.op("Sub", images, ctx.const(layer.low, "low")),
                                      ctx.const(layer.high - layer.low, "span")), ctx.const(255.0, "full"))
    gh, gw = layer.grid
    th, tw = -(-h // gh), -(-w // gw)
    hp, wp = th * gh, tw * gw
    rows = np.pad(np.arange(h), (0, hp - h), mode="symmetric")
    cols = np.pad(np.arange(w), (0, wp - w), mode="symmetric")
    padded = ctx.op("Gather", ctx.op("Gather", images, ctx.ints(rows, "rows"), axis=1), ctx.ints(cols, "cols"), axis=2)
    tiles = ctx.op("Reshape", padded, ctx.ints([0, gh, th, gw, tw, c], "tiles_shape"))
    tiles = ctx.op("Transpose", tiles, perm=[0, 1, 3, 5, 2, 4])  # (N, gh, gw, C, th, tw)
    tiles = ctx.op("Reshape", tiles, ctx.ints([0, gh, gw, c, th * tw], "tile_pixels"))
    values = ctx.op("Clip", ctx.op("Cast", tiles, to=I32), ctx.const(0, "lo", dtype=np.int32),
                    ctx.const(255, "hi", dtype=np.int32))
    hot = ctx.op("Equal", ctx.op("Unsqueeze", values, ctx.ints([-1], "axes")),
                 ctx.const(np.arange(256), "levels", dtype=np.int32))
    hist = ctx.reduce("ReduceSum", ctx.op("Cast", hot, to=F32), [-2], keepdims=0)  # (N, gh, gw, C, 256)
    if layer.clip_limit > 0:
        clipped = ctx.op("Clip", hist, ctx.const(0.0, "zero"), ctx.const(layer.clip_limit * (th * tw) / 256.0, "limit"))
        excess = ctx.reduce("ReduceSum", ctx.op("Sub", hist, clipped), [-1])
        hist = ctx.op("Add", clipped, ctx.op("Div", excess, ctx.const(256.0, "bins")))
    cdf = ctx.op("CumSum", hist, ctx.ints(-1, "axis"))
    cdf_min = ctx.reduce("ReduceMin", cdf, [-1])
    denominator = ctx.op("Sub", ctx.const(float(th * tw), "tile_size"), cdf_min)
    denominator = ctx.op("Where", ctx.op("Equal", denominator, ctx.const(0.0, "zero")), ctx.const(1.0, "one"),
                         denominator)
    cdf = ctx.op("Div", ctx.op("Mul", ctx.op("Sub", cdf, cdf_min), ctx.const(255.0, "full")), denominator)
    cdf = ctx.op("Clip", cdf, ctx.const(0.0, "zero"), ctx.const(255.0, "full"))
    cdf = ctx.op("Gather", cdf, ctx.ints([0, *range(gh), gh - 1], "tile_rows"), axis=1)  # edge tiles repeated
    cdf = ctx.op("Gather", cdf, ctx.ints([0, *range(gw), gw - 1], "tile_cols"), axis=2)
    cdf = ctx.op("Transpose", cdf, perm=[0, 3, 1, 2, 4])  # (N, C, gh + 2, gw + 2, 256)
    y0, y1, wy = tile_grid(hp, th, gh)
    x0, x1, wx = tile_grid(wp, tw, gw)
    clipped_pixels = ctx.op("Clip", padded, ctx.const(0.0, "zero"), ctx.const(255.0, "full"))
    pixels = ctx.op("Cast", ctx.op("Cast", clipped_pixels, to=I32), to=I64)
    pixels = ctx.op("Transpose", pixels, perm=[0, 3, 1, 2])  # (N, C, Hp, Wp)
    zeros = ctx.op("Cast", ctx.op("Greater", pixels, pixels), to=I64)

    def column(v):
        return ctx.op("Unsqueeze", v, ctx.ints([-1], "axes"))

    def at(ys, xs):
        yi = ctx.op("Add", zeros, ctx.ints(ys.reshape(-1, 1), "tile_y"))
        xi = ctx.op("Add", zeros, ctx.ints(xs.reshape(1, -1), "tile_x"))
        index = ctx.op("Concat", column(yi), column(xi), column(pixels), axis=-1)  # (N, C, Hp, Wp, 3)
        return ctx.op("GatherND", cdf, index, batch_dims=2)  # (N, C, Hp, Wp)

    def blend(a, b, weight, shape):
        wt = np.asarray(weight, np.float32).reshape(shape)
        return ctx.op("Add", ctx.op("Mul", a, ctx.const(np.float32(1) - wt, "keep")), ctx.op("Mul", b, ctx.const(wt, "take")))
    top = blend(at(y0, x0), at(y0, x1), wx, (1, -1))
    bottom = blend(at(y1, x0), at(y1, x1), wx, (1, -1))
    result = blend(top, bottom, wy, (-1, 1))
    result = ctx.op("Slice", result, ctx.ints([0, 0], "starts"), ctx.ints([h, w], "ends"), ctx.ints([2, 3], "axes"))
    if ranged:
        result = ctx.op("Add", ctx.op("Mul", ctx.op("Div", result, ctx.const(255.0, "full")),
                                      ctx.const(layer.high - layer.low, "span")), ctx.const(layer.low, "low"))
    result = ctx.op("Cast", result, to=helper.np_dtype_to_tensor_dtype(np.dtype(ctx.dtype(x))))
    return result if layer.channels_first else ctx.op("Transpose", result, perm=[0, 2, 3, 1])
