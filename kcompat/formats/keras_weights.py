"""Keras 3 positional weights (``model.weights.h5`` inside .keras, and ``.weights.h5``).

Layout (keras/src/saving/saving_lib.py ``_save_state``): for the model's ``layers``
(Functional: every layer including InputLayers; Sequential: without the InputLayer;
Keras op nodes are not layers), group ``layers/<snake_case(class)>[_N]/vars`` holds
datasets ``0..k-1``: trainable variables first, then non-trainable. A layer whose weights belong
to sub-layers keeps each owner's variables under its saving path, ``layers/lstm/cell/vars``,
``layers/bidirectional/forward_layer/cell/vars``, ``layers/time_distributed/layer/vars``
(``_save_state`` recurses into attributes that are layers): ``Layer.weight_groups`` lists them.
"""
from __future__ import annotations

import os
import re
import signal
import time
from typing import Any

import h5py
import numpy as np

from ..errors import FormatError, KcompatError, ShapeError
from ..layers import make_layer
from ..spec import ModelSpec


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


PROBE_SECONDS = 30.0  # a corrupt HDF5 object header can make libhdf5 loop forever


def _walk_h5(path: str) -> None:
    """Touch every object header, attribute and small dataset of an HDF5 file."""
    def visit(_name, obj):
        for key in obj.attrs:
            obj.attrs[key]
        if isinstance(obj, h5py.Dataset) and obj.size * obj.dtype.itemsize < 64 << 20:
            obj[()]
    with h5py.File(path, "r") as f:
        visit("/", f)
        f.visititems(visit)


def probe_h5(path: str, label: str, seconds: float | None = None) -> None:
    """Read the whole file once in a forked child with a time limit, so a corrupt file that makes
    libhdf5 spin (it holds the GIL: no thread or signal handler can interrupt it) becomes a clean error.
    Errors in the child are left for the real read to report; only a hang is reported here."""
    seconds = PROBE_SECONDS if seconds is None else seconds
    if not hasattr(os, "fork") or seconds <= 0:
        return
    pid = os.fork()
    if pid == 0:  # child: never returns into the caller's code
        code = 1
        try:
            _walk_h5(path)
            code = 0
        finally:
            os._exit(code)
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        done, _ = os.waitpid(pid, os.WNOHANG)
        if done:
            return
        time.sleep(0.005)
    os.kill(pid, signal.SIGKILL)
    os.waitpid(pid, 0)
    raise FormatError(f"{label}: reading the HDF5 structure did not finish in {seconds:g} s; the file is corrupt "
                      f"(libhdf5 loops on some damaged object headers)")


def open_h5(source: Any, label: str) -> h5py.File:
    """Open an HDF5 file (path or file-like) read-only with a clear error; paths are probed for hangs first."""
    if isinstance(source, (str, os.PathLike)):
        probe_h5(str(source), label)
    try:
        return h5py.File(source, "r")
    except (OSError, ValueError) as e:
        raise FormatError(f"{label}: not a valid HDF5 file (truncated or corrupt): {str(e).splitlines()[0]}") from None


def weight_owners(layer) -> list[str]:
    """Saving paths, relative to the layer's group, of the objects owning its weights ([""]: itself)."""
    try:
        return make_layer(layer.class_name, layer.config, layer.name, layer.is_op).weight_groups()
    except KcompatError:  # an unknown or bad layer is reported when the model is built
        return [""]


def read_positional_weights(source: Any, spec: ModelSpec, label: str) -> None:
    """Fill ``spec.layers[*].weights`` from a Keras 3 positional weights file."""
    with open_h5(source, label) as f:
        for group_path, layer in saved_layers(spec):
            layer.weights = []
            for owner in weight_owners(layer):
                vars_path = "/".join(p for p in (group_path, owner, "vars") if p)
                if vars_path not in f:
                    if not owner and group_path in f:
                        continue
                    raise FormatError(f"{label}: no weights group '{vars_path.rsplit('/', 1)[0]}' for layer "
                                      f"'{layer.name}' ({layer.class_name})")
                group = f[vars_path]
                try:
                    keys = sorted(group.keys(), key=int)
                    layer.weights += [np.asarray(group[k][()]) for k in keys]
                except (ValueError, OSError, KeyError) as e:
                    raise FormatError(f"{label}: weights of layer '{layer.name}' are unreadable: {e}") from None
        for layer in spec.layers:
            if layer.weights is None:
                layer.weights = []


def write_positional_weights(model, target: Any) -> None:
    """Write a model's weights in Keras 3 positional layout to a path or file-like object."""
    spec = model.spec
    with h5py.File(target, "w") as f:
        f.create_group("layers")
        for group_path, layer in saved_layers(spec):
            f.create_group(f"{group_path}/vars").attrs["name"] = layer.name
            count: dict[str, int] = {}
            for w, value in zip(model.info[layer.name].weights, layer.weights or []):
                g = f.require_group("/".join(p for p in (group_path, w.group, "vars") if p))  # owners without
                count[w.group] = count.get(w.group, -1) + 1  # weights need no group: Keras reads them as empty
                g.create_dataset(str(count[w.group]), data=np.asarray(value))
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
