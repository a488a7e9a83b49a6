"""ONNX ops -> Keras layers and op nodes: activations, Gemm / MatMul (Dense), elementwise math,
reductions, Identity / Dropout / Cast, Clip, Softmax, PRelu. Contract: lowering.py.
"""
from __future__ import annotations

from typing import Any, Callable

import numpy as np

from ..common import SELU_ALPHA, SELU_SCALE
from .builder import Sym
from .lower_logic import cast, truncate_divide
from .lowering import NN, as_const, as_sym, close, f32, lowering, refuse


def _activation(name: str) -> Callable:
    def lower(b, X):
        return b.activation(as_sym(b, X), name)
    return lower


for _op, _name in {"Relu": "relu", "Sigmoid": "sigmoid", "Tanh": "tanh", "Softplus": "softplus",
                   "Softsign": "softsign", "HardSwish": "hard_silu", "Mish": "mish", "Exp": "exponential"}.items():
    lowering(_op)(_activation(_name))


@lowering("LeakyRelu")
def LeakyRelu(b, X, alpha=0.01):
    if close(alpha, 0.2):
        return b.activation(as_sym(b, X), "leaky_relu")
    return b.op("LeakyRelu", [as_sym(b, X)], module=NN, negative_slope=f32(alpha))


@lowering("Elu")
def Elu(b, X, alpha=1.0):
    if close(alpha, 1.0):
        return b.activation(as_sym(b, X), "elu")
    return b.op("Elu", [as_sym(b, X)], module=NN, alpha=f32(alpha))


@lowering("Celu")
def Celu(b, X, alpha=1.0):
    if close(alpha, 1.0):
        return b.activation(as_sym(b, X), "celu")
    return b.op("Celu", [as_sym(b, X)], module=NN, alpha=f32(alpha))


@lowering("Selu")
def Selu(b, X, alpha=1.67326319217681884765625, gamma=1.05070102214813232421875):
    if close(alpha, SELU_ALPHA) and close(gamma, SELU_SCALE):
        return b.activation(as_sym(b, X), "selu")
    y = b.op("Elu", [as_sym(b, X)], module=NN, inner=True, alpha=f32(alpha))  # selu = gamma * elu(x, alpha)
    return b.op("Multiply", [y, f32(gamma)])


@lowering("HardSigmoid")
def HardSigmoid(b, X, alpha=0.2, beta=0.5):
    if close(alpha, 1 / 6) and close(beta, 0.5):
        return b.activation(as_sym(b, X), "hard_sigmoid")
    y = b.op("Multiply", [as_sym(b, X), f32(alpha)], inner=True)  # clip(alpha x + beta, 0, 1)
    return b.op("Clip", [b.op("Add", [y, f32(beta)], inner=True)], x_min=0.0, x_max=1.0)


@lowering("Gelu")
def Gelu(b, X, approximate="none"):
    if approximate == "none":
        return b.activation(as_sym(b, X), "gelu")
    return b.op("Gelu", [as_sym(b, X)], module=NN, approximate=True)


@lowering("Shrink")
def Shrink(b, input, bias=0.0, lambd=0.5):
    x = as_sym(b, input)
    if close(bias, 0.0):
        kind, op = "hard_shrink", "HardShrink"
    elif close(bias, lambd):
        kind, op = "soft_shrink", "SoftShrink"
    else:
        raise refuse(f"bias={bias} with lambd={lambd}")
    if close(lambd, 0.5):
        return b.activation(x, kind)
    return b.op(op, [x], module=NN, threshold=f32(lambd))


@lowering("Clip")
def Clip(b, input, min=None, max=None):
    x = as_sym(b, input)
    dtype = b.dtype(x)
    if dtype is not None and dtype.kind in "iu":  # integer bounds keep the integer dtype (Keras's clip)
        info = np.iinfo(dtype)
        lo = int(info.min) if min is None else int(np.asarray(min if isinstance(min, float) else
                                                              as_const(min, "min")).reshape(()))
        hi = int(info.max) if max is None else int(np.asarray(max if isinstance(max, float) else
                                                              as_const(max, "max")).reshape(()))
        if lo > hi:
            return b.op("Minimum", [b.op("Maximum", [x, np.asarray(lo, dtype)], inner=True, suffix="low"),
                                    np.asarray(hi, dtype)])
        return b.op("Clip", [x], x_min=lo, x_max=hi)
    lo = None if min is None else float(np.asarray(min if isinstance(min, float) else as_const(min, "min")).reshape(()))
    hi = None if max is None else float(np.asarray(max if isinstance(max, float) else as_const(max, "max")).reshape(()))
    if lo is not None and hi is not None and lo > hi:  # ONNX (and NumPy): max wins; TF's clip_by_value differs
        return b.op("Minimum", [b.op("Maximum", [x, lo], inner=True, suffix="low"), hi])
    known = {(0.0, 6.0): "relu6", (-1.0, 1.0): "hard_tanh", (0.0, None): "relu"}
    if (lo, hi) in known:
        return b.activation(x, known[(lo, hi)])
    big = float(np.finfo(np.float32).max)
    return b.op("Clip", [x], x_min=-big if lo is None else lo, x_max=big if hi is None else hi)


def _softmax(b, x, axis, name: str, op: str):
    x = as_sym(b, x)
    rank = b.rank(x)
    if b.g.opset >= 13:
        axis = (-1 if axis is None else axis) % rank
        if axis == rank - 1:
            return b.activation(x, name)
        return b.op(op, [x], module=NN, axis=axis)
    axis = (1 if axis is None else axis) % rank  # before 13: flatten to 2-D at axis, normalise the 2nd part
    if axis == rank - 1:
        return b.activation(x, name)
    shape = b.shape(x)
    if axis == 0 or any(d is None for d in shape[1:]):
        raise refuse(f"axis={axis} (normalises across {'the batch' if axis == 0 else 'a dynamic axis'})")
    flat = b.layer("Reshape", {"target_shape": [*shape[1:axis], int(np.prod(shape[axis:]))]}, [x], inner=True)
    y = b.layer("Activation", {"activation": name}, [flat], inner=True)  # (N, ..., d_axis * ... * d_last)
    return b.layer("Reshape", {"target_shape": list(shape[1:])}, [y])


@lowering("Softmax")
def Softmax(b, input, axis=None):
    return _softmax(b, input, axis, "softmax", "Softmax")


@lowering("LogSoftmax")
def LogSoftmax(b, input, axis=None):
    return _softmax(b, input, axis, "log_softmax", "LogSoftmax")


def _gemm_computed(b, A, B, C, alpha: float, beta: float, transA: int, transB: int) -> Sym:
    """alpha * A' B' + beta * C with both operands computed (torch.addmm, mm): Matmul and elementwise op nodes."""
    a = b.op("Transpose", [A], inner=True, suffix="a_t", axes=[1, 0]) if transA and isinstance(A, Sym) else \
        (A.T if transA else A)
    w = b.op("Transpose", [B], inner=True, suffix="b_t", axes=[1, 0]) if transB and isinstance(B, Sym) else \
        (B.T if transB else B)
    y = b.op("Matmul", [a, w], inner=True, suffix="matmul")
    if not close(alpha, 1.0):
        y = b.op("Multiply", [y, f32(alpha)], inner=True, suffix="alpha")
    if C is not None:
        c = C if close(beta, 1.0) else (b.op("Multiply", [C, f32(beta)], inner=True, suffix="beta")
                                        if isinstance(C, Sym) else (C * np.asarray(beta, C.dtype)).astype(C.dtype))
        y = b.op("Add", [y, c], inner=True, suffix="bias")
    return b.claim(y)


@lowering("Gemm")
def Gemm(b, A, B, C=None, alpha=1.0, beta=1.0, transA=0, transB=0, broadcast=0):
    if isinstance(B, Sym) or not isinstance(A, Sym) or (transA and (b.shape(A) or (None,))[0] is None):
        return _gemm_computed(b, A, B, C, alpha, beta, transA, transB)  # no constant weight, or A^T's K unknown
    x = as_sym(b, A, "A")
    if transA:
        if b.rank(x) != 2:
            raise refuse(f"transA=1 on a rank-{b.rank(x)} A")
        x = b.op("Transpose", [x], axes=[1, 0], inner=True, suffix="transpose")  # (K, M) -> (M, K)
    w = as_const(B, "B (the weight)")
    kernel = w.T if transB else w  # ONNX / PyTorch store (units, in) with transB=1; Keras wants (in, units)
    if not close(alpha, 1.0):
        kernel = (kernel * np.asarray(alpha, kernel.dtype)).astype(kernel.dtype)
    bias = None
    if C is not None:
        c = as_const(C, "C (the bias)")
        if not close(beta, 1.0):
            c = (c * np.asarray(beta, c.dtype)).astype(c.dtype)
        units = kernel.shape[1]
        if c.size not in (1, units) or (c.ndim == 2 and c.shape[0] != 1):  # a bias per row too: added after
            y = b.layer("Dense", {"units": int(units), "activation": "linear", "use_bias": False}, [x],
                        [np.ascontiguousarray(kernel)], inner=True)
            return b.op("Add", [c.astype(np.float32), y])  # constant first: see windows.conv_layer
        bias = np.broadcast_to(c.reshape(-1), (units,)).astype(kernel.dtype)
    return b.dense(x, kernel, bias)


@lowering("MatMul")
def MatMul(b, A, B):
    if isinstance(A, Sym) and isinstance(B, np.ndarray) and B.ndim == 2:
        return b.dense(A, B)  # (..., in) @ (in, units): Dense without bias
    return b.op("Matmul", [A, B])


BINARY = {"Add": "Add", "Sub": "Subtract", "Mul": "Multiply", "Div": "Divide", "Pow": "Power",
          "Max": "Maximum", "Min": "Minimum"}


UNARY = {"Neg": "Negative", "Abs": "Absolute", "Sqrt": "Sqrt", "Log": "Log", "Reciprocal": "Reciprocal",
         "Floor": "Floor", "Ceil": "Ceil", "Sign": "Sign", "Sin": "Sin", "Cos": "Cos", "Tan": "Tan", "Asin": "Arcsin",
         "Acos": "Arccos", "Atan": "Arctan", "Sinh": "Sinh", "Cosh": "Cosh", "Asinh": "Arcsinh", "Acosh": "Arccosh",
         "Atanh": "Arctanh", "Round": "Round"}  # Round: half to even in ONNX, TF and NumPy


MERGE_LAYERS = {"Add", "Subtract", "Multiply", "Maximum", "Minimum"}  # keras.layers merging classes


def _merge_layer(b, keras_name: str, inputs: tuple) -> Any:
    """The Keras merge layer (Add, Multiply...) for tensors of one rank that broadcast; else None."""
    if keras_name not in MERGE_LAYERS or len(inputs) < 2 or not all(isinstance(v, Sym) for v in inputs):
        return None
    if keras_name == "Subtract" and len(inputs) != 2:
        return None
    shapes = [b.shape(v) for v in inputs]
    if any(not s or len(s) != len(shapes[0]) or s[0] != shapes[0][0] for s in shapes):
        return None  # Keras merges lower ranks by inserting axes after the batch, not numpy-style
    if any(len({d for d in dims if d not in (None, 1)}) > 1 for dims in zip(*shapes)):
        return None
    return b.layer(keras_name, {}, [list(inputs)])


def _binary(keras_name: str) -> Callable:
    def lower(b, *inputs, broadcast=0, axis=None):
        if len(inputs) < 2:
            return inputs[0]
        a, c = inputs[0], inputs[1]
        if broadcast and axis is not None and isinstance(c, np.ndarray):  # opset < 7: align c at ``axis``
            c = c.reshape(c.shape + (1,) * (b.rank(a) - axis - c.ndim))
        if keras_name == "Add":
            fused = b.add_bias(a, c) if isinstance(c, np.ndarray) else None
            fused = fused or (b.add_bias(c, a) if isinstance(a, np.ndarray) else None)
            if fused is not None:
                return fused
        dtype = b.dtype(a)
        if keras_name == "Divide" and dtype is not None and dtype.kind in "iu":  # ONNX: toward zero
            return truncate_divide(b, a, c) if dtype.kind == "i" else b.op("FloorDivide", [a, c])
        if keras_name == "Power" and dtype is not None and dtype.kind in "iu" and b.dtype(c) is not None \
                and b.dtype(c).kind == "f":  # ONNX Pow keeps the base's type: the float power, truncated
            return cast(b, b.op("Power", [a, c], inner=True, suffix="power"), dtype)
        merged = _merge_layer(b, keras_name, inputs)
        if merged is not None:
            return merged
        if keras_name == "Add" and isinstance(a, Sym) and isinstance(c, np.ndarray) \
                and sum(d > 1 for d in c.shape) == 1:
            a, c = c, a  # a vector goes first: Keras's TF add() takes x + vector for a bias (windows.conv_layer)
        y = b.op(keras_name, [a, c], inner=len(inputs) > 2)
        for i, more in enumerate(inputs[2:], 3):  # variadic Max / Min / Sum: a chain, the last one is the node
            y = b.op(keras_name, [y, more], inner=i < len(inputs))
        return y
    return lower


for _op, _name in BINARY.items():
    lowering(_op)(_binary(_name))


lowering("Sum")(_binary("Add"))


def _unary(keras_name: str, module: str = "keras.src.ops.numpy") -> Callable:
    def lower(b, X):
        return b.op(keras_name, [as_sym(b, X)], module=module)
    return lower


for _op, _name in UNARY.items():
    lowering(_op)(_unary(_name))


lowering("Erf")(_unary("Erf", "keras.src.ops.math"))


@lowering("Identity")
def Identity(b, input):
    if b.g.producer_name == "kcompat" and isinstance(input, Sym):
        return b.layer("Identity", {}, [input])  # a kcompat layer that passed its input through (Dropout, linear)
    return input


@lowering("Dropout")
def Dropout(b, data, ratio=None, training_mode=None, is_test=0, seed=None):
    """The identity at inference; training mode (random) is refused unless the ratio is 0."""
    training = training_mode is not None and bool(np.asarray(as_const(training_mode, "training_mode")).any())
    if training and (ratio is None or float(np.asarray(as_const(ratio, "ratio")).reshape(-1)[0]) != 0.0):
        raise refuse("training_mode=True (a random mask)")
    if len(b.node.output) > 1 and b.node.output[1] and (b.g.consumers.get(b.node.output[1])
                                                        or b.node.output[1] in b.g.outputs):
        raise refuse("the mask output")
    return data


@lowering("PRelu")
def PRelu(b, X, slope):
    x = as_sym(b, X)
    shape = b.shape(x)
    if shape is None or len(shape) < 2:
        raise refuse("an input of unknown or rank-1 shape")
    a = as_const(slope, "slope")
    if b.g.opset < 7 and a.ndim == 1 and len(shape) > 2 and a.size > 1 and a.size == shape[1]:
        a = a.reshape(a.size, *(1,) * (len(shape) - 2))  # PRelu-6: a 1-D slope is per channel
    while a.ndim > len(shape) - 1 and a.shape[0] == 1:
        a = a[0]
    if a.ndim > len(shape) - 1:  # the slope covers the batch axis too: where(x < 0, slope * x, x)
        negative = b.op("Less", [x, 0.0], inner=True, suffix="negative")
        return b.op("Where", [negative, b.op("Multiply", [x, a], inner=True, suffix="scaled"), x])
    full = (1,) * (len(shape) - 1 - a.ndim) + a.shape  # numpy broadcasting against (C, H, W)
    shared = []
    for axis, (sd, xd) in enumerate(zip(full, shape[1:]), 1):
        if sd == 1 and xd != 1:
            shared.append(axis)
        elif sd != xd:
            negative = b.op("Less", [x, 0.0], inner=True, suffix="negative")
            return b.op("Where", [negative, b.op("Multiply", [x, a], inner=True, suffix="scaled"), x])
    alpha = np.ascontiguousarray(a.reshape(full))  # Keras's alpha: input_shape[1:] with 1 on shared axes
    return b.layer("PReLU", {"shared_axes": shared or None}, [x], [alpha])


@lowering("Mean")
def Mean(b, *data_0):
    """The mean of the inputs: their sum, divided by their count."""
    if not any(isinstance(v, Sym) for v in data_0):
        raise refuse("every input constant")
    if len(data_0) == 1:
        return data_0[0]
    total = data_0[0]
    for more in data_0[1:]:
        total = b.op("Add", [total, more], inner=True, suffix="sum")
    return b.op("Divide", [total, float(len(data_0))])


@lowering("ThresholdedRelu")
def ThresholdedRelu(b, X, alpha=1.0):
    return b.op("Threshold", [as_sym(b, X)], module=NN, threshold=f32(alpha), default_value=0.0)


@lowering("SwiGLU")
def SwiGLU(b, A, B, alpha=1.0):
    """a * sigmoid(alpha * a) * b (Keras's silu when alpha is 1)."""
    a = as_sym(b, A)
    if close(alpha, 1.0):
        gate = b.op("Silu", [a], module=NN, inner=True, suffix="silu")
    else:
        scaled = b.op("Multiply", [a, f32(alpha)], inner=True, suffix="alpha")
        gate = b.op("Multiply", [a, b.op("Sigmoid", [scaled], module=NN, inner=True, suffix="sigmoid")], inner=True,
                    suffix="swish")
    return b.op("Multiply", [gate, B])


@lowering("LpNormalization")
def LpNormalization(b, input, axis=-1, p=2):
    """x / ||x||_p along ``axis``, 0 where the norm is 0 (onnx's reference)."""
    x = as_sym(b, input)
    if p not in (1, 2):
        raise refuse(f"p={p}")
    rank = b.rank(x)
    part = b.op("Absolute" if p == 1 else "Square", [x], inner=True, suffix="abs" if p == 1 else "square")
    norm = b.op("Sum", [part], inner=True, suffix="sum", axis=axis % rank, keepdims=True)
    if p == 2:
        norm = b.op("Sqrt", [norm], inner=True, suffix="norm")
    y = b.op("Divide", [x, norm], inner=True, suffix="divide")
    zero = b.op("Equal", [norm, 0.0], inner=True, suffix="zero")
    return b.op("Where", [zero, 0.0, y])


@lowering("Swish")
def Swish(b, X, alpha=1.0):
    """x * sigmoid(alpha * x): Keras's silu when alpha is 1."""
    x = as_sym(b, X)
    if close(alpha, 1.0):
        return b.op("Silu", [x], module=NN)
    gate = b.op("Sigmoid", [b.op("Multiply", [x, f32(alpha)], inner=True, suffix="alpha")], module=NN, inner=True,
                suffix="sigmoid")
    return b.op("Multiply", [x, gate])


@lowering("Det")
def Det(b, X):
    return b.op("Det", [as_sym(b, X)], module="keras.src.ops.linalg")
