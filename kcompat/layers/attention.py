"""Dot-product attention layers: Attention, AdditiveAttention.

Reference: keras/src/layers/attention/attention.py and additive_attention.py. The call is
``layer([query, value(, key)], mask=[query_mask, value_mask], return_attention_scores=...,
use_causal_mask=...)``; masks arrive as Keras passes them (the ``mask`` keyword, a list).
MultiHeadAttention and GroupedQueryAttention are in multi_head_attention.py.
"""
from __future__ import annotations

from typing import Any

import numpy as np

from .activations import softmax
from .base import Layer, Weight, fmt_shape, register


def bind(args: list, kwargs: dict, names: tuple) -> dict:
    """A call's arguments by name, positional ones first, as Python binds ``call(self, *names)``."""
    out = dict(zip(names, args))
    out.update(kwargs)
    return out


def as_bool(mask: Any) -> np.ndarray | None:
    """A Keras mask as booleans (``ops.cast(mask, "bool")``: non-zero is True); None stays None."""
    if mask is None:
        return None
    mask = np.asarray(mask)
    return mask if mask.dtype == bool else mask != 0


def causal_mask(t: int, s: int) -> np.ndarray:
    """(1, T, S): query step i sees key steps j <= i (keras ``_compute_causal_mask``)."""
    return np.tril(np.ones((t, s), dtype=bool))[None]


@register("Attention")
class Attention(Layer):
    """softmax(scores(q, k)) @ v; scores = q k^T (x scale) or, for score_mode concat, sum tanh(q + k)."""

    CALL = ("inputs", "mask", "training", "return_attention_scores", "use_causal_mask")
    call_params = CALL  # ``mask`` gets [query_mask, value_mask] (masks.py)

    def __init__(self, config, name=None):
        super().__init__(config, name)
        self.use_scale = bool(self.get("use_scale", self.default_scale))
        self.score_mode = self.choice("score_mode", ("dot", "concat"), "dot")
        dropout = self.get("dropout", 0.0)
        if isinstance(dropout, bool) or not isinstance(dropout, (int, float)) or not 0 <= dropout <= 1:
            raise self.fail(f"'dropout' must be a number in [0, 1]. Received: dropout={dropout!r}")

    default_scale = False

    # -- call arguments
    def inputs(self, args, kwargs) -> tuple[list, dict]:
        call = bind(args, kwargs, self.CALL)
        xs = call.get("inputs")
        if not isinstance(xs, (list, tuple)) or not 2 <= len(xs) <= 3:
            raise self.fail(f"must be called on a list [query, value] or [query, value, key]. Received: inputs={xs!r}")
        mask = call.get("mask")
        if mask is not None and (not isinstance(mask, (list, tuple)) or not 2 <= len(mask) <= 3):
            raise self.fail(f"'mask' must be a list [query_mask, value_mask]. Received: mask={mask!r}")
        return list(xs), call

    def node_input_shape(self, args, kwargs):
        return self.inputs(args, kwargs)[0]

    def node_output_shape(self, args, kwargs):
        shapes, call = self.inputs(args, kwargs)
        out = self.output_shape(shapes)
        if call.get("return_attention_scores"):
            key = shapes[2] if len(shapes) > 2 else shapes[1]
            return [out, (*shapes[0][:-1], key[-2])]
        return out

    def output_shape(self, input_shape):
        q, v = input_shape[0], input_shape[1]
        k = input_shape[2] if len(input_shape) > 2 else v
        if len(q) < 3 or len(v) != len(q) or len(k) != len(q):
            raise self.fail(f"expects query, value and key of the same rank >= 3. Received: {fmt_shape(list(input_shape))}")
        if q[-1] is not None and k[-1] is not None and q[-1] != k[-1]:
            raise self.fail(f"query and key need the same last axis. Received: {fmt_shape(list(input_shape))}")
        return (*q[:-1], v[-1])

    def weights(self, input_shape):
        ws = [Weight("scale", ())] if self.use_scale else []
        return ws + [Weight("concat_score_weight", ())] if self.score_mode == "concat" else ws

    def random_weight(self, w, rng):
        return rng.uniform(0.5, 1.5, size=w.shape)

    # -- the math
    def scores(self, q: np.ndarray, k: np.ndarray, weights: list) -> np.ndarray:
        scale = weights[0] if self.use_scale else None
        if self.score_mode == "dot":
            s = np.matmul(q, np.swapaxes(k, -2, -1))  # (N, Tq, D) @ (N, D, Tv) -> (N, Tq, Tv)
            return s if scale is None else s * scale
        concat = weights[-1]
        qk = q[..., :, None, :] + k[..., None, :, :]  # (N, Tq, 1, D) + (N, 1, Tv, D) -> (N, Tq, Tv, D)
        return concat * np.sum(np.tanh(qk if scale is None else scale * qk), axis=-1)  # -> (N, Tq, Tv)

    def call_node(self, args, kwargs, weights):
        xs, call = self.inputs(args, kwargs)
        q, v = xs[0], xs[1]
        k = xs[2] if len(xs) > 2 else v
        mask = call.get("mask") or [None, None]
        q_mask, v_mask = as_bool(mask[0]), as_bool(mask[1])
        scores = self.scores(q, k, weights)  # (N, Tq, Tv)
        if v_mask is not None:
            v_mask = v_mask[..., None, :]  # (N, Tv) -> (N, 1, Tv)
        if call.get("use_causal_mask"):
            causal = causal_mask(scores.shape[-2], scores.shape[-1])
            v_mask = causal if v_mask is None else v_mask & causal
        if v_mask is not None:  # masked scores lose 1e9 (Keras subtracts, it does not replace)
            scores = np.where(v_mask, scores, scores - np.asarray(1e9, scores.dtype))
        probs = softmax(scores, axis=-1)
        out = np.matmul(probs, v)  # (N, Tq, Tv) @ (N, Tv, Dv) -> (N, Tq, Dv)
        if q_mask is not None:
            out = np.where(q_mask[..., None], out, np.asarray(0, out.dtype))
        return [out, probs] if call.get("return_attention_scores") else out

    def forward(self, x, *weights):
        return self.call_node([x], {}, list(weights))

    def explain(self, input_shape, output_shape):
        how = {"dot": "query . key", "concat": "sum tanh(query + key)"}[self.score_mode]
        scale = " x scale" if self.use_scale and self.score_mode == "dot" else ""
        n = len(self.weights(input_shape))
        return f"softmax over the value steps of {how}{scale}, times value; {n} scalar weight(s), {n} params"


@register("AdditiveAttention")
class AdditiveAttention(Attention):
    """Bahdanau attention: scores = sum(scale * tanh(q + k)) over the features."""

    default_scale = True

    def __init__(self, config, name=None):
        config = {k: v for k, v in config.items() if k != "score_mode"}
        super().__init__(config, name)

    def weights(self, input_shape):
        dim = input_shape[0][-1]
        if self.use_scale and dim is None:
            raise self.fail(f"'scale' needs a known query last axis. Received: {fmt_shape(list(input_shape))}")
        return [Weight("scale", (dim,))] if self.use_scale else []

    def random_weight(self, w, rng):
        return None

    def scores(self, q, k, weights):
        scale = weights[0] if self.use_scale else np.asarray(1.0, q.dtype)
        qk = q[..., :, None, :] + k[..., None, :, :]  # (N, Tq, 1, D) + (N, 1, Tv, D) -> (N, Tq, Tv, D)
        return np.sum(scale * np.tanh(qk), axis=-1)  # -> (N, Tq, Tv)

    def explain(self, input_shape, output_shape):
        dim = input_shape[0][-1]
        params = f"scale {dim} = {dim} params" if self.use_scale else "0 params"
        return f"softmax over the value steps of sum(scale * tanh(query + key)), times value; {params}"
