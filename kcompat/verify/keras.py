"""Real Keras as the reference: load the ORIGINAL file in Keras, run every layer in one call.

The model is read by Keras itself (``keras.models.load_model`` / ``model_from_json`` +
``load_weights``), never from kcompat's re-write, so kcompat reader bugs show up as
mismatches. A file Keras 2 wrote that Keras 3 refuses (or would compute differently:
formats/keras/dialect.py keras2_meanings) runs in Keras 2 itself (tf_keras.py), and the notes say so.
Only when Keras cannot read the file otherwise (an .onnx, a Keras 3 file it refuses) does
kcompat write a temporary .keras for it, and the notes say so. Every layer's output
comes from ONE call of ``keras.Model(inputs, [the output of every call node])``; a layer's
call N is keyed ``name:N`` (reference.py).
A nested model's layers (kcompat's ``outer/inner``) live in the nested model's own graph, not the
outer one: the outer call also returns the tensors the nested model's first call was given, and one
call of a model over the nested model's own graph, on those arrays, gives its layers' outputs (at
any depth, the same way; a shared nested model's later calls are not probed). Keras computes them;
kcompat feeds nothing of its own.
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
from ..formats.keras.dialect import keras2_meanings
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
    who = "Keras"  # in notes
    keras2_fallback = True  # a Keras 2 file Keras 3 cannot read (or reads differently) runs in tf_keras

    def __init__(self, path: str, weights: str | None = None, use_model_weights: bool | None = None,
                 keras2: type | None = None):
        self.path = str(path)
        self.keras2 = keras2  # the Keras 2 reference class for the fallback (verify/tf_keras.py; run.py gives it)
        if weights is None and Path(self.path).suffix.lower() == ".json":
            from ..formats.keras.json_file import weights_path_for  # kcompat's own rule: <stem>.weights.h5 beside
            beside = weights_path_for(self.path)
            weights = beside if Path(beside).is_file() else None
        self.weights = None if weights is None else str(weights)
        self.use_model_weights = (Path(self.path).suffix.lower() == ".json" and self.weights is None) \
            if use_model_weights is None else use_model_weights

    def run(self, model, inputs: list[np.ndarray]) -> ReferenceResult:
        module = self.import_module()
        notes: list[str] = []
        changed = self.keras2_fallback and keras2_meanings(model.spec.layers)
        if changed:  # Keras 3 reads this Keras 2 file, but computes something else: Keras 2 is the oracle
            return self._keras2(model, inputs, changed[0])
        try:
            with warnings.catch_warnings():  # Keras's advice to the model's author ("Do not pass an input_shape")
                warnings.simplefilter("ignore")
                kmodel = self._load(module, model, notes)
        except _Keras2File as e:
            return self._keras2(model, inputs, f"Keras 3 could not read {self.path} ({e})")
        low = sorted({(l.dtype_policy.name, l.compute_dtype) for l in kmodel._flatten_layers(include_self=False)
                      if getattr(l, "compute_dtype", "float32") not in ("float32", "float64")})
        for policy, dtype in low:
            notes.append(f"{self.who} computes layers with dtype policy '{policy}' in {dtype}; kcompat computes in "
                         f"float32, so differences of order 1e-3 are expected there (raise --atol / --rtol)")
        graph = getattr(kmodel, "_functional", None) or kmodel  # a Sequential runs through its Functional
        k_inputs = _match_inputs(self.input_names(graph), graph.inputs, model, self)  # kcompat name -> tensor
        fed = dict(zip(model.input_names, inputs))
        feed = [fed[name] for name in _names_in_order(k_inputs, graph.inputs)]
        outputs, params, declared = {}, {}, {}
        for name, tensor in k_inputs.items():  # an input layer's output is the array fed
            outputs[name], params[name], declared[name] = fed[name], 0, tuple(tensor.shape)
        scopes: dict[tuple, list[str]] = {}  # nested model path -> the graph layers directly inside it
        for ls in model.graph.layers:
            if ls.name not in k_inputs:
                scopes.setdefault(model.expansion.path[ls.name][:-1], []).append(ls.name)
        self._probe(module, graph, feed, (), model, scopes, (outputs, params, declared), notes)
        return ReferenceResult(self.label(module), outputs, params, declared, notes)

    def _probe(self, module, graph, feed: list, scope: tuple, model, scopes: dict, results: tuple,
               notes: list[str]) -> None:
        """Run ``graph`` once on ``feed`` for the outputs of the layers of ``scopes[scope]``, and the inputs of
        each nested model's first call; then the same inside each nested model, on those inputs."""
        outputs, params, declared = results
        first = self.first_nodes(graph)
        probe_names, probe_outputs, nested = [], [], []
        for flat in scopes.get(scope, []):
            name = model.expansion.path[flat][-1]
            if name not in first:
                notes.append(f"layer '{flat}' was not found in the {self.who} model; not compared")
                continue
            op, calls, fed = first[name]
            tensors = calls[0]
            params[flat] = int(op.count_params()) if hasattr(op, "count_params") and op.built else 0
            declared[flat] = tuple(tensors[0].shape) if len(tensors) == 1 else [tuple(t.shape) for t in tensors]
            for k, call in enumerate(calls[:max(len(model.expansion.origin[flat].nodes), 1)]):  # call k is call k
                probe_names.append((node_key(flat, k), len(call)))
                probe_outputs.extend(call)
            if flat in model.expansion.children:  # its first call's inputs follow its calls' outputs
                nested.append((probe_names[-1][0], flat, op, len(fed)))
                probe_outputs.extend(fed)
        if not probe_outputs:
            return
        try:
            probe = module.Model(inputs=graph.inputs, outputs=probe_outputs)
            values = probe(feed, training=False)  # the ONE Keras call of this graph
        except Exception as e:  # Keras itself cannot run the model (e.g. glu's wrong declared shape)
            raise KcompatError(f"{self.name} reference: {self.who} could not run {self.path}: "
                               f"{first_line(e, 300)}") from None
        values = [np.asarray(v) for v in (values if isinstance(values, (list, tuple)) else [values])]
        i = 0
        for key, n in probe_names:
            outputs[key] = values[i] if n == 1 else values[i:i + n]
            i += n
            if nested and nested[0][0] == key:
                _, flat, op, n_fed = nested.pop(0)
                inner = getattr(op, "_functional", None) or op
                self._probe(module, inner, values[i:i + n_fed], model.expansion.path[flat], model, scopes,
                            results, notes)
                i += n_fed

    # -- what differs between Keras 3 and Keras 2 (tf_keras.py overrides these)
    def import_module(self):
        return import_keras()

    def label(self, keras) -> str:
        return f"keras {keras.__version__} ({keras.backend.backend()})"

    def first_nodes(self, graph) -> dict:
        """Operation name -> (operation, the output tensors of each of its calls inside this model in call
        order, the input tensors of its first call)."""
        import keras
        from keras.src.ops.function import make_node_key
        own = graph._nodes
        first = {}
        for op in graph.operations:
            mine = [node for i, node in enumerate(op._inbound_nodes) if make_node_key(op, i) in own]
            if mine:
                fed = [t for t in keras.tree.flatten(mine[0].arguments.args) if isinstance(t, keras.KerasTensor)]
                first[op.name] = (op, [list(node.output_tensors) for node in mine], fed)
        return first

    def input_names(self, graph) -> list[str]:
        return [t._keras_history.operation.name for t in graph.inputs]

    def operations(self, graph) -> dict:
        return {op.name: op for op in graph.operations}

    def _keras2(self, model, inputs, why: str) -> ReferenceResult:
        """Keras 2 (tf_keras) as the reference, ``why`` noted first; without tf_keras, Keras 3 as before."""
        try:
            if self.keras2 is None:
                raise KcompatError("no Keras 2 reference was given (make_reference gives verify/tf_keras.py's)")
            ref = self.keras2(self.path, self.weights, self.use_model_weights)
            ref.import_module()
        except KcompatError as e:
            result = _Keras3Only(self).run(model, inputs)
            result.notes.insert(0, f"{why}; Keras 2 could not be the reference: {e}")
            return result
        result = ref.run(model, inputs)
        result.notes.insert(0, f"{why}; the reference is Keras 2 (tf_keras), which wrote it")
        return result

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
            if str(model.spec.keras_version or "").startswith("2") and self.keras2_fallback:
                raise _Keras2File(first_line(e)) from None
            notes.append(f"Keras could not read {self.path} ({first_line(e)}); the reference ran on kcompat's "
                         f"re-write as .keras, so kcompat reader bugs are not caught")
            try:
                return _load_rewrite(keras, model)
            except Exception as e2:
                raise KcompatError(f"keras reference: Keras could not read {self.path} ({first_line(e)}) nor "
                                   f"kcompat's re-write of it ({first_line(e2)}); try --reference onnxruntime"
                                   ) from None
        return self._own_weights(kmodel, model, notes)

    def _own_weights(self, kmodel, model, notes: list[str]):
        """--weights over the file's own, or kcompat's random weights for an architecture-only file."""
        if self.use_model_weights:
            self.set_weights(kmodel, model)
            notes.append(f"{self.who} was given kcompat's weights layer by layer (the file has none of its own)")
        elif self.weights is not None:  # --weights given: both sides load them over the file's own
            try:
                kmodel.load_weights(self.weights)
            except Exception as e:
                self.set_weights(kmodel, model)
                notes.append(f"{self.who} could not load weights {self.weights} ({first_line(e)}); {self.who} was "
                             f"given the weights kcompat read, layer by layer, so weight-reader bugs are not caught")
        return kmodel

    def set_weights(self, kmodel, model, layers: list | None = None, where: str = "") -> None:
        """Give each Keras layer the kcompat layer's weights (same name, Keras order), inside nested models too."""
        graph = getattr(kmodel, "_functional", None) or kmodel
        ops = self.operations(graph)
        for ls in model.spec.layers if layers is None else layers:
            if not ls.weights and ls.model is None:
                continue
            if ls.name not in ops:
                raise KcompatError(f"{self.name} reference: layer '{where}{ls.name}' is not in the model; cannot "
                                   f"give it weights")
            if ls.model is not None:
                self.set_weights(ops[ls.name], model, ls.model.layers, f"{where}{ls.name}/")
                continue
            try:
                ops[ls.name].set_weights(ls.weights)
            except ValueError as e:
                raise KcompatError(f"{self.name} reference: layer '{where}{ls.name}': {self.who} refused kcompat's "
                                   f"weights: {first_line(e)}") from None


class _Keras2File(Exception):
    """Keras 3 could not read a file Keras 2 wrote (the message is Keras 3's reason)."""


class _Keras3Only(KerasReference):
    """Keras 3 even for a Keras 2 file (tf_keras is missing): the re-write path where Keras 3 cannot read it."""

    keras2_fallback = False

    def __init__(self, ref: KerasReference):
        super().__init__(ref.path, ref.weights, ref.use_model_weights)


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


def _match_inputs(names: list[str], tensors: list, model, ref: KerasReference) -> dict:
    """kcompat input name -> Keras input tensor: by name, else by position (Keras 2 files
    without an InputLayer get a made-up input name on each side)."""
    if set(names) == set(model.input_names):
        return {n: t for n, t in zip(names, tensors)}
    if len(names) != len(model.input_names):
        raise KcompatError(f"{ref.name} reference: {ref.who} sees {len(names)} input(s) {names}; kcompat sees "
                           f"{len(model.input_names)} {model.input_names}")
    return dict(zip(model.input_names, tensors))


def _names_in_order(k_inputs: dict, tensors: list) -> list[str]:
    by_id = {id(t): n for n, t in k_inputs.items()}
    return [by_id[id(t)] for t in tensors]


def first_line(e: Exception, limit: int = 160) -> str:
    text = str(e).strip()
    text = text.rsplit("Exception encountered: ", 1)[-1]  # Keras nests causes; the last is the root one
    lines = text.splitlines()
    text = lines[0] if lines else ""
    return f"{type(e).__name__}: {text if len(text) <= limit else text[:limit] + '...'}"
