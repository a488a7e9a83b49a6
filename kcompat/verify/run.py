"""verify_file / verify_model: run a candidate (kcompat by default) and a reference on the same inputs,
compare every call node isolated and chained (passes.py), and build the Report.

References by name: REFERENCES (name -> factory); a reference is also any ``Reference`` instance.
"""
from __future__ import annotations

import importlib
from typing import Any, Callable

import numpy as np

from ..errors import KcompatError, ShapeError, UnsupportedError
from ..layers.base import fmt_shape
from .candidate import AdapterCandidate, Candidate, KcompatCandidate, OutputsCandidate
from .metrics import ATOL, RTOL, first_mismatch, listed_shape, shape_matches
from .passes import run_passes
from .progress import Progress
from .reference import Reference, ReferenceResult, node_key
from .report import Report


def verify_file(path: str, weights: str | None = None, reference: str | Reference = "keras",
                inputs: Any = None, batch: int = 4, seed: int = 0,
                atol: float | None = None, rtol: float | None = None,
                candidate: Candidate | Callable | None = None, strict: bool = False,
                progress: Progress | None = None, layout: str = "auto", layout_inputs: str = "keep") -> Report:
    """Verify the model in ``path`` layer by layer against ``reference`` (a name in REFERENCES or a Reference).

    ``candidate``: None for kcompat's own layers, a Candidate (candidate.py), or a function
    ``f(layer, weights, inputs)`` (the adapter signature). ``inputs``: a list of arrays or a
    dict by input name; default the inputs stored in a ``--candidate-outputs`` file, else seeded
    standard normal float32 with batch ``batch``. A model without weights gets seeded random
    weights (``seed``), and the reference is given the same ones. ``atol`` / ``rtol`` None mean
    the float32 defaults of metrics.py (ATOL = 1e-5, RTOL = 1e-4). ``strict``: "not_implemented"
    and "missing" layers fail too. ``layout`` / ``layout_inputs``: as kcompat.load (kcompat/layout.py), so
    verify checks the model load, run and convert give. "keras" runs a Keras 2 file Keras 3 cannot read in
    Keras 2 (tf_keras) instead, with a note.
    """
    from .. import load
    model = load(path, weights, layout, layout_inputs)
    notes = []
    random_weights = not model.spec.has_weights
    if random_weights:
        model.init_weights(seed)
        notes.append(f"{path} has no weights: kcompat used seeded random weights (seed={seed})")
    ref = make_reference(reference, path, weights, random_weights)
    report = verify_model(model, ref, inputs, batch, seed, atol, rtol, candidate, strict, progress)
    report.notes[:0] = notes
    return report


def verify_model(model, reference: Reference, inputs: Any = None, batch: int = 4, seed: int = 0,
                 atol: float | None = None, rtol: float | None = None,
                 candidate: Candidate | Callable | None = None, strict: bool = False,
                 progress: Progress | None = None) -> Report:
    """Verify a candidate on an in-memory kcompat Model against a Reference instance."""
    atol, rtol = _tolerance("atol", atol, ATOL), _tolerance("rtol", rtol, RTOL)
    candidate = as_candidate(candidate)
    progress = progress or Progress()
    if inputs is None and isinstance(candidate, OutputsCandidate):
        inputs = candidate.inputs_for(model)
        if inputs is None:
            raise ShapeError(f"{candidate.path}: holds no model input(s) {model.input_names}; give the inputs the "
                             f"outputs were computed on (--input)")
    arrays, notes = (make_inputs(model, batch, seed) if inputs is None else (as_input_list(model, inputs), []))
    model.feed(arrays)  # the inputs must fit the model before any reference runs
    progress.phase(f"running the {getattr(reference, 'name', 'reference')} reference")
    result = reference.run(model, arrays)
    diffs, outputs, pass_notes, failing = run_passes(model, candidate, result, arrays, atol, rtol, strict, progress)
    notes += result.notes + _declared_shape_notes(model, result) + pass_notes + _unknown_key_notes(model, candidate)
    if isinstance(candidate, KcompatCandidate):
        _check_own_shapes(model, diffs, notes)
    notes += _bias_add_bug_notes(model, failing, result, diffs, atol, rtol)
    first = first_mismatch(diffs)
    ok = first is None and all(o.ok for o in outputs)
    return Report(ok, result.name, atol, rtol, first, diffs, notes, candidate.name, outputs, strict)


def _unknown_key_notes(model, candidate: Candidate) -> list[str]:
    """Entries of a --candidate-outputs file that name no call node of the model (a typo, another model)."""
    if not isinstance(candidate, OutputsCandidate):
        return []
    unknown = sorted(set(candidate.outputs) - {node_key(*key) for key in model.order})
    if not unknown:
        return []
    shown = ", ".join(repr(k) for k in unknown[:5]) + (f" and {len(unknown) - 5} more" if len(unknown) > 5 else "")
    return [f"{candidate.path}: not compared, no call node of the model has these keys: {shown} (keys are layer "
            f"names, 'name:N' for a layer's call N)"]


def as_candidate(candidate: Candidate | Callable | None) -> Candidate:
    """None -> kcompat's layers; a plain function -> an adapter; a Candidate as is."""
    if candidate is None:
        return KcompatCandidate()
    if isinstance(candidate, Candidate):
        return candidate
    if callable(candidate):
        return AdapterCandidate(candidate, getattr(candidate, "__name__", "candidate"))
    raise KcompatError(f"candidate must be a Candidate, a function f(layer, weights, inputs) or None. "
                       f"Received: candidate={candidate!r}")


def _keras(path: str, weights: str | None, random_weights: bool) -> Reference:
    from .keras import KerasReference
    from .tf_keras import TfKerasReference  # a Keras 2 file Keras 3 refuses runs in Keras 2, with a note
    return KerasReference(path, weights, use_model_weights=True if random_weights else None, keras2=TfKerasReference)


def _tf_keras(path: str, weights: str | None, random_weights: bool) -> Reference:
    from .tf_keras import TfKerasReference
    return TfKerasReference(path, weights, use_model_weights=True if random_weights else None)


def _onnxruntime(path: str, weights: str | None, random_weights: bool) -> Reference:
    try:
        module = importlib.import_module("kcompat.verify.onnxruntime")
    except ModuleNotFoundError as e:
        if e.name != "kcompat.verify.onnxruntime":
            raise
        raise UnsupportedError("the onnxruntime reference is not available in this kcompat") from None
    return module.OnnxRuntimeReference(path, weights)


def _kcompat(path: str, weights: str | None, random_weights: bool) -> Reference:
    from .kcompat_reference import KcompatReference
    return KcompatReference()


# name -> factory(path, weights, random_weights): add a reference by adding a row
REFERENCES: dict[str, Callable[[str, str | None, bool], Reference]] = {
    "keras": _keras, "tf_keras": _tf_keras, "onnxruntime": _onnxruntime, "kcompat": _kcompat}


def make_reference(reference: str | Reference, path: str, weights: str | None = None,
                   random_weights: bool = False) -> Reference:
    """A Reference from a name in REFERENCES, or the instance given.

    ``random_weights``: kcompat made up the weights, so the reference must be given the same ones.
    """
    if isinstance(reference, Reference):
        return reference
    factory = REFERENCES.get(reference) if isinstance(reference, str) else None
    if factory is None:
        names = ", ".join(repr(n) for n in REFERENCES)
        raise UnsupportedError(f"unknown reference; expected one of {names} or a Reference instance. "
                               f"Received: reference={reference!r}")
    return factory(path, weights, random_weights)


def make_inputs(model, batch: int = 4, seed: int = 0) -> tuple[list[np.ndarray], list[str]]:
    """Seeded inputs, one per model input: standard normal float32 (integers 0/1 for integer inputs)."""
    if isinstance(batch, bool) or not isinstance(batch, int) or batch < 1:
        raise KcompatError(f"batch must be a positive integer. Received: batch={batch!r}")
    rng = np.random.default_rng(seed)
    arrays, notes = [], []
    for name, shape in zip(model.input_names, model.input_shapes()):
        if any(d is None for d in shape[1:]):
            raise ShapeError(f"{model.spec.source}: input '{name}' has shape {fmt_shape(shape)} with an unknown dimension besides the "
                             f"batch; give the inputs explicitly (--input)")
        full = (batch if shape[0] is None else shape[0], *shape[1:])
        dtype = _input_dtype(model, name)
        if dtype.kind in "iu":
            arrays.append(rng.integers(0, 2, size=full).astype(dtype))
            notes.append(f"input '{name}' is {dtype}: random integers 0 and 1 were used; give real inputs (--input)")
        else:
            arrays.append(rng.standard_normal(full).astype(np.float32))
    return arrays, notes


def as_input_list(model, inputs: Any) -> list[np.ndarray]:
    """User inputs (one array, a list, or a dict by input name) as a list in the model's input order."""
    names = model.input_names
    if isinstance(inputs, dict):
        missing = [n for n in names if n not in inputs]
        if missing:
            raise ShapeError(f"missing input(s) {missing}; the model's inputs are {names}, received {sorted(inputs)}")
        inputs = [inputs[n] for n in names]
    elif not isinstance(inputs, (list, tuple)):
        inputs = [inputs]
    if len(inputs) != len(names):
        raise ShapeError(f"the model has {len(names)} input(s) {names}; received {len(inputs)}")
    arrays = [np.asarray(a) for a in inputs]
    return [a.astype(np.float32) if a.dtype.kind == "f" else a for a in arrays]


def _tolerance(name: str, value: float | None, default: float) -> float:
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value >= 0 or value == float("inf"):
        raise KcompatError(f"{name} must be a finite number >= 0. Received: {name}={value!r}")
    return float(value)


def _input_dtype(model, name: str) -> np.dtype:
    try:
        return np.dtype(model.spec.layer(name).config.get("dtype") or "float32")
    except TypeError:
        return np.dtype(np.float32)


def _declared_shape_notes(model, result: ReferenceResult) -> list[str]:
    """Notes for layers whose reference-declared shape is not the shape the reference computed."""
    notes, upstream = [], False
    for ls in model.spec.layers:  # topological order
        declared, actual = result.declared_shapes.get(ls.name), result.outputs.get(ls.name)
        if declared is None or actual is None:
            continue
        actual_shape = [list(np.shape(a)) for a in actual] if isinstance(actual, (list, tuple)) else list(np.shape(actual))
        if shape_matches(_as_list(declared), actual_shape):
            continue
        if "glu" in str(ls.config.get("activation", "")).lower():
            why = " (Keras 3 does not halve the last axis for glu in compute_output_shape; the real output is halved)"
        else:
            why = " (carried over from an upstream layer's wrong declared shape)" if upstream else ""
        upstream = True
        notes.append(f"{result.name} declares output shape {_fmt(declared)} for layer '{ls.name}' ({ls.class_name}) "
                     f"but computes {_fmt(actual_shape)}{why}; kcompat reports the real shape")
    return notes


def _bias_add_bug_notes(model, failing: dict, result: ReferenceResult, diffs, atol: float, rtol: float) -> list[str]:
    """Keras 3 on TensorFlow adds a channels_first conv's bias along the LAST axis when that axis has
    as many entries as there are channels (keras/src/backend/tensorflow/numpy.py ``add`` rewrites
    ``x + bias`` to ``tf.nn.bias_add`` in NHWC). Recognise that pattern in a mismatch and say so."""
    notes = []
    for d in diffs:
        ls = model.spec.layer(d.layer)
        cfg = ls.config
        if d.ok or not model.layers[d.layer].tf_bias_add or cfg.get("data_format") != "channels_first" \
                or not cfg.get("use_bias", True) or cfg.get("activation", "linear") not in ("linear", None):
            continue
        out, ref = failing.get(d.name), result.outputs.get(d.name)
        bias = (ls.weights or [None])[-1]
        if out is None or ref is None or bias is None or isinstance(out, list) or out.shape != np.shape(ref) \
                or out.shape[-1] != bias.shape[0]:
            continue
        channels_bias = bias.reshape((1, -1) + (1,) * (out.ndim - 2))
        as_keras = out - channels_bias + bias  # bias moved from the channel axis to the last axis
        if np.allclose(as_keras, ref, atol=atol, rtol=rtol):
            notes.append(f"layer '{d.name}' ({ls.class_name}): {result.name} adds the bias along the last axis, not "
                         f"the channel axis: a Keras 3 TensorFlow-backend bug for channels_first convolutions whose "
                         f"last axis has as many entries ({out.shape[-1]}) as there are filters (ops.add becomes "
                         f"tf.nn.bias_add in NHWC). kcompat computes the documented result; the model really "
                         f"differs when run in Keras on TensorFlow")
    return notes


def _check_own_shapes(model, diffs, notes: list[str]) -> None:
    """kcompat's declared shape (what summary prints) must fit what kcompat computes."""
    for d in diffs:
        if d.output_shape is None:
            continue
        declared = model.shapes[(d.layer, d.node)]
        if not shape_matches(_as_list(declared), d.output_shape):
            d.ok, d.status = False, "mismatch"
            d.problem = f"kcompat declares {_fmt(declared)} but computes {_fmt(d.output_shape)}"
            notes.append(f"layer '{d.name}': {d.problem} (a kcompat output_shape bug)")


def _as_list(shape: Any) -> Any:
    """A declared shape as a list, usable with shape_matches."""
    return listed_shape(shape)


def _fmt(shape: Any) -> str:
    if isinstance(shape, list) and shape and isinstance(shape[0], (list, tuple)):
        return "[" + ", ".join(_fmt(s) for s in shape) + "]"
    return fmt_shape(tuple(shape))
