"""ONNX pooling -> Keras pooling layers in channels_first: MaxPool, AveragePool, their Global forms.

ceil_mode as onnxruntime computes it (a window that would start in the end padding is dropped:
pool_attributes.h); padding Keras cannot say is a helper layer (windows.py). Contract: lowering.py.
Reference: onnx/reference/ops/op_pool_common.py.
"""
from __future__ import annotations

import math

import numpy as np

from .lowering import CF, as_sym, lowering, refuse
from .windows import auto_pads, copy_pad, nchw, nonnegative, pad_pairs, tf_same, window_ints, zero_pad


def _pool_out(n: int, k: int, s: int, lo: int, hi: int, ceil_mode: int) -> int:
    """ONNX pooling output size; ceil_mode drops a window that would start in the end padding."""
    num = n + lo + hi - k
    out = (-(-num // s) if ceil_mode else num // s) + 1
    if ceil_mode and (out - 1) * s >= n + lo:
        out -= 1
    return out


def _pool(b, kind: str, X, auto_pad, ceil_mode, dilations, kernel_shape, pads, strides, count_include_pad=0):
    x = as_sym(b, X)
    if kernel_shape is None:
        raise refuse("no kernel_shape")
    k = tuple(int(v) for v in kernel_shape)
    r = len(k)
    if not 1 <= r <= 3:
        raise refuse(f"{r}-D pooling")
    c, sizes = nchw(b, x, r, f"{kind}Pool")
    s, d = window_ints(strides, r, 1, "strides"), window_ints(dilations, r, 1, "dilations")
    if max(d) > 1:  # Keras pooling has no dilation: the window's cells as strided slices
        pairs = auto_pads(auto_pad, pads, sizes, k, s, d)
        if pairs == "same":
            pairs = [tf_same(n, kk, ss, dd) for n, kk, ss, dd in zip(sizes, k, s, d)]
        return _dilated_pool(b, kind, x, sizes, k, s, d, pairs, ceil_mode, count_include_pad)
    keras = f"{'Max' if kind == 'Max' else 'Average'}Pooling{r}D"
    base = {"pool_size": list(k), "strides": list(s), "data_format": CF}
    if auto_pad == "SAME_UPPER" and (kind == "Max" or not count_include_pad):  # TF 'same' padding, uncounted
        return b.layer(keras, {**base, "padding": "same"}, [x])
    if auto_pad in ("SAME_UPPER", "SAME_LOWER", "VALID"):
        pairs, ceil_mode = auto_pads(auto_pad, None, sizes, k, s, (1,) * r), 0
        if pairs == "same":
            pairs = [tf_same(n, kk, ss) for n, kk, ss in zip(sizes, k, s)]
            if None in pairs:
                raise refuse("auto_pad=SAME_UPPER with count_include_pad=1 on a dynamic spatial size")
    elif auto_pad in ("NOTSET", ""):
        pairs = pad_pairs(pads, r)
    else:
        raise refuse(f"auto_pad={auto_pad}")
    if any(lo < 0 or hi < 0 for lo, hi in pairs):
        raise refuse(f"negative pads {[list(p) for p in pairs]}")
    if ceil_mode and None in [n for n, ss in zip(sizes, s) if ss > 1]:
        raise refuse("ceil_mode=1 on a dynamic spatial size")
    # the padding really used: the end shrinks to the last window read (ceil_mode may extend it)
    outs = [None if n is None else _pool_out(n, kk, ss, lo, hi, ceil_mode)
            for n, kk, ss, (lo, hi) in zip(sizes, k, s, pairs)]
    used = [(lo, hi) if o is None else (lo, max((o - 1) * ss + kk - n - lo, 0))
            for o, n, kk, ss, (lo, hi) in zip(outs, sizes, k, s, pairs)]
    if any(max(lo, hi) >= kk for (lo, hi), kk in zip(used, k)):
        raise refuse(f"pads {[list(p) for p in used]} as wide as the window {list(k)}")
    if all(p == (0, 0) for p in used):
        return b.layer(keras, {**base, "padding": "valid"}, [x])
    same = all(o is not None and o == -(-n // ss) and p == tf_same(n, kk, ss)
               for o, n, kk, ss, p in zip(outs, sizes, k, s, used))
    if same and (kind == "Max" or not count_include_pad):
        return b.layer(keras, {**base, "padding": "same"}, [x])
    if kind == "Max":  # pads are -inf: zeros are exact on x >= 0, repeating the border always is
        x = zero_pad(b, x, used) if nonnegative(b, x) else copy_pad(b, x, used, "edge", sizes, inner=True)
        return b.layer(keras, {**base, "padding": "valid"}, [x])
    scale = _average_scale(k, s, sizes, pairs, used, outs, count_include_pad)
    y = b.layer(keras, {**base, "padding": "valid"}, [zero_pad(b, x, used)], inner=scale is not None)
    if scale is None:
        return y
    return b.op("Multiply", [y, scale], suffix="scale")  # mean over the window -> mean over the cells counted


def _dilated_pool(b, kind: str, x, sizes, k, s, d, pairs, ceil_mode, count_include_pad):
    """A pooling window with gaps: the max (or mean) of prod(k) strided GetItem slices of the padded input, one per
    cell of the window; the mean divides by the cells counted at each output (as onnx's reference)."""
    import itertools
    r = len(k)
    if None in sizes or None in pairs:
        raise refuse("dilations on a dynamic spatial size")
    spans = [(kk - 1) * dd + 1 for kk, dd in zip(k, d)]
    outs = [_pool_out(n, sp, ss, lo, hi, ceil_mode) for n, sp, ss, (lo, hi) in zip(sizes, spans, s, pairs)]
    ends = [max(hi, (o - 1) * ss + sp - n - lo) for o, ss, sp, n, (lo, hi) in zip(outs, s, spans, sizes, pairs)]
    grow = [(lo, e) for (lo, _), e in zip(pairs, ends)]  # the pads, and what ceil_mode's last window reaches
    if any(g != (0, 0) for g in grow):
        if kind == "Max":  # pads are -inf: zeros plus a -inf mask outside x
            x = zero_pad(b, x, grow)
            inside = np.ones([1, 1], bool)
            for (lo, hi), n in zip(grow, sizes):
                line = np.zeros(lo + n + hi, bool)
                line[lo:lo + n] = True
                inside = inside[..., None] & line
            x = b.op("Add", [np.where(inside, np.float32(0), np.float32(-np.inf)), x], inner=True, suffix="neg_inf")
        else:
            x = zero_pad(b, x, grow)
    whole = {"class_name": "__slice__", "config": {"start": None, "stop": None, "step": None}}
    cells = []
    for offset in itertools.product(*[range(kk) for kk in k]):
        key = [whole, whole] + [{"class_name": "__slice__",
                                 "config": {"start": j * dd, "stop": j * dd + (o - 1) * ss + 1, "step": ss}}
                                for j, dd, o, ss in zip(offset, d, outs, s)]
        cells.append(b.op("GetItem", [x, key], inner=True, suffix="cell"))  # (N, C, *out)
    if kind == "Max":
        return b.layer("Maximum", {}, [cells])
    total = b.layer("Add", {}, [cells], inner=True, suffix="window_sum")
    counts = []  # per axis and output position: the cells of the window that count
    for n, kk, dd, ss, o, (lo, hi) in zip(sizes, k, d, s, outs, pairs):
        first, last = (-lo, n + hi) if count_include_pad else (0, n)
        taps = (np.arange(o) * ss - lo)[:, None] + np.arange(kk) * dd  # (out, k) input positions
        counts.append(((taps >= first) & (taps < last)).sum(axis=1))
    count = np.ones([1] * r)
    for axis, c in enumerate(counts):
        count = count * c.reshape([-1 if i == axis else 1 for i in range(r)])
    return b.op("Multiply", [total, (1.0 / count).astype(np.float32)[None, None]])


def _average_scale(k, s, sizes, pairs, used, outs, count_include_pad) -> np.ndarray | None:
    """window size / cells counted per output position, shape (1, 1, *out); None when all ones.

    Counted: the input (count_include_pad=0) or the input and its explicit pads, never the cells
    ceil_mode adds after the pads (onnxruntime and PyTorch).
    """
    if count_include_pad and all(u[1] <= p[1] for u, p in zip(used, pairs)):
        return None  # zeros from explicit pads count: AveragePooling over the zero-padded input is exact
    if None in outs:
        raise refuse("count_include_pad=0 with pads on a dynamic spatial size")
    counts = []
    for n, kk, ss, (lo, hi), o in zip(sizes, k, s, pairs, outs):
        first, last = (-lo, n + hi) if count_include_pad else (0, n)
        start = np.arange(o) * ss - lo  # (out,) window starts
        counts.append(np.minimum(start + kk, last) - np.maximum(start, first))
    total = math.prod(k)
    scale = np.asarray(total, np.float64) / math.prod(np.ix_(*counts))  # (*out,)
    if np.all(scale == 1):
        return None
    return scale.astype(np.float32)[None, None]  # (1, 1, *out)


@lowering("MaxPool")
def MaxPool(b, X, auto_pad="NOTSET", ceil_mode=0, dilations=None, kernel_shape=None, pads=None, storage_order=0,
            strides=None):
    if len(b.node.output) > 1 and b.node.output[1] and (b.g.consumers.get(b.node.output[1])
                                                        or b.node.output[1] in b.g.outputs):
        raise refuse("the Indices output")
    return _pool(b, "Max", X, auto_pad, ceil_mode, dilations, kernel_shape, pads, strides)


@lowering("AveragePool")
def AveragePool(b, X, auto_pad="NOTSET", ceil_mode=0, count_include_pad=0, dilations=None, kernel_shape=None,
                pads=None, strides=None):
    return _pool(b, "Average", X, auto_pad, ceil_mode, dilations, kernel_shape, pads, strides, count_include_pad)


def _global(kind: str):
    def lower(b, X):
        x = as_sym(b, X)
        r = b.rank(x) - 2
        if not 1 <= r <= 3:
            raise refuse(f"a rank-{r + 2} input")
        return b.layer(f"Global{kind}Pooling{r}D", {"data_format": CF, "keepdims": True}, [x])  # (N, C, 1, ..)
    return lower


lowering("GlobalAveragePool")(_global("Average"))


lowering("GlobalMaxPool")(_global("Max"))


@lowering("LpPool")
def LpPool(b, X, auto_pad="NOTSET", ceil_mode=0, dilations=None, kernel_shape=None, p=2, pads=None, strides=None):
    """(sum of |x|^p over the window)^(1 / p): AveragePool of |x|^p counting the zero pads, times the window size."""
    x = as_sym(b, X)
    if kernel_shape is None or p < 1:
        raise refuse(f"kernel_shape={kernel_shape}, p={p}")
    power = b.op("Absolute", [x], inner=True, suffix="abs")
    if p != 1:
        power = b.op("Power", [power, float(p)], inner=True, suffix="power")
    mean = _pool(b, "Average", b.like(power, x), auto_pad, ceil_mode, dilations, kernel_shape, pads, strides,
                 count_include_pad=1)
    b.onnx_names.pop(mean.ref.layer, None)  # a step: the node's output is the root below
    total = b.op("Multiply", [mean, float(math.prod(kernel_shape))], inner=True, suffix="sum")
    return b.claim(total if p == 1 else b.op("Power", [total, 1.0 / p], inner=True, suffix="root"))
