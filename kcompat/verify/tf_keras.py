"""Keras 2 (tf_keras) as the reference: the ORIGINAL Keras 2 file, read and run by Keras 2 itself.

For files tf.keras / tf_keras wrote that Keras 3 refuses (``groups`` on DepthwiseConv2D, names with
'/') or reads with another meaning (hard_sigmoid): keras.py picks this reference for them, or
``--reference tf_keras`` asks for it. Everything but reading the file and walking the graph is
keras.py's KerasReference (one multi-output call, the same notes). Graph walk after
tf_keras/src/engine/functional.py (``_network_nodes``, ``_make_node_key``) and engine/node.py.
"""
from __future__ import annotations

import os
import warnings
from pathlib import Path

from ..errors import KcompatError
from .keras import KerasReference, first_line, quiet_native_stderr


class TfKerasReference(KerasReference):
    """Runs the original model file in tf_keras (Keras 2); needs ``pip install 'kcompat[keras2]'``."""

    name = "tf_keras"
    who = "Keras 2"
    keras2_fallback = False  # this IS Keras 2

    def import_module(self):
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
        try:
            with quiet_native_stderr(), warnings.catch_warnings():
                warnings.simplefilter("ignore")
                import tf_keras
        except ImportError as e:
            raise KcompatError(f"the tf_keras reference needs tf_keras and TensorFlow "
                               f"(pip install 'kcompat[keras2]'): {e}") from None
        return tf_keras

    def label(self, tf_keras) -> str:
        return f"tf_keras {tf_keras.__version__} (Keras 2)"

    def first_nodes(self, graph) -> dict:
        own = graph._network_nodes  # "<layer>_ib-<i>" for the calls that belong to this model
        first = {}
        for layer in graph.layers:
            mine = [node for i, node in enumerate(layer._inbound_nodes) if f"{layer.name}_ib-{i}" in own]
            if mine:
                first[layer.name] = (layer, [_flat(node.outputs) for node in mine], _flat(mine[0].input_tensors))
        return first

    def input_names(self, graph) -> list[str]:
        return [t._keras_history.layer.name for t in graph.inputs]

    def operations(self, graph) -> dict:
        return {layer.name: layer for layer in graph.layers}

    def _load(self, tf_keras, model, notes: list[str]):
        ext = Path(self.path).suffix.lower()
        try:
            if ext == ".json":
                kmodel = tf_keras.models.model_from_json(Path(self.path).read_text())
            elif ext in (".keras", ".h5", ".hdf5"):
                kmodel = tf_keras.models.load_model(self.path, compile=False)
            else:
                raise ValueError(f"Keras 2 does not read {ext!r} files")
        except Exception as e:  # tf_keras raises many types; any of them means "it cannot read it"
            raise KcompatError(f"tf_keras reference: Keras 2 could not read {self.path} ({first_line(e)}); "
                               f"try --reference keras or --reference onnxruntime") from None
        return self._own_weights(kmodel, model, notes)


def _flat(outputs) -> list:
    """A tf_keras node's outputs (one tensor, or a nest of them) as a list."""
    import tensorflow as tf
    return list(tf.nest.flatten(outputs))
