"""The ONNX export tables: Keras layer class, Keras 3 op node and Keras activation -> exporter.

Filled by decorators next to each exporter, in the family modules (core.py, conv.py, ... mirroring
kcompat/layers/); this module imports none of them (driver.py does), so no two modules import each other.
A name registered twice is an error, never a silent overwrite. Layers and op nodes are separate tables,
as in kcompat/layers/ (``Reshape`` the layer and ``ops.reshape`` are different things). Layer exporters
are keyed by the class's canonical Keras name; its aliases (``Convolution2D``) come from the layer
registry, never typed twice.

An exporter is ``fn(ctx, layer, inputs, weights) -> ONNX tensor name(s)``: ``layer`` the kcompat NumPy
layer (its parsed config: ``layer.units``...), ``inputs`` the call node's args with every tensor replaced
by its ONNX name (scalars stay numbers), ``weights`` the Keras-order arrays, ``ctx`` the ExportContext
(context.py). An activation exporter is ``fn(ctx, x, shape, **params) -> tensor name``.
"""
from __future__ import annotations

from typing import Callable

from ....layers import OP_REGISTRY, REGISTRY

LAYERS: dict[str, Callable] = {}  # canonical Keras layer class name -> exporter
OPS: dict[str, Callable] = {}  # Keras 3 op node class name -> exporter
ACTIVATIONS: dict[str, Callable] = {}  # Keras activation name -> fn(ctx, x, shape, **params)


def _add(table: dict, what: str, names: tuple, fn: Callable) -> None:
    for name in names:
        if name in table:
            old = table[name]
            raise RuntimeError(f"two ONNX exporters for {what} {name!r}: {old.__module__}.{old.__name__} and "
                               f"{fn.__module__}.{fn.__name__}")
        table[name] = fn


def layer_exporter(*class_names: str):
    """Register an exporter for Keras layer classes, by their canonical names (aliases follow)."""
    for name in class_names:
        cls = REGISTRY.get(name)
        if cls is None or cls.class_name != name:
            raise RuntimeError(f"ONNX exporter for {name!r}: not a canonical kcompat layer class name")

    def wrap(fn):
        _add(LAYERS, "layer class", class_names, fn)
        return fn
    return wrap


def op_exporter(*names: str):
    """Register an exporter for Keras 3 op node classes (``module: keras.src.ops.*``)."""
    for name in names:
        if name not in OP_REGISTRY:
            raise RuntimeError(f"ONNX exporter for op {name!r}: not a kcompat op node class")

    def wrap(fn):
        _add(OPS, "op node", names, fn)
        return fn
    return wrap


def activation_exporter(*names: str):
    """Register an exporter for Keras activation names."""
    def wrap(fn):
        _add(ACTIVATIONS, "activation", names, fn)
        return fn
    return wrap


def exporter_for(layer, is_op: bool) -> Callable | None:
    """The exporter of a kcompat layer instance (op nodes and layers looked up in their own table)."""
    return (OPS if is_op else LAYERS).get(layer.class_name)
