"""Convolution layers in NumPy: Conv, DepthwiseConv, SeparableConv and ConvTranspose, 1D to 3D.

References: keras/src/layers/convolutional/base_conv.py, base_depthwise_conv.py,
base_separable_conv.py, base_conv_transpose.py, conv1d.py (causal padding).

Every layer computes in channels_last with the kernels of conv_kernels.py (im2col + matmul,
1x1 as a plain matmul, depthwise as shifted multiply-adds); the bias and an elementwise
activation run in place on each output block (``epilogue``). A transposed convolution is the
gradient of a convolution: spread the input out by the strides, pad, and correlate with the
spatially flipped kernel. ``fold_affine`` gives the weights of the layer followed by a
per-channel ``y * scale + shift`` (a BatchNormalization folded in by kcompat/plan.py).
"""
from __future__ import annotations

from typing import ClassVar

import numpy as np

from ..errors import ShapeError
from .base import Weight, fmt_shape, register
from .conv_geometry import conv_length, conv_pads, span, transpose_length
from .conv_kernels import convolve, convolve_transpose
from .tap_kernels import depthwise
from .core import WithActivation
from .spatial import Spatial


# ------------------------------------------------------------------- the layers
def _dims(shape) -> str:
    return "x".join(str(d) for d in shape)


def _step(word: str, values: tuple) -> str:
    return f"{word} {values[0]}" if len(set(values)) == 1 else f"{word}s {values}"


class _Conv(WithActivation, Spatial):
    """Options every convolution shares; subclasses say the weights and the math."""

    paddings: ClassVar[tuple] = ("valid", "same")
    tf_bias_add = True
    per_sample = True

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

    def pads(self, x: np.ndarray) -> list[tuple[int, int]]:
        """(before, after) zero padding of each spatial axis of x (channels_last) for this padding mode."""
        return conv_pads(x.shape[1:-1], self.kernel_size, self.strides, self.dilation, self.padding)

    def finish(self, y: np.ndarray) -> np.ndarray:
        """Back to the layer's data format; an activation that is not elementwise runs here, on the whole output."""
        return self.after_epilogue(self.from_last(y))

    def fold_affine(self, weights: list, axis: int, ndim: int, scale: np.ndarray, shift: np.ndarray) -> list | None:
        """Weights for this layer then ``y * scale + shift`` per output channel, with a bias (None: cannot)."""
        if self.activation_name != "linear" or axis != (1 if self.channels_first else ndim - 1):
            return None
        *kernels, bias = weights if self.use_bias else [*weights, 0]
        return [*self.scale_kernels(kernels, scale), bias * scale + shift]

    def same_padding_config(self, pads, data_format, input_shape):
        sizes = self.split(input_shape)[1]
        if self.padding != "valid" or data_format != self.data_format or None in sizes:
            return None
        same = conv_pads(sizes, self.kernel_size, self.strides, self.dilation, "same")
        return dict(self.config, padding="same") if [tuple(p) for p in pads] == same else None

    def scale_kernels(self, kernels: list, scale: np.ndarray) -> list:
        """The kernels of a layer whose every output channel is multiplied by ``scale``."""
        return [kernels[0] * scale]  # (*k, C, F) * (F,)

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
        x = self.to_last(x)  # (N, *sp, C)
        y = convolve(x, kernel, self.strides, self.dilation, self.pads(x), self.groups, self.epilogue(bias))
        return self.finish(y)  # (N, *out, F) in the layer's data format


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
        x = self.to_last(x)  # (N, *sp, C)
        flat = kernel.reshape(*self.kernel_size, -1)  # (*k, C, M) -> (*k, C*M): output c*M+m
        y = depthwise(x, flat, self.strides, self.dilation, self.pads(x), self.epilogue(bias))  # (N, *out, C*M)
        return self.finish(y)

    def scale_kernels(self, kernels, scale):
        return [kernels[0] * scale.reshape(kernels[0].shape[-2:])]  # (*k, C, M) * (C, M)

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
        x = self.to_last(x)  # (N, *sp, C)
        flat = depthwise_kernel.reshape(*self.kernel_size, -1)  # (*k, C, M) -> (*k, C*M)
        y = depthwise(x, flat, self.strides, self.dilation, self.pads(x))  # (N, *out, C*M)
        pointwise = pointwise_kernel.reshape(1, *pointwise_kernel.shape)  # (1.., C*M, F) -> 1x1 conv kernel
        y = convolve(y, pointwise, (1,) * self.rank, (1,) * self.rank, [(0, 0)] * self.rank,
                     epilogue=self.epilogue(bias))  # (N, *out, C*M) @ (C*M, F)
        return self.finish(y)

    def scale_kernels(self, kernels, scale):
        return [kernels[0], kernels[1] * scale]  # pointwise (1.., C*M, F) * (F,)

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
        y = convolve_transpose(x, kernel, self.strides, self.dilation, outs, before, self.epilogue(bias))  # (N, *out, F)
        return self.finish(y)

    def scale_kernels(self, kernels, scale):
        return [kernels[0] * scale[:, None]]  # (*k, F, C) * (F, 1)

    def same_padding_config(self, pads, data_format, input_shape):
        return None  # padding of a transposed conv crops its output: no input padding to absorb

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
