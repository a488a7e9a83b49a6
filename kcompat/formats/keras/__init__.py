"""Keras files: the model config (Keras 2 and 3 dialects), positional and legacy weights, .keras
archives, legacy .h5, to_json + weights. Never imports TensorFlow."""
