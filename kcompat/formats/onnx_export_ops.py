"""ONNX exporters of Keras 3 op nodes beyond onnx_layers.py's: comparisons and logic, the rest of the
elementwise math, Mod / FloorDivide, reductions (Prod, Var, Std, Logsumexp, Any / All, Argmax / Argmin),
Where, Cast, ZerosLike / OnesLike, Round, Stack and GetItem; and Keras's dtype rule for op-node operands, which also
replaces onnx_layers.py's arithmetic for op nodes (``int32 + 1`` stays int32, ``int32 / 2`` is float32).

Each follows what Keras computes on TensorFlow (keras/src/backend/tensorflow/numpy.py, math.py):
log1p / expm1 as Eigen's generic_log1p / generic_expm1, hypot as Keras's max * sqrt(1 + ratio^2),
logsumexp as tf.reduce_logsumexp (finite max shifted out), argmax with -0.0 below +0.0, Round
half to even (ONNX Round is too) with decimals as x * 10^d, round, / 10^d, floor mod for Mod.
"""
from __future__ import annotations

import numpy as np
from onnx import TensorProto, helper

from ..errors import UnsupportedError
from ..layers.ops import as_array, getitem_key
from .onnx_export import exporter
from .onnx_layers import BINARY_OPS, _binary as _merge_binary, _reduction

INT64_MAX, INT64_MIN = 2**63 - 1, -2**63
BOOL, FLOAT, INT32 = TensorProto.BOOL, TensorProto.FLOAT, TensorProto.INT32


# ------------------------------------------------------------------ dtypes
def _kind(ctx, x: str) -> str:
    """'f' float, 'i' / 'u' integer, 'b' bool."""
    return np.dtype(ctx.dtype(x)).kind


def _cast(ctx, x: str, dtype) -> str:
    dtype = np.dtype(dtype)
    return x if np.dtype(ctx.dtype(x)) == dtype else ctx.op("Cast", x, to=helper.np_dtype_to_tensor_dtype(dtype))


def _float(ctx, x: str) -> str:
    """Keras's float ops: integers and bools become float32."""
    return x if _kind(ctx, x) == "f" else ctx.op("Cast", x, to=FLOAT)


def _bool(ctx, x: str) -> str:
    return x if _kind(ctx, x) == "b" else ctx.op("Cast", x, to=BOOL)  # nonzero (and NaN) is True, as in TF


def _promote(ctx, args, floating: bool = False) -> tuple[list[str], np.dtype]:
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
    names = [_cast(ctx, v, dtype) if isinstance(v, str) else ctx.const(v, "const", dtype=dtype) for v in values]
    return names, dtype


def _const(ctx, value, like: str) -> str:
    """A scalar constant of ``like``'s dtype."""
    return ctx.const(value, "const", dtype=np.dtype(ctx.dtype(like)))


# ------------------------------------------------------------------ elementwise, two operands
def _binary(onnx_op: str, floating: bool = False):
    def export(ctx, layer, inputs, weights):
        if isinstance(inputs[0], list):  # merging layer (Add()([a, b])): onnx_layers' form
            return _merge_binary(onnx_op)(ctx, layer, inputs, weights)
        (a, b), _ = _promote(ctx, inputs[:2], floating)
        return ctx.op(onnx_op, a, b)
    return export


for _keras, _onnx in BINARY_OPS.items():  # Add, Subtract, Multiply, Divide, TrueDivide, Maximum, Minimum, Power
    exporter(_keras)(_binary(_onnx, floating=_onnx == "Div"))
for _keras, _onnx in {"Equal": "Equal", "Greater": "Greater", "GreaterEqual": "GreaterOrEqual", "Less": "Less",
                      "LessEqual": "LessOrEqual"}.items():
    exporter(_keras)(_binary(_onnx))


@exporter("NotEqual")
def not_equal(ctx, layer, inputs, weights):
    return ctx.op("Not", _binary("Equal")(ctx, layer, inputs, weights))


def _logical(onnx_op: str):
    def export(ctx, layer, inputs, weights):
        return ctx.op(onnx_op, *[_bool(ctx, ctx.operand(a)) for a in inputs[:2]])
    return export


for _keras, _onnx in {"LogicalAnd": "And", "LogicalOr": "Or", "LogicalXor": "Xor"}.items():
    exporter(_keras)(_logical(_onnx))


@exporter("Mod")
def mod(ctx, layer, inputs, weights):
    """Floor mod (the divisor's sign): ONNX Mod for integers; for floats C fmod, then + b where signs differ."""
    (a, b), dtype = _promote(ctx, inputs[:2])
    if dtype.kind == "b":
        a, b = _cast(ctx, a, np.int32), _cast(ctx, b, np.int32)
    if dtype.kind != "f":
        return ctx.op("Mod", a, b, fmod=0)
    r = ctx.op("Mod", a, b, fmod=1)
    zero = _const(ctx, 0.0, r)
    differ = ctx.op("Xor", ctx.op("Less", b, zero), ctx.op("Less", r, zero))
    fix = ctx.op("And", ctx.op("Not", ctx.op("Equal", r, zero)), differ)
    return ctx.op("Where", fix, ctx.op("Add", r, b), r)


@exporter("FloorDivide")
def floor_divide(ctx, layer, inputs, weights):
    """floor(a / b) for floats (TF's FloorDiv); (a - a mod b) / b for integers, exact."""
    (a, b), dtype = _promote(ctx, inputs[:2])
    if dtype.kind == "f":
        return ctx.op("Floor", ctx.op("Div", a, b))
    return ctx.op("Div", ctx.op("Sub", a, ctx.op("Mod", a, b, fmod=0)), b)


@exporter("Hypot")
def hypot(ctx, layer, inputs, weights):
    """Keras: max(|a|, |b|) * sqrt(1 + (min / max)^2), the ratio 0 where max is 0."""
    (a, b), _ = _promote(ctx, inputs[:2], floating=True)
    a, b = ctx.op("Abs", a), ctx.op("Abs", b)
    hi, lo = ctx.op("Max", a, b), ctx.op("Min", a, b)
    zero = _const(ctx, 0.0, hi)
    ratio = ctx.op("Where", ctx.op("Equal", hi, zero), zero, ctx.op("Div", lo, hi))
    root = ctx.op("Sqrt", ctx.op("Add", _const(ctx, 1.0, hi), ctx.op("Mul", ratio, ratio)))
    return ctx.op("Mul", hi, root)


@exporter("Arctan2")
def arctan2(ctx, layer, inputs, weights):
    """atan(a / b), + pi (a's sign) where b is negative (or -0); both infinite: their signs; both 0: a."""
    (a, b), _ = _promote(ctx, inputs[:2], floating=True)
    both_inf = ctx.op("And", ctx.op("IsInf", a), ctx.op("IsInf", b))
    a, b = ctx.op("Where", both_inf, ctx.op("Sign", a), a), ctx.op("Where", both_inf, ctx.op("Sign", b), b)
    zero, one = _const(ctx, 0.0, a), _const(ctx, 1.0, a)

    def negative(t):  # sign bit set, -0 included
        return ctx.op("Or", ctx.op("Less", t, zero), ctx.op("Less", ctx.op("Div", one, t), zero))
    both_zero = ctx.op("And", ctx.op("Equal", a, zero), ctx.op("Equal", b, zero))
    base = ctx.op("Where", both_zero, a, ctx.op("Atan", ctx.op("Div", a, b)))
    pi = ctx.op("Where", negative(a), _const(ctx, -np.pi, a), _const(ctx, np.pi, a))
    return ctx.op("Where", negative(b), ctx.op("Add", base, pi), base)


# ------------------------------------------------------------------ elementwise, one operand
FLOAT_UNARY = {"Exp": "Exp", "Sqrt": "Sqrt", "Log": "Log", "Tanh": "Tanh", "Sin": "Sin", "Cos": "Cos",
               "Floor": "Floor", "Ceil": "Ceil", "Tan": "Tan", "Sinh": "Sinh", "Cosh": "Cosh", "Arcsin": "Asin",
               "Arccos": "Acos", "Arctan": "Atan", "Arcsinh": "Asinh", "Arctanh": "Atanh"}


def _float_unary(fn):
    """``fn(ctx, x)`` on x cast to float32 first when it is an integer or bool (Keras's rule)."""
    def export(ctx, layer, inputs, weights):
        return fn(ctx, _float(ctx, ctx.operand(inputs[0])))
    return export


for _keras, _onnx in FLOAT_UNARY.items():
    exporter(_keras)(_float_unary(lambda ctx, x, op=_onnx: ctx.op(op, x)))


@exporter("Log1p")
@_float_unary
def log1p(ctx, x):
    """Eigen's generic_log1p: x * log(u) / (u - 1) with u = 1 + x; x where u is 1 or infinite."""
    u = ctx.op("Add", x, _const(ctx, 1.0, x))
    log_u = ctx.op("Log", u)
    exact = ctx.op("Or", ctx.op("Equal", u, _const(ctx, 1.0, x)), ctx.op("Equal", u, log_u))
    return ctx.op("Where", exact, x, ctx.op("Mul", x, ctx.op("Div", log_u, ctx.op("Sub", u, _const(ctx, 1.0, x)))))


@exporter("Expm1")
@_float_unary
def expm1(ctx, x):
    """Eigen's generic_expm1: (u - 1) * x / log(u) with u = exp(x); x where u is 1, -1 where u - 1 is, u if inf."""
    u = ctx.op("Exp", x)
    d = ctx.op("Sub", u, _const(ctx, 1.0, x))
    log_u = ctx.op("Log", u)
    y = ctx.op("Where", ctx.op("Equal", log_u, u), u, ctx.op("Mul", d, ctx.op("Div", x, log_u)))
    y = ctx.op("Where", ctx.op("Equal", d, _const(ctx, -1.0, x)), _const(ctx, -1.0, x), y)
    return ctx.op("Where", ctx.op("Equal", u, _const(ctx, 1.0, x)), x, y)


@exporter("Exp2")
@_float_unary
def exp2(ctx, x):
    return ctx.op("Pow", _const(ctx, 2.0, x), x)  # Keras: tf.pow(2.0, x)


def _log_base(base: float):
    def fn(ctx, x):  # Keras: log(x) / log(base), the divisor rounded to x's dtype first
        return ctx.op("Div", ctx.op("Log", x), _const(ctx, np.log(np.asarray(base, ctx.dtype(x))), x))
    return _float_unary(fn)


exporter("Log2")(_log_base(2.0))
exporter("Log10")(_log_base(10.0))


@exporter("Rsqrt")
@_float_unary
def rsqrt(ctx, x):
    return ctx.op("Reciprocal", ctx.op("Sqrt", x))


@exporter("Trunc")
def trunc(ctx, layer, inputs, weights):
    x = ctx.operand(inputs[0])
    if _kind(ctx, x) != "f":
        return x  # integers and bools pass, as in Keras
    return ctx.op("Where", ctx.op("Less", x, _const(ctx, 0.0, x)), ctx.op("Ceil", x), ctx.op("Floor", x))


@exporter("LogicalNot")
def logical_not(ctx, layer, inputs, weights):
    return ctx.op("Not", _bool(ctx, ctx.operand(inputs[0])))


def _is(test: str):
    """Isnan / Isinf / Isfinite; integers are never nan or inf (x == x is True, shape kept)."""
    def export(ctx, layer, inputs, weights):
        x = ctx.operand(inputs[0])
        if _kind(ctx, x) != "f":
            same = ctx.op("Equal", x, x)
            return same if test == "finite" else ctx.op("Not", same)
        if test == "finite":
            return ctx.op("Not", ctx.op("Or", ctx.op("IsNaN", x), ctx.op("IsInf", x)))
        return ctx.op("IsNaN" if test == "nan" else "IsInf", x)
    return export


for _keras, _test in {"Isnan": "nan", "Isinf": "inf", "Isfinite": "finite"}.items():
    exporter(_keras)(_is(_test))


@exporter("Round")
def round_(ctx, layer, inputs, weights):
    """Half to even (TF, NumPy and ONNX Round agree); decimals d: round(x * 10^d) / 10^d, integers via float32."""
    x = ctx.operand(inputs[0])
    d, dtype = layer.decimals, ctx.dtype(x)
    if _kind(ctx, x) != "f" and d >= 0:
        return x
    if d == 0:
        return ctx.op("Round", x)
    y = _float(ctx, x)
    factor = _const(ctx, 10.0 ** d, y)
    y = ctx.op("Div", ctx.op("Round", ctx.op("Mul", y, factor)), factor)
    return _cast(ctx, y, dtype)


@exporter("Cast")
def cast(ctx, layer, inputs, weights):
    return ctx.op("Cast", ctx.operand(inputs[0]), to=helper.np_dtype_to_tensor_dtype(layer.dtype))


@exporter("ZerosLike", "OnesLike")
def fill_like(ctx, layer, inputs, weights):
    """Keras writes these into a graph for a Concatenate's mask: a constant of x's shape, then the dtype
    (the Cast also tells ``ctx.dtype`` what the tensor is)."""
    from onnx import numpy_helper
    x = ctx.operand(inputs[0])
    value = numpy_helper.from_array(np.array([float(layer.value)], np.float32))
    y = ctx.op("ConstantOfShape", ctx.op("Shape", x), value=value)
    dtype = np.dtype(ctx.dtype(x)) if layer.dtype is None else layer.dtype
    return ctx.op("Cast", y, to=helper.np_dtype_to_tensor_dtype(dtype))


@exporter("Where")
def where(ctx, layer, inputs, weights):
    args = list(inputs) + [ctx.kwargs.get(k) for k in ("condition", "x1", "x2")[len(inputs):]]
    condition, x1, x2 = args[:3]
    if x1 is None or x2 is None:
        raise UnsupportedError(f"layer '{layer.name}' (Where): where(condition) without x1 / x2 has no ONNX export")
    (x1, x2), _ = _promote(ctx, [x1, x2])
    return ctx.op("Where", _bool(ctx, ctx.operand(condition)), x1, x2)


# ------------------------------------------------------------------ reductions
exporter("Amax")(_reduction("ReduceMax"))
exporter("Amin")(_reduction("ReduceMin"))


def _axes(ctx, layer, x: str) -> list[int]:
    rank = len(ctx.shape(x))
    return list(range(rank)) if layer.axis is None else [a % rank for a in layer.axis]


@exporter("Prod")
def prod(ctx, layer, inputs, weights):
    x = inputs[0]
    x = _cast(ctx, x, np.int32) if _kind(ctx, x) == "b" else x  # Keras: bool -> int32
    return ctx.reduce("ReduceProd", x, _axes(ctx, layer, inputs[0]), int(layer.keepdims))


def _variance(ctx, layer, x: str) -> str:
    """tf.math.reduce_variance: mean((x - mean(x))^2), in float32 for integers."""
    axes = _axes(ctx, layer, x)
    d = ctx.op("Sub", _float(ctx, x), ctx.reduce("ReduceMean", _float(ctx, x), axes))
    return ctx.reduce("ReduceMean", ctx.op("Mul", d, d), axes, int(layer.keepdims))


@exporter("Var")
def var(ctx, layer, inputs, weights):
    return _variance(ctx, layer, inputs[0])


@exporter("Std")
def std(ctx, layer, inputs, weights):
    return ctx.op("Sqrt", _variance(ctx, layer, inputs[0]))


@exporter("Logsumexp")
def logsumexp(ctx, layer, inputs, weights):
    """tf.reduce_logsumexp: m = max (0 where not finite); log(sum(exp(x - m))) + m."""
    x, axes = _float(ctx, inputs[0]), _axes(ctx, layer, inputs[0])
    m = ctx.reduce("ReduceMax", x, axes)
    finite = ctx.op("Not", ctx.op("Or", ctx.op("IsNaN", m), ctx.op("IsInf", m)))
    m = ctx.op("Where", finite, m, _const(ctx, 0.0, m))
    y = ctx.op("Log", ctx.reduce("ReduceSum", ctx.op("Exp", ctx.op("Sub", x, m)), axes, int(layer.keepdims)))
    return ctx.op("Add", y, m if layer.keepdims else ctx.op("Squeeze", m, ctx.ints(axes, "axes")))


def _any_all(onnx_op: str):
    def export(ctx, layer, inputs, weights):
        x = ctx.op("Cast", _bool(ctx, inputs[0]), to=INT32)  # no bool reductions before opset 20
        y = ctx.reduce(onnx_op, x, _axes(ctx, layer, inputs[0]), int(layer.keepdims))
        return ctx.op("Cast", y, to=BOOL)
    return export


exporter("Any")(_any_all("ReduceMax"))
exporter("All")(_any_all("ReduceMin"))


def _arg(onnx_op: str):
    def export(ctx, layer, inputs, weights):
        """Keras: -0.0 becomes -tiny (below +0.0); axis None flattens; int32 out (ONNX gives int64)."""
        x = inputs[0]
        rank = len(ctx.shape(x))
        if _kind(ctx, x) == "f" and rank:
            zero = _const(ctx, 0.0, x)
            minus = ctx.op("Less", ctx.op("Div", _const(ctx, 1.0, x), x), zero)  # 1 / -0 = -inf
            minus_zero = ctx.op("And", ctx.op("Equal", x, zero), minus)
            x = ctx.op("Where", minus_zero, _const(ctx, -np.finfo(ctx.dtype(x)).tiny, x), x)
        elif _kind(ctx, x) == "b":
            x = ctx.op("Cast", x, to=INT32)
        keep = int(layer.keepdims)
        if layer.axis is None:
            y = ctx.op(onnx_op, ctx.op("Reshape", x, ctx.ints([-1], "flat")), axis=0, keepdims=0)
            y = ctx.op("Reshape", y, ctx.ints([1] * rank, "shape")) if keep else y
        else:
            y = ctx.op(onnx_op, x, axis=layer.axis[0], keepdims=keep)
        return ctx.op("Cast", y, to=INT32)
    return export


exporter("Argmax")(_arg("ArgMax"))
exporter("Argmin")(_arg("ArgMin"))


# ------------------------------------------------------------------ shapes
@exporter("Stack")
def stack(ctx, layer, inputs, weights):
    tensors, _ = _promote(ctx, inputs[0])
    axes = ctx.ints([layer.axis], "axes")
    return ctx.op("Concat", *[ctx.op("Unsqueeze", t, axes) for t in tensors], axis=int(layer.axis))


@exporter("GetItem")
def get_item(ctx, layer, inputs, weights):
    """x[key]: one Slice (slices, and ints as [k, k + 1]), Squeeze of the int axes, Unsqueeze for None."""
    x, raw = inputs[0], inputs[1]
    key = getitem_key(raw, f"layer '{layer.name}' (GetItem)")
    keys = list(key) if isinstance(key, tuple) else [key]
    if Ellipsis not in keys:
        keys.append(Ellipsis)
    fill = len(ctx.shape(x)) - (len(keys) - 1 - keys.count(None))  # axes the Ellipsis stands for
    starts, ends, steps, axes, squeeze, unsqueeze = [], [], [], [], [], []
    i = o = 0  # input axis, output axis
    for k in keys:
        if k is Ellipsis:
            i, o = i + fill, o + fill
        elif k is None:
            unsqueeze.append(o)
            o += 1
        elif isinstance(k, slice):
            if k != slice(None):
                step = 1 if k.step is None else k.step
                starts.append(k.start if k.start is not None else 0 if step > 0 else INT64_MAX)
                ends.append(k.stop if k.stop is not None else INT64_MAX if step > 0 else INT64_MIN)
                steps.append(step)
                axes.append(i)
            i, o = i + 1, o + 1
        elif isinstance(k, int):  # a size-1 slice, squeezed
            starts.append(k)
            ends.append(INT64_MAX if k == -1 else k + 1)
            steps.append(1)
            axes.append(i)
            squeeze.append(i)
            i += 1
        else:
            raise UnsupportedError(f"layer '{layer.name}' (GetItem): only ints, slices, None and ... export. "
                                   f"Received: {k!r}")
    y = x
    if axes:
        y = ctx.op("Slice", y, ctx.ints(starts, "starts"), ctx.ints(ends, "ends"), ctx.ints(axes, "axes"),
                   ctx.ints(steps, "steps"))
    if squeeze:
        y = ctx.op("Squeeze", y, ctx.ints(squeeze, "squeeze_axes"))
    if unsqueeze:
        y = ctx.op("Unsqueeze", y, ctx.ints(unsqueeze, "unsqueeze_axes"))
    return y
