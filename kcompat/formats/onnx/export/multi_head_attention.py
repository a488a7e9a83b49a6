"""ONNX exporters of MultiHeadAttention and GroupQueryAttention: Einsum projections, the scores as Einsum,
masks as Where, Softmax, the output projection; the scores as a second output with return_attention_scores.

The same two paths as Keras (and kcompat's NumPy layer): 4-D projections without dropout or returned scores
take ``dot_product_attention`` (logits * scale, masked logits set to -0.7 * float32 max, Softmax: a fully
masked row averages every value); otherwise the explicit path (masked scores set to -1e9, Softmax over the
attention axes, masked probabilities 0: a fully masked row gives 0). The attention mask is Keras's
``_compute_attention_mask``: query (N, T, 1) & value / key (N, 1, S) & causal & sliding window & the
explicit attention_mask. GroupQueryAttention's shared key / value heads are its projection kernels
repeated per query head (the same products as repeating the projected heads).
ONNX's Attention op (opset 23) is not used: it has no -0.7 * max fill, no multi-axis attention, no gate.
References: kcompat/layers/multi_head_attention.py.
"""
from __future__ import annotations

import math
import string

import numpy as np

from ....layers.multi_head_attention import LARGE_NEGATIVE, attention_equations
from .attention import band, both, causal, keep_masked, softmax
from .masks import as_bool_mask
from .registry import layer_exporter


def project(ctx, x: str, kernel: np.ndarray, bias, name: str) -> str:
    """EinsumDense '...d,dnh->...nh' plus its bias."""
    y = ctx.op("Einsum", x, ctx.const(kernel, f"{name}_kernel", dtype=None), equation="...d,dnh->...nh")
    return y if bias is None else ctx.op("Add", y, ctx.const(bias, f"{name}_bias", dtype=None))


def attention_mask(ctx, layer, call: dict, query: str, value: str) -> tuple[str | None, int]:
    """(the combined mask, its rank) as keras ``_compute_attention_mask``; an uncast GroupQueryAttention mask
    (alone) stays float."""
    auto, rank = None, 0
    if call.get("query_mask") is not None:
        auto, rank = ctx.op("Unsqueeze", as_bool_mask(ctx, call["query_mask"]), ctx.ints([-1], "axes")), 3
    for key in ("value_mask", "key_mask"):
        if call.get(key) is not None:
            m = ctx.op("Unsqueeze", as_bool_mask(ctx, call[key]), ctx.ints([-2], "axes"))  # (N, S) -> (N, 1, S)
            auto, rank = both(ctx, auto, m), 3
    if call.get("use_causal_mask"):
        auto, rank = both(ctx, auto, causal(ctx, query, value)), 3
    if layer.sliding_window is not None:
        auto, rank = both(ctx, auto, band(ctx, query, value, layer.sliding_window)), 3
    explicit = call.get("attention_mask")
    if explicit is not None:
        erank = len(ctx.shapes.get(explicit, (None,) * 3))
        if auto is None:
            return (as_bool_mask(ctx, explicit) if layer.casts_mask else explicit), erank
        return ctx.op("And", as_bool_mask(ctx, explicit), auto), max(rank, erank)
    return auto, rank


def attend(ctx, q: str, k: str, v: str, mask: str | None, mask_rank: int, scale: float, attn_axes: tuple,
           rank: int, explicit: bool) -> tuple[str, str | None]:
    """(output (N, T.., heads, H), probabilities or None) from the projected q, k, v (rank ``rank``)."""
    if mask is not None and ctx.dtype(mask) != "bool":  # an uncast float mask: the fused path casts (non-zero
        mask = (as_bool_mask(ctx, mask) if not explicit  # is True), the explicit Softmax keeps > 0.5
                else ctx.op("Greater", mask, ctx.const(0.5, "half", dtype=np.dtype(ctx.dtype(mask)))))
    if not explicit:
        logits = ctx.op("Einsum", q, k, equation="btnh,bsnh->bnts")  # (N, heads, T, S)
        logits = ctx.op("Mul", logits, ctx.const(scale, "scale"))
        if mask is not None:
            if mask_rank < 4:
                mask = ctx.op("Unsqueeze", mask, ctx.ints(list(range(-3 - (3 - mask_rank), -2)), "axes"))
            logits = keep_masked(ctx, logits, mask, LARGE_NEGATIVE)
        probs = ctx.op("Softmax", logits, axis=-1)
        return ctx.op("Einsum", probs, v, equation="bnts,bsnh->btnh"), None  # -> (N, T, heads, H)
    dot_eq, combine_eq, scores_rank = attention_equations(rank, attn_axes)
    scores = ctx.op("Einsum", k, ctx.op("Mul", q, ctx.const(scale, "scale")), equation=dot_eq)  # (N, heads, T.., S..)
    norm = list(range(scores_rank - len(attn_axes), scores_rank))
    if mask is not None:
        missing = scores_rank - mask_rank
        if missing > 0:  # expand_dims(mask, -2 * len(attn_axes) - 1), repeated
            at = -2 * len(attn_axes) - 1
            for _ in range(missing):
                mask = ctx.op("Unsqueeze", mask, ctx.ints([at], "axes"))
        scores = keep_masked(ctx, scores, mask, -1e9)
    probs = softmax(ctx, scores, norm)
    if mask is not None:
        probs = keep_masked(ctx, probs, mask, 0.0)
    return ctx.op("Einsum", probs, v, equation=combine_eq), probs


def finish(ctx, out: str, gate: str | None, kernel: np.ndarray, bias) -> str:
    """The gate, then the output EinsumDense '...nh,nh<o>->...<o>'."""
    if gate is not None:
        out = ctx.op("Mul", out, gate)
    letters = string.ascii_lowercase[-kernel.ndim + 2:]
    y = ctx.op("Einsum", out, ctx.const(kernel, "output_kernel", dtype=None), equation=f"...nh,nh{letters}->...{letters}")
    return y if bias is None else ctx.op("Add", y, ctx.const(bias, "output_bias", dtype=None))


def repeat_heads(w: tuple, repeats: int) -> tuple:
    """A (D, Hkv, H) kernel and (Hkv, H) bias with each head repeated ``repeats`` times (np.repeat on axis 2 of
    the projection)."""
    kernel, bias = w
    return np.repeat(kernel, repeats, axis=1), None if bias is None else np.repeat(bias, repeats, axis=0)


@layer_exporter("MultiHeadAttention", "GroupQueryAttention")
def multi_head_attention(ctx, layer, inputs, weights):
    call = layer.call_args(inputs, ctx.kwargs)
    w = layer.split(weights)
    query, value, key = call["query"], call["value"], call["key"]
    gate = ctx.op("Sigmoid", project(ctx, query, *w["gate"], "gate")) if layer.use_gate else None
    grouped = layer.class_name == "GroupQueryAttention"
    repeats = layer.num_query_heads // layer.num_key_value_heads if grouped else 1
    q = project(ctx, query, *w["query"], "query")  # (N, T, D) -> (N, T, heads, Hk)
    k = project(ctx, key, *repeat_heads(w["key"], repeats), "key")  # (N, S, Dk) -> (N, S, heads, Hk)
    v = project(ctx, value, *repeat_heads(w["value"], repeats), "value")  # (N, S, Dv) -> (N, S, heads, Hv)
    scores_out = bool(call.get("return_attention_scores"))
    rank = len(ctx.shape(query)) + 1
    if grouped:
        explicit, axes, scale = layer.dropout > 0 or scores_out, (1,), 1.0 / math.sqrt(layer.head_dim)
    else:
        explicit, axes, scale = layer.dropout > 0 or scores_out or rank != 4, layer.attn_axes(rank), \
            1.0 / math.sqrt(layer.key_dim)
    mask, mask_rank = attention_mask(ctx, layer, call, query, value)
    out, probs = attend(ctx, q, k, v, mask, mask_rank, scale, axes, rank, explicit)
    y = finish(ctx, out, gate, *w["attention_output"])
    return [y, probs] if scores_out else y

