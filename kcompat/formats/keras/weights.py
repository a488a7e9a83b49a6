"""Keras 3 positional weights (``model.weights.h5`` inside .keras, and ``.weights.h5``).

Layout (keras/src/saving/saving_lib.py ``_save_state``): for the model's ``layers``
(Functional: every layer including InputLayers; Sequential: without the InputLayer;
Keras op nodes are not layers), group ``layers/<snake_case(class)>[_N]/vars`` holds
datasets ``0..k-1``: trainable variables first, then non-trainable. A nested model is one of
those layers (``layers/functional``, ``layers/sequential_1``: its ``vars`` empty) and its own
layers are inside it, counted afresh: ``layers/functional/layers/dense/vars``.
"""
from __future__ import annotations

import re
from typing import Any

import h5py
import numpy as np

from ...errors import FormatError, ShapeError
from ...nested import weightless_to_empty
from ...spec import ModelSpec, keras_layers, keras_order  # noqa: F401 (keras_order: formats/onnx/import_ uses it)
from .hdf5 import open_h5


def snake_case(name: str) -> str:
    """keras.src.utils.naming.to_snake_case."""
    name = re.sub(r"\W+", "", name)
    name = re.sub("(.)([A-Z][a-z]+)", r"\1_\2", name)
    name = re.sub("([a-z])([A-Z])", r"\1_\2", name).lower()
    return name


def saved_layers(spec: ModelSpec, prefix: str = "") -> list[tuple[str, Any]]:
    """(h5 group path, LayerSpec) for each layer Keras saves, in Keras's order (for a Functional model,
    the graph order Keras rebuilds, whatever order the config lists the layers in); a nested model is
    followed by its own layers, under its group."""
    used: dict[str, int] = {}
    out = []
    for layer in keras_layers(spec):
        cls = layer.class_name.rpartition(">")[2]  # Keras 2 names a custom class "Package>Class"
        base = "functional" if layer.model is not None and cls == "Model" else snake_case(cls)
        if base in used:
            used[base] += 1
            key = f"{base}_{used[base]}"
        else:
            used[base] = 0
            key = base
        out.append((f"{prefix}layers/{key}", layer))
        if layer.model is not None:
            out += saved_layers(layer.model, f"{prefix}layers/{key}/")
    return out


def read_positional_weights(source: Any, spec: ModelSpec, label: str) -> None:
    """Fill ``spec.layers[*].weights`` (nested models' layers too) from a Keras 3 positional weights file."""
    with open_h5(source, label) as f:
        for group_path, layer in saved_layers(spec):
            if layer.model is not None:
                layer.weights = None  # its weights are its layers'
                continue
            vars_path = f"{group_path}/vars"
            if vars_path not in f:
                if group_path in f:
                    layer.weights = []
                    continue
                raise FormatError(f"{label}: no weights group '{group_path}' for layer '{layer.name}' "
                                  f"({layer.class_name})")
            group = f[vars_path]
            try:
                keys = sorted(group.keys(), key=int)
                layer.weights = [np.asarray(group[k][()]) for k in keys]
            except (ValueError, OSError, KeyError) as e:
                raise FormatError(f"{label}: weights of layer '{layer.name}' are unreadable: {e}") from None
    weightless_to_empty(spec)


def write_positional_weights(model, target: Any) -> None:
    """Write a model's weights in Keras 3 positional layout to a path or file-like object."""
    spec = model.spec
    with h5py.File(target, "w") as f:
        f.create_group("layers")
        for group_path, layer in saved_layers(spec):
            g = f.create_group(f"{group_path}/vars")
            g.attrs["name"] = layer.name
            for i, w in enumerate(layer.weights if layer.model is None and layer.weights else []):
                g.create_dataset(str(i), data=np.asarray(w))
        f.create_group("vars").attrs["name"] = spec.name


def check_weight_count(layer, expected: int, label: str) -> None:
    """Raise if a layer received the wrong number of weights."""
    got = len(layer.weights or [])
    if got != expected:
        raise ShapeError(f"{label}: layer '{layer.name}' ({layer.class_name}) expected {expected} weight(s); "
                         f"received {got}")
