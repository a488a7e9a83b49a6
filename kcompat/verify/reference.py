"""The Reference interface: another implementation that runs the same model.

A reference is given the kcompat Model (for names and structure) and the inputs, and
returns what it computed for each layer, so metrics.py can line them up by layer name.
Implementations: keras.py (real Keras, one multi-output call), onnxruntime.py (ONNX
Runtime on kcompat's export or on the original .onnx file).
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass
class ReferenceResult:
    """What a reference computed: per-layer outputs (first call node), params and declared shapes."""

    name: str  # "keras 3.15.1 (tensorflow)", "onnxruntime 1.32.0"
    outputs: dict[str, np.ndarray]  # layer name -> output of its first call
    params: dict[str, int] = field(default_factory=dict)  # layer name -> param count, where known
    declared_shapes: dict[str, tuple] = field(default_factory=dict)  # shape the reference *claims* (Keras summary)
    notes: list[str] = field(default_factory=list)


class Reference:
    """Base class: ``run(model, inputs)`` -> ReferenceResult."""

    name = "reference"

    def run(self, model, inputs: list[np.ndarray]) -> ReferenceResult:
        raise NotImplementedError
