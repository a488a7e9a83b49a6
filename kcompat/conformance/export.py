"""``kcompat conformance export DIR``: write the portable conformance suite, with real Keras as the oracle.

One folder per case (``<LayerClass>_<NN>``, ``ops.<OpClass>_<NN>`` for a Keras 3 op node): a small model
exercising one layer class or op, built in real Keras from the maker table (cases.py; how each case is
built: variant.py, build.py), with seeded random weights (BatchNormalization statistics and variances
included), and::

    model.keras                  the model, Keras 3 format
    model.json, model.weights.h5 the same as to_json() + weights
    weights.npz                  every weight, "<layer>/<i>" in Keras order (no HDF5 reader needed)
    inputs.npz                   the inputs, by input layer name
    expected.npz                 every call node's output from real Keras (keys: verify/reference.py)
    masks.npz                    only in a case where some call gets a Keras mask: "<node key>/<i>", the
                                 mask that call gets with its input i (verify/candidate.py ``call_masks``)
    manifest.json                layer class, config, tolerance, graph (each call's arguments and masks),
                                 versions, sha256 of each file

and ``DIR/suite.json`` listing the cases. The suite is data: a candidate in any language can
read the folders, compute each node, and compare (``kcompat conformance run`` does it for Python
adapters and for one .npz of outputs per case). Each case folder is written whole or not at all.
Reference: onnx/backend/test/data (the same idea for ONNX operators).
"""
from __future__ import annotations

import hashlib
import json
import shutil
import warnings
import zlib
from pathlib import Path

import numpy as np

from ..errors import KcompatError
from ..spec import map_refs
from ..verify.metrics import ATOL, RTOL
from ..verify.progress import Progress
from ..verify.reference import ReferenceResult, flatten_outputs, node_key
from ..version import __version__
from .build import build_model
from .cases import OP_PREFIX, Variant, select
from .data import make_data
from .eager import eager_reference, write_eager_files
from .variant import BATCH, to_json

FORMAT = "kcompat-conformance/1"
CASE_FILES = ("model.keras", "model.json", "model.weights.h5", "weights.npz", "inputs.npz", "expected.npz")
OPTIONAL_FILES = ("masks.npz",)


def export_suite(folder: str, layers: list[str] | None = None, cases: int | None = None, seed: int = 0,
                 progress: Progress | None = None) -> list[str]:
    """Write the suite into ``folder`` (created if needed); returns the case names written."""
    from ..verify.keras import import_keras
    selected = select(layers, cases)
    out = Path(folder)
    if out.exists() and not out.is_dir():
        raise KcompatError(f"{folder}: exists and is not a folder")
    out.mkdir(parents=True, exist_ok=True)
    keras = import_keras()
    progress = progress or Progress()
    progress.phase(f"exporting {len(selected)} case(s) with Keras {keras.__version__}", len(selected))
    names = []
    for cls, i, variant in selected:
        name = f"{cls}_{i:02d}"
        write_case(keras, out, name, cls, variant, seed)
        names.append(name)
        progress.advance()
    versions = _versions(keras)
    index = {"format": FORMAT, "seed": seed, "batch": BATCH, **versions, "cases": names}
    (out / "suite.json").write_text(json.dumps(index, indent=2) + "\n")
    return names


def write_case(keras, out: Path, name: str, cls: str, variant: Variant, seed: int) -> None:
    """Build, run and write one case folder (into a temporary folder, renamed when complete)."""
    rng = np.random.default_rng([seed, zlib.crc32(name.encode())])
    tmp = out / f".{name}.partial"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    try:
        with warnings.catch_warnings():  # Keras's advice to a model's author (deprecated rms_scaling, ...)
            warnings.simplefilter("ignore")
            _write_files(keras, tmp, name, cls, variant, seed, rng)
        final = out / name
        shutil.rmtree(final, ignore_errors=True)
        tmp.rename(final)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _write_files(keras, tmp: Path, name: str, cls: str, variant: Variant, seed: int,
                 rng: np.random.Generator) -> None:
    from ..formats import load_spec
    from ..model import Model
    from ..verify.keras import KerasReference

    class_name = cls[len(OP_PREFIX):] if cls.startswith(OP_PREFIX) else cls
    kmodel, input_names, target = build_model(keras, name, class_name, variant)
    randomize_weights(kmodel, rng)
    data = [make_data(kind, (BATCH, *shape), rng) for shape, kind in zip(variant.shapes, variant.kinds())]
    if variant.build == "eager":
        layer = write_eager_files(keras, kmodel, tmp, class_name, variant.config, target)
    else:
        kmodel.save(tmp / "model.keras")
        (tmp / "model.json").write_text(kmodel.to_json())
        kmodel.save_weights(tmp / "model.weights.h5")
    model = Model(load_spec(str(tmp / "model.keras")))
    under_test = model.specs.get(target)
    if under_test is None or under_test.class_name != class_name or under_test.is_op != (variant.build == "op"):
        raise KcompatError(f"case {name}: Keras built no {class_name} {'op node' if variant.build == 'op' else 'layer'}"
                           f" '{target}' (found: {under_test.class_name if under_test else 'nothing'})")
    if variant.build == "eager":
        result = eager_reference(keras, layer, model, data, target)
    else:
        result = KerasReference(str(tmp / "model.keras")).run(model, data)
    np.savez(tmp / "inputs.npz", **dict(zip(input_names, data)))
    np.savez(tmp / "expected.npz", **flatten_outputs(result.outputs))
    weights = {f"{ls.name}/{j}": w for ls in model.spec.layers for j, w in enumerate(ls.weights or [])}
    np.savez(tmp / "weights.npz", **weights)
    masks = call_masks_of(model, result, data)
    files = list(CASE_FILES)
    if any(m is not None for ms in masks.values() for m in ms):
        np.savez(tmp / "masks.npz", **{f"{k}/{i}": m for k, ms in masks.items() for i, m in enumerate(ms)
                                       if m is not None})
        files.append("masks.npz")
    manifest = _manifest(keras, name, cls, variant, model, result, seed, target, masks)
    manifest["files"] = {f: sha256(tmp / f) for f in files}
    (tmp / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")


def call_masks_of(model, result: ReferenceResult, data: list[np.ndarray]) -> dict[str, list]:
    """Node key -> the Keras mask each of its inputs comes with (verify/candidate.py ``call_masks``), on the
    reference's outputs; the propagated masks are kcompat's (Model.node_masks), which the case checks."""
    from ..verify.candidate import call_masks
    values = {key: result.outputs[node_key(*key)] for key in model.order if node_key(*key) in result.outputs}
    node_masks = model.node_masks(data) if model.uses_masks else None
    return {node_key(*key): call_masks(model, key, values, node_masks) for key in model.order
            if model.specs[key[0]].nodes and all(d in values for d in model.node_deps(key))}


def randomize_weights(kmodel, rng: np.random.Generator) -> None:
    """Seeded non-trivial weights for a Keras model: variances and standard deviations positive, integer counts
    kept (also the layer tables' weights in tests/test_layers_misc.py)."""
    for layer in kmodel.layers:
        values = []
        for w in layer.weights:
            short = w.path.split("/")[-1]
            if "int" in str(w.dtype):
                values.append(np.asarray(w.numpy()) + 7)
            elif "variance" in short or "stddev" in short:
                values.append(rng.uniform(0.5, 1.5, w.shape).astype(np.float32))
            else:
                values.append(rng.normal(0.0, 0.5, w.shape).astype(np.float32))
        if values:
            layer.set_weights(values)
            if hasattr(layer, "finalize_state"):  # Normalization caches mean / variance until then
                layer.finalize_state()


def _manifest(keras, name: str, cls: str, variant: Variant, model, result, seed: int, target: str,
              masks: dict[str, list]) -> dict:
    layers = []
    for layer, k in model.order:
        ls = model.specs[layer]
        node = ls.nodes[k] if ls.nodes else None
        key = node_key(layer, k)
        counter = iter(range(1 << 30))
        slot = lambda ref: {"input": next(counter)}  # noqa: E731  (Node.refs order, as "inputs")
        call_masks = masks.get(key) or []
        layers.append({"key": key, "name": layer, "class_name": ls.class_name, "config": ls.config,
                       "module": ls.module, "node": k, "inputs": [_ref_key(model, r) for r in node.refs()] if node else [],
                       "args": map_refs(node.args, slot) if node else [],
                       "kwargs": map_refs(node.kwargs, slot) if node else {},
                       "masks": [None if m is None else f"{key}/{i}" for i, m in enumerate(call_masks)],
                       "weights": [f"{layer}/{j}" for j in range(len(ls.weights or []))]})
    op = cls.startswith(OP_PREFIX)
    tol = variant.tol
    return {"format": FORMAT, "case": name, "layer_class": cls[len(OP_PREFIX):] if op else cls,
            "kind": "op" if op else "layer", "layer": target, "config": model.specs[target].config,
            "variant": to_json(variant), "masks": any(m is not None for ms in masks.values() for m in ms),
            "atol": ATOL if tol is None else tol, "rtol": RTOL if tol is None else tol, "batch": BATCH,
            "seed": seed, **_versions(keras), "inputs": model.input_names,
            "outputs": [_ref_key(model, r) for r in model.spec.outputs], "params": result.params,
            "reference": result.name, "layers": layers}


def suite_class(manifest: dict) -> str:
    """The class a case exercises as ``--layers`` names it: ``Dense``, ``ops.Mean``."""
    return (OP_PREFIX if manifest.get("kind") == "op" else "") + str(manifest.get("layer_class"))


def _ref_key(model, ref) -> str:
    shape = model.shapes[(ref.layer, ref.node)]
    key = node_key(ref.layer, ref.node)
    return f"{key}[{ref.index}]" if isinstance(shape, list) else key


def _versions(keras) -> dict:
    import tensorflow as tf
    return {"keras_version": keras.__version__, "backend": keras.backend.backend(), "tensorflow_version": tf.__version__,
            "numpy_version": np.__version__, "kcompat_version": __version__}


def sha256(path: Path) -> str:
    """The file's SHA-256, hex."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()
