"""ModelSpec: the plain-data model every reader produces and every writer consumes.

A model is a list of layers; each layer has a Keras class name, its Keras config,
its weights in Keras order and its call nodes. A call node's ``args`` / ``kwargs`` are
the Keras 3 structure with every tensor replaced by a ``TensorRef`` (layer, node,
index), so a layer used twice simply has two nodes. Sequential models are stored the
same way (a chain) with ``sequential=True`` so writers can give them back as Sequential.

A nested model (a Sequential or Functional called as a layer, at any depth) is ONE LayerSpec, as in the
file: ``model`` holds its own ModelSpec (its layers, their configs and weights), ``config`` the rest of
its config (name, trainable, dtype...). Writers give it back as it was and summary prints it as one row;
``kcompat.model.Model`` expands it into inner call nodes named ``outer/inner`` to run it
(kcompat/nested.py). Its ``weights`` are None (they live in its layers), or, as read from a legacy
.h5 group, every weight of the nested model in Keras's legacy order, which Model hands to its layers.
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
    if type(obj) is list and len(obj) == 1 and type(obj[0]) is TensorRef:  # the usual call: [x]
        return [fn(obj[0])]
    return map_nested(obj, TensorRef, fn)


def map_nested(obj: Any, kind: type, fn) -> Any:
    """Rebuild nested lists, tuples and dicts with ``fn(leaf)`` in place of every instance of ``kind``."""
    if isinstance(obj, kind):
        return fn(obj)
    if isinstance(obj, list):
        return [map_nested(o, kind, fn) for o in obj]
    if isinstance(obj, tuple):
        return tuple(map_nested(o, kind, fn) for o in obj)
    if isinstance(obj, dict):
        return {k: map_nested(v, kind, fn) for k, v in obj.items()}
    return obj


@dataclass
class LayerSpec:
    """One Keras layer (or Keras 3 op node): class, config, call nodes, weights."""

    name: str
    class_name: str
    config: dict
    nodes: list[Node] = field(default_factory=list)
    weights: list[np.ndarray] | None = None  # Keras order; None = not loaded
    module: str | None = None  # e.g. "keras.layers", "keras.src.ops.numpy", "my_pkg.layers" (a custom class)
    build_config: dict | None = None
    registered_name: str | None = None  # a custom class's Keras registration ("MyPackage>MyScale")
    model: ModelSpec | None = None  # a nested model: its own spec (``config`` keeps the rest of its config)

    @property
    def is_op(self) -> bool:
        """True for a Keras 3 op node (``x * 2``, ``ops.exp``) rather than a Layer."""
        return bool(self.module) and self.module.startswith("keras.src.ops")

    @property
    def is_model(self) -> bool:
        """True for a nested model (a Sequential or Functional used as a layer)."""
        return self.model is not None


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
    onnx_layouts: dict[str, tuple] | None = None  # layer -> P where its output = transpose(ONNX tensor, P)

    def layer(self, name: str) -> LayerSpec:
        """The layer called ``name``; ``outer/inner`` names a layer of nested model ``outer`` (KeyError if absent)."""
        for layer in self.layers:
            if layer.name == name:
                return layer
        for layer in self.layers:  # Keras 2 names may hold '/' themselves: try every nested model the name starts with
            if layer.model is not None and name.startswith(layer.name + "/"):
                try:
                    return layer.model.layer(name[len(layer.name) + 1:])
                except KeyError:
                    pass
        raise KeyError(name)

    @property
    def has_weights(self) -> bool:
        """True when weights were loaded for the model (not just an architecture)."""
        return all(layer.weights is not None or (layer.model is not None and layer.model.has_weights)
                   for layer in self.layers)


def keras_order(layers: list[LayerSpec], outputs: list[TensorRef]) -> list[LayerSpec]:
    """The layers the outputs depend on, in the order Keras's Functional gives them (deepest first,
    then first visit of a depth-first walk from the outputs), so positional weight files line up.
    Reference: keras/src/ops/function.py map_graph / _build_map."""
    by_name = {ls.name: ls for ls in layers}
    first_seen: dict[str, int] = {}
    order: list[tuple] = []  # nodes (layer, node index), inputs first
    done: set = set()

    def visit(layer: str, k: int) -> None:
        stack = [((layer, k), False)]
        while stack:
            key, expanded = stack.pop()
            if expanded:
                done.add(key)
                order.append(key)
                continue
            if key in done:
                continue
            first_seen.setdefault(key[0], len(first_seen))
            stack.append((key, True))
            nodes = by_name[key[0]].nodes
            parents = [(r.layer, r.node) for r in nodes[key[1]].refs()] if nodes else []
            stack.extend((p, False) for p in reversed(parents) if p not in done)

    for ref in outputs:
        visit(ref.layer, ref.node)
    depth: dict[tuple, int] = {}
    layer_depth: dict[str, int] = {}
    for key in reversed(order):
        d = max(depth.setdefault(key, 0), layer_depth.get(key[0], 0))
        layer_depth[key[0]] = depth[key] = d
        nodes = by_name[key[0]].nodes
        for r in (nodes[key[1]].refs() if nodes else []):
            depth[(r.layer, r.node)] = max(d + 1, depth.get((r.layer, r.node), 0))
    for ls in layers:  # inputs nothing reads
        if ls.class_name == "InputLayer" and ls.name not in layer_depth:
            layer_depth[ls.name], first_seen[ls.name] = 0, -1
    names = sorted(layer_depth, key=lambda n: (-layer_depth[n], first_seen[n]))
    return [by_name[n] for n in names]


def keras_layers(spec: ModelSpec) -> list[LayerSpec]:
    """The model's ``layers`` as Keras lists them (what it saves weights for and ``summary(expand_nested=True)``
    shows inside a nested model): a Sequential's in order without its InputLayer; a Functional's in graph
    order, InputLayers included. Keras 3 op nodes are not layers.
    Reference: keras/src/models/sequential.py and functional.py (``layers``)."""
    layers = spec.layers if spec.sequential else keras_order(spec.layers, spec.outputs)
    return [ls for ls in layers if not ls.is_op and not (spec.sequential and ls.class_name == "InputLayer")]


def fresh_name(base: str, used: set) -> str:
    """``base``, or ``base_1``, ``base_2``... whichever is not in ``used``; adds it to ``used``."""
    name, i = base, 0
    while name in used:
        i += 1
        name = f"{base}_{i}"
    used.add(name)
    return name
