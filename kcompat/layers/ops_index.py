"""Keras 3 op nodes that scan, select or index: Cumsum / Cumprod, Triu / Tril, TopK, TakeAlongAxis, Take,
ScatterUpdate, OneHot, BroadcastTo, Flip, Size, Einsum.

Each follows its class in keras/src/ops/numpy.py, math.py, nn.py or core.py (config, output shape and
dtype) and what the TensorFlow backend computes (keras/src/backend/tensorflow/): TopK puts the lower
index first among equal values (tf.math.top_k), negative indices count from the end (Keras's "fill"
fix), one_hot of a negative index is all zeros (tf.one_hot). The op base is in ops.py.
"""
from __future__ import annotations

import re
from typing import Any

import numpy as np

from ..errors import UnsupportedError
from .base import fmt_shape, register
from .ops import Op, axes_tuple, broadcast_shapes, canonical_axis, shape_of


class _AxisOp(Op):
    """An op with an ``axis`` config value (None allowed)."""

    def __init__(self, config, name=None):
        super().__init__(config, name)
        self.axis = self.config.get("axis")
        if self.axis is not None and (isinstance(self.axis, bool) or not isinstance(self.axis, int)):
            raise self.fail(f"'axis' must be an integer or None. Received: axis={self.axis!r}")


class _Scan(_AxisOp):
    """Cumulative sum / product along ``axis`` (None: of the flattened tensor), in x's dtype (bool: int32)."""

    fn = staticmethod(np.cumsum)
    what = "running total along an axis"

    def compute(self, x):
        dtype = self.get("dtype") or (np.int32 if x.dtype == bool else x.dtype)
        x = np.asarray(x).astype(dtype)
        return self.fn(x.reshape(-1) if self.axis is None else x, axis=0 if self.axis is None else self.axis,
                       dtype=x.dtype)

    def shape(self, x):
        s = shape_of(x)
        if self.axis is None:
            return (None,) if None in s else (int(np.prod(s, dtype=np.int64)),)
        canonical_axis(self.axis, len(s))
        return s


@register("Cumsum", op=True)
class Cumsum(_Scan):
    fn = staticmethod(np.cumsum)


@register("Cumprod", op=True)
class Cumprod(_Scan):
    fn = staticmethod(np.cumprod)
    what = "running product along an axis"


class _Triangle(Op):
    """The lower / upper triangle of the last two axes, from diagonal ``k``; zeros elsewhere."""

    fn = staticmethod(np.tril)

    def __init__(self, config, name=None):
        super().__init__(config, name)
        self.k = self.get("k", 0)
        if isinstance(self.k, bool) or not isinstance(self.k, int):
            raise self.fail(f"'k' must be an integer. Received: k={self.k!r}")

    def compute(self, x):
        if np.ndim(x) < 2:
            raise ValueError(f"{self.class_name} needs a tensor of rank 2 or more")
        return self.fn(x, self.k)  # (..., M, N): rows i, columns j kept where j - i <= k (tril) / >= k (triu)


@register("Tril", op=True)
class Tril(_Triangle):
    what = "lower triangle of the last two axes"


@register("Triu", op=True)
class Triu(_Triangle):
    fn = staticmethod(np.triu)
    what = "upper triangle of the last two axes"


@register("TopK", op=True)
class TopK(Op):
    """The ``k`` largest values of the last axis and their int32 indices (ties: the lower index first)."""

    what = "k largest values of the last axis, and their indices"

    def __init__(self, config, name=None):
        super().__init__(config, name)
        self.k = self.get("k")
        if isinstance(self.k, bool) or not isinstance(self.k, int) or self.k < 0:
            raise self.fail(f"'k' must be a non-negative integer. Received: k={self.k!r}")

    def compute(self, x):
        n = x.shape[-1]
        if self.k > n:
            raise ValueError(f"k={self.k} is larger than the last axis ({n})")
        # a stable ascending sort of the reversed axis, reversed: descending, equal values by ascending index
        order = n - 1 - np.argsort(x[..., ::-1], axis=-1, kind="stable")[..., ::-1][..., :self.k]
        return [np.take_along_axis(x, order, axis=-1), order.astype(np.int32)]

    def shape(self, x):
        s = list(shape_of(x))
        if s[-1] is not None and self.k > s[-1]:
            raise ValueError(f"k={self.k} is larger than the last axis of {fmt_shape(tuple(s))}")
        out = tuple(s[:-1] + [self.k])
        return [out, out]


def _fill_negative(indices: np.ndarray, size: int) -> np.ndarray:
    """Keras's "fill" fix: a negative index counts from the end."""
    indices = np.asarray(indices).astype(np.int64)
    return np.where(indices < 0, indices + size, indices)


@register("TakeAlongAxis", op=True)
class TakeAlongAxis(_AxisOp):
    """x's values at ``indices`` along ``axis`` (the other axes broadcast), as numpy.take_along_axis."""

    what = "picks values along an axis by index"

    def compute(self, x, indices):
        if self.axis is None:
            x, axis = x.reshape(-1), 0
        else:
            axis = canonical_axis(self.axis, x.ndim)
        indices = _fill_negative(indices, x.shape[axis])
        xs, ids = list(x.shape), list(indices.shape)
        xs[axis] = ids[axis] = 1
        common = np.broadcast_shapes(tuple(xs), tuple(ids))
        x = np.broadcast_to(x, common[:axis] + (x.shape[axis],) + common[axis + 1:])
        indices = np.broadcast_to(indices, common[:axis] + (indices.shape[axis],) + common[axis + 1:])
        return np.take_along_axis(x, indices, axis=axis)

    def shape(self, x, indices):
        xs, ids = list(shape_of(x)), list(shape_of(indices))
        if self.axis is None:
            xs = [None] if None in xs else [int(np.prod(xs, dtype=np.int64))]
        if len(xs) != len(ids):
            raise ValueError(f"x and indices must have the same rank: {fmt_shape(tuple(xs))} and "
                             f"{fmt_shape(tuple(ids))}")
        axis = 0 if self.axis is None else canonical_axis(self.axis, len(xs))
        xs[axis] = ids[axis]
        return broadcast_shapes(tuple(xs), tuple(ids))


@register("Take", op=True)
class Take(_AxisOp):
    """x's slices at ``indices`` along ``axis`` (None: of the flattened tensor)."""

    what = "picks slices along an axis by index"

    def compute(self, x, indices):
        if self.axis is None:
            x, axis = x.reshape(-1), 0
        else:
            axis = canonical_axis(self.axis, x.ndim)
        return np.take(x, _fill_negative(indices, x.shape[axis]), axis=axis)

    def shape(self, x, indices):
        xs, ids = list(shape_of(x)), list(shape_of(indices))
        if self.axis is None:
            return tuple(ids)
        axis = canonical_axis(self.axis, len(xs))
        return tuple(xs[:axis] + ids + xs[axis + 1:])


@register("ScatterUpdate", op=True)
class ScatterUpdate(Op):
    """``tf.tensor_scatter_nd_update`` (or _add / _max / _min / a product): ``updates`` written into a copy of
    ``inputs`` at the index tuples in the last axis of ``indices``."""

    what = "writes updates at given indices"
    REDUCTIONS = {None: None, "add": np.add, "mul": np.multiply, "max": np.maximum, "min": np.minimum}

    def __init__(self, config, name=None):
        super().__init__(config, name)
        self.reduction = self.config.get("reduction")
        if self.reduction not in self.REDUCTIONS:
            raise self.fail(f"'reduction' must be one of {list(self.REDUCTIONS)}. Received: "
                            f"reduction={self.reduction!r}")

    def compute(self, inputs, indices, updates):
        out = np.array(inputs, copy=True)
        indices = np.asarray(indices).astype(np.int64)
        depth = indices.shape[-1]
        flat = indices.reshape(-1, depth)  # (U, depth)
        updates = np.asarray(updates).astype(out.dtype).reshape((flat.shape[0],) + out.shape[depth:])
        fn = self.REDUCTIONS[self.reduction]
        for where, value in zip(flat, updates):  # in order: a repeated index applies every update
            key = tuple(where)
            out[key] = value if fn is None else fn(out[key], value)
        return out

    def shape(self, inputs, indices, updates):
        return shape_of(inputs)


@register("OneHot", op=True)
class OneHot(Op):
    """A new axis of ``num_classes`` holding 1 at each index (0 everywhere for a negative index)."""

    what = "one-hot encodes integer indices"

    def __init__(self, config, name=None):
        super().__init__(config, name)
        self.num_classes = self.positive_int("num_classes")
        self.axis = self.get("axis", -1)
        self.dtype = np.dtype(self.get("dtype", "float32"))
        if self.get("sparse", False):
            raise UnsupportedError(f"layer '{self.name}' (OneHot): sparse=True is not supported")

    def compute(self, x):
        x = np.asarray(x).astype(np.int64)
        hot = x[..., None] == np.arange(self.num_classes)  # (..., num_classes)
        return np.moveaxis(hot, -1, canonical_axis(self.axis, x.ndim + 1)).astype(self.dtype)

    def shape(self, x):
        s = list(shape_of(x))
        s.insert(canonical_axis(self.axis, len(s) + 1), self.num_classes)
        return tuple(s)


@register("BroadcastTo", op=True)
class BroadcastTo(Op):
    """x broadcast to ``shape`` (the batch axis included)."""

    what = "broadcasts to a fixed shape"

    def __init__(self, config, name=None):
        super().__init__(config, name)
        target = self.get("shape")
        if not isinstance(target, (list, tuple)) or any(isinstance(d, bool) or not isinstance(d, int) or d < 0
                                                        for d in target):
            raise self.fail(f"'shape' must be a list of non-negative integers. Received: shape={target!r}")
        self.target = tuple(target)

    def compute(self, x):
        return np.array(np.broadcast_to(x, self.target))

    def shape(self, x):
        broadcast_shapes(shape_of(x), self.target)
        return self.target


@register("Flip", op=True)
class Flip(Op):
    def __init__(self, config, name=None):
        super().__init__(config, name)
        self.axis = axes_tuple(self.config.get("axis"))

    def compute(self, x):
        return np.flip(x, self.axis)


@register("Size", op=True)
class Size(Op):
    """The number of elements, an int32 scalar."""

    what = "number of elements"

    def compute(self, x):
        return np.asarray(np.size(x), np.int32)

    def shape(self, x):
        return ()


@register("Einsum", op=True)
class Einsum(Op):
    """numpy.einsum with explicit or implicit output, ``...`` broadcast."""

    def __init__(self, config, name=None):
        super().__init__(config, name)
        self.subscripts = self.get("subscripts")
        if not isinstance(self.subscripts, str) or not re.fullmatch(r"[A-Za-z.,\->\s]*", self.subscripts):
            raise self.fail(f"'subscripts' must be an einsum string. Received: subscripts={self.subscripts!r}")

    def compute(self, *operands):
        return np.einsum(self.subscripts, *operands)

    def shape(self, *operands):
        text = self.subscripts.replace(" ", "")
        inputs, _, output = text.partition("->")
        terms = inputs.split(",")
        shapes = [shape_of(o) for o in operands]
        if len(terms) != len(shapes):
            raise ValueError(f"{len(terms)} operands in {self.subscripts!r}, received {len(shapes)}")
        sizes: dict[str, Any] = {}
        ellipsis: tuple = ()
        for term, s in zip(terms, shapes):
            labels = term.replace("...", "")
            extra = len(s) - len(labels)
            if "..." in term:
                before = term.index("...")
                ellipsis = broadcast_shapes(ellipsis, tuple(s[before:before + extra]))
                s = tuple(s[:before]) + tuple(s[before + extra:])
            elif extra:
                raise ValueError(f"operand of shape {fmt_shape(tuple(s))} for subscripts {term!r}")
            for label, d in zip(labels, s):
                if sizes.get(label) in (None, 1):
                    sizes[label] = d
        if "->" not in text:  # implicit: the labels used once, in alphabetical order
            counts = {c: inputs.count(c) for c in set(inputs.replace(",", "").replace(".", ""))}
            output = ("..." if "..." in inputs else "") + "".join(sorted(c for c, n in counts.items() if n == 1))
        out: list = []
        for part in re.findall(r"\.\.\.|[A-Za-z]", output):
            out += list(ellipsis) if part == "..." else [sizes[part]]
        return tuple(out)

    def node_input_shape(self, args, kwargs):
        return next((a for a in args if isinstance(a, tuple)), ())

