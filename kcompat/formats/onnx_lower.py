"""ONNX ops -> Keras layers and Keras 3 op nodes, one function per op.

A function's signature is the op's schema, tinygrad style: inputs positional, attributes
by keyword with the ONNX defaults (``def Gemm(b, A, B, C=None, alpha=1.0, ...)``). An
attribute the signature does not name is refused, so no semantics are silently dropped.
Inputs arrive as ``Sym`` (a Keras tensor), a NumPy array (a folded constant), a
``Dynamic`` value (computed from input shapes) or None (an omitted optional input).
A function returns the value(s) of the node's outputs. Opset differences live inside
the function (Softmax's 2-D flattening before opset 13, axes as attribute or input).
Reference: onnx/reference/ops/op_*.py; https://onnx.ai/onnx/operators/.
"""
from __future__ import annotations

import math
from typing import Any, Callable

import numpy as np

from ..errors import UnsupportedError
from .onnx_activations import SELU_ALPHA, SELU_SCALE
from .onnx_builder import Builder, Sym, sanitize, scope_of

LOWERINGS: dict[str, Callable] = {}
NN = "keras.src.ops.nn"


class Dynamic:
    """A value computed from input shapes: its values at the two probe sizes (see onnx_graph.py)."""

    def __init__(self, v0: np.ndarray, v1: np.ndarray):
        self.values = (v0, v1)


def lowering(*op_types: str):
    """Register the lowering of ONNX op types."""
    def wrap(fn):
        for op in op_types:
            LOWERINGS[op] = fn
        return fn
    return wrap


def refuse(what: str) -> UnsupportedError:
    """An UnsupportedError whose text becomes the op's label in the report ("Gemm (transA=1)")."""
    return UnsupportedError(what)


def _sym(b: Builder, x: Any, what: str = "input") -> Sym:
    if not isinstance(x, Sym):
        raise refuse(f"{what} must be computed from the model input")
    return x


def _const(x: Any, what: str) -> np.ndarray:
    if not isinstance(x, np.ndarray):
        raise refuse(f"{what} must be a constant")
    return x


def f32(value: float) -> float:
    """An ONNX float attribute (float32) as the short decimal it was written from: 0.01, not 0.00999999977."""
    return float(str(np.float32(value)))


def _close(a: float, b: float) -> bool:
    return math.isclose(a, b, rel_tol=1e-6, abs_tol=1e-7)


def _ints(x: Any, attr: Any = None) -> list[int] | None:
    """Axes given as an attribute (older opsets) or as a constant input (newer)."""
    if x is not None:
        return [int(v) for v in np.atleast_1d(_const(x, "axes"))]
    return None if attr is None else [int(v) for v in np.atleast_1d(attr)]


# ------------------------------------------------------------------ activations
def _activation(name: str) -> Callable:
    def lower(b, X):
        return b.activation(_sym(b, X), name)
    return lower


for _op, _name in {"Relu": "relu", "Sigmoid": "sigmoid", "Tanh": "tanh", "Softplus": "softplus",
                   "Softsign": "softsign", "HardSwish": "hard_silu", "Mish": "mish", "Exp": "exponential"}.items():
    lowering(_op)(_activation(_name))


@lowering("LeakyRelu")
def LeakyRelu(b, X, alpha=0.01):
    if _close(alpha, 0.2):
        return b.activation(_sym(b, X), "leaky_relu")
    return b.op("LeakyRelu", [_sym(b, X)], module=NN, negative_slope=f32(alpha))


@lowering("Elu")
def Elu(b, X, alpha=1.0):
    if _close(alpha, 1.0):
        return b.activation(_sym(b, X), "elu")
    return b.op("Elu", [_sym(b, X)], module=NN, alpha=f32(alpha))


@lowering("Celu")
def Celu(b, X, alpha=1.0):
    if _close(alpha, 1.0):
        return b.activation(_sym(b, X), "celu")
    return b.op("Celu", [_sym(b, X)], module=NN, alpha=f32(alpha))


@lowering("Selu")
def Selu(b, X, alpha=1.67326319217681884765625, gamma=1.05070102214813232421875):
    if _close(alpha, SELU_ALPHA) and _close(gamma, SELU_SCALE):
        return b.activation(_sym(b, X), "selu")
    y = b.op("Elu", [_sym(b, X)], module=NN, inner=True, alpha=f32(alpha))  # selu = gamma * elu(x, alpha)
    return b.op("Multiply", [y, f32(gamma)])


@lowering("HardSigmoid")
def HardSigmoid(b, X, alpha=0.2, beta=0.5):
    if _close(alpha, 1 / 6) and _close(beta, 0.5):
        return b.activation(_sym(b, X), "hard_sigmoid")
    y = b.op("Multiply", [_sym(b, X), f32(alpha)], inner=True)  # clip(alpha x + beta, 0, 1)
    return b.op("Clip", [b.op("Add", [y, f32(beta)], inner=True)], x_min=0.0, x_max=1.0)


@lowering("Gelu")
def Gelu(b, X, approximate="none"):
    if approximate == "none":
        return b.activation(_sym(b, X), "gelu")
    return b.op("Gelu", [_sym(b, X)], module=NN, approximate=True)


@lowering("Shrink")
def Shrink(b, input, bias=0.0, lambd=0.5):
    x = _sym(b, input)
    if _close(bias, 0.0):
        kind, op = "hard_shrink", "HardShrink"
    elif _close(bias, lambd):
        kind, op = "soft_shrink", "SoftShrink"
    else:
        raise refuse(f"bias={bias} with lambd={lambd}")
    if _close(lambd, 0.5):
        return b.activation(x, kind)
    return b.op(op, [x], module=NN, threshold=f32(lambd))


@lowering("Clip")
def Clip(b, input, min=None, max=None):
    x = _sym(b, input)
    lo = None if min is None else float(np.asarray(min).reshape(()))
    hi = None if max is None else float(np.asarray(max).reshape(()))
    known = {(0.0, 6.0): "relu6", (-1.0, 1.0): "hard_tanh", (0.0, None): "relu"}
    if (lo, hi) in known:
        return b.activation(x, known[(lo, hi)])
    big = float(np.finfo(np.float32).max)
    return b.op("Clip", [x], x_min=-big if lo is None else lo, x_max=big if hi is None else hi)


def _softmax(b, x, axis, name: str, op: str):
    x = _sym(b, x)
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


# ------------------------------------------------------------------ Dense
@lowering("Gemm")
def Gemm(b, A, B, C=None, alpha=1.0, beta=1.0, transA=0, transB=0, broadcast=0):
    x = _sym(b, A, "A")
    if transA:
        if b.rank(x) != 2:
            raise refuse(f"transA=1 on a rank-{b.rank(x)} A")
        x = b.op("Transpose", [x], axes=[1, 0], inner=True, suffix="transpose")  # (K, M) -> (M, K)
    w = _const(B, "B (the weight)")
    kernel = w.T if transB else w  # ONNX / PyTorch store (units, in) with transB=1; Keras wants (in, units)
    if not _close(alpha, 1.0):
        kernel = (kernel * np.asarray(alpha, kernel.dtype)).astype(kernel.dtype)
    bias = None
    if C is not None:
        c = _const(C, "C (the bias)")
        if not _close(beta, 1.0):
            c = (c * np.asarray(beta, c.dtype)).astype(c.dtype)
        units = kernel.shape[1]
        if c.size not in (1, units) or (c.ndim == 2 and c.shape[0] != 1):
            raise refuse(f"C of shape {list(c.shape)}")
        bias = np.broadcast_to(c.reshape(-1), (units,)).astype(kernel.dtype)
    return b.dense(x, kernel, bias)


@lowering("MatMul")
def MatMul(b, A, B):
    if isinstance(A, Sym) and isinstance(B, np.ndarray) and B.ndim == 2:
        return b.dense(A, B)  # (..., in) @ (in, units): Dense without bias
    return b.op("Matmul", [A, B])


# ------------------------------------------------------------------ elementwise
BINARY = {"Add": "Add", "Sub": "Subtract", "Mul": "Multiply", "Div": "Divide", "Pow": "Power",
          "Max": "Maximum", "Min": "Minimum"}
UNARY = {"Neg": "Negative", "Abs": "Absolute", "Sqrt": "Sqrt", "Log": "Log", "Reciprocal": "Reciprocal",
         "Floor": "Floor", "Ceil": "Ceil", "Sign": "Sign", "Sin": "Sin", "Cos": "Cos"}


MERGE_LAYERS = {"Add", "Subtract", "Multiply", "Maximum", "Minimum"}  # keras.layers merging classes


def _merge_layer(b, keras_name: str, inputs: tuple) -> Any:
    """The Keras merge layer (Add, Multiply...) for tensors of one rank that broadcast; else None."""
    if keras_name not in MERGE_LAYERS or len(inputs) < 2 or not all(isinstance(v, Sym) for v in inputs):
        return None
    if keras_name == "Subtract" and len(inputs) != 2:
        return None
    shapes = [b.shape(v) for v in inputs]
    if any(s is None or len(s) != len(shapes[0]) or s[0] != shapes[0][0] for s in shapes) or not shapes[0]:
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
        merged = _merge_layer(b, keras_name, inputs)
        if merged is not None:
            return merged
        if keras_name == "Add" and isinstance(a, Sym) and isinstance(c, np.ndarray) \
                and sum(d > 1 for d in c.shape) == 1:
            a, c = c, a  # a vector goes first: Keras's TF add() takes x + vector for a bias (onnx_lower_cnn.py)
        y = b.op(keras_name, [a, c], inner=len(inputs) > 2)
        for i, more in enumerate(inputs[2:], 3):  # variadic Max / Min / Sum: a chain, the last one is the node
            y = b.op(keras_name, [y, more], inner=i < len(inputs))
        return y
    return lower


def _unary(keras_name: str, module: str = "keras.src.ops.numpy") -> Callable:
    def lower(b, X):
        return b.op(keras_name, [_sym(b, X)], module=module)
    return lower


for _op, _name in BINARY.items():
    lowering(_op)(_binary(_name))
lowering("Sum")(_binary("Add"))
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
    return data  # identity at inference (the mask output is not supported: nothing reads it in practice)


@lowering("Cast")
def Cast(b, input, to=1, saturate=1, round_mode=None):
    if isinstance(input, Sym) and to in (1, 11):  # FLOAT, DOUBLE: Keras computes in float32
        return input
    raise refuse(f"to={to}")


# ------------------------------------------------------------------ shapes
@lowering("Flatten")
def Flatten(b, input, axis=1):
    x = _sym(b, input)
    rank = b.rank(x)
    axis %= max(rank, 1)
    if axis == 1:
        return b.layer("Flatten", {"data_format": "channels_last"}, [x])
    shape = b.shape(x)
    if axis == 0 or any(d is None for d in shape[axis:]):
        raise refuse(f"axis={axis}")
    return b.op("Reshape", [x], newshape=[-1, int(np.prod(shape[axis:]))])


@lowering("Reshape")
def Reshape(b, data, shape, allowzero=0):
    x = _sym(b, data)
    target = _reshape_target(b, x, shape)
    in_shape = b.shape(x)
    if in_shape is None:
        raise refuse("input of unknown shape")
    if not allowzero:
        if any(t == 0 and (i >= len(in_shape) or in_shape[i] is None) for i, t in enumerate(target[1:], 1)):
            raise refuse("0 in the target shape for a dynamic dimension")
        target = [in_shape[i] if t == 0 and i > 0 else t for i, t in enumerate(target)]
    if _keeps_batch(target, in_shape):
        rest = [int(t) for t in target[1:]]
        if len(rest) == 1 and len(in_shape) > 2 and (rest[0] == -1 or rest[0] == _prod(in_shape[1:])):
            return b.layer("Flatten", {"data_format": "channels_last"}, [x])
        return b.layer("Reshape", {"target_shape": rest}, [x])
    if target[0] == 0:
        raise refuse("0 in the target shape for a dynamic dimension")
    return b.op("Reshape", [x], newshape=[int(t) for t in target])


def _prod(dims) -> int | None:
    return None if any(d is None for d in dims) else int(np.prod(dims, dtype=np.int64))


def _keeps_batch(target: list, in_shape: tuple) -> bool:
    """The reshape leaves axis 0 alone (Keras's Reshape layer, which never touches the batch)."""
    first = target[0]
    if first == 0 or (in_shape[0] is not None and first == in_shape[0]):
        return True
    if first == -1 and -1 not in list(target[1:]):
        rest, total = _prod([int(t) for t in target[1:]]), _prod(in_shape[1:])
        return rest is not None and rest == total
    return False


def _reshape_target(b, x: Sym, shape) -> list:
    """A Reshape's target: 0 = keep the input's dim, -1 = infer; shape-computed values resolved."""
    if isinstance(shape, np.ndarray):
        return [int(v) for v in shape.reshape(-1)]
    if not isinstance(shape, Dynamic):
        raise refuse("target shape computed from data")
    v0, v1 = (np.asarray(v).reshape(-1) for v in shape.values)
    s0, s1 = (b.g.concrete_shape(x.onnx, k) for k in (0, 1))
    target = []
    varying = 0
    for i, (a, c) in enumerate(zip(v0, v1)):
        if a == c:
            target.append(int(a))
        elif s0 is not None and i < len(s0) and a == s0[i] and c == s1[i]:
            target.append(0)  # copies the input's dimension i (the batch, typically)
        else:
            target.append(-1)
            varying += 1
    if varying > 1:
        raise refuse("target shape with several computed dimensions")
    return target


@lowering("Transpose")
def Transpose(b, data, perm=None):
    x = _sym(b, data)
    perm = list(range(b.rank(x)))[::-1] if perm is None else [int(p) for p in perm]
    scope = b.scope()
    readers = [b.g.nodes[i] for i in b.g.consumers.get(b.node.output[0], [])]
    inside = readers and all(scope_of(n.name, b.g.producer_name) == scope for n in readers)
    after = b.scopes.get(sanitize(scope or "")) == scope  # the layer itself is made: its layout change after it
    if scope and (inside or after):
        return b.op("Transpose", [x], axes=perm, suffix="transpose")  # a layout change inside a layer (NHWC conv)
    return b.op("Transpose", [x], axes=perm)


@lowering("Squeeze")
def Squeeze(b, data, axes=None):
    x = _sym(b, data)
    found = _ints(axes) if isinstance(axes, np.ndarray) else _ints(None, axes)
    return b.op("Squeeze", [x], axis=None if found is None else (found[0] if len(found) == 1 else found))


@lowering("Unsqueeze")
def Unsqueeze(b, data, axes=None):
    x = _sym(b, data)
    found = _ints(axes) if isinstance(axes, np.ndarray) else _ints(None, axes)
    if not found:
        raise refuse("no axes")
    rank = b.rank(x) + len(found)
    y = x
    axes = sorted(v % rank for v in found)
    for i, a in enumerate(axes):
        y = b.op("ExpandDims", [y], axis=a, inner=i < len(axes) - 1)
    return y


@lowering("Concat")
def Concat(b, *inputs, axis=0):
    if len(inputs) == 1:
        return inputs[0]
    ranks = {len(b.shape(v) or ()) or None if isinstance(v, Sym) else None for v in inputs}
    if len(ranks) == 1 and None not in ranks and int(axis) % max(ranks) != 0:  # tensors only, not the batch
        return b.layer("Concatenate", {"axis": int(axis) % ranks.pop()}, [list(inputs)])
    return b.op("Concatenate", [list(inputs)], axis=int(axis))


def _reduce(keras_name: str) -> Callable:
    def lower(b, data, axes=None, keepdims=1, noop_with_empty_axes=0):
        x = _sym(b, data)
        found = _ints(axes) if isinstance(axes, np.ndarray) else _ints(None, axes)
        if not found and noop_with_empty_axes:
            return x
        rank = b.rank(x)
        spatial = {tuple(range(2, rank)): "channels_first", tuple(range(1, rank - 1)): "channels_last"}
        fmt = spatial.get(tuple(sorted(a % rank for a in found or ())))
        if keras_name in ("Mean", "Max") and fmt and 3 <= rank <= 5:  # x.mean((2, 3)) of NCHW, (1, 2) of NHWC
            kind = "Average" if keras_name == "Mean" else "Max"
            return b.layer(f"Global{kind}Pooling{rank - 2}D", {"data_format": fmt, "keepdims": bool(keepdims)}, [x])
        axis = None if not found else (found[0] if len(found) == 1 else found)
        return b.op(keras_name, [x], axis=axis, keepdims=bool(keepdims))
    return lower


for _op, _name in {"ReduceMean": "Mean", "ReduceSum": "Sum", "ReduceMax": "Max", "ReduceMin": "Min"}.items():
    lowering(_op)(_reduce(_name))


# ------------------------------------------------------------------ normalization over trailing axes
def _trailing(b, x: Sym, axis: int, what: str) -> tuple[list[int], list[int]]:
    """The axes ``axis..`` that LayerNormalization / RMSNormalization normalise, and their (known) sizes."""
    shape = b.shape(x)
    if shape is None:
        raise refuse(f"{what} on a tensor of unknown rank")
    rank = len(shape)
    if not -rank <= axis < rank:
        raise refuse(f"axis={axis} for a rank-{rank} input")
    axis %= rank
    if axis == 0:
        raise refuse("axis=0 (normalises across the batch)")
    dims = list(shape[axis:])
    if None in dims:
        raise refuse(f"normalised axes of unknown size (input shape {list(shape)})")
    return list(range(axis, rank)), dims


def _per_axis(value: Any, dims: list[int], what: str) -> np.ndarray:
    """A scale / bias that broadcasts against the normalised axes, as an array of exactly their sizes."""
    v = _const(value, what)
    while v.ndim > len(dims) and v.shape[0] == 1:
        v = v[0]
    try:
        return np.ascontiguousarray(np.broadcast_to(v, dims).astype(np.float32))
    except ValueError:
        raise refuse(f"{what} of shape {list(v.shape)} for normalised axes of sizes {dims}") from None


def _norm_axis(axes: list[int], rank: int) -> Any:
    """Keras's ``axis``: -1 for the last axis alone (its default), else the list of axes."""
    return -1 if axes == [rank - 1] else axes


@lowering("LayerNormalization")
def LayerNormalization(b, X, Scale, B=None, axis=-1, epsilon=1e-5, stash_type=1):
    x = _sym(b, X)
    axes, dims = _trailing(b, x, int(axis), "LayerNormalization")
    gamma = _per_axis(Scale, dims, "Scale")
    beta = None if B is None else _per_axis(B, dims, "B")
    scale = not np.all(gamma == 1)  # kcompat writes ones for a Keras layer with scale=False
    weights = ([gamma] if scale else []) + ([] if beta is None else [beta])
    return b.layer("LayerNormalization", {"axis": _norm_axis(axes, b.rank(x)), "epsilon": f32(epsilon),
                                          "center": beta is not None, "scale": bool(scale),
                                          "rms_scaling": False}, [x], weights)


@lowering("RMSNormalization")
def RMSNormalization(b, X, scale, axis=-1, epsilon=1e-5, stash_type=1):
    x = _sym(b, X)
    axes, dims = _trailing(b, x, int(axis), "RMSNormalization")
    return b.layer("RMSNormalization", {"axis": _norm_axis(axes, b.rank(x)), "epsilon": f32(epsilon)}, [x],
                   [_per_axis(scale, dims, "scale")])


# ------------------------------------------------------------------ Slice, Tile
INT64_MAX = 2**63 - 1
BIG = 2**31  # |start| or |end| at least this: "to the end" (INT64_MAX / INT64_MIN in exporters' Slices)
WHOLE = {"class_name": "__slice__", "config": {"start": None, "stop": None, "step": None}}


def slice_key(cuts: dict) -> list:
    """A GetItem key (Keras's serialized slices) taking ``cuts[a] = (start, stop, step)`` on axis a."""
    key = []
    for a in range(max(cuts) + 1):
        if a in cuts:
            start, stop, step = cuts[a]
            key.append({"class_name": "__slice__", "config": {"start": start, "stop": stop, "step": step}})
        else:
            key.append(WHOLE)
    return key


def _onnx_slice(start: int, end: int, step: int, n: int | None) -> tuple | None:
    """ONNX's start / end / step on an axis of size n as a Python slice (start, stop, step) with the same
    cells; None when it takes the whole axis. Refuses an empty result and what an unknown n leaves open."""
    if n is not None:  # ONNX clamps: [0, n] for a positive step, [0, n - 1] and [-1, n - 1] for a negative one
        s = start + n if start < 0 else start
        e = end + n if end < 0 else end
        lo, hi = (0, n) if step > 0 else (-1, n - 1)
        s, e = min(max(s, max(lo, 0)), hi), min(max(e, lo), hi)
        if not len(range(s, e, step)):
            raise refuse(f"starts={start}, ends={end}, steps={step} leave nothing of an axis of {n}")
        if step > 0:
            cut = (s or None, None if e == n else e, None if step == 1 else step)
        else:
            cut = (None if s == n - 1 else s, None if e < 0 else e, step)
        return None if cut == (None, None, None) else cut
    if step > 0:  # Python's clamping is ONNX's; only the "to the end" sentinels need translating
        if start >= BIG or end <= -BIG:
            raise refuse(f"starts={start}, ends={end} leave nothing")
        cut = (None if start <= -BIG or start == 0 else start, None if end >= BIG else end,
               None if step == 1 else step)
    else:  # Python's and ONNX's clamping differ for start < -n: refused when n is unknown
        if start <= -BIG or end >= BIG or (start < 0 and start != -1):
            raise refuse(f"starts={start}, ends={end}, steps={step} on an axis of unknown size")
        cut = (None if start >= BIG or start == -1 else start, None if end <= -BIG else end, step)
    return None if cut == (None, None, None) else cut


def _crop_pairs(cuts: dict, shape: tuple) -> dict | None:
    """(before, after) per cut axis when every cut is a step-1 crop; else None."""
    pairs = {}
    for a, (start, stop, step) in cuts.items():
        n = shape[a]
        start = start or 0
        if step not in (None, 1) or start < 0 or (stop is not None and stop >= 0 and n is None):
            return None
        after = 0 if stop is None else (-stop if stop < 0 else n - stop)
        if after < 0:
            return None
        pairs[a] = (start, after)
    return pairs


@lowering("Slice")
def Slice(b, data, starts=None, ends=None, axes=None, steps=None):
    """Cropping1D / 2D / 3D when it crops the spatial axes of NHWC or NCHW; else a GetItem op node."""
    x = _sym(b, data)
    shape = b.shape(x)
    if shape is None:
        raise refuse("an input of unknown rank")
    rank = len(shape)
    if starts is None or ends is None:
        raise refuse("no starts / ends")
    first = [int(v) for v in np.reshape(_const(starts, "starts") if not isinstance(starts, list) else starts, -1)]
    last = [int(v) for v in np.reshape(_const(ends, "ends") if not isinstance(ends, list) else ends, -1)]
    where = list(range(len(first))) if axes is None else \
        [int(v) for v in np.reshape(axes if isinstance(axes, list) else _const(axes, "axes"), -1)]
    step = [1] * len(first) if steps is None else [int(v) for v in np.reshape(_const(steps, "steps"), -1)]
    if not len(first) == len(last) == len(where) == len(step) or any(not -rank <= a < rank for a in where):
        raise refuse(f"starts={first}, ends={last}, axes={where}, steps={step} for a rank-{rank} input")
    if 0 in step:
        raise refuse("steps=0")
    cuts = {}
    for a, s, e, k in zip(where, first, last, step):
        if k < 0 and e == INT64_MAX:  # onnxruntime reads it as "through index 0" (the spec: nothing)
            e = -INT64_MAX
        cut = _onnx_slice(s, e, k, shape[a % rank])
        if cut is not None:
            cuts[a % rank] = cut
    if not cuts:
        return x
    if 0 in cuts:
        raise refuse("slicing the batch axis")
    pairs = _crop_pairs(cuts, shape)
    if pairs is not None and 3 <= rank <= 5:
        for fmt, spatial in (("channels_last", range(1, rank - 1)), ("channels_first", range(2, rank))):
            if set(pairs) <= set(spatial) and (fmt == "channels_last" or rank > 3):  # Cropping1D: axis 1 only
                crop = [list(pairs.get(a, (0, 0))) for a in spatial]
                config = {"cropping": crop[0]} if rank == 3 else {"cropping": crop, "data_format": fmt}
                return b.layer(f"Cropping{rank - 2}D", config, [x])
    return b.op("GetItem", [x, slice_key(cuts)])


@lowering("Tile")
def Tile(b, input, repeats):
    """Tiling non-batch axes: a Keras Tile op node if kcompat has one, else a Concatenate of copies per axis.
    (Unsqueeze -> Tile, Keras's RepeatVector, is a pattern: onnx_patterns.py.)"""
    from ..layers.base import OP_REGISTRY
    x = _sym(b, input)
    reps = [int(v) for v in np.reshape(_const(repeats, "repeats"), -1)]
    rank = b.rank(x)
    if len(reps) != rank or any(r < 1 for r in reps):
        raise refuse(f"repeats={reps} for a rank-{rank} input")
    if reps[0] != 1:
        raise refuse(f"repeats={reps} (tiling the batch axis)")
    if all(r == 1 for r in reps):
        return x
    if "Tile" in OP_REGISTRY:
        return b.op("Tile", [x], repeats=reps)
    if math.prod(reps) > 64:
        raise refuse(f"repeats={reps} (more than 64 copies as Concatenate)")
    todo = [(a, r) for a, r in enumerate(reps) if r > 1]
    y = x
    for i, (a, r) in enumerate(todo):
        inner = i < len(todo) - 1
        y = b.op("Concatenate", [[y] * r], axis=a, inner=inner, suffix="repeat" if inner else None)
    return y
