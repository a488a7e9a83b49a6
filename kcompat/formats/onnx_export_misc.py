"""ONNX exporters of normalization, reshaping, merging, embedding and preprocessing layers.

Normalization: BatchNormalization is ONNX BatchNormalization (channel axis moved to 1 by a
Transpose pair, which onnx_optimize.py cancels inside a CNN); LayerNormalization is the
LayerNormalization op from opset 17 and RMSNormalization the RMSNormalization op from 23
(normalized axes moved last), both decomposed as Keras computes them before that;
GroupNormalization is the opset-21 op (per-channel scale; opset 18's was per group) or
decomposed. Reshaping: Pad, Slice, Resize (nearest: asymmetric / floor, i.e. repeats;
bilinear: half_pixel like TF; bicubic: TF's table-based cubic as one matrix per axis), Tile.
References: kcompat/layers/normalization.py, reshaping.py, merging.py, embedding.py,
preprocessing.py, regularization.py (what each computes).
"""
from __future__ import annotations

import numpy as np
from onnx import TensorProto

from ..errors import UnsupportedError
from ..layers.normalization import rsqrt
from ..layers.reshaping import cubic_axis
from .onnx_export import exporter
from .onnx_layers import merge_operands

INT64_MAX = 2**63 - 1


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


@exporter("BatchNormalization")
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


@exporter("LayerNormalization")
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


@exporter("RMSNormalization")
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


@exporter("GroupNormalization")
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


@exporter("UnitNormalization")
def unit_normalization(ctx, layer, inputs, weights):
    x = inputs[0]
    axes = _axes(layer, ctx.shape(x))
    inv = ctx.op("Reciprocal", ctx.op("Sqrt", ctx.reduce("ReduceSum", ctx.op("Mul", x, x), axes)))
    return ctx.op("Mul", x, ctx.op("Min", inv, ctx.const(1e12)))  # x * min(rsqrt(sum(x^2)), 1e12)


# ------------------------------------------------------------------ reshaping
@exporter("RepeatVector")
def repeat_vector(ctx, layer, inputs, weights):
    y = ctx.op("Unsqueeze", inputs[0], ctx.ints([1], "axes"))  # (N, F) -> (N, 1, F)
    return ctx.op("Tile", y, ctx.ints([1, layer.n, 1], "repeats"))  # -> (N, n, F)


@exporter("ZeroPadding1D", "ZeroPadding2D", "ZeroPadding3D")
def zero_padding(ctx, layer, inputs, weights):
    x = inputs[0]
    rank = len(ctx.shape(x))
    begin, end = [0] * rank, [0] * rank
    for a, (lo, hi) in zip(layer.spatial_axes(), layer.padding):
        begin[a], end[a] = lo, hi
    return ctx.op("Pad", x, ctx.ints(begin + end, "pads"))  # constant 0


@exporter("Cropping1D", "Cropping2D", "Cropping3D")
def cropping(ctx, layer, inputs, weights):
    axes = layer.spatial_axes()
    starts = [lo for lo, _ in layer.cropping]
    ends = [-hi if hi else INT64_MAX for _, hi in layer.cropping]
    return ctx.op("Slice", inputs[0], ctx.ints(starts, "starts"), ctx.ints(ends, "ends"), ctx.ints(axes, "axes"))


@exporter("UpSampling1D", "UpSampling2D", "UpSampling3D")
def upsampling(ctx, layer, inputs, weights):
    x = inputs[0]
    scales = [1.0] * len(ctx.shape(x))
    for a, s in zip(layer.spatial_axes(), layer.size):
        scales[a] = float(s)
    attrs = {"mode": "nearest", "coordinate_transformation_mode": "asymmetric", "nearest_mode": "floor"}
    if layer.interpolation == "bilinear":
        attrs = {"mode": "linear", "coordinate_transformation_mode": "half_pixel"}
    elif layer.interpolation == "bicubic":
        return _bicubic(ctx, layer, x)
    return ctx.op("Resize", x, "", ctx.const(scales, "scales"), **attrs)  # "area" == nearest for whole factors


def _bicubic(ctx, layer, x: str) -> str:
    """TF's ResizeBicubic is a fixed matrix per axis (its 1024-entry coefficient table is not ONNX's
    exact cubic: 1e-3 apart at size 3): one Einsum per axis, width first like TF."""
    shape = ctx.shape(x)
    letters = "abcdefgh"[:len(shape)]
    for a, s in reversed(list(zip(layer.spatial_axes(), layer.size))):
        if shape[a] is None:
            raise UnsupportedError(f"layer '{layer.name}': bicubic UpSampling2D needs known spatial sizes. "
                                   f"Received: input_shape={shape}")
        matrix = cubic_axis(np.eye(shape[a], dtype=np.float32), 0, shape[a] * s)  # (out, in)
        out = letters.replace(letters[a], "z")
        x = ctx.op("Einsum", x, ctx.const(matrix, "interpolation"), equation=f"{letters},z{letters[a]}->{out}")
    return x


# ------------------------------------------------------------------ merging, embedding, preprocessing
@exporter("Average")
def average(ctx, layer, inputs, weights):
    tensors = merge_operands(ctx, inputs[0] if isinstance(inputs[0], list) else inputs)
    y = tensors[0]
    for other in tensors[1:]:
        y = ctx.op("Add", y, other)
    return ctx.op("Div", y, ctx.const(float(len(tensors))))


def _l2_normalize(ctx, x: str, axis: int) -> str:
    """keras.ops.normalize: x * min(rsqrt(sum(x^2)), 1e7)."""
    inv = ctx.op("Reciprocal", ctx.op("Sqrt", ctx.reduce("ReduceSum", ctx.op("Mul", x, x), [axis])))
    return ctx.op("Mul", x, ctx.op("Min", inv, ctx.const(1e7)))


@exporter("Dot")
def dot(ctx, layer, inputs, weights):
    x1, x2 = inputs[0] if isinstance(inputs[0], list) else inputs
    s1, s2 = ctx.shape(x1), ctx.shape(x2)
    a1, a2 = layer.dot_axes(len(s1), len(s2))
    if layer.normalize:
        x1, x2 = _l2_normalize(ctx, x1, a1), _l2_normalize(ctx, x2, a2)
    if len(s1) == len(s2) == 2:  # (N, k) . (N, k) -> (N, 1)
        return ctx.reduce("ReduceSum", ctx.op("Mul", x1, x2), [1])
    k = s1[a1]
    mid = [d for i, d in enumerate(s1) if i not in (0, a1)]
    trail = [d for i, d in enumerate(s2) if i not in (0, a2)]
    if a1 != len(s1) - 1:
        x1 = ctx.op("Transpose", x1, perm=[i for i in range(len(s1)) if i != a1] + [a1])  # (N, ..., k)
    if a2 != 1:
        x2 = ctx.op("Transpose", x2, perm=[0, a2, *[i for i in range(1, len(s2)) if i != a2]])  # (N, k, ...)
    if len(s1) != 3:
        x1 = ctx.op("Reshape", x1, ctx.ints([0, -1, k], "lhs_shape"))  # (N, P, k)
    if len(s2) != 3:
        x2 = ctx.op("Reshape", x2, ctx.ints([0, k, -1], "rhs_shape"))  # (N, k, Q)
    y = ctx.op("MatMul", x1, x2)  # (N, P, Q)
    out = [0, *mid, *trail]
    if len(out) != 3:
        if out.count(None) > 1:
            raise UnsupportedError(f"layer '{layer.name}': Dot with several unknown axis sizes has no ONNX export")
        y = ctx.op("Reshape", y, ctx.ints([-1 if d is None else d for d in out], "shape"))
    return y


@exporter("Embedding")
def embedding(ctx, layer, inputs, weights):
    table = ctx.const(weights[0], "embeddings", dtype=None)
    idx = inputs[0]
    if ctx.dtype(idx) not in ("int32", "int64"):
        idx = ctx.op("Cast", idx, to=TensorProto.INT64)  # Keras casts floats to int32: truncation
    return ctx.op("Gather", table, idx, axis=0)  # (N, T) -> (N, T, output_dim)


def _float(ctx, x: str) -> str:
    """x as float32 (Keras's preprocessing layers compute in float32)."""
    return x if ctx.dtype(x) == "float32" else ctx.op("Cast", x, to=TensorProto.FLOAT)


@exporter("Rescaling")
def rescaling(ctx, layer, inputs, weights):
    x = _float(ctx, inputs[0])
    y = ctx.op("Mul", x, ctx.const(layer.scale, "scale"))
    return ctx.op("Add", y, ctx.const(layer.offset, "offset"))


@exporter("Normalization")
def normalization(ctx, layer, inputs, weights):
    x = _float(ctx, inputs[0])
    shape = ctx.shape(inputs[0])
    keep = layer.kept_axes(shape)
    if weights:  # adapted: statistics have the kept axes' sizes
        bshape = [shape[d] if d in keep else 1 for d in range(len(shape))]
        mean, variance = weights[0].reshape(bshape), weights[1].reshape(bshape)
    else:  # from the config: a scalar broadcasts; an array fills the last kept axes
        mean, variance = layer.mean, layer.variance
        bshape = [1] * len(shape)
        for i in range(1, mean.ndim + 1):
            bshape[keep[-i]] = mean.shape[-i]
        mean, variance = mean.reshape(bshape), variance.reshape(bshape)
    std = np.maximum(np.sqrt(variance.astype(np.float32)), np.float32(1e-7))
    mean = ctx.const(mean, "mean")
    if layer.invert:
        return ctx.op("Add", mean, ctx.op("Mul", x, ctx.const(std, "std")))
    return ctx.op("Div", ctx.op("Sub", x, mean), ctx.const(std, "std"))


@exporter("Masking")
def masking(ctx, layer, inputs, weights):
    x = inputs[0]
    same = ctx.op("Equal", x, ctx.const(float(layer.mask_value)))
    differs = ctx.op("Cast", ctx.op("Not", same), to=TensorProto.FLOAT)
    keep = ctx.op("Greater", ctx.reduce("ReduceMax", differs, [-1]), ctx.const(0.0))  # (N, T, 1): any feature differs
    return ctx.op("Where", keep, x, ctx.const(0.0))
