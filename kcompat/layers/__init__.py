"""NumPy layers, registered by Keras class name. Importing this package registers them all."""
from . import (activation_layers, activations, conv, core, embedding, merging, normalization, ops, pooling,  # noqa: F401
               preprocessing, recurrent, regularization, reshaping, wrappers)
from .base import OP_REGISTRY, REGISTRY, Layer, Weight, make_layer, register  # noqa: F401
