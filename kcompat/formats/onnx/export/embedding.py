"""ONNX exporters of Embedding (Gather on the table; float indices truncated to int, as Keras casts) and
ReversibleEmbedding (the same, and its ``reverse=True`` call: a MatMul with the transposed table or its
own reverse kernel, then the optional soft cap); Embedding's mask (``mask_zero``: indices != 0).

Reference: kcompat/layers/embedding.py.
"""
from __future__ import annotations

import numpy as np
from onnx import TensorProto

from .registry import layer_exporter, mask_exporter


@layer_exporter("Embedding")
def embedding(ctx, layer, inputs, weights):
    table = ctx.const(weights[0], "embeddings", dtype=None)
    idx = inputs[0]
    if ctx.dtype(idx) not in ("int32", "int64"):
        idx = ctx.op("Cast", idx, to=TensorProto.INT64)  # Keras casts floats to int32: truncation
    return ctx.op("Gather", table, idx, axis=0)  # (N, T) -> (N, T, output_dim)


@layer_exporter("ReversibleEmbedding")
def reversible_embedding(ctx, layer, inputs, weights):
    if not layer.reverse(inputs, ctx.kwargs):
        return embedding(ctx, layer, inputs[:1], weights)
    table = weights[0].T if layer.tie_weights else weights[1]  # (output_dim, input_dim)
    logits = ctx.op("MatMul", inputs[0], ctx.const(np.ascontiguousarray(table), "reverse_kernel", dtype=None))
    if layer.soft_cap is None:
        return logits  # (..., output_dim) -> (..., input_dim)
    cap = ctx.const(float(layer.soft_cap), "soft_cap")
    return ctx.op("Mul", ctx.op("Tanh", ctx.op("Div", logits, cap)), cap)


@mask_exporter("Embedding", "ReversibleEmbedding")
def embedding_mask(ctx, layer, x, previous, keras2):
    zero = ctx.const(0, "zero", dtype=ctx.dtype(x))
    return ctx.op("Not", ctx.op("Equal", x, zero))  # (N, T) indices -> (N, T): index 0 is padding
