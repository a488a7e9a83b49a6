"""ONNX exporters of the dot-product attention layers Attention and AdditiveAttention, and the attention
pieces multi_head_attention.py shares: boolean masks, causal and sliding-window masks built from the
tensors themselves (positions by a CumSum of ones: any sequence length, and the importer reads them back as
op nodes), softmax over one or several axes.

Attention: scores q @ k^T (x scale) or concat-mode sum(tanh(scale * (q + k))) * w; a masked score loses
1e9 (Keras subtracts, it does not replace); softmax; @ v; query-masked rows 0; the probabilities as a second
output with return_attention_scores. Reference: kcompat/layers/attention.py.
"""
from __future__ import annotations

import numpy as np
from onnx import TensorProto

from ....layers.attention import bind
from .masks import as_bool_mask
from .registry import layer_exporter


def positions(ctx, x: str, axis: int) -> str:
    """0, 1, ..., n-1 for the n steps of x's ``axis`` (int64, shape (n,)), from x itself (x > x is False)."""
    rank = len(ctx.shape(x))
    line = x
    for a in reversed(range(rank)):  # x[0, ..., :, ..., 0]: one line along ``axis``
        if a != axis:
            line = ctx.op("Gather", line, ctx.ints(0, "first"), axis=a)
    ones = ctx.op("Cast", ctx.op("Not", ctx.op("Greater", line, line)), to=TensorProto.INT64)
    return ctx.op("Sub", ctx.op("CumSum", ones, ctx.ints(0, "axis")), ctx.ints(1, "one"))


def causal(ctx, q: str, k: str, q_axis: int = 1, k_axis: int = 1) -> str:
    """(1, T, S) bool: query step i sees key steps j <= i."""
    i = ctx.op("Unsqueeze", positions(ctx, q, q_axis), ctx.ints([1], "axes"))  # (T, 1)
    j = ctx.op("Unsqueeze", positions(ctx, k, k_axis), ctx.ints([0], "axes"))  # (1, S)
    return ctx.op("Unsqueeze", ctx.op("GreaterOrEqual", i, j), ctx.ints([0], "axes"))


def band(ctx, q: str, k: str, window: int) -> str:
    """(1, T, S) bool: |i - j| < window."""
    i = ctx.op("Unsqueeze", positions(ctx, q, 1), ctx.ints([1], "axes"))
    j = ctx.op("Unsqueeze", positions(ctx, k, 1), ctx.ints([0], "axes"))
    near = ctx.op("Less", ctx.op("Abs", ctx.op("Sub", i, j)), ctx.ints(window, "window"))
    return ctx.op("Unsqueeze", near, ctx.ints([0], "axes"))


def both(ctx, a: str | None, b: str | None) -> str | None:
    return b if a is None else a if b is None else ctx.op("And", a, b)


def softmax(ctx, x: str, axes: list[int]) -> str:
    """Softmax over one axis (ONNX Softmax), or several (exp(x - max) / sum, as keras.ops.softmax)."""
    if len(axes) == 1:
        return ctx.op("Softmax", x, axis=axes[0])
    shifted = ctx.op("Exp", ctx.op("Sub", x, ctx.reduce("ReduceMax", x, axes)))
    return ctx.op("Div", shifted, ctx.reduce("ReduceSum", shifted, axes))


def zero(ctx) -> str:
    return ctx.const(0.0, "zero")


CALL = ("inputs", "mask", "training", "return_attention_scores", "use_causal_mask")


@layer_exporter("Attention", "AdditiveAttention")
def attention(ctx, layer, inputs, weights):
    call = bind(inputs, ctx.kwargs, CALL)
    xs = list(call["inputs"])
    q, v = xs[0], xs[1]
    k = xs[2] if len(xs) > 2 else v
    masks = call.get("mask") or [None, None]
    q_mask = None if masks[0] is None else as_bool_mask(ctx, masks[0])
    v_mask = None if masks[1] is None else ctx.op("Unsqueeze", as_bool_mask(ctx, masks[1]), ctx.ints([-2], "axes"))
    scale = ctx.const(weights[0], "scale", dtype=None) if layer.use_scale else None
    if layer.class_name == "AdditiveAttention" or layer.score_mode == "concat":
        qk = ctx.op("Add", ctx.op("Unsqueeze", q, ctx.ints([-2], "axes")),
                    ctx.op("Unsqueeze", k, ctx.ints([-3], "axes")))  # (N, Tq, 1, D) + (N, 1, Tv, D) -> (N, Tq, Tv, D)
        if layer.class_name == "AdditiveAttention":
            t = ctx.op("Tanh", qk)
            scores = ctx.reduce("ReduceSum", t if scale is None else ctx.op("Mul", scale, t), [-1], keepdims=0)
        else:
            t = ctx.op("Tanh", qk if scale is None else ctx.op("Mul", scale, qk))
            scores = ctx.op("Mul", ctx.const(weights[-1], "concat_score_weight", dtype=None),
                            ctx.reduce("ReduceSum", t, [-1], keepdims=0))  # (N, Tq, Tv)
    else:
        rank = len(ctx.shape(k))
        kt = ctx.op("Transpose", k, perm=[*range(rank - 2), rank - 1, rank - 2])
        scores = ctx.op("MatMul", q, kt)  # (N, Tq, D) @ (N, D, Tv) -> (N, Tq, Tv)
        if scale is not None:
            scores = ctx.op("Mul", scores, scale)
    if call.get("use_causal_mask"):
        v_mask = both(ctx, v_mask, causal(ctx, q, v))
    if v_mask is not None:  # masked scores lose 1e9
        scores = ctx.op("Where", v_mask, scores, ctx.op("Sub", scores, ctx.const(1e9, "large")))
    probs = ctx.op("Softmax", scores, axis=-1)
    out = ctx.op("MatMul", probs, v)  # (N, Tq, Tv) @ (N, Tv, Dv) -> (N, Tq, Dv)
    if q_mask is not None:
        out = ctx.op("Where", ctx.op("Unsqueeze", q_mask, ctx.ints([-1], "axes")), out, zero(ctx))
    return [out, probs] if call.get("return_attention_scores") else out


def keep_masked(ctx, x: str, mask: str, fill) -> str:
    """Where(mask, x, fill)."""
    return ctx.op("Where", mask, x, ctx.const(np.float32(fill), "fill"))
