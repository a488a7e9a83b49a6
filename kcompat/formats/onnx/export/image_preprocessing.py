"""ONNX exporters of the image preprocessing layers at inference: Resizing, CenterCrop, RandomCrop, AutoContrast.

tf.image.resize is separable and linear, so every interpolation (bilinear, nearest, bicubic, area,
lanczos3 / 5, antialiased) is exactly two MatMuls with constant (out, in) matrices, one per axis: kcompat's
own per-axis kernels applied to the identity (image_resize.resize_matrix), composed with the aspect-ratio
crop (a row selection) or pad (an embedding; the fill is a constant image added after). So the input's
height and width must be known. Integer images come back rounded and saturated (Round, Clip, Cast), as
Keras's ``_saturate_cast``. AutoContrast: per image and channel min / max over the spatial axes; a constant
channel (0 / 0) keeps its input, as Keras. Reference: kcompat/layers/image_preprocessing.py, image_resize.py.
"""
from __future__ import annotations

import numpy as np
from onnx import TensorProto, helper

from ....errors import UnsupportedError
from ....layers.image_resize import aspect_crop_box, aspect_pads, resize_matrix
from .registry import layer_exporter

F32 = TensorProto.FLOAT


def to_nchw(ctx, layer, x: str) -> str:
    return x if layer.channels_first else ctx.op("Transpose", x, perm=[0, 3, 1, 2])


def from_nchw(ctx, layer, y: str) -> str:
    return y if layer.channels_first else ctx.op("Transpose", y, perm=[0, 2, 3, 1])


def known_size(ctx, layer, x: str) -> tuple[int, int]:
    _, (h, w), _ = layer.split(ctx.shape(x))
    if h is None or w is None:
        raise UnsupportedError(f"layer '{layer.name}' ({layer.class_name}): exported as constant resize matrices, "
                               f"which need a known input height and width. Received: input_shape={ctx.shape(x)}")
    return h, w


def crop_rows(n: int, start: int, size: int) -> np.ndarray:
    return np.eye(n, dtype=np.float32)[start:start + size]  # (size, n): rows start..start+size-1


def pad_rows(n: int, before: int) -> np.ndarray:
    rows = np.zeros((n + 2 * before, n), np.float32)
    rows[before:before + n] = np.eye(n, dtype=np.float32)
    return rows  # (n + 2 before, n)


def apply_maps(ctx, layer, x: str, mh: np.ndarray, mw: np.ndarray, const: np.ndarray | None = None) -> str:
    """mh @ image @ mw^T per image and channel (+ const), in the layer's data format; float32."""
    y = to_nchw(ctx, layer, ctx.op("Cast", x, to=F32))
    y = ctx.op("MatMul", ctx.const(mh, "rows"), y)  # (h, H) @ (N, C, H, W) -> (N, C, h, W)
    y = ctx.op("MatMul", y, ctx.const(np.ascontiguousarray(mw.T), "columns"))  # -> (N, C, h, w)
    if const is not None and np.any(const):
        y = ctx.op("Add", y, ctx.const(const, "fill"))
    return from_nchw(ctx, layer, y)


def saturate_like(ctx, y: str, dtype: str) -> str:
    """Keras's _saturate_cast back to an integer image dtype (rounded first); floats pass through."""
    dt = np.dtype(dtype)
    if dt.kind not in "iu":
        return y
    info = np.iinfo(dt)
    clipped = ctx.op("Clip", ctx.op("Round", y), ctx.const(float(info.min), "min"), ctx.const(float(info.max), "max"))
    return ctx.op("Cast", clipped, to=helper.np_dtype_to_tensor_dtype(dt))


def smart_maps(h: int, w: int, size: tuple, interpolation: str = "bilinear") -> tuple[np.ndarray, np.ndarray]:
    """keras.utils.smart_resize's centered crop to the target aspect, then the resize, as two matrices."""
    top, left, ch, cw = aspect_crop_box(h, w, size)
    return (resize_matrix(ch, size[0], interpolation) @ crop_rows(h, top, ch),
            resize_matrix(cw, size[1], interpolation) @ crop_rows(w, left, cw))


@layer_exporter("Resizing")
def resizing(ctx, layer, inputs, weights):
    x = inputs[0]
    h, w = known_size(ctx, layer, x)
    size = (layer.height, layer.width)
    if layer.crop:
        top, left, ch, cw = aspect_crop_box(h, w, size)
        ph, pw = crop_rows(h, top, ch), crop_rows(w, left, cw)
    elif layer.pad:
        top, left = aspect_pads(h, w, size)
        ph, pw = pad_rows(h, top), pad_rows(w, left)
    else:
        ph, pw = np.eye(h, dtype=np.float32), np.eye(w, dtype=np.float32)
    rh = resize_matrix(ph.shape[0], size[0], layer.interpolation, layer.antialias)
    rw = resize_matrix(pw.shape[0], size[1], layer.interpolation, layer.antialias)
    mh, mw = rh @ ph, rw @ pw
    const = None
    if layer.pad:  # the fill: a constant image where the pad added rows / columns, resized
        fill = np.float32(layer.fill_value) * (1 - np.outer(ph.sum(1), pw.sum(1))).astype(np.float32)
        const = (rh @ fill @ rw.T).astype(np.float32)
    y = apply_maps(ctx, layer, x, mh, mw, const)
    return saturate_like(ctx, y, ctx.dtype(x))


@layer_exporter("CenterCrop")
def center_crop(ctx, layer, inputs, weights):
    x = inputs[0]
    h, w = known_size(ctx, layer, x)
    dh, dw = h - layer.height, w - layer.width
    if dh >= 0 and dw >= 0:
        ha, wa = layer.spatial_axes()
        y = ctx.op("Cast", x, to=F32)
        return ctx.op("Slice", y, ctx.ints([dh // 2, dw // 2], "starts"),
                      ctx.ints([dh // 2 + layer.height, dw // 2 + layer.width], "ends"), ctx.ints([ha, wa], "axes"))
    return apply_maps(ctx, layer, x, *smart_maps(h, w, (layer.height, layer.width)))


@layer_exporter("RandomCrop")
def random_crop(ctx, layer, inputs, weights):
    """At inference the centered window of the target aspect, resized (Keras's documented result)."""
    x = inputs[0]
    h, w = known_size(ctx, layer, x)
    return saturate_like(ctx, apply_maps(ctx, layer, x, *smart_maps(h, w, (layer.height, layer.width))), ctx.dtype(x))


@layer_exporter("AutoContrast")
def auto_contrast(ctx, layer, inputs, weights):
    original = ctx.op("Cast", inputs[0], to=F32)
    y = original
    ranged = (layer.low, layer.high) != (0.0, 255.0)
    if ranged:
        y = ctx.op("Mul", ctx.op("Div", ctx.op("Sub", y, ctx.const(layer.low, "low")),
                                 ctx.const(layer.high - layer.low, "span")), ctx.const(255.0, "full"))
    axes = layer.spatial_axes()
    low, high = ctx.reduce("ReduceMin", y, axes), ctx.reduce("ReduceMax", y, axes)  # (N, 1, 1, C)
    scale = ctx.op("Div", ctx.const(255.0, "full"), ctx.op("Sub", high, low))
    z = ctx.op("Add", ctx.op("Mul", y, scale), ctx.op("Mul", ctx.op("Neg", low), scale))
    out = ctx.op("Clip", z, ctx.const(0.0, "zero"), ctx.const(255.0, "full"))
    if ranged:
        out = ctx.op("Add", ctx.op("Mul", ctx.op("Div", out, ctx.const(255.0, "full")),
                                   ctx.const(layer.high - layer.low, "span")), ctx.const(layer.low, "low"))
    return ctx.op("Where", ctx.op("IsNaN", z), original, out)  # a constant channel: 0 / 0, Keras keeps it
