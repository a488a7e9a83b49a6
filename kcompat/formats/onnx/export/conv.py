"""ONNX exporters of convolution layers: Conv, DepthwiseConv, SeparableConv,
ConvTranspose (1D-3D); pooling.py shares the layout helpers.

ONNX's Conv / ConvTranspose / MaxPool / AveragePool are channels-first: a channels_last
layer becomes ``Transpose -> op -> Transpose`` (its output stays NHWC, named after the
layer), and optimize.py cancels the inner pairs so a CNN runs NCHW end to end.
Padding is written explicitly: TF 'same' puts the odd pixel at the end (``same_pads``),
causal pads only before; an unknown spatial size falls back to ``auto_pad=SAME_UPPER``,
which is the same rule. Average pooling never counts padding (``count_include_pad=0``).
References: kcompat/layers/conv.py, pooling.py (the shape rules, shared here);
onnx/docs/Operators.md Conv, ConvTranspose (output = s*(in-1) + output_padding + span - pads).
"""
from __future__ import annotations

import numpy as np

from ....layers.conv_kernels import conv_pads, span, transpose_length
from .registry import layer_exporter


def to_first(ctx, x: str, layer) -> str:
    """(N, *sp, C) -> (N, C, *sp) for a channels_last layer; channels_first passes through."""
    if layer.channels_first:
        return x
    r = layer.rank
    return ctx.op("Transpose", x, perm=[0, r + 1, *range(1, r + 1)])


def from_first(ctx, y: str, layer) -> str:
    """(N, C, *sp) -> (N, *sp, C) for a channels_last layer."""
    if layer.channels_first:
        return y
    r = layer.rank
    return ctx.op("Transpose", y, perm=[0, *range(2, r + 2), 1])


def onnx_kernel(kernel: np.ndarray) -> np.ndarray:
    """Keras (*k, in, out) -> ONNX (out, in, *k); a transposed conv's (*k, F, C) -> (C, F, *k) alike."""
    r = kernel.ndim - 2
    return np.ascontiguousarray(np.transpose(kernel, (r + 1, r, *range(r))))


def pad_attrs(ctx, x: str, layer, kernel_size, strides, dilation, padding) -> dict:
    """``pads`` [begin..., end...] for valid / causal / same; SAME_UPPER when a spatial size is unknown."""
    _, sizes, _ = layer.split(ctx.shape(x))
    if padding == "same" and None in sizes:
        return {"auto_pad": "SAME_UPPER"}
    pairs = conv_pads(sizes, kernel_size, strides, dilation, padding)
    return {"pads": [b for b, _ in pairs] + [a for _, a in pairs]}


def conv_node(ctx, layer, x: str, kernel: np.ndarray, bias, groups: int, name="kernel", **overrides) -> str:
    """One ONNX Conv on an NCHW tensor, with the layer's window options unless overridden."""
    w = ctx.const(onnx_kernel(kernel), name, dtype=None)
    b = [ctx.const(bias, "bias", dtype=None)] if bias is not None else []
    attrs = {"kernel_shape": list(kernel.shape[:-2]), "strides": list(layer.strides),
             "dilations": list(layer.dilation), "group": groups, **overrides}
    return ctx.op("Conv", x, w, *b, **attrs)


def finish(ctx, layer, y: str, out_shape: tuple) -> str:
    """Back to the layer's data format, then the activation (on the layer's own layout)."""
    return ctx.activation(layer.activation_name, from_first(ctx, y, layer), out_shape)


def layer_output_shape(ctx, layer, x: str) -> tuple:
    return layer.output_shape(ctx.shape(x))


def depthwise_kernel(kernel: np.ndarray) -> np.ndarray:
    """(*k, C, M) -> (*k, 1, C*M): output channel c*M + m, one input channel per group."""
    *k, c, m = kernel.shape
    return kernel.reshape(*k, 1, c * m)


@layer_exporter("Conv1D", "Conv2D", "Conv3D")
def conv(ctx, layer, inputs, weights):
    x = inputs[0]
    kernel, bias = weights[0], weights[1] if layer.use_bias else None
    pads = pad_attrs(ctx, x, layer, layer.kernel_size, layer.strides, layer.dilation, layer.padding)
    y = conv_node(ctx, layer, to_first(ctx, x, layer), kernel, bias, layer.groups, **pads)  # (N, F, *out)
    return finish(ctx, layer, y, layer_output_shape(ctx, layer, x))


@layer_exporter("DepthwiseConv1D", "DepthwiseConv2D")
def depthwiseconv_node(ctx, layer, inputs, weights):
    x = inputs[0]
    kernel, bias = weights[0], weights[1] if layer.use_bias else None
    c = layer.known_channels(ctx.shape(x))
    pads = pad_attrs(ctx, x, layer, layer.kernel_size, layer.strides, layer.dilation, layer.padding)
    y = conv_node(ctx, layer, to_first(ctx, x, layer), depthwise_kernel(kernel), bias, c, **pads)  # (N, C*M, *out)
    return finish(ctx, layer, y, layer_output_shape(ctx, layer, x))


@layer_exporter("SeparableConv1D", "SeparableConv2D")
def separableconv_node(ctx, layer, inputs, weights):
    x = inputs[0]
    depthwise, pointwise = weights[0], weights[1]
    bias = weights[2] if layer.use_bias else None
    c = layer.known_channels(ctx.shape(x))
    pads = pad_attrs(ctx, x, layer, layer.kernel_size, layer.strides, layer.dilation, layer.padding)
    y = conv_node(ctx, layer, to_first(ctx, x, layer), depthwise_kernel(depthwise), None, c, "depthwise_kernel",
              **pads)  # (N, C*M, *out)
    ones = [1] * layer.rank
    y = conv_node(ctx, layer, y, pointwise, bias, 1, "pointwise_kernel", kernel_shape=ones, strides=ones,
              dilations=ones, pads=[0] * (2 * layer.rank))  # 1x1: (N, C*M, *out) -> (N, F, *out)
    return finish(ctx, layer, y, layer_output_shape(ctx, layer, x))


@layer_exporter("Conv1DTranspose", "Conv2DTranspose", "Conv3DTranspose")
def conv_transpose(ctx, layer, inputs, weights):
    """Pads and output_padding chosen so ONNX's output size is Keras's, with Keras's alignment.

    ONNX: out = s*(n-1) + span + output_padding - begin - end. Keras's out (transpose_length) leaves
    ``total = s*(n-1) + span - out`` to crop: TF 'same' crops total // 2 before; a negative total
    (stride above the kernel span) is extra output at the end, i.e. output_padding. None of this
    depends on n, so unknown spatial sizes export too.
    """
    x = inputs[0]
    kernel, bias = weights[0], weights[1] if layer.use_bias else None
    out_shape = layer_output_shape(ctx, layer, x)
    ops = layer.output_padding or (None,) * layer.rank
    begin, end, extra = [], [], []
    for k, s, d, p in zip(layer.kernel_size, layer.strides, layer.dilation, ops):
        total = span(k, d) - transpose_length(1, k, s, d, layer.padding, p)  # at n = 1; the same for every n
        before = max(total, 0) // 2 if layer.padding == "same" else 0
        begin.append(before)
        end.append(max(total, 0) - before)
        extra.append(max(-total, 0))
    w = ctx.const(onnx_kernel(kernel), "kernel", dtype=None)  # (C, F, *k)
    b = [ctx.const(bias, "bias", dtype=None)] if bias is not None else []
    attrs = {"kernel_shape": list(layer.kernel_size), "strides": list(layer.strides),
             "dilations": list(layer.dilation), "pads": begin + end}
    if any(extra):
        attrs["output_padding"] = extra
    y = ctx.op("ConvTranspose", to_first(ctx, x, layer), w, *b, **attrs)  # (N, F, *out)
    return finish(ctx, layer, y, out_shape)
