"""Reshaping layers: Reshape, Permute, RepeatVector, ZeroPadding1D/2D/3D, Cropping1D/2D/3D,
UpSampling1D/2D/3D.

References: keras/src/layers/reshaping/*.py. UpSampling2D's bilinear / bicubic follow TensorFlow's
ResizeBilinear / ResizeBicubic with half_pixel_centers=True (what tf.image.resize runs for Keras 3 on
the TensorFlow backend), including TF's 1024-entry cubic coefficient table.
"""
from __future__ import annotations

import math

import numpy as np

from .base import Layer, fmt_shape, register
from .conv_kernels import pad_spatial
from .spatial import Spatial

def reshape_output(input_shape: tuple, target: tuple) -> tuple:
    """keras.src.ops.operation_utils.compute_reshape_output_shape (no batch special case)."""
    if None in input_shape:
        return tuple(None if d == -1 else d for d in target)
    size = math.prod(input_shape)
    known = math.prod(d for d in target if d != -1)
    if -1 not in target:
        if size != known:
            raise ValueError(f"cannot reshape {size} values into {tuple(target)}")
        return tuple(target)
    if known == 0 or size % known:
        raise ValueError(f"cannot reshape {size} values into {tuple(target)}")
    return tuple(size // known if d == -1 else d for d in target)


@register("Reshape")
class Reshape(Layer):
    """Reshape every sample to ``target_shape`` (one -1 allowed)."""

    per_sample = True

    def __init__(self, config, name=None):
        super().__init__(config, name)
        target = self.get("target_shape")
        if (not isinstance(target, (list, tuple)) or sum(d == -1 for d in target) > 1
                or any(isinstance(d, bool) or not isinstance(d, int) or d < -1 for d in target)):
            raise self.fail(f"'target_shape' must be a list of positive integers with at most one -1. "
                            f"Received: target_shape={target!r}")
        self.target_shape = tuple(target)

    def output_shape(self, input_shape):
        return (input_shape[0], *reshape_output(tuple(input_shape[1:]), self.target_shape))

    def forward(self, x):
        return x.reshape((x.shape[0], *self.target_shape))  # (N, ...) -> (N, *target_shape)

    def explain(self, input_shape, output_shape):
        return f"reshapes each sample {fmt_shape(input_shape[1:])} -> {fmt_shape(output_shape[1:])}; 0 params"


@register("Permute")
class Permute(Layer):
    """Transpose the non-batch axes by ``dims`` (1-based)."""

    layout = "permute"

    def permutation(self, rank: int) -> tuple:
        """Output axis i is input axis ``permutation[i]`` (the batch axis stays first)."""
        return (0, *self.dims)

    def __init__(self, config, name=None):
        super().__init__(config, name)
        dims = self.get("dims")
        if not isinstance(dims, (list, tuple)) or sorted(dims) != list(range(1, len(dims) + 1)):
            raise self.fail(f"'dims' must be a permutation of 1..n. Received: dims={dims!r}")
        self.dims = tuple(dims)

    def output_shape(self, input_shape):
        if len(input_shape) != len(self.dims) + 1:
            raise self.fail(f"expected an input of rank {len(self.dims) + 1}. "
                            f"Received: input_shape={fmt_shape(input_shape)}")
        return (input_shape[0], *(input_shape[d] for d in self.dims))

    def forward(self, x):
        return np.transpose(x, (0, *self.dims))


@register("RepeatVector")
class RepeatVector(Layer):
    """(N, F) -> (N, n, F)."""

    def __init__(self, config, name=None):
        super().__init__(config, name)
        self.n = self.positive_int("n")

    def output_shape(self, input_shape):
        if len(input_shape) != 2:
            raise self.fail(f"expected an input of rank 2. Received: input_shape={fmt_shape(input_shape)}")
        return (input_shape[0], self.n, input_shape[1])

    def forward(self, x):
        return np.repeat(x[:, None, :], self.n, axis=1)  # (N, F) -> (N, n, F)


class _ZeroPadding(Spatial):
    """Pad the spatial axes with zeros."""

    per_sample = True

    def __init__(self, config, name=None):
        super().__init__(config, name)
        self.init_spatial()
        self.padding = self.pairs("padding", 1)

    def output_shape(self, input_shape):
        self.check_rank(input_shape)
        out = list(input_shape)
        for a, (lo, hi) in zip(self.spatial_axes(), self.padding):
            out[a] = None if out[a] is None else out[a] + lo + hi
        return tuple(out)

    def as_zero_padding(self):
        return self.padding

    def forward(self, x):
        return self.from_last(pad_spatial(self.to_last(x), self.padding))  # (N, H, W, C) -> (N, H+t+b, W+l+r, C)


@register("ZeroPadding1D")
class ZeroPadding1D(_ZeroPadding):
    rank = 1


@register("ZeroPadding2D")
class ZeroPadding2D(_ZeroPadding):
    rank = 2


@register("ZeroPadding3D")
class ZeroPadding3D(_ZeroPadding):
    rank = 3


class _Cropping(Spatial):
    """Remove (before, after) entries from each spatial axis."""

    per_sample = True

    def __init__(self, config, name=None):
        super().__init__(config, name)
        self.init_spatial()
        self.cropping = self.pairs("cropping", 1 if self.rank == 1 else 0)

    def output_shape(self, input_shape):
        self.check_rank(input_shape)
        out = list(input_shape)
        for a, (lo, hi) in zip(self.spatial_axes(), self.cropping):
            if out[a] is not None:
                if lo + hi >= out[a]:
                    raise self.fail(f"cropping {self.cropping} must be smaller than the input. "
                                    f"Received: input_shape={fmt_shape(input_shape)}")
                out[a] -= lo + hi
        return tuple(out)

    def forward(self, x):
        index = [slice(None)] * x.ndim
        for a, (lo, hi) in zip(self.spatial_axes(), self.cropping):
            index[a] = slice(lo, x.shape[a] - hi)
        return x[tuple(index)]


@register("Cropping1D")
class Cropping1D(_Cropping):
    rank, has_data_format = 1, False


@register("Cropping2D")
class Cropping2D(_Cropping):
    rank = 2


@register("Cropping3D")
class Cropping3D(_Cropping):
    rank = 3


class _UpSampling(Spatial):
    """Repeat each spatial entry ``size`` times (nearest)."""

    interpolations = ("nearest",)
    per_sample = True

    def __init__(self, config, name=None):
        super().__init__(config, name)
        self.init_spatial()
        size = self.get("size", 2)
        size = [size] * self.rank if isinstance(size, int) and not isinstance(size, bool) else size
        if (not isinstance(size, (list, tuple)) or len(size) != self.rank
                or any(isinstance(s, bool) or not isinstance(s, int) or s < 1 for s in size)):
            raise self.fail(f"'size' must be a positive integer or {self.rank} of them. "
                            f"Received: size={self.config.get('size')!r}")
        self.size = tuple(size)
        self.interpolation = self.choice("interpolation", self.interpolations, "nearest")

    def output_shape(self, input_shape):
        self.check_rank(input_shape)
        out = list(input_shape)
        for a, s in zip(self.spatial_axes(), self.size):
            out[a] = None if out[a] is None else out[a] * s
        return tuple(out)

    def forward(self, x):
        for a, s in zip(self.spatial_axes(), self.size):
            x = np.repeat(x, s, axis=a)  # (..., D, ...) -> (..., D*s, ...)
        return x


@register("UpSampling1D")
class UpSampling1D(_UpSampling):
    rank, has_data_format = 1, False


@register("UpSampling3D")
class UpSampling3D(_UpSampling):
    rank = 3


@register("UpSampling2D")
class UpSampling2D(_UpSampling):
    """Nearest repeats; bilinear / bicubic resize like TensorFlow (half-pixel centers)."""

    rank = 2
    interpolations = ("nearest", "bilinear", "bicubic", "area")

    def forward(self, x):
        if self.interpolation in ("nearest", "area"):  # area == replication for integer factors
            return super().forward(x)
        resize = linear_axis if self.interpolation == "bilinear" else cubic_axis
        h, w = self.spatial_axes()
        x = resize(x, w, x.shape[w] * self.size[1])  # TF interpolates along the width first
        return resize(x, h, x.shape[h] * self.size[0])

    def explain(self, input_shape, output_shape):
        return f"{self.interpolation} upsampling, rows x{self.size[0]} and columns x{self.size[1]}; 0 params"


def _source(in_size: int, out_size: int) -> np.ndarray:
    """TF's HalfPixelScaler: (out + 0.5) * (in / out) - 0.5, in float32."""
    scale = np.float32(in_size / out_size)
    return (np.arange(out_size, dtype=np.float32) + np.float32(0.5)) * scale - np.float32(0.5)


def linear_axis(x: np.ndarray, axis: int, out_size: int) -> np.ndarray:
    """TF ResizeBilinear along one axis: a + (b - a) * lerp between clamped neighbours."""
    src = _source(x.shape[axis], out_size)
    floor = np.floor(src)
    lerp = (src - floor).astype(x.dtype)
    lo = np.maximum(floor, 0).astype(np.int64)
    hi = np.minimum(np.ceil(src), x.shape[axis] - 1).astype(np.int64)
    shape = [1] * x.ndim
    shape[axis] = out_size
    a, b = np.take(x, lo, axis=axis), np.take(x, hi, axis=axis)  # (..., out, ...)
    return a + (b - a) * lerp.reshape(shape)


_TABLE = 1024


def _cubic_table(a: float = -0.5) -> np.ndarray:
    """TF's Keys cubic coefficients at i / 1024: column 0 for |t| < 1, column 1 for 1 <= |t| < 2."""
    t = np.arange(_TABLE + 1, dtype=np.float64) / _TABLE
    near = ((a + 2) * t - (a + 3)) * t * t + 1
    far = ((a * (t + 1) - 5 * a) * (t + 1) + 8 * a) * (t + 1) - 4 * a
    return np.stack([near, far], axis=1).astype(np.float32)  # (1025, 2)


def cubic_axis(x: np.ndarray, axis: int, out_size: int) -> np.ndarray:
    """TF ResizeBicubic (half-pixel, Keys a=-0.5) along one axis; outside taps get weight 0, renormalized."""
    size = x.shape[axis]
    src = _source(size, out_size)
    base = np.floor(src).astype(np.int64)
    offset = np.rint((src - np.floor(src)) * _TABLE).astype(np.int64)
    table = _cubic_table()
    weights = np.stack([table[offset, 1], table[offset, 0], table[_TABLE - offset, 0], table[_TABLE - offset, 1]])
    index = base[None, :] + np.arange(-1, 3)[:, None]  # (4, out)
    inside = (index >= 0) & (index < size)
    weights = np.where(inside, weights, np.float32(0))
    weights = weights / weights.sum(axis=0, keepdims=True)
    index = np.clip(index, 0, size - 1)
    shape = [1] * x.ndim
    shape[axis] = out_size
    out = np.zeros(x.shape[:axis] + (out_size,) + x.shape[axis + 1:], x.dtype)
    for k in range(4):
        out = out + np.take(x, index[k], axis=axis) * weights[k].astype(x.dtype).reshape(shape)
    return out
