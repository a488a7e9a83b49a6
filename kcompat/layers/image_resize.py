"""Image resizing as Keras 3 does it on TensorFlow: ``tf.image.resize`` (v2) and the aspect-ratio crop / pad.

References: keras/src/backend/tensorflow/image.py (``resize``: crop_to_aspect_ratio, pad_to_aspect_ratio),
keras/src/utils/image_utils.py (``smart_resize``), and TensorFlow's kernels: resize_bilinear / bicubic /
nearest_neighbor (half-pixel centers), resize_area, scale_and_translate (lanczos3 / lanczos5, and
bilinear / bicubic with ``antialias``: the triangle / Keys-cubic kernel widened by the downscale).
Every function works on channels_last images (N, H, W, C) and resizes one axis at a time.
"""
from __future__ import annotations

import math

import numpy as np

from .reshaping import cubic_axis, linear_axis

INTERPOLATIONS = ("bilinear", "nearest", "lanczos3", "lanczos5", "bicubic", "area")


def nearest_axis(x: np.ndarray, axis: int, out_size: int) -> np.ndarray:
    """ResizeNearestNeighbor, half-pixel centers: source floor((i + 0.5) * in / out), clamped."""
    scale = np.float32(x.shape[axis] / out_size)
    src = np.floor((np.arange(out_size, dtype=np.float32) + np.float32(0.5)) * scale).astype(np.int64)
    return np.take(x, np.clip(src, 0, x.shape[axis] - 1), axis=axis)


def _apply(x: np.ndarray, axis: int, weights: np.ndarray) -> np.ndarray:
    """Contract ``axis`` of x with an (out, in) weight matrix."""
    y = np.tensordot(x, weights.astype(x.dtype), axes=([axis], [1]))  # (..., in, ...) -> (..., rest, out)
    return np.moveaxis(y, -1, axis)


def area_weights(in_size: int, out_size: int) -> np.ndarray:
    """ResizeArea (no corner alignment): each output averages the input cells its box overlaps."""
    scale = np.float32(in_size / out_size)
    w = np.zeros((out_size, in_size), np.float32)
    for o in range(out_size):
        lo, hi = np.float32(o) * scale, np.float32(o + 1) * scale
        for i in range(int(math.floor(lo)), int(math.ceil(hi))):
            w[o, min(i, in_size - 1)] += np.float32(min(i + 1, hi) - max(i, lo))
    return w / scale


F = np.float32


def _triangle(x):
    return np.where(x < 1, F(1) - x, F(0))


def _keys_cubic(x):
    return np.where(x >= 2, F(0), np.where(x >= 1, ((F(-0.5) * x + F(2.5)) * x - F(4)) * x + F(2),
                                           (F(1.5) * x - F(2.5)) * x * x + F(1)))


def _lanczos(radius: float):
    r, pi = F(radius), F(3.14159265359)  # TF's constant, in float32 like its kernel

    def kernel(x):
        with np.errstate(invalid="ignore", divide="ignore"):
            v = r * np.sin(pi * x) * np.sin(pi * x / r) / (pi * pi * x * x)
        return np.where(x > r, F(0), np.where(x <= F(1e-3), F(1), v))
    return kernel


KERNELS = {"triangle": (_triangle, 1.0), "keyscubic": (_keys_cubic, 2.0),
           "lanczos3": (_lanczos(3.0), 3.0), "lanczos5": (_lanczos(5.0), 5.0)}


def scale_translate_weights(in_size: int, out_size: int, kernel: str, antialias: bool) -> np.ndarray:
    """ScaleAndTranslate's spans (scale = out / in, no translation) as an (out, in) matrix."""
    fn, radius = KERNELS[kernel]
    inv_scale = F(1) / (F(out_size) / F(in_size))
    kernel_scale = max(inv_scale, F(1)) if antialias else F(1)
    reach = F(radius) * kernel_scale
    w = np.zeros((out_size, in_size), np.float32)
    for o in range(out_size):  # float32 arithmetic throughout, as scale_and_translate_op.cc
        sample = (F(o) + F(0.5)) * inv_scale
        if sample < 0 or sample > in_size:
            continue
        start = min(max(math.ceil(sample - reach - F(0.5)), 0), in_size - 1)
        end = min(max(math.floor(sample + reach - F(0.5)), 0), in_size - 1) + 1
        src = np.arange(start, end).astype(F)
        weights = fn(np.abs((src + F(0.5) - sample) * (F(1) / kernel_scale)))
        total = F(0)
        for v in weights:  # summed in order, like the kernel's loop
            total = F(total + v)
        if abs(total) >= 1000 * np.finfo(F).tiny:
            w[o, start:end] = weights * (F(1) / total)
    return w


def resize_axis(x: np.ndarray, axis: int, out: int, interpolation: str = "bilinear",
                antialias: bool = False) -> np.ndarray:
    """One axis of tf.image.resize (the op is separable: height, then width)."""
    n = x.shape[axis]
    if interpolation == "nearest":
        return nearest_axis(x, axis, out)
    if interpolation == "area":
        return _apply(x, axis, area_weights(n, out))
    if interpolation in ("lanczos3", "lanczos5") or antialias:
        kernel = {"bilinear": "triangle", "bicubic": "keyscubic"}.get(interpolation, interpolation)
        return _apply(x, axis, scale_translate_weights(n, out, kernel, antialias))
    if interpolation == "bilinear":
        return linear_axis(x, axis, out)
    return cubic_axis(x, axis, out)


def resize_matrix(in_size: int, out_size: int, interpolation: str = "bilinear", antialias: bool = False) -> np.ndarray:
    """The (out, in) float32 matrix of one axis's resize: resize_axis applied to the identity."""
    return resize_axis(np.eye(in_size, dtype=np.float32), 0, out_size, interpolation, antialias)


def resize(x: np.ndarray, size: tuple, interpolation: str = "bilinear", antialias: bool = False) -> np.ndarray:
    """tf.image.resize of (N, H, W, C) images to ``size``: float32 out (nearest keeps the dtype)."""
    if interpolation != "nearest":
        x = x.astype(np.float32, copy=False)
    for axis, out in ((1, size[0]), (2, size[1])):
        x = resize_axis(x, axis, out, interpolation, antialias)
    return x


def aspect_crop_box(height: int, width: int, size: tuple) -> tuple[int, int, int, int]:
    """(top, left, crop height, crop width) of the largest centered window with the target aspect ratio."""
    th, tw = size
    ch = max(min(height, int(float(width * th) / tw)), 1)
    cw = max(min(width, int(float(height * tw) / th)), 1)
    return int(float(height - ch) / 2), int(float(width - cw) / 2), ch, cw


def crop_to_aspect(x: np.ndarray, size: tuple) -> np.ndarray:
    """smart_resize's crop (before resizing) of (N, H, W, C) images."""
    top, left, ch, cw = aspect_crop_box(x.shape[1], x.shape[2], size)
    return x[:, top:top + ch, left:left + cw, :]


def aspect_pads(height: int, width: int, size: tuple) -> tuple[int, int]:
    """(rows, columns) of fill added on EACH side by pad_to_aspect."""
    th, tw = size
    top = int(float(max(height, int(float(width * th) / tw)) - height) / 2)
    left = int(float(max(width, int(float(height * tw) / th)) - width) / 2)
    return top, left


def pad_to_aspect(x: np.ndarray, size: tuple, fill_value: float) -> np.ndarray:
    """Keras's pad_to_aspect_ratio on TensorFlow: the same number of fill rows / columns on both sides
    (half the missing amount, rounded down on each side)."""
    top, left = aspect_pads(x.shape[1], x.shape[2], size)
    pads = ((0, 0), (top, top), (left, left), (0, 0))
    return np.pad(x, pads, constant_values=np.asarray(fill_value, x.dtype))  # (N, H, W, C) -> (N, H+2t, W+2l, C)


def smart_resize(x: np.ndarray, size: tuple, interpolation: str = "bilinear") -> np.ndarray:
    """keras.utils.smart_resize: centered crop to the target aspect ratio, then resize."""
    return resize(crop_to_aspect(x, size), size, interpolation)
