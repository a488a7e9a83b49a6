"""ONNX dtype, comparison, logic and bitwise ops -> Keras 3 op nodes: Cast / CastLike, Less ... Equal, Not /
And / Or / Xor, BitwiseAnd ... BitShift, IsNaN / IsInf, Where, Mod. Contract: lowering.py.

dtypes: every float in the imported Keras model is float32 (kcompat reads float inputs as float32), so a
Cast between float types is the identity, except to float16, whose rounding is kept (a float16 round trip).
Integers and bools keep ONNX's dtype exactly. Reference: onnx/reference/ops/op_cast.py, op_mod.py,
op_bitshift.py, op_isinf.py.
"""
from __future__ import annotations

from typing import Callable

import numpy as np

from ..common import is_float, np_dtype
from .builder import Sym
from .lowering import as_const, as_sym, lowering, refuse

CORE = "keras.src.ops.core"  # the module of Keras's Cast op node


NARROW = {"float16", "bfloat16", "float8_e4m3fn", "float8_e5m2"}  # float types Keras has besides float32 / 64


def cast(b, x, dtype: np.dtype, inner: bool = False, saturate: int = 1) -> Sym:
    """``x`` as ONNX ``dtype`` in the Keras model (floats as float32); no node when it already is. A narrower float
    (float16, bfloat16, float8) rounds through it and back (float8 saturating first, as ONNX's ``saturate``)."""
    dtype = np.dtype(dtype)
    if isinstance(x, np.ndarray):  # a constant cast to a computed tensor's type (CastLike in function bodies)
        return _cast_constant(x, dtype, saturate)
    x = as_sym(b, x)
    src = b.dtype(x)
    if is_float(dtype):
        if dtype.name in NARROW and src != dtype:
            if dtype.name.startswith("float8") and saturate:
                top = float(_finfo(dtype).max)
                x = b.op("Clip", [x], inner=True, suffix="saturate", x_min=-top, x_max=top)
            narrow = b.op("Cast", [x], module=CORE, inner=True, suffix=dtype.name, dtype=dtype.name)
            return b.op("Cast", [narrow], module=CORE, inner=inner, dtype="float32")
        if dtype.kind != "f" and dtype.name not in NARROW:
            raise refuse(f"to={dtype} (no Keras dtype)")
        if src is not None and is_float(src):
            return x
        return b.op("Cast", [x], module=CORE, inner=inner, dtype="float32")
    if dtype.kind not in "biu":
        raise refuse(f"to={dtype} (no Keras dtype)")
    if src == dtype:
        return x
    return b.op("Cast", [x], module=CORE, inner=inner, dtype=dtype.name)


def _cast_constant(x: np.ndarray, dtype: np.dtype, saturate: int) -> np.ndarray:
    """What ONNX's Cast makes of a constant, as the importer keeps it (floats rounded through ``dtype``)."""
    if dtype.kind in "biu":
        return x.astype(dtype)
    if not is_float(dtype) or (dtype.kind != "f" and dtype.name not in NARROW):
        raise refuse(f"to={dtype} (no Keras dtype)")
    if dtype.name.startswith("float8") and saturate:
        x = np.clip(x, -float(_finfo(dtype).max), float(_finfo(dtype).max))
    return x.astype(dtype).astype(np.float32) if dtype.name in NARROW else x.astype(dtype)


def _finfo(dtype: np.dtype):
    import ml_dtypes
    return ml_dtypes.finfo(dtype)


def _target(to) -> np.dtype:
    if isinstance(to, str):  # Cast-1 names the type ("FLOAT")
        from onnx import TensorProto
        to = TensorProto.DataType.Value(to.upper())
    dtype = np_dtype(to)
    if to in (21, 22, 25, 26) or (dtype.kind not in "biuf" and not is_float(dtype)):  # 4-bit / 2-bit integers, strings
        raise refuse(f"to={to} ({dtype}: no Keras dtype)")
    return dtype


@lowering("Cast")
def Cast(b, input, to=1, saturate=1, round_mode="up"):
    return cast(b, input, _target(to), saturate=saturate)


@lowering("CastLike")
def CastLike(b, input, target_type, saturate=1, round_mode="up"):
    dtype = b.dtype(target_type)
    if dtype is None:
        raise refuse("target_type of unknown dtype")
    return cast(b, input, _target(_onnx_type(dtype)), saturate=saturate)


def _onnx_type(dtype: np.dtype) -> int:
    from onnx import helper
    return helper.np_dtype_to_tensor_dtype(dtype)


def _two(keras_name: str) -> Callable:
    def lower(b, A, B):
        if not isinstance(A, Sym) and not isinstance(B, Sym):
            raise refuse("both inputs constant")
        return b.op(keras_name, [A, B])
    return lower


for _op, _keras in {"Less": "Less", "LessOrEqual": "LessEqual", "Greater": "Greater",
                    "GreaterOrEqual": "GreaterEqual", "Equal": "Equal", "And": "LogicalAnd", "Or": "LogicalOr",
                    "Xor": "LogicalXor", "BitwiseAnd": "BitwiseAnd", "BitwiseOr": "BitwiseOr",
                    "BitwiseXor": "BitwiseXor"}.items():
    lowering(_op)(_two(_keras))


@lowering("Not")
def Not(b, X):
    return b.op("LogicalNot", [as_sym(b, X)])


@lowering("BitwiseNot")
def BitwiseNot(b, X):
    return b.op("BitwiseNot", [as_sym(b, X)])


@lowering("BitShift")
def BitShift(b, X, Y, direction=""):
    """Keras's shifts (TF's: undefined for a shift below 0 or of the bit width or more); ONNX defines those as 0,
    or -1 for a right shift of a negative signed value: a Where around the shift of the amounts made valid."""
    if direction not in ("LEFT", "RIGHT"):
        raise refuse(f"direction={direction!r}")
    if not isinstance(X, Sym) and not isinstance(Y, Sym):
        raise refuse("both inputs constant")
    op = "LeftShift" if direction == "LEFT" else "RightShift"
    dtype = b.dtype(X) if isinstance(X, Sym) else np.asarray(X).dtype
    if dtype is None or dtype.kind not in "iu":
        raise refuse(f"shifting {dtype}")
    bits = dtype.itemsize * 8
    if isinstance(Y, np.ndarray):
        outside = (Y < 0) | (Y >= bits)
        if not outside.any():
            return b.op(op, [X, Y])
        amount = np.where(outside, 0, Y).astype(Y.dtype)
    else:
        outside = b.op("LogicalOr", [b.op("Less", [Y, 0], inner=True, suffix="negative"),
                                     b.op("GreaterEqual", [Y, bits], inner=True, suffix="too_far")], inner=True,
                       suffix="outside")
        amount = b.op("Where", [outside, np.asarray(0, dtype), Y], inner=True, suffix="amount")
    shifted = b.op(op, [X, amount], inner=True, suffix="shift")
    fill = np.asarray(0, dtype)
    if direction == "RIGHT" and dtype.kind == "i":
        fill = b.op("Where", [b.op("Less", [X, 0], inner=True, suffix="sign"), np.asarray(-1, dtype), fill], inner=True,
                    suffix="fill")
    return b.op("Where", [outside, fill, shifted])


@lowering("IsNaN")
def IsNaN(b, X):
    return b.op("Isnan", [as_sym(b, X)])


@lowering("IsInf")
def IsInf(b, X, detect_negative=1, detect_positive=1):
    x = as_sym(b, X)
    if detect_negative and detect_positive:
        return b.op("Isinf", [x])
    if not detect_negative and not detect_positive:
        raise refuse("detect_negative=0 with detect_positive=0")
    inf = b.op("Isinf", [x], inner=True, suffix="isinf")
    side = b.op("Greater" if detect_positive else "Less", [x, 0.0], inner=True, suffix="sign")
    return b.op("LogicalAnd", [inf, side])


@lowering("Where")
def Where(b, condition, X, Y):
    if not any(isinstance(v, Sym) for v in (condition, X, Y)):
        raise refuse("every input constant")
    return b.op("Where", [condition, X, Y])


@lowering("Mod")
def Mod(b, A, B, fmod=0):
    """fmod=1: C's fmod (the dividend's sign), Keras's Fmod; fmod=0: floor mod (the divisor's sign), Keras's Mod."""
    if not isinstance(A, Sym) and not isinstance(B, Sym):
        raise refuse("both inputs constant")
    return b.op("Fmod" if fmod else "Mod", [A, B])


def truncate_divide(b, a, c) -> Sym:
    """Integer division rounding toward zero (ONNX Div, C): (a - fmod(a, c)) // c, exact."""
    rest = b.op("Fmod", [a, c], inner=True, suffix="fmod")
    return b.op("FloorDivide", [b.op("Subtract", [a, rest], inner=True, suffix="whole"), c])


def as_int_constant(value, what: str) -> int:
    """A scalar constant input (K, axis, depth) as a Python int."""
    arr = as_const(value, what)
    if arr.size != 1:
        raise refuse(f"{what} of shape {list(arr.shape)} (one value expected)")
    return int(arr.reshape(()))
