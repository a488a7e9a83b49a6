"""``kcompat conformance export DIR``: write the portable conformance suite, with real Keras as the oracle.

One folder per case (``<LayerClass>_<NN>``): a small model ``Input(s) -> one layer`` built in real
Keras from the maker table (cases.py), with seeded random weights (BatchNormalization statistics
and variances included), and::

    model.keras                  the model, Keras 3 format
    model.json, model.weights.h5 the same as to_json() + weights
    weights.npz                  every weight, "<layer>/<i>" in Keras order (no HDF5 reader needed)
    inputs.npz                   the inputs, by input layer name
    expected.npz                 every call node's output from real Keras (keys: verify/reference.py)
    manifest.json                layer class, config, tolerance, graph, versions, sha256 of each file

and ``DIR/suite.json`` listing the cases. The suite is data: a candidate in any language can
read the folders, compute each node, and compare (``kcompat conformance run`` does it for Python
adapters and for one .npz of outputs per case). Each case folder is written whole or not at all.
Reference: onnx/backend/test/data (the same idea for ONNX operators).
"""
from __future__ import annotations

import hashlib
import json
import re
import shutil
import warnings
import zlib
from pathlib import Path

import numpy as np

from ..errors import KcompatError
from ..verify.metrics import ATOL, RTOL
from ..verify.progress import Progress
from ..verify.reference import flatten_outputs, node_key
from ..version import __version__
from .cases import Variant, select

FORMAT = "kcompat-conformance/1"
BATCH = 3
CASE_FILES = ("model.keras", "model.json", "model.weights.h5", "weights.npz", "inputs.npz", "expected.npz")


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

    kmodel, input_names = _build(keras, name, cls, variant)
    _randomize(kmodel, rng)
    data = [_data(variant, shape, rng) for shape in variant.shapes]
    kmodel.save(tmp / "model.keras")
    (tmp / "model.json").write_text(kmodel.to_json())
    kmodel.save_weights(tmp / "model.weights.h5")
    model = Model(load_spec(str(tmp / "model.keras")))
    result = KerasReference(str(tmp / "model.keras")).run(model, data)
    np.savez(tmp / "inputs.npz", **dict(zip(input_names, data)))
    np.savez(tmp / "expected.npz", **flatten_outputs(result.outputs))
    weights = {f"{ls.name}/{j}": w for ls in model.spec.layers for j, w in enumerate(ls.weights or [])}
    np.savez(tmp / "weights.npz", **weights)
    manifest = _manifest(keras, name, cls, variant, model, result, seed)
    manifest["files"] = {f: sha256(tmp / f) for f in CASE_FILES}
    (tmp / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")


def _build(keras, name: str, cls: str, variant: Variant):
    dtype = "int32" if variant.data.startswith("int:") else "float32"
    several = len(variant.shapes) > 1
    input_names = [f"x{i}" for i in range(len(variant.shapes))] if several else ["x"]
    inputs = [keras.Input(shape, name=n, dtype=dtype) for shape, n in zip(variant.shapes, input_names)]
    layer = getattr(keras.layers, cls)(name=_snake(cls), **variant.config)
    y = layer(inputs if several else inputs[0])
    return keras.Model(inputs, y, name=name), input_names


def _randomize(kmodel, rng: np.random.Generator) -> None:
    """Seeded non-trivial weights: variances and standard deviations positive, integer counts kept."""
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


def _data(variant: Variant, shape: tuple, rng: np.random.Generator) -> np.ndarray:
    full = (BATCH, *shape)
    if variant.data.startswith("int:"):
        return rng.integers(0, int(variant.data[4:]), size=full).astype(np.int32)
    x = rng.standard_normal(full).astype(np.float32)
    if variant.data == "wide":
        x *= np.float32(4)
    if variant.data == "masked":  # whole time steps equal to mask_value (0.0)
        x[rng.random(full[:2]) < 0.4] = 0.0
    return x


def _manifest(keras, name: str, cls: str, variant: Variant, model, result, seed: int) -> dict:
    layers = []
    for layer, k in model.order:
        ls = model.specs[layer]
        refs = ls.nodes[k].refs() if ls.nodes else []
        layers.append({"key": node_key(layer, k), "name": layer, "class_name": ls.class_name, "config": ls.config,
                       "module": ls.module, "node": k, "inputs": [_ref_key(model, r) for r in refs],
                       "weights": [f"{layer}/{j}" for j in range(len(ls.weights or []))]})
    return {"format": FORMAT, "case": name, "layer_class": cls, "config": model.specs[_snake(cls)].config,
            "variant": {"config": variant.config, "shapes": [list(s) for s in variant.shapes], "data": variant.data},
            "atol": ATOL, "rtol": RTOL, "batch": BATCH, "seed": seed, **_versions(keras),
            "inputs": model.input_names, "outputs": [_ref_key(model, r) for r in model.spec.outputs],
            "params": result.params, "reference": result.name, "layers": layers}


def _ref_key(model, ref) -> str:
    shape = model.shapes[(ref.layer, ref.node)]
    key = node_key(ref.layer, ref.node)
    return f"{key}[{ref.index}]" if isinstance(shape, list) else key


def _versions(keras) -> dict:
    import tensorflow as tf
    return {"keras_version": keras.__version__, "backend": keras.backend.backend(), "tensorflow_version": tf.__version__,
            "numpy_version": np.__version__, "kcompat_version": __version__}


def _snake(cls: str) -> str:
    """Keras's own default layer name for a class (keras/src/utils/naming.py ``to_snake_case``)."""
    name = re.sub("(.)([A-Z][a-z]+)", r"\1_\2", cls)
    return re.sub("([a-z])([A-Z])", r"\1_\2", name).lower()


def sha256(path: Path) -> str:
    """The file's SHA-256, hex."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()
