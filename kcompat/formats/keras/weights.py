"""Keras 3 positional weights (``model.weights.h5`` inside .keras, and ``.weights.h5``).

Layout (keras/src/saving/saving_lib.py ``_save_state``): for the model's ``layers``
(Functional: every layer including InputLayers; Sequential: without the InputLayer;
Keras op nodes are not layers), group ``layers/<snake_case(class)>[_N]/vars`` holds
datasets ``0..k-1``: trainable variables first, then non-trainable. A nested model is one of
those layers (``layers/functional``, ``layers/sequential_1``: its ``vars`` empty) and its own
layers are inside it, counted afresh: ``layers/functional/layers/dense/vars``. A layer made of
sub-layers (MultiHeadAttention) keeps theirs in ``layers/<...>/<attribute>/vars`` (``Layer.weight_groups``
/ ``Weight.group`` say which, in Keras weight order; ``Layer.saved_vars`` / ``from_saved_vars`` map a layer
whose file holds a variable twice: SpectralNormalization's own ``vars`` repeat the wrapped kernel).
"""
from __future__ import annotations

import os
from typing import Any

import h5py
import numpy as np

from ...errors import FormatError, ShapeError
from ...files import FileMap
from ...layers.base import snake_case  # noqa: F401 (formats/onnx/import_ uses it from here)
from ...nested import weightless_to_empty
from ...spec import ModelSpec, keras_layers, keras_order  # noqa: F401 (keras_order: formats/onnx/import_ uses it)
from .hdf5 import children, dataset, h5_errors, link_types, member, open_h5, weight_array

ALIGNED = {"alignment_threshold": 4096, "alignment_interval": 64}  # big datasets start on 64-byte boundaries


def saved_layers(spec: ModelSpec, prefix: str = "") -> list[tuple[str, Any]]:
    """(h5 group path, LayerSpec) for each layer Keras saves, in Keras's order (for a Functional model,
    the graph order Keras rebuilds, whatever order the config lists the layers in); a nested model is
    followed by its own layers, under its group."""
    return [(path, layer) for path, layer, _ in _saved(spec, prefix, "")]


def _saved(spec: ModelSpec, prefix: str, flat: str) -> list[tuple[str, Any, str]]:
    """saved_layers with each layer's name in kcompat's flat graph (``outer/inner``)."""
    used: dict[str, int] = {}
    out = []
    for layer in keras_layers(spec):
        cls = keras_class_name(layer).rpartition(">")[2]  # Keras 2 names a custom class "Package>Class"
        base = "functional" if layer.model is not None and cls == "Model" else snake_case(cls)
        if base in used:
            used[base] += 1
            key = f"{base}_{used[base]}"
        else:
            used[base] = 0
            key = base
        out.append((f"{prefix}layers/{key}", layer, flat + layer.name))
        if layer.model is not None:
            out += _saved(layer.model, f"{prefix}layers/{key}/", f"{flat}{layer.name}/")
    return out


def _layer_of(layer: Any) -> Any:
    """The kcompat layer for a LayerSpec, or None when its class or config is not supported (the model
    build reports that, against the model's own file)."""
    from ...errors import KcompatError
    from ...layers import make_layer
    if layer.model is not None:
        return None
    try:
        return make_layer(layer.class_name, layer.config, layer.name, layer.is_op, module=layer.module)
    except KcompatError:
        return None


def keras_class_name(layer: Any) -> str:
    """The Python class Keras saves a layer as (its .keras group name comes from it)."""
    built = _layer_of(layer)
    return (built.keras_class if built is not None else None) or layer.class_name


def read_positional_weights(source: Any, spec: ModelSpec, label: str, fmap: FileMap | None = None,
                            base: int = 0) -> None:
    """Fill ``spec.layers[*].weights`` (nested models' layers too) from a Keras 3 positional weights file (a
    path, or an open file object with ``fmap`` mapping the bytes it lies in from ``base``): arrays mapped,
    not read; links and non-datasets refused by name."""
    if isinstance(source, (str, os.PathLike)):
        fmap = FileMap(source, label)
    with open_h5(source, label) as f, h5_errors(label):
        links = link_types(f)
        for group_path, layer in saved_layers(spec):
            if layer.model is not None:
                layer.weights = None  # its weights are its layers'
                continue
            where = f"{label}: layer '{layer.name}' ({layer.class_name})"
            built = _layer_of(layer)
            groups = []
            for sub in (built.weight_groups() if built is not None else [""]):
                vars_path = f"{group_path}/{sub}/vars" if sub else f"{group_path}/vars"
                group = member(f, vars_path, where, links)
                if group is None:
                    if not sub and member(f, group_path, where, links) is not None:
                        groups.append([])
                        continue
                    raise FormatError(f"{label}: no weights group '{vars_path.removesuffix('/vars')}' for layer "
                                      f"'{layer.name}' ({layer.class_name})")
                if not isinstance(group, h5py.Group):
                    raise FormatError(f"{where}: '{vars_path}' must be a group of datasets 0, 1, ...")
                keys = [k for k in children(group) if k.isdigit()]  # named entries (IntegerLookup's
                # "idf_weights") are a layer's own state, not variables
                groups.append([weight_array(dataset(group, k, where, links), f"{where}: weight {k}", fmap, base)
                               for k in sorted(keys, key=int)])
            layer.weights = built.from_saved_vars(groups) if built is not None else [a for g in groups for a in g]
    weightless_to_empty(spec)


def write_positional_weights(model, target: Any) -> None:
    """Write a model's weights in Keras 3 positional layout to a path or file object, one array at a
    time (mapped source weights are read as they are written), big datasets aligned to 64 bytes."""
    spec = model.spec
    with h5py.File(target, "w", **ALIGNED) as f:
        f.create_group("layers")
        for group_path, layer, flat in _saved(spec, "", ""):
            own = f.create_group(f"{group_path}/vars")
            own.attrs["name"] = layer.name
            if layer.model is not None or flat not in model.layers:
                continue  # a nested model's weights are its layers'; its InputLayer is not in the graph
            for key, value in model.layers[flat].saved_state().items():  # IntegerLookup's idf_weights
                own.create_dataset(key, data=np.asarray(value))
            counts: dict[str, int] = {}
            built = model.layers[flat]
            for w, value in built.saved_vars(model.info[flat].weights, layer.weights or []):
                g = f.require_group(f"{group_path}/{w.group}/vars" if w.group else f"{group_path}/vars")
                if w.group and "name" not in g.attrs:
                    g.attrs["name"] = w.name.rpartition("/")[0]  # the sub-layer's name, as Keras writes it
                g.create_dataset(str(counts.get(w.group, 0)), data=np.asarray(value))
                counts[w.group] = counts.get(w.group, 0) + 1
            for sub in built.weight_groups():  # a weightless sub-layer's group (Pipeline's Rescaling), as Keras
                if sub and f"{group_path}/{sub}/vars" not in f:
                    f.create_group(f"{group_path}/{sub}/vars").attrs["name"] = sub.rpartition("/")[2]
        f.create_group("vars").attrs["name"] = spec.name


def check_weight_count(layer, expected: int, label: str) -> None:
    """Raise if a layer received the wrong number of weights."""
    got = len(layer.weights or [])
    if got != expected:
        raise ShapeError(f"{label}: layer '{layer.name}' ({layer.class_name}) expected {expected} weight(s); "
                         f"received {got}")
