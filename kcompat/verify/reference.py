"""The Reference interface: another implementation that runs the same model.

A reference is given the kcompat Model (for names and structure) and the inputs, and
returns what it computed for each call node, so verify can line them up and feed the
candidate the reference's own inputs to every node (the isolated pass).

Keys (the same in ``ReferenceResult.outputs``, in ``--candidate-outputs`` files and in the
``expected.npz`` of a conformance case): a layer's first call is keyed by the layer name,
its call N (N >= 1, a layer used N+1 times) by ``name:N``. In an .npz, where every entry
is one array, output i of a layer that returns several is ``<key>[i]``.
Implementations: keras.py (real Keras, one multi-output call), onnxruntime.py (ONNX
Runtime on kcompat's export or on the original .onnx file), kcompat_reference.py
(kcompat's own NumPy layers).
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

import numpy as np

_INDEXED = re.compile(r"^(.*)\[(\d+)\]$")


def node_key(layer: str, node: int = 0) -> str:
    """The key of call node ``node`` of ``layer``: ``layer`` for the first call, ``layer:N`` after."""
    return layer if node == 0 else f"{layer}:{node}"


def flatten_outputs(outputs: dict[str, Any]) -> dict[str, np.ndarray]:
    """Node key -> output as one array per entry: a multi-output node gives ``key[0]``, ``key[1]``..."""
    flat = {}
    for key, value in outputs.items():
        if isinstance(value, (list, tuple)):
            for i, v in enumerate(value):
                flat[f"{key}[{i}]"] = np.asarray(v)
        else:
            flat[key] = np.asarray(value)
    return flat


def unflatten_outputs(flat: dict[str, np.ndarray]) -> dict[str, Any]:
    """The inverse of ``flatten_outputs``: ``key[i]`` entries gathered into a list under ``key``."""
    out: dict[str, Any] = {}
    parts: dict[str, dict[int, np.ndarray]] = {}
    for key, value in flat.items():
        m = _INDEXED.match(key)
        if m and m.group(1) not in flat:
            parts.setdefault(m.group(1), {})[int(m.group(2))] = value
        else:
            out[key] = value
    for key, items in parts.items():
        out[key] = [items[i] for i in sorted(items)]
    return out


@dataclass
class ReferenceResult:
    """What a reference computed: per-node outputs (keyed by ``node_key``), params, declared shapes."""

    name: str  # "keras 3.15.1 (tensorflow)", "onnxruntime 1.32.0"
    outputs: dict[str, Any]  # node key -> output (an array, or a list for a multi-output layer)
    params: dict[str, int] = field(default_factory=dict)  # layer name -> param count, where known
    declared_shapes: dict[str, Any] = field(default_factory=dict)  # layer name -> shape the reference *claims*
    notes: list[str] = field(default_factory=list)

    def node_output(self, layer: str, node: int = 0) -> Any:
        """The output of call ``node`` of ``layer``, or None when the reference has none."""
        return self.outputs.get(node_key(layer, node))


class Reference:
    """Base class: ``run(model, inputs)`` -> ReferenceResult."""

    name = "reference"

    def run(self, model, inputs: list[np.ndarray]) -> ReferenceResult:
        raise NotImplementedError


class StoredReference(Reference):
    """A reference whose result is already known (a conformance case's expected outputs, a cached run)."""

    def __init__(self, result: ReferenceResult):
        self.result = result
        self.name = result.name

    def run(self, model, inputs: list[np.ndarray]) -> ReferenceResult:
        return self.result
