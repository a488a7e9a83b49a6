"""ONNX reductions and scans -> Keras 3 op nodes: ReduceSum ... ReduceLogSumExp (ReduceL1, L2, SumSquare and
LogSum as compositions), ArgMax / ArgMin (select_last_index through a flip), CumSum / CumProd (exclusive,
reverse), TopK (any axis, smallest), Hardmax. Contract: lowering.py.

ONNX's meaning where keras.ops differs: the empty set (ReduceMax -> -inf, ReduceMin -> +inf, through Keras's
``initial``), int64 indices (Keras's are int32: cast), the input's dtype kept (Keras sums int8 in int32 and
takes the mean of integers in float32: cast back, truncating as ONNX's reference does).
Reference: onnx/reference/ops/op_reduce_*.py, op_argmax.py, op_cum_sum.py, op_topk.py, op_hardmax.py.
"""
from __future__ import annotations

import numpy as np

from ....layers.ops_array import accumulator_dtype
from .builder import Sym
from .lower_logic import as_int_constant, cast
from .lowering import as_sym, axes_arg, lowering, refuse

REDUCE = {"ReduceSum": "Sum", "ReduceMean": "Mean", "ReduceMax": "Max", "ReduceMin": "Min", "ReduceProd": "Prod",
          "ReduceL1": "Sum", "ReduceL2": "Sum", "ReduceSumSquare": "Sum", "ReduceLogSum": "Sum",
          "ReduceLogSumExp": "Logsumexp"}


@lowering(*REDUCE)
def Reduce(b, data, axes=None, keepdims=1, noop_with_empty_axes=0):
    op = b.node.op_type
    x = as_sym(b, data)
    found = axes_arg(axes) if isinstance(axes, np.ndarray) else axes_arg(None, axes)
    if not found and noop_with_empty_axes:
        return x
    shape = b.shape(x)
    if shape is None:
        raise refuse("an input of unknown rank")
    rank = len(shape)
    reduced = sorted({a % rank for a in found}) if found else list(range(rank))
    dtype = b.dtype(x)
    keras = REDUCE[op]
    empty = any(shape[a] == 0 for a in reduced)
    if op in ("ReduceMean", "ReduceMax") and dtype is not None and dtype.kind == "f" and 3 <= rank <= 5 and not empty:
        fmt = {tuple(range(2, rank)): "channels_first", tuple(range(1, rank - 1)): "channels_last"}.get(tuple(reduced))
        if fmt:  # x.mean((2, 3)) of NCHW, (1, 2) of NHWC: Keras's global pooling
            kind = "Average" if op == "ReduceMean" else "Max"
            return b.layer(f"Global{kind}Pooling{rank - 2}D", {"data_format": fmt, "keepdims": bool(keepdims)}, [x])
    axis = None if not found else (reduced[0] if len(reduced) == 1 else reduced)
    config = {"axis": axis, "keepdims": bool(keepdims)}
    if op in ("ReduceMax", "ReduceMin") and dtype == np.bool_:
        return b.op("Any" if op == "ReduceMax" else "All", [x], **config)
    if op in ("ReduceMax", "ReduceMin") and empty:  # ONNX: the identity
        top = op == "ReduceMax"
        bound = (float("-inf") if top else float("inf")) if dtype is None or dtype.kind == "f" else \
            int(np.iinfo(dtype).min if top else np.iinfo(dtype).max)
        return b.op(keras, [x], initial=bound, **config)
    if op == "ReduceL1":
        x = b.op("Absolute", [x], inner=True, suffix="abs")
    elif op in ("ReduceL2", "ReduceSumSquare"):
        x = b.op("Square", [x], inner=True, suffix="square")
    elif op == "ReduceLogSumExp" and dtype is not None and dtype.kind != "f":
        x = cast(b, x, np.float32, inner=True)
    y = b.op(keras, [x], module="keras.src.ops.math" if keras == "Logsumexp" else "keras.src.ops.numpy", inner=True,
             **config)
    if op == "ReduceL2":
        y = b.op("Sqrt", [y], inner=True)
    elif op == "ReduceLogSum":
        y = b.op("Log", [y], inner=True)
    changed = keras == "Mean" or op in ("ReduceL2", "ReduceLogSum", "ReduceLogSumExp") or \
        (keras in ("Sum", "Prod") and dtype is not None and accumulator_dtype(dtype) != dtype)
    if dtype is not None and dtype.kind != "f" and changed:  # ONNX keeps the input's dtype (truncating)
        y = b.op("Cast", [y], module="keras.src.ops.core", inner=True, dtype=dtype.name)
    return b.claim(y)


def _axis_of(b, x: Sym, axis: int) -> tuple[int, int]:
    rank = b.rank(x)
    if not -rank <= axis < rank:
        raise refuse(f"axis={axis} for a rank-{rank} input")
    return axis % rank, rank


def _int64(b, y: Sym) -> Sym:
    return b.op("Cast", [y], module="keras.src.ops.core", dtype="int64")


def _arg(keras_name: str):
    def lower(b, data, axis=0, keepdims=1, select_last_index=0):
        x = as_sym(b, data)
        axis, rank = _axis_of(b, x, axis)
        n = b.shape(x)[axis]
        if b.dtype(x) == np.bool_:
            x = b.op("Cast", [x], module="keras.src.ops.core", inner=True, suffix="int", dtype="int32")
        elif b.dtype(x) is None or b.dtype(x).kind == "f":  # Keras ranks -0.0 below +0.0; ONNX ties them: +0 only
            x = b.op("Where", [b.op("Equal", [x, 0.0], inner=True, suffix="zero"), 0.0, x], inner=True,
                     suffix="plus_zero")
        if select_last_index:  # the first of the flipped axis is the last: index n - 1 - i
            if n is None:
                raise refuse("select_last_index=1 on an axis of unknown size")
            flipped = b.op("Flip", [x], inner=True, suffix="flip", axis=axis)
            first = b.op(keras_name, [flipped], inner=True, axis=axis, keepdims=bool(keepdims))
            index = b.op("Subtract", [np.asarray(n - 1, np.int32), first], inner=True, suffix="last")
        else:
            index = b.op(keras_name, [x], inner=True, axis=axis, keepdims=bool(keepdims))
        return _int64(b, index)
    return lower


lowering("ArgMax")(_arg("Argmax"))


lowering("ArgMin")(_arg("Argmin"))


def _scan(keras_name: str, identity: float):
    def lower(b, x, axis, exclusive=0, reverse=0):
        x = as_sym(b, x)
        shape, dtype = b.shape(x), b.dtype(x)
        axis, rank = _axis_of(b, x, as_int_constant(axis, "axis"))
        if reverse:
            x = b.op("Flip", [x], inner=True, suffix="flip", axis=axis)
        y = b.op(keras_name, [x], inner=bool(exclusive or reverse), axis=axis)
        if exclusive:  # shift by one along the axis, the identity first
            if shape is None or None in shape:
                raise refuse("exclusive=1 on a tensor of unknown shape")
            first = np.full([1 if a == axis else d for a, d in enumerate(shape)], identity,
                            np.float32 if (dtype is None or dtype.kind == "f") else dtype)
            head = [slice(None)] * axis + [slice(None, -1)]
            body = b.op("GetItem", [y, _key(head)], inner=True, suffix="shift")
            y = b.op("Concatenate", [[first, body]], inner=bool(reverse), axis=axis)
        if reverse:
            y = b.op("Flip", [y], axis=axis)
        return y
    return lower


def _key(parts: list) -> list:
    return [{"class_name": "__slice__", "config": {"start": p.start, "stop": p.stop, "step": p.step}} for p in parts]


lowering("CumSum")(_scan("Cumsum", 0))


lowering("CumProd")(_scan("Cumprod", 1))


@lowering("TopK")
def TopK(b, X, K=None, axis=-1, largest=1, sorted=1, k=None):
    x = as_sym(b, X)
    count = k if K is None else as_int_constant(K, "K")
    if count is None:
        raise refuse("no K")
    axis, rank = _axis_of(b, x, axis)
    dtype = b.dtype(x)
    if not largest and dtype is not None and dtype.kind == "u":
        raise refuse("largest=0 on unsigned integers")
    perm = list(range(rank))
    perm[axis], perm[-1] = perm[-1], perm[axis]
    if axis != rank - 1:  # Keras's top_k works on the last axis
        x = b.op("Transpose", [x], inner=True, suffix="to_last", axes=perm)
    if not largest:  # the smallest are the largest of -x (ties still lower index first)
        x = b.op("Negative", [x], inner=True, suffix="negate")
    values, indices = b.op_outputs("TopK", [x], 2, module="keras.src.ops.math", k=int(count), sorted=True)
    if not largest:
        values = b.op("Negative", [values], inner=True, suffix="values")
    indices = b.op("Cast", [indices], module="keras.src.ops.core", inner=True, suffix="indices", dtype="int64")
    if axis != rank - 1:
        values = b.op("Transpose", [values], inner=True, suffix="values_back", axes=perm)
        indices = b.op("Transpose", [indices], inner=True, suffix="indices_back", axes=perm)
    return [values, indices]


@lowering("Hardmax")
def Hardmax(b, input, axis=-1):
    x = as_sym(b, input)
    if b.g.opset < 13:
        raise refuse("opset < 13 (Hardmax over the flattened trailing axes)")
    axis, rank = _axis_of(b, x, axis)
    n = b.shape(x)[axis]
    if n is None:
        raise refuse("an axis of unknown size")
    index = b.op("Argmax", [x], inner=True, suffix="argmax", axis=axis, keepdims=False)
    dtype = b.dtype(x)
    out = "float32" if dtype is None or dtype.kind == "f" else dtype.name
    where = -1 if axis == rank - 1 else axis  # tf.one_hot takes -1, not the rank, for a new last axis
    return b.op("OneHot", [index], module="keras.src.ops.nn", num_classes=int(n), axis=where, dtype=out, sparse=False)

