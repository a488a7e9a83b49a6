"""ONNX quantization ops -> Keras 3 op nodes: DequantizeLinear ((x - zero_point) * scale), QuantizeLinear
(round half to even of x / scale, plus the zero point, clipped to the integer type; float8 through a
saturating cast), DynamicQuantizeLinear (uint8 with the scale and zero point computed from x's range),
MatMulInteger and QLinearMatMul. Scales and zero points are constants, per tensor, per axis or per block
(repeated to x's shape at import). Computation is float32, as onnx's reference.
Reference: onnx/reference/ops/op_dequantize_linear.py, op_quantize_linear.py, op_dynamic_quantize_linear.py,
op_qlinear_matmul.py. Contract: lowering.py.
"""
from __future__ import annotations

import numpy as np

from ..common import np_dtype
from .builder import Sym
from .lower_logic import CORE, cast
from .lowering import as_const, as_sym, lowering, refuse

RANGES = {np.dtype(np.uint8): (0, 255), np.dtype(np.int8): (-128, 127), np.dtype(np.uint16): (0, 65535),
          np.dtype(np.int16): (-32768, 32767)}
FLOAT8 = {"float8_e4m3fn", "float8_e5m2"}  # the float8 types Keras has


def _per(value, shape: tuple, axis: int, block_size: int) -> np.ndarray:
    """A scale / zero point broadcastable to x's ``shape`` (onnx's _quant_utils.reshape_input)."""
    v = np.asarray(value)
    if v.ndim == 0 or v.size == 1:
        return v.reshape(())
    axis %= len(shape)
    if not block_size:
        return v.reshape([v.size if i == axis else 1 for i in range(len(shape))])
    if None in shape:
        raise refuse("blocked quantization of a tensor of unknown shape")
    return np.take(np.repeat(v, block_size, axis=axis), range(shape[axis]), axis=axis)


def _float(b, x: Sym) -> Sym:
    return b.op("Cast", [x], module=CORE, inner=True, suffix="float", dtype="float32")


@lowering("DequantizeLinear")
def DequantizeLinear(b, x, x_scale, x_zero_point=None, axis=1, block_size=0, output_dtype=0):
    x = as_sym(b, x)
    shape = b.shape(x)
    scale = np.asarray(as_const(x_scale, "x_scale"))
    y = _float(b, x) if b.dtype(x) is not None and b.dtype(x).kind in "iu" else x
    if x_zero_point is not None and np.any(as_const(x_zero_point, "x_zero_point").astype(np.float32)):
        zero = _per(as_const(x_zero_point, "x_zero_point"), shape, axis, block_size).astype(np.float32)
        y = b.op("Subtract", [y, zero], inner=True, suffix="centered")
    y = b.op("Multiply", [y, _per(scale, shape, axis, block_size).astype(np.float32)], inner=True, suffix="scaled")
    out = np_dtype(output_dtype) if output_dtype else scale.dtype
    return b.claim(cast(b, y, out, inner=True) if out.name != "float32" else y)


def quantize(b, x: Sym, scale, zero, dtype: np.dtype, saturate: int = 1) -> Sym:
    """saturate(round(x / scale) + zero) as ``dtype`` (an integer type, or float8 through a saturating cast)."""
    y = b.op("Divide", [x, scale], inner=True, suffix="divided")
    if dtype.name in FLOAT8:
        return cast(b, y, dtype, inner=True, saturate=saturate)
    if dtype not in RANGES:
        raise refuse(f"quantizing to {dtype} (no Keras dtype)")
    y = b.op("Round", [y], inner=True, suffix="rounded", decimals=0)  # half to even, as np.rint
    if not isinstance(zero, np.ndarray) or np.any(zero):
        y = b.op("Add", [y, zero], inner=True, suffix="shifted")
    lo, hi = RANGES[dtype]
    y = b.op("Clip", [y], inner=True, suffix="saturated", x_min=float(lo), x_max=float(hi))
    return b.op("Cast", [y], module=CORE, inner=True, suffix="quantized", dtype=dtype.name)


@lowering("QuantizeLinear")
def QuantizeLinear(b, x, y_scale, y_zero_point=None, axis=1, block_size=0, output_dtype=0, precision=0,
                   saturate=1):
    x = as_sym(b, x)
    shape = b.shape(x)
    zero = y_zero_point
    dtype = b.dtype(zero) if zero is not None else (np_dtype(output_dtype) if output_dtype else np.dtype(np.uint8))
    if dtype is None:
        raise refuse("a zero point of unknown type")
    if isinstance(y_scale, Sym):  # computed per tensor (DynamicQuantizeLinear's function body)
        scale = y_scale
    else:
        scale = _per(as_const(y_scale, "y_scale"), shape, axis, block_size).astype(np.float32)
    if zero is None or dtype.name in FLOAT8:
        offset = np.float32(0)
    elif isinstance(zero, Sym):
        offset = _float(b, zero)
    else:
        offset = _per(zero, shape, axis, block_size).astype(np.float32)
    return b.claim(quantize(b, x, scale, offset, dtype, saturate))


@lowering("DynamicQuantizeLinear")
def DynamicQuantizeLinear(b, x):
    """uint8: scale = (max(0, max x) - min(0, min x)) / 255, zero point = saturate(round(-min(0, min x) / scale))."""
    x = as_sym(b, x)
    low = b.op("Minimum", [b.op("Min", [x], inner=True, suffix="min", axis=None, keepdims=False), 0.0], inner=True,
               suffix="low")
    high = b.op("Maximum", [b.op("Max", [x], inner=True, suffix="max", axis=None, keepdims=False), 0.0], inner=True,
                suffix="high")
    scale = b.op("Divide", [b.op("Subtract", [high, low], inner=True, suffix="range"), 255.0], inner=True,
                 suffix="scale")
    zero = b.op("Round", [b.op("Divide", [b.op("Negative", [low], inner=True, suffix="neg_low"), scale], inner=True,
                               suffix="zero_raw")], inner=True, suffix="zero_rounded", decimals=0)
    zero = b.op("Clip", [zero], inner=True, suffix="zero_clipped", x_min=0.0, x_max=255.0)
    y = quantize(b, x, scale, zero, np.dtype(np.uint8))
    return [b.claim(y), scale, b.op("Cast", [zero], module=CORE, inner=True, suffix="zero_point", dtype="uint8")]


def _dequantized(b, t, scale, zero, what: str):
    """(t - zero) * scale in float32: an array for a constant, op nodes for a computed t."""
    scale = np.asarray(as_const(scale, f"{what}_scale"), np.float32)
    zero = np.float32(0) if zero is None else np.asarray(as_const(zero, f"{what}_zero_point"), np.float32)
    if isinstance(t, np.ndarray):
        return (t.astype(np.float32) - zero) * scale
    y = b.op("Subtract", [_float(b, as_sym(b, t)), zero], inner=True, suffix=f"{what}_centered")
    return b.op("Multiply", [y, scale], inner=True, suffix=f"{what}_scaled")


@lowering("QLinearMatMul")
def QLinearMatMul(b, a, a_scale, a_zero_point, b_, b_scale, b_zero_point, y_scale, y_zero_point):
    if not isinstance(a, Sym) and not isinstance(b_, Sym):
        raise refuse("both operands constant")
    product = b.op("Matmul", [_dequantized(b, a, a_scale, a_zero_point, "a"),
                              _dequantized(b, b_, b_scale, b_zero_point, "b")], inner=True, suffix="matmul")
    zero = as_const(y_zero_point, "y_zero_point")
    return b.claim(quantize(b, product, np.asarray(as_const(y_scale, "y_scale"), np.float32),
                            zero.astype(np.float32), zero.dtype))


@lowering("MatMulInteger")
def MatMulInteger(b, A, B, a_zero_point=None, b_zero_point=None):
    """(A - a_zero_point) @ (B - b_zero_point) in int32."""
    def centered(t, zero, what):
        if isinstance(t, np.ndarray):
            return t.astype(np.int32) - (0 if zero is None else np.asarray(as_const(zero, what), np.int32))
        t = b.op("Cast", [as_sym(b, t)], module=CORE, inner=True, suffix=f"{what}_int32", dtype="int32")
        if zero is None or not np.any(as_const(zero, what)):
            return t
        return b.op("Subtract", [t, np.asarray(as_const(zero, what), np.int32)], inner=True, suffix=f"{what}_centered")
    if not isinstance(A, Sym) and not isinstance(B, Sym):
        raise refuse("both operands constant")
    return b.op("Matmul", [centered(A, a_zero_point, "a"), centered(B, b_zero_point, "b")])
