"""Keras activations as ONNX nodes, per opset: ``fn(ctx, x, shape, **params) -> tensor name``.

One ONNX op where it computes exactly what Keras computes (Relu, Elu, Selu, Softsign,
Shrink, HardSigmoid with alpha 1/6 and beta 1/2, Gelu from opset 20, Mish from 18,
HardSwish from 14, Celu); a small subgraph otherwise, written after Keras's TensorFlow
backend (keras/src/backend/tensorflow/nn.py). ``shape`` is the Keras shape of ``x``.
The importer matches these same subgraphs back (import_/patterns.py), so a form written
here is a form read back. Also ``activation_node``: the exporter of a layer or op node that is
one activation (ReLU-like layers, ``ops.relu``...).
"""
from __future__ import annotations

import math

import numpy as np

from ..common import SELU_ALPHA, SELU_SCALE
from .registry import activation_exporter


def _last_axis(shape: tuple, axis: int) -> int:
    return axis % len(shape)


@activation_exporter("linear")
def linear(ctx, x, shape):
    return x


@activation_exporter("relu")
def relu(ctx, x, shape):
    return ctx.op("Relu", x)


@activation_exporter("relu6")
def relu6(ctx, x, shape):
    return ctx.op("Clip", x, ctx.const(0.0), ctx.const(6.0))


@activation_exporter("leaky_relu")
def leaky_relu(ctx, x, shape, negative_slope=0.2):
    return ctx.op("LeakyRelu", x, alpha=float(negative_slope))


@activation_exporter("elu")
def elu(ctx, x, shape, alpha=1.0):
    return ctx.op("Elu", x, alpha=float(alpha))


@activation_exporter("selu")
def selu(ctx, x, shape):
    return ctx.op("Selu", x, alpha=SELU_ALPHA, gamma=SELU_SCALE)


@activation_exporter("celu")
def celu(ctx, x, shape, alpha=1.0):
    return ctx.op("Celu", x, alpha=float(alpha))


@activation_exporter("exponential")
def exponential(ctx, x, shape):
    return ctx.op("Exp", x)


@activation_exporter("sigmoid")
def sigmoid(ctx, x, shape):
    return ctx.op("Sigmoid", x)


@activation_exporter("hard_sigmoid")
def hard_sigmoid(ctx, x, shape):
    return ctx.op("HardSigmoid", x, alpha=1 / 6, beta=0.5)  # relu6(x + 3) / 6


@activation_exporter("keras2:hard_sigmoid")
def keras2_hard_sigmoid(ctx, x, shape):
    return ctx.op("HardSigmoid", x, alpha=0.2, beta=0.5)  # Keras 2's clip(0.2 x + 0.5, 0, 1)


@activation_exporter("hard_silu", "hard_swish")
def hard_silu(ctx, x, shape):
    if ctx.opset >= 14:
        return ctx.op("HardSwish", x)
    return ctx.op("Mul", x, hard_sigmoid(ctx, x, shape))


@activation_exporter("silu", "swish")
def silu(ctx, x, shape):
    return ctx.op("Mul", x, ctx.op("Sigmoid", x))  # onnxruntime has no Swish kernel past opset 24


@activation_exporter("tanh")
def tanh(ctx, x, shape):
    return ctx.op("Tanh", x)


@activation_exporter("hard_tanh")
def hard_tanh(ctx, x, shape):
    return ctx.op("Clip", x, ctx.const(-1.0), ctx.const(1.0))


@activation_exporter("tanh_shrink")
def tanh_shrink(ctx, x, shape):
    return ctx.op("Sub", x, ctx.op("Tanh", x))


@activation_exporter("softplus")
def softplus(ctx, x, shape):
    return ctx.op("Softplus", x)  # onnxruntime's is stable at |x| = 1000, like tf.math.softplus


@activation_exporter("log_sigmoid")
def log_sigmoid(ctx, x, shape):
    return ctx.op("Neg", ctx.op("Softplus", ctx.op("Neg", x)))  # -softplus(-x)


@activation_exporter("softsign")
def softsign(ctx, x, shape):
    return ctx.op("Softsign", x)


@activation_exporter("squareplus")
def squareplus(ctx, x, shape, b=4):
    root = ctx.op("Sqrt", ctx.op("Add", ctx.op("Mul", x, x), ctx.const(float(b))))
    return ctx.op("Div", ctx.op("Add", x, root), ctx.const(2.0))  # (x + sqrt(x^2 + b)) / 2


@activation_exporter("sparse_plus")
def sparse_plus(ctx, x, shape):
    t = ctx.op("Add", x, ctx.const(1.0))
    quad = ctx.op("Mul", ctx.const(0.25), ctx.op("Mul", t, t))  # (x + 1)^2 / 4
    inner = ctx.op("Where", ctx.op("Less", x, ctx.const(1.0)), quad, x)
    return ctx.op("Where", ctx.op("LessOrEqual", x, ctx.const(-1.0)), ctx.const(0.0), inner)


@activation_exporter("sparse_sigmoid")
def sparse_sigmoid(ctx, x, shape):
    half = ctx.op("Mul", ctx.const(0.5), ctx.op("Add", x, ctx.const(1.0)))  # (x + 1) / 2 in [0, 1]
    return ctx.op("Clip", half, ctx.const(0.0), ctx.const(1.0))


@activation_exporter("hard_shrink")
def hard_shrink(ctx, x, shape, threshold=0.5):
    return ctx.op("Shrink", x, bias=0.0, lambd=float(threshold))


@activation_exporter("soft_shrink")
def soft_shrink(ctx, x, shape, threshold=0.5):
    return ctx.op("Shrink", x, bias=float(threshold), lambd=float(threshold))


@activation_exporter("gelu")
def gelu(ctx, x, shape, approximate=False):
    if ctx.opset >= 20:
        return ctx.op("Gelu", x, approximate="tanh" if approximate else "none")
    half_x = ctx.op("Mul", x, ctx.const(0.5))
    if approximate:  # x/2 (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3)))
        cube = ctx.op("Mul", ctx.op("Mul", x, x), x)
        inner = ctx.op("Add", x, ctx.op("Mul", cube, ctx.const(0.044715)))
        t = ctx.op("Tanh", ctx.op("Mul", inner, ctx.const(math.sqrt(2 / math.pi))))
        return ctx.op("Mul", half_x, ctx.op("Add", t, ctx.const(1.0)))
    erf = ctx.op("Erf", ctx.op("Div", x, ctx.const(math.sqrt(2.0))))  # x/2 (1 + erf(x / sqrt 2))
    return ctx.op("Mul", half_x, ctx.op("Add", erf, ctx.const(1.0)))


@activation_exporter("mish")
def mish(ctx, x, shape):
    if ctx.opset >= 18:
        return ctx.op("Mish", x)
    return ctx.op("Mul", x, ctx.op("Tanh", ctx.op("Softplus", x)))


@activation_exporter("softmax")
def softmax(ctx, x, shape, axis=-1):
    return ctx.op("Softmax", x, axis=_last_axis(shape, axis))  # opset >= 13: one axis, no 2-D flattening


@activation_exporter("log_softmax")
def log_softmax(ctx, x, shape, axis=-1):
    return ctx.op("LogSoftmax", x, axis=_last_axis(shape, axis))


@activation_exporter("sparsemax")
def sparsemax(ctx, x, shape, axis=-1):
    axis = _last_axis(shape, axis)
    n = shape[axis]
    z = ctx.op("TopK", x, ctx.ints([n], "k"), outputs=2, axis=axis, largest=1, sorted=1)[0]  # sorted descending
    cumsum = ctx.op("CumSum", z, ctx.ints(axis, "axis"))
    r_shape = [1] * len(shape)
    r_shape[axis] = n
    r = ctx.const(np.arange(1, n + 1, dtype=np.float32).reshape(r_shape), "range")
    one = ctx.const(1.0)
    support = ctx.op("Greater", ctx.op("Sub", z, ctx.op("Div", ctx.op("Sub", cumsum, one), r)), ctx.const(0.0))
    k = ctx.reduce("ReduceSum", ctx.op("Cast", support, to=1), [axis])  # 1 = FLOAT
    total = ctx.reduce("ReduceSum", ctx.op("Where", support, cumsum, ctx.const(0.0)), [axis])
    tau = ctx.op("Div", ctx.op("Sub", total, one), k)
    return ctx.op("Max", ctx.op("Sub", x, tau), ctx.const(0.0))


@activation_exporter("glu")
def glu(ctx, x, shape, axis=-1):
    axis = _last_axis(shape, axis)
    half = shape[axis] // 2
    a, b = ctx.op("Split", x, ctx.ints([half, half], "split"), outputs=2, axis=axis)
    return ctx.op("Mul", a, ctx.op("Sigmoid", b))


def activation_node(activation_name: str, key: str | None, default):
    """The exporter of a layer / op node computing one activation, with its parameter from config ``key``."""
    def export(ctx, layer, inputs, weights):
        x = inputs[0]
        mask = ctx.kwargs.get("mask", inputs[1] if len(inputs) > 1 else None)  # the Softmax layer's mask
        if isinstance(mask, str):  # keep where True (or > 0.5), else -1e9; zeroed afterwards
            if ctx.dtype(mask) != "bool":
                mask = ctx.op("Greater", ctx.op("Cast", mask, to=1), ctx.const(0.5))  # 1 = FLOAT
            x = ctx.op("Where", mask, x, ctx.const(-1e9))
        params = {}
        if key is not None:
            value = layer.config.get(key)
            params[key] = default if value is None else value
        if isinstance(params.get("axis"), (list, tuple)) and len(params["axis"]) != 1:
            y = _softmax_axes(ctx, activation_name, x, params["axis"], len(ctx.shape(inputs[0])))
        else:
            if isinstance(params.get("axis"), (list, tuple)):
                params["axis"] = params["axis"][0]
            y = ctx.activation(activation_name, x, ctx.shape(inputs[0]), **params)
        return ctx.op("Where", mask, y, ctx.const(0.0)) if isinstance(mask, str) else y
    return export


def _softmax_axes(ctx, activation_name: str, x: str, axes, rank: int) -> str:
    """(Log)softmax over several axes at once: exp(x - max) / sum(exp(x - max)) over all of them."""
    axes = sorted(a % rank for a in axes)
    shifted = ctx.op("Sub", x, ctx.reduce("ReduceMax", x, axes))
    e = ctx.op("Exp", shifted)
    total = ctx.reduce("ReduceSum", e, axes)
    if activation_name == "log_softmax":
        return ctx.op("Sub", shifted, ctx.op("Log", total))
    return ctx.op("Div", e, total)
