"""ONNX exporters of Keras 3 elementwise op nodes (``x * 2``, ``ops.exp``, ``ops.where``...).

Each follows what Keras computes on TensorFlow (keras/src/backend/tensorflow/numpy.py, math.py):
log1p / expm1 as Eigen's generic_log1p / generic_expm1, hypot as Keras's max * sqrt(1 + ratio^2),
Round half to even (ONNX Round is too) with decimals as x * 10^d, round, / 10^d, floor mod for Mod.
Operands follow Keras's dtype rule (operands.py). Activation op nodes (``ops.relu``) are one
activation each (activations.py). Reductions and shape ops are in ops_array.py.
"""
from __future__ import annotations

import numpy as np
from onnx import helper

from ....errors import UnsupportedError
from .activations import activation_node
from .operands import as_bool, as_float, cast_to, const_like, kind, promote
from .registry import op_exporter

BINARY_OPS = {"Add": "Add", "Subtract": "Sub", "Multiply": "Mul", "Divide": "Div", "TrueDivide": "Div",
              "Maximum": "Max", "Minimum": "Min", "Power": "Pow"}
UNARY_OPS = {"Negative": "Neg", "Absolute": "Abs", "Abs": "Abs", "Sign": "Sign", "Reciprocal": "Reciprocal",
             "Erf": "Erf"}
# Keras op class -> (activation, its config key, Keras's default); one ONNX activation each.
ACTIVATION_OPS = {
    "Relu": ("relu", None, None), "Relu6": ("relu6", None, None), "Sigmoid": ("sigmoid", None, None),
    "Silu": ("silu", None, None), "LogSigmoid": ("log_sigmoid", None, None),
    "HardSigmoid": ("hard_sigmoid", None, None), "HardSilu": ("hard_silu", None, None),
    "Selu": ("selu", None, None), "Softplus": ("softplus", None, None), "Softsign": ("softsign", None, None),
    "SparsePlus": ("sparse_plus", None, None), "SparseSigmoid": ("sparse_sigmoid", None, None),
    "TanhShrink": ("tanh_shrink", None, None), "HardTanh": ("hard_tanh", None, None),
    "LeakyRelu": ("leaky_relu", "negative_slope", 0.2), "Elu": ("elu", "alpha", 1.0), "Celu": ("celu", "alpha", 1.0),
    "Gelu": ("gelu", "approximate", True), "Squareplus": ("squareplus", "b", 4),
    "HardShrink": ("hard_shrink", "threshold", 0.5), "SoftShrink": ("soft_shrink", "threshold", 0.5),
    "Softmax": ("softmax", "axis", -1), "LogSoftmax": ("log_softmax", "axis", -1),
}
for _keras, (_act, _key, _default) in ACTIVATION_OPS.items():
    op_exporter(_keras)(activation_node(_act, _key, _default))


# ------------------------------------------------------------------ elementwise, two operands
def _binary(onnx_op: str, floating: bool = False):
    def export(ctx, layer, inputs, weights):
        (a, b), _ = promote(ctx, inputs[:2], floating)
        return ctx.op(onnx_op, a, b)
    return export


for _keras, _onnx in BINARY_OPS.items():
    op_exporter(_keras)(_binary(_onnx, floating=_onnx == "Div"))
for _keras, _onnx in {"Equal": "Equal", "Greater": "Greater", "GreaterEqual": "GreaterOrEqual", "Less": "Less",
                      "LessEqual": "LessOrEqual"}.items():
    op_exporter(_keras)(_binary(_onnx))


@op_exporter("NotEqual")
def not_equal(ctx, layer, inputs, weights):
    return ctx.op("Not", _binary("Equal")(ctx, layer, inputs, weights))


def _logical(onnx_op: str):
    def export(ctx, layer, inputs, weights):
        return ctx.op(onnx_op, *[as_bool(ctx, ctx.operand(a)) for a in inputs[:2]])
    return export


for _keras, _onnx in {"LogicalAnd": "And", "LogicalOr": "Or", "LogicalXor": "Xor"}.items():
    op_exporter(_keras)(_logical(_onnx))


@op_exporter("Mod")
def mod(ctx, layer, inputs, weights):
    """Floor mod (the divisor's sign): ONNX Mod for integers; for floats C fmod, then + b where signs differ."""
    (a, b), dtype = promote(ctx, inputs[:2])
    if dtype.kind == "b":
        a, b = cast_to(ctx, a, np.int32), cast_to(ctx, b, np.int32)
    if dtype.kind != "f":
        return ctx.op("Mod", a, b, fmod=0)
    r = ctx.op("Mod", a, b, fmod=1)
    zero = const_like(ctx, 0.0, r)
    differ = ctx.op("Xor", ctx.op("Less", b, zero), ctx.op("Less", r, zero))
    fix = ctx.op("And", ctx.op("Not", ctx.op("Equal", r, zero)), differ)
    return ctx.op("Where", fix, ctx.op("Add", r, b), r)


@op_exporter("Fmod")
def fmod(ctx, layer, inputs, weights):
    """C's fmod (the dividend's sign): ONNX Mod with fmod=1, for floats and integers alike."""
    (a, b), dtype = promote(ctx, inputs[:2])
    if dtype.kind == "b":
        a, b = cast_to(ctx, a, np.int32), cast_to(ctx, b, np.int32)
    return ctx.op("Mod", a, b, fmod=1)


def _bitwise(onnx_op: str):
    def export(ctx, layer, inputs, weights):
        if ctx.opset < 18:
            raise UnsupportedError(f"layer '{layer.name}' ({layer.class_name}): ONNX has {onnx_op} from opset 18. "
                                   f"Received: opset={ctx.opset}")
        if onnx_op == "BitwiseNot":
            x = ctx.operand(inputs[0])
            return ctx.op("Not", x) if kind(ctx, x) == "b" else ctx.op(onnx_op, x)
        (a, b), dtype = promote(ctx, inputs[:2])
        if dtype.kind == "b":
            return ctx.op({"BitwiseAnd": "And", "BitwiseOr": "Or", "BitwiseXor": "Xor"}[onnx_op], a, b)
        return ctx.op(onnx_op, a, b)
    return export


for _keras, _onnx in {"BitwiseAnd": "BitwiseAnd", "BitwiseOr": "BitwiseOr", "BitwiseXor": "BitwiseXor",
                      "BitwiseNot": "BitwiseNot", "BitwiseInvert": "BitwiseNot"}.items():
    op_exporter(_keras)(_bitwise(_onnx))


def _shift(direction: str):
    """ONNX BitShift takes unsigned integers: a signed left shift goes through the unsigned type of its width (two's
    complement wraps the same); a signed right shift is arithmetic (TF): floor(x / 2^y), exact in integers."""
    def export(ctx, layer, inputs, weights):
        (x, y), dtype = promote(ctx, inputs[:2])
        if dtype.kind == "u":
            return ctx.op("BitShift", x, y, direction=direction)
        if dtype.kind != "i":
            raise UnsupportedError(f"layer '{layer.name}' ({layer.class_name}): shifts take integers. "
                                   f"Received: dtype={dtype}")
        unsigned = np.dtype(f"uint{dtype.itemsize * 8}")
        if direction == "LEFT":
            shifted = ctx.op("BitShift", cast_to(ctx, x, unsigned), cast_to(ctx, y, unsigned), direction="LEFT")
            return cast_to(ctx, shifted, dtype)
        one = ctx.const(1, "one", dtype=unsigned)
        power = cast_to(ctx, ctx.op("BitShift", one, cast_to(ctx, y, unsigned), direction="LEFT"), dtype)  # 2^y
        whole = ctx.op("Sub", x, ctx.op("Mod", x, power, fmod=0))  # x - floormod(x, 2^y)
        return ctx.op("Div", whole, power)
    return export


for _keras, _direction in {"LeftShift": "LEFT", "BitwiseLeftShift": "LEFT", "RightShift": "RIGHT",
                           "BitwiseRightShift": "RIGHT"}.items():
    op_exporter(_keras)(_shift(_direction))


@op_exporter("FloorDivide")
def floor_divide(ctx, layer, inputs, weights):
    """floor(a / b) for floats (TF's FloorDiv); (a - a mod b) / b for integers, exact."""
    (a, b), dtype = promote(ctx, inputs[:2])
    if dtype.kind == "f":
        return ctx.op("Floor", ctx.op("Div", a, b))
    return ctx.op("Div", ctx.op("Sub", a, ctx.op("Mod", a, b, fmod=0)), b)


@op_exporter("Hypot")
def hypot(ctx, layer, inputs, weights):
    """Keras: max(|a|, |b|) * sqrt(1 + (min / max)^2), the ratio 0 where max is 0."""
    (a, b), _ = promote(ctx, inputs[:2], floating=True)
    a, b = ctx.op("Abs", a), ctx.op("Abs", b)
    hi, lo = ctx.op("Max", a, b), ctx.op("Min", a, b)
    zero = const_like(ctx, 0.0, hi)
    ratio = ctx.op("Where", ctx.op("Equal", hi, zero), zero, ctx.op("Div", lo, hi))
    root = ctx.op("Sqrt", ctx.op("Add", const_like(ctx, 1.0, hi), ctx.op("Mul", ratio, ratio)))
    return ctx.op("Mul", hi, root)


@op_exporter("Arctan2")
def arctan2(ctx, layer, inputs, weights):
    """atan(a / b), + pi (a's sign) where b is negative (or -0); both infinite: their signs; both 0: a."""
    (a, b), _ = promote(ctx, inputs[:2], floating=True)
    both_inf = ctx.op("And", ctx.op("IsInf", a), ctx.op("IsInf", b))
    a, b = ctx.op("Where", both_inf, ctx.op("Sign", a), a), ctx.op("Where", both_inf, ctx.op("Sign", b), b)
    zero, one = const_like(ctx, 0.0, a), const_like(ctx, 1.0, a)

    def negative(t):  # sign bit set, -0 included
        return ctx.op("Or", ctx.op("Less", t, zero), ctx.op("Less", ctx.op("Div", one, t), zero))
    both_zero = ctx.op("And", ctx.op("Equal", a, zero), ctx.op("Equal", b, zero))
    base = ctx.op("Where", both_zero, a, ctx.op("Atan", ctx.op("Div", a, b)))
    pi = ctx.op("Where", negative(a), const_like(ctx, -np.pi, a), const_like(ctx, np.pi, a))
    return ctx.op("Where", negative(b), ctx.op("Add", base, pi), base)


# ------------------------------------------------------------------ elementwise, one operand
def _unary(onnx_op):
    def export(ctx, layer, inputs, weights):
        return ctx.op(onnx_op, ctx.operand(inputs[0]))
    return export


for _keras, _onnx in UNARY_OPS.items():
    op_exporter(_keras)(_unary(_onnx))


FLOAT_UNARY = {"Exp": "Exp", "Sqrt": "Sqrt", "Log": "Log", "Tanh": "Tanh", "Sin": "Sin", "Cos": "Cos",
               "Floor": "Floor", "Ceil": "Ceil", "Tan": "Tan", "Sinh": "Sinh", "Cosh": "Cosh", "Arcsin": "Asin",
               "Arccos": "Acos", "Arctan": "Atan", "Arcsinh": "Asinh", "Arctanh": "Atanh", "Arccosh": "Acosh"}


def _float_unary(fn):
    """``fn(ctx, x)`` on x cast to float32 first when it is an integer or bool (Keras's rule)."""
    def export(ctx, layer, inputs, weights):
        return fn(ctx, as_float(ctx, ctx.operand(inputs[0])))
    return export


for _keras, _onnx in FLOAT_UNARY.items():
    op_exporter(_keras)(_float_unary(lambda ctx, x, op=_onnx: ctx.op(op, x)))


@op_exporter("Log1p")
@_float_unary
def log1p(ctx, x):
    """Eigen's generic_log1p: x * log(u) / (u - 1) with u = 1 + x; x where u is 1 or infinite."""
    u = ctx.op("Add", x, const_like(ctx, 1.0, x))
    log_u = ctx.op("Log", u)
    exact = ctx.op("Or", ctx.op("Equal", u, const_like(ctx, 1.0, x)), ctx.op("Equal", u, log_u))
    return ctx.op("Where", exact, x, ctx.op("Mul", x, ctx.op("Div", log_u, ctx.op("Sub", u, const_like(ctx, 1.0, x)))))


@op_exporter("Expm1")
@_float_unary
def expm1(ctx, x):
    """Eigen's generic_expm1: (u - 1) * x / log(u) with u = exp(x); x where u is 1, -1 where u - 1 is, u if inf."""
    u = ctx.op("Exp", x)
    d = ctx.op("Sub", u, const_like(ctx, 1.0, x))
    log_u = ctx.op("Log", u)
    y = ctx.op("Where", ctx.op("Equal", log_u, u), u, ctx.op("Mul", d, ctx.op("Div", x, log_u)))
    y = ctx.op("Where", ctx.op("Equal", d, const_like(ctx, -1.0, x)), const_like(ctx, -1.0, x), y)
    return ctx.op("Where", ctx.op("Equal", u, const_like(ctx, 1.0, x)), x, y)


@op_exporter("Exp2")
@_float_unary
def exp2(ctx, x):
    return ctx.op("Pow", const_like(ctx, 2.0, x), x)  # Keras: tf.pow(2.0, x)


def _log_base(base: float):
    def fn(ctx, x):  # Keras: log(x) / log(base), the divisor rounded to x's dtype first
        return ctx.op("Div", ctx.op("Log", x), const_like(ctx, np.log(np.asarray(base, ctx.dtype(x))), x))
    return _float_unary(fn)


op_exporter("Log2")(_log_base(2.0))


op_exporter("Log10")(_log_base(10.0))


@op_exporter("Rsqrt")
@_float_unary
def rsqrt(ctx, x):
    return ctx.op("Reciprocal", ctx.op("Sqrt", x))


@op_exporter("Trunc")
def trunc(ctx, layer, inputs, weights):
    x = ctx.operand(inputs[0])
    if kind(ctx, x) != "f":
        return x  # integers and bools pass, as in Keras
    return ctx.op("Where", ctx.op("Less", x, const_like(ctx, 0.0, x)), ctx.op("Ceil", x), ctx.op("Floor", x))


@op_exporter("LogicalNot")
def logical_not(ctx, layer, inputs, weights):
    return ctx.op("Not", as_bool(ctx, ctx.operand(inputs[0])))


def _is(test: str):
    """Isnan / Isinf / Isfinite; integers are never nan or inf (x == x is True, shape kept)."""
    def export(ctx, layer, inputs, weights):
        x = ctx.operand(inputs[0])
        if kind(ctx, x) != "f":
            same = ctx.op("Equal", x, x)
            return same if test == "finite" else ctx.op("Not", same)
        if test == "finite":
            return ctx.op("Not", ctx.op("Or", ctx.op("IsNaN", x), ctx.op("IsInf", x)))
        return ctx.op("IsNaN" if test == "nan" else "IsInf", x)
    return export


for _keras, _test in {"Isnan": "nan", "Isinf": "inf", "Isfinite": "finite"}.items():
    op_exporter(_keras)(_is(_test))


@op_exporter("Round")
def round_(ctx, layer, inputs, weights):
    """Half to even (TF, NumPy and ONNX Round agree); decimals d: round(x * 10^d) / 10^d, integers via float32."""
    x = ctx.operand(inputs[0])
    d, dtype = layer.decimals, ctx.dtype(x)
    if kind(ctx, x) != "f" and d >= 0:
        return x
    if d == 0:
        return ctx.op("Round", x)
    y = as_float(ctx, x)
    factor = const_like(ctx, 10.0 ** d, y)
    y = ctx.op("Div", ctx.op("Round", ctx.op("Mul", y, factor)), factor)
    return cast_to(ctx, y, dtype)


@op_exporter("Cast")
def cast(ctx, layer, inputs, weights):
    if layer.dtype.name.startswith("float8") and ctx.opset < 19:
        raise UnsupportedError(f"layer '{layer.name}' (Cast): ONNX has {layer.dtype.name} from opset 19. "
                               f"Received: opset={ctx.opset}")
    return ctx.op("Cast", ctx.operand(inputs[0]), to=helper.np_dtype_to_tensor_dtype(layer.dtype))


@op_exporter("ZerosLike", "OnesLike")
def fill_like(ctx, layer, inputs, weights):
    """Keras writes these into a graph for a Concatenate's mask: x > x (False for every x, NaN too; for bool
    x xor x) or its Not, cast to the dtype. Computed from x itself, not from its Shape: an importer then
    reads back op nodes, not a value that depends on the batch size."""
    x = ctx.operand(inputs[0])
    false = ctx.op("Xor", x, x) if ctx.dtype(x) == "bool" else ctx.op("Greater", x, x)  # x's shape, all False
    y = false if layer.value == 0 else ctx.op("Not", false)
    dtype = np.dtype(ctx.dtype(x)) if layer.dtype is None else layer.dtype
    return ctx.op("Cast", y, to=helper.np_dtype_to_tensor_dtype(dtype))


@op_exporter("Where")
def where(ctx, layer, inputs, weights):
    args = list(inputs) + [ctx.kwargs.get(k) for k in ("condition", "x1", "x2")[len(inputs):]]
    condition, x1, x2 = args[:3]
    if x1 is None or x2 is None:
        raise UnsupportedError(f"layer '{layer.name}' (Where): where(condition) without x1 / x2 has no ONNX export")
    (x1, x2), _ = promote(ctx, [x1, x2])
    return ctx.op("Where", as_bool(ctx, ctx.operand(condition)), x1, x2)



@op_exporter("Square")
def square(ctx, layer, inputs, weights):
    x = ctx.operand(inputs[0])
    return ctx.op("Mul", x, x)


@op_exporter("Threshold")
def threshold(ctx, layer, inputs, weights):
    x = ctx.operand(inputs[0])
    above = ctx.op("Greater", x, const_like(ctx, layer.threshold, x))
    return ctx.op("Where", above, x, const_like(ctx, layer.default_value, x))


@op_exporter("Clip")
def clip(ctx, layer, inputs, weights):
    lo, hi = layer.config.get("x_min"), layer.config.get("x_max")
    bounds = [ctx.const(float(v)) if v is not None else "" for v in (lo, hi)]
    return ctx.op("Clip", ctx.operand(inputs[0]), *bounds)


@op_exporter("Matmul")
def matmul(ctx, layer, inputs, weights):
    return ctx.op("MatMul", ctx.operand(inputs[0]), ctx.operand(inputs[1]))
