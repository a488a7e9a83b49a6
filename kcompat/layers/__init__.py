"""NumPy layers, registered by Keras class name. Importing this package registers them all."""
from . import (activation_layers, activations, adaptive_pooling, applications, attention, audio,  # noqa: F401
               augmentation, categorical, clahe, conv, conv_lstm, core, einsum_dense, embedding, hashing,
               image_preprocessing, merging, models, multi_head_attention, normalization, ops, ops_array, ops_index,
               pipeline, pooling, preprocessing, recurrent, regularization, reshaping, spatial, wrappers)
from .base import (OP_REGISTRY, REGISTRY, Layer, Weight, load_entry_points, load_layer_file,  # noqa: F401
                   lookup, make_layer, missing_class_message, register)
