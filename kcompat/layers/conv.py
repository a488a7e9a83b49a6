"""Convolution layers in NumPy: Conv, DepthwiseConv, SeparableConv and ConvTranspose, 1D to 3D.

References: keras/src/layers/convolutional/base_conv.py, base_depthwise_conv.py,
base_separable_conv.py, base_conv_transpose.py, conv1d.py (causal padding);
keras/src/ops/operation_utils.py compute_conv_output_shape and
keras/src/backend/common/backend_utils.py compute_conv_transpose_output_shape (shapes);
keras/src/backend/tensorflow/nn.py (TF 'same' padding puts the odd pixel at the end).

Every layer computes in channels_last: ``windows`` gives a strided view of all patches,
``convolve`` copies it once into an im2col matrix and does one (batched) matmul; a
depthwise kernel (one input channel per group) is one einsum straight off the view. Large
batches are cut into slices so an im2col matrix stays under IM2COL_BYTES.
A transposed convolution is the gradient of a convolution: spread the input out by the
strides, pad, and correlate with the spatially flipped kernel.
"""
from __future__ import annotations

import math
from typing import ClassVar

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from ..errors import ShapeError
from .base import Weight, fmt_shape, register
from .core import WithActivation
from .spatial import Spatial

# --------------------------------------------------------------- shape arithmetic
def span(k: int, d: int) -> int:
    """Extent of a dilated kernel: (k - 1) * d + 1."""
    return (k - 1) * d + 1


def conv_length(n: int | None, k: int, s: int, d: int, padding: str) -> int | None:
    """Output length of one spatial axis (compute_conv_output_shape)."""
    if n is None:
        return None
    if padding == "valid":
        return (n - span(k, d)) // s + 1
    return (n - 1) // s + 1  # same, causal


def same_pads(n: int, k: int, s: int, d: int) -> tuple[int, int]:
    """TF 'same' padding of one axis: (before, after), the odd pixel after."""
    out = (n - 1) // s + 1
    total = max((out - 1) * s + span(k, d) - n, 0)
    return total // 2, total - total // 2


def conv_pads(sizes, kernel_size, strides, dilation, padding) -> list[tuple[int, int]]:
    """Per-axis (before, after) padding for 'valid', 'same' or 'causal'."""
    if padding == "valid":
        return [(0, 0)] * len(sizes)
    if padding == "causal":
        return [(span(k, d) - 1, 0) for k, d in zip(kernel_size, dilation)]
    return [same_pads(n, k, s, d) for n, k, s, d in zip(sizes, kernel_size, strides, dilation)]


def transpose_length(n: int | None, k: int, s: int, d: int, padding: str, output_padding: int | None) -> int | None:
    """Output length of one axis of a transposed conv (compute_conv_transpose_output_shape)."""
    if n is None:
        return None
    k = span(k, d)
    if padding == "valid":
        extra = max(k, s) - k if output_padding is None else output_padding
        return (n - 1) * s + k + extra
    return n * s if output_padding is None else (n - 1) * s + k % 2 + output_padding


def pad_spatial(x: np.ndarray, pads, value=0) -> np.ndarray:
    """Pad (or, for negative amounts, crop) the spatial axes 1..r of (N, *spatial, C)."""
    if all(b == 0 and a == 0 for b, a in pads):
        return x
    grow = [(0, 0)] + [(max(b, 0), max(a, 0)) for b, a in pads] + [(0, 0)] * (x.ndim - 1 - len(pads))
    x = np.pad(x, grow, constant_values=value)
    crop = (slice(None),) + tuple(slice(max(-b, 0), x.shape[i + 1] - max(-a, 0)) for i, (b, a) in enumerate(pads))
    return x[crop]


# ------------------------------------------------------------------ the kernels
def windows(x: np.ndarray, kernel_size, strides, dilation) -> np.ndarray:
    """Strided view of every patch of x (N, *spatial, *rest) -> (N, *out, *rest, *kernel_size); no copy."""
    r = len(kernel_size)
    extent = tuple(span(k, d) for k, d in zip(kernel_size, dilation))
    v = sliding_window_view(x, extent, axis=tuple(range(1, r + 1)))  # (N, *full, *rest, *extent)
    pick = ((slice(None),) + tuple(slice(None, None, s) for s in strides) + (Ellipsis,)
            + tuple(slice(None, None, d) for d in dilation))
    return v[pick]


IM2COL_BYTES = 8 * 2**20  # the batch is split so one im2col matrix stays under this


def convolve(x: np.ndarray, kernel: np.ndarray, strides, dilation, groups: int = 1) -> np.ndarray:
    """Cross-correlate padded x (N, *spatial, C) with kernel (*k, C/groups, F): im2col + one matmul."""
    r = kernel.ndim - 2
    *k, cg, f = kernel.shape
    n = x.shape[0]
    win = windows(x, k, strides, dilation)  # (N, *out, C, *k): a view
    out = win.shape[1:r + 1]
    if groups > 1 and cg == 1:  # depthwise: each channel meets its own M filters; einsum reads the view, no copy
        taps = "ijk"[:r]
        w = kernel.reshape(*k, groups, f // groups)  # (*k, 1, C*M) -> (*k, C, M)
        y = np.einsum(f"...c{taps},{taps}cm->...cm", win, w)  # (N, *out, C, M)
        return y.reshape(n, *out, f)  # channel c*M + m
    per_item = math.prod(out) * math.prod(k) * x.shape[-1] * x.itemsize
    chunk = max(1, IM2COL_BYTES // max(per_item, 1))
    if n > chunk:  # bound the im2col memory: a few batch slices, each one matmul
        return np.concatenate([convolve(x[i:i + chunk], kernel, strides, dilation, groups)
                               for i in range(0, n, chunk)])
    if groups == 1:
        win = np.moveaxis(win, r + 1, -1)  # (N, *out, C, *k) -> (N, *out, *k, C)
        return np.tensordot(win, kernel, axes=r + 1)  # (N*out, k*C) @ (k*C, F) -> (N, *out, F)
    fg = f // groups
    xg = x.reshape(*x.shape[:-1], groups, cg)  # (N, *sp, C) -> (N, *sp, G, Cg)
    win = windows(xg, k, strides, dilation)  # (N, *out, G, Cg, *k)
    win = np.moveaxis(win, (r + 1, r + 2), (0, -1))  # (G, N, *out, *k, Cg)
    cols = win.reshape(groups, -1, math.prod(k) * cg)  # copy: (G, N*out, k*Cg)
    w = kernel.reshape(*k, cg, groups, fg)  # (*k, Cg, F) -> (*k, Cg, G, F/G)
    w = np.moveaxis(w, r + 1, 0).reshape(groups, -1, fg)  # (G, k*Cg, F/G)
    y = np.matmul(cols, w)  # (G, N*out, k*Cg) @ (G, k*Cg, F/G) -> (G, N*out, F/G)
    return np.moveaxis(y, 0, 1).reshape(n, *out, f)  # (N*out, G, F/G) -> (N, *out, F)


def convolve_transpose(x: np.ndarray, kernel: np.ndarray, strides, dilation, out_sizes, pads_before) -> np.ndarray:
    """Gradient of a conv: x (N, *in, C), kernel (*k, F, C) -> (N, *out_sizes, F)."""
    r = kernel.ndim - 2
    k = kernel.shape[:r]
    n, sizes, c = x.shape[0], x.shape[1:-1], x.shape[-1]
    spread = tuple((i - 1) * s + 1 for i, s in zip(sizes, strides))
    xd = np.zeros((n, *spread, c), x.dtype)  # (N, (in-1)*s+1, ..., C): input spread out by the strides
    xd[(slice(None),) + tuple(slice(None, None, s) for s in strides)] = x
    pads = []
    for kk, d, o, pb, m in zip(k, dilation, out_sizes, pads_before, spread):
        before = span(kk, d) - 1 - pb
        pads.append((before, o + span(kk, d) - 1 - before - m))
    xp = pad_spatial(xd, pads)  # (N, out + span - 1, ..., C)
    w = np.swapaxes(np.flip(kernel, axis=tuple(range(r))), -1, -2)  # (*k, F, C) flipped -> (*k, C, F)
    return convolve(xp, w, (1,) * r, dilation)


# ------------------------------------------------------------------- the layers
def _dims(shape) -> str:
    return "x".join(str(d) for d in shape)


def _step(word: str, values: tuple) -> str:
    return f"{word} {values[0]}" if len(set(values)) == 1 else f"{word}s {values}"


class _Conv(WithActivation, Spatial):
    """Options every convolution shares; subclasses say the weights and the math."""

    paddings: ClassVar[tuple] = ("valid", "same")
    tf_bias_add = True

    def __init__(self, config, name=None):
        super().__init__(config, name)
        self.init_spatial()
        self.kernel_size = self.int_tuple("kernel_size")
        self.strides = self.int_tuple("strides", 1)
        self.dilation = self.int_tuple("dilation_rate", 1)
        self.padding = self.choice("padding", self.paddings, "valid")
        self.use_bias = bool(self.get("use_bias", True))
        if self.config.get("lora_rank"):
            raise self.fail(f"LoRA-enabled convolution is not supported. Received: lora_rank={self.config['lora_rank']}")
        self.init_activation()

    def describe_window(self):
        return (f"kernel_size={self.kernel_size}, strides={self.strides}, dilation_rate={self.dilation}, "
                f"padding={self.padding}")

    def out_channels(self, input_shape) -> int:
        return self.filters

    def output_shape(self, input_shape):
        batch, sp, _ = self.split(input_shape)
        self.known_channels(input_shape)
        out = tuple(conv_length(n, k, s, d, self.padding)
                    for n, k, s, d in zip(sp, self.kernel_size, self.strides, self.dilation))
        self.check_positive(sp, out, input_shape)
        return self.activated_shape(self.join(batch, out, self.out_channels(input_shape)))

    def padded(self, x: np.ndarray) -> np.ndarray:
        """x channels_last, padded for this layer's padding mode."""
        return pad_spatial(x, conv_pads(x.shape[1:-1], self.kernel_size, self.strides, self.dilation, self.padding))

    def finish(self, y: np.ndarray, bias) -> np.ndarray:
        """Add the bias, go back to the layer's data format, apply the activation."""
        if bias is not None:
            y = y + bias  # (N, *sp, F) + (F,)
        return self.activation(self.from_last(y))

    def explain(self, input_shape, output_shape):
        ws = self.weights(input_shape)
        parts = " + ".join(f"{w.name} {_dims(w.shape)}" for w in ws)
        total = sum(self.param_count(input_shape))
        sp_in, sp_out = self.split(input_shape)[1], self.split(output_shape)[1]
        how = f"{self.padding} padding, {_step('stride', self.strides)}"
        if max(self.dilation) > 1:
            how += f", {_step('dilation', self.dilation)}"
        if getattr(self, "groups", 1) > 1:
            how += f", {self.groups} groups"
        act = f"; then {self.activation_name}" if self.activation_name != "linear" else ""
        return f"{parts} = {total} params; {fmt_shape(sp_in)} -> {fmt_shape(sp_out)} with {how}{act}"


class _ConvN(_Conv):
    """Conv1D/2D/3D: kernel (*kernel_size, in/groups, filters) [+ bias (filters,)]."""

    def __init__(self, config, name=None):
        super().__init__(config, name)
        self.filters = self.positive_int("filters")
        self.groups = self.positive_int("groups", 1)
        if self.filters % self.groups:
            raise self.fail(f"'filters' must be divisible by 'groups'. Received: filters={self.filters}, "
                            f"groups={self.groups}")

    def weights(self, input_shape):
        c = self.known_channels(input_shape)
        if c % self.groups:
            raise ShapeError(f"layer '{self.name}' ({self.class_name}): input channels must be divisible by "
                             f"groups. Received: groups={self.groups}, input_shape={fmt_shape(tuple(input_shape))}")
        ws = [Weight("kernel", (*self.kernel_size, c // self.groups, self.filters))]
        return ws + [Weight("bias", (self.filters,))] if self.use_bias else ws

    def forward(self, x, kernel, bias=None):
        x = self.padded(self.to_last(x))  # (N, *sp, C) padded
        y = convolve(x, kernel, self.strides, self.dilation, self.groups)  # (N, *out, F)
        return self.finish(y, bias)


@register("Conv1D", "Convolution1D")
class Conv1D(_ConvN):
    rank = 1
    paddings = ("valid", "same", "causal")


@register("Conv2D", "Convolution2D")
class Conv2D(_ConvN):
    rank = 2


@register("Conv3D", "Convolution3D")
class Conv3D(_ConvN):
    rank = 3


class _DepthwiseConv(_Conv):
    """DepthwiseConv1D/2D: kernel (*kernel_size, in, multiplier); channel c gives outputs c*M .. c*M+M-1."""

    def __init__(self, config, name=None):
        super().__init__(config, name)
        self.multiplier = self.positive_int("depth_multiplier", 1)

    def out_channels(self, input_shape):
        return self.known_channels(input_shape) * self.multiplier

    def weights(self, input_shape):
        c = self.known_channels(input_shape)
        ws = [Weight("kernel", (*self.kernel_size, c, self.multiplier))]
        return ws + [Weight("bias", (c * self.multiplier,))] if self.use_bias else ws

    def forward(self, x, kernel, bias=None):
        x = self.padded(self.to_last(x))  # (N, *sp, C) padded
        c = x.shape[-1]
        grouped = kernel.reshape(*self.kernel_size, 1, c * self.multiplier)  # (*k, C, M) -> (*k, 1, C*M)
        y = convolve(x, grouped, self.strides, self.dilation, groups=c)  # (N, *out, C*M)
        return self.finish(y, bias)

    def explain(self, input_shape, output_shape):
        c = self.known_channels(input_shape)
        return (f"{super().explain(input_shape, output_shape)}; each of {c} channels filtered alone, "
                f"x{self.multiplier} = {c * self.multiplier} channels")


@register("DepthwiseConv1D")
class DepthwiseConv1D(_DepthwiseConv):
    rank = 1


@register("DepthwiseConv2D")
class DepthwiseConv2D(_DepthwiseConv):
    rank = 2


class _SeparableConv(_Conv):
    """SeparableConv1D/2D: a depthwise conv (*k, in, M), then a pointwise (1.., in*M, filters) + bias."""

    def __init__(self, config, name=None):
        super().__init__(config, name)
        self.filters = self.positive_int("filters")
        self.multiplier = self.positive_int("depth_multiplier", 1)

    def weights(self, input_shape):
        c = self.known_channels(input_shape)
        ws = [Weight("depthwise_kernel", (*self.kernel_size, c, self.multiplier)),
              Weight("pointwise_kernel", (*(1,) * self.rank, c * self.multiplier, self.filters))]
        return ws + [Weight("bias", (self.filters,))] if self.use_bias else ws

    def forward(self, x, depthwise_kernel, pointwise_kernel, bias=None):
        x = self.padded(self.to_last(x))  # (N, *sp, C) padded
        c = x.shape[-1]
        grouped = depthwise_kernel.reshape(*self.kernel_size, 1, c * self.multiplier)  # (*k, C, M) -> (*k, 1, C*M)
        y = convolve(x, grouped, self.strides, self.dilation, groups=c)  # (N, *out, C*M)
        y = np.matmul(y, pointwise_kernel.reshape(c * self.multiplier, self.filters))  # (..., C*M) @ (C*M, F)
        return self.finish(y, bias)

    def explain(self, input_shape, output_shape):
        c = self.known_channels(input_shape)
        return (f"{super().explain(input_shape, output_shape)}; depthwise {c} -> {c * self.multiplier} "
                f"channels, then 1x1 {c * self.multiplier} -> {self.filters}")


@register("SeparableConv1D", "SeparableConvolution1D")
class SeparableConv1D(_SeparableConv):
    rank = 1
    paddings = ("valid", "same", "causal")  # causal: tf_keras files


@register("SeparableConv2D", "SeparableConvolution2D")
class SeparableConv2D(_SeparableConv):
    rank = 2


class _ConvTranspose(_Conv):
    """Conv1D/2D/3DTranspose: kernel (*kernel_size, filters, in) [+ bias], the gradient of a conv."""

    def __init__(self, config, name=None):
        super().__init__(config, name)
        self.filters = self.positive_int("filters")
        op = self.config.get("output_padding")
        self.output_padding = None if op is None else self.int_tuple("output_padding", minimum=0)
        if self.output_padding is not None and any(p >= s for p, s in zip(self.output_padding, self.strides)):
            raise self.fail(f"'output_padding' must be strictly less than 'strides' on every axis. "
                            f"Received: output_padding={self.output_padding}, strides={self.strides}")

    def weights(self, input_shape):
        c = self.known_channels(input_shape)
        ws = [Weight("kernel", (*self.kernel_size, self.filters, c))]
        return ws + [Weight("bias", (self.filters,))] if self.use_bias else ws

    def out_sizes(self, spatial) -> tuple:
        ops = self.output_padding or (None,) * self.rank
        return tuple(transpose_length(n, k, s, d, self.padding, p)
                     for n, k, s, d, p in zip(spatial, self.kernel_size, self.strides, self.dilation, ops))

    def output_shape(self, input_shape):
        batch, sp, _ = self.split(input_shape)
        self.known_channels(input_shape)
        return self.activated_shape(self.join(batch, self.out_sizes(sp), self.filters))

    def forward(self, x, kernel, bias=None):
        x = self.to_last(x)  # (N, *in, C)
        sizes = x.shape[1:-1]
        outs = self.out_sizes(sizes)
        # the forward conv this is the gradient of: TF 'same' padding of the output, the odd pixel after
        before = [max((i - 1) * s + span(k, d) - o, 0) // 2 if self.padding == "same" else 0
                  for i, o, k, s, d in zip(sizes, outs, self.kernel_size, self.strides, self.dilation)]
        y = convolve_transpose(x, kernel, self.strides, self.dilation, outs, before)  # (N, *out, F)
        return self.finish(y, bias)

    def explain(self, input_shape, output_shape):
        text = super().explain(input_shape, output_shape)
        if self.output_padding is not None:
            text = text.replace(" padding, ", f" padding, output_padding {self.output_padding}, ", 1)
        return "transposed: " + text


@register("Conv1DTranspose", "Convolution1DTranspose")
class Conv1DTranspose(_ConvTranspose):
    rank = 1


@register("Conv2DTranspose", "Convolution2DTranspose")
class Conv2DTranspose(_ConvTranspose):
    rank = 2


@register("Conv3DTranspose", "Convolution3DTranspose")
class Conv3DTranspose(_ConvTranspose):
    rank = 3
