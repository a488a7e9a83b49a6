"""Merge layers: Add, Subtract, Multiply, Average, Maximum, Minimum, Concatenate, Dot.

Each takes a list of inputs (``x`` a list of arrays; ``input_shape`` a list of shapes).
References: keras/src/layers/merging/*.py. Inputs of lower rank get size-1 axes inserted
after the batch axis (Keras's ``expand_dims(x, 1)``), then broadcast elementwise.
"""
from __future__ import annotations

from functools import reduce

import numpy as np

from .. import buffers
from .base import Layer, fmt_shape, register
from ..threads import in_parallel
from .core import WithActivation
from .normalization import rsqrt


class _Merge(Layer):
    """Elementwise merge of two or more inputs, folded left to right with ``op``."""

    exactly: int | None = None  # Subtract / Dot take exactly 2
    supports_masking = True
    per_sample = True  # elementwise over inputs that share the batch (Concatenate checks its axis; Dot is not)

    def compute_mask(self, inputs, mask, keras2=False):
        """keras Merge.compute_mask: the OR of the inputs' masks, None unless every input has one
        (tf_keras: the AND of the masks there are)."""
        if not isinstance(mask, (list, tuple)):
            return None
        if keras2:
            given = [m for m in mask if m is not None]
            return reduce(np.logical_and, given) if given else None
        return None if any(m is None for m in mask) else reduce(np.logical_or, mask)

    @staticmethod
    def op(a: np.ndarray, b: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def shapes(self, input_shape) -> list[tuple]:
        shapes = list(input_shape) if isinstance(input_shape, list) else [input_shape]
        if self.exactly is not None and len(shapes) != self.exactly:
            raise self.fail(f"expects exactly {self.exactly} inputs. Received: {len(shapes)} input(s)")
        if not shapes:
            raise self.fail("expects a list of at least 1 input. Received: []")
        return shapes

    def output_shape(self, input_shape):
        shapes = self.shapes(input_shape)
        out = reduce(lambda a, b: self._broadcast(a, b, shapes), [tuple(s[1:]) for s in shapes])
        batch = {s[0] for s in shapes} - {None}
        if len(batch) > 1:
            raise self.fail(f"cannot merge different batch sizes. Received: {fmt_shape(shapes)}")
        return (batch.pop() if batch else None, *out)

    def _broadcast(self, a: tuple, b: tuple, shapes) -> tuple:
        """keras Merge._compute_elemwise_op_output_shape (an unknown size stays unknown)."""
        if len(a) < len(b):
            a, b = b, a
        if not b:
            return a
        out = list(a[:len(a) - len(b)])
        for i, j in zip(a[len(a) - len(b):], b):
            if i is None or j is None:
                out.append(None)
            elif i == 1 or j == 1 or i == j:
                out.append(j if i == 1 else i)
            else:
                raise self.fail(f"inputs have incompatible shapes. Received: {fmt_shape(shapes)}")
        return tuple(out)

    def aligned(self, x) -> list[np.ndarray]:
        """The inputs as a list, lower ranks given size-1 axes after the batch axis."""
        xs = list(x) if isinstance(x, (list, tuple)) else [x]
        rank = max(a.ndim for a in xs)
        return [a.reshape(a.shape[:1] + (1,) * (rank - a.ndim) + a.shape[1:]) for a in xs]  # (N, F) -> (N, 1.., F)

    def forward(self, x):
        return reduce(self.op, self.aligned(x))


@register("Add")
class Add(WithActivation, _Merge):
    """Elementwise sum of two or more inputs (x1 + x2 + ...).

    An ``activation`` key is never in a Keras config: predict's plan (kcompat/plan.py) sets it when an
    activation layer follows a residual sum, and it runs in place on the fresh sum."""

    has_activation = False  # a plan-only key: not one a Keras file (or the ONNX import's folding) may set
    layout = "elementwise"

    op = staticmethod(np.add)

    def __init__(self, config, name=None):
        super().__init__(config, name)
        self.init_activation()

    def output_shape(self, input_shape):
        return self.activated_shape(super().output_shape(input_shape))

    def forward(self, x):
        xs = self.aligned(x)
        if len(xs) < 2:
            return self.activation(xs[0])
        y = buffers.empty(np.broadcast_shapes(*(a.shape for a in xs)), np.result_type(*xs))  # a fresh sum
        in_place = self.epilogue(None)  # an elementwise activation, in place

        def rows(todo):  # bands of the batch axis, on the kernels' threads (ufuncs release the GIL)
            for lo, hi in todo:
                part = [a[lo:hi] if a.shape[0] == y.shape[0] else a for a in xs]
                out = y[lo:hi]
                np.add(part[0], part[1], out=out)
                for a in part[2:]:
                    np.add(out, a, out=out)
                if in_place is not None:
                    in_place(out)
        in_parallel(rows, [(i, i + 1) for i in range(y.shape[0])] if y.size >= 2**18 else [(0, y.shape[0])])
        return self.after_epilogue(y)


@register("Subtract")
class Subtract(_Merge):
    layout = "elementwise"

    exactly = 2
    op = staticmethod(np.subtract)


@register("Multiply")
class Multiply(_Merge):
    layout = "elementwise"

    op = staticmethod(np.multiply)


@register("Maximum")
class Maximum(_Merge):
    layout = "elementwise"

    op = staticmethod(np.maximum)


@register("Minimum")
class Minimum(_Merge):
    layout = "elementwise"

    op = staticmethod(np.minimum)


@register("Average")
class Average(_Merge):
    layout = "elementwise"

    op = staticmethod(np.add)

    def forward(self, x):
        total = super().forward(x)
        return total / np.asarray(len(x), total.dtype)


@register("Concatenate")
class Concatenate(_Merge):
    """Join the inputs along ``axis``; the other axes must match."""

    layout = "axis"

    def __init__(self, config, name=None):
        super().__init__(config, name)
        self.axis = self.get("axis", -1)
        if isinstance(self.axis, bool) or not isinstance(self.axis, int):
            raise self.fail(f"'axis' must be an integer. Received: axis={self.axis!r}")

    def output_shape(self, input_shape):
        shapes = self.shapes(input_shape)
        rank = len(shapes[0])
        if any(len(s) != rank for s in shapes) or not -rank <= self.axis < rank:
            raise self.fail(f"inputs must share a rank that has axis {self.axis}. Received: {fmt_shape(shapes)}")
        axis = self.axis % rank
        for i in range(rank):
            sizes = {s[i] for s in shapes} - {None}
            if i != axis and len(sizes) > 1:
                raise self.fail(f"inputs must match except on axis {self.axis}. Received: {fmt_shape(shapes)}")
        out = list(shapes[0])
        sizes = [s[axis] for s in shapes]
        out[axis] = None if None in sizes else sum(sizes)  # Keras keeps input 0's other sizes
        return tuple(out)

    def forward(self, x):
        return np.concatenate(list(x), axis=self.axis)

    def samples_apart(self, input_shape) -> bool:
        return self.axis % len(self.shapes(input_shape)[0]) != 0

    def compute_mask(self, inputs, mask, keras2=False):
        """keras Concatenate.compute_mask: each input's mask spread over its own shape (all True when it has
        none), concatenated on ``axis``, then any() over the last axis (tf_keras: expanded, not spread, then
        all())."""
        if not isinstance(mask, (list, tuple)) or all(m is None for m in mask):
            return None
        full = []
        for x, m in zip(inputs, mask):
            if m is None:
                m = np.ones(x.shape, bool)
            elif m.ndim < x.ndim:
                m = m[..., None] if keras2 else np.broadcast_to(m[..., None], x.shape)  # (N, T) -> (N, T, 1 or F)
            full.append(m)
        joined = np.concatenate(full, axis=self.axis)
        return np.all(joined, axis=-1) if keras2 else np.any(joined, axis=-1)


@register("Dot")
class Dot(_Merge):
    """Batched dot product of two inputs over ``axes``; ``normalize`` makes it a cosine similarity."""

    per_sample = False  # its axes may include the batch
    exactly = 2

    def compute_mask(self, inputs, mask, keras2=False):
        return None  # keras Dot.compute_mask

    def __init__(self, config, name=None):
        super().__init__(config, name)
        axes = self.get("axes")
        ok = (isinstance(axes, int) and not isinstance(axes, bool)) or (
            isinstance(axes, (list, tuple)) and len(axes) == 2
            and all(isinstance(a, int) and not isinstance(a, bool) for a in axes))
        if not ok:
            raise self.fail(f"'axes' must be an integer or a pair of integers. Received: axes={axes!r}")
        self.axes = axes if isinstance(axes, int) else tuple(axes)
        self.normalize = bool(self.get("normalize", False))

    def dot_axes(self, r1: int, r2: int) -> tuple[int, int]:
        pair = (self.axes, self.axes) if isinstance(self.axes, int) else self.axes
        return pair[0] % r1, pair[1] % r2

    def output_shape(self, input_shape):
        s1, s2 = (list(s) for s in self.shapes(input_shape))
        if len(s1) < 2 or len(s2) < 2:
            raise self.fail(f"inputs must have rank >= 2. Received: {fmt_shape([tuple(s1), tuple(s2)])}")
        a1, a2 = self.dot_axes(len(s1), len(s2))
        if 0 in (a1, a2):
            raise self.fail(f"cannot take a dot product over the batch axis. Received: axes={self.axes}")
        if s1[a1] is not None and s2[a2] is not None and s1[a1] != s2[a2]:
            raise self.fail(f"axis sizes differ: {s1[a1]} != {s2[a2]}. "
                            f"Received: {fmt_shape([tuple(s1), tuple(s2)])}, axes={self.axes}")
        del s1[a1], s2[a2]
        out = s1 + s2[1:]
        return tuple(out + [1] if len(out) == 1 else out)

    def forward(self, x):
        x1, x2 = x
        a1, a2 = self.dot_axes(x1.ndim, x2.ndim)
        if self.normalize:
            x1, x2 = _l2_normalize(x1, a1), _l2_normalize(x2, a2)
        x1 = np.moveaxis(x1, a1, -1)  # (N, ..., k)
        x2 = np.moveaxis(x2, a2, 1)  # (N, k, ...)
        n, k = x1.shape[0], x1.shape[-1]
        mid, trail = x1.shape[1:-1], x2.shape[2:]
        y = np.matmul(x1.reshape(n, -1, k), x2.reshape(n, k, -1))  # (N, P, k) @ (N, k, Q) -> (N, P, Q)
        y = y.reshape((n, *mid, *trail))
        return y.reshape(n, 1) if y.ndim == 1 else y


def _l2_normalize(x: np.ndarray, axis: int) -> np.ndarray:
    """keras.ops.normalize(order=2): x * min(rsqrt(sum(x**2)), 1 / 1e-7)."""
    inv = rsqrt(np.sum(np.square(x), axis=axis, keepdims=True))
    return x * np.minimum(inv, np.asarray(1e7, x.dtype))
