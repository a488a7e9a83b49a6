"""ONNX exporters of Keras 3 op nodes that reduce or rearrange: reductions (Sum ... Logsumexp, Any / All,
Argmax / Argmin), Reshape, Transpose, ExpandDims, Squeeze, Concatenate, Stack, Tile, GetItem.

Logsumexp as tf.reduce_logsumexp (finite max shifted out); argmax with -0.0 below +0.0 (Keras on TF).
Reference: keras/src/ops/numpy.py, kcompat/layers/ops_array.py.
"""
from __future__ import annotations

import numpy as np

from ....errors import UnsupportedError
from ....layers.ops_array import accumulator_dtype, getitem_key
from ..common import INT64_MAX, INT64_MIN
from .merging import concatenate
from .operands import BOOL, INT32, as_bool, as_float, cast_to, const_like, kind, promote
from .registry import op_exporter


def _reduction(onnx_op):
    def export(ctx, layer, inputs, weights):
        x = inputs[0]
        axis = layer.config.get("axis")
        keep = int(bool(layer.config.get("keepdims", False)))
        if axis is None:
            axis = list(range(len(ctx.shape(x))))
        axes = list(axis) if isinstance(axis, (list, tuple)) else [axis]
        initial = getattr(layer, "initial", None)
        if onnx_op == "ReduceSum":  # Keras adds bool / int8 / int16 up in int32, uint8 / uint16 in uint32
            x = cast_to(ctx, x, accumulator_dtype(np.dtype(ctx.dtype(x))))
        if initial is None:
            return ctx.reduce(onnx_op, x, axes, keep)
        # Keras: maximum(reduce_max(x), initial); ONNX reduces an empty set to -inf / +inf (its identity)
        bound = "Max" if onnx_op == "ReduceMax" else "Min"
        if kind(ctx, x) == "b":
            y = ctx.reduce(onnx_op, ctx.op("Cast", x, to=INT32), axes, keep)
            return ctx.op("Cast", ctx.op(bound, y, ctx.const(int(initial), "initial", dtype=np.int32)), to=BOOL)
        y = ctx.reduce(onnx_op, x, axes, keep)
        return ctx.op(bound, y, const_like(ctx, initial, y))
    return export



for _keras, _onnx in {"Mean": "ReduceMean", "Sum": "ReduceSum", "Max": "ReduceMax", "Min": "ReduceMin",
                      "Amax": "ReduceMax", "Amin": "ReduceMin"}.items():
    op_exporter(_keras)(_reduction(_onnx))


def _axes(ctx, layer, x: str) -> list[int]:
    rank = len(ctx.shape(x))
    return list(range(rank)) if layer.axis is None else [a % rank for a in layer.axis]


@op_exporter("Prod")
def prod(ctx, layer, inputs, weights):
    x = inputs[0]
    x = cast_to(ctx, x, accumulator_dtype(np.dtype(ctx.dtype(x))))  # Keras: bool, int8, int16 -> int32 ...
    return ctx.reduce("ReduceProd", x, _axes(ctx, layer, inputs[0]), int(layer.keepdims))


def _variance(ctx, layer, x: str) -> str:
    """tf.math.reduce_variance: mean((x - mean(x))^2), in float32 for integers."""
    axes = _axes(ctx, layer, x)
    d = ctx.op("Sub", as_float(ctx, x), ctx.reduce("ReduceMean", as_float(ctx, x), axes))
    return ctx.reduce("ReduceMean", ctx.op("Mul", d, d), axes, int(layer.keepdims))


@op_exporter("Var")
def var(ctx, layer, inputs, weights):
    return _variance(ctx, layer, inputs[0])


@op_exporter("Std")
def std(ctx, layer, inputs, weights):
    return ctx.op("Sqrt", _variance(ctx, layer, inputs[0]))


@op_exporter("Logsumexp")
def logsumexp(ctx, layer, inputs, weights):
    """tf.reduce_logsumexp: m = max (0 where not finite); log(sum(exp(x - m))) + m."""
    x, axes = as_float(ctx, inputs[0]), _axes(ctx, layer, inputs[0])
    m = ctx.reduce("ReduceMax", x, axes)
    finite = ctx.op("Not", ctx.op("Or", ctx.op("IsNaN", m), ctx.op("IsInf", m)))
    m = ctx.op("Where", finite, m, const_like(ctx, 0.0, m))
    y = ctx.op("Log", ctx.reduce("ReduceSum", ctx.op("Exp", ctx.op("Sub", x, m)), axes, int(layer.keepdims)))
    return ctx.op("Add", y, m if layer.keepdims else ctx.op("Squeeze", m, ctx.ints(axes, "axes")))


def _any_all(onnx_op: str):
    def export(ctx, layer, inputs, weights):
        x = ctx.op("Cast", as_bool(ctx, inputs[0]), to=INT32)  # no bool reductions before opset 20
        y = ctx.reduce(onnx_op, x, _axes(ctx, layer, inputs[0]), int(layer.keepdims))
        return ctx.op("Cast", y, to=BOOL)
    return export


op_exporter("Any")(_any_all("ReduceMax"))


op_exporter("All")(_any_all("ReduceMin"))


def _arg(onnx_op: str):
    def export(ctx, layer, inputs, weights):
        """Keras: -0.0 becomes -tiny (below +0.0); axis None flattens; int32 out (ONNX gives int64)."""
        x = inputs[0]
        rank = len(ctx.shape(x))
        if kind(ctx, x) == "f" and rank:
            zero = const_like(ctx, 0.0, x)
            minus = ctx.op("Less", ctx.op("Div", const_like(ctx, 1.0, x), x), zero)  # 1 / -0 = -inf
            minus_zero = ctx.op("And", ctx.op("Equal", x, zero), minus)
            x = ctx.op("Where", minus_zero, const_like(ctx, -np.finfo(ctx.dtype(x)).tiny, x), x)
        elif kind(ctx, x) == "b":
            x = ctx.op("Cast", x, to=INT32)
        keep = int(layer.keepdims)
        if layer.axis is None:
            y = ctx.op(onnx_op, ctx.op("Reshape", x, ctx.ints([-1], "flat")), axis=0, keepdims=0)
            y = ctx.op("Reshape", y, ctx.ints([1] * rank, "shape")) if keep else y
        else:
            y = ctx.op(onnx_op, x, axis=layer.axis[0], keepdims=keep)
        return ctx.op("Cast", y, to=INT32)
    return export


op_exporter("Argmax")(_arg("ArgMax"))


op_exporter("Argmin")(_arg("ArgMin"))



@op_exporter("Det")
def det(ctx, layer, inputs, weights):
    return ctx.op("Det", as_float(ctx, inputs[0]))


# ------------------------------------------------------------------ shapes
@op_exporter("Reshape")
def reshape(ctx, layer, inputs, weights):
    target = list(layer.config.get("newshape", ctx.kwargs.get("newshape")))  # ops.reshape(x, newshape)
    return ctx.op("Reshape", inputs[0], ctx.ints(target, "shape"))


op_exporter("Concatenate")(concatenate)  # ops.concatenate computes what the Concatenate layer does


@op_exporter("Transpose")
def transpose(ctx, layer, inputs, weights):
    axes = layer.config.get("axes")
    rank = len(ctx.shape(inputs[0]))
    perm = list(range(rank))[::-1] if axes is None else [a % rank for a in axes]
    return ctx.op("Transpose", inputs[0], perm=perm)


@op_exporter("ExpandDims")
def expand_dims(ctx, layer, inputs, weights):
    axis = layer.config.get("axis")
    axes = list(axis) if isinstance(axis, (list, tuple)) else [axis]
    return ctx.op("Unsqueeze", inputs[0], ctx.ints(axes, "axes"))


@op_exporter("Squeeze")
def squeeze(ctx, layer, inputs, weights):
    axis = layer.config.get("axis")
    if axis is None:
        return ctx.op("Squeeze", inputs[0])
    axes = list(axis) if isinstance(axis, (list, tuple)) else [axis]
    return ctx.op("Squeeze", inputs[0], ctx.ints(axes, "axes"))



@op_exporter("Stack")
def stack(ctx, layer, inputs, weights):
    tensors, _ = promote(ctx, inputs[0])
    axes = ctx.ints([layer.axis], "axes")
    return ctx.op("Concat", *[ctx.op("Unsqueeze", t, axes) for t in tensors], axis=int(layer.axis))


@op_exporter("Tile")
def tile(ctx, layer, inputs, weights):
    """ONNX Tile takes one repeat per axis: pad ``repeats`` with 1s in front, or x with leading size-1 axes."""
    x, reps = inputs[0], list(layer.repeats)
    rank = len(ctx.shape(x))
    if len(reps) > rank:
        x = ctx.op("Unsqueeze", x, ctx.ints(list(range(len(reps) - rank)), "axes"))  # (..) -> (1, .., ..)
    reps = [1] * (rank - len(reps)) + reps
    return ctx.op("Tile", x, ctx.ints(reps, "repeats"))


@op_exporter("GetItem")
def get_item(ctx, layer, inputs, weights):
    """x[key]: one Slice (slices, and ints as [k, k + 1]), Squeeze of the int axes, Unsqueeze for None."""
    x, raw = inputs[0], inputs[1]
    key = getitem_key(raw, f"layer '{layer.name}' (GetItem)")
    keys = list(key) if isinstance(key, tuple) else [key]
    if Ellipsis not in keys:
        keys.append(Ellipsis)
    fill = len(ctx.shape(x)) - (len(keys) - 1 - keys.count(None))  # axes the Ellipsis stands for
    starts, ends, steps, axes, squeeze, unsqueeze = [], [], [], [], [], []
    i = o = 0  # input axis, output axis
    for k in keys:
        if k is Ellipsis:
            i, o = i + fill, o + fill
        elif k is None:
            unsqueeze.append(o)
            o += 1
        elif isinstance(k, slice):
            if k != slice(None):
                step = 1 if k.step is None else k.step
                starts.append(k.start if k.start is not None else 0 if step > 0 else INT64_MAX)
                ends.append(k.stop if k.stop is not None else INT64_MAX if step > 0 else INT64_MIN)
                steps.append(step)
                axes.append(i)
            i, o = i + 1, o + 1
        elif isinstance(k, int):  # a size-1 slice, squeezed
            starts.append(k)
            ends.append(INT64_MAX if k == -1 else k + 1)
            steps.append(1)
            axes.append(i)
            squeeze.append(i)
            i += 1
        else:
            raise UnsupportedError(f"layer '{layer.name}' (GetItem): only ints, slices, None and ... export. "
                                   f"Received: {k!r}")
    y = x
    if axes:
        y = ctx.op("Slice", y, ctx.ints(starts, "starts"), ctx.ints(ends, "ends"), ctx.ints(axes, "axes"),
                   ctx.ints(steps, "steps"))
    if squeeze:
        y = ctx.op("Squeeze", y, ctx.ints(squeeze, "squeeze_axes"))
    if unsqueeze:
        y = ctx.op("Unsqueeze", y, ctx.ints(unsqueeze, "unsqueeze_axes"))
    return y
