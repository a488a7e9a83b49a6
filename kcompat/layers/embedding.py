"""Embedding: integer indices -> rows of an (input_dim, output_dim) table.

Reference: keras/src/layers/core/embedding.py (float inputs are cast to int32, i.e. truncated;
negative indices count from the end like ``ops.take``). With ``mask_zero`` the output carries the
Keras mask ``indices != 0`` (``compute_mask``), which recurrent layers and masked pooling use.
"""
from __future__ import annotations

import numpy as np

from ..errors import ShapeError
from .base import Layer, Weight, register


@register("Embedding")
class Embedding(Layer):
    """y[..., :] = embeddings[x[...]]."""

    def __init__(self, config, name=None):
        super().__init__(config, name)
        self.input_dim = self.positive_int("input_dim")
        self.output_dim = self.positive_int("output_dim")
        self.mask_zero = bool(self.get("mask_zero", False))
        self.supports_masking = self.creates_mask = self.mask_zero  # keras Embedding: supports_masking = mask_zero
        if self.config.get("lora_rank"):
            raise self.fail(f"LoRA-enabled Embedding is not supported. Received: lora_rank={self.config['lora_rank']}")
        if self.config.get("quantization_config"):
            raise self.fail("quantized Embedding is not supported")

    def weights(self, input_shape):
        return [Weight("embeddings", (self.input_dim, self.output_dim))]

    def output_shape(self, input_shape):
        return (*input_shape, self.output_dim)

    def forward(self, x, embeddings):
        idx = x if x.dtype.kind in "iu" else x.astype(np.int32)  # (N, T) indices
        if idx.size and (idx.max() >= self.input_dim or idx.min() < -self.input_dim):
            raise ShapeError(f"layer '{self.name}' (Embedding): indices must be in [0, {self.input_dim}). "
                             f"Received: min={int(idx.min())}, max={int(idx.max())}")
        return np.take(embeddings, idx, axis=0)  # (N, T) -> (N, T, output_dim)

    def compute_mask(self, inputs, mask, keras2=False):
        return np.asarray(inputs) != 0  # (N, T) indices -> (N, T) mask: index 0 is padding

    def explain(self, input_shape, output_shape):
        mask = "; index 0 is padding: it is masked for the layers after it (mask_zero)" if self.mask_zero else ""
        return (f"looks up each index in a {self.input_dim}x{self.output_dim} table: "
                f"embeddings {self.input_dim}x{self.output_dim} = {self.input_dim * self.output_dim} params{mask}")


@register("ReversibleEmbedding")
class ReversibleEmbedding(Embedding):
    """An Embedding that, called with ``reverse=True``, maps hidden states back to logits:
    x @ embeddings.T (tied) or x @ reverse_embeddings, optionally soft-capped (keras/src/layers/core/
    reversible_embedding.py)."""

    def __init__(self, config, name=None):
        super().__init__(config, name)
        self.tie_weights = bool(self.get("tie_weights", True))
        self.soft_cap = self.config.get("logit_soft_cap")
        if self.soft_cap is not None and (isinstance(self.soft_cap, bool) or not isinstance(self.soft_cap, (int, float))):
            raise self.fail(f"'logit_soft_cap' must be null or a number. Received: logit_soft_cap={self.soft_cap!r}")
        if self.get("reverse_dtype", "float32") not in ("float32", "float64"):
            raise self.fail(f"only a float32 reverse pass is supported. Received: reverse_dtype={self.config['reverse_dtype']!r}")

    def weights(self, input_shape):
        ws = super().weights(input_shape)
        return ws if self.tie_weights else ws + [Weight("reverse_embeddings", (self.output_dim, self.input_dim))]

    @staticmethod
    def reverse(args, kwargs) -> bool:
        return bool(kwargs.get("reverse", args[1] if len(args) > 1 else False))

    def node_output_shape(self, args, kwargs):
        shape = args[0]
        if not self.reverse(args, kwargs):
            return self.output_shape(shape)
        if shape[-1] not in (None, self.output_dim):
            raise self.fail(f"reverse=True expects a last axis of {self.output_dim}. Received: {shape}")
        return (*shape[:-1], self.input_dim)

    def call_node(self, args, kwargs, weights):
        if not self.reverse(args, kwargs):
            return self.forward(args[0], weights[0])
        kernel = weights[0].T if self.tie_weights else weights[1]  # (output_dim, input_dim)
        logits = np.matmul(args[0], kernel)  # (..., output_dim) -> (..., input_dim)
        if self.soft_cap is not None:
            cap = np.asarray(self.soft_cap, logits.dtype)
            logits = np.tanh(logits / cap) * cap
        return logits
