"""Keras's dtype rule for op-node operands, as ONNX Casts: what ``int32 + 1`` or ``ops.exp(int)`` computes in.

NumPy 2's promotion with Python numbers weak (int32 + 1: int32, int32 + 0.5: float32), float64 only from
a float64 input; float ops turn integers and bools into float32. ``ctx.dtype`` follows dtypes through
the graph. Reference: keras/src/backend/common/dtypes.py (result_type), kcompat/layers/ops.py.
"""
from __future__ import annotations

import numpy as np
from onnx import TensorProto, helper

from ....layers.ops import as_array

BOOL, FLOAT, INT32 = TensorProto.BOOL, TensorProto.FLOAT, TensorProto.INT32


def kind(ctx, x: str) -> str:
    """'f' float, 'i' / 'u' integer, 'b' bool."""
    return np.dtype(ctx.dtype(x)).kind


def cast_to(ctx, x: str, dtype) -> str:
    dtype = np.dtype(dtype)
    return x if np.dtype(ctx.dtype(x)) == dtype else ctx.op("Cast", x, to=helper.np_dtype_to_tensor_dtype(dtype))


def as_float(ctx, x: str) -> str:
    """Keras's float ops: integers and bools become float32."""
    return x if kind(ctx, x) == "f" else ctx.op("Cast", x, to=FLOAT)


def as_bool(ctx, x: str) -> str:
    return x if kind(ctx, x) == "b" else ctx.op("Cast", x, to=BOOL)  # nonzero (and NaN) is True, as in TF


def promote(ctx, args, floating: bool = False) -> tuple[list[str], np.dtype]:
    """Call arguments as tensors of one dtype: NumPy 2's rule with Python numbers weak (int32 + 1: int32,
    int32 + 0.5: float32), float64 only from a float64 input, as kcompat's NumPy ops and Keras compute."""
    values = [a if isinstance(a, str) else as_array(a) for a in args]
    strong = [np.dtype(ctx.dtype(v)) if isinstance(v, str) else v.dtype for v in values
              if isinstance(v, (str, np.ndarray))]
    dtype = np.result_type(*strong, *[v for v in values if not isinstance(v, (str, np.ndarray))])
    if dtype == np.float64 and np.dtype(np.float64) not in strong:
        dtype = np.dtype(np.float32)
    if floating and dtype.kind != "f":
        dtype = np.dtype(np.float32)
    names = [cast_to(ctx, v, dtype) if isinstance(v, str) else ctx.const(v, "const", dtype=dtype) for v in values]
    return names, dtype


def const_like(ctx, value, like: str) -> str:
    """A scalar constant of ``like``'s dtype."""
    return ctx.const(value, "const", dtype=np.dtype(ctx.dtype(like)))
