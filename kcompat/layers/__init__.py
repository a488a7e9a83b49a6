"""NumPy layers, registered by Keras class name. Importing this package registers them all."""
from . import (activation_layers, activations, conv, conv_lstm, core, embedding, merging, normalization,  # noqa: F401
               ops, pooling, preprocessing, recurrent, regularization, reshaping, wrappers)
from .base import OP_REGISTRY, REGISTRY, Layer, Weight, make_layer, register  # noqa: F401
