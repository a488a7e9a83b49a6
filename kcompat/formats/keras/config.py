"""Keras model config (the JSON inside .keras / .h5 / to_json) <-> ModelSpec.

Reads both dialects: Keras 3 (inbound nodes as ``{"args", "kwargs"}`` with
``__keras_tensor__`` leaves; ``batch_shape``) and Keras 2 / tf.keras (inbound nodes as
``[[layer, node, index, kwargs], ...]``; ``batch_input_shape``). Writes Keras 3.

A nested model (a Sequential or Functional in the layer list, at any depth) becomes one LayerSpec
whose ``model`` is its parsed spec. Its call nodes are counted differently by each dialect, and both
are followed: Keras 3 numbers the calls of any layer from 0 in ``inbound_nodes``, but from 1 for a
nested Functional in ``input_layers`` / ``output_layers`` (its "pre-existing node");
Keras 2 / tf_keras numbers them from 1 everywhere for a nested Functional, and for a nested
Sequential whose config starts with an InputLayer (``_should_skip_first_node``).
Reference: keras/src/models/functional.py (functional_from_config / get_config / serialize_node),
keras/src/models/sequential.py, tf_keras/src/engine/functional.py (get_network_config).
"""
from __future__ import annotations

import copy
import json
from typing import Any

from ...errors import FormatError, UnsupportedError
from ...layers import REGISTRY
from ...masks import keras3_explicit_masks
from ...schema import check_depth, copy_json, dims, index, need, shown
from ...spec import LayerSpec, ModelSpec, Node, TensorRef, map_refs
from .dialect import CLASSES, from_keras2, to_keras3

KERAS_VERSION = "3.15.1"  # the Keras 3 dialect kcompat's writers follow (and claim in the files they write)
# Layer classes that carry Python code: refused by name, never deserialized.
CODE_LAYERS = {"Lambda", "TFOpLambda", "SlicingOpLambda", "TorchModuleWrapper", "TFSMLayer", "JaxLayer", "FlaxLayer"}
NESTED_MODELS = {"Sequential", "Functional", "Model"}  # model classes whose config kcompat reads as a graph
FUNCTIONAL = {"Functional", "Model"}
MODEL_KEYS = ("layers", "input_layers", "output_layers")  # what a nested model's spec holds (not its config)


def parse_json_text(text: str | bytes, source: str) -> dict:
    """Parse a model-config JSON document, with a clear error on invalid JSON."""
    if isinstance(text, bytes):
        try:
            text = text.decode("utf-8")
        except UnicodeDecodeError as e:
            raise FormatError(f"{source}: not UTF-8 JSON text ({e.reason} at byte {e.start})") from None
    if not text.strip():
        raise FormatError(f"{source}: file is empty; expected a Keras model config (JSON)")
    try:
        data = json.loads(text)
    except json.JSONDecodeError as e:
        raise FormatError(f"{source}: invalid JSON at line {e.lineno} column {e.colno}: {e.msg}") from None
    except RecursionError:
        raise FormatError(f"{source}: the JSON nests too deep to be a Keras model config") from None
    if not isinstance(data, dict) or "class_name" not in data:
        raise FormatError(f"{source}: expected a Keras model config with 'class_name'; received {type(data).__name__}")
    return data


def spec_from_config(data: dict, source: str, keras_version: str | None = None) -> ModelSpec:
    """Turn a model config dict (Sequential or Functional, Keras 2 or 3) into a ModelSpec."""
    check_depth(data, source)
    class_name = data.get("class_name")
    config = data.get("config")
    if not isinstance(config, dict) or not isinstance(config.get("layers"), list):
        raise FormatError(f"{source}: model config has no 'config.layers' list")
    need(config.get("name"), "a string", f"{source}: model config", "name", optional=True)
    keras_version = keras_version or need(data.get("keras_version"), "a string", source, "keras_version", True)
    if class_name not in NESTED_MODELS:
        raise UnsupportedError(
            f"{source}: model class {class_name!r} is not supported; expected 'Sequential' or 'Functional'")
    spec = _model(class_name, config, source, source, None)
    spec.keras_version = keras_version
    _refuse_code(spec, source)
    if str(keras_version or "").startswith("2"):
        from_keras2(spec.layers)  # what Keras 2 meant by words Keras 3 reads differently (dialect.py)
    return spec


def _model(class_name: str, config: dict, source: str, where: str, dialect: str | None,
           nested: bool = False) -> ModelSpec:
    """A Sequential or Functional config as a ModelSpec (``where``: how errors name it)."""
    if class_name == "Sequential":
        spec = _sequential(config, where, dialect, nested)
    else:
        spec = _functional(config, where, dialect)
    spec.source = source
    return spec


def _dialect(config: dict, inherited: str | None) -> str | None:
    """"keras2" (inbound nodes as lists) or "keras3" (as dicts), from the first layer that has a call."""
    for entry in config.get("layers") or []:
        nodes = entry.get("inbound_nodes") if isinstance(entry, dict) else None
        if isinstance(nodes, list) and nodes:
            return "keras2" if isinstance(nodes[0], list) else "keras3"
    return inherited


def _layer_base(entry: Any, source: str, number: int, dialect: str | None = None) -> LayerSpec:
    if not isinstance(entry, dict) or "class_name" not in entry or not isinstance(entry.get("config"), dict):
        raise FormatError(f"{source}: layer #{number} is not a Keras layer config (needs 'class_name' and 'config')")
    where = f"{source}: layer #{number}"
    class_name = need(entry["class_name"], "a string", where, "class_name")
    cfg = copy_json(entry["config"])
    name = entry.get("name") or cfg.get("name") or f"{class_name.lower()}_{number}"
    need(name, "a string", where, "name")
    where = f"{source}: layer '{name}' ({class_name})"
    need(cfg.setdefault("name", name), "a string", where, "config.name")
    _check_dtype(cfg.get("dtype"), where)
    layer = LayerSpec(name=name, class_name=class_name, config=cfg,
                      module=need(entry.get("module"), "a string", where, "module", optional=True),
                      build_config=need(entry.get("build_config"), "a dict", where, "build_config", optional=True),
                      registered_name=need(entry.get("registered_name"), "a string", where, "registered_name",
                                           optional=True))
    if "module" not in entry:  # a legacy .h5 names Keras's own applications classes without their module
        _applications_module(layer)
    if CLASSES.get(layer.class_name, ("", ""))[0] is None:  # Keras 2 only, no Keras 3 equivalent (dialect.py)
        raise UnsupportedError(f"{source}: layer '{name}' ({layer.class_name}) is not supported: "
                               f"{CLASSES[layer.class_name][1]}")
    if layer.class_name in NESTED_MODELS:
        if not isinstance(cfg.get("layers"), list):
            raise FormatError(f"{source}: nested model '{name}' ({layer.class_name}) has no 'config.layers' list")
        layer.model = _model(layer.class_name, cfg, source, f"{source}: nested model '{name}'", dialect, nested=True)
        layer.config = {k: v for k, v in cfg.items() if k not in MODEL_KEYS}
        return layer
    if not layer.is_op and isinstance(cfg.get("axis"), list) and len(cfg["axis"]) == 1 and \
            isinstance(cfg["axis"][0], int):
        cfg["axis"] = int(cfg["axis"][0])  # Keras 2 wrote axis=[3]; Keras 3 from_config wants 3 (its legacy
        # loader converts the same way: keras/src/legacy/saving/saving_utils.py model_from_config)
    return layer


def _check_dtype(dtype: Any, where: str) -> None:
    """A layer's ``dtype``: a name ("float32"), or a DTypePolicy ``{"config": {"name": "float32"}}``."""
    if isinstance(dtype, dict):
        policy = need(dtype.get("config", {}), "a dict", where, "dtype.config")
        need(policy.get("name"), "a string", where, "dtype.config.name", optional=True)
    else:
        need(dtype, "a string", where, "dtype", optional=True)


def _applications_module(layer: LayerSpec) -> None:
    """Give a class keras.applications defines (LayerScale, Custom>CustomScaleLayer) its Keras 3 name and module."""
    from ...layers import REGISTRY
    cls = REGISTRY.get(layer.class_name)
    if cls is not None and cls.keras_modules:
        layer.class_name, layer.module = cls.class_name, cls.keras_modules[0]


def _refuse_code(spec: ModelSpec, source: str, prefix: str = "") -> None:
    for layer in spec.layers:
        if layer.class_name in CODE_LAYERS:
            raise UnsupportedError(
                f"{source}: layer '{prefix}{layer.name}' ({layer.class_name}) holds Python code; kcompat never runs "
                f"code found in a model file. Replace it with built-in layers or keras.ops calls")
        if layer.model is not None:
            _refuse_code(layer.model, source, f"{prefix}{layer.name}/")
        _refuse_code_values(layer.config, f"{source}: layer '{prefix}{layer.name}' ({layer.class_name})")


def _refuse_code_values(obj: Any, where: str) -> None:
    """Serialized Python functions (``__lambda__``, bytecode) are refused by name."""
    if isinstance(obj, dict):
        if obj.get("class_name") in ("__lambda__", "function", "__function__") and isinstance(obj.get("config"), dict):
            raise UnsupportedError(f"{where} holds serialized Python code ({obj['class_name']}); kcompat never runs it")
        if obj.get("class_name") == "__lambda__" or "__bytecode__" in obj:
            raise UnsupportedError(f"{where} holds serialized Python code; kcompat never runs it")
        for v in obj.values():
            _refuse_code_values(v, where)
    elif isinstance(obj, list):
        for v in obj:
            _refuse_code_values(v, where)


def _input_shape_of(cfg: dict, where: str = "") -> list | None:
    for key in ("batch_shape", "batch_input_shape"):
        if cfg.get(key) is not None:
            return dims(cfg[key], where, key)
    for key in ("input_shape", "shape"):
        if cfg.get(key) is not None:
            return [None, *dims(cfg[key], where, key)]
    return None


def input_layer_spec(name: str, batch_shape: list | None, dtype: str = "float32") -> LayerSpec:
    """An InputLayer; ``batch_shape`` None only for a nested Sequential that its caller's tensor shapes."""
    return LayerSpec(name=name, class_name="InputLayer", module="keras.layers",
                     config={"batch_shape": None if batch_shape is None else list(batch_shape), "dtype": dtype,
                             "sparse": False, "ragged": False, "name": name, "optional": False})


def _sequential(config: dict, source: str, dialect: str | None = None, nested: bool = False) -> ModelSpec:
    entries = config["layers"]
    layers = [_layer_base(e, source, i, dialect) for i, e in enumerate(entries)]
    if not layers:
        raise FormatError(f"{source}: Sequential model has no layers")
    if layers[0].class_name != "InputLayer":
        where = f"{source}: layer '{layers[0].name}' ({layers[0].class_name})"
        shape = _input_shape_of(layers[0].config, where)
        if shape is None and layers[0].build_config and layers[0].build_config.get("input_shape") is not None:
            shape = dims(layers[0].build_config["input_shape"], where, "build_config.input_shape")
        if shape is None and config.get("build_input_shape") is not None:
            shape = dims(config["build_input_shape"], f"{source}: model config", "build_input_shape")
        if shape is None and not nested:
            raise FormatError(f"{source}: Sequential model has no input shape (no InputLayer, batch_input_shape "
                              f"or build_input_shape); kcompat needs one to compute shapes")
        layers.insert(0, input_layer_spec(f"{layers[0].name}_input", shape))
    _normalize_input(layers[0], source)
    for layer in layers[1:]:
        layer.config.pop("batch_input_shape", None)
        layer.config.pop("batch_shape", None)
    for prev, layer in zip(layers, layers[1:]):
        layer.nodes = [Node(args=[TensorRef(prev.name)])]
    return ModelSpec(name=config.get("name", "sequential"), layers=layers, inputs=[TensorRef(layers[0].name)],
                     outputs=[TensorRef(layers[-1].name)], sequential=True, source=source)


def _normalize_input(layer: LayerSpec, source: str) -> None:
    cfg = layer.config
    where = f"{source}: layer '{layer.name}' ({layer.class_name})"
    shape = _input_shape_of(cfg, where)
    for key in ("batch_input_shape", "input_shape", "shape"):
        cfg.pop(key, None)
    if shape is not None:
        cfg["batch_shape"] = shape
    if isinstance(cfg.get("dtype"), dict):  # a DTypePolicy: {"config": {"name": "float32"}}
        policy = need(cfg["dtype"].get("config", {}), "a dict", where, "dtype.config")
        cfg["dtype"] = policy.get("name", "float32")
    need(cfg.setdefault("dtype", "float32"), "a string", where, "dtype")


def _ref_list(value: Any, source: str, what: str) -> list[TensorRef]:
    """``input_layers`` / ``output_layers``: one [name, node, index] or a list of them."""
    if isinstance(value, dict):  # Keras 3 dict outputs: {"name": [layer, node, index]}, in insertion order
        value = list(value.values())
    if isinstance(value, list) and len(value) == 3 and isinstance(value[0], str):
        value = [value]
    if not isinstance(value, list) or not all(isinstance(v, list) and len(v) >= 3 for v in value):
        raise FormatError(f"{source}: '{what}' must be [[layer, node, index], ...]; received {shown(value)}")
    return [tensor_ref(v, f"{source}: model config", what) for v in value]


def tensor_ref(value: Any, where: str, key: str) -> TensorRef:
    """[layer name, node index, tensor index] (a Keras 2 inbound entry, a keras_history) as a TensorRef."""
    if not isinstance(value, (list, tuple)) or len(value) < 3:
        raise FormatError(f"{where}: '{key}' must be [layer name, node index, tensor index]. "
                          f"Received: {key}={shown(value)}")
    return TensorRef(need(value[0], "a string", where, f"{key}[0] (layer name)"),
                     index(value[1], where, f"{key}[1] (node index)"), index(value[2], where, f"{key}[2] (tensor index)"))


def _functional(config: dict, source: str, dialect: str | None = None) -> ModelSpec:
    dialect = _dialect(config, dialect)
    layers = []
    for i, entry in enumerate(config["layers"]):
        layer = _layer_base(entry, source, i, dialect)
        if layer.class_name == "InputLayer":
            _normalize_input(layer, source)
        where = f"{source}: layer '{layer.name}' ({layer.class_name})"
        nodes = need(entry.get("inbound_nodes"), "a list", where, "inbound_nodes", optional=True) or []
        layer.nodes = [_parse_node(n, where) for n in nodes]
        if "initial_state" in getattr(REGISTRY.get(layer.class_name), "call_params", ()):
            layer.nodes = [_states_as_kwarg(n, source, layer.name) for n in layer.nodes]
        layers.append(layer)
    names = [l.name for l in layers]
    if len(set(names)) != len(names):
        dup = sorted({n for n in names if names.count(n) > 1})
        raise FormatError(f"{source}: duplicate layer names {dup}")
    spec = ModelSpec(name=config.get("name", "model"), layers=layers,
                     inputs=_ref_list(config.get("input_layers"), source, "input_layers"),
                     outputs=_ref_list(config.get("output_layers"), source, "output_layers"), source=source)
    _count_calls_from_zero(spec, config["layers"], dialect, source)
    _check_refs(spec, source)
    return spec


def _counted_from_one(layer: LayerSpec, entry: dict, dialect: str | None) -> tuple[bool, bool]:
    """(in inbound nodes, in input/output layers): whether the file numbers this nested model's calls from 1."""
    if layer.model is None:
        return False, False
    if dialect == "keras2":  # tf_keras _should_skip_first_node
        first = (entry["config"]["layers"] or [{}])[0]
        skip = layer.class_name in FUNCTIONAL or (isinstance(first, dict) and first.get("class_name") == "InputLayer")
        return skip, skip
    return False, layer.class_name in FUNCTIONAL  # Keras 3: node_reindexing_map starts Functionals at 1


def _count_calls_from_zero(spec: ModelSpec, entries: list, dialect: str | None, source: str) -> None:
    """Renumber references to nested models' calls as kcompat counts them (from 0)."""
    in_nodes, in_ends = set(), set()
    for layer, entry in zip(spec.layers, entries):
        nodes, ends = _counted_from_one(layer, entry, dialect)
        if nodes:
            in_nodes.add(layer.name)
        if ends:
            in_ends.add(layer.name)
    if not in_nodes and not in_ends:
        return

    def shift(names: set):
        def fix(ref: TensorRef) -> TensorRef:
            if ref.layer not in names:
                return ref
            if ref.node < 1:
                raise FormatError(f"{source}: a reference to nested model '{ref.layer}' names call {ref.node}; this "
                                  f"file's Keras numbers a nested model's calls from 1")
            return TensorRef(ref.layer, ref.node - 1, ref.index)
        return fix
    fix_nodes, fix_ends = shift(in_nodes), shift(in_ends)
    for layer in spec.layers:
        for node in layer.nodes:
            node.args, node.kwargs = map_refs(node.args, fix_nodes), map_refs(node.kwargs, fix_nodes)
    spec.inputs = [fix_ends(r) for r in spec.inputs]
    spec.outputs = [fix_ends(r) for r in spec.outputs]


def _parse_node(node: Any, where: str) -> Node:
    if isinstance(node, dict):  # Keras 3
        args = need(node.get("args", []), "a list", where, "inbound_nodes[].args")
        kwargs = need(node.get("kwargs", {}), "a dict", where, "inbound_nodes[].kwargs")
        return Node(args=_k3_tensors(args, where), kwargs=_k3_tensors(kwargs, where))
    if isinstance(node, list) and node:  # Keras 2: [[name, node, index, kwargs], ...]
        refs, kwargs = [], {}
        for item in node:
            refs.append(tensor_ref(item, where, "inbound_nodes[][]"))
            if len(item) > 3 and isinstance(item[3], dict):
                kwargs.update(_k2_kwargs(item[3]))
        return Node(args=[refs[0] if len(refs) == 1 else refs], kwargs=kwargs)
    raise FormatError(f"{where}: bad inbound node {shown(node)}; expected a Keras 3 node "
                      f"{{'args': [...], 'kwargs': {{...}}}} or a Keras 2 list [[layer, node, index, kwargs], ...]")


def _states_as_kwarg(node: Node, source: str, layer_name: str) -> Node:
    """tf_keras calls an RNN on ``[sequences, *initial_state]`` (tf_keras/src/layers/rnn/rnn_utils.py
    standardize_args); Keras 3 on ``sequences, initial_state=[...]``. Its None ``constants`` go too."""
    kwargs = {k: v for k, v in node.kwargs.items() if not (k == "constants" and v is None)}
    if "constants" in kwargs:
        raise UnsupportedError(f"{source}: layer '{layer_name}': RNN constants (for custom cells) are not supported")
    first = node.args[0] if node.args else None
    if isinstance(first, list) and len(first) > 1 and kwargs.get("initial_state") is None:
        return Node(args=[first[0], *node.args[1:]], kwargs={**kwargs, "initial_state": list(first[1:])})
    return Node(args=node.args, kwargs=kwargs)


def _k2_kwargs(kwargs: dict) -> dict:
    out = {}
    for k, v in kwargs.items():
        if (isinstance(v, list) and len(v) == 3 and isinstance(v[0], str) and k != "name"
                and all(isinstance(i, int) and not isinstance(i, bool) for i in v[1:])):
            out[k] = TensorRef(v[0], index(v[1], k, "node index"), index(v[2], k, "tensor index"))
        else:
            out[k] = v
    return out


def _k3_tensors(obj: Any, where: str) -> Any:
    if isinstance(obj, dict):
        if obj.get("class_name") == "__keras_tensor__":
            config = need(obj.get("config"), "a dict", where, "__keras_tensor__.config")
            return tensor_ref(config.get("keras_history"), where, "keras_history")
        return {k: _k3_tensors(v, where) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_k3_tensors(v, where) for v in obj]
    return obj


def _check_refs(spec: ModelSpec, source: str) -> None:
    counts = {l.name: max(len(l.nodes), 1) for l in spec.layers}
    for layer in spec.layers:
        for node in layer.nodes:
            for ref in node.refs():
                if ref.layer not in counts:
                    raise FormatError(f"{source}: layer '{layer.name}' reads from unknown layer '{ref.layer}'")
                if ref.node >= counts[ref.layer]:
                    raise FormatError(f"{source}: layer '{layer.name}' reads node {ref.node} of '{ref.layer}', "
                                      f"which has {counts[ref.layer]} node(s)")
    for ref in spec.inputs + spec.outputs:
        if ref.layer not in counts:
            raise FormatError(f"{source}: model input/output names unknown layer '{ref.layer}'")
    check_acyclic(spec, source)


def check_acyclic(spec: ModelSpec, source: str) -> None:
    """FormatError naming a layer on a cycle (a layer that reads its own output, directly or not):
    Keras graphs are acyclic, and every walk over one (weights order, run order) assumes it."""
    by_name = {ls.name: ls for ls in spec.layers}
    state: dict[tuple, int] = {}  # (layer, node) -> 1 on the current path, 2 done

    def parents(key: tuple) -> list[tuple]:
        nodes = by_name[key[0]].nodes
        return [(r.layer, r.node) for r in nodes[key[1]].refs()] if key[1] < len(nodes) else []

    for start in ((ls.name, k) for ls in spec.layers for k in range(max(len(ls.nodes), 1))):
        if start in state:
            continue
        state[start] = 1
        stack = [(start, iter(parents(start)))]
        while stack:
            key, rest = stack[-1]
            nxt = next(rest, None)
            if nxt is None:
                state[key] = 2
                stack.pop()
            elif state.get(nxt) == 1:
                what = "reads its own output" if nxt == key else f"is on a cycle ({nxt[0]} -> ... -> {key[0]} -> {nxt[0]})"
                raise FormatError(f"{source}: layer '{nxt[0]}' {what}; a Keras model graph has no cycles")
            elif nxt not in state:
                state[nxt] = 1
                stack.append((nxt, iter(parents(nxt))))


# ---------------------------------------------------------------- writing (Keras 3 dialect)

def _tensor_json(ref: TensorRef, shapes: dict, prefix: str = "") -> dict:
    shape = shapes.get(TensorRef(prefix + ref.layer, ref.node, ref.index))
    return {"class_name": "__keras_tensor__",
            "config": {"shape": None if shape is None else list(shape), "dtype": "float32",
                       "keras_history": [ref.layer, ref.node, ref.index]}}


def layer_config_json(layer: LayerSpec) -> dict:
    """A layer's config as Keras 3 writes it: Keras 2 keys dropped or rewritten (dialect.to_keras3)."""
    return layer_entry_json(layer)["config"]


def layer_entry_json(layer: LayerSpec) -> dict:
    """A layer's ``module`` / ``class_name`` / ``config`` / ``registered_name`` as Keras 3 writes them."""
    entry = {"module": layer.module or ("keras.layers" if not layer.is_op else None), "class_name": layer.class_name,
             "config": copy.deepcopy(layer.config),
             "registered_name": layer.registered_name if layer.registered_name is not None
             else layer.class_name if layer.is_op else None}
    if ">" in layer.class_name:  # a Keras 2 file names a custom class by its registered name
        entry["class_name"] = layer.class_name.rpartition(">")[2]
        entry["registered_name"] = layer.class_name
    if layer.is_op:
        return entry
    cls = REGISTRY.get(layer.class_name)
    if cls is not None:  # what the layer class itself says (an RNN's time_major, a wrapper's nested configs)
        entry["config"] = cls.keras3_config(entry["config"])
    return to_keras3(entry)


def config_from_spec(spec: ModelSpec, shapes: dict | None = None, prefix: str = "") -> dict:
    """The Keras 3 model config for a spec. ``shapes`` maps TensorRef -> shape (for keras tensors), with
    a nested model's tensors named as kcompat's Model names them (``prefix`` + layer: ``outer/inner``)."""
    spec, shapes = keras3_explicit_masks(spec, dict(shapes or {}))  # a tf_keras RNN given initial states
    # keeps its mask in Keras 3
    entries = []
    for layer in spec.layers:
        if layer.model is not None:
            entry = _nested_entry(layer, shapes, f"{prefix}{layer.name}/")
        elif spec.sequential and layer.class_name == "InputLayer" and layer.config.get("batch_shape") is None:
            continue  # a nested Sequential that never had an input shape: Keras builds it on its caller's
        else:
            entry = layer_entry_json(layer)
        first = layer.nodes[0].refs() if layer.nodes else []
        if (layer.class_name != "InputLayer" and not layer.is_op and layer.model is None and first
                and len(first) == len(Node(args=layer.nodes[0].args[:1]).refs())):
            # build(input_shape) from the first argument; a layer called on several tensors (MultiHeadAttention:
            # query, value, key) is left to build when Keras calls it, as for a Keras 2 file
            in_shapes = [shapes.get(TensorRef(prefix + r.layer, r.node, r.index)) for r in first]
            if all(s is not None for s in in_shapes):
                arg0 = layer.nodes[0].args[0] if layer.nodes[0].args else None
                shp = [list(s) for s in in_shapes]
                entry["build_config"] = {"input_shape": shp if isinstance(arg0, (list, tuple)) else shp[0]}
        if not spec.sequential:
            entry["name"] = layer.name
            entry["inbound_nodes"] = [
                {"args": map_refs(n.args, lambda r: _tensor_json(r, shapes, prefix)),
                 "kwargs": map_refs(n.kwargs, lambda r: _tensor_json(r, shapes, prefix))} for n in layer.nodes]
        entries.append(entry)
    if spec.sequential:
        batch_shape = spec.layers[0].config.get("batch_shape")
        return {"module": "keras", "class_name": "Sequential",
                "config": {"name": spec.name, "trainable": True,
                           "dtype": {"module": "keras", "class_name": "DTypePolicy",
                                     "config": {"name": "float32"}, "registered_name": None},
                           "layers": entries, "build_input_shape": batch_shape},
                "registered_name": None,
                "build_config": {"input_shape": batch_shape}}
    functional = {ls.name for ls in spec.layers if ls.model is not None and ls.class_name in FUNCTIONAL}
    # Keras 3 numbers a nested Functional's calls from 1 in input_layers / output_layers (see the docstring)
    refs = lambda rs: [[r.layer, r.node + (r.layer in functional), r.index] for r in rs]  # noqa: E731
    inputs, outputs = refs(spec.inputs), refs(spec.outputs)
    # one tensor is written bare, as Keras does: a nested model returning [x] would hand its caller a list
    return {"module": "keras.src.models.functional", "class_name": "Functional",
            "config": {"name": spec.name, "trainable": True, "layers": entries,
                       "input_layers": inputs[0] if len(inputs) == 1 else inputs,
                       "output_layers": outputs[0] if len(outputs) == 1 else outputs},
            "registered_name": "Functional", "build_config": {"input_shape": None}}


def _nested_entry(layer: LayerSpec, shapes: dict, prefix: str) -> dict:
    """A nested model's entry: its own model config, with the name and trainable flag of its layer."""
    entry = config_from_spec(layer.model, shapes, prefix)
    entry["config"]["name"] = layer.name
    if layer.config.get("trainable") is False:
        entry["config"]["trainable"] = False
    if isinstance(layer.config.get("dtype"), (str, dict)) and layer.model.sequential:
        entry["config"]["dtype"] = to_keras3({"class_name": "Sequential",
                                              "config": {"dtype": layer.config["dtype"]}})["config"]["dtype"]
    return entry
