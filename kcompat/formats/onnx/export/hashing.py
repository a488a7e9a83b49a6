"""ONNX exporters of HashedCrossing and Hashing: TensorFlow's 64-bit hashes in uint64 arithmetic (Mul and Add
wrap modulo 2**64, BitShift, BitwiseXor / Or / And: opset 18), bit-exact with kcompat/layers/hashing.py.

HashedCrossing folds each feature's raw 64-bit value into 0xDECAFCAFFE with FingerprintCat64. Hashing hashes
each integer's decimal form: the digits and sign become bytes (at most 20), read as little-endian words, then
FarmHash Fingerprint64 (every length branch computed, the right one picked per value) or, with a salt,
SipHash-2-4 (three block slots, each applied where the string reaches it): hashing_fns.py.
Reference: kcompat/layers/hashing.py; farmhash.cc (farmhashna::Hash64), SipHash's reference implementation.
"""
from __future__ import annotations

import numpy as np
from onnx import TensorProto

from ....errors import UnsupportedError
from ....layers.hashing import CROSS_KEY
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
