"""``model.to_json()`` architecture files, with weights in a ``.weights.h5`` beside them.

Reads Keras 3 and Keras 2 / tf.keras JSON (config.py does both dialects); weights
come from an explicit file, else ``<stem>.weights.h5`` next to the JSON, else none.
Writes Keras 3: ``keras.models.model_from_json(text)`` then
``model.load_weights('<stem>.weights.h5')`` (positional layout) gives the model back.
"""
from __future__ import annotations

import json
from pathlib import Path

from ...errors import FormatError
from ...files import atomic_paths
from ...spec import ModelSpec
from .config import config_from_spec, parse_json_text, spec_from_config
from .legacy_h5 import read_weights_file
from .weights import write_positional_weights


def weights_path_for(path: str) -> str:
    """``model.json`` -> ``model.weights.h5`` (the file write_json puts beside it)."""
    p = Path(path)
    return str(p.with_name(p.stem + ".weights.h5"))


def read_json(path: str, weights: str | None = None) -> ModelSpec:
    """Read a to_json architecture; weights from ``weights``, else ``<stem>.weights.h5`` if present."""
    try:
        text = Path(path).read_bytes()
    except OSError as e:
        raise FormatError(f"{path}: cannot read: {e.strerror or e}") from None
    spec = spec_from_config(parse_json_text(text, path), path)
    if weights is None and Path(weights_path_for(path)).is_file():
        weights = weights_path_for(path)
    if weights is not None:
        read_weights_file(str(weights), spec)
    return spec


def write_json(model, path: str) -> list[str]:
    """Write ``path`` (Keras 3 to_json) and ``<stem>.weights.h5``; both appear or neither does."""
    path = str(path)
    weights = weights_path_for(path)
    text = json.dumps(config_from_spec(model.spec, model.tensor_shapes()))
    with atomic_paths(path, weights) as (tmp_json, tmp_weights):  # weights in place first, the JSON last
        Path(tmp_json).write_text(text, encoding="utf-8")
        write_positional_weights(model, tmp_weights)
    return [path, weights]
