"""Normalization layers at inference: BatchNormalization (moving statistics), LayerNormalization,
GroupNormalization, UnitNormalization, RMSNormalization.

References: keras/src/layers/normalization/*.py and keras/src/ops/nn.py (``_layer_normalization``,
``_rms_normalization``, ``_normalize``); BatchNormalization follows tf.nn.batch_normalization
(``inv = rsqrt(var + eps) * gamma; y = x * inv + (beta - mean * inv)``) so rounding matches.
"""
from __future__ import annotations

import numpy as np

from .base import Layer, Weight, fmt_shape, register


def rsqrt(x: np.ndarray) -> np.ndarray:
    """1 / sqrt(x) in x's dtype (inf at 0, without a warning)."""
    with np.errstate(divide="ignore"):
        return np.asarray(1, x.dtype) / np.sqrt(x)


class _AxisLayer(Layer):
    layout = "axis"

    """A layer with an ``axis`` config key: an int or a list of ints."""

    def _axis_list(self, default=-1) -> list[int]:
        axis = self.get("axis", default)
        items = axis if isinstance(axis, (list, tuple)) else [axis]
        if not items or any(isinstance(a, bool) or not isinstance(a, int) for a in items):
            raise self.fail(f"'axis' must be an integer or a list of integers. Received: axis={axis!r}")
        return list(items)

    def positive_axes(self, axes: list[int], ndim: int) -> list[int]:
        """Axes as non-negative indices, refusing out-of-range ones like Keras."""
        for a in axes:
            if not -ndim <= a < ndim:
                raise self.fail(f"axis {a} is out of bounds for an input of rank {ndim}. Received: axis={axes}")
        return [a % ndim for a in axes]

    def known_dims(self, input_shape, axes: list[int]) -> tuple:
        """The sizes of ``axes`` (Keras order), which must be known to build weights."""
        self.positive_axes(axes, len(input_shape))
        dims = tuple(input_shape[a] for a in axes)
        if None in dims:
            raise self.fail(f"the normalized axes {axes} must have known sizes. "
                            f"Received: input_shape={fmt_shape(input_shape)}")
        return dims

    def output_shape(self, input_shape):
        self.positive_axes(self.axes, len(input_shape))
        return input_shape


@register("BatchNormalization")
class BatchNormalization(_AxisLayer):
    """(x - moving_mean) / sqrt(moving_variance + epsilon) * gamma + beta, per feature of ``axis``."""

    supports_masking = True  # passes its input's mask on (it only uses it in training)
    call_params = ("inputs", "training", "mask")

    def __init__(self, config, name=None):
        super().__init__(config, name)
        self.axes = self._axis_list()  # Keras 3 writes an int; tf.keras writes [3]
        self.epsilon = float(self.get("epsilon", 1e-3))
        self.center = bool(self.get("center", True))
        self.scale = bool(self.get("scale", True))
        self.renorm = bool(self.get("renorm", False))
        if self.get("virtual_batch_size") is not None:
            raise self.fail(f"virtual_batch_size is not supported. "
                            f"Received: virtual_batch_size={self.config['virtual_batch_size']}")

    def samples_apart(self, input_shape) -> bool:
        """At inference a per-feature affine map: per sample unless a normalized axis is the batch."""
        return 0 not in self.positive_axes(self.axes, len(input_shape))

    def param_shape(self, input_shape) -> tuple:
        dims = self.known_dims(input_shape, self.axes)
        if len(self.axes) == 1:
            return dims
        keep = self.positive_axes(self.axes, len(input_shape))  # tf.keras: full rank, 1 elsewhere
        return tuple(input_shape[i] if i in keep else 1 for i in range(len(input_shape)))

    def weights(self, input_shape):
        shape = self.param_shape(input_shape)
        ws = [Weight("gamma", shape)] if self.scale else []
        ws += [Weight("beta", shape)] if self.center else []
        ws += [Weight("moving_mean", shape, False), Weight("moving_variance", shape, False)]
        if self.renorm:  # training-only statistics, stored after the moving ones
            ws += [Weight(n, shape, False) for n in ("moving_stddev", "renorm_mean", "renorm_stddev")]
        return ws

    def random_weight(self, w, rng):
        if w.name in ("moving_variance", "moving_stddev", "renorm_stddev"):
            return rng.uniform(0.5, 1.5, size=w.shape)
        if w.name == "gamma":
            return rng.uniform(0.5, 1.5, size=w.shape)
        return None

    def as_affine(self, input_shape, weights):
        """(axis, scale, shift) with forward(x) == x * scale + shift along axis; float64; None for several axes."""
        if len(self.axes) != 1:
            return None
        axis = self.positive_axes(self.axes, len(input_shape))[0]
        w = {spec.name: np.asarray(a, np.float64) for spec, a in zip(self.weights(input_shape), weights)}
        scale = 1 / np.sqrt(w["moving_variance"] + self.epsilon)
        if self.scale:
            scale = scale * w["gamma"]
        shift = -w["moving_mean"] * scale
        if self.center:
            shift = shift + w["beta"]
        return axis, scale, shift

    def forward(self, x, *weights):
        w = dict(zip([w.name for w in self.weights(x.shape)], weights))
        keep = self.positive_axes(self.axes, x.ndim)
        bshape = [x.shape[i] if i in keep else 1 for i in range(x.ndim)]  # e.g. (1, 1, 1, C)
        get = lambda n: None if n not in w else w[n].astype(x.dtype).reshape(bshape)  # noqa: E731
        inv = rsqrt(get("moving_variance") + np.asarray(self.epsilon, x.dtype))
        if self.scale:
            inv = inv * get("gamma")
        shift = -get("moving_mean") * inv
        if self.center:
            shift = get("beta") + shift
        return x * inv + shift  # (N, ..., C) * (1, ..., C) + (1, ..., C)

    def explain(self, input_shape, output_shape):
        ws = self.weights(input_shape)
        n = int(np.prod(ws[0].shape))
        names = ", ".join(w.name for w in ws)
        return (f"normalizes each of the {n} features on axis {self.axes[0] if len(self.axes) == 1 else self.axes} "
                f"with stored statistics; {names}: {len(ws)} x {n} = {len(ws) * n} params "
                f"({sum(w.trainable for w in ws) * n} trainable)")


@register("LayerNormalization")
class LayerNormalization(_AxisLayer):
    """Per-sample (x - mean) / sqrt(var + epsilon) * gamma + beta over ``axis``; or rms_scaling."""

    supports_masking = True  # passes its input's mask on

    def __init__(self, config, name=None):
        super().__init__(config, name)
        self.axes = sorted(self._axis_list())  # Keras sorts the raw values (negatives first)
        self.epsilon = float(self.get("epsilon", 1e-3))
        self.center = bool(self.get("center", True))
        self.scale = bool(self.get("scale", True))
        self.rms_scaling = bool(self.get("rms_scaling", False))

    def weights(self, input_shape):
        shape = self.known_dims(input_shape, self.axes)
        ws = [Weight("gamma", shape)] if self.scale or self.rms_scaling else []
        return ws + [Weight("beta", shape)] if self.center and not self.rms_scaling else ws

    def forward(self, x, *weights):
        w = dict(zip([w.name for w in self.weights(x.shape)], weights))
        axes = tuple(self.positive_axes(self.axes, x.ndim))
        bshape = [1] * x.ndim
        for a in self.axes:
            bshape[a] = x.shape[a]
        # Keras reshapes (never transposes) gamma / beta to the broadcast shape
        get = lambda n: None if n not in w else w[n].astype(x.dtype).reshape(bshape)  # noqa: E731
        eps = np.asarray(self.epsilon, x.dtype)
        if self.rms_scaling:  # Keras's deprecated flag: scales by the variance, not the mean square
            y = x * rsqrt(np.var(x, axis=axes, keepdims=True) + eps)
            return y * get("gamma") if "gamma" in w else y
        mean = np.mean(x, axis=axes, keepdims=True)  # (N, ..., 1)
        inv = rsqrt(np.var(x, axis=axes, keepdims=True) + eps)
        if "gamma" in w:
            inv = inv * get("gamma")
        shift = -mean * inv
        if "beta" in w:
            shift = shift + get("beta")
        return x * inv + shift


@register("RMSNormalization")
class RMSNormalization(_AxisLayer):
    """x * rsqrt(mean(x**2 over axis) + epsilon) * scale."""

    def __init__(self, config, name=None):
        super().__init__(config, name)
        self.axes = sorted(self._axis_list())
        self.epsilon = float(self.get("epsilon", 1e-6))

    def weights(self, input_shape):
        return [Weight("scale", self.known_dims(input_shape, self.axes))]

    def forward(self, x, scale):
        axes = tuple(self.positive_axes(self.axes, x.ndim))
        ms = np.mean(np.square(x), axis=axes, keepdims=True)  # (N, ..., 1)
        return x * rsqrt(ms + np.asarray(self.epsilon, x.dtype)) * scale.astype(x.dtype)


@register("GroupNormalization")
class GroupNormalization(_AxisLayer):
    """Split ``axis`` into ``groups``; normalize each group per sample; per-channel gamma / beta."""

    supports_masking = True  # passes its input's mask on

    def __init__(self, config, name=None):
        super().__init__(config, name)
        self.groups = self.get("groups", 32)
        g = self.groups
        if isinstance(g, bool) or not isinstance(g, int) or (g <= 0 and g != -1):
            raise self.fail(f"'groups' must be a positive integer or -1. Received: groups={self.groups!r}")
        axes = self._axis_list()
        if len(axes) != 1:
            raise self.fail(f"'axis' must be a single integer. Received: axis={axes}")
        self.axes = axes
        self.epsilon = float(self.get("epsilon", 1e-3))
        self.center = bool(self.get("center", True))
        self.scale = bool(self.get("scale", True))

    def channels_and_groups(self, input_shape) -> tuple[int, int]:
        (dim,) = self.known_dims(input_shape, self.axes)
        groups = dim if self.groups == -1 else self.groups
        if dim < groups or dim % groups:
            raise self.fail(f"the {dim} channels must be a multiple of groups and at least groups. "
                            f"Received: groups={groups}")
        return dim, groups

    def weights(self, input_shape):
        dim, _ = self.channels_and_groups(input_shape)
        ws = [Weight("gamma", (dim,))] if self.scale else []
        return ws + [Weight("beta", (dim,))] if self.center else ws

    def forward(self, x, *weights):
        w = dict(zip([w.name for w in self.weights(x.shape)], weights))
        dim, groups = self.channels_and_groups(x.shape)
        a = self.positive_axes(self.axes, x.ndim)[0]
        gshape = (*x.shape[:a], groups, dim // groups, *x.shape[a + 1:])
        g = x.reshape(gshape)  # (N, ..., C, ...) -> (N, ..., G, C/G, ...)
        reduce = tuple(i for i in range(1, g.ndim) if i != a)
        bshape = [1] * g.ndim
        bshape[a], bshape[a + 1] = groups, dim // groups
        mean = np.mean(g, axis=reduce, keepdims=True)  # (N, 1.., G, 1, 1..)
        inv = rsqrt(np.var(g, axis=reduce, keepdims=True) + np.asarray(self.epsilon, x.dtype))
        if "gamma" in w:
            inv = inv * w["gamma"].astype(x.dtype).reshape(bshape)
        shift = -mean * inv
        if "beta" in w:
            shift = shift + w["beta"].astype(x.dtype).reshape(bshape)
        return (g * inv + shift).reshape(x.shape)


@register("UnitNormalization")
class UnitNormalization(_AxisLayer):
    """x / ||x||_2 over ``axis`` (Keras: x * min(rsqrt(sum(x**2)), 1e12))."""

    supports_masking = True  # passes its input's mask on

    def __init__(self, config, name=None):
        super().__init__(config, name)
        self.axes = self._axis_list()

    def forward(self, x):
        axes = tuple(self.positive_axes(self.axes, x.ndim))
        inv = rsqrt(np.sum(np.square(x), axis=axes, keepdims=True))  # (N, ..., 1)
        return x * np.minimum(inv, np.asarray(1e12, x.dtype))
