"""NumPy layers, registered by Keras class name. Importing this package registers them all."""
from . import activations, core  # noqa: F401
from .base import OP_REGISTRY, REGISTRY, Layer, Weight, make_layer, register  # noqa: F401
