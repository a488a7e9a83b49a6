"""ONNX both ways: export/ lifts a ModelSpec to ONNX nodes, import_/ lowers ONNX nodes to a ModelSpec."""
