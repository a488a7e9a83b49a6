"""Keras 3 positional weights (``model.weights.h5`` inside .keras, and ``.weights.h5``).

Layout (keras/src/saving/saving_lib.py ``_save_state``): for the model's ``layers``
(Functional: every layer including InputLayers; Sequential: without the InputLayer;
Keras op nodes are not layers), group ``layers/<snake_case(class)>[_N]/vars`` holds
datasets ``0..k-1``: trainable variables first, then non-trainable.
"""
from __future__ import annotations

import functools
import os
import re
from typing import Any

import h5py
import numpy as np

from ...errors import FormatError, ShapeError
from ...files import FileMap
from ...spec import ModelSpec
from .hdf5 import children, dataset, h5_errors, link_types, member, open_h5, weight_array

ALIGNED = {"alignment_threshold": 4096, "alignment_interval": 64}  # big datasets start on 64-byte boundaries


@functools.lru_cache(maxsize=1024)
def snake_case(name: str) -> str:
    """keras.src.utils.naming.to_snake_case."""
    name = re.sub(r"\W+", "", name)
    name = re.sub("(.)([A-Z][a-z]+)", r"\1_\2", name)
    name = re.sub("([a-z])([A-Z])", r"\1_\2", name).lower()
    return name


def saved_layers(spec: ModelSpec) -> list[tuple[str, Any]]:
    """(h5 group path, LayerSpec) for each layer Keras saves, in Keras's order (for a Functional
    model, the graph order Keras rebuilds, whatever order the config lists the layers in)."""
    used: dict[str, int] = {}
    out = []
    layers = spec.layers if spec.sequential else keras_order(spec.layers, spec.outputs)
    for layer in layers:
        if layer.is_op or (spec.sequential and layer.class_name == "InputLayer"):
            continue
        base = snake_case(layer.class_name)
        if base in used:
            used[base] += 1
            key = f"{base}_{used[base]}"
        else:
            used[base] = 0
            key = base
        out.append((f"layers/{key}", layer))
    return out


def read_positional_weights(source: Any, spec: ModelSpec, label: str, fmap: FileMap | None = None,
                            base: int = 0) -> None:
    """Fill ``spec.layers[*].weights`` from a Keras 3 positional weights file (a path, or an open file
    object with ``fmap`` mapping the bytes it lies in from ``base``): arrays mapped, not read."""
    if isinstance(source, (str, os.PathLike)):
        fmap = FileMap(source, label)
    with open_h5(source, label) as f, h5_errors(label):
        links = link_types(f)
        for group_path, layer in saved_layers(spec):
            where = f"{label}: layer '{layer.name}' ({layer.class_name})"
            group = member(f, f"{group_path}/vars", where, links)
            if group is None:
                if member(f, group_path, where, links) is not None:
                    layer.weights = []
                    continue
                raise FormatError(f"{label}: no weights group '{group_path}' for layer '{layer.name}' "
                                  f"({layer.class_name})")
            if not isinstance(group, h5py.Group):
                raise FormatError(f"{where}: '{group_path}/vars' must be a group of datasets 0, 1, ...")
            keys = children(group)
            if not all(k.isdigit() for k in keys):
                raise FormatError(f"{where}: weight names in '{group_path}/vars' must be 0, 1, ...; "
                                  f"received {sorted(keys)[:5]}")
            layer.weights = [weight_array(dataset(group, k, where, links), f"{where}: weight {k}", fmap, base)
                             for k in sorted(keys, key=int)]
        for layer in spec.layers:
            if layer.weights is None:
                layer.weights = []


def write_positional_weights(model, target: Any) -> None:
    """Write a model's weights in Keras 3 positional layout to a path or file object, one array at a
    time (mapped source weights are read as they are written), big datasets aligned to 64 bytes."""
    spec = model.spec
    with h5py.File(target, "w", **ALIGNED) as f:
        f.create_group("layers")
        for group_path, layer in saved_layers(spec):
            g = f.create_group(f"{group_path}/vars")
            g.attrs["name"] = layer.name
            for i, w in enumerate(layer.weights or []):
                g.create_dataset(str(i), data=np.asarray(w))
        f.create_group("vars").attrs["name"] = spec.name


def check_weight_count(layer, expected: int, label: str) -> None:
    """Raise if a layer received the wrong number of weights."""
    got = len(layer.weights or [])
    if got != expected:
        raise ShapeError(f"{label}: layer '{layer.name}' ({layer.class_name}) expected {expected} weight(s); "
                         f"received {got}")


def keras_order(layers: list, outputs: list) -> list:
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
