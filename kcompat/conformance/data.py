"""The inputs of a conformance case: each data kind (variant.py lists them) as a dtype and seeded arrays."""
from __future__ import annotations

import numpy as np

from ..errors import KcompatError

FLOATS = ("normal", "wide", "masked", "pos", "ge1", "unit", "pixels", "special")
INTEGERS = ("int8", "int32", "int64", "uint8")
WIDE_INT64 = np.array([0, 1, -1, 7, 42, 1234, -98765, 123456789, 10 ** 15, -(2 ** 62), 2 ** 63 - 1], np.int64)


def dtype_of(kind: str) -> str:
    """The Keras Input dtype of data kind ``kind``."""
    if kind in FLOATS:
        return "float32"
    if kind == "bool":
        return "bool"
    head = kind.split(":")[0]
    if head in ("int", "ids"):
        return "int32"
    if head in INTEGERS:
        return head
    raise KcompatError(f"unknown conformance data kind {kind!r}")


def make_data(kind: str, shape: tuple, rng: np.random.Generator) -> np.ndarray:
    """Seeded data of kind ``kind`` and full shape ``shape`` (batch first)."""
    if kind in FLOATS:
        if kind == "unit":
            return rng.uniform(-0.9, 0.9, shape).astype(np.float32)
        if kind == "pixels":
            return rng.integers(0, 256, shape).astype(np.float32)
        x = rng.standard_normal(shape).astype(np.float32)
        if kind == "wide":
            x *= np.float32(4)
        elif kind == "pos":
            x = np.abs(x) + np.float32(0.1)
        elif kind == "ge1":
            x = np.abs(x) + np.float32(1)
        elif kind == "special":  # nan, inf, -inf and signed zeros among normal values
            flat = x.reshape(-1)
            flat[rng.permutation(flat.size)[:5]] = [np.nan, np.inf, -np.inf, 0.0, -0.0][:min(5, flat.size)]
        elif kind == "masked":  # whole time steps equal to mask_value (0.0)
            x[rng.random(shape[:2]) < 0.4] = 0.0
        return x
    if kind == "bool":
        return rng.random(shape) < 0.6
    head, *rest = kind.split(":")
    if head == "int":
        return rng.integers(0, int(rest[0]), size=shape).astype(np.int32)
    if head == "ids":
        return padded_ids(shape, int(rest[0]), rng)
    if kind == "int64:wide":
        return rng.choice(WIDE_INT64, size=shape)
    low, high = int(rest[0]), int(rest[1])
    return rng.integers(low, high, size=shape).astype(head)


def padded_ids(shape: tuple, vocab: int, rng: np.random.Generator) -> np.ndarray:
    """Index sequences (N, T) in [1, vocab) with the padding index 0: in the middle and at the end of the
    first row, the whole second row, a hole in the third (the masks an Embedding(mask_zero=True) makes)."""
    ids = rng.integers(1, vocab, size=shape).astype(np.int32)
    t = shape[1]
    ids[0, t // 3] = 0
    ids[0, t - 2:] = 0
    if shape[0] > 1:
        ids[1] = 0
    if shape[0] > 2:
        ids[2, 1:3] = 0
    return ids
