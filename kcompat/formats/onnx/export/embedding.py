"""ONNX exporter of Embedding: Gather on the table (float indices truncated to int, as Keras casts).

Reference: kcompat/layers/embedding.py.
"""
from __future__ import annotations

from onnx import TensorProto

from .registry import layer_exporter


@layer_exporter("Embedding")
def embedding(ctx, layer, inputs, weights):
    table = ctx.const(weights[0], "embeddings", dtype=None)
    idx = inputs[0]
    if ctx.dtype(idx) not in ("int32", "int64"):
        idx = ctx.op("Cast", idx, to=TensorProto.INT64)  # Keras casts floats to int32: truncation
    return ctx.op("Gather", table, idx, axis=0)  # (N, T) -> (N, T, output_dim)
