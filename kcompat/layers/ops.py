"""Keras 3 op nodes: ``x * 2``, ``keras.ops.mean(x, axis=1)``, ``x[:, 1:3]`` in a Functional model.

Keras 3 serializes them as layers with module ``keras.src.ops.numpy`` / ``.nn`` / ``.math`` /
``.core`` and the op's class name (``Multiply``, ``Mean``, ``GetItem``...). The op's own parameters
(``axis``, ``keepdims``, ``newshape``) are in its config; the call arguments (tensors and
constants, e.g. ``[tensor, 2]``) are in the node. So ops override ``call_node`` /
``node_output_shape`` and see every argument: arrays when running, shape tuples during shape
inference (a tuple is a tensor's shape; numbers and lists are constants).
Output shapes follow keras/src/ops/operation_utils.py (``broadcast_shapes``, ``reduce_shape``...).
Keras computes in float32: a float64 result (e.g. int / int) is cast back unless an input was float64.
This module: the op base and the elementwise ops; ops_array.py: reductions and shape ops.
"""
from __future__ import annotations

from typing import Any

import numpy as np

from ..errors import UnsupportedError
from . import activations as act
from .base import Layer, fmt_shape, register


# ---------------------------------------------------------------- helpers

CONSTANTS = ("__tensor__", "__numpy__")  # how Keras serializes a constant tensor / array argument


def constant(value: Any) -> Any:
    """A serialized constant (``{"class_name": "__tensor__", "config": {"value", "dtype"}}``) as an array."""
    if isinstance(value, dict) and value.get("class_name") in CONSTANTS:
        cfg = value.get("config") or {}
        try:
            return np.asarray(cfg.get("value"), dtype=np.dtype(cfg.get("dtype") or "float32"))
        except TypeError:
            raise UnsupportedError(f"constant of dtype {cfg.get('dtype')!r} has no NumPy equivalent") from None
    return value


def shape_of(value: Any) -> tuple:
    """A tensor's shape (a tuple) or a constant's shape (numbers: ())."""
    if isinstance(value, tuple):
        return value
    return tuple(np.shape(as_array(value)))


def broadcast_shapes(a: tuple, b: tuple) -> tuple:
    """keras operation_utils.broadcast_shapes: an unknown size against n > 1 becomes n."""
    a, b = list(a), list(b)
    a = [1] * (len(b) - len(a)) + a
    b = [1] * (len(a) - len(b)) + b
    out = []
    for i, j in zip(a, b):
        if i == 1:
            out.append(j)
        elif i is None:
            out.append(None if j == 1 else j)
        elif j in (1, None, i):
            out.append(i)
        else:
            raise ValueError(f"cannot broadcast shapes {fmt_shape(tuple(a))} and {fmt_shape(tuple(b))}")
    return tuple(out)


def canonical_axis(axis: int, ndim: int) -> int:
    if not -ndim <= axis < max(ndim, 1):
        raise ValueError(f"axis {axis} is out of bounds for rank {ndim}")
    return axis % ndim if ndim else 0


def axes_tuple(value: Any) -> tuple | None:
    """An ``axis`` config value (None, an int or a list) as a tuple, None kept."""
    if value is None:
        return None
    return tuple(value) if isinstance(value, (list, tuple)) else (value,)


def as_array(value: Any) -> Any:
    """Arrays and Python numbers pass (numbers stay weakly typed, as in Keras); serialized constants and
    lists of numbers become arrays (float32 for floats); lists holding tensors are converted item by item."""
    value = constant(value)
    if isinstance(value, list):
        items = [as_array(v) for v in value]
        if any(isinstance(v, (np.ndarray, tuple)) for v in items):
            return items
        arr = np.asarray(items)
        return arr.astype(np.float32) if arr.dtype == np.float64 else arr
    return value


def _finish(y: Any, args: Any) -> np.ndarray:
    y = np.asarray(y)
    if y.dtype == np.float64 and not _has_float64(args):
        return y.astype(np.float32)
    return y


def _has_float64(obj: Any) -> bool:
    if isinstance(obj, np.ndarray):
        return obj.dtype == np.float64
    if isinstance(obj, (list, tuple)):
        return any(_has_float64(o) for o in obj)
    if isinstance(obj, dict):
        return any(_has_float64(o) for o in obj.values())
    return False


class Op(Layer):
    """A Keras 3 op node: ``compute(*args, **kwargs)`` on arrays, ``shape(*args, **kwargs)`` on shapes."""

    what = ""  # a few words on what the op does, for explain

    def compute(self, *args, **kwargs) -> Any:
        raise NotImplementedError

    def shape(self, *args, **kwargs) -> Any:
        return shape_of(args[0])

    def call_node(self, args, kwargs, weights):
        args = [as_array(a) for a in args]
        y = self.compute(*args, **kwargs)
        return [_finish(v, args) for v in y] if isinstance(y, list) else _finish(y, args)  # TopK: 2 outputs

    def node_output_shape(self, args, kwargs):
        try:
            return self.shape(*args, **kwargs)
        except TypeError as e:
            raise self.fail(f"unexpected call arguments: {e}") from None

    def node_input_shape(self, args, kwargs):
        """The first tensor argument's shape (``2 - x`` has a constant first)."""
        for a in args:
            if isinstance(a, tuple) or (isinstance(a, list) and a and all(isinstance(t, tuple) for t in a)):
                return a
        return ()

    def forward(self, x, *weights):
        return _finish(self.compute(x), [x])

    def explain(self, input_shape, output_shape):
        what = f" ({self.what})" if self.what else ""
        return f"keras op {self.class_name}{what}; 0 params"


# ---------------------------------------------------------------- elementwise

class _Unary(Op):
    """y = fn(x), same shape."""

    layout = "elementwise"

    what = "elementwise, shape unchanged"

    fn = staticmethod(np.negative)

    def compute(self, x):
        return self.fn(x)


class _Binary(Op):
    """y = fn(x1, x2) with broadcasting; either side may be a constant."""

    layout = "elementwise"

    what = "elementwise with broadcasting"

    fn = staticmethod(np.add)

    def compute(self, x1, x2):
        return self.fn(x1, x2)

    def shape(self, x1, x2):
        return broadcast_shapes(shape_of(x1), shape_of(x2))


def register_table(base: type, table: dict) -> None:
    """Register one op class per ``name: fn`` entry, subclassing ``base`` with that ``fn``."""
    for name, fn in table.items():
        register(name, op=True)(type(name, (base,), {"fn": staticmethod(fn), "__doc__": f"keras op {name}."}))


def _quiet(fn):
    """fn without NumPy's divide-by-zero / invalid warnings (TF returns inf / nan silently)."""
    def wrapped(*args):
        with np.errstate(divide="ignore", invalid="ignore"):
            return fn(*args)
    return wrapped


register_table(_Unary, {
    "Absolute": np.abs, "Abs": np.abs, "Negative": np.negative, "Square": np.square,
    "Sqrt": _quiet(np.sqrt), "Exp": np.exp, "Log": _quiet(np.log), "Log1p": _quiet(np.log1p),
    "Log2": _quiet(np.log2), "Log10": _quiet(np.log10), "Expm1": _quiet(np.expm1), "Exp2": _quiet(np.exp2),
    "Sin": np.sin, "Cos": np.cos, "Tan": np.tan, "Sinh": np.sinh, "Cosh": np.cosh, "Tanh": np.tanh,
    "Arcsin": np.arcsin, "Arccos": np.arccos, "Arctan": np.arctan, "Arctanh": np.arctanh, "Arcsinh": np.arcsinh,
    "Arccosh": _quiet(np.arccosh),
    "Floor": np.floor, "Ceil": np.ceil, "Trunc": np.trunc, "Sign": np.sign,
    "Reciprocal": _quiet(np.reciprocal), "Rsqrt": _quiet(lambda x: 1 / np.sqrt(x)),
    "Erf": act.erf, "LogicalNot": np.logical_not, "Isnan": np.isnan, "Isinf": np.isinf, "Isfinite": np.isfinite,
    # keras.src.ops.nn
    "Relu": act.relu, "Relu6": act.relu6, "Sigmoid": act.sigmoid, "Softplus": act.softplus,
    "Softsign": act.softsign, "Silu": act.silu, "LogSigmoid": act.log_sigmoid, "HardSigmoid": act.hard_sigmoid,
    "HardSilu": act.hard_silu, "Selu": act.selu, "SparsePlus": act.sparse_plus, "SparseSigmoid": act.sparse_sigmoid,
    "TanhShrink": act.tanh_shrink, "HardTanh": act.hard_tanh,
})

register_table(_Binary, {
    "Add": np.add, "Subtract": np.subtract, "Multiply": np.multiply, "Divide": _quiet(np.true_divide),
    "TrueDivide": _quiet(np.true_divide), "FloorDivide": _quiet(np.floor_divide), "Mod": _quiet(np.mod),
    "Power": np.power, "Maximum": np.maximum, "Minimum": np.minimum,
    "Greater": np.greater, "GreaterEqual": np.greater_equal, "Less": np.less, "LessEqual": np.less_equal,
    "Equal": np.equal, "NotEqual": np.not_equal, "LogicalAnd": np.logical_and, "LogicalOr": np.logical_or,
    "LogicalXor": np.logical_xor, "Arctan2": np.arctan2, "Hypot": np.hypot, "Fmod": _quiet(np.fmod),
    # bitwise (integers and bools); shifts by the bit width or more give 0 (NumPy; TF leaves them undefined)
    "BitwiseAnd": np.bitwise_and, "BitwiseOr": np.bitwise_or, "BitwiseXor": np.bitwise_xor,
    "LeftShift": np.left_shift, "BitwiseLeftShift": np.left_shift, "RightShift": np.right_shift,
    "BitwiseRightShift": np.right_shift,
})

register_table(_Unary, {"BitwiseInvert": np.invert, "BitwiseNot": np.invert})


class _Parametric(Op):
    """An elementwise nn op whose parameter is in its config."""

    layout = "elementwise"

    key, default = "", None

    def __init__(self, config, name=None):
        super().__init__(config, name)
        self.param = self.get(self.key, self.default)


@register("LeakyRelu", op=True)
class LeakyRelu(_Parametric):
    key, default = "negative_slope", 0.2

    def compute(self, x):
        return np.where(x > 0, x, np.asarray(self.param, x.dtype) * x)


@register("Elu", op=True)
class Elu(_Parametric):
    key, default = "alpha", 1.0

    def compute(self, x):
        return act.elu(x, self.param)


@register("Celu", op=True)
class Celu(_Parametric):
    key, default = "alpha", 1.0

    def compute(self, x):
        return act.celu(x, self.param)


@register("Gelu", op=True)
class Gelu(_Parametric):
    key, default = "approximate", True

    def compute(self, x):
        return act.gelu(x, bool(self.param))


@register("Squareplus", op=True)
class Squareplus(_Parametric):
    key, default = "b", 4

    def compute(self, x):
        return act.squareplus(x, self.param)


@register("HardShrink", op=True)
class HardShrink(_Parametric):
    key, default = "threshold", 0.5

    def compute(self, x):
        return act.hard_shrink(x, self.param)


@register("SoftShrink", op=True)
class SoftShrink(_Parametric):
    key, default = "threshold", 0.5

    def compute(self, x):
        return act.soft_shrink(x, self.param)


@register("Softmax", op=True)
class Softmax(_Parametric):
    layout = "axis"

    key, default = "axis", -1

    def compute(self, x):
        return act.softmax(x, axis=tuple(self.param) if isinstance(self.param, list) else self.param)


@register("LogSoftmax", op=True)
class LogSoftmax(_Parametric):
    layout = "axis"

    key, default = "axis", -1

    def compute(self, x):
        return act.log_softmax(x, axis=tuple(self.param) if isinstance(self.param, list) else self.param)


@register("Threshold", op=True)
class Threshold(Op):
    """x where x > threshold, else default_value (``ops.threshold``; ThresholdedRelu with 0)."""

    def __init__(self, config, name=None):
        super().__init__(config, name)
        self.threshold, self.default_value = self.get("threshold"), self.get("default_value")
        values = (self.threshold, self.default_value)
        if not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values):
            raise self.fail(f"'threshold' and 'default_value' must be numbers. Received: threshold={self.threshold!r}, "
                            f"default_value={self.default_value!r}")

    def compute(self, x):
        return np.where(x > self.threshold, x, np.asarray(self.default_value).astype(x.dtype))


@register("Clip", op=True)
class Clip(Op):

    layout = "elementwise"
    def __init__(self, config, name=None):
        super().__init__(config, name)
        self.x_min, self.x_max = self.get("x_min"), self.get("x_max")

    def compute(self, x):
        return np.clip(x, self.x_min, self.x_max)


@register("Round", op=True)
class Round(Op):

    layout = "elementwise"
    def __init__(self, config, name=None):
        super().__init__(config, name)
        self.decimals = int(self.get("decimals", 0))

    def compute(self, x):
        return np.round(x, self.decimals)  # half to even, like TF


NARROW_FLOATS = ("bfloat16", "float8_e4m3fn", "float8_e5m2")  # Keras dtypes NumPy knows through ml_dtypes


def narrow_float(name: str) -> np.dtype:
    """bfloat16 / float8_e4m3fn / float8_e5m2 as NumPy dtypes (ml_dtypes, which onnx installs; RNE rounding)."""
    import ml_dtypes
    return np.dtype(getattr(ml_dtypes, name))


@register("Cast", op=True)
class Cast(Op):

    layout = "elementwise"
    def __init__(self, config, name=None):
        super().__init__(config, name)
        dtype = self.get("dtype", "float32")
        if isinstance(dtype, dict):
            dtype = dtype.get("config", {}).get("name", dtype)
        try:
            self.dtype = narrow_float(dtype) if dtype in NARROW_FLOATS else np.dtype(dtype)
        except TypeError:
            raise UnsupportedError(f"layer '{self.name}' (Cast): dtype {dtype!r} has no NumPy equivalent") from None

    def call_node(self, args, kwargs, weights):
        return np.asarray(args[0]).astype(self.dtype)


@register("ZerosLike", op=True)
class ZerosLike(Cast):
    """zeros of x's shape, in ``dtype`` (x's when null). Keras 3 writes them into a graph to compute the
    mask of a Concatenate (keras/src/layers/merging/concatenate.py compute_mask)."""

    value = 0

    def __init__(self, config, name=None):
        Op.__init__(self, config, name)
        self.dtype = None if self.config.get("dtype") is None else Cast(config, name).dtype

    def call_node(self, args, kwargs, weights):
        x = np.asarray(args[0])
        return np.full(x.shape, self.value, x.dtype if self.dtype is None else self.dtype)


@register("OnesLike", op=True)
class OnesLike(ZerosLike):
    """ones of x's shape, in ``dtype`` (x's when null)."""

    value = 1


@register("Where", op=True)
class Where(Op):
    """condition ? x1 : x2."""

    layout = "elementwise"

    def compute(self, condition, x1=None, x2=None):
        if x1 is None or x2 is None:
            raise UnsupportedError(f"layer '{self.name}' (Where): where(condition) without x1 / x2 is not supported")
        return np.where(condition, x1, x2)

    def shape(self, condition, x1=None, x2=None):
        if x1 is None or x2 is None:
            raise UnsupportedError(f"layer '{self.name}' (Where): where(condition) without x1 / x2 is not supported")
        return broadcast_shapes(broadcast_shapes(shape_of(condition), shape_of(x1)), shape_of(x2))


@register("Matmul", op=True)
class Matmul(Op):
    """np.matmul; 1-D operands are promoted and the added axis removed."""

    def compute(self, x1, x2):
        return np.matmul(x1, x2)

    def shape(self, x1, x2):
        s1, s2 = shape_of(x1), shape_of(x2)
        a = (1, s1[0]) if len(s1) == 1 else s1
        b = (s2[0], 1) if len(s2) == 1 else s2
        if a[-1] is not None and b[-2] is not None and a[-1] != b[-2]:
            raise ValueError(f"inner dimensions differ: {fmt_shape(s1)} @ {fmt_shape(s2)}")
        out = [*broadcast_shapes(a[:-2], b[:-2]), a[-2], b[-1]]
        if len(s1) == 1:
            del out[-2]
        if len(s2) == 1:
            del out[-1]
        return tuple(out)
