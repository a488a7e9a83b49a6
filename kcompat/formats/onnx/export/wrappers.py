"""ONNX exporters of the layer wrappers: Bidirectional, TimeDistributed, SpectralNormalization, and Pipeline.

Bidirectional: when both layers are one ONNX op's two directions (the same native cell, the backward
one going backwards: what Keras builds by default) a single RNN / LSTM / GRU node with
direction="bidirectional" (whose backward outputs are in input order, as Keras flips them back);
otherwise each layer as recurrent.py exports it, the backward sequence flipped back. Then merge_mode:
Concat / Add / Mul / (Add, Div 2), or two outputs. TimeDistributed: (N, T, ...) reshaped to
(N*T, ...), the wrapped layer's own exporter, reshaped back; and its Keras 2 mask. SpectralNormalization:
the wrapped layer's exporter (vector_u unused at inference). Pipeline: each sub-layer's exporter in turn.
References: kcompat/layers/wrappers.py, kcompat/layers/pipeline.py.
"""
from __future__ import annotations

from ....errors import UnsupportedError
from ....layers.base import Layer
from .recurrent import call_parts, distinct, reverse_time, run_bidirectional, run_layer
from .registry import exporter_for, layer_exporter, mask_exporter


def merge(ctx, mode, y: str, y_rev: str) -> list[str]:
    if mode == "concat":
        return [ctx.op("Concat", y, y_rev, axis=-1)]  # (..., U) + (..., U) -> (..., 2U)
    if mode == "sum":
        return [ctx.op("Add", y, y_rev)]
    if mode == "mul":
        return [ctx.op("Mul", y, y_rev)]
    if mode == "ave":
        return [ctx.op("Div", ctx.op("Add", y, y_rev), ctx.const(2.0, "two"))]
    return [y, y_rev]


@layer_exporter("Bidirectional")
def bidirectional(ctx, layer, inputs, weights):
    x, initial, mask = call_parts(ctx, inputs)
    fwd, bwd = layer.forward, layer.backward
    fused = run_bidirectional(ctx, layer, x, initial, mask, weights)
    if fused is not None:
        y, y_rev, states = fused[0], fused[1], fused[2:]
    else:
        half = None if initial is None else len(initial) // 2
        n = len(fwd.weights(ctx.shape(x)))
        a = run_layer(ctx, fwd, x, None if initial is None else initial[:half], mask, weights[:n])
        b = run_layer(ctx, bwd, x, None if initial is None else initial[half:], mask, weights[n:])
        y, y_rev = a[0], b[0]
        states = a[1:] + b[1:]
        if layer.return_sequences:
            y_rev = reverse_time(ctx, y_rev, 0 if fwd.time_major else 1)  # back in input order
    out = distinct(ctx, merge(ctx, layer.merge_mode, y, y_rev) + (states if layer.return_state else []))
    return out if len(out) > 1 else out[0]


@layer_exporter("TimeDistributed")
def time_distributed(ctx, layer, inputs, weights):
    x = inputs[0]
    shape = ctx.shape(x)
    inner = layer.layer
    big = 2**62
    flat = ctx.op("Reshape", x, ctx.op("Concat", ctx.ints([-1], "minus_one"),
                                       ctx.op("Slice", ctx.op("Shape", x), ctx.ints([2]), ctx.ints([big])), axis=0))
    child = layer.child_shape(shape)
    ctx.shapes[flat] = child  # (N*T, ...)
    outer_kwargs = ctx.kwargs
    kwargs = {}
    mask = outer_kwargs.get("mask")
    if mask is not None and "mask" in inner.call_params:
        kwargs["mask"] = ctx.op("Reshape", mask, ctx.op("Concat", ctx.ints([-1], "minus_one"), ctx.op(
            "Slice", ctx.op("Shape", mask), ctx.ints([2]), ctx.ints([big])), axis=0))  # (N, T, ...) -> (N*T, ...)
    fn = exporter_for(inner, False)
    if fn is None:
        raise UnsupportedError(f"layer '{layer.name}' (TimeDistributed): wraps {inner.class_name}, which has no ONNX "
                               f"export")
    ctx.kwargs = kwargs
    try:
        y = fn(ctx, inner, [flat], weights)
    finally:
        ctx.kwargs = outer_kwargs
    if isinstance(y, list):
        raise UnsupportedError(f"layer '{layer.name}' (TimeDistributed): the wrapped layer has several outputs")
    head = ctx.op("Slice", ctx.op("Shape", x), ctx.ints([0]), ctx.ints([2]))  # (N, T)
    return ctx.op("Reshape", y, ctx.op("Concat", head, ctx.op("Slice", ctx.op("Shape", y), ctx.ints([1]),
                                                                ctx.ints([big])), axis=0))  # (N*T, ...) -> (N, T, ...)


@mask_exporter("TimeDistributed")
def time_distributed_mask(ctx, layer, x, mask, keras2):
    """Keras 3: the input mask. tf_keras: the wrapped layer's mask of the (N*T, ...) batch, or the input mask
    (reduced to (N, T)) when the wrapped layer passes none on."""
    if not keras2:
        return mask
    inner = layer.layer
    if inner.masking(True) and type(inner).compute_mask is not Layer.compute_mask:
        raise UnsupportedError(f"layer '{layer.name}' (TimeDistributed): the Keras 2 mask of a wrapped "
                               f"{inner.class_name} has no ONNX export")
    return mask  # the wrapped layer's (N*T,) mask reshaped back, or the input's: the same (N, T) tensor


def _inner(ctx, outer, inner, x: str, weights: list, kwargs: dict):
    """Export ``inner`` (a layer held by ``outer``) on tensor ``x`` with these call kwargs."""
    fn = exporter_for(inner, False)
    if fn is None:
        raise UnsupportedError(f"layer '{outer.name}' ({outer.class_name}): holds {inner.class_name}, which has no "
                               f"ONNX export")
    saved = ctx.kwargs
    ctx.kwargs = kwargs
    try:
        return fn(ctx, inner, [x], weights)
    finally:
        ctx.kwargs = saved


@layer_exporter("SpectralNormalization")
def spectral_normalization(ctx, layer, inputs, weights):
    return _inner(ctx, layer, layer.layer, inputs[0], weights[:-1], {})  # vector_u: training only


@layer_exporter("Pipeline")
def pipeline(ctx, layer, inputs, weights):
    x = inputs[0]
    shape = ctx.shape(x)
    if ctx.kwargs.get("mask") is not None and any("mask" in inner.call_params for inner in layer.layers):
        raise UnsupportedError(f"layer '{layer.name}' (Pipeline): masks through its layers have no ONNX export")
    for inner, ws in zip(layer.layers, layer.split(shape, weights)):
        x = _inner(ctx, layer, inner, x, ws, {})
        if isinstance(x, list):
            raise UnsupportedError(f"layer '{layer.name}' (Pipeline): {inner.class_name} has several outputs")
        shape = inner.output_shape(shape)
        ctx.shapes[x] = shape  # what the next layer's exporter reads (an identity layer's: its input, unchanged)
    return x
