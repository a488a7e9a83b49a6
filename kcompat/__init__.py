"""kcompat: Keras layers in pure NumPy, Keras/ONNX file formats, and layer-by-layer verification."""
from __future__ import annotations

import gc
from contextlib import contextmanager

from .errors import ConfigError, FormatError, KcompatError, ShapeError, UnsupportedError
from .model import Model
from .spec import LayerSpec, ModelSpec, TensorRef
from .version import __version__


def load(path: str, weights: str | None = None, layout: str = "auto", inputs: str = "keep") -> Model:
    """Read a model file (.keras, .h5, .json [+ weights], .onnx) into a runnable Model.

    ``layout``: "auto" (an ONNX export of a channels-last Keras model comes back channels-last; an NCHW
    model stays as ONNX has it), "onnx" (as read), "channels_last" (an NCHW model rewritten channels-last,
    kcompat/layout.py); ``inputs``: "keep" or "channels_last" (rank-3+ inputs become (N, *spatial, C))."""
    from .formats import load_spec
    from .layout import apply_layout
    with _no_cycle_collection():
        return apply_layout(Model(load_spec(path, weights)), layout, inputs)


@contextmanager
def _no_cycle_collection():
    """Python's cycle collector paused while a model is read: a 20,000-node graph makes ~10^6 objects, none of
    them garbage cycles, and the collector's passes over them cost a fifth of the load; resumed after."""
    was = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was:
            gc.enable()


def save(model: Model, path: str, **options) -> list[str]:
    """Write a Model; the format follows the extension. Returns the files written."""
    from .formats import save as _save
    return _save(model, path, **options)


__all__ = ["__version__", "load", "save", "Model", "ModelSpec", "LayerSpec", "TensorRef", "KcompatError", "FormatError",
           "UnsupportedError", "ShapeError", "ConfigError"]
