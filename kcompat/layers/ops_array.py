"""Keras 3 op nodes that reduce or rearrange: reductions (Mean ... Logsumexp, Argmax / Argmin), Reshape,
Transpose, ExpandDims, Squeeze, Concatenate, Stack, Tile, GetItem (``x[:, 1:3]``).

Output shapes follow keras/src/ops/operation_utils.py (``reduce_shape``, ``compute_reshape_output_shape``)
and keras/src/ops/numpy.py. The op base and elementwise ops are in ops.py.
"""
from __future__ import annotations

from typing import Any

import numpy as np

from ..errors import UnsupportedError
from .base import fmt_shape, register
from .ops import Op, axes_tuple, canonical_axis, register_table, shape_of
from .reshaping import reshape_output


# ---------------------------------------------------------------- reductions

class _Reduce(Op):
    """fn(x, axis, keepdims) with ``axis`` / ``keepdims`` from the config."""

    fn = staticmethod(np.sum)

    def __init__(self, config, name=None):
        super().__init__(config, name)
        self.axis = axes_tuple(self.config.get("axis"))
        self.keepdims = bool(self.get("keepdims", False))
        self.initial = self.config.get("initial")
        if self.initial is not None and self.class_name not in ("Max", "Min", "Amax", "Amin"):
            raise UnsupportedError(f"layer '{self.name}' ({self.class_name}): 'initial' is not supported. "
                                   f"Received: initial={self.config['initial']!r}")

    @property
    def what(self):
        where = "all axes" if self.axis is None else f"axis {list(self.axis) if len(self.axis) > 1 else self.axis[0]}"
        return f"reduces over {where}{', keeping them as size 1' if self.keepdims else ''}"

    def compute(self, x):
        if self.initial is not None:  # Keras: maximum(reduce_max(x), initial); the empty set gives initial
            return _bounded(self.fn, x, self.axis, self.keepdims, self.initial)
        return self.fn(x, axis=self.axis, keepdims=self.keepdims)

    def shape(self, x):
        shape = list(shape_of(x))
        if self.axis is None:
            return tuple(1 for _ in shape) if self.keepdims else ()
        axes = {canonical_axis(a, len(shape)) for a in self.axis}
        if self.keepdims:
            return tuple(1 if i in axes else d for i, d in enumerate(shape))
        return tuple(d for i, d in enumerate(shape) if i not in axes)


def _bounded(fn, x, axis, keepdims, initial):
    """max / min with Keras's ``initial``: TF's reduction (its identity, -inf / +inf or the integer bounds, over
    an empty set), then maximum / minimum with ``initial``; bools reduce with any / all."""
    top = fn in (np.max, np.amax)
    if x.dtype == bool:
        y = (np.any if top else np.all)(x, axis=axis, keepdims=keepdims)
        return (np.maximum if top else np.minimum)(y.astype(np.int32), int(initial)).astype(bool)
    lowest, highest = (np.iinfo(x.dtype).min, np.iinfo(x.dtype).max) if x.dtype.kind in "iu" else (-np.inf, np.inf)
    y = fn(x, axis=axis, keepdims=keepdims, initial=lowest if top else highest)
    return (np.maximum if top else np.minimum)(y, np.asarray(initial).astype(x.dtype))


def _logsumexp(x, axis=None, keepdims=False):
    m = np.max(x, axis=axis, keepdims=True, initial=-np.inf)  # TF: -inf over an empty set
    m = np.where(np.isfinite(m), m, np.asarray(0, m.dtype))
    with np.errstate(over="ignore", divide="ignore"):  # inf / -inf results are the right answers here
        y = np.log(np.sum(np.exp(x - m), axis=axis, keepdims=True)) + m
    return y if keepdims else np.squeeze(y, axis=axis) if axis is not None else y.reshape(())


def accumulator_dtype(dtype: np.dtype) -> np.dtype:
    """Keras's sum / prod dtype: bool, int8 and int16 add up in int32, uint8 and uint16 in uint32."""
    if dtype == bool or dtype in (np.int8, np.int16):
        return np.dtype(np.int32)
    return np.dtype(np.uint32) if dtype in (np.uint8, np.uint16) else dtype


def _prod(x, axis=None, keepdims=False):
    return np.prod(x, axis=axis, keepdims=keepdims, dtype=accumulator_dtype(x.dtype))


def _sum(x, axis=None, keepdims=False):
    return np.sum(x, axis=axis, keepdims=keepdims, dtype=accumulator_dtype(x.dtype))


def _arg(fn):
    def reduce(x, axis=None, keepdims=False):
        if x.dtype.kind == "f":  # Keras ranks -0.0 below +0.0 (it maps -0.0 to -tiny first)
            x = np.where((x == 0) & np.signbit(x), -np.finfo(x.dtype).tiny, x).astype(x.dtype)
        if axis is None:
            y = np.asarray(fn(x.reshape(-1)), np.int32)
            return np.reshape(y, (1,) * x.ndim) if keepdims else y
        (a,) = axis
        return fn(x, axis=a, keepdims=keepdims).astype(np.int32)
    return reduce


register_table(_Reduce, {
    "Mean": np.mean, "Sum": _sum, "Max": np.max, "Min": np.min, "Amax": np.max, "Amin": np.min,
    "Prod": _prod, "Var": np.var, "Std": np.std, "Any": np.any, "All": np.all, "Logsumexp": _logsumexp,
    "Argmax": _arg(np.argmax), "Argmin": _arg(np.argmin),
})


@register("Det", op=True)
class Det(Op):
    """The determinant of each matrix in the last two axes (``keras.ops.linalg.det``)."""

    what = "determinant of the last two axes"

    def compute(self, x):
        return np.linalg.det(x)  # (..., M, M) -> (...)

    def shape(self, x):
        s = shape_of(x)
        if len(s) < 2 or (None not in s[-2:] and s[-1] != s[-2]):
            raise ValueError(f"det needs square matrices in the last two axes, not {fmt_shape(s)}")
        return tuple(s[:-2])


# ---------------------------------------------------------------- shapes

@register("Reshape", op=True)
class Reshape(Op):
    """x.reshape(newshape); ``newshape`` includes the batch axis."""

    def __init__(self, config, name=None):
        super().__init__(config, name)
        shape = self.get("newshape")
        if not isinstance(shape, (list, tuple)) or any(not isinstance(d, int) for d in shape):
            raise self.fail(f"'newshape' must be a list of integers. Received: newshape={shape!r}")
        self.newshape = tuple(shape)

    def compute(self, x):
        return np.reshape(x, self.newshape)

    def shape(self, x):
        return reshape_output(shape_of(x), self.newshape)


@register("Transpose", op=True)
class Transpose(Op):
    layout = "permute"

    def __init__(self, config, name=None):
        super().__init__(config, name)
        self.axes = axes_tuple(self.config.get("axes"))

    def permutation(self, rank: int) -> tuple:
        """Output axis i is input axis ``permutation[i]`` (batch included)."""
        return tuple(a % rank for a in self.axes) if self.axes is not None else tuple(reversed(range(rank)))

    def compute(self, x):
        return np.transpose(x, self.axes)

    def shape(self, x):
        s = shape_of(x)
        axes = self.axes if self.axes is not None else tuple(reversed(range(len(s))))
        return tuple(s[a] for a in axes)


@register("ExpandDims", op=True)
class ExpandDims(Op):
    def __init__(self, config, name=None):
        super().__init__(config, name)
        self.axis = axes_tuple(self.config.get("axis"))

    def compute(self, x):
        return np.expand_dims(x, self.axis)

    def shape(self, x):
        s = list(shape_of(x))
        n = len(s) + len(self.axis)
        axes = {canonical_axis(a, n) for a in self.axis}
        it = iter(s)
        return tuple(1 if i in axes else next(it) for i in range(n))


@register("Squeeze", op=True)
class Squeeze(Op):
    def __init__(self, config, name=None):
        super().__init__(config, name)
        self.axis = axes_tuple(self.config.get("axis"))

    def compute(self, x):
        return np.squeeze(x, self.axis)

    def shape(self, x):
        s = list(shape_of(x))
        if self.axis is None:
            return tuple(d for d in s if d != 1)
        axes = {canonical_axis(a, len(s)) for a in self.axis}
        if any(s[a] not in (1, None) for a in axes):
            raise ValueError(f"cannot squeeze axes {self.axis} of shape {fmt_shape(tuple(s))}")
        return tuple(d for i, d in enumerate(s) if i not in axes)


@register("Concatenate", op=True)
class Concatenate(Op):
    layout = "axis"

    def __init__(self, config, name=None):
        super().__init__(config, name)
        self.axis = self.get("axis", 0)

    def compute(self, xs):
        return np.concatenate([np.asarray(x) for x in xs], axis=self.axis)

    def shape(self, xs):
        shapes = [shape_of(x) for x in xs]
        out = list(shapes[0])
        axis = canonical_axis(self.axis, len(out))
        sizes = [s[axis] for s in shapes]
        out[axis] = None if None in sizes else sum(sizes)
        return tuple(out)

    def node_input_shape(self, args, kwargs):
        return list(args[0])


@register("Stack", op=True)
class Stack(Op):
    def __init__(self, config, name=None):
        super().__init__(config, name)
        self.axis = self.get("axis", 0)

    def compute(self, x):
        return np.stack([np.asarray(a) for a in x], axis=self.axis)

    def shape(self, x):
        out = list(shape_of(x[0]))
        out.insert(canonical_axis(self.axis, len(out) + 1), len(x))
        return tuple(out)

    def node_input_shape(self, args, kwargs):
        return list(args[0])


@register("Tile", op=True)
class Tile(Op):
    """``ops.tile(x, repeats)``: x repeated along each axis; ``repeats`` shorter than x's rank counts from the
    last axis, longer prepends size-1 axes to x (keras/src/ops/numpy.py Tile.compute_output_spec)."""

    what = "repeats the tensor along its axes"

    def __init__(self, config, name=None):
        super().__init__(config, name)
        reps = self.get("repeats")
        reps = [reps] if isinstance(reps, int) and not isinstance(reps, bool) else reps
        if (not isinstance(reps, (list, tuple)) or not reps
                or any(isinstance(r, bool) or not isinstance(r, int) or r < 0 for r in reps)):
            raise self.fail(f"'repeats' must be a non-negative integer or a list of them. Received: repeats={reps!r}")
        self.repeats = tuple(reps)

    def compute(self, x):
        return np.tile(x, self.repeats)  # (d1, .., dn) -> (d1 * r1, .., dn * rn)

    def shape(self, x):
        shape, reps = list(shape_of(x)), list(self.repeats)
        shape = [1] * (len(reps) - len(shape)) + shape
        reps = [1] * (len(shape) - len(reps)) + reps
        return tuple(None if d is None else d * r for d, r in zip(shape, reps))


def getitem_key(raw: Any, where: str) -> Any:
    """A serialized GetItem key -> a NumPy index (slices, Ellipsis, None, ints)."""
    if isinstance(raw, list):
        return tuple(getitem_key(k, where) for k in raw)
    if isinstance(raw, dict) and raw.get("class_name") == "__slice__":
        c = raw.get("config", {})
        return slice(c.get("start"), c.get("stop"), c.get("step"))
    if isinstance(raw, dict) and raw.get("class_name") == "__ellipsis__":
        return Ellipsis
    if raw is None or (isinstance(raw, int) and not isinstance(raw, bool)):
        return raw
    raise UnsupportedError(f"{where}: only ints, slices, None and ... are supported as indices. Received: {raw!r}")


@register("GetItem", op=True)
class GetItem(Op):
    """x[key] with a constant key."""

    layout = "getitem"

    def call_node(self, args, kwargs, weights):
        x, key = args  # the key stays raw: a list of slices is not an array constant
        return np.asarray(x)[getitem_key(key, f"layer '{self.name}' (GetItem)")]

    def shape(self, x, key):
        where = f"layer '{self.name}' (GetItem)"
        key = getitem_key(key, where)
        remaining = list(shape_of(x))
        keys = list(key) if isinstance(key, tuple) else [key]
        if Ellipsis not in keys:
            keys.append(Ellipsis)
        out = []
        while keys:
            k = keys.pop(0)
            if k is Ellipsis:
                used = len(remaining) - (len(keys) - keys.count(None))
                out += remaining[:used]
                remaining = remaining[used:]
            elif k is None:
                out.append(1)
            else:
                if not remaining:
                    raise ValueError(f"too many indices for shape {fmt_shape(shape_of(x))}")
                size = remaining.pop(0)
                if isinstance(k, slice):
                    out.append(None if size is None else len(range(*k.indices(size))))
                elif size is not None and not -size <= k < size:
                    raise ValueError(f"index {k} is out of bounds for size {size}")
        return tuple(out)

