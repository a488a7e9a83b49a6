"""Legacy HDF5 model files (``model.save('x.h5')``) and weights files (``save_weights``).

Full model (keras/src/legacy/saving/legacy_h5_format.py, same layout in tf_keras):
root attrs ``model_config`` (JSON), ``keras_version``, ``backend``; group ``model_weights``
with attr ``layer_names`` (the model's ``layers``, in order) and one group per layer whose
attr ``weight_names`` lists dataset paths inside it, trainable weights first. Keras 3 names
are variable paths (``sequential/dense/kernel``), Keras 2 names end in ``:0``
(``dense/kernel:0``): they are followed, never guessed. A Keras 2 weights file is the
``model_weights`` group at the root; a Keras 3 ``.weights.h5`` is positional (weights.py).
A nested model is one of the model's layers: its group lists every weight of its layers, in Keras's
``trainable_weights + non_trainable_weights`` order (all trainable ones first, none in a frozen
model), which ``Model`` hands out to its layers (kcompat/nested.py ``legacy_weight_order``).
"""
from __future__ import annotations

import dataclasses
import json

import h5py
import numpy as np

from ...errors import FormatError, UnsupportedError
from ...files import FileMap, check_readable, writes_atomically
from ...model import Model
from ...nested import legacy_weight_order
from ...spec import ModelSpec, keras_layers
from .config import KERAS_VERSION, config_from_spec, parse_json_text, spec_from_config
from .hdf5 import dataset, h5_errors, link_types, member, open_h5, read_attr_list, string_attr, weight_array
from .weights import ALIGNED, read_positional_weights

HDF5_OBJECT_HEADER_LIMIT = 64512  # keras/src/legacy/saving/legacy_h5_format.py: the largest plain attribute



def _legacy_group(f: h5py.File, path: str) -> h5py.Group | None:
    """The group holding legacy per-layer weights: the root of a weights file, or ``model_weights``."""
    if "layer_names" in f.attrs or "layer_names0" in f.attrs:
        return f
    group = member(f, "model_weights", path)
    if isinstance(group, h5py.Group):  # a full model file used as weights, as Keras allows
        return group
    return None


def read_h5(path: str, weights: str | None = None) -> ModelSpec:
    """Read a legacy full-model ``.h5`` written by Keras 3, Keras 2 or tf.keras (``weights``: from that
    weights file instead of the model's own)."""
    with open_h5(path, path) as f, h5_errors(path):
        if "model_config" not in f.attrs:
            raise _no_architecture(f, path)
        config = parse_json_text(string_attr(f, "model_config", path), f"{path}:model_config")
        version = string_attr(f, "keras_version", path) if "keras_version" in f.attrs else None
        spec = spec_from_config(config, path, version)
        group = member(f, "model_weights", path)
        if not isinstance(group, h5py.Group):
            raise FormatError(f"{path}: model file has no 'model_weights' group")
        read_legacy_weights(group, spec, path, FileMap(path, path))
    return spec if weights is None else read_weights_file(weights, spec)


def _no_architecture(f: h5py.File, path: str) -> FormatError:
    """The error for an .h5 without ``model_config``: say so plainly when it is a weights file."""
    if _legacy_group(f, path) is not None:
        kind = "a Keras 2 / legacy weights file (save_weights to .h5)"
    elif "layers" in f:
        kind = "a Keras 3 weights file (.weights.h5)"
    else:
        return FormatError(f"{path}: HDF5 file has no 'model_config' attribute; not a Keras model file")
    return FormatError(f"{path}: {kind}: it holds weights only, no model architecture. Load the architecture "
                       f"from a .json file and give this file as its weights (--weights {path}, or "
                       f"kcompat.load('model.json', weights=...))")


def read_legacy_weights(group: h5py.Group, spec: ModelSpec, label: str, fmap: FileMap | None = None) -> None:
    """Fill ``spec`` weights from a legacy group: ``layer_names``, then each layer's ``weight_names`` (a nested
    model's: all of its layers' weights, in Keras's legacy order; arrays mapped from ``fmap``, the file the
    group is in, when given)."""
    names = set(read_attr_list(group, "layer_names", label))
    links = link_types(group.file)
    for layer in spec.layers:
        if layer.is_op or (layer.class_name == "InputLayer" and layer.name not in names):
            layer.weights = []
            continue
        where = f"{label}: layer '{layer.name}' ({layer.class_name})"
        layer_group = member(group, layer.name, where, links) if layer.name in names else None
        if not isinstance(layer_group, h5py.Group):
            listed = sorted(names)[:10]
            raise FormatError(f"{label}: no weights for layer '{layer.name}' ({layer.class_name}); "
                              f"the file holds layers {listed}")
        weights = []
        for wname in read_attr_list(layer_group, "weight_names", where):
            item = dataset(layer_group, wname, where, links)
            if item is None:
                raise FormatError(f"{label}: layer '{layer.name}' lists weight '{wname}' but the file has no "
                                  f"such dataset")
            weights.append(weight_array(item, f"{where}: weight '{wname}'", fmap))
        layer.weights = weights


def read_weights_file(path: str, spec: ModelSpec) -> ModelSpec:
    """Fill ``spec`` weights from a Keras 3 ``.weights.h5`` or a Keras 2 weights ``.h5`` (by content)."""
    check_readable(path)
    with open_h5(path, path) as f, h5_errors(path):
        group = _legacy_group(f, path)
        if group is not None:
            read_legacy_weights(group, spec, path, FileMap(path, path))
        elif "layers" not in f:
            raise FormatError(f"{path}: not a Keras weights file (no 'layers' group and no 'layer_names' "
                              f"attribute); received top-level keys {sorted(f.keys())[:5]}")
    if group is None:  # Keras 3 positional layout
        read_positional_weights(path, spec, path)
    weights = [ls.weights for ls in spec.layers]
    try:  # the architecture alone first: its errors name its own file
        for ls in spec.layers:
            ls.weights = None
        Model(spec)
    except UnsupportedError:
        return spec  # reported when the model is built
    finally:
        for ls, w in zip(spec.layers, weights):
            ls.weights = w
    Model(dataclasses.replace(spec, source=path))  # weight counts and shapes, errors naming the weights file
    return spec


@writes_atomically
def write_h5(model, path: str) -> None:
    """Write ``model`` as a legacy full-model ``.h5`` that Keras 3 ``load_model`` opens."""
    spec = model.spec
    config = json.dumps(config_from_spec(spec, model.tensor_shapes())).encode("utf-8")
    names = sum(len(ls.name) + 1 for ls in spec.layers)
    # An attribute over 64 KiB (a config of thousands of layers) needs HDF5's dense attribute storage, from
    # the 1.8 file format on; smaller models keep the oldest format, which every reader opens.
    big = {"libver": ("v108", "latest")} if max(len(config), names) > HDF5_OBJECT_HEADER_LIMIT else {}
    with h5py.File(path, "w", **ALIGNED, **big) as f:
        f.attrs["keras_version"] = KERAS_VERSION
        f.attrs["backend"] = "tensorflow"
        f.attrs["model_config"] = config
        write_legacy_weights(model, f.create_group("model_weights"))


def write_legacy_weights(model, group: h5py.Group) -> None:
    """Write every saved layer's weights as Keras's ``save_weights_to_hdf5_group`` does."""
    spec = model.spec
    layers = keras_layers(spec)
    group.attrs["layer_names"] = [layer.name.encode("utf-8") for layer in layers]
    group.attrs["backend"] = b"tensorflow"
    group.attrs["keras_version"] = KERAS_VERSION.encode("utf-8")
    for layer in sorted(layers, key=lambda l: l.name):
        slots = [(layer.name, i) for i in range(len(model.info[layer.name].weights))]
        if layer.model is not None:
            trainable = {n: [w.trainable for w in info.weights] for n, info in model.info.items()}
            slots = legacy_weight_order(model.expansion, layer.name, trainable)
        names = [_variable_path(model, name, model.info[name].weights[i].name) for name, i in slots]
        values = [model.specs[name].weights[i] for name, i in slots]
        _write_subset(group.create_group(layer.name), names, values)
    _write_subset(group.create_group("top_level_model_weights"), [], [])


def _variable_path(model, name: str, weight: str) -> str:
    """A weight's Keras 3 variable path: the layer's name under the names of the Sequential models it is in
    (``seq/dense/kernel``; a Functional adds none). Keras reads these files by position: the names are for people."""
    path = model.expansion.path[name]
    scopes = [model.spec.name] if model.spec.sequential else []
    for i in range(1, len(path)):
        if model.expansion.origin["/".join(path[:i])].model.sequential:
            scopes.append(path[i - 1])
    return "/".join([*scopes, path[-1], weight])


def _write_subset(group: h5py.Group, names: list[str], values: list[np.ndarray]) -> None:
    group.attrs["weight_names"] = np.asarray([n.encode("utf-8") for n in names]) if names else np.asarray([])
    for name, value in zip(names, values):  # one array at a time: a mapped source is read as it is written
        group.create_dataset(name, data=np.asarray(value))
