"""ModelSpec: the plain-data model every reader produces and every writer consumes.

A model is a list of layers; each layer has a Keras class name, its Keras config,
its weights in Keras order and its call nodes. A call node's ``args`` / ``kwargs`` are
the Keras 3 structure with every tensor replaced by a ``TensorRef`` (layer, node,
index), so a layer used twice simply has two nodes. Sequential models are stored the
same way (a chain) with ``sequential=True`` so writers can give them back as Sequential.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np


@dataclass(frozen=True)
class TensorRef:
    """Output ``index`` of call node ``node`` of layer ``layer`` (Keras's keras_history)."""

    layer: str
    node: int = 0
    index: int = 0


@dataclass
class Node:
    """One call of a layer: Keras 3 args / kwargs with TensorRef leaves."""

    args: list = field(default_factory=list)
    kwargs: dict = field(default_factory=dict)

    def refs(self) -> list[TensorRef]:
        """Every tensor this call reads, in order."""
        if not self.kwargs and len(self.args) == 1 and type(self.args[0]) is TensorRef:  # the usual call
            return [self.args[0]]
        out: list[TensorRef] = []
        _collect_refs([self.args, self.kwargs], out)
        return out


def _collect_refs(obj: Any, out: list[TensorRef]) -> None:
    if isinstance(obj, TensorRef):
        out.append(obj)
    elif isinstance(obj, (list, tuple)):
        for item in obj:
            _collect_refs(item, out)
    elif isinstance(obj, dict):
        for item in obj.values():
            _collect_refs(item, out)


def map_refs(obj: Any, fn) -> Any:
    """Rebuild a nested args structure with ``fn(ref)`` in place of every TensorRef."""
    if isinstance(obj, TensorRef):
        return fn(obj)
    if isinstance(obj, list):
        if len(obj) == 1 and type(obj[0]) is TensorRef:  # the usual call: [x]
            return [fn(obj[0])]
        return [map_refs(o, fn) for o in obj]
    if isinstance(obj, tuple):
        return tuple(map_refs(o, fn) for o in obj)
    if isinstance(obj, dict):
        return {k: map_refs(v, fn) for k, v in obj.items()} if obj else {}
    return obj


@dataclass
class LayerSpec:
    """One Keras layer (or Keras 3 op node): class, config, call nodes, weights."""

    name: str
    class_name: str
    config: dict
    nodes: list[Node] = field(default_factory=list)
    weights: list[np.ndarray] | None = None  # Keras order; None = not loaded
    module: str | None = None  # e.g. "keras.layers", "keras.src.ops.numpy"
    build_config: dict | None = None

    @property
    def is_op(self) -> bool:
        """True for a Keras 3 op node (``x * 2``, ``ops.exp``) rather than a Layer."""
        return bool(self.module) and self.module.startswith("keras.src.ops")


@dataclass
class ModelSpec:
    """A whole model: layers in topological order, inputs and outputs as TensorRefs."""

    name: str
    layers: list[LayerSpec]
    inputs: list[TensorRef]
    outputs: list[TensorRef]
    sequential: bool = False
    source: str = "<memory>"
    keras_version: str | None = None
    onnx_names: dict[str, str] | None = None  # layer name -> ONNX tensor it computes (set by the ONNX reader)

    def layer(self, name: str) -> LayerSpec:
        """The layer called ``name`` (KeyError if absent)."""
        for layer in self.layers:
            if layer.name == name:
                return layer
        raise KeyError(name)

    @property
    def has_weights(self) -> bool:
        """True when weights were loaded for the model (not just an architecture)."""
        return all(layer.weights is not None for layer in self.layers)
