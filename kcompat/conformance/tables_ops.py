"""Conformance cases of the Keras 3 op nodes (``x * 2``, ``keras.ops.mean(x, axis=1)``, ``x[:, 1:3]``...):
one or more per op class kcompat runs (layers/base.py OP_REGISTRY), each a Functional model whose node
under test is that op, fed inputs of the dtype it takes so no other op is needed.
Rows follow tests/test_ops.py and tests/test_onnx_export_ops.py.
"""
from __future__ import annotations

import numpy as np

from .variant import BATCH, Variant, X, Y, Z, op

A, B = (4, 3), (3, 5)
INTS, SMALL = "int32:-6:7", "int32:-2:3"  # SMALL: ties for comparisons
BOOLS = ("bool", "bool")
F32 = np.float32


def unary(name: str, data: str = "normal", **kwargs) -> list[Variant]:
    return [op(name, A, data=data, **kwargs)]


def compare(name: str) -> list[Variant]:
    """A comparison of two tensors with ties, and of a tensor with a constant."""
    return [op(name, [A, A], data=(SMALL, SMALL)), op(name, A, X, 0.5, data="wide")]


OPS: dict[str, list[Variant]] = {
    # arithmetic
    "Add": [op("add", [A, (1, 3)]), op("add", A, X, 0.5), op("add", (5,), X, 1, data=INTS)],
    "Subtract": [op("subtract", A, 2, X), op("subtract", [A, A])],
    "Multiply": [op("multiply", A, X, 2), op("multiply", [A, (1, 3)])],
    "Divide": [op("divide", A, X, 4.0), op("divide", [A, A], data=("normal", "pos"))],
    "TrueDivide": [op("true_divide", [A, A], data=("normal", "pos")), op("true_divide", (5,), X, 2, data=INTS)],
    "FloorDivide": [op("floor_divide", A, X, 0.5, data="wide"), op("floor_divide", (5,), X, -4, data=INTS)],
    "Mod": [op("mod", A, X, 0.7, data="wide"), op("mod", (5,), X, 3, data=INTS)],
    "Fmod": [op("fmod", A, X, 0.7, data="wide")],
    "Power": [op("power", A, X, 3), op("power", [A, A], data=("pos", "normal"))],
    "Maximum": [op("maximum", A, X, 0.5), op("maximum", [A, A])],
    "Minimum": [op("minimum", [A, A]), op("minimum", (5,), 3, X, data=INTS)],
    "Hypot": [op("hypot", [A, A])],
    "Arctan2": [op("arctan2", [A, A])],
    "Matmul": [op("matmul", [A, B]), op("matmul", [(3,), (3, 2)])],
    "Einsum": [op("einsum", [A, (3, 2)], "bij,bjk->bik", X, Y),
               op("einsum", A, "bij,j->bi", X, np.array([1.0, -2.0, 0.5], F32))],
    # one-argument math
    "Abs": [op("keras.src.ops.numpy.Abs", A)],  # keras.ops.abs makes Absolute
    "Absolute": [op("absolute", A), op("abs", (5,), data=INTS)],
    "Negative": unary("negative"),
    "Square": unary("square"),
    "Sqrt": unary("sqrt", "pos"),
    "Rsqrt": unary("rsqrt", "pos"),
    "Reciprocal": unary("reciprocal", "pos"),
    "Exp": unary("exp"),
    "Exp2": unary("exp2"),
    "Expm1": unary("expm1"),
    "Log": unary("log", "pos"),
    "Log2": unary("log2", "pos"),
    "Log10": unary("log10", "pos"),
    "Log1p": unary("log1p", "pos"),
    "Sin": unary("sin", "wide"),
    "Cos": unary("cos", "wide"),
    "Tan": unary("tan", "unit"),
    "Sinh": unary("sinh"),
    "Cosh": unary("cosh"),
    "Tanh": unary("tanh", "wide"),
    "Arcsin": unary("arcsin", "unit"),
    "Arccos": unary("arccos", "unit"),
    "Arctan": unary("arctan", "wide"),
    "Arcsinh": unary("arcsinh", "wide"),
    "Arccosh": unary("arccosh", "ge1"),
    "Arctanh": unary("arctanh", "unit"),
    "Erf": unary("erf"),
    "Ceil": unary("ceil", "wide"),
    "Floor": unary("floor", "wide"),
    "Trunc": unary("trunc", "wide"),
    "Round": [op("round", A, data="wide"), op("round", A, X, 1, data="wide")],
    "Sign": [op("sign", A), op("sign", (5,), data=INTS)],
    "Clip": [op("clip", A, X, -0.5, 0.5), op("clip", (5,), X, -2, 3, data=INTS)],
    "Isfinite": unary("isfinite", "special"),
    "Isinf": unary("isinf", "special"),
    "Isnan": unary("isnan", "special"),
    "Cast": [op("cast", A, X, "int32", data="wide"), op("cast", (5,), X, "float32", data=INTS),
             op("cast", A, X, "bool", data=SMALL)],
    "Where": [op("where", [A, A, A], data=("bool", "normal", "normal")), op("where", [A, A], X, Y, 0.0,
                                                                             data=("bool", "normal"))],
    # activations (keras.ops.nn)
    "Relu": unary("relu"),
    "Relu6": unary("relu6", "wide"),
    "Sigmoid": unary("sigmoid", "wide"),
    "Silu": unary("silu"),
    "Gelu": [op("gelu", A), op("gelu", A, approximate=False)],
    "Softplus": unary("softplus", "wide"),
    "Softsign": unary("softsign"),
    "LeakyRelu": unary("leaky_relu", negative_slope=0.1),
    "Elu": unary("elu", alpha=0.5),
    "Selu": unary("selu"),
    "Celu": unary("celu", alpha=0.5),
    "HardSigmoid": unary("hard_sigmoid", "wide"),
    "HardSilu": unary("hard_silu", "wide"),
    "HardTanh": unary("hard_tanh", "wide"),
    "HardShrink": unary("hard_shrink", threshold=0.3),
    "SoftShrink": unary("soft_shrink"),
    "TanhShrink": unary("tanh_shrink"),
    "SparsePlus": unary("sparse_plus", "wide"),
    "SparseSigmoid": unary("sparse_sigmoid", "wide"),
    "Squareplus": unary("squareplus", b=2),
    "LogSigmoid": unary("log_sigmoid"),
    "Softmax": [op("softmax", A, axis=1), op("softmax", A)],
    "LogSoftmax": unary("log_softmax"),
    "Threshold": [op("threshold", A, X, 0.3, -1.0)],
    # comparisons and logic
    "Equal": compare("equal"),
    "NotEqual": compare("not_equal"),
    "Greater": compare("greater"),
    "GreaterEqual": compare("greater_equal"),
    "Less": compare("less"),
    "LessEqual": compare("less_equal"),
    "LogicalAnd": [op("logical_and", [A, A], data=BOOLS)],
    "LogicalOr": [op("logical_or", [A, A], data=BOOLS)],
    "LogicalXor": [op("logical_xor", [A, A], data=BOOLS)],
    "LogicalNot": [op("logical_not", A, data="bool"), op("logical_not", A, data=SMALL)],
    # reductions
    "Mean": [op("mean", A, axis=1), op("mean", A, axis=(1, 2), keepdims=True)],
    "Sum": [op("sum", A, axis=[1, 2], keepdims=True), op("sum", (5,), axis=-1, data="int8:-120:120")],
    "Prod": [op("prod", A, axis=1), op("prod", A, keepdims=True)],
    "Max": [op("max", A), op("max", A, axis=1, initial=0.5)],
    "Min": [op("min", A, axis=-1), op("min", (5,), axis=-1, initial=-2, data=INTS)],
    "Amax": [op("amax", A, axis=1)],
    "Amin": [op("amin", A, axis=1)],
    "Var": [op("var", A, axis=-1), op("var", A)],
    "Std": [op("std", A, axis=-1), op("std", A, axis=(1, 2), keepdims=True)],
    "Logsumexp": [op("logsumexp", A, axis=-1), op("logsumexp", A)],
    "Argmax": [op("argmax", A, axis=-1), op("argmax", A, axis=1, keepdims=True, data=SMALL)],
    "Argmin": [op("argmin", A, axis=1, keepdims=True), op("argmin", A, data=SMALL)],
    "Any": [op("any", A, axis=1, data="bool"), op("any", A, data=SMALL)],
    "All": [op("all", A, axis=-1, keepdims=True, data="bool"), op("all", A, axis=1, data=SMALL)],
    # shapes and indexing
    "Reshape": [op("reshape", A, X, (-1, 12)), op("reshape", A, X, (-1, 2, 6))],
    "Transpose": [op("transpose", A, X, (0, 2, 1)), op("transpose", A)],
    "ExpandDims": [op("expand_dims", A, X, 1), op("expand_dims", A, X, -1)],
    "Squeeze": [op("squeeze", (1, 4), axis=1), op("squeeze", (1, 4, 1))],
    "Concatenate": [op("concatenate", [A, (4, 2)], [X, Y], axis=-1), op("concatenate", [A, (2, 3)], [X, Y], axis=1)],
    "Stack": [op("stack", [A, A], [X, Y], axis=1), op("stack", [A, A, A], [X, Y, Z], axis=-1)],
    "Tile": [op("tile", A, X, (1, 2, 3)), op("tile", A, X, 2)],
    "GetItem": [op("getitem", A, X, (slice(None), slice(1, 3))), op("getitem", A, X, (Ellipsis, 0)),
                op("getitem", A, X, (slice(None), None, 1)), op("getitem", A, X, (slice(None), slice(None, None, 2),
                                                                                  slice(1, None))),
                op("getitem", A, X, (slice(None), slice(3, 0, -2), slice(-1, None, -1)))],
    "BroadcastTo": [op("broadcast_to", (1, 3), X, (BATCH, 4, 3))],
    "Flip": [op("flip", A, axis=1), op("flip", A)],
    "Tril": [op("tril", A, k=-1), op("tril", A)],
    "Triu": [op("triu", A, k=1), op("triu", (3, 3))],
    "Cumsum": [op("cumsum", A, axis=1), op("cumsum", (5,), data="int8:-6:7")],
    "Cumprod": [op("cumprod", A, axis=-1)],
    "TopK": [op("top_k", A, X, 2), op("top_k", A, X, 3, data=SMALL)],
    "Take": [op("take", A, X, np.array([0, -1, 2, 2]), axis=1), op("take", A, X, np.array([[0, 2], [1, 1]]), axis=-1)],
    "TakeAlongAxis": [op("take_along_axis", A, X, np.array([[[2, 0, 1], [3, -1, 0]]], np.int32), axis=1)],
    "ScatterUpdate": [op("scatter_update", A, X, np.array([[0, 1], [2, 3]]),
                         np.array([[5.0, 6.0, 7.0], [-1.0, -2.0, -3.0]], F32))],
    "OneHot": [op("one_hot", (5,), X, 4, axis=1, data="int32:-2:4"), op("one_hot", (2,), X, 3, dtype="int64",
                                                                         data="int:3")],
    "OnesLike": [op("ones_like", A), op("ones_like", A, dtype="int32")],
    "ZerosLike": [op("zeros_like", A), op("zeros_like", (5,), data=INTS)],
    "Size": [op("size", A)],
    "Det": [op("linalg.det", (3, 3))],
    # bitwise (integers)
    "BitwiseAnd": [op("bitwise_and", [(5,), (5,)], data=(INTS, INTS))],
    "BitwiseOr": [op("bitwise_or", [(5,), (5,)], data=(INTS, INTS))],
    "BitwiseXor": [op("bitwise_xor", [(5,), (5,)], data=(INTS, INTS))],
    "BitwiseNot": [op("bitwise_not", (5,), data=INTS)],
    "BitwiseInvert": [op("bitwise_invert", (5,), data=INTS), op("bitwise_invert", (5,), data="uint8:0:256")],
    "BitwiseLeftShift": [op("bitwise_left_shift", [(5,), (5,)], data=("uint8:0:256", "uint8:0:8"))],
    "BitwiseRightShift": [op("bitwise_right_shift", [(5,), (5,)], data=("uint8:0:256", "uint8:0:8"))],
    "LeftShift": [op("left_shift", (5,), X, 2, data="int32:-40:40")],
    "RightShift": [op("right_shift", (5,), X, 1, data="int32:-40:40")],
}
