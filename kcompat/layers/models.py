"""A nested model's own node in the flat graph (kcompat/nested.py): it passes its inner outputs through.

A Sequential or Functional called as a layer is run as its inner layers (named ``outer/inner``); the
node named after the nested model returns the inner outputs of the same call, so the layers after it
read ``(outer, k, i)`` as in the file. It owns no weights: its layers do.
Reference: keras/src/models/functional.py (a Functional is a Layer whose call runs its graph).
"""
from __future__ import annotations

from typing import Any

import numpy as np

from .base import Layer, register


@register("Functional", "Sequential", "Model")
class NestedModel(Layer):
    """The output node of one call of a nested model: its inner outputs, unchanged."""

    per_sample = True

    def call_node(self, args: list, kwargs: dict, weights: list[np.ndarray]) -> Any:
        return args[0]  # (the inner outputs of this call: one array, or a list for several outputs)

    def explain(self, input_shape: Any, output_shape: Any) -> str:
        return "a nested model: its layers are listed as '<model>/<layer>'; its params are theirs"
