"""MultiHeadAttention and GroupedQueryAttention (Keras 3's ``keras.layers.GroupQueryAttention``).

References: keras/src/layers/attention/multi_head_attention.py and grouped_query_attention.py,
keras/src/backend/tensorflow/nn.py (``dot_product_attention``). The call is
``layer(query, value, key=None, query_mask=None, value_mask=None, key_mask=None, attention_mask=None,
return_attention_scores=False, training=None, use_causal_mask=False)``; a Keras 2 config passes
``value`` / ``key`` as keywords. The projections are EinsumDense sub-layers whose weights Keras keeps
in sub-groups of a .keras file (``query_dense/vars``...) and names ``<layer>/query/kernel``.

Keras takes one of two paths, and kcompat follows the same one: with 4-D projections, no dropout and
no returned scores, the fused ``dot_product_attention`` (masked logits set to -0.7 * float32 max, a
fully masked row averages every value); otherwise an explicit softmax that zeroes masked entries (a
fully masked row gives 0).
"""
from __future__ import annotations

import math
import string

import numpy as np

from .activations import sigmoid, softmax
from .attention import as_bool, bind, causal_mask
from .base import Layer, Weight, fmt_shape, register

CALL = ("query", "value", "key", "query_mask", "value_mask", "key_mask", "attention_mask",
        "return_attention_scores", "training", "use_causal_mask")
LARGE_NEGATIVE = np.float32(-0.7 * 3.38953e38)  # keras/src/backend/tensorflow/nn.py _get_large_negative


def attention_equations(rank: int, attn_axes: tuple) -> tuple[str, str, int]:
    """keras ``_build_attention_equation``: (key . query, scores x value) einsums and the scores rank."""
    letters = string.ascii_lowercase
    target = letters[:rank]
    batch_dims = [i for i in range(rank) if i not in attn_axes and i != rank - 1]  # includes the heads axis
    source, offset = "", rank
    for i in range(rank):
        if i in batch_dims or i == rank - 1:
            source += target[i]
        else:
            source += letters[offset]
            offset += 1
    product = ("".join(target[i] for i in batch_dims) + "".join(target[i] for i in attn_axes)
               + "".join(source[i] for i in attn_axes))
    return f"{source},{target}->{product}", f"{product},{source}->{target}", len(product)


class _HeadsAttention(Layer):
    """Shared plumbing: call arguments, the mask, the two softmax paths, the output projection."""

    groups: tuple = ()  # .keras sub-groups, in Keras weight order (the gate's is inserted when used)
    call_params = CALL  # ``query_mask`` / ``value_mask`` / ``key_mask`` get the masks of their arguments (masks.py)
    casts_mask = True  # MultiHeadAttention casts attention_mask to bool; GroupedQueryAttention only when combining
    gate_group = "_gate_dense"

    def _common(self):
        dropout = self.get("dropout", 0.0)
        if isinstance(dropout, bool) or not isinstance(dropout, (int, float)) or not 0 <= dropout <= 1:
            raise self.fail(f"'dropout' must be a number in [0, 1]. Received: dropout={dropout!r}")
        self.dropout = float(dropout)
        self.use_bias = bool(self.get("use_bias", True))
        self.use_gate = bool(self.get("use_gate", False))
        window = self.config.get("sliding_window")
        if window is not None and (isinstance(window, bool) or not isinstance(window, int) or window <= 0):
            raise self.fail(f"'sliding_window' must be null or a positive integer. Received: sliding_window={window!r}")
        self.sliding_window = window
        if self.config.get("flash_attention"):
            raise self.fail("flash_attention=True is not supported (Keras's TensorFlow backend refuses it too)")

    def weight_groups(self):
        groups = list(self.groups)
        if self.use_gate:
            groups.insert(2, self.gate_group)
        return groups

    def call_args(self, args, kwargs) -> dict:
        call = bind(args, kwargs, CALL)
        if call.get("query") is None or call.get("value") is None:
            raise self.fail("needs a query and a value")
        if call.get("key") is None:
            call["key"] = call["value"]
        return call

    def node_input_shape(self, args, kwargs):
        call = self.call_args(args, kwargs)
        return [call["query"], call["value"], call["key"]]

    def node_output_shape(self, args, kwargs):
        call = self.call_args(args, kwargs)
        shapes = [call["query"], call["value"], call["key"]]
        out = self.output_shape(shapes)
        if call.get("return_attention_scores"):
            return [out, self.scores_shape(shapes)]
        return out

    @staticmethod
    def project(x, kernel, bias):
        """EinsumDense ``...d,dnh->...nh`` plus its bias."""
        y = np.einsum("...d,dnh->...nh", x, kernel, optimize=True)  # (N, T, D) -> (N, T, heads, H)
        return y if bias is None else y + bias

    def split(self, weights: list) -> dict:
        """Weights by sub-layer: {"query": (kernel, bias or None), ...}."""
        names = ["query", "key"] + (["gate"] if self.use_gate else []) + ["value", "attention_output"]
        step = 2 if self.use_bias else 1
        return {n: (weights[i * step], weights[i * step + 1] if self.use_bias else None) for i, n in enumerate(names)}

    def projection_weights(self, names_shapes: list) -> list[Weight]:
        """(sub-layer name, kernel shape, bias shape) rows -> Weights in Keras order, with their groups."""
        ws = []
        for name, kernel, bias in names_shapes:
            if any(d is None for d in (*kernel, *bias)):
                raise self.fail(f"the projections need known feature sizes. Received: {name} kernel {kernel}")
            group = {"query": self.groups[0], "key": self.groups[1], "gate": self.gate_group,
                     "value": self.groups[2], "attention_output": self.groups[3]}[name]
            ws.append(Weight(f"{name}/kernel", tuple(kernel), group=group))
            if self.use_bias:
                ws.append(Weight(f"{name}/bias", tuple(bias), group=group))
        return ws

    def attention_mask(self, call, t: int, s: int) -> np.ndarray | None:
        """keras ``_compute_attention_mask``: query (N, T, 1) & value / key (N, 1, S) & causal & window
        & the explicit attention_mask (N, T, S)."""
        auto = None
        if call.get("query_mask") is not None:
            auto = as_bool(call["query_mask"])[..., None]
        for key in ("value_mask", "key_mask"):
            if call.get(key) is not None:
                m = as_bool(call[key])[..., None, :]
                auto = m if auto is None else auto & m
        if call.get("use_causal_mask"):
            auto = causal_mask(t, s) if auto is None else auto & causal_mask(t, s)
        if self.sliding_window is not None:
            band = np.abs(np.arange(t)[:, None] - np.arange(s)[None, :]) < self.sliding_window  # (T, S)
            auto = band[None] if auto is None else auto & band[None]
        explicit = call.get("attention_mask")
        if auto is None:  # GroupedQueryAttention passes a lone attention_mask on uncast (see attend)
            return as_bool(explicit) if self.casts_mask else explicit
        return auto if explicit is None else as_bool(explicit) & auto

    def attend(self, q, k, v, mask, scale: float, attn_axes: tuple, explicit: bool):
        """(output (N, T.., heads, H), scores or None) from projected q, k, v."""
        if mask is not None and mask.dtype != bool:  # an uncast float mask: the fused path casts (non-zero
            mask = as_bool(mask) if not explicit else mask > np.asarray(0.5, mask.dtype)  # is True), Softmax keeps > 0.5
        if not explicit:  # ops.dot_product_attention: logits * scale, masked to a large negative, softmax
            logits = np.einsum("btnh,bsnh->bnts", q, k, optimize=True) * np.float32(scale)  # (N, heads, T, S)
            if mask is not None:
                while mask.ndim < 4:
                    mask = np.expand_dims(mask, -3)  # (N, T, S) -> (N, 1, T, S)
                logits = np.where(mask, logits, LARGE_NEGATIVE)
            probs = softmax(logits, axis=-1)
            return np.einsum("bnts,bsnh->btnh", probs, v, optimize=True), None  # -> (N, T, heads, H)
        dot_eq, combine_eq, rank = attention_equations(q.ndim, attn_axes)
        scores = np.einsum(dot_eq, k, q * np.float32(scale), optimize=True)  # (N, heads, T.., S..)
        norm = tuple(range(rank - len(attn_axes), rank))
        if mask is not None:
            while mask.ndim < scores.ndim:
                mask = np.expand_dims(mask, -2 * len(attn_axes) - 1)
            scores = np.where(mask, scores, np.asarray(-1e9, scores.dtype))
        probs = softmax(scores, axis=norm[0]) if len(norm) == 1 else np.exp(scores - _logsumexp(scores, norm))
        if mask is not None:
            probs = np.where(mask, probs, np.asarray(0, probs.dtype))
        return np.einsum(combine_eq, probs, v, optimize=True), probs

    def forward(self, x, *weights):
        """Self-attention on one tensor (query = value = x), as a one-input call."""
        return self.call_node([x, x], {}, list(weights))

    def finish(self, out, gate, w):
        """Gate, then the output EinsumDense ``...nh,nh<o>->...<o>``."""
        if gate is not None:
            out = out * gate
        kernel, bias = w["attention_output"]
        out_letters = string.ascii_lowercase[-kernel.ndim + 2:]
        y = np.einsum(f"...nh,nh{out_letters}->...{out_letters}", out, kernel, optimize=True)
        return y if bias is None else y + bias


def _logsumexp(x, axes):
    m = np.max(x, axis=axes, keepdims=True)
    return m + np.log(np.sum(np.exp(x - m), axis=axes, keepdims=True))


@register("MultiHeadAttention")
class MultiHeadAttention(_HeadsAttention):
    """Project q / k / v to heads, softmax(q k^T / sqrt(key_dim)) v over the attention axes, project back."""

    groups = ("query_dense", "key_dense", "value_dense", "output_dense")

    def __init__(self, config, name=None):
        super().__init__(config, name)
        self.num_heads = self.positive_int("num_heads")
        self.key_dim = self.positive_int("key_dim")
        self.value_dim = self.positive_int("value_dim", self.key_dim)
        self._common()
        out = self.config.get("output_shape")
        if isinstance(out, int) and not isinstance(out, bool):
            out = [out]
        if out is not None and (not isinstance(out, (list, tuple)) or
                                not all(isinstance(d, int) and not isinstance(d, bool) and d > 0 for d in out)):
            raise self.fail(f"'output_shape' must be null, an integer or a list of integers. Received: output_shape={out!r}")
        self.out_shape = tuple(out) if out else None
        axes = self.config.get("attention_axes")
        if isinstance(axes, int) and not isinstance(axes, bool):
            axes = [axes]
        if axes is not None and (not isinstance(axes, (list, tuple)) or
                                 not all(isinstance(a, int) and not isinstance(a, bool) for a in axes)):
            raise self.fail(f"'attention_axes' must be null, an integer or a list of integers. Received: attention_axes={axes!r}")
        self.axes = tuple(axes) if axes else None

    def attn_axes(self, rank: int) -> tuple:
        """Attention axes of the projected (rank) tensors, as keras ``_build_attention`` resolves them."""
        if self.axes is None:
            return tuple(range(1, rank - 2))
        axes = tuple(a if a >= 0 else (rank - 1) + a for a in self.axes)
        if any(not 1 <= a < rank - 2 for a in axes):
            raise self.fail(f"attention_axes must be inside the query's non-batch, non-feature axes. "
                            f"Received: attention_axes={list(self.axes)} for projections of rank {rank}")
        return axes

    def output_shape(self, input_shape):
        q, v, k = input_shape
        if len(q) < 3 or len(v) != len(k) or tuple(v[1:-1]) != tuple(k[1:-1]):
            raise self.fail(f"expects a query of rank >= 3 and value / key equal except on the last axis. "
                            f"Received: query {fmt_shape(q)}, value {fmt_shape(v)}, key {fmt_shape(k)}")
        self.attn_axes(len(q) + 1)
        return (*q[:-1], *self.out_shape) if self.out_shape else tuple(q)

    def scores_shape(self, shapes):
        """The scores' real shape (N, <other axes>, heads, T.., S..); Keras declares (N, heads, T, T)."""
        q, v = shapes[0], shapes[1]
        rank = len(q) + 1
        axes = self.attn_axes(rank)
        others = [q[i] for i in range(1, rank - 2) if i not in axes]
        return (q[0], *others, self.num_heads, *(q[a] for a in axes), *(v[a] for a in axes))

    def weights(self, input_shape):
        q, v, k = input_shape
        out = self.out_shape or (q[-1],)
        rows = [("query", (q[-1], self.num_heads, self.key_dim), (self.num_heads, self.key_dim)),
                ("key", (k[-1], self.num_heads, self.key_dim), (self.num_heads, self.key_dim))]
        if self.use_gate:
            rows.append(("gate", (q[-1], self.num_heads, self.value_dim), (self.num_heads, self.value_dim)))
        rows += [("value", (v[-1], self.num_heads, self.value_dim), (self.num_heads, self.value_dim)),
                 ("attention_output", (self.num_heads, self.value_dim, *out), tuple(out))]
        return self.projection_weights(rows)

    def call_node(self, args, kwargs, weights):
        call = self.call_args(args, kwargs)
        w = self.split(weights)
        query = call["query"]
        gate = sigmoid(self.project(query, *w["gate"])) if self.use_gate else None  # (N, T, heads, Hv)
        q = self.project(query, *w["query"])  # (N, T, D) -> (N, T, heads, Hk)
        k = self.project(call["key"], *w["key"])  # (N, S, Dk) -> (N, S, heads, Hk)
        v = self.project(call["value"], *w["value"])  # (N, S, Dv) -> (N, S, heads, Hv)
        scores_out = bool(call.get("return_attention_scores"))
        explicit = self.dropout > 0 or scores_out or q.ndim != 4
        mask = self.attention_mask(call, query.shape[1], call["value"].shape[1])
        out, scores = self.attend(q, k, v, mask, 1.0 / math.sqrt(self.key_dim), self.attn_axes(q.ndim), explicit)
        y = self.finish(out, gate, w)
        return [y, scores] if scores_out else y

    def explain(self, input_shape, output_shape):
        total = sum(self.param_count(input_shape))
        return (f"{self.num_heads} heads: query / key projected to {self.key_dim}, value to {self.value_dim} per head, "
                f"softmax(q k^T / sqrt({self.key_dim})) v, projected back to {fmt_shape(output_shape)}; "
                f"{len(self.weights(input_shape))} weights = {total} params")


@register("GroupQueryAttention", "GroupedQueryAttention")
class GroupedQueryAttention(_HeadsAttention):
    """num_query_heads query heads share num_key_value_heads key / value heads (each repeated)."""

    keras_class = "GroupedQueryAttention"
    casts_mask = False
    groups = ("_query_dense", "_key_dense", "_value_dense", "_output_dense")

    def __init__(self, config, name=None):
        super().__init__(config, name)
        self.head_dim = self.positive_int("head_dim")
        self.num_query_heads = self.positive_int("num_query_heads")
        self.num_key_value_heads = self.positive_int("num_key_value_heads")
        if self.num_query_heads % self.num_key_value_heads:
            raise self.fail(f"'num_query_heads' must be divisible by 'num_key_value_heads'. Received: "
                            f"num_query_heads={self.num_query_heads}, num_key_value_heads={self.num_key_value_heads}")
        self._common()

    def output_shape(self, input_shape):
        q, v, k = input_shape
        if len(q) != 3 or len(v) != 3 or len(k) != 3:
            raise self.fail(f"expects query, value and key of rank 3. Received: {fmt_shape(list(input_shape))}")
        if q[-1] != v[-1] or tuple(v[1:-1]) != tuple(k[1:-1]):
            raise self.fail(f"query and value need the same last axis, value and key the same steps. "
                            f"Received: query {fmt_shape(q)}, value {fmt_shape(v)}, key {fmt_shape(k)}")
        return tuple(q)

    def scores_shape(self, shapes):
        q, k = shapes[0], shapes[2]
        return (q[0], self.num_query_heads, q[1], k[1])

    def weights(self, input_shape):
        q, v, k = input_shape
        nq, nkv, h = self.num_query_heads, self.num_key_value_heads, self.head_dim
        rows = [("query", (q[-1], nq, h), (nq, h)), ("key", (k[-1], nkv, h), (nkv, h))]
        if self.use_gate:
            rows.append(("gate", (q[-1], nq, h), (nq, h)))
        rows += [("value", (v[-1], nkv, h), (nkv, h)), ("attention_output", (nq, h, q[-1]), (q[-1],))]
        return self.projection_weights(rows)

    def call_node(self, args, kwargs, weights):
        call = self.call_args(args, kwargs)
        w = self.split(weights)
        query = call["query"]
        gate = sigmoid(self.project(query, *w["gate"])) if self.use_gate else None
        repeats = self.num_query_heads // self.num_key_value_heads
        q = self.project(query, *w["query"])  # (N, T, D) -> (N, T, Hq, H)
        k = np.repeat(self.project(call["key"], *w["key"]), repeats, axis=2)  # (N, S, Hkv, H) -> (N, S, Hq, H)
        v = np.repeat(self.project(call["value"], *w["value"]), repeats, axis=2)
        scores_out = bool(call.get("return_attention_scores"))
        mask = self.attention_mask(call, query.shape[1], call["value"].shape[1])
        out, scores = self.attend(q, k, v, mask, 1.0 / math.sqrt(self.head_dim), (1,), self.dropout > 0 or scores_out)
        y = self.finish(out, gate, w)
        return [y, scores] if scores_out else y

    def explain(self, input_shape, output_shape):
        total = sum(self.param_count(input_shape))
        return (f"{self.num_query_heads} query heads share {self.num_key_value_heads} key / value heads of "
                f"{self.head_dim}; softmax(q k^T / sqrt({self.head_dim})) v, projected back to "
                f"{fmt_shape(output_shape)}; {total} params")
