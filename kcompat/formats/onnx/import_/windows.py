"""Shared helpers of the NCHW lowerings (convolution, pooling, Pad, BatchNormalization): window
attributes, ONNX pads vs TensorFlow's 'same', and padding a Keras layer cannot say itself, written as a
helper layer named ``<scope>_pad``: ZeroPadding, Cropping, or GetItem + Concatenate op nodes (edge /
reflect / wrap, and the -inf padding of MaxPool, for which repeating the edge value is exact).
References: onnx/reference/ops/op_pool_common.py, op_pad.py.
"""
from __future__ import annotations


import numpy as np

from ....layers.conv_kernels import same_pads
from .builder import Builder, Sym, has_activation
from .lowering import CF, refuse

NONNEGATIVE = {"relu", "relu6", "sigmoid", "hard_sigmoid", "softmax", "softplus", "exponential"}
PASS_VALUES = ("ZeroPadding", "MaxPooling", "Identity", "Dropout", "Flatten", "Reshape")  # keep x >= 0


def nchw(b: Builder, x: Sym, r: int, what: str) -> tuple[int | None, tuple]:
    """(channels, spatial sizes) of an (N, C, *spatial) input with r spatial axes."""
    shape = b.shape(x)
    if shape is None or len(shape) != r + 2:
        raise refuse(f"{what} with a {r}-D window needs a rank-{r + 2} (N, C, ...) input. "
                     f"Received: shape={None if shape is None else list(shape)}")
    return shape[1], tuple(shape[2:])


def window_ints(value, r: int, default: int, what: str) -> tuple:
    if value is None:
        return (default,) * r
    value = tuple(int(v) for v in value)
    if len(value) != r:
        raise refuse(f"{what}={list(value)} for a {r}-D window")
    return value


def pad_pairs(pads, r: int) -> list[tuple[int, int]]:
    """ONNX pads [x1_begin, x2_begin, ..., x1_end, x2_end, ...] as (before, after) per axis."""
    pads = [0] * (2 * r) if pads is None else [int(p) for p in pads]
    if len(pads) != 2 * r:
        raise refuse(f"pads={pads} for a {r}-D window")
    return [(pads[i], pads[i + r]) for i in range(r)]


def tf_same(n: int | None, k: int, s: int, d: int = 1) -> tuple[int, int] | None:
    """TF's 'same' (before, after) on one axis; None when it depends on an unknown size."""
    if n is None:
        return same_pads(1, k, 1, d) if s == 1 else None  # stride 1: span - 1 whatever the size
    return same_pads(n, k, s, d)


def auto_pads(auto_pad: str, pads, sizes, k, s, d) -> list[tuple[int, int]] | str:
    """The padding ONNX applies: (before, after) per axis, or 'same' for SAME_UPPER (TF's split)."""
    r = len(k)
    if auto_pad in ("NOTSET", ""):
        return pad_pairs(pads, r)
    if auto_pad == "VALID":
        return [(0, 0)] * r
    if auto_pad == "SAME_UPPER":
        return "same"
    if auto_pad == "SAME_LOWER":  # the odd pixel before
        split = [tf_same(n, kk, ss, dd) for n, kk, ss, dd in zip(sizes, k, s, d)]
        if None in split:
            raise refuse("auto_pad=SAME_LOWER with strides on a dynamic spatial size")
        return [(hi, lo) for lo, hi in split]
    raise refuse(f"auto_pad={auto_pad}")


def padding_mode(pairs, sizes, k, s, d) -> str:
    """'valid', 'same' (pairs equal TF's split) or 'explicit' (a padding layer is needed)."""
    if pairs == "same":
        return "same"
    if all(p == (0, 0) for p in pairs):
        return "valid"
    if all(tf_same(n, kk, ss, dd) == p for n, kk, ss, dd, p in zip(sizes, k, s, d, pairs)):
        return "same"
    if any(lo < 0 or hi < 0 for lo, hi in pairs):
        raise refuse(f"negative pads {[list(p) for p in pairs]}")
    return "explicit"


def zero_pad(b: Builder, x: Sym, pairs, first_axis: int = 2, inner: bool = True) -> Sym:
    """ZeroPadding{n}D of axes first_axis.. (channels_first: 2.., channels_last: 1..)."""
    r = len(pairs)
    padding = list(pairs[0]) if r == 1 else [list(p) for p in pairs]
    fmt = CF if first_axis == 2 else "channels_last"
    return b.layer(f"ZeroPadding{r}D", {"padding": padding, "data_format": fmt}, [x], inner=inner,
                   suffix="pad" if inner else None)  # the helper of a Conv, or a Pad node itself


def block_pad(b: Builder, x: Sym, grow, shape: tuple, value: float, dtype) -> Sym:
    """Pad any axes with ``value``: a Concatenate per padded axis of x and constant blocks (every size known)."""
    dtype = np.dtype(np.float32) if dtype is None or dtype.kind == "f" else np.dtype(dtype)
    now = list(shape)
    todo = [(a, lo, hi) for a, (lo, hi) in enumerate(grow) if lo or hi]
    if None in now:
        raise refuse(f"padding axes {[a for a, _, _ in todo]} of a tensor of unknown shape {list(shape)}")
    y = x
    for i, (a, lo, hi) in enumerate(todo):
        parts = [np.full([n if j == a else d for j, d in enumerate(now)], value, dtype) for n in (lo, hi)]
        y = b.op("Concatenate", [[p for p in (parts[0], y, parts[1]) if not isinstance(p, np.ndarray) or p.size]],
                 inner=i < len(todo) - 1, suffix="pad" if i < len(todo) - 1 else None, axis=a)
        now[a] += lo + hi
    return y


def axis_slice(a: int, start=None, stop=None, step=None) -> list:
    """A GetItem key taking ``start:stop:step`` on axis a (Keras's serialized slices)."""
    whole = {"class_name": "__slice__", "config": {"start": None, "stop": None, "step": None}}
    part = {"class_name": "__slice__", "config": {"start": start, "stop": stop, "step": step}}
    return [whole] * a + [part]


def crop(b: Builder, x: Sym, pairs, inner: bool = False) -> Sym:
    """Remove (before, after) cells from the spatial axes 2.. of x."""
    r = len(pairs)
    if r in (2, 3):
        return b.layer(f"Cropping{r}D", {"cropping": [list(p) for p in pairs], "data_format": CF}, [x],
                       inner=inner, suffix="crop")
    y = x
    cut = [(a, lo, hi) for a, (lo, hi) in enumerate(pairs, 2) if lo or hi]
    for i, (a, lo, hi) in enumerate(cut):  # Cropping1D crops axis 1 only: slice instead
        last = i == len(cut) - 1
        y = b.op("GetItem", [y, axis_slice(a, lo or None, -hi if hi else None)], inner=inner or not last, suffix="crop")
    return y


def copy_pad(b: Builder, x: Sym, pairs, mode: str, sizes, first_axis: int = 2, inner: bool = False) -> Sym:
    """Pad by copying cells: 'edge' repeats the border, 'reflect' mirrors without it, 'wrap' tiles.

    One Concatenate op per padded axis (GetItem slices of the tensor so far and the tensor itself),
    axis by axis like numpy.pad.
    """
    todo = [(a, lo, hi, n) for a, ((lo, hi), n) in enumerate(zip(pairs, sizes), first_axis) if lo or hi]
    y = x
    for i, (a, lo, hi, n) in enumerate(todo):
        limit = {"edge": None, "reflect": None if n is None else n - 1, "wrap": n}[mode]
        if mode == "wrap" and n is None:
            raise refuse("mode=wrap on a dynamic axis")
        if limit is not None and max(lo, hi) > limit:
            raise refuse(f"mode={mode} padding {max(lo, hi)} cells of an axis of {n}")
        keys = {"edge": (axis_slice(a, 0, 1), axis_slice(a, -1, None)),
                "reflect": (axis_slice(a, lo, 0, -1), axis_slice(a, -2, -2 - hi, -1)),  # x[lo..1], x[n-2..n-1-hi]
                "wrap": (axis_slice(a, -lo if lo else None, None), axis_slice(a, 0, hi))}[mode]
        times = (lo, hi) if mode == "edge" else (1, 1)
        parts = []
        if lo:
            parts += [b.op("GetItem", [y, keys[0]], inner=True, suffix="pad")] * times[0]
        parts.append(y)
        if hi:
            parts += [b.op("GetItem", [y, keys[1]], inner=True, suffix="pad")] * times[1]
        last = not inner and i == len(todo) - 1
        y = b.op("Concatenate", [parts], axis=a, inner=not last, suffix=None if last else "pad")
    return y


def nonnegative(b: Builder, x: Sym) -> bool:
    """x >= 0 everywhere: it comes (through padding / pooling / reshapes) from a relu-like activation."""
    ls = b.by_name.get(x.ref.layer)
    while ls is not None:
        act = ls.config.get("activation") if has_activation(ls.class_name) else None
        if act in NONNEGATIVE or (ls.class_name == "ReLU" and not ls.config.get("negative_slope")):
            return True
        if ls.is_op or not ls.class_name.startswith(PASS_VALUES) or not ls.nodes or not ls.nodes[0].refs():
            return False
        ls = b.by_name.get(ls.nodes[0].refs()[0].layer)
    return False


def kernel_spatial_first(w: np.ndarray) -> np.ndarray:
    """(A, B, *k) -> (*k, B, A): ONNX's (out, in, *k) conv weight as Keras's (*k, in, out)."""
    r = w.ndim - 2
    return np.ascontiguousarray(np.transpose(w, (*range(2, r + 2), 1, 0)))


def conv_layer(b: Builder, class_name: str, config: dict, x: Sym, kernel: np.ndarray, bias: np.ndarray | None,
                width: int | None, inner: bool = False) -> Sym:
    """A convolution layer; its bias as an Add op (constant first) when Keras would add it on the wrong axis.

    Keras 3's TensorFlow ``ops.add`` turns ``x + bias`` into ``tf.nn.bias_add`` and picks NHWC whenever
    x's last axis has the bias's size, so a channels_first convolution whose output width equals its
    filter count gets its bias added along the width (keras/src/backend/tensorflow/numpy.py, add).
    ``width``: the output's last-axis size, if known.
    """
    if bias is None or width is None or width != bias.size or bias.size == 1:
        return b.layer(class_name, config, [x], [kernel] + ([] if bias is None else [bias]), inner=inner)
    y = b.layer(class_name, {**config, "use_bias": False}, [x], [kernel], inner=True)
    rank = len(config["kernel_size"])
    return b.op("Add", [bias.reshape(1, bias.size, *(1,) * rank), y], inner=inner, suffix="bias")
