"""kcompat's own NumPy layers as the reference (``--reference kcompat``).

For checking a candidate (``--candidate`` / ``--candidate-outputs``) on a machine without
TensorFlow or ONNX Runtime: kcompat's layers are tested against real Keras row by row
(tests/test_layers_*.py), so they can stand in for it. Imports nothing heavy.
Reference: kcompat/model.py (``run_all``: every call node, in graph order).
"""
from __future__ import annotations

import numpy as np

from ..version import __version__
from .reference import Reference, ReferenceResult, node_key


def node_outputs(model, inputs) -> dict:
    """Every call node's output in kcompat, keyed as reference.py says (what ``run --all-layers`` writes)."""
    values = model.run_all(inputs)
    return {node_key(*key): values[key] for key in model.order}


class KcompatReference(Reference):
    """Runs the model in kcompat itself; every call node's output, params from kcompat's reading."""

    name = "kcompat"

    def run(self, model, inputs: list[np.ndarray]) -> ReferenceResult:
        outputs = node_outputs(model, inputs)
        params = {name: info.params for name, info in model.info.items()}
        return ReferenceResult(f"kcompat {__version__} (NumPy)", outputs, params, {},
                               ["the reference is kcompat's own NumPy layers (tested against Keras layer by "
                                "layer), not Keras itself"])
