"""ONNX exporters of Keras 3 op nodes that scan, select or index (kcompat/layers/ops_index.py): Cumsum /
Cumprod (CumProd from opset 26, a Mul chain before), Triu / Tril (Trilu from opset 14, a constant mask
before), TopK (int32 indices), TakeAlongAxis (GatherElements on broadcast operands), Take (Gather),
ScatterUpdate (ScatterND), OneHot (a negative index gives zeros, as tf.one_hot), BroadcastTo (Expand),
Flip (Slice, step -1), Size, Einsum.
Reference: keras/src/backend/tensorflow/numpy.py, https://onnx.ai/onnx/operators/.
"""
from __future__ import annotations

import numpy as np

from ....errors import UnsupportedError
from ..common import INT64_MIN
from .operands import INT32, cast_to, const_like, kind, promote
from .registry import op_exporter

INT64 = 7  # TensorProto.INT64


def _flat_axis(ctx, layer, x: str) -> tuple[str, int]:
    """x and the axis to work on: axis None flattens x first (Keras's rule)."""
    if layer.axis is None:
        return ctx.op("Reshape", x, ctx.ints([-1], "flat")), 0
    return x, layer.axis % len(ctx.shape(x))


def _scan(onnx_op: str):
    def export(ctx, layer, inputs, weights):
        x = inputs[0]
        dtype = layer.config.get("dtype") or ("int32" if kind(ctx, x) == "b" else ctx.dtype(x))
        x = cast_to(ctx, x, dtype)
        size = None if layer.axis is None else ctx.shape(inputs[0])[layer.axis]
        x, axis = _flat_axis(ctx, layer, x)
        if onnx_op == "CumSum" and np.dtype(dtype) in (np.int8, np.int16, np.uint8, np.uint16):  # not ONNX's types
            total = ctx.op(onnx_op, cast_to(ctx, x, np.int32), ctx.ints(axis, "axis"))
            return cast_to(ctx, total, dtype)  # int32 sums cast back wrap as the narrow type does
        if onnx_op == "CumSum" or ctx.opset >= 26:
            return ctx.op(onnx_op, x, ctx.ints(axis, "axis"))
        if size is None or size > 256:  # before CumProd: a chain of products over the cells of the axis
            raise UnsupportedError(f"layer '{layer.name}' (Cumprod): before opset 26 only along an axis of known "
                                   f"size up to 256. Received: axis size {size}")
        axes = ctx.ints([axis], "axes")
        cells = [ctx.op("Slice", x, ctx.ints([i], "start"), ctx.ints([i + 1], "stop"), axes) for i in range(size)]
        running = [cells[0]]
        for cell in cells[1:]:
            running.append(ctx.op("Mul", running[-1], cell))
        return ctx.op("Concat", *running, axis=axis)
    return export


op_exporter("Cumsum")(_scan("CumSum"))


op_exporter("Cumprod")(_scan("CumProd"))


def _triangle(upper: int):
    def export(ctx, layer, inputs, weights):
        x = inputs[0]
        if ctx.opset >= 14:
            return ctx.op("Trilu", x, ctx.ints(layer.k, "k"), upper=upper)
        rows, cols = ctx.shape(x)[-2:]
        if rows is None or cols is None:
            raise UnsupportedError(f"layer '{layer.name}' ({layer.class_name}): before opset 14 only with the last "
                                   f"two axes of known size")
        keep = np.tri(rows, cols, layer.k - 1 if upper else layer.k, dtype=bool)
        keep = ~keep if upper else keep  # (rows, cols)
        return ctx.op("Where", ctx.const(keep, "mask", dtype=bool), x, const_like(ctx, 0, x))
    return export


op_exporter("Triu")(_triangle(1))


op_exporter("Tril")(_triangle(0))


@op_exporter("TopK")
def top_k(ctx, layer, inputs, weights):
    values, indices = ctx.op("TopK", inputs[0], ctx.ints([layer.k], "k"), outputs=2, axis=-1, largest=1, sorted=1)
    return [values, ctx.op("Cast", indices, to=INT32)]


def _index(ctx, indices) -> str:
    return cast_to(ctx, ctx.operand(indices), np.int64)


@op_exporter("TakeAlongAxis")
def take_along_axis(ctx, layer, inputs, weights):
    """GatherElements; Keras broadcasts the axes other than ``axis``: each operand is expanded by the other's shape
    with 1 at ``axis`` (Expand broadcasts, so each keeps its own size there)."""
    x, indices = inputs[0], _index(ctx, inputs[1])
    x, axis = _flat_axis(ctx, layer, x)
    rank = 1 if layer.axis is None else len(ctx.shape(inputs[0]))
    at_axis = ctx.const(np.arange(rank) == axis, "at_axis", dtype=bool)
    one = ctx.ints(1, "one")
    x_wide = ctx.op("Expand", x, ctx.op("Where", at_axis, one, ctx.op("Shape", indices)))
    indices = ctx.op("Expand", indices, ctx.op("Where", at_axis, one, ctx.op("Shape", x)))
    return ctx.op("GatherElements", x_wide, indices, axis=axis)


@op_exporter("Take")
def take(ctx, layer, inputs, weights):
    x, axis = _flat_axis(ctx, layer, inputs[0])
    return ctx.op("Gather", x, _index(ctx, inputs[1]), axis=axis)


@op_exporter("ScatterUpdate")
def scatter_update(ctx, layer, inputs, weights):
    """ScatterND; a reduction needs opset 16 (add, mul) or 18 (max, min)."""
    reduction = layer.reduction
    need = {None: 13, "add": 16, "mul": 16, "max": 18, "min": 18}[reduction]
    if ctx.opset < need:
        raise UnsupportedError(f"layer '{layer.name}' (ScatterUpdate): reduction={reduction!r} needs ONNX opset "
                               f"{need}. Received: opset={ctx.opset}")
    data = inputs[0]
    updates = cast_to(ctx, ctx.operand(inputs[2]), ctx.dtype(data))
    attrs = {} if reduction is None else {"reduction": reduction}
    return ctx.op("ScatterND", data, _index(ctx, inputs[1]), updates, **attrs)


@op_exporter("OneHot")
def one_hot(ctx, layer, inputs, weights):
    """ONNX counts a negative index from the end; tf.one_hot gives zeros: negatives become ``depth`` (out of range)."""
    x = ctx.operand(inputs[0])
    x = ctx.op("Cast", x, to=INT64) if kind(ctx, x) != "i" or ctx.dtype(x) != "int64" else x
    depth = ctx.ints(layer.num_classes, "depth")
    x = ctx.op("Where", ctx.op("Less", x, ctx.ints(0, "zero")), depth, x)
    values = ctx.const(np.asarray([0, 1], layer.dtype), "values", dtype=layer.dtype)
    return ctx.op("OneHot", x, depth, values, axis=int(layer.axis))


@op_exporter("BroadcastTo")
def broadcast_to(ctx, layer, inputs, weights):
    return ctx.op("Expand", inputs[0], ctx.ints(list(layer.target), "shape"))


@op_exporter("Flip")
def flip(ctx, layer, inputs, weights):
    x = inputs[0]
    rank = len(ctx.shape(x))
    axes = list(range(rank)) if layer.axis is None else [a % rank for a in layer.axis]
    n = len(axes)
    return ctx.op("Slice", x, ctx.ints([-1] * n, "starts"), ctx.ints([INT64_MIN] * n, "ends"), ctx.ints(axes, "axes"),
                  ctx.ints([-1] * n, "steps"))


@op_exporter("Size")
def size(ctx, layer, inputs, weights):
    return ctx.op("Cast", ctx.op("Size", inputs[0]), to=INT32)


@op_exporter("Einsum")
def einsum(ctx, layer, inputs, weights):
    operands, _ = promote(ctx, list(inputs))
    return ctx.op("Einsum", *operands, equation=layer.subscripts.replace(" ", ""))

