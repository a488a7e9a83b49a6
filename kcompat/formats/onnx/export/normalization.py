"""ONNX exporters of normalization layers.

BatchNormalization is ONNX BatchNormalization (channel axis moved to 1 by a Transpose pair, which
optimize.py cancels inside a CNN); LayerNormalization is the LayerNormalization op from opset 17 and
RMSNormalization the RMSNormalization op from 23 (normalized axes moved last), both decomposed as Keras
computes them before that; GroupNormalization is the opset-21 op (per-channel scale; opset 18's was per
group) or decomposed. Reference: kcompat/layers/normalization.py (what each computes).
"""
from __future__ import annotations

import numpy as np

from ....errors import UnsupportedError
from ....layers.normalization import rsqrt
from .registry import layer_exporter


def _axes(layer, shape: tuple) -> list[int]:
    return sorted(layer.positive_axes(layer.axes, len(shape)))


def _broadcast(values: np.ndarray, shape: tuple, axes: list[int]) -> np.ndarray:
    """Per-axis parameters (sizes of ``axes``) reshaped to broadcast against ``shape`` (1 elsewhere)."""
    bshape = [shape[i] if i in axes else 1 for i in range(len(shape))]
    return np.asarray(values, np.float32).reshape(bshape[min(axes):])  # leading 1s dropped: ONNX broadcasts


def _move_last(ctx, x: str, axes: list[int], rank: int):
    """Transpose so ``axes`` (sorted) are the trailing axes; returns (tensor, inverse perm or None)."""
    if axes == list(range(rank - len(axes), rank)):
        return x, None
    perm = [i for i in range(rank) if i not in axes] + axes
    return ctx.op("Transpose", x, perm=perm), [int(i) for i in np.argsort(perm)]


def _inv_std(ctx, d: str, axes: list[int], eps: float) -> str:
    """rsqrt(mean(d^2 over axes) + eps), keepdims: (N, ..., 1)."""
    var = ctx.reduce("ReduceMean", ctx.op("Mul", d, d), axes)
    return ctx.op("Reciprocal", ctx.op("Sqrt", ctx.op("Add", var, ctx.const(eps))))


def _centered(ctx, x: str, axes: list[int]) -> str:
    return ctx.op("Sub", x, ctx.reduce("ReduceMean", x, axes))  # x - mean(x over axes)


def _affine(ctx, y: str, gamma, beta) -> str:
    """y * gamma + beta, each optional (already shaped to broadcast)."""
    if gamma is not None:
        y = ctx.op("Mul", y, ctx.const(gamma, "gamma"))
    if beta is not None:
        y = ctx.op("Add", y, ctx.const(beta, "beta"))
    return y


@layer_exporter("BatchNormalization")
def batch_normalization(ctx, layer, inputs, weights):
    x = inputs[0]
    shape = ctx.shape(x)
    w = dict(zip([w.name for w in layer.weights(shape)], weights))
    axes = _axes(layer, shape)
    if len(axes) > 1:  # tf.keras full-rank statistics: Keras's own x * inv + shift
        inv = rsqrt(w["moving_variance"].astype(np.float32) + np.float32(layer.epsilon))
        inv = inv * w["gamma"] if layer.scale else inv
        shift = -w["moving_mean"] * inv + (w["beta"] if layer.center else 0)
        y = ctx.op("Mul", x, ctx.const(_broadcast(inv, shape, axes), "inv"))
        return ctx.op("Add", y, ctx.const(_broadcast(shift, shape, axes), "shift"))
    a, rank = axes[0], len(shape)
    c = shape[a]
    stats = {"gamma": w["gamma"] if layer.scale else np.ones(c, np.float32),  # ONNX needs all four
             "beta": w["beta"] if layer.center else np.zeros(c, np.float32),
             "moving_mean": w["moving_mean"], "moving_variance": w["moving_variance"]}
    names = [ctx.const(v, n, dtype=np.float32) for n, v in stats.items()]
    perm = None if a == 1 or rank == 1 else [0, a, *[i for i in range(1, rank) if i != a]]  # channel axis to 1
    if perm is not None:
        x = ctx.op("Transpose", x, perm=perm)
    y = ctx.op("BatchNormalization", x, *names, epsilon=layer.epsilon)
    return y if perm is None else ctx.op("Transpose", y, perm=[int(i) for i in np.argsort(perm)])


@layer_exporter("LayerNormalization")
def layer_normalization(ctx, layer, inputs, weights):
    x = inputs[0]
    shape = ctx.shape(x)
    w = dict(zip([w.name for w in layer.weights(shape)], weights))
    axes, rank = _axes(layer, shape), len(shape)
    gamma, beta = w.get("gamma"), w.get("beta")
    if layer.rms_scaling or ctx.opset < 17:  # Keras's moments form, on the axes in place
        gamma = None if gamma is None else _broadcast(gamma, shape, axes)
        beta = None if beta is None else _broadcast(beta, shape, axes)
        d = _centered(ctx, x, axes)
        y = ctx.op("Mul", x if layer.rms_scaling else d, _inv_std(ctx, d, axes, layer.epsilon))  # rms_scaling:
        return _affine(ctx, y, gamma, beta)  # Keras's flag scales x itself by the (centered) variance
    dims = [shape[a] for a in axes]  # gamma's Keras shape is the sorted axes' sizes: last after the move
    xt, back = _move_last(ctx, x, axes, rank)
    scale = ctx.const(np.ones(dims, np.float32) if gamma is None else np.reshape(gamma, dims), "gamma")
    bias = [ctx.const(np.reshape(beta, dims), "beta")] if beta is not None else []
    y = ctx.op("LayerNormalization", xt, scale, *bias, axis=-len(axes), epsilon=layer.epsilon)
    return y if back is None else ctx.op("Transpose", y, perm=back)


@layer_exporter("RMSNormalization")
def rms_normalization(ctx, layer, inputs, weights):
    x = inputs[0]
    shape = ctx.shape(x)
    axes, rank = _axes(layer, shape), len(shape)
    if ctx.opset < 23:
        y = ctx.op("Mul", x, _inv_std(ctx, x, axes, layer.epsilon))  # x * rsqrt(mean(x^2) + eps)
        return _affine(ctx, y, _broadcast(weights[0], shape, axes), None)
    xt, back = _move_last(ctx, x, axes, rank)
    scale = ctx.const(np.reshape(weights[0], [shape[a] for a in axes]), "scale")
    y = ctx.op("RMSNormalization", xt, scale, axis=-len(axes), epsilon=layer.epsilon)
    return y if back is None else ctx.op("Transpose", y, perm=back)


@layer_exporter("GroupNormalization")
def group_normalization(ctx, layer, inputs, weights):
    x = inputs[0]
    shape = ctx.shape(x)
    w = dict(zip([w.name for w in layer.weights(shape)], weights))
    dim, groups = layer.channels_and_groups(shape)
    a, rank = layer.positive_axes(layer.axes, len(shape))[0], len(shape)
    gamma = w.get("gamma", np.ones(dim, np.float32))
    beta = w.get("beta", np.zeros(dim, np.float32))
    if ctx.opset >= 21 and rank > 2:  # the op: channels on axis 1, per-channel scale and bias
        perm = None if a == 1 else [0, a, *[i for i in range(1, rank) if i != a]]
        xt = x if perm is None else ctx.op("Transpose", x, perm=perm)
        y = ctx.op("GroupNormalization", xt, ctx.const(gamma, "gamma"), ctx.const(beta, "beta"),
                   num_groups=groups, epsilon=layer.epsilon)
        return y if perm is None else ctx.op("Transpose", y, perm=[int(i) for i in np.argsort(perm)])
    trailing = [-1 if d is None else d for d in shape[a + 1:]]  # Reshape's 0 copies by index: not after the split
    if trailing.count(-1) > 1:
        raise UnsupportedError(f"layer '{layer.name}': GroupNormalization below opset 21 needs the axes after "
                               f"its channel axis known (all but one). Received: input_shape={shape}")
    split = [0] * a + [groups, dim // groups] + trailing  # (N, .., C, ..) -> (N, .., G, C/G, ..)
    g = ctx.op("Reshape", x, ctx.ints(split, "group_shape"))
    reduce = [i for i in range(1, rank + 1) if i != a]
    d = _centered(ctx, g, reduce)
    y = ctx.op("Reshape", ctx.op("Mul", d, _inv_std(ctx, d, reduce, layer.epsilon)), ctx.op("Shape", x))
    trailing = [1] * (rank - a - 1)
    return _affine(ctx, y, np.reshape(gamma, [dim, *trailing]), np.reshape(beta, [dim, *trailing]))


@layer_exporter("UnitNormalization")
def unit_normalization(ctx, layer, inputs, weights):
    x = inputs[0]
    axes = _axes(layer, ctx.shape(x))
    inv = ctx.op("Reciprocal", ctx.op("Sqrt", ctx.reduce("ReduceSum", ctx.op("Mul", x, x), axes)))
    return ctx.op("Mul", x, ctx.op("Min", inv, ctx.const(1e12)))  # x * min(rsqrt(sum(x^2)), 1e12)
