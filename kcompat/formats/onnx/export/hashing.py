"""ONNX exporters of HashedCrossing and Hashing: TensorFlow's 64-bit hashes in uint64 arithmetic (Mul and Add
wrap modulo 2**64, BitShift, BitwiseXor / Or / And: opset 18), bit-exact with kcompat/layers/hashing.py.

HashedCrossing folds each feature's raw 64-bit value into 0xDECAFCAFFE with FingerprintCat64. Hashing hashes
each integer's decimal form: the digits and sign become bytes (at most 20), read as little-endian words, then
FarmHash Fingerprint64 (every length branch computed, the right one picked per value) or, with a salt,
SipHash-2-4 (three block slots, each applied where the string reaches it). ONNX Runtime has no uint64
Where: selections go through int64 (Cast keeps the bits).
Reference: kcompat/layers/hashing.py; farmhash.cc (farmhashna::Hash64), SipHash's reference implementation.
"""
from __future__ import annotations

import numpy as np
from onnx import TensorProto

from ....errors import UnsupportedError
from ....layers.hashing import CROSS_KEY, K0, K1, K2
from .categorical import encode
from .registry import layer_exporter

U64 = TensorProto.UINT64


class U64Ops:
    """uint64 arithmetic on ONNX tensors (constants made once per value)."""

    def __init__(self, ctx, where: str):
        if ctx.opset < 18:
            raise UnsupportedError(f"{where}: its hash needs BitwiseXor / BitwiseOr, which ONNX has from opset 18. "
                                   f"Received: opset={ctx.opset}")
        self.ctx = ctx

    def c(self, value: int) -> str:
        return self.ctx.const(np.uint64(value & (2**64 - 1)), f"u{value & (2**64 - 1):x}", dtype=np.uint64)

    def _v(self, a):
        return self.c(a) if isinstance(a, int) else a

    def mul(self, a, b):
        return self.ctx.op("Mul", self._v(a), self._v(b))

    def add(self, a, b):
        return self.ctx.op("Add", self._v(a), self._v(b))

    def xor(self, a, b):
        return self.ctx.op("BitwiseXor", self._v(a), self._v(b))

    def or_(self, a, b):
        return self.ctx.op("BitwiseOr", self._v(a), self._v(b))

    def shr(self, a, r):
        return self.ctx.op("BitShift", self._v(a), self._v(r), direction="RIGHT")

    def shl(self, a, r):
        return self.ctx.op("BitShift", self._v(a), self._v(r), direction="LEFT")

    def rotate(self, v, r: int):
        """Right rotation by a constant r (farmhash Rotate)."""
        return v if r == 0 else self.or_(self.shr(v, r), self.shl(v, 64 - r))

    def rotl(self, v, r: int):
        return self.rotate(v, 64 - r)

    def select(self, cond: str, a, b):
        """Where(cond, a, b) on uint64 values, through int64 (ONNX Runtime has no uint64 Where)."""
        i64 = TensorProto.INT64
        pick = self.ctx.op("Where", cond, self.ctx.op("Cast", self._v(a), to=i64), self.ctx.op("Cast", self._v(b), to=i64))
        return self.ctx.op("Cast", pick, to=U64)

    def as_u64(self, x: str) -> str:
        """An integer tensor's 64-bit pattern (int64 first: two's complement)."""
        return self.ctx.op("Cast", self.ctx.op("Cast", x, to=TensorProto.INT64), to=U64)

    def bucket(self, h: str, bins: int) -> str:
        return self.ctx.op("Cast", self.ctx.op("Mod", h, self.c(bins)), to=TensorProto.INT64)


def fingerprint_cat64(u: U64Ops, fp1, fp2):
    """tensorflow/core/platform/fingerprint.h FingerprintCat64."""
    mul = 0xC6A4A7935BD1E995
    result = u.xor(fp1, mul)
    v = u.mul(fp2, mul)
    result = u.xor(result, u.mul(u.xor(v, u.shr(v, 47)), mul))
    result = u.mul(result, mul)
    result = u.mul(u.xor(result, u.shr(result, 47)), mul)
    return u.xor(result, u.shr(result, 47))


@layer_exporter("HashedCrossing")
def hashed_crossing(ctx, layer, inputs, weights):
    columns = inputs[0] if isinstance(inputs[0], list) else inputs
    u = U64Ops(ctx, f"layer '{layer.name}' (HashedCrossing)")
    h = u.c(CROSS_KEY)
    for col in columns:
        h = fingerprint_cat64(u, h, u.as_u64(col))  # (N,) or (N, 1)
    out = u.bucket(h, layer.num_bins)
    if layer.output_mode == "int":
        return out
    return encode(ctx, out, "one_hot", layer.num_bins, ctx.shape(columns[0]))


# ------------------------------------------------------------------ Hashing: the decimal string and its hashes
BYTES = 24  # int64's decimal form is at most 20 bytes; SipHash's third block reads up to byte 23


class Decimal:
    """Each int64 value's decimal form (sign, digits) as bytes (S, 24) uint64, zero past its length n (S,)."""

    def __init__(self, u: U64Ops, v: str):
        ctx = self.ctx = u.ctx
        self.u = u
        i64 = TensorProto.INT64
        neg = ctx.op("Less", v, ctx.ints(0, "zero"))
        magnitude = ctx.op("Add", ctx.op("Cast", ctx.op("Neg", ctx.op("Add", v, ctx.ints(1, "one"))), to=U64),
                           u.c(1))  # |v| as uint64, INT64_MIN included
        magnitude = u.select(neg, magnitude, ctx.op("Cast", v, to=U64))
        powers = ctx.const(np.asarray([10 ** k for k in range(20)], np.uint64), "powers", dtype=np.uint64)
        column = ctx.op("Unsqueeze", magnitude, ctx.ints([-1], "axes"))
        digits = ctx.op("Cast", ctx.op("Mod", ctx.op("Div", column, powers), u.c(10)), to=i64)  # (S, 20), units first
        count = ctx.op("Add", ctx.reduce("ReduceSum", ctx.op("Cast", ctx.op("GreaterOrEqual", column, ctx.op(
            "Slice", powers, ctx.ints([1]), ctx.ints([20]))), to=i64), [-1], keepdims=0), ctx.ints(1, "one"))
        sign = ctx.op("Cast", neg, to=i64)
        self.n = ctx.op("Add", count, sign)  # (S,) int64
        pos = ctx.ints(np.arange(BYTES), "positions")
        j = ctx.op("Sub", pos, ctx.op("Unsqueeze", sign, ctx.ints([-1], "axes")))  # (S, 24): index in the digits
        last = ctx.op("Unsqueeze", count, ctx.ints([-1], "axes"))
        k = ctx.op("Clip", ctx.op("Sub", ctx.op("Sub", last, ctx.ints(1, "one")), j), ctx.ints(0, "zero"),
                   ctx.ints(19, "nineteen"))
        digit = ctx.op("Add", ctx.op("GatherElements", digits, k, axis=-1), ctx.ints(48, "char_zero"))
        is_digit = ctx.op("And", ctx.op("GreaterOrEqual", j, ctx.ints(0, "zero")), ctx.op("Less", j, last))
        is_sign = ctx.op("And", ctx.op("Equal", pos, ctx.ints(0, "zero")), ctx.op("Unsqueeze", neg, ctx.ints([-1], "axes")))
        byte = ctx.op("Where", is_digit, digit, ctx.op("Where", is_sign, ctx.ints(45, "minus"), ctx.ints(0, "zero")))
        self.bytes = byte  # (S, 24) int64

    def load(self, offset, width: int) -> str:
        """Little-endian ``width``-byte words at ``offset`` ((S,) int64, or an int): (S,) uint64."""
        ctx = self.ctx
        start = ctx.ints(offset, "offset") if isinstance(offset, int) else ctx.op("Unsqueeze", offset, ctx.ints([-1], "axes"))
        index = ctx.op("Add", start, ctx.ints(np.arange(width), f"bytes{width}"))
        picked = ctx.op("Cast", ctx.op("GatherElements", self.bytes, self.like_bytes(index, width), axis=-1), to=U64)
        word = None
        for i in range(width):  # byte i << 8i, or-ed (ONNX Runtime's int64 ReduceSum rounds past 2**53)
            b = self.u.shl(ctx.op("Gather", picked, ctx.ints(i, "byte"), axis=-1), 8 * i)  # (S,)
            word = b if word is None else self.u.or_(word, b)
        return word

    def like_bytes(self, index: str, width: int) -> str:
        """An index (width,) or (S, width) broadcast to (S, width) (GatherElements wants the data's leading axes)."""
        ctx = self.ctx
        zeros = ctx.op("Slice", ctx.op("Mul", self.bytes, ctx.ints(0, "zero")), ctx.ints([0]), ctx.ints([width]),
                       ctx.ints([-1]))
        return ctx.op("Add", zeros, index)

    def byte(self, offset: str) -> str:
        """The byte at ``offset`` (S,) int64, as uint64 (S,)."""
        ctx = self.ctx
        index = self.like_bytes(ctx.op("Unsqueeze", offset, ctx.ints([-1], "axes")), 1)
        picked = ctx.op("GatherElements", self.bytes, index, axis=-1)
        return ctx.op("Cast", ctx.op("Squeeze", picked, ctx.ints([-1], "axes")), to=U64)


def hash_len16(u: U64Ops, a, b, mul):
    x = u.mul(u.xor(a, b), mul)
    x = u.xor(x, u.shr(x, 47))
    y = u.mul(u.xor(b, x), mul)
    y = u.xor(y, u.shr(y, 47))
    return u.mul(y, mul)


def farmhash64(d: Decimal) -> str:
    """Fingerprint64 of strings of 1..20 bytes: every length branch, the right one picked per value."""
    u, ctx = d.u, d.ctx
    n = d.n
    n64 = ctx.op("Cast", n, to=U64)
    mul = u.add(K2, u.mul(n64, 2))

    def at(minus: int) -> str:  # offset n - minus, clamped at 0 (read only where n is long enough)
        return ctx.op("Max", ctx.op("Sub", n, ctx.ints(minus, "minus")), ctx.ints(0, "zero"))
    a = u.mul(d.load(0, 8), K1)  # 17..20 bytes
    b = d.load(8, 8)
    c = u.mul(d.load(at(8), 8), mul)
    dd = u.mul(d.load(at(16), 8), K2)
    long = hash_len16(u, u.add(u.add(u.rotate(u.add(a, b), 43), u.rotate(c, 30)), dd),
                      u.add(u.add(a, u.rotate(u.add(b, K2), 18)), c), mul)
    a8 = u.add(d.load(0, 8), K2)  # 8..16 bytes
    b8 = d.load(at(8), 8)
    medium = hash_len16(u, u.add(u.mul(u.rotate(b8, 37), mul), a8), u.mul(u.add(u.rotate(a8, 25), b8), mul), mul)
    a4 = d.load(0, 4)  # 4..7 bytes
    short = hash_len16(u, u.add(n64, u.shl(a4, 3)), d.load(at(4), 4), mul)
    y = u.add(d.byte(ctx.op("Mul", n, ctx.ints(0, "zero"))),
              u.shl(d.byte(ctx.op("Div", n, ctx.ints(2, "two"))), 8))  # 1..3 bytes
    z = u.add(n64, u.shl(d.byte(at(1)), 2))
    v = u.xor(u.mul(y, K2), u.mul(z, K0))
    tiny = u.mul(u.xor(v, u.shr(v, 47)), K2)
    out = u.select(ctx.op("Greater", n, ctx.ints(16, "sixteen")), long, medium)
    out = u.select(ctx.op("Less", n, ctx.ints(8, "eight")), short, out)
    return u.select(ctx.op("Less", n, ctx.ints(4, "four")), tiny, out)


def sip_round(u: U64Ops, v: list) -> list:
    v0, v1, v2, v3 = v
    v0 = u.add(v0, v1)
    v1 = u.xor(u.rotl(v1, 13), v0)
    v0 = u.rotl(v0, 32)
    v2 = u.add(v2, v3)
    v3 = u.xor(u.rotl(v3, 16), v2)
    v0 = u.add(v0, v3)
    v3 = u.xor(u.rotl(v3, 21), v0)
    v2 = u.add(v2, v1)
    v1 = u.xor(u.rotl(v1, 17), v2)
    v2 = u.rotl(v2, 32)
    return [v0, v1, v2, v3]


def siphash24(d: Decimal, k0: int, k1: int) -> str:
    """SipHash-2-4 keyed (k0, k1) of strings of 1..20 bytes: three block slots; slot k is a full block below
    n // 8, the final (length-tagged) block at n // 8, and skipped past it."""
    u, ctx = d.u, d.ctx
    v = [u.c(k0 ^ 0x736F6D6570736575), u.c(k1 ^ 0x646F72616E646F6D), u.c(k0 ^ 0x6C7967656E657261),
         u.c(k1 ^ 0x7465646279746573)]
    blocks = ctx.op("Div", d.n, ctx.ints(8, "eight"))  # (S,) full blocks
    final = u.or_(d.load(ctx.op("Mul", blocks, ctx.ints(8, "eight")), 8),
                  u.shl(u.ctx.op("Cast", d.n, to=U64), 56))  # bytes past n are 0; the length in the top byte
    for k in range(3):
        full = ctx.op("Less", ctx.ints(k, "slot"), blocks)
        m = u.select(full, d.load(8 * k, 8), final)
        new = list(v)
        new[3] = u.xor(new[3], m)
        new = sip_round(u, sip_round(u, new))
        new[0] = u.xor(new[0], m)
        if k == 0:
            v = new
        else:
            used = ctx.op("LessOrEqual", ctx.ints(k, "slot"), blocks)
            v = [u.select(used, a, b) for a, b in zip(new, v)]
    v[2] = u.xor(v[2], 0xFF)
    for _ in range(4):
        v = sip_round(u, v)
    return u.xor(u.xor(v[0], v[1]), u.xor(v[2], v[3]))


@layer_exporter("Hashing")
def hashing(ctx, layer, inputs, weights):
    x = inputs[0]
    u = U64Ops(ctx, f"layer '{layer.name}' (Hashing)")
    values = ctx.op("Cast", x, to=TensorProto.INT64)  # floats truncated, as Keras
    d = Decimal(u, values)
    h = siphash24(d, *layer.salt) if layer.salt is not None else farmhash64(d)
    masked = layer.mask_value is not None and layer.num_bins > 1
    out = u.bucket(h, layer.num_bins - 1 if masked else layer.num_bins)  # int64
    if masked:
        hit = ctx.op("Equal", x, ctx.const(layer.mask_value, "mask_value", dtype=np.dtype(ctx.dtype(x))))
        out = ctx.op("Where", hit, ctx.ints(0, "zero"), ctx.op("Add", out, ctx.ints(1, "one")))
    if layer.output_mode == "int":
        return out if layer.get("dtype", "int64") != "int32" else ctx.op("Cast", out, to=TensorProto.INT32)
    return encode(ctx, out, layer.output_mode, layer.num_bins, ctx.shape(x))
