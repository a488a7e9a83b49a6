"""Layer-by-layer verification of a candidate (kcompat, or the user's implementation) against a Reference
(Keras, ONNX Runtime, kcompat): isolated and chained errors per call node."""
