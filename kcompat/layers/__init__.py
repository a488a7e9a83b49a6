"""NumPy layers, registered by Keras class name. Importing this package registers them all."""
from . import (activation_layers, activations, adaptive_pooling, applications, attention, audio, augmentation, clahe,  # noqa: F401
               conv, core, einsum_dense, embedding, hashing, image_preprocessing, lookup, merging, multi_head_attention,
               normalization, ops, pooling, preprocessing, regularization, reshaping)
from .base import OP_REGISTRY, REGISTRY, Layer, Weight, make_layer, register  # noqa: F401
