"""A conformance case's model in real Keras, from its Variant (variant.py says what each field means).

``build_model`` returns the Keras model, its input names and the name of the node under test: the layer
named after its class (Keras's own default name, ``snake``), or the op node Keras made. A layer class
that keras.layers does not export (keras.applications' LayerScale...) is found where the kcompat class
says Keras defines it (``keras_modules``).
"""
from __future__ import annotations

import importlib
import operator
import re
from typing import Any

from ..errors import KcompatError
from ..spec import map_nested
from .data import dtype_of
from .variant import In, Sub, Variant


def build_model(keras, name: str, cls: str, variant: Variant):
    """(Keras model, input names, name of the node under test) for case ``name`` of class ``cls``."""
    several = len(variant.shapes) > 1
    input_names = [f"x{i}" for i in range(len(variant.shapes))] if several else ["x"]
    inputs = [keras.Input(shape, name=n, dtype=dtype_of(kind))
              for shape, n, kind in zip(variant.shapes, input_names, variant.kinds())]
    fronts = [variant.front_of(i) for i in range(len(inputs))]
    if variant.build == "sequential":
        if several:
            raise KcompatError(f"case {name}: a sequential case has one input. Received: shapes={variant.shapes}")
        layers = [_layer(keras, f, f"front_{snake(f.class_name)}") for f in fronts if f is not None]
        model = keras.Sequential([inputs[0], *layers, _layer(keras, Sub(cls, variant.config), snake(cls))],
                                 name=name)
        return model, input_names, snake(cls)
    xs = [x if f is None else _layer(keras, f, f"front{i}_{snake(f.class_name)}")(x)
          for i, (x, f) in enumerate(zip(inputs, fronts))]
    if variant.build == "op":
        target = _op(keras, variant.op)
        args, kwargs = _fill(variant.call, xs)
        y = _outputs(keras, target(*args, **kwargs))
        first = y[0] if isinstance(y, list) else y
        return keras.Model(inputs, y, name=name), input_names, first._keras_history.operation.name
    if variant.build == "eager":  # a stand-in of the same name; export.py puts the real layer in the files
        layer = keras.layers.Identity(name=snake(cls))
    else:
        layer = _layer(keras, Sub(cls, variant.config), snake(cls))
    if variant.call is None:
        y = layer(xs if several else xs[0])
    else:
        args, kwargs = _fill(variant.call, xs)
        y = layer(*args, **kwargs)
    return keras.Model(inputs, _outputs(keras, y), name=name), input_names, snake(cls)


def _outputs(keras, y):
    """The model's outputs: one tensor, or a flat list (an RNN over stacked cells returns nested states)."""
    return keras.tree.flatten(y) if isinstance(y, (list, tuple)) else y


def keras_layer(keras, cls: str, config: dict, name: str | None = None):
    """``<cls>(**config)`` from Keras, config values that are ``Sub`` made into layers first."""
    return _layer(keras, Sub(cls, config), name)


def _layer(keras, spec: Sub, name: str | None):
    config = {k: _resolve(keras, v) for k, v in spec.config.items()}
    if name is not None:
        config["name"] = name
    return layer_class(keras, spec.class_name)(**config)


def layer_class(keras, cls: str):
    """The Keras class ``cls``: keras.layers', else the module the kcompat class names (``keras_modules``)."""
    found = getattr(keras.layers, cls, None)
    if found is not None:
        return found
    from ..layers import REGISTRY
    for module in getattr(REGISTRY.get(cls), "keras_modules", ()):
        if module.startswith("keras."):
            return getattr(importlib.import_module(module), cls)
    raise KcompatError(f"Keras has no layer class {cls!r} (neither in keras.layers nor where kcompat's class says)")


def _resolve(keras, value: Any) -> Any:
    if isinstance(value, Sub):
        return _layer(keras, value, None)
    if isinstance(value, list):
        return [_resolve(keras, v) for v in value]
    return value


def _op(keras, name: str):
    if name == "getitem":
        return operator.getitem
    if name.startswith("keras.src."):
        module, _, cls = name.rpartition(".")
        return getattr(importlib.import_module(module), cls)()
    target = keras.ops
    for part in name.split("."):
        target = getattr(target, part)
    return target


def _fill(template: tuple, xs: list) -> tuple[list, dict]:
    """A call template's args and kwargs with the case's inputs in place of each ``In``."""
    args, kwargs = map_nested(tuple(template), In, lambda slot: xs[slot.index])
    return list(args), kwargs


def snake(cls: str) -> str:
    """Keras's own default layer name for a class (keras/src/utils/naming.py ``to_snake_case``)."""
    name = re.sub("(.)([A-Z][a-z]+)", r"\1_\2", cls)
    return re.sub("([a-z])([A-Z])", r"\1_\2", name).lower()
