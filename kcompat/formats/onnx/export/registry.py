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
MASKS: dict[str, Callable] = {}  # layer class whose Keras mask is computed from values -> fn(ctx, layer, inputs, mask)
REFUSED: dict[str, str] = {}  # canonical layer class name -> why it has no exact ONNX form


def _add(table: dict, what: str, names: tuple, fn) -> None:
    def label(f):
        return f"{f.__module__}.{f.__name__}" if callable(f) else repr(f)
    for name in names:
        if name in table:
            raise RuntimeError(f"two ONNX exporters for {what} {name!r}: {label(table[name])} and {label(fn)}")
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


def mask_exporter(*class_names: str):
    """Register the ONNX form of a layer class's ``compute_mask`` where it computes on values (Embedding's
    ``x != 0``); every other class's compute_mask only passes masks along and runs on the ONNX names."""
    def wrap(fn):
        _add(MASKS, "mask of layer class", class_names, fn)
        return fn
    return wrap


def refuse_export(class_name: str, reason: str) -> None:
    """Record that a layer class has no exact ONNX form, and why (``kcompat convert`` names the reason)."""
    cls = REGISTRY.get(class_name)
    if cls is None or cls.class_name != class_name:
        raise RuntimeError(f"ONNX refusal for {class_name!r}: not a canonical kcompat layer class name")
    _add(REFUSED, "refused layer class", (class_name,), reason)


def exporter_for(layer, is_op: bool) -> Callable | None:
    """The exporter of a kcompat layer instance (op nodes and layers looked up in their own table)."""
    return (OPS if is_op else LAYERS).get(layer.class_name)
