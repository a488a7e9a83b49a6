"""Real Keras as the reference: load the ORIGINAL file in Keras, run every layer in one call.

The model is read by Keras itself (``keras.models.load_model`` / ``model_from_json`` +
``load_weights``), never from kcompat's re-write, so kcompat reader bugs show up as
mismatches. Only when Keras cannot read the file (an .onnx, a file Keras 3 refuses) does
kcompat write a temporary .keras for it, and the notes say so. Every layer's output
comes from ONE call of ``keras.Model(inputs, [the output of every call node])``; a layer's
call N is keyed ``name:N`` (reference.py).
Reference: keras/src/models/functional.py, keras/src/ops/function.py (``_nodes``).
"""
from __future__ import annotations

import json
import os
import sys
import tempfile
import warnings
from contextlib import contextmanager
from pathlib import Path

import numpy as np

from ..errors import KcompatError
from .reference import Reference, ReferenceResult, node_key


@contextmanager
def quiet_native_stderr():
    """Silence what TensorFlow's C++ side writes to fd 2 before its logging is set up
    (oneDNN / CUDA banners that TF_CPP_MIN_LOG_LEVEL does not reach). KCOMPAT_DEBUG=1 keeps it."""
    if os.environ.get("KCOMPAT_DEBUG"):
        yield
        return
    sys.stderr.flush()
    saved = os.dup(2)
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 2)
    try:
        yield
    finally:
        sys.stderr.flush()
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)


def import_keras():
    """Import Keras 3 with the TensorFlow backend (unless KERAS_BACKEND says otherwise)."""
    os.environ.setdefault("KERAS_BACKEND", "tensorflow")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    try:
        with quiet_native_stderr():
            import keras
            keras.ops.convert_to_numpy(keras.ops.zeros((1,)))  # first op: the second banner comes here
    except ImportError as e:
        raise KcompatError(f"the keras reference needs Keras 3 and TensorFlow (pip install 'kcompat[keras]'): {e}") from None
    return keras


class KerasReference(Reference):
    """Runs the original model file in real Keras.

    ``use_model_weights``: give Keras the kcompat model's weights (layer by layer, Keras
    order) instead of the file's. Default: only for an architecture-only ``.json``, where
    kcompat made seeded random weights.
    """

    name = "keras"

    def __init__(self, path: str, weights: str | None = None, use_model_weights: bool | None = None):
        self.path = str(path)
        if weights is None and Path(self.path).suffix.lower() == ".json":
            from ..formats.keras.json_file import weights_path_for  # kcompat's own rule: <stem>.weights.h5 beside
            beside = weights_path_for(self.path)
            weights = beside if Path(beside).is_file() else None
        self.weights = None if weights is None else str(weights)
        self.use_model_weights = (Path(self.path).suffix.lower() == ".json" and self.weights is None) \
            if use_model_weights is None else use_model_weights

    def run(self, model, inputs: list[np.ndarray]) -> ReferenceResult:
        keras = import_keras()
        notes: list[str] = []
        with warnings.catch_warnings():  # Keras's advice to the model's author ("Do not pass an input_shape")
            warnings.simplefilter("ignore")
            kmodel = self._load(keras, model, notes)
        low = sorted({(l.dtype_policy.name, l.compute_dtype) for l in kmodel._flatten_layers(include_self=False)
                      if getattr(l, "compute_dtype", "float32") not in ("float32", "float64")})
        for policy, dtype in low:
            notes.append(f"Keras computes layers with dtype policy '{policy}' in {dtype}; kcompat computes in "
                         f"float32, so differences of order 1e-3 are expected there (raise --atol / --rtol)")
        graph = getattr(kmodel, "_functional", None) or kmodel  # a Sequential runs through its Functional
        own = _own_nodes(graph)
        k_inputs = _match_inputs(graph, model)  # kcompat input name -> Keras input tensor
        fed = dict(zip(model.input_names, inputs))
        feed = [fed[name] for name in _names_in_order(k_inputs, graph.inputs)]
        probe_keys, probe_outputs, outputs, params, declared = [], [], {}, {}, {}
        for ls in model.spec.layers:
            name = ls.name
            if name in k_inputs:  # an input layer's output is the array fed
                outputs[name], params[name], declared[name] = fed[name], 0, tuple(k_inputs[name].shape)
                continue
            if name not in own:
                notes.append(f"layer '{name}' was not found in the Keras model; not compared")
                continue
            op, nodes = own[name]
            params[name] = int(op.count_params()) if hasattr(op, "count_params") and op.built else 0
            first = nodes[0].output_tensors
            declared[name] = tuple(first[0].shape) if len(first) == 1 else [tuple(t.shape) for t in first]
            for k, node in enumerate(nodes[:max(len(ls.nodes), 1)]):  # kcompat's call k is Keras's call k
                tensors = node.output_tensors
                probe_keys.append((node_key(name, k), len(tensors)))
                probe_outputs.extend(tensors)
        if probe_outputs:
            try:
                probe = keras.Model(inputs=graph.inputs, outputs=probe_outputs)
                values = probe(feed, training=False)  # the ONE Keras call
            except Exception as e:  # Keras itself cannot run the model (e.g. glu's wrong declared shape)
                raise KcompatError(f"keras reference: Keras could not run {self.path}: {_first_line(e, 300)}") from None
            values = [keras.ops.convert_to_numpy(v) for v in (values if isinstance(values, (list, tuple)) else [values])]
            i = 0
            for key, n in probe_keys:
                outputs[key] = values[i] if n == 1 else values[i:i + n]
                i += n
        label = f"keras {keras.__version__} ({keras.backend.backend()})"
        return ReferenceResult(label, outputs, params, declared, notes)

    def _load(self, keras, model, notes: list[str]):
        """Keras's own reading of the original file; kcompat's re-write only if Keras cannot read it."""
        ext = Path(self.path).suffix.lower()
        try:
            if ext == ".json":
                kmodel = _model_from_json(keras, Path(self.path).read_text())
            elif ext in (".keras", ".h5", ".hdf5"):
                kmodel = keras.models.load_model(self.path, compile=False)
            else:
                raise ValueError(f"Keras does not read {ext!r} files")
        except Exception as e:  # Keras raises many types; any of them means "Keras cannot read it"
            notes.append(f"Keras could not read {self.path} ({_first_line(e)}); the reference ran on kcompat's "
                         f"re-write as .keras, so kcompat reader bugs are not caught")
            try:
                return _load_rewrite(keras, model)
            except Exception as e2:
                raise KcompatError(f"keras reference: Keras could not read {self.path} ({_first_line(e)}) nor "
                                   f"kcompat's re-write of it ({_first_line(e2)}); try --reference onnxruntime"
                                   ) from None
        if self.use_model_weights:
            _set_weights(kmodel, model)
            notes.append("Keras was given kcompat's weights layer by layer (the file has none of its own)")
        elif self.weights is not None:  # --weights given: both sides load them over the file's own
            try:
                kmodel.load_weights(self.weights)
            except Exception as e:
                _set_weights(kmodel, model)
                notes.append(f"Keras could not load weights {self.weights} ({_first_line(e)}); Keras was given "
                             f"the weights kcompat read, layer by layer, so weight-reader bugs are not caught")
        return kmodel


def _model_from_json(keras, text: str):
    """Keras 3 JSON through ``model_from_json``; Keras 2 / tf.keras JSON through the legacy
    loader ``load_model`` uses for Keras 2 .h5 files. tf.keras's ``to_json`` adds a "module"
    to each layer, which sends it to Keras 3's strict path; the h5 config has none, so drop it."""
    data = json.loads(text)
    if not str(data.get("keras_version", "3")).startswith("2"):
        return keras.models.model_from_json(text)
    from keras.src.legacy.saving import saving_options, saving_utils
    for layer in data.get("config", {}).get("layers", []):
        for key in ("module", "registered_name", "build_config"):
            layer.pop(key, None)
    with saving_options.keras_option_scope(use_legacy_config=True):
        return saving_utils.model_from_config({"class_name": data["class_name"], "config": data["config"]})


def _load_rewrite(keras, model):
    from ..formats.keras.archive import write_keras  # as is: no renaming, so layer names still line up
    with tempfile.TemporaryDirectory(prefix="kcompat-verify-") as tmp:
        path = os.path.join(tmp, "model.keras")
        write_keras(model, path)
        return keras.models.load_model(path, compile=False)


def _own_nodes(graph) -> dict:
    """Operation name -> (operation, its call nodes inside this model, in call order)."""
    from keras.src.ops.function import make_node_key
    own = graph._nodes
    nodes = {}
    for op in graph.operations:
        mine = [node for i, node in enumerate(op._inbound_nodes) if make_node_key(op, i) in own]
        if mine:
            nodes[op.name] = (op, mine)
    return nodes


def _match_inputs(graph, model) -> dict:
    """kcompat input name -> Keras input tensor: by name, else by position (Keras 2 files
    without an InputLayer get a made-up input name on each side)."""
    names = [t._keras_history.operation.name for t in graph.inputs]
    if set(names) == set(model.input_names):
        return {n: t for n, t in zip(names, graph.inputs)}
    if len(names) != len(model.input_names):
        raise KcompatError(f"keras reference: Keras sees {len(names)} input(s) {names}; kcompat sees "
                           f"{len(model.input_names)} {model.input_names}")
    return dict(zip(model.input_names, graph.inputs))


def _names_in_order(k_inputs: dict, tensors: list) -> list[str]:
    by_id = {id(t): n for n, t in k_inputs.items()}
    return [by_id[id(t)] for t in tensors]


def _set_weights(kmodel, model) -> None:
    """Give each Keras layer the kcompat layer's weights (same name, Keras order)."""
    graph = getattr(kmodel, "_functional", None) or kmodel
    ops = {op.name: op for op in graph.operations}
    for ls in model.spec.layers:
        if not ls.weights:
            continue
        if ls.name not in ops:
            raise KcompatError(f"keras reference: layer '{ls.name}' is not in the Keras model; cannot give it weights")
        try:
            ops[ls.name].set_weights(ls.weights)
        except ValueError as e:
            raise KcompatError(f"keras reference: layer '{ls.name}': Keras refused kcompat's weights: "
                               f"{_first_line(e)}") from None


def _first_line(e: Exception, limit: int = 160) -> str:
    text = str(e).strip()
    text = text.rsplit("Exception encountered: ", 1)[-1]  # Keras nests causes; the last is the root one
    lines = text.splitlines()
    text = lines[0] if lines else ""
    return f"{type(e).__name__}: {text if len(text) <= limit else text[:limit] + '...'}"
