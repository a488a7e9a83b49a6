"""Keras 3 ``.keras`` archives: config.json + metadata.json + model.weights.h5 in a zip.

Weights are stored by position (keras/src/saving/saving_lib.py): the model's layers
in order, each under ``layers/<snake_case class name>[_N]/vars/<i>``, trainable
variables first. Nothing is extracted to disk: the weights h5 is opened from memory.
"""
from __future__ import annotations

import io
import json
import zipfile

from ...errors import FormatError
from ...files import writes_atomically
from ...spec import ModelSpec
from .config import KERAS_VERSION, config_from_spec, parse_json_text, spec_from_config
from .legacy_h5 import read_weights_file
from .weights import read_positional_weights, saved_layers, write_positional_weights

MAX_MEMBER = 4 << 30  # refuse absurd members (zip bombs) before reading them


def read_keras(path: str, weights: str | None = None) -> ModelSpec:
    """Read a Keras 3 ``.keras`` file (architecture and weights; ``weights``: from that file instead)."""
    try:
        zf = zipfile.ZipFile(path)
    except zipfile.BadZipFile:
        raise FormatError(f"{path}: not a valid .keras file (not a zip archive, or truncated)") from None
    with zf:
        names = set(zf.namelist())
        if "config.json" not in names:
            raise FormatError(f"{path}: .keras archive has no config.json; received members {sorted(names)[:5]}")
        config = parse_json_text(_member(zf, "config.json", path), f"{path}:config.json")
        version = None
        if "metadata.json" in names:
            try:
                version = json.loads(_member(zf, "metadata.json", path)).get("keras_version")
            except (json.JSONDecodeError, AttributeError):
                version = None
        spec = spec_from_config(config, path, version)
        _read_vocabularies(zf, names, spec, path)
        if "model.weights.h5" in names:
            read_positional_weights(io.BytesIO(_member(zf, "model.weights.h5", path)), spec, f"{path}:model.weights.h5")
        else:
            raise FormatError(f"{path}: .keras archive has no model.weights.h5")
    return spec if weights is None else read_weights_file(weights, spec)


def _read_vocabularies(zf: zipfile.ZipFile, names: set, spec: ModelSpec, path: str) -> None:
    """An adapted lookup layer keeps its vocabulary in ``assets/<layer group>/vocabulary.txt`` (one token a
    line, special tokens first: keras IndexLookup.save_assets); it goes into the layer's config."""
    for group_path, layer in saved_layers(spec):
        member = f"assets/{group_path}/vocabulary.txt"
        if member in names and layer.config.get("vocabulary") is None:
            lines = _member(zf, member, path).decode("utf-8", errors="replace").splitlines()
            while lines and lines[-1] == "":
                lines.pop()
            try:
                layer.config["vocabulary"] = [int(t) for t in lines]
            except ValueError:
                layer.config["vocabulary"] = lines


def _member(zf: zipfile.ZipFile, name: str, path: str) -> bytes:
    info = zf.getinfo(name)
    if info.file_size > MAX_MEMBER:
        raise FormatError(f"{path}: member {name} claims {info.file_size} bytes; refusing to read it")
    try:
        return zf.read(name)
    except (zipfile.BadZipFile, OSError, EOFError) as e:
        raise FormatError(f"{path}: member {name} is corrupt: {e}") from None


@writes_atomically
def write_keras(model, path: str) -> None:
    """Write ``model`` as a Keras 3 ``.keras`` archive that ``keras.models.load_model`` opens."""
    spec = model.spec
    config = config_from_spec(spec, model.tensor_shapes())
    weights = io.BytesIO()
    write_positional_weights(model, weights)
    metadata = {"keras_version": spec.keras_version if (spec.keras_version or "").startswith("3") else KERAS_VERSION,
                "date_saved": "kcompat"}
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("metadata.json", json.dumps(metadata))
        zf.writestr("config.json", json.dumps(config))
        zf.writestr("model.weights.h5", weights.getvalue())
