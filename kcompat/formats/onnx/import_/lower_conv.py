"""ONNX Conv and ConvTranspose -> Keras convolutions in channels_first (the model keeps ONNX's NCHW
layout). 'same' is used where ONNX's pads equal TensorFlow's 'same' split (the odd pixel after); other
pads become a helper padding layer (windows.py). Contract: lowering.py.
References: onnx/reference/ops/op_conv.py, op_conv_transpose.py.
"""
from __future__ import annotations

import numpy as np

from ....layers.conv_kernels import span
from .builder import Builder
from .lowering import CF, as_const, as_sym, lowering, refuse
from .windows import (auto_pads, conv_layer, crop, kernel_spatial_first, nchw, pad_pairs, padding_mode, tf_same,
                      window_ints, zero_pad)


def _width(b: Builder, extra: int = 0) -> int | None:
    """The last-axis size of the node's output (plus ``extra`` cropped cells), if known."""
    shape = b.g.shape(b.node.output[0])
    return None if not shape or shape[-1] is None else shape[-1] + extra


def _check_strides_dilations(s, d) -> None:
    if max(s) > 1 and max(d) > 1:
        raise refuse(f"strides {list(s)} with dilations {list(d)} (Keras convolutions refuse strides > 1 "
                     f"together with dilation_rate > 1)")


@lowering("Conv")
def Conv(b, X, W, B=None, auto_pad="NOTSET", dilations=None, group=1, kernel_shape=None, pads=None, strides=None):
    x, w = as_sym(b, X), as_const(W, "W (the weight)")
    r = w.ndim - 2
    if not 1 <= r <= 3:
        raise refuse(f"{r}-D convolution")
    k = tuple(int(v) for v in w.shape[2:])
    s, d = window_ints(strides, r, 1, "strides"), window_ints(dilations, r, 1, "dilations")
    if kernel_shape is not None and tuple(kernel_shape) != k:
        raise refuse(f"kernel_shape={list(kernel_shape)} but W has shape {list(w.shape)}")
    c, sizes = nchw(b, x, r, "Conv")
    m = int(w.shape[0])
    if c is None or c != w.shape[1] * group or m % group:
        raise refuse(f"{c} input channels, group={group} and W of shape {list(w.shape)}")
    pairs = auto_pads(auto_pad, pads, sizes, k, s, d)
    step = None
    if max(s) > 1 and max(d) > 1:  # Keras refuses both: the dilated convolution at stride 1, every s-th output kept
        if pairs == "same":
            pairs = [tf_same(n, kk, ss, dd) for n, kk, ss, dd in zip(sizes, k, s, d)]
            if None in pairs:
                raise refuse("strides with dilations and auto_pad=SAME_UPPER on a dynamic spatial size")
        step, s = s, (1,) * r
    padding = padding_mode(pairs, sizes, k, s, d)
    if padding == "explicit":
        x, padding = zero_pad(b, x, pairs), "valid"
    config = {"kernel_size": list(k), "strides": list(s), "padding": padding, "data_format": CF,
              "dilation_rate": list(d), "activation": "linear", "use_bias": B is not None}
    bias = None if B is None else np.ascontiguousarray(as_const(B, "B (the bias)").reshape(m))
    if step is not None:
        width = None if sizes[-1] is None else sizes[-1] + sum(pairs[-1]) - span(k[-1], d[-1]) + 1
        if group > 1 and group == c and r <= 2:
            kernel = kernel_spatial_first(w.reshape(c, m // c, *k)).swapaxes(-1, -2)
            y = conv_layer(b, f"DepthwiseConv{r}D", {**config, "depth_multiplier": m // c}, x,
                           np.ascontiguousarray(kernel), bias, width, inner=True)
        else:
            y = conv_layer(b, f"Conv{r}D", {"filters": m, **config, "groups": int(group)}, x, kernel_spatial_first(w),
                           bias, width, inner=True)
        whole = {"class_name": "__slice__", "config": {"start": None, "stop": None, "step": None}}
        key = [whole, whole] + [{"class_name": "__slice__", "config": {"start": None, "stop": None, "step": st}}
                                for st in step]
        return b.op("GetItem", [y, key], suffix="stride")  # (N, F, *L) -> (N, F, *ceil(L / s))
    if group > 1 and group == c and r <= 2:  # depthwise: output channel c*M' + j reads input channel c
        kernel = kernel_spatial_first(w.reshape(c, m // c, *k)).swapaxes(-1, -2)  # (C*M', 1, *k) -> (*k, C, M')
        return conv_layer(b, f"DepthwiseConv{r}D", {**config, "depth_multiplier": m // c}, x,
                           np.ascontiguousarray(kernel), bias, _width(b))
    return conv_layer(b, f"Conv{r}D", {"filters": m, **config, "groups": int(group)}, x, kernel_spatial_first(w),
                       bias, _width(b))


@lowering("ConvTranspose")
def ConvTranspose(b, X, W, B=None, auto_pad="NOTSET", dilations=None, group=1, kernel_shape=None,
                  output_padding=None, output_shape=None, pads=None, strides=None):
    x, w = as_sym(b, X), as_const(W, "W (the weight)")
    r = w.ndim - 2
    if not 1 <= r <= 3:
        raise refuse(f"{r}-D transposed convolution")
    k = tuple(int(v) for v in w.shape[2:])
    s, d = window_ints(strides, r, 1, "strides"), window_ints(dilations, r, 1, "dilations")
    op = window_ints(output_padding, r, 0, "output_padding")
    c, sizes = nchw(b, x, r, "ConvTranspose")
    if group != 1:  # Keras's transposed convolutions have no groups: one per group, concatenated
        if c is None or c % group or w.shape[0] != c:
            raise refuse(f"group={group} with {c} input channels and W of shape {list(w.shape)}")
        per, f = c // group, int(w.shape[1])
        whole = {"class_name": "__slice__", "config": {"start": None, "stop": None, "step": None}}
        parts = []
        for g in range(group):
            channels = {"class_name": "__slice__", "config": {"start": g * per, "stop": (g + 1) * per, "step": None}}
            key = [whole, channels]
            part = b.like(b.op("GetItem", [x, key], inner=True, suffix=f"group{g}"), (b.shape(x)[0], per, *sizes))
            y = ConvTranspose(b, part, w[g * per:(g + 1) * per], None if B is None else
                              as_const(B, "B (the bias)").reshape(-1)[g * f:(g + 1) * f], auto_pad, dilations, 1,
                              kernel_shape, output_padding, output_shape, pads, strides)
            b.onnx_names.pop(y.ref.layer, None)
            parts.append(y)
        return b.claim(b.op("Concatenate", [parts], inner=True, suffix="groups", axis=1))
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
        pairs = pad_pairs(pads if auto_pad != "VALID" else None, r)
    else:
        raise refuse(f"auto_pad={auto_pad}")
    if any(lo < 0 or hi < 0 for lo, hi in pairs):
        raise refuse(f"negative pads {[list(p) for p in pairs]}")
    filters = int(w.shape[1])
    config = {"filters": filters, "kernel_size": list(k), "strides": list(s), "data_format": CF,
              "dilation_rate": list(d), "activation": "linear", "use_bias": B is not None}
    kernel = kernel_spatial_first(w)  # (C, F, *k) -> (*k, F, C)
    bias = None if B is None else np.ascontiguousarray(as_const(B, "B (the bias)").reshape(filters))
    keras = f"Conv{r}DTranspose"
    # Keras 'same': output n * s, the forward conv's TF split; the same for every n
    if all(o + sp - lo - hi == ss and lo == max(sp - ss, 0) // 2
           for o, sp, ss, (lo, hi) in zip(op, spans, s, pairs)):
        return conv_layer(b, keras, {**config, "padding": "same", "output_padding": None}, x, kernel, bias,
                           _width(b))
    if any(o >= ss for o, ss in zip(op, s)):
        raise refuse(f"output_padding {list(op)} not below strides {list(s)} (Keras requires it)")
    keep = any(o or ss > sp for o, ss, sp in zip(op, s, spans))  # Keras's default adds max(k, s) - k cells
    cropped = any(lo or hi for lo, hi in pairs)
    config = {**config, "padding": "valid", "output_padding": list(op) if keep else None}
    y = conv_layer(b, keras, config, x, kernel, bias, _width(b, sum(pairs[-1])),
                    inner=cropped)  # (N, C, *in) -> (N, F, (n-1)*s + span + output_padding)
    return crop(b, y, pairs) if cropped else y


@lowering("CausalConvWithState")
def CausalConvWithState(b, input, weight, bias=None, past_state=None, activation="none"):
    """A depthwise Conv1D over the input with the past state (or k - 1 zeros) in front; present_state is the last
    k - 1 steps of that. (onnx/reference/ops/op_causal_conv_with_state.py)"""
    x = as_sym(b, input)
    w = as_const(weight, "weight")
    shape = b.shape(x)
    if shape is None or len(shape) != 3 or w.ndim != 3 or activation not in ("none", "silu", "swish"):
        raise refuse(f"input of shape {shape}, weight of shape {list(w.shape)}, activation={activation}")
    n, c, length = shape
    k = int(w.shape[2])
    head = np.zeros((1 if n is None else n, c, k - 1), np.float32) if past_state is None else past_state
    if isinstance(head, np.ndarray) and n is None:
        if past_state is not None or k > 1:
            raise refuse("a past state (or padding) for a batch of unknown size")
    padded = x if k == 1 else b.like(b.op("Concatenate", [[head, x]], inner=True, suffix="padded", axis=2),
                                      (n, c, None if length is None else length + k - 1))
    y = Conv(b, padded, w, bias, group=c, kernel_shape=[k])
    b.onnx_names.pop(y.ref.layer, None)
    if activation != "none":
        y = b.op("Silu", [y], module="keras.src.ops.nn", inner=True, suffix="silu")
    whole = {"class_name": "__slice__", "config": {"start": None, "stop": None, "step": None}}
    tail = [whole, whole, {"class_name": "__slice__", "config": {"start": -(k - 1) if k > 1 else length, "stop": None,
                                                                  "step": None}}]
    state = b.op("GetItem", [padded, tail], inner=True, suffix="state")
    return [b.claim(y), state]
