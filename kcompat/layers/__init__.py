"""NumPy layers, registered by Keras class name. Importing this package registers them all."""
from . import (activation_layers, activations, conv, core, embedding, merging, normalization,  # noqa: F401
               ops, ops_array, ops_index, pooling, preprocessing, regularization, reshaping, spatial)
from .base import OP_REGISTRY, REGISTRY, Layer, Weight, make_layer, register  # noqa: F401
