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
