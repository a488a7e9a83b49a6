"""ONNX exporters of the categorical preprocessing layers: CategoryEncoding, Discretization, IntegerLookup;
and ``encode`` (one_hot / multi_hot / count as an Equal against 0..depth-1), which hashing.py shares.

Discretization counts the boundaries at or below each value (np.digitize's bucket). IntegerLookup compares
each token with the vocabulary (Equal, ArgMax for the position); out-of-vocabulary tokens go to the OOV
index (+ floor mod of the token when several, ONNX's integer Mod with fmod=0), the mask token to 0; the
inverse is a Gather on the vocabulary. Where Keras raises (a token outside a vocabulary without OOV
indices, a negative category) the ONNX graph cannot: such tokens get index -1 / no bin.
Reference: kcompat/layers/categorical.py.
"""
from __future__ import annotations

import numpy as np
from onnx import TensorProto

from .registry import layer_exporter

F32, I64, I32 = TensorProto.FLOAT, TensorProto.INT64, TensorProto.INT32


def hot(ctx, idx: str, depth: int) -> str:
    """(...) int64 -> (..., depth) bool: idx == 0..depth-1 (out of range: all False)."""
    return ctx.op("Equal", ctx.op("Unsqueeze", idx, ctx.ints([-1], "axes")), ctx.ints(np.arange(depth), "tokens"))


def encode(ctx, idx: str, mode: str, depth: int, shape: tuple) -> str:
    """kcompat's ``encode``: one_hot appends depth (a size-1 last axis replaced); multi_hot / count fold the
    last axis into depth bins. ``shape``: idx's Keras shape. float32 out."""
    if mode == "one_hot":
        if len(shape) > 1 and shape[-1] == 1:
            idx = ctx.op("Squeeze", idx, ctx.ints([-1], "axes"))  # (N, 1) -> (N,)
        return ctx.op("Cast", hot(ctx, idx, depth), to=F32)
    counts = ctx.reduce("ReduceSum", ctx.op("Cast", hot(ctx, idx, depth), to=F32), [-2], keepdims=0)  # (N, F) -> (N, depth)
    return ctx.op("Cast", ctx.op("Greater", counts, ctx.const(0.0)), to=F32) if mode == "multi_hot" else counts


@layer_exporter("CategoryEncoding")
def category_encoding(ctx, layer, inputs, weights):
    x = inputs[0]
    idx = ctx.op("Cast", x, to=I64)
    count_weights = ctx.kwargs.get("count_weights", inputs[1] if len(inputs) > 1 else None)
    if count_weights is None:
        return encode(ctx, idx, layer.output_mode, layer.num_tokens, ctx.shape(x))
    if len(ctx.shape(x)) == 1:
        idx = ctx.op("Unsqueeze", idx, ctx.ints([1], "axes"))  # (N,) -> (N, 1)
    w = ctx.op("Reshape", ctx.op("Cast", count_weights, to=F32), ctx.op("Shape", idx))
    weighted = ctx.op("Mul", ctx.op("Cast", hot(ctx, idx, layer.num_tokens), to=F32),
                      ctx.op("Unsqueeze", w, ctx.ints([-1], "axes")))  # (N, F, depth) * (N, F, 1)
    return ctx.reduce("ReduceSum", weighted, [-2], keepdims=0)


@layer_exporter("Discretization")
def discretization(ctx, layer, inputs, weights):
    x = ctx.op("Cast", inputs[0], to=F32)
    above = ctx.op("GreaterOrEqual", ctx.op("Unsqueeze", x, ctx.ints([-1], "axes")), ctx.const(layer.bounds, "bins"))
    idx = ctx.reduce("ReduceSum", ctx.op("Cast", above, to=I32), [-1], keepdims=0)  # boundaries <= x: the bucket
    if layer.output_mode == "int":
        return idx
    return encode(ctx, ctx.op("Cast", idx, to=I64), layer.output_mode, len(layer.bounds) + 1, ctx.shape(inputs[0]))


def _lookup(ctx, layer, x: str) -> str:
    """Token -> index: vocabulary position + token_start; OOV -> oov_start (+ floor mod); mask -> 0."""
    match = ctx.op("Equal", ctx.op("Unsqueeze", x, ctx.ints([-1], "axes")), ctx.ints(layer.tokens, "vocabulary"))
    as_int = ctx.op("Cast", match, to=I32)  # (..., V)
    found = ctx.op("Cast", ctx.reduce("ReduceMax", as_int, [-1], keepdims=0), to=TensorProto.BOOL)
    index = ctx.op("Add", ctx.op("ArgMax", as_int, axis=-1, keepdims=0), ctx.ints(layer.token_start, "token_start"))
    if layer.num_oov == 0:
        oov = ctx.ints(-1, "unknown")  # Keras raises here; a graph cannot
    elif layer.num_oov > 1:
        oov = ctx.op("Add", ctx.op("Mod", x, ctx.ints(layer.num_oov, "num_oov")), ctx.ints(layer.oov_start, "oov_start"))
    else:
        oov = ctx.ints(layer.oov_start, "oov_start")
    out = ctx.op("Where", found, index, oov)
    if layer.mask_token is not None:
        mask_value = 0 if layer.output_mode == "int" else np.iinfo(np.int64).max  # dropped by the encoding
        out = ctx.op("Where", ctx.op("Equal", x, ctx.ints(layer.mask_token, "mask_token")),
                     ctx.ints(mask_value, "mask_index"), out)
    return out


def _inverse(ctx, layer, x: str) -> str:
    """Index -> token: token_start.. -> vocabulary; 0 -> mask token (if any); anything else -> oov_token."""
    n = len(layer.tokens)
    rel = ctx.op("Sub", x, ctx.ints(layer.token_start, "token_start"))
    ok = ctx.op("And", ctx.op("GreaterOrEqual", rel, ctx.ints(0, "zero")), ctx.op("Less", rel, ctx.ints(n, "size")))
    token = ctx.op("Gather", ctx.ints(layer.tokens, "vocabulary"), ctx.op("Clip", rel, ctx.ints(0, "zero"),
                                                                         ctx.ints(n - 1, "last")), axis=0)
    out = ctx.op("Where", ok, token, ctx.ints(layer.oov_token, "oov_token"))
    if layer.mask_token is not None:
        out = ctx.op("Where", ctx.op("Equal", x, ctx.ints(0, "zero")), ctx.ints(layer.mask_token, "mask_token"), out)
    return out


@layer_exporter("IntegerLookup")
def integer_lookup(ctx, layer, inputs, weights):
    x = ctx.op("Cast", inputs[0], to=I64)
    if layer.invert:
        return _inverse(ctx, layer, x)
    idx = _lookup(ctx, layer, x)
    if layer.output_mode == "int":
        return idx
    mode = "count" if layer.output_mode == "tf_idf" else layer.output_mode
    out = encode(ctx, idx, mode, layer.depth, ctx.shape(inputs[0]))
    return out if layer.idf is None else ctx.op("Mul", out, ctx.const(layer.idf, "idf_weights"))
