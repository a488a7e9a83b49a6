"""Shapes as kcompat's graph code holds them: a tuple of ints and Nones per tensor, a list for several.

Helpers for Model (kcompat/model.py): telling a shape from a list of shapes, checking a computed
shape is within bounds (a hostile config can compute any integer), printing either.
"""
from __future__ import annotations

from typing import Any

import numpy as np

from .layers.base import fmt_shape, leaves
from .schema import MAX_DIM


def is_shapes(value: Any) -> bool:
    """A shape, or a non-empty list of shapes (what a layer's input may be)."""
    return is_shape(value) or (isinstance(value, list) and bool(value) and all(is_shapes(v) for v in value))


def arrays_in(obj: Any) -> list:
    """The arrays in a nested call-argument structure."""
    return [a for a in leaves(obj) if isinstance(a, np.ndarray)]


def sane(shape: Any) -> bool:
    """Every dimension unknown or from 0 to MAX_DIM (a shape computed from a hostile config may not be)."""
    if isinstance(shape, list):
        return all(sane(s) for s in shape)
    for d in shape:
        if d is not None and not 0 <= d <= MAX_DIM:
            return False
    return True


def is_shape(value: Any) -> bool:
    if type(value) is not tuple:
        return False
    for d in value:
        if d is not None and not isinstance(d, (int, np.integer)):
            return False
    return True


def as_shape(value: Any) -> Any:
    if isinstance(value, list) and not is_shape(tuple(value)):
        return [as_shape(v) for v in value]
    return tuple(None if d is None else int(d) for d in value)


def fmt_any(value: Any) -> str:
    if is_shape(value):
        return fmt_shape(value)
    if isinstance(value, list):
        return "[" + ", ".join(fmt_any(v) for v in value) + "]"
    return repr(value)
