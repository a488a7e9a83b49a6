"""ONNX convolution-network ops -> Keras layers in channels_first (the model keeps ONNX's NCHW layout);
Resize also repeats the spatial axes of an NHWC tensor (kcompat's own UpSampling export) as channels_last.

Same contract as onnx_lower.py: one function per op, its signature is the op's schema.
Padding a Keras layer cannot say itself becomes a helper layer named ``<scope>_pad``:
ZeroPadding, Cropping, or GetItem + Concatenate op nodes (edge / reflect / wrap, and the
-inf padding of MaxPool, for which repeating the edge value is exact). 'same' is used
where ONNX's pads equal TensorFlow's 'same' split (the odd pixel after).
References: onnx/reference/ops/op_conv.py, op_conv_transpose.py, op_pool_common.py, op_pad.py,
op_batch_normalization.py; onnxruntime's pool_attributes.h (ceil_mode drops a window that
would start in the end padding).
"""
from __future__ import annotations

import math

import numpy as np

from ..layers.conv_kernels import same_pads, span
from .onnx_builder import Builder, Sym, has_activation
from .onnx_lower import Dynamic, _const, _sym, f32, lowering, refuse

CF = "channels_first"
NONNEGATIVE = {"relu", "relu6", "sigmoid", "hard_sigmoid", "softmax", "softplus", "exponential"}
PASS_VALUES = ("ZeroPadding", "MaxPooling", "Identity", "Dropout", "Flatten", "Reshape")  # keep x >= 0


# ------------------------------------------------------------------ shared helpers
def _nchw(b: Builder, x: Sym, r: int, what: str) -> tuple[int | None, tuple]:
    """(channels, spatial sizes) of an (N, C, *spatial) input with r spatial axes."""
    shape = b.shape(x)
    if shape is None or len(shape) != r + 2:
        raise refuse(f"{what} with a {r}-D window needs a rank-{r + 2} (N, C, ...) input. "
                     f"Received: shape={None if shape is None else list(shape)}")
    return shape[1], tuple(shape[2:])


def _ints(value, r: int, default: int, what: str) -> tuple:
    if value is None:
        return (default,) * r
    value = tuple(int(v) for v in value)
    if len(value) != r:
        raise refuse(f"{what}={list(value)} for a {r}-D window")
    return value


def _pairs(pads, r: int) -> list[tuple[int, int]]:
    """ONNX pads [x1_begin, x2_begin, ..., x1_end, x2_end, ...] as (before, after) per axis."""
    pads = [0] * (2 * r) if pads is None else [int(p) for p in pads]
    if len(pads) != 2 * r:
        raise refuse(f"pads={pads} for a {r}-D window")
    return [(pads[i], pads[i + r]) for i in range(r)]


def _tf_same(n: int | None, k: int, s: int, d: int = 1) -> tuple[int, int] | None:
    """TF's 'same' (before, after) on one axis; None when it depends on an unknown size."""
    if n is None:
        return same_pads(1, k, 1, d) if s == 1 else None  # stride 1: span - 1 whatever the size
    return same_pads(n, k, s, d)


def _auto_pads(auto_pad: str, pads, sizes, k, s, d) -> list[tuple[int, int]] | str:
    """The padding ONNX applies: (before, after) per axis, or 'same' for SAME_UPPER (TF's split)."""
    r = len(k)
    if auto_pad in ("NOTSET", ""):
        return _pairs(pads, r)
    if auto_pad == "VALID":
        return [(0, 0)] * r
    if auto_pad == "SAME_UPPER":
        return "same"
    if auto_pad == "SAME_LOWER":  # the odd pixel before
        split = [_tf_same(n, kk, ss, dd) for n, kk, ss, dd in zip(sizes, k, s, d)]
        if None in split:
            raise refuse("auto_pad=SAME_LOWER with strides on a dynamic spatial size")
        return [(hi, lo) for lo, hi in split]
    raise refuse(f"auto_pad={auto_pad}")


def _padding_mode(pairs, sizes, k, s, d) -> str:
    """'valid', 'same' (pairs equal TF's split) or 'explicit' (a padding layer is needed)."""
    if pairs == "same":
        return "same"
    if all(p == (0, 0) for p in pairs):
        return "valid"
    if all(_tf_same(n, kk, ss, dd) == p for n, kk, ss, dd, p in zip(sizes, k, s, d, pairs)):
        return "same"
    if any(lo < 0 or hi < 0 for lo, hi in pairs):
        raise refuse(f"negative pads {[list(p) for p in pairs]}")
    return "explicit"


def _zero_pad(b: Builder, x: Sym, pairs, first_axis: int = 2, inner: bool = True) -> Sym:
    """ZeroPadding{n}D of axes first_axis.. (channels_first: 2.., channels_last: 1..)."""
    r = len(pairs)
    padding = list(pairs[0]) if r == 1 else [list(p) for p in pairs]
    fmt = CF if first_axis == 2 else "channels_last"
    return b.layer(f"ZeroPadding{r}D", {"padding": padding, "data_format": fmt}, [x], inner=inner,
                   suffix="pad" if inner else None)  # the helper of a Conv, or a Pad node itself


def _slice(a: int, start=None, stop=None, step=None) -> list:
    """A GetItem key taking ``start:stop:step`` on axis a (Keras's serialized slices)."""
    whole = {"class_name": "__slice__", "config": {"start": None, "stop": None, "step": None}}
    part = {"class_name": "__slice__", "config": {"start": start, "stop": stop, "step": step}}
    return [whole] * a + [part]


def _crop(b: Builder, x: Sym, pairs, inner: bool = False) -> Sym:
    """Remove (before, after) cells from the spatial axes 2.. of x."""
    r = len(pairs)
    if r in (2, 3):
        return b.layer(f"Cropping{r}D", {"cropping": [list(p) for p in pairs], "data_format": CF}, [x],
                       inner=inner, suffix="crop")
    y = x
    cut = [(a, lo, hi) for a, (lo, hi) in enumerate(pairs, 2) if lo or hi]
    for i, (a, lo, hi) in enumerate(cut):  # Cropping1D crops axis 1 only: slice instead
        last = i == len(cut) - 1
        y = b.op("GetItem", [y, _slice(a, lo or None, -hi if hi else None)], inner=inner or not last, suffix="crop")
    return y


def _copy_pad(b: Builder, x: Sym, pairs, mode: str, sizes, first_axis: int = 2, inner: bool = False) -> Sym:
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
        keys = {"edge": (_slice(a, 0, 1), _slice(a, -1, None)),
                "reflect": (_slice(a, lo, 0, -1), _slice(a, -2, -2 - hi, -1)),  # x[lo..1], x[n-2..n-1-hi]
                "wrap": (_slice(a, -lo if lo else None, None), _slice(a, 0, hi))}[mode]
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


def _nonnegative(b: Builder, x: Sym) -> bool:
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


def _kernel_spatial_first(w: np.ndarray) -> np.ndarray:
    """(A, B, *k) -> (*k, B, A): ONNX's (out, in, *k) conv weight as Keras's (*k, in, out)."""
    r = w.ndim - 2
    return np.ascontiguousarray(np.transpose(w, (*range(2, r + 2), 1, 0)))


def _conv_layer(b: Builder, class_name: str, config: dict, x: Sym, kernel: np.ndarray, bias: np.ndarray | None,
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


def _width(b: Builder, extra: int = 0) -> int | None:
    """The last-axis size of the node's output (plus ``extra`` cropped cells), if known."""
    shape = b.g.shape(b.node.output[0])
    return None if not shape or shape[-1] is None else shape[-1] + extra


def _check_strides_dilations(s, d) -> None:
    if max(s) > 1 and max(d) > 1:
        raise refuse(f"strides {list(s)} with dilations {list(d)} (Keras convolutions refuse strides > 1 "
                     f"together with dilation_rate > 1)")


# ------------------------------------------------------------------ convolutions
@lowering("Conv")
def Conv(b, X, W, B=None, auto_pad="NOTSET", dilations=None, group=1, kernel_shape=None, pads=None, strides=None):
    x, w = _sym(b, X), _const(W, "W (the weight)")
    r = w.ndim - 2
    if not 1 <= r <= 3:
        raise refuse(f"{r}-D convolution")
    k = tuple(int(v) for v in w.shape[2:])
    s, d = _ints(strides, r, 1, "strides"), _ints(dilations, r, 1, "dilations")
    if kernel_shape is not None and tuple(kernel_shape) != k:
        raise refuse(f"kernel_shape={list(kernel_shape)} but W has shape {list(w.shape)}")
    c, sizes = _nchw(b, x, r, "Conv")
    m = int(w.shape[0])
    if c is None or c != w.shape[1] * group or m % group:
        raise refuse(f"{c} input channels, group={group} and W of shape {list(w.shape)}")
    _check_strides_dilations(s, d)
    pairs = _auto_pads(auto_pad, pads, sizes, k, s, d)
    padding = _padding_mode(pairs, sizes, k, s, d)
    if padding == "explicit":
        x, padding = _zero_pad(b, x, pairs), "valid"
    config = {"kernel_size": list(k), "strides": list(s), "padding": padding, "data_format": CF,
              "dilation_rate": list(d), "activation": "linear", "use_bias": B is not None}
    bias = None if B is None else np.ascontiguousarray(_const(B, "B (the bias)").reshape(m))
    if group > 1 and group == c and r <= 2:  # depthwise: output channel c*M' + j reads input channel c
        kernel = _kernel_spatial_first(w.reshape(c, m // c, *k)).swapaxes(-1, -2)  # (C*M', 1, *k) -> (*k, C, M')
        return _conv_layer(b, f"DepthwiseConv{r}D", {**config, "depth_multiplier": m // c}, x,
                           np.ascontiguousarray(kernel), bias, _width(b))
    return _conv_layer(b, f"Conv{r}D", {"filters": m, **config, "groups": int(group)}, x, _kernel_spatial_first(w),
                       bias, _width(b))


@lowering("ConvTranspose")
def ConvTranspose(b, X, W, B=None, auto_pad="NOTSET", dilations=None, group=1, kernel_shape=None,
                  output_padding=None, output_shape=None, pads=None, strides=None):
    x, w = _sym(b, X), _const(W, "W (the weight)")
    r = w.ndim - 2
    if not 1 <= r <= 3:
        raise refuse(f"{r}-D transposed convolution")
    k = tuple(int(v) for v in w.shape[2:])
    s, d = _ints(strides, r, 1, "strides"), _ints(dilations, r, 1, "dilations")
    op = _ints(output_padding, r, 0, "output_padding")
    c, sizes = _nchw(b, x, r, "ConvTranspose")
    if group != 1:
        raise refuse(f"group={group} (Keras's transposed convolutions have no groups)")
    if kernel_shape is not None and tuple(kernel_shape) != k:
        raise refuse(f"kernel_shape={list(kernel_shape)} but W has shape {list(w.shape)}")
    if c is None or c != w.shape[0]:
        raise refuse(f"{c} input channels and W of shape {list(w.shape)}")
    _check_strides_dilations(s, d)
    spans = [span(kk, dd) for kk, dd in zip(k, d)]
    if output_shape is not None or auto_pad in ("SAME_UPPER", "SAME_LOWER"):
        if None in sizes:
            raise refuse("output_shape / auto_pad on a dynamic spatial size")
        target = list(output_shape)[-r:] if output_shape is not None else [n * ss for n, ss in zip(sizes, s)]
        totals = [ss * (n - 1) + o + sp - t for n, ss, o, sp, t in zip(sizes, s, op, spans, target)]
        upper = auto_pad == "SAME_UPPER"  # onnx.reference: SAME_UPPER puts the odd cell after, else before
        pairs = [(t // 2, t - t // 2) if upper else (t - t // 2, t // 2) for t in totals]
    elif auto_pad in ("NOTSET", "", "VALID"):
        pairs = _pairs(pads if auto_pad != "VALID" else None, r)
    else:
        raise refuse(f"auto_pad={auto_pad}")
    if any(lo < 0 or hi < 0 for lo, hi in pairs):
        raise refuse(f"negative pads {[list(p) for p in pairs]}")
    filters = int(w.shape[1])
    config = {"filters": filters, "kernel_size": list(k), "strides": list(s), "data_format": CF,
              "dilation_rate": list(d), "activation": "linear", "use_bias": B is not None}
    kernel = _kernel_spatial_first(w)  # (C, F, *k) -> (*k, F, C)
    bias = None if B is None else np.ascontiguousarray(_const(B, "B (the bias)").reshape(filters))
    keras = f"Conv{r}DTranspose"
    # Keras 'same': output n * s, the forward conv's TF split; the same for every n
    if all(o + sp - lo - hi == ss and lo == max(sp - ss, 0) // 2
           for o, sp, ss, (lo, hi) in zip(op, spans, s, pairs)):
        return _conv_layer(b, keras, {**config, "padding": "same", "output_padding": None}, x, kernel, bias,
                           _width(b))
    if any(o >= ss for o, ss in zip(op, s)):
        raise refuse(f"output_padding {list(op)} not below strides {list(s)} (Keras requires it)")
    keep = any(o or ss > sp for o, ss, sp in zip(op, s, spans))  # Keras's default adds max(k, s) - k cells
    crop = any(lo or hi for lo, hi in pairs)
    config = {**config, "padding": "valid", "output_padding": list(op) if keep else None}
    y = _conv_layer(b, keras, config, x, kernel, bias, _width(b, sum(pairs[-1])),
                    inner=crop)  # (N, C, *in) -> (N, F, (n-1)*s + span + output_padding)
    return _crop(b, y, pairs) if crop else y


# ------------------------------------------------------------------ pooling
def _pool_out(n: int, k: int, s: int, lo: int, hi: int, ceil_mode: int) -> int:
    """ONNX pooling output size; ceil_mode drops a window that would start in the end padding."""
    num = n + lo + hi - k
    out = (-(-num // s) if ceil_mode else num // s) + 1
    if ceil_mode and (out - 1) * s >= n + lo:
        out -= 1
    return out


def _pool(b, kind: str, X, auto_pad, ceil_mode, dilations, kernel_shape, pads, strides, count_include_pad=0):
    x = _sym(b, X)
    if kernel_shape is None:
        raise refuse("no kernel_shape")
    k = tuple(int(v) for v in kernel_shape)
    r = len(k)
    if not 1 <= r <= 3:
        raise refuse(f"{r}-D pooling")
    c, sizes = _nchw(b, x, r, f"{kind}Pool")
    s, d = _ints(strides, r, 1, "strides"), _ints(dilations, r, 1, "dilations")
    if max(d) > 1:
        raise refuse(f"dilations {list(d)} (Keras pooling has none)")
    keras = f"{'Max' if kind == 'Max' else 'Average'}Pooling{r}D"
    base = {"pool_size": list(k), "strides": list(s), "data_format": CF}
    if auto_pad == "SAME_UPPER" and (kind == "Max" or not count_include_pad):  # TF 'same' padding, uncounted
        return b.layer(keras, {**base, "padding": "same"}, [x])
    if auto_pad in ("SAME_UPPER", "SAME_LOWER", "VALID"):
        pairs, ceil_mode = _auto_pads(auto_pad, None, sizes, k, s, (1,) * r), 0
        if pairs == "same":
            pairs = [_tf_same(n, kk, ss) for n, kk, ss in zip(sizes, k, s)]
            if None in pairs:
                raise refuse("auto_pad=SAME_UPPER with count_include_pad=1 on a dynamic spatial size")
    elif auto_pad in ("NOTSET", ""):
        pairs = _pairs(pads, r)
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
    same = all(o is not None and o == -(-n // ss) and p == _tf_same(n, kk, ss)
               for o, n, kk, ss, p in zip(outs, sizes, k, s, used))
    if same and (kind == "Max" or not count_include_pad):
        return b.layer(keras, {**base, "padding": "same"}, [x])
    if kind == "Max":  # pads are -inf: zeros are exact on x >= 0, repeating the border always is
        x = _zero_pad(b, x, used) if _nonnegative(b, x) else _copy_pad(b, x, used, "edge", sizes, inner=True)
        return b.layer(keras, {**base, "padding": "valid"}, [x])
    scale = _average_scale(k, s, sizes, pairs, used, outs, count_include_pad)
    y = b.layer(keras, {**base, "padding": "valid"}, [_zero_pad(b, x, used)], inner=scale is not None)
    if scale is None:
        return y
    return b.op("Multiply", [y, scale], suffix="scale")  # mean over the window -> mean over the cells counted


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
        x = _sym(b, X)
        r = b.rank(x) - 2
        if not 1 <= r <= 3:
            raise refuse(f"a rank-{r + 2} input")
        return b.layer(f"Global{kind}Pooling{r}D", {"data_format": CF, "keepdims": True}, [x])  # (N, C, 1, ..)
    return lower


lowering("GlobalAveragePool")(_global("Average"))
lowering("GlobalMaxPool")(_global("Max"))


# ------------------------------------------------------------------ normalization, PReLU
@lowering("BatchNormalization")
def BatchNormalization(b, X, scale, B, input_mean, input_var, epsilon=1e-5, momentum=0.9, spatial=1, is_test=0,
                       consumed_inputs=None, training_mode=0):
    x = _sym(b, X)
    if training_mode:
        raise refuse("training_mode=1")
    if any(o and (b.g.consumers.get(o) or o in b.g.outputs) for o in b.node.output[1:]):
        raise refuse("its training outputs (running / saved mean and variance) are read")
    gamma, beta, mean, var = (_const(v, n) for v, n in ((scale, "scale"), (B, "B"), (input_mean, "mean"),
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
    return b.op("Add", [offset.astype(np.float32), y])  # constant first: see _conv_layer


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
    x = _sym(b, input)
    shape = b.shape(x)
    return _group_norm(b, x, shape[1] if shape and len(shape) > 2 and shape[1] else 0,
                       _const(scale, "scale"), _const(B, "B"), epsilon)  # one group per channel


@lowering("GroupNormalization")
def GroupNormalization(b, X, scale, bias, epsilon=1e-5, num_groups=None, stash_type=1):
    if b.g.opset < 21:  # GroupNormalization-18: scale and bias per group, not per channel
        raise refuse("opset < 21 (scale and bias per group)")
    return _group_norm(b, _sym(b, X), int(num_groups), _const(scale, "scale"), _const(bias, "bias"), epsilon)


@lowering("PRelu")
def PRelu(b, X, slope):
    x = _sym(b, X)
    shape = b.shape(x)
    if shape is None or len(shape) < 2:
        raise refuse("an input of unknown or rank-1 shape")
    a = _const(slope, "slope")
    if b.g.opset < 7 and a.ndim == 1 and len(shape) > 2 and a.size > 1 and a.size == shape[1]:
        a = a.reshape(a.size, *(1,) * (len(shape) - 2))  # PRelu-6: a 1-D slope is per channel
    while a.ndim > len(shape) - 1 and a.shape[0] == 1:
        a = a[0]
    if a.ndim > len(shape) - 1:
        raise refuse(f"slope of shape {list(a.shape)} for an input of rank {len(shape)}")
    full = (1,) * (len(shape) - 1 - a.ndim) + a.shape  # numpy broadcasting against (C, H, W)
    shared = []
    for axis, (sd, xd) in enumerate(zip(full, shape[1:]), 1):
        if sd == 1 and xd != 1:
            shared.append(axis)
        elif sd != xd:
            raise refuse(f"slope of shape {list(a.shape)} for an input of shape {list(shape)}")
    alpha = np.ascontiguousarray(a.reshape(full))  # Keras's alpha: input_shape[1:] with 1 on shared axes
    return b.layer("PReLU", {"shared_axes": shared or None}, [x], [alpha])


# ------------------------------------------------------------------ Pad, Gather
@lowering("Pad")
def Pad(b, data, pads=None, constant_value=None, axes=None, mode="constant", value=0.0):
    x = _sym(b, data)
    shape = b.shape(x)
    if shape is None:
        raise refuse("an input of unknown rank")
    rank = len(shape)
    amounts = [int(v) for v in (_const(pads, "pads").reshape(-1) if isinstance(pads, np.ndarray) or
                                not isinstance(pads, (list, tuple)) else pads)]
    where = list(range(rank)) if axes is None else [int(v) % rank for v in _const(axes, "axes").reshape(-1)]
    if len(amounts) != 2 * len(where):
        raise refuse(f"pads={amounts} for axes {where}")
    pairs = [(0, 0)] * rank
    for i, a in enumerate(where):
        pairs[a] = (amounts[i], amounts[i + len(where)])
    if pairs[0] != (0, 0):
        raise refuse("padding the batch axis")
    if constant_value is not None:
        value = float(np.asarray(constant_value).reshape(-1)[0]) if np.size(constant_value) else 0.0
    grow = [(max(lo, 0), max(hi, 0)) for lo, hi in pairs]
    cut = [(max(-lo, 0), max(-hi, 0)) for lo, hi in pairs]
    if any(lo or hi for lo, hi in cut):  # negative pads crop
        for a, (lo, hi) in enumerate(cut):
            if lo or hi:
                inner = any(g != (0, 0) for g in grow) or any(lo or hi for lo, hi in cut[a + 1:])
                x = b.op("GetItem", [x, _slice(a, lo or None, -hi if hi else None)], suffix="crop" if inner else None,
                         inner=inner)
        shape = tuple(None if n is None else n - lo - hi for n, (lo, hi) in zip(shape, cut))
    if all(g == (0, 0) for g in grow):
        return x
    if mode in ("edge", "reflect", "wrap"):
        return _copy_pad(b, x, grow[1:], mode, shape[1:], first_axis=1)
    if mode != "constant":
        raise refuse(f"mode={mode}")
    return _constant_pad(b, x, grow, shape, value)


def _constant_pad(b: Builder, x: Sym, grow: list, shape: tuple, value: float) -> Sym:
    """ZeroPadding of axes 2.. (channels_first) or 1..r-2 (channels_last); other values added as a mask."""
    rank = len(shape)
    padded = {a for a, g in enumerate(grow) if g != (0, 0)}
    if not 3 <= rank <= 5:
        raise refuse(f"constant padding of a rank-{rank} tensor (ZeroPadding takes ranks 3 to 5)")
    if padded <= set(range(2, rank)):
        first = 2
    elif padded <= set(range(1, rank - 1)):
        first = 1
    else:
        raise refuse(f"constant padding of axes {sorted(padded)} of a rank-{rank} tensor (ZeroPadding pads axes "
                     f"2..{rank - 1} or 1..{rank - 2})")
    y = _zero_pad(b, x, grow[first:first + rank - 2], first, inner=value != 0)
    if value == 0:
        return y
    sizes = [None if shape[a] is None else shape[a] + lo + hi for a, (lo, hi) in enumerate(grow)]
    if any(sizes[a] is None for a in padded):
        raise refuse(f"constant_value={value} on a dynamic axis")
    inside = np.ones([1] * rank, bool)
    for a in padded:
        lo, hi = grow[a]
        line = np.zeros(sizes[a], bool)
        line[lo:sizes[a] - hi] = True
        inside = inside & line.reshape([sizes[a] if i == a else 1 for i in range(rank)])
    mask = np.where(inside, np.float32(0), np.float32(value))  # (1, .., padded sizes, ..): value outside x
    return b.op("Add", [mask, y])  # constant first: see _conv_layer


@lowering("Gather")
def Gather(b, data, indices, axis=0):
    if isinstance(data, np.ndarray) and isinstance(indices, Sym):  # a lookup table: Embedding
        if data.ndim != 2 or axis % 2 != 0:
            raise refuse(f"a table of shape {list(data.shape)} gathered on axis {axis} (Embedding takes 2-D, axis 0)")
        return b.layer("Embedding", {"input_dim": int(data.shape[0]), "output_dim": int(data.shape[1]),
                                     "mask_zero": False}, [indices], [np.ascontiguousarray(data)])
    x = _sym(b, data, "data")
    idx = _const(indices, "indices")
    rank = b.rank(x)
    axis %= rank
    if axis == 0:
        raise refuse("gathering along the batch axis")
    n = b.shape(x)[axis]
    flat = [int(v) + (n if v < 0 and n is not None else 0) for v in idx.reshape(-1)]
    if idx.ndim == 0:
        return b.op("GetItem", [x, _slice(axis)[:-1] + [flat[0]]])  # x[:, .., i]: the axis goes
    steps = {q - p for p, q in zip(flat, flat[1:])}
    if idx.ndim != 1 or len(steps) > 1 or 0 in steps or any(v < 0 for v in flat):
        raise refuse(f"indices {idx.tolist()} (only a scalar or an evenly spaced list becomes a slice)")
    step = steps.pop() if steps else 1
    stop = flat[-1] + (1 if step > 0 else -1)
    return b.op("GetItem", [x, _slice(axis, flat[0], None if stop < 0 else stop, step)])


# ------------------------------------------------------------------ Resize / Upsample
def _nearest_source(out: int, n: int, s: int, coords: str, rounding: str) -> np.ndarray | None:
    """The input index each output cell of ONNX nearest Resize reads (onnx/reference/ops/op_resize.py)."""
    x = np.arange(out, dtype=np.float64)
    source = {"asymmetric": x / s, "half_pixel": (x + 0.5) / s - 0.5, "tf_half_pixel_for_nn": (x + 0.5) / s,
              "pytorch_half_pixel": (x + 0.5) / s - 0.5 if out > 1 else np.zeros(out)}.get(coords)
    pick = {"floor": np.floor, "ceil": np.ceil, "round_prefer_floor": lambda v: np.ceil(v - 0.5),
            "round_prefer_ceil": lambda v: np.floor(v + 0.5)}.get(rounding)
    if source is None or pick is None:
        return None
    return np.clip(pick(source), 0, n - 1).astype(np.int64)


@lowering("Resize", "Upsample")
def Resize(b, X, *inputs, scales=None, mode="nearest", coordinate_transformation_mode="half_pixel",
           nearest_mode="round_prefer_floor", cubic_coeff_a=-0.75, exclude_outside=0, extrapolation_value=0.0,
           antialias=0, axes=None, keep_aspect_ratio_policy="stretch"):
    x = _sym(b, X)
    shape = b.shape(x)
    rank = len(shape or ())
    if b.node.op_type == "Upsample" or b.g.opset < 11:  # Upsample / Resize-10: (X, scales); scales attr before 9
        coords, rounding = "asymmetric", "floor"
        factors, sizes = (inputs[0] if inputs else scales), None
    else:
        coords, rounding = coordinate_transformation_mode, nearest_mode
        factors, sizes = (list(inputs) + [None] * 3)[1:3]
    where = list(range(rank)) if axes is None else [int(a) % rank for a in axes]
    if factors is not None and np.size(factors):
        factors = np.asarray(factors) if isinstance(factors, (list, tuple)) else _const(factors, "scales")
        scale = {a: float(f) for a, f in zip(where, factors.reshape(-1))}
    elif keep_aspect_ratio_policy != "stretch":
        raise refuse(f"keep_aspect_ratio_policy={keep_aspect_ratio_policy}")
    elif isinstance(sizes, Dynamic):  # torch.onnx: Concat(Shape(x)[:2], [h, w]); the same ratios at both probes
        ratios = [np.asarray(v, np.float64).reshape(-1) / np.asarray(b.g.concrete_shape(x.onnx, k))[where]
                  for k, v in enumerate(sizes.values)]
        if not np.array_equal(*ratios):
            raise refuse("sizes that do not scale the input by constant factors")
        scale = dict(zip(where, ratios[0].tolist()))
    elif sizes is not None:
        if any(shape[a] is None for a in where):
            raise refuse("sizes on a dynamic axis")
        scale = {a: int(t) / shape[a] for a, t in zip(where, _const(sizes, "sizes").reshape(-1))}
    else:
        raise refuse("no scales and no sizes")
    factor = [scale.get(a, 1.0) for a in range(rank)]
    if all(f == 1.0 for f in factor) and coords != "tf_crop_and_resize":  # same cells, whatever the mode
        return x
    fmt, axes = _upsampled_axes(factor, rank)
    r = len(axes)
    size = [int(factor[a]) for a in axes]
    if mode == "nearest":
        for a, s in zip(axes, size):
            n = shape[a] or 7  # integer factors: the pattern does not depend on the size
            src = _nearest_source(n * s, n, s, coords, rounding)
            if src is None or not np.array_equal(src, np.arange(n * s) // s):
                raise refuse(f"mode=nearest with {coords} / {rounding} (not a plain repeat)")
        if r == 1 and fmt == CF:  # UpSampling1D repeats axis 1 only: (N, C, W) -> (N, W, C) and back
            y = b.layer("Permute", {"dims": [2, 1]}, [x], inner=True, suffix="to_last")
            y = b.layer("UpSampling1D", {"size": size[0]}, [y], inner=True)
            return b.layer("Permute", {"dims": [2, 1]}, [y], suffix="to_first")
        if r == 1:
            return b.layer("UpSampling1D", {"size": size[0]}, [x])
        nearest = {"interpolation": "nearest"} if r == 2 else {}  # UpSampling3D has no interpolation option
        return b.layer(f"UpSampling{r}D", {"size": size, "data_format": fmt, **nearest}, [x])
    if mode == "linear" and r == 2 and coords in ("half_pixel", "pytorch_half_pixel") and not antialias:
        return b.layer("UpSampling2D", {"size": size, "data_format": fmt, "interpolation": "bilinear"}, [x])
    if mode == "linear":
        raise refuse(f"mode=linear with {coords} coordinates on {r} spatial axes (Keras's bilinear is TF's 2-D "
                     f"half-pixel resize)")
    raise refuse(f"mode={mode} (Keras's bicubic is TF's, with a = -0.5 and its own table; ONNX's a = {cubic_coeff_a})")


def _upsampled_axes(factor: list, rank: int) -> tuple[str, list[int]]:
    """(data_format, spatial axes) of a Resize that repeats the spatial axes of (N, C, ...) or (N, ..., C)
    by whole factors: NCHW as kcompat imports it, or NHWC (kcompat's own UpSampling export)."""
    whole = all(f >= 1 and f == int(f) for f in factor)
    if 3 <= rank <= 5 and whole and factor[0] == 1:
        if factor[1] == 1:
            return CF, list(range(2, rank))
        if factor[-1] == 1:
            return "channels_last", list(range(1, rank - 1))
    raise refuse(f"scales {factor} (UpSampling1D / 2D / 3D repeat the spatial axes of (N, C, ...) or (N, ..., C) "
                 f"by whole factors)")
