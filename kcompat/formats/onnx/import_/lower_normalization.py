"""ONNX normalization ops -> Keras normalization layers: LayerNormalization and RMSNormalization over
trailing axes, BatchNormalization (folded into the convolution before it when nothing else reads that),
InstanceNormalization and GroupNormalization. Contract: lowering.py.
Reference: onnx/reference/ops/op_batch_normalization.py, op_layer_normalization.py.
"""
from __future__ import annotations

from typing import Any

import numpy as np

from .builder import Sym
from .lowering import as_const, as_sym, f32, lowering, refuse


def _trailing(b, x: Sym, axis: int, what: str) -> tuple[list[int], list[int]]:
    """The axes ``axis..`` that LayerNormalization / RMSNormalization normalise, and their (known) sizes."""
    shape = b.shape(x)
    if shape is None:
        raise refuse(f"{what} on a tensor of unknown rank")
    rank = len(shape)
    if not -rank <= axis < rank:
        raise refuse(f"axis={axis} for a rank-{rank} input")
    axis %= rank
    if axis == 0:
        raise refuse("axis=0 (normalises across the batch)")
    dims = list(shape[axis:])
    if None in dims:
        raise refuse(f"normalised axes of unknown size (input shape {list(shape)})")
    return list(range(axis, rank)), dims


def _per_axis(value: Any, dims: list[int], what: str) -> np.ndarray:
    """A scale / bias that broadcasts against the normalised axes, as an array of exactly their sizes."""
    v = as_const(value, what)
    while v.ndim > len(dims) and v.shape[0] == 1:
        v = v[0]
    try:
        return np.ascontiguousarray(np.broadcast_to(v, dims).astype(np.float32))
    except ValueError:
        raise refuse(f"{what} of shape {list(v.shape)} for normalised axes of sizes {dims}") from None


def _norm_axis(axes: list[int], rank: int) -> Any:
    """Keras's ``axis``: -1 for the last axis alone (its default), else the list of axes."""
    return -1 if axes == [rank - 1] else axes


def _read(b, index: int) -> bool:
    """The node's output ``index`` exists and something reads it."""
    out = b.node.output[index] if len(b.node.output) > index else ""
    return bool(out) and (bool(b.g.consumers.get(out)) or out in b.g.outputs)


def _normalized(b, x: Sym, axis: int, epsilon: float, center: bool) -> tuple:
    """Op nodes for ONNX's normalisation over axes ``axis..`` (the batch too): (x - mean) / sqrt(var + eps), or
    x / sqrt(mean(x^2) + eps) without ``center``. Returns (normalised, mean, 1 / std)."""
    rank = b.rank(x)
    axes = list(range(axis % rank, rank))
    reduce = {"axis": axes[0] if len(axes) == 1 else axes, "keepdims": True}
    mean = b.op("Mean", [x], inner=True, suffix="mean", **reduce) if center else None
    d = b.op("Subtract", [x, mean], inner=True, suffix="centered") if center else x
    var = b.op("Mean", [b.op("Square", [d], inner=True, suffix="square")], inner=True, suffix="variance", **reduce)
    inv = b.op("Rsqrt", [b.op("Add", [var, f32(epsilon)], inner=True, suffix="epsilon")], module="keras.src.ops.math",
               inner=True, suffix="inv_std")
    return b.op("Multiply", [d, inv], inner=True, suffix="normalized"), mean, inv


@lowering("LayerNormalization")
def LayerNormalization(b, X, Scale, B=None, axis=-1, epsilon=1e-5, stash_type=1):
    x = as_sym(b, X)
    if _read(b, 1) or _read(b, 2) or int(axis) % max(b.rank(x), 1) == 0:  # Mean / InvStdDev read, or the batch axis
        y, mean, inv = _normalized(b, x, int(axis), epsilon, center=True)
        y = b.op("Multiply", [y, as_const(Scale, "Scale")], inner=True, suffix="scale")
        y = y if B is None else b.op("Add", [y, as_const(B, "B")], inner=True, suffix="shift")
        return [b.claim(y), mean, inv]
    axes, dims = _trailing(b, x, int(axis), "LayerNormalization")
    gamma = _per_axis(Scale, dims, "Scale")
    beta = None if B is None else _per_axis(B, dims, "B")
    scale = not np.all(gamma == 1)  # kcompat writes ones for a Keras layer with scale=False
    weights = ([gamma] if scale else []) + ([] if beta is None else [beta])
    return b.layer("LayerNormalization", {"axis": _norm_axis(axes, b.rank(x)), "epsilon": f32(epsilon),
                                          "center": beta is not None, "scale": bool(scale),
                                          "rms_scaling": False}, [x], weights)


@lowering("RMSNormalization")
def RMSNormalization(b, X, scale, axis=-1, epsilon=1e-5, stash_type=1):
    x = as_sym(b, X)
    if int(axis) % max(b.rank(x), 1) == 0:  # over the batch axis too: op nodes
        y, _, _ = _normalized(b, x, int(axis), epsilon, center=False)
        return b.claim(b.op("Multiply", [y, as_const(scale, "scale")], inner=True, suffix="scale"))
    axes, dims = _trailing(b, x, int(axis), "RMSNormalization")
    return b.layer("RMSNormalization", {"axis": _norm_axis(axes, b.rank(x)), "epsilon": f32(epsilon)}, [x],
                   [_per_axis(scale, dims, "scale")])



@lowering("BatchNormalization")
def BatchNormalization(b, X, scale, B, input_mean, input_var, epsilon=1e-5, momentum=0.9, spatial=1, is_test=0,
                       consumed_inputs=None, training_mode=0):
    x = as_sym(b, X)
    if training_mode:
        return _batch_statistics(b, x, scale, B, input_mean, input_var, epsilon, momentum)
    if any(o and (b.g.consumers.get(o) or o in b.g.outputs) for o in b.node.output[1:]):
        raise refuse("its training outputs (running / saved mean and variance) are read")
    gamma, beta, mean, var = (as_const(v, n) for v, n in ((scale, "scale"), (B, "B"), (input_mean, "mean"),
                                                         (input_var, "var")))
    shape = b.shape(x)
    c = shape[1] if shape is not None and len(shape) >= 2 else None
    if spatial or len(shape or ()) == 2:
        if c is None or any(p.size != c for p in (gamma, beta, mean, var)):
            raise refuse(f"statistics of shapes {[list(p.shape) for p in (gamma, beta, mean, var)]} for {c} channels")
        weights = [np.ascontiguousarray(p.reshape(c)) for p in (gamma, beta, mean, var)]
        return b.layer("BatchNormalization", {"axis": 1, "epsilon": f32(epsilon), "momentum": f32(momentum),
                                              "center": True, "scale": True}, [x], weights)
    if any(p.shape != tuple(shape[1:]) for p in (gamma, beta, mean, var)):
        raise refuse(f"spatial=0 with statistics of shape {list(gamma.shape)} for an input of shape {list(shape)}")
    # spatial=0 (opset < 9): statistics per activation: y = x * a + (beta - mean * a), a = gamma / sqrt(var + eps)
    a = (gamma.astype(np.float64) / np.sqrt(var.astype(np.float64) + float(np.float32(epsilon))))
    offset = beta.astype(np.float64) - mean.astype(np.float64) * a
    y = b.op("Multiply", [x, a.astype(np.float32)], inner=True, suffix="scale")
    return b.op("Add", [offset.astype(np.float32), y])  # constant first: see windows.conv_layer


def _group_norm(b, x: Sym, groups: int, gamma: np.ndarray, beta: np.ndarray, epsilon: float) -> Sym:
    """Keras GroupNormalization over axis 1 (per sample: each group's channels and all positions)."""
    shape = b.shape(x)
    c = None if shape is None or len(shape) < 3 else shape[1]
    if c is None or gamma.size != c or beta.size != c or c % groups:
        raise refuse(f"{c} channels in {groups} groups with scale / bias of {gamma.size} / {beta.size} values")
    weights = [np.ascontiguousarray(gamma.reshape(c)), np.ascontiguousarray(beta.reshape(c))]
    return b.layer("GroupNormalization", {"groups": int(groups), "axis": 1, "epsilon": f32(epsilon),
                                          "center": True, "scale": True}, [x], weights)


@lowering("InstanceNormalization")
def InstanceNormalization(b, input, scale, B, epsilon=1e-5):
    x = as_sym(b, input)
    shape = b.shape(x)
    return _group_norm(b, x, shape[1] if shape and len(shape) > 2 and shape[1] else 0,
                       as_const(scale, "scale"), as_const(B, "B"), epsilon)  # one group per channel


@lowering("GroupNormalization")
def GroupNormalization(b, X, scale, bias, epsilon=1e-5, num_groups=None, stash_type=1):
    if b.g.opset < 21:  # GroupNormalization-18: scale and bias per group, not per channel
        raise refuse("opset < 21 (scale and bias per group)")
    return _group_norm(b, as_sym(b, X), int(num_groups), as_const(scale, "scale"), as_const(bias, "bias"), epsilon)


def _batch_statistics(b, x: Sym, scale, B, input_mean, input_var, epsilon: float, momentum: float) -> list:
    """BatchNormalization in training mode: this batch's mean and (population) variance over every axis but 1;
    the running mean and variance outputs are the inputs' blended with them by ``momentum``."""
    shape = b.shape(x)
    if shape is None or len(shape) < 2 or shape[1] is None:
        raise refuse("training_mode=1 on an input of unknown channels")
    axes = [a for a in range(len(shape)) if a != 1]
    c = shape[1]
    per_channel = [c] + [1] * (len(shape) - 2)  # (C, 1, ...) broadcasts against (N, C, ...)
    mean = b.op("Mean", [x], inner=True, suffix="batch_mean", axis=axes, keepdims=True)
    centered = b.op("Subtract", [x, mean], inner=True, suffix="centered")
    var = b.op("Mean", [b.op("Square", [centered], inner=True, suffix="square")], inner=True, suffix="batch_var",
               axis=axes, keepdims=True)
    inv = b.op("Rsqrt", [b.op("Add", [var, f32(epsilon)], inner=True, suffix="epsilon")], module="keras.src.ops.math",
               inner=True, suffix="inv_std")
    gamma, beta = (np.asarray(as_const(v, n), np.float32).reshape(per_channel) for v, n in ((scale, "scale"), (B, "B")))
    y = b.op("Multiply", [b.op("Multiply", [centered, inv], inner=True, suffix="normalized"), gamma], inner=True,
             suffix="scaled")
    y = b.claim(b.op("Add", [y, beta], inner=True, suffix="shifted"))
    m = f32(momentum)
    outs = [y]
    for current, running, what in ((mean, input_mean, "mean"), (var, input_var, "var")):
        flat = b.op("Reshape", [current], inner=True, suffix=f"{what}_flat", newshape=[c])
        blended = b.op("Add", [b.op("Multiply", [flat, 1.0 - m], inner=True, suffix=f"{what}_new"),
                               (np.asarray(as_const(running, what), np.float32) * np.float32(m)).reshape(c)],
                       inner=True, suffix=f"running_{what}")
        outs.append(blended)
    return outs


@lowering("MeanVarianceNormalization")
def MeanVarianceNormalization(b, X, axes=None):
    """(x - mean) / (sqrt(E[x^2] - mean^2) + 1e-9) over ``axes`` (default 0, 2, 3), as ONNX's function body."""
    x = as_sym(b, X)
    rank = b.rank(x)
    where = [int(a) % rank for a in (axes if axes is not None else [0, 2, 3])]
    reduce = {"axis": where[0] if len(where) == 1 else where, "keepdims": True}
    mean = b.op("Mean", [x], inner=True, suffix="mean", **reduce)
    square_mean = b.op("Mean", [b.op("Square", [x], inner=True, suffix="square")], inner=True, suffix="square_mean",
                       **reduce)
    var = b.op("Subtract", [square_mean, b.op("Square", [mean], inner=True, suffix="mean_square")], inner=True,
               suffix="variance")
    std = b.op("Add", [b.op("Sqrt", [var], inner=True, suffix="std"), 1e-9], inner=True, suffix="std_eps")
    return b.op("Divide", [b.op("Subtract", [x, mean], inner=True, suffix="centered"), std])


@lowering("LRN")
def LRN(b, X, alpha=1e-4, beta=0.75, bias=1.0, size=1):
    """x / (bias + alpha / size * sum of x^2 over a window of ``size`` channels)^beta: the window sum is one
    Einsum with a constant band matrix (channel c sums c - floor((size - 1) / 2) .. c + ceil((size - 1) / 2))."""
    x = as_sym(b, X)
    shape = b.shape(x)
    if shape is None or len(shape) < 3 or shape[1] is None:
        raise refuse("an input of unknown channels")
    c, rank = shape[1], len(shape)
    lo, hi = (size - 1) // 2, -(-(size - 1) // 2)
    band = np.zeros((c, c), np.float32)  # (out channel, in channel)
    for d in range(c):
        band[d, max(0, d - lo):min(c, d + hi + 1)] = 1.0
    letters = "abcdefgh"[:rank]
    out = letters[0] + "z" + letters[2:]
    total = b.op("Einsum", [b.op("Square", [x], inner=True, suffix="square"), band], inner=True, suffix="window",
                 subscripts=f"{letters},z{letters[1]}->{out}")
    base = b.op("Add", [b.op("Multiply", [total, f32(alpha) / size], inner=True, suffix="alpha"), f32(bias)],
                inner=True, suffix="bias")
    return b.op("Divide", [x, b.op("Power", [base, f32(beta)], inner=True, suffix="power")])
