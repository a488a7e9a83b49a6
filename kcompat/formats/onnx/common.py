"""ONNX facts both directions share: opset range, int64 bounds, SELU's constants, dtype conversion."""
from __future__ import annotations

import numpy as np

MIN_OPSET = 13  # the oldest opset kcompat writes (ReduceSum's axes input, Squeeze / Unsqueeze axes inputs)
INT64_MAX, INT64_MIN = 2**63 - 1, -2**63  # "to the end" in Slice starts / ends
SELU_ALPHA = 1.6732632423543772848170429916717  # tf.nn.selu
SELU_SCALE = 1.0507009873554804934193349852946
BOOL_OUTPUTS = {"Equal", "Greater", "GreaterOrEqual", "Less", "LessOrEqual", "Not", "And", "Or", "Xor",
                "IsNaN", "IsInf"}  # ONNX ops whose output is bool whatever their inputs
INT64_OUTPUTS = {"ArgMax", "ArgMin", "Shape", "Size", "NonZero"}


def np_dtype(elem_type: int) -> np.dtype:
    """The NumPy dtype of an ONNX TensorProto element type (float32 for one NumPy has no form of)."""
    from onnx import helper
    try:
        return np.dtype(helper.tensor_dtype_to_np_dtype(elem_type))
    except (KeyError, TypeError):
        return np.dtype(np.float32)


def is_float(dtype: np.dtype) -> bool:
    """A floating-point dtype, the ml_dtypes ones included (bfloat16, float8_*, float4_*: kind 'V' to NumPy)."""
    return dtype.kind == "f" or dtype.name.startswith(("bfloat", "float"))
