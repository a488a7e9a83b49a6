"""Layer-by-layer verification of a kcompat Model against a Reference (Keras, ONNX Runtime, ...)."""
