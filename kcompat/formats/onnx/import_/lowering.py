"""The contract of an ONNX op's lowering, and the table of them.

A lowering turns one ONNX node into Keras layers and Keras 3 op nodes, through the Builder
(builder.py). Its signature is the op's schema, tinygrad style: inputs positional, attributes by
keyword with the ONNX defaults (``def Gemm(b, A, B, C=None, alpha=1.0, ...)``). An attribute the
signature does not name is refused, so no semantics are silently dropped. Inputs arrive as ``Sym`` (a
Keras tensor), a NumPy array (a folded constant), a ``Dynamic`` value (computed from input shapes) or
None (an omitted optional input). A lowering returns the value(s) of the node's outputs; opset
differences live inside it. Lowerings live in lower_*.py by family and register here with
``@lowering``; this module imports none of them (driver.py does). A name registered twice is an error.
Reference: onnx/reference/ops/op_*.py; https://onnx.ai/onnx/operators/.
"""
from __future__ import annotations

import math
from typing import Any, Callable

import numpy as np

from ....errors import UnsupportedError
from .builder import Sym

LOWERINGS: dict[str, Callable] = {}
NN = "keras.src.ops.nn"  # the module of Keras 3 nn op nodes
CF = "channels_first"


class Dynamic:
    """A value computed from input shapes: its values at the two probe sizes (see graph.py)."""

    def __init__(self, v0: np.ndarray, v1: np.ndarray):
        self.values = (v0, v1)



def lowering(*op_types: str):
    """Register the lowering of ONNX op types (each at most once)."""
    def wrap(fn):
        for op in op_types:
            if op in LOWERINGS:
                old = LOWERINGS[op]
                raise RuntimeError(f"two lowerings for ONNX op {op!r}: {old.__module__}.{old.__name__} and "
                                   f"{fn.__module__}.{fn.__name__}")
            LOWERINGS[op] = fn
        return fn
    return wrap


def refuse(what: str) -> UnsupportedError:
    """An UnsupportedError whose text becomes the op's label in the report ("Gemm (transA=1)")."""
    return UnsupportedError(what)


def as_sym(b, x: Any, what: str = "input") -> Sym:
    """``x`` as a Keras tensor; refused when it is a constant (the op needs a computed input)."""
    if not isinstance(x, Sym):
        raise refuse(f"{what} must be computed from the model input")
    return x


def as_const(x: Any, what: str) -> np.ndarray:
    """``x`` as a constant array; refused when it is computed from the model input."""
    if not isinstance(x, np.ndarray):
        raise refuse(f"{what} must be a constant")
    return x


def f32(value: float) -> float:
    """An ONNX float attribute (float32) as the short decimal it was written from: 0.01, not 0.00999999977."""
    return float(str(np.float32(value)))


def close(a: float, b: float) -> bool:
    """Two float attributes equal up to float32 rounding."""
    return math.isclose(a, b, rel_tol=1e-6, abs_tol=1e-7)


def axes_arg(x: Any, attr: Any = None) -> list[int] | None:
    """Axes given as an attribute (older opsets) or as a constant input (newer)."""
    if x is not None:
        return [int(v) for v in np.atleast_1d(as_const(x, "axes"))]
    return None if attr is None else [int(v) for v in np.atleast_1d(attr)]
