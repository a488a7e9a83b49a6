"""ONNX Attention (opsets 23 to 25) -> a composition of Keras 3 op nodes: Matmul, Softmax and elementwise ops.

Q is computed; K, V and the caches are computed or constant; the mask, ``nonpad_kv_seqlen`` and every shape are
constants, so the additive bias (attn_mask, is_causal, the sliding window, padding) and the fully-masked rows
are computed at import, exactly as onnx/reference/ops/op_attention.py defines them:
scores = (Q sqrt(scale)) (K sqrt(scale))^T, softcapped, plus the bias; softmax over keys, 0 on rows with
no key to attend; Y = P V. 3-D inputs are split into heads (Reshape, Transpose) and joined back; grouped
query attention repeats each key / value head (Take). Contract: lowering.py.
"""
from __future__ import annotations

import numpy as np

from .builder import Sym
from .lowering import NN, as_sym, lowering, refuse


def _heads(b, t, heads: int | None, what: str):
    """(B, S, heads * D) -> (B, heads, S, D) for 3-D inputs; 4-D inputs pass. Constants stay arrays."""
    shape = b.shape(t)
    if shape is None or len(shape) not in (3, 4):
        raise refuse(f"{what} of rank {None if shape is None else len(shape)} (3 or 4 expected)")
    if len(shape) == 4:
        return t, tuple(shape)
    if heads is None or shape[2] is None or shape[2] % heads:
        raise refuse(f"{what} of shape {list(shape)} with {heads} heads")
    d = shape[2] // heads
    if isinstance(t, np.ndarray):
        return t.reshape(t.shape[0], t.shape[1], heads, d).transpose(0, 2, 1, 3), (shape[0], heads, shape[1], d)
    split = b.op("Reshape", [t], inner=True, suffix=f"{what}_heads", newshape=[-1, shape[1], heads, d])
    return b.op("Transpose", [split], inner=True, suffix=f"{what}_bhsd", axes=[0, 2, 1, 3]), \
        (shape[0], heads, shape[1], d)


def _concat(b, past, now, what: str):
    if past is None:
        return now
    if isinstance(past, np.ndarray) and isinstance(now, np.ndarray):
        return np.concatenate([past, now], axis=2)
    return b.op("Concatenate", [[past, now]], inner=True, suffix=f"present_{what}", axis=2)


def _bias(q_len: int, kv_len: int, mask, is_causal: int, past_len: int, nonpad, left: int, right: int) -> np.ndarray:
    """The additive bias of op_attention.py: 0 where a key may be attended, -inf where not."""
    bias = np.zeros((q_len, kv_len), np.float32)
    if mask is not None:
        mask = np.asarray(mask)
        pad = kv_len - mask.shape[-1]
        if pad > 0:
            mask = np.pad(mask, [(0, 0)] * (mask.ndim - 1) + [(0, pad)],
                          constant_values=False if mask.dtype == np.bool_ else -np.inf)
        mask = np.where(mask, 0.0, -np.inf).astype(np.float32) if mask.dtype == np.bool_ else mask.astype(np.float32)
        bias = bias + mask
    offset = past_len if nonpad is None else (np.asarray(nonpad).reshape(-1) - q_len)
    i = np.arange(q_len).reshape(q_len, 1)
    j = np.arange(kv_len).reshape(1, kv_len)
    per_batch = np.ndim(offset) > 0
    diff = (i + (np.reshape(offset, (-1, 1, 1)) if per_batch else offset)) - j  # (q, kv) or (B, q, kv)
    allowed = np.ones(diff.shape, bool)
    if is_causal:
        allowed &= diff >= 0
    if left >= 0:
        allowed &= diff <= left
    if right >= 0:
        allowed &= -diff <= right
    extra = np.where(allowed, 0.0, -np.inf).astype(np.float32)
    bias = bias + (extra.reshape(extra.shape[0], 1, q_len, kv_len) if per_batch else extra)
    if nonpad is not None:
        keep = np.arange(kv_len) < np.asarray(nonpad).reshape(-1, 1)  # (B, kv)
        bias = bias + np.where(keep, 0.0, -np.inf).astype(np.float32).reshape(-1, 1, 1, kv_len)
    return bias


@lowering("Attention")
def Attention(b, Q, K, V, attn_mask=None, past_key=None, past_value=None, nonpad_kv_seqlen=None, scale=None,
              is_causal=0, q_num_heads=None, kv_num_heads=None, softmax_precision=None, softcap=0.0,
              qk_matmul_output_mode=0, left_window_size=-1, right_window_size=-1):
    q3 = as_sym(b, Q, "Q")
    rank = b.rank(q3)
    if any(v is not None and not isinstance(v, np.ndarray) for v in (attn_mask, nonpad_kv_seqlen)):
        raise refuse("a computed attn_mask or nonpad_kv_seqlen")
    if isinstance(K, Sym) != isinstance(V, Sym) or (past_key is not None and isinstance(past_key, Sym)
                                                    != isinstance(K, Sym)):
        raise refuse("keys and values of which only some are computed")
    q, (batch, hq, q_len, d) = _heads(b, q3, q_num_heads, "q")
    k, (_, hk, _, _) = _heads(b, K, kv_num_heads, "k")
    v, (_, hv, _, dv) = _heads(b, V, kv_num_heads, "v")
    k, v = _concat(b, past_key, k, "key"), _concat(b, past_value, v, "value")
    present_key, present_value = k, v
    kv_len = b.shape(k)[2] if isinstance(k, Sym) else k.shape[2]
    if kv_len is None or q_len is None or d is None:
        raise refuse("sequence or head sizes of unknown length")
    past_len = 0 if past_key is None else np.shape(past_key)[2] if isinstance(past_key, np.ndarray) else \
        b.shape(past_key)[2]
    if hq != hk:  # grouped query attention: each key / value head serves hq / hk query heads
        if hk is None or hq is None or hq % hk or hk != hv:
            raise refuse(f"{hq} query heads and {hk} / {hv} key / value heads")
        reps = np.repeat(np.arange(hk), hq // hk)
        k = k[:, reps] if isinstance(k, np.ndarray) else b.op("Take", [k, reps], inner=True, suffix="k_groups", axis=1)
        v = v[:, reps] if isinstance(v, np.ndarray) else b.op("Take", [v, reps], inner=True, suffix="v_groups", axis=1)
    root = float(np.sqrt(np.float32(1 / np.sqrt(d) if scale is None else scale)))
    qs = b.op("Multiply", [q, root], inner=True, suffix="q_scaled")
    if isinstance(k, np.ndarray):
        kt = (k.astype(np.float32) * np.float32(root)).transpose(0, 1, 3, 2)  # (B, H, D, kv)
    else:
        kt = b.op("Transpose", [b.op("Multiply", [k, root], inner=True, suffix="k_scaled")], inner=True,
                  suffix="k_t", axes=[0, 1, 3, 2])
    scores = b.op("Matmul", [qs, kt], inner=True, suffix="scores")  # (B, H, q, kv)
    if softcap and softcap > 0:
        capped = b.op("Tanh", [b.op("Divide", [scores, float(softcap)], inner=True, suffix="softcap_in")], inner=True,
                      suffix="softcap_tanh")
        scores = b.op("Multiply", [capped, float(softcap)], inner=True, suffix="softcap")
    raw = scores
    bias = _bias(q_len, kv_len, attn_mask, is_causal, past_len, nonpad_kv_seqlen, int(left_window_size),
                 int(right_window_size))
    if bias.any():
        scores = b.op("Add", [scores, bias], inner=True, suffix="masked")
    probs = b.op("Softmax", [scores], module=NN, inner=True, suffix="softmax", axis=-1)
    dead = np.isneginf(np.max(bias, axis=-1, keepdims=True))  # rows with no key to attend: 0, not NaN
    if dead.any():
        probs = b.op("Where", [dead, 0.0, probs], inner=True, suffix="guarded")
    y = b.op("Matmul", [probs, v], inner=True, suffix="attend")  # (B, H, q, Dv)
    if rank == 3:
        y = b.op("Transpose", [y], inner=True, suffix="bshd", axes=[0, 2, 1, 3])
        y = b.op("Reshape", [y], inner=True, suffix="merged", newshape=[-1, q_len, hq * dv])
    mode = int(qk_matmul_output_mode or 0)
    qk = {0: raw, 1: raw, 2: scores, 3: probs}.get(mode)
    if qk is None:
        raise refuse(f"qk_matmul_output_mode={mode}")
    return [b.claim(y), present_key, present_value, qk]



@lowering("RotaryEmbedding")
def RotaryEmbedding(b, input, cos_cache, sin_cache, position_ids=None, interleaved=0, num_heads=0,
                    rotary_embedding_dim=0):
    """x's first ``rotary_embedding_dim`` features of each head rotated by position: cos / sin picked by the
    constant position ids at import; halves (or even / odd features) rotated with op nodes, then put back."""
    x = as_sym(b, input)
    shape = b.shape(x)
    if shape is None or len(shape) not in (3, 4) or None in shape[1:]:
        raise refuse("an input of unknown shape (rank 3 or 4 expected)")
    cos = np.asarray(cos_cache if position_ids is None else cos_cache[np.asarray(position_ids)], np.float32)
    sin = np.asarray(sin_cache if position_ids is None else sin_cache[np.asarray(position_ids)], np.float32)
    if len(shape) == 3:  # (B, S, H * D) -> (B, S, H, D); the caches (B, S, 1, half)
        if not num_heads or shape[2] % num_heads:
            raise refuse(f"num_heads={num_heads} for a hidden size of {shape[2]}")
        x = b.op("Reshape", [x], inner=True, suffix="heads", newshape=[-1, shape[1], num_heads, shape[2] // num_heads])
        cos, sin = cos[:, :, None], sin[:, :, None]
        d = shape[2] // num_heads
    else:  # (B, H, S, D); the caches (B, 1, S, half)
        cos, sin = cos[:, None], sin[:, None]
        d = shape[3]
    rd = rotary_embedding_dim or d
    half = rd // 2
    if cos.shape[-1] != half or rd % 2 or rd > d:
        raise refuse(f"rotary_embedding_dim={rd} for caches of {cos.shape[-1]} and heads of {d}")
    whole = {"class_name": "__slice__", "config": {"start": None, "stop": None, "step": None}}
    rank = 4

    def part(start, stop, step, suffix):
        key = [whole] * (rank - 1) + [{"class_name": "__slice__", "config": {"start": start, "stop": stop,
                                                                              "step": step}}]
        return b.op("GetItem", [x, key], inner=True, suffix=suffix)
    x1 = part(0, rd, 2, "even") if interleaved else part(None, half, None, "first_half")
    x2 = part(1, rd, 2, "odd") if interleaved else part(half, rd, None, "second_half")

    def mix(p, a, q, c, sign, suffix):  # a * p + sign * c * q
        first = b.op("Multiply", [p, a], inner=True, suffix=f"{suffix}_1")
        second = b.op("Multiply", [q, c], inner=True, suffix=f"{suffix}_2")
        return b.op("Subtract" if sign < 0 else "Add", [first, second], inner=True, suffix=suffix)
    real = mix(x1, cos, x2, sin, -1, "real")  # cos x1 - sin x2
    imag = mix(x1, sin, x2, cos, 1, "imag")  # sin x1 + cos x2
    if interleaved:  # (.., half, 2) -> (.., rd): real, imag alternate again
        pairs = b.op("Stack", [[real, imag]], inner=True, suffix="pairs", axis=-1)
        inner_shape = [-1, shape[1], num_heads, rd] if len(shape) == 3 else [-1, shape[1], shape[2], rd]
        rotated = b.op("Reshape", [pairs], inner=True, suffix="interleave", newshape=inner_shape)
    else:
        rotated = b.op("Concatenate", [[real, imag]], inner=True, suffix="rotated", axis=-1)
    if rd < d:
        rotated = b.op("Concatenate", [[rotated, part(rd, None, None, "kept")]], inner=True, suffix="joined", axis=-1)
    if len(shape) == 3:
        rotated = b.op("Reshape", [rotated], inner=True, suffix="merged", newshape=[-1, shape[1], shape[2]])
    return b.claim(rotated)
