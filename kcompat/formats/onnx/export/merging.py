"""ONNX exporters of merging layers: Add, Subtract, Multiply, Maximum, Minimum, Average, Concatenate, Dot.

A lower-rank input gets size-1 axes after the batch axis, like Keras (``merge_operands``).
Reference: kcompat/layers/merging.py.
"""
from __future__ import annotations

from onnx import TensorProto

from ....errors import UnsupportedError
from .masks import as_bool_mask
from .registry import layer_exporter, mask_exporter


def merge_operands(ctx, tensors: list) -> list[str]:
    """A merging layer's inputs; a lower-rank one gets size-1 axes after the batch axis, like Keras."""
    names = [ctx.operand(t) for t in tensors]
    ranks = [len(ctx.shapes[n]) if n in ctx.shapes else None for n in names]
    top = max((r for r in ranks if r is not None), default=None)
    return [n if r is None or r == top else ctx.op("Unsqueeze", n, ctx.ints(list(range(1, 1 + top - r)), "axes"))
            for n, r in zip(names, ranks)]  # (N, F) -> (N, 1.., F)



def _merge(onnx_op: str):
    """Add / Subtract / Multiply / Maximum / Minimum layers: one ONNX op folded over the inputs."""
    def export(ctx, layer, inputs, weights):
        operands = merge_operands(ctx, inputs[0] if isinstance(inputs[0], list) else inputs)
        y = operands[0]
        for other in operands[1:]:
            y = ctx.op(onnx_op, y, other)
        return y
    return export


for _keras, _onnx in {"Add": "Add", "Subtract": "Sub", "Multiply": "Mul", "Maximum": "Max", "Minimum": "Min"}.items():
    layer_exporter(_keras)(_merge(_onnx))


@layer_exporter("Concatenate")
def concatenate(ctx, layer, inputs, weights):
    tensors = inputs[0] if isinstance(inputs[0], list) else inputs
    axis = layer.config.get("axis")
    return ctx.op("Concat", *[ctx.operand(t) for t in tensors], axis=-1 if axis is None else int(axis))


@layer_exporter("Average")
def average(ctx, layer, inputs, weights):
    tensors = merge_operands(ctx, inputs[0] if isinstance(inputs[0], list) else inputs)
    y = tensors[0]
    for other in tensors[1:]:
        y = ctx.op("Add", y, other)
    return ctx.op("Div", y, ctx.const(float(len(tensors))))


def _l2_normalize(ctx, x: str, axis: int) -> str:
    """keras.ops.normalize: x * min(rsqrt(sum(x^2)), 1e7)."""
    inv = ctx.op("Reciprocal", ctx.op("Sqrt", ctx.reduce("ReduceSum", ctx.op("Mul", x, x), [axis])))
    return ctx.op("Mul", x, ctx.op("Min", inv, ctx.const(1e7)))


@layer_exporter("Dot")
def dot(ctx, layer, inputs, weights):
    x1, x2 = inputs[0] if isinstance(inputs[0], list) else inputs
    s1, s2 = ctx.shape(x1), ctx.shape(x2)
    a1, a2 = layer.dot_axes(len(s1), len(s2))
    if layer.normalize:
        x1, x2 = _l2_normalize(ctx, x1, a1), _l2_normalize(ctx, x2, a2)
    if len(s1) == len(s2) == 2:  # (N, k) . (N, k) -> (N, 1)
        return ctx.reduce("ReduceSum", ctx.op("Mul", x1, x2), [1])
    k = s1[a1]
    mid = [d for i, d in enumerate(s1) if i not in (0, a1)]
    trail = [d for i, d in enumerate(s2) if i not in (0, a2)]
    if a1 != len(s1) - 1:
        x1 = ctx.op("Transpose", x1, perm=[i for i in range(len(s1)) if i != a1] + [a1])  # (N, ..., k)
    if a2 != 1:
        x2 = ctx.op("Transpose", x2, perm=[0, a2, *[i for i in range(1, len(s2)) if i != a2]])  # (N, k, ...)
    if len(s1) != 3:
        x1 = ctx.op("Reshape", x1, ctx.ints([0, -1, k], "lhs_shape"))  # (N, P, k)
    if len(s2) != 3:
        x2 = ctx.op("Reshape", x2, ctx.ints([0, k, -1], "rhs_shape"))  # (N, k, Q)
    y = ctx.op("MatMul", x1, x2)  # (N, P, Q)
    out = [0, *mid, *trail]
    if len(out) != 3:
        if out.count(None) > 1:
            raise UnsupportedError(f"layer '{layer.name}': Dot with several unknown axis sizes has no ONNX export")
        y = ctx.op("Reshape", y, ctx.ints([-1 if d is None else d for d in out], "shape"))
    return y


@mask_exporter("Add", "Subtract", "Multiply", "Maximum", "Minimum", "Average")
def merge_mask(ctx, layer, inputs, mask, keras2):
    """keras Merge.compute_mask: the OR of the masks, None unless every input has one (tf_keras: AND of those given)."""
    if not isinstance(mask, (list, tuple)):
        return None
    given = [as_bool_mask(ctx, m) for m in mask if m is not None]
    if not given or (not keras2 and len(given) < len(mask)):
        return None
    y = given[0]
    for m in given[1:]:
        y = ctx.op("And" if keras2 else "Or", y, m)
    return y


@mask_exporter("Concatenate")
def concatenate_mask(ctx, layer, inputs, mask, keras2):
    """keras Concatenate.compute_mask: each mask spread over its input (all True without one), concatenated,
    any() over the last axis (tf_keras: expanded, not spread, then all())."""
    if not isinstance(mask, (list, tuple)) or all(m is None for m in mask):
        return None
    axis = layer.config.get("axis")
    axis = -1 if axis is None else int(axis)
    full = []
    for x, m in zip(inputs, mask):
        rank = len(ctx.shape(x))
        if m is None:
            m = ctx.op("Not", ctx.op("Greater", x, x))  # all True, x's shape (x > x is False, NaN too)
        else:
            m = as_bool_mask(ctx, m)
            if len(ctx.shapes.get(m, (None,) * (rank - 1))) < rank:  # a mask is (N, T) beside (N, T, F) values
                m = ctx.op("Unsqueeze", m, ctx.ints([-1], "axes"))  # (N, T) -> (N, T, 1)
                if not keras2:
                    m = ctx.op("Expand", m, ctx.op("Shape", x))  # -> (N, T, F)
        full.append(m)
    joined = ctx.op("Concat", *full, axis=axis)
    as_int = ctx.op("Cast", joined, to=TensorProto.INT32)
    reduced = ctx.reduce("ReduceMin" if keras2 else "ReduceMax", as_int, [-1], keepdims=0)
    return ctx.op("Cast", reduced, to=TensorProto.BOOL)
