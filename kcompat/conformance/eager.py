"""Cases of a layer Keras cannot put in a model (``build="eager"``): Equalization, whose output spec is its
own input tensor, so Keras's graph has a cycle ("is part of a cycle") in a Functional or a Sequential.

The files still hold the layer: the model is built in Keras with an Identity stand-in of the same name,
saved, and the stand-in's entry in the saved config is replaced by the real layer's serialized form
(``keras.saving.serialize_keras_object``), its (empty) weights group renamed as Keras names the class's. The expected output is Keras's own eager call of the layer on
the case's input (``training=False``). Keras cannot load these files back (the same cycle); kcompat can.
Reference: keras/src/layers/preprocessing/image_preprocessing/equalization.py (``compute_output_spec``).
"""
from __future__ import annotations

import json
import zipfile
from pathlib import Path

import numpy as np

from ..verify.reference import ReferenceResult
from .build import keras_layer, snake


def write_eager_files(keras, kmodel, folder: Path, cls: str, config: dict, target: str):
    """Write model.keras / model.json / model.weights.h5 with layer ``target`` as ``cls(**config)``;
    returns that Keras layer (not built into any model)."""
    layer = keras_layer(keras, cls, config, target)
    entry = keras.saving.serialize_keras_object(layer)
    kmodel.save(folder / "model.keras")
    kmodel.save_weights(folder / "model.weights.h5")
    (folder / "model.json").write_text(json.dumps(_patched(json.loads(kmodel.to_json()), target, entry)))
    group = f"layers/{snake(cls)}"  # Keras 3 names a layer's weights group after its class
    _rename_group(folder / "model.weights.h5", "layers/identity", group)
    archive = folder / "model.keras"
    with zipfile.ZipFile(archive) as z:
        files = {n: z.read(n) for n in z.namelist()}
    config_json = _patched(json.loads(files["config.json"]), target, entry)
    files["config.json"] = json.dumps(config_json).encode()
    weights = folder / ".weights_in_archive.h5"
    weights.write_bytes(files["model.weights.h5"])
    _rename_group(weights, "layers/identity", group)
    files["model.weights.h5"] = weights.read_bytes()
    weights.unlink()
    with zipfile.ZipFile(archive, "w") as z:
        for name, data in files.items():
            z.writestr(name, data)
    return layer


def _rename_group(path: Path, old: str, new: str) -> None:
    import h5py
    with h5py.File(path, "r+") as f:
        f.move(old, new)


def _patched(model_config: dict, target: str, entry: dict) -> dict:
    """The model config with layer ``target``'s class, module and config replaced by ``entry``'s."""
    for layer in model_config["config"]["layers"]:
        if layer.get("name") == target:
            for field in ("module", "class_name", "config", "registered_name"):
                layer[field] = entry.get(field)
    return model_config


def eager_reference(keras, layer, model, data: list[np.ndarray], target: str) -> ReferenceResult:
    """Keras's eager call of ``layer`` on the case's one input, as a reference result for the model."""
    value = np.asarray(keras.ops.convert_to_numpy(layer(data[0], training=False)))
    name = model.input_names[0]
    return ReferenceResult(f"keras {keras.__version__} ({keras.backend.backend()}), {layer.__class__.__name__} "
                           f"called eagerly", {name: data[0], target: value}, {name: 0, target: 0},
                           {name: tuple(model.shapes[(name, 0)])}, [])
