"""Hashing and HashedCrossing of integer features, bit-exact with TensorFlow.

References: keras/src/layers/preprocessing/hashing.py (a value is cast to int64, written in decimal,
and hashed: ``tf.strings.to_hash_bucket_fast`` = FarmHash Fingerprint64, or with a ``salt``
``to_hash_bucket_strong`` = SipHash-2-4 keyed by the salt pair) and hashed_crossing.py
(``tf.sparse.cross_hashed``: starting from the key 0xDECAFCAFFE, each integer feature's raw 64-bit value
is folded in with TensorFlow's FingerprintCat64). Strings are refused before this point (kcompat runs
numeric arrays). The hashes are plain Python integer arithmetic modulo 2**64, memoised per value.
"""
from __future__ import annotations

import numpy as np

from .base import Layer, fmt_shape, register
from .categorical import encode, encoded_shape

M64 = (1 << 64) - 1
K0, K1, K2 = 0xC3A5C85C97CB3127, 0xB492B66FBE98F273, 0x9AE16A3B2F90404F
CROSS_KEY = 0xDECAFCAFFE  # tensorflow/python/ops/sparse_ops.py _DEFAULT_HASH_KEY


def _u64(s: bytes, i: int) -> int:
    return int.from_bytes(s[i:i + 8], "little")


def _rotate(v: int, r: int) -> int:
    return v if r == 0 else ((v >> r) | (v << (64 - r))) & M64


def _hash_len16(u: int, v: int, mul: int) -> int:
    a = ((u ^ v) * mul) & M64
    a ^= a >> 47
    b = ((v ^ a) * mul) & M64
    b ^= b >> 47
    return (b * mul) & M64


def fingerprint64(s: bytes) -> int:
    """FarmHash Fingerprint64 (farmhashna::Hash64) of up to 32 bytes: every int64's decimal form fits."""
    n = len(s)
    mul = (K2 + n * 2) & M64
    if n > 32:
        raise ValueError(f"fingerprint64 is implemented for up to 32 bytes. Received: {n} bytes")
    if n > 16:
        a, b = (_u64(s, 0) * K1) & M64, _u64(s, 8)
        c, d = (_u64(s, n - 8) * mul) & M64, (_u64(s, n - 16) * K2) & M64
        return _hash_len16((_rotate((a + b) & M64, 43) + _rotate(c, 30) + d) & M64,
                           (a + _rotate((b + K2) & M64, 18) + c) & M64, mul)
    if n >= 8:
        a, b = (_u64(s, 0) + K2) & M64, _u64(s, n - 8)
        return _hash_len16((_rotate(b, 37) * mul + a) & M64, ((_rotate(a, 25) + b) * mul) & M64, mul)
    if n >= 4:
        a = int.from_bytes(s[:4], "little")
        return _hash_len16((n + (a << 3)) & M64, int.from_bytes(s[n - 4:], "little"), mul)
    if n > 0:
        y = (s[0] + (s[n >> 1] << 8)) & 0xFFFFFFFF
        z = (n + (s[n - 1] << 2)) & 0xFFFFFFFF
        v = ((y * K2) ^ (z * K0)) & M64
        return ((v ^ (v >> 47)) * K2) & M64
    return K2


def siphash24(k0: int, k1: int, s: bytes) -> int:
    """SipHash-2-4 with the 128-bit key (k0, k1), as tf.strings.to_hash_bucket_strong uses it."""
    def rotl(x, b):
        return ((x << b) | (x >> (64 - b))) & M64

    def sip_round(v0, v1, v2, v3):
        v0 = (v0 + v1) & M64; v1 = rotl(v1, 13) ^ v0; v0 = rotl(v0, 32)  # noqa: E702
        v2 = (v2 + v3) & M64; v3 = rotl(v3, 16) ^ v2  # noqa: E702
        v0 = (v0 + v3) & M64; v3 = rotl(v3, 21) ^ v0  # noqa: E702
        v2 = (v2 + v1) & M64; v1 = rotl(v1, 17) ^ v2; v2 = rotl(v2, 32)  # noqa: E702
        return v0, v1, v2, v3

    v = [k0 ^ 0x736F6D6570736575, k1 ^ 0x646F72616E646F6D, k0 ^ 0x6C7967656E657261, k1 ^ 0x7465646279746573]
    end = len(s) - len(s) % 8
    blocks = [_u64(s, i) for i in range(0, end, 8)] + [((len(s) & 0xFF) << 56) | int.from_bytes(s[end:], "little")]
    for m in blocks:
        v[3] ^= m
        v = list(sip_round(*sip_round(*v)))
        v[0] ^= m
    v[2] ^= 0xFF
    for _ in range(4):
        v = list(sip_round(*v))
    return v[0] ^ v[1] ^ v[2] ^ v[3]


def fingerprint_cat64(fp1: int, fp2: int) -> int:
    """tensorflow/core/platform/fingerprint.h FingerprintCat64."""
    mul = 0xC6A4A7935BD1E995
    result = fp1 ^ mul
    v = (fp2 * mul) & M64
    result ^= ((v ^ (v >> 47)) * mul) & M64
    result = (result * mul) & M64
    result = ((result ^ (result >> 47)) * mul) & M64
    return result ^ (result >> 47)


def _map_values(x: np.ndarray, fn) -> np.ndarray:
    """fn over the distinct values of an int64 array."""
    values, inverse = np.unique(x, return_inverse=True)
    return np.asarray([fn(int(v)) for v in values], np.int64)[inverse].reshape(x.shape)


@register("Hashing")
class Hashing(Layer):
    """Each integer value -> FarmHash64 (or salted SipHash) of its decimal form, modulo num_bins."""

    def __init__(self, config, name=None):
        super().__init__(config, name)
        self.num_bins = self.positive_int("num_bins")
        self.mask_value = self.config.get("mask_value")
        salt = self.config.get("salt")
        if isinstance(salt, int) and not isinstance(salt, bool):
            salt = [salt, salt]
        if salt is not None and (not isinstance(salt, (list, tuple)) or len(salt) != 2):
            raise self.fail(f"'salt' must be an integer or a pair of them. Received: salt={salt!r}")
        self.salt = None if salt is None else (int(salt[0]) & M64, int(salt[1]) & M64)
        self.output_mode = self.choice("output_mode", ("int", "one_hot", "multi_hot", "count"), "int")
        if self.get("sparse", False):
            raise self.fail("sparse outputs are not supported (kcompat computes dense arrays)")

    def output_shape(self, input_shape):
        if self.output_mode in ("multi_hot", "count") and len(input_shape) > 2:
            raise self.fail(f"output_mode='{self.output_mode}' is supported on inputs of rank <= 2. "
                            f"Received: input_shape={fmt_shape(input_shape)}")
        return encoded_shape(input_shape, self.output_mode, self.num_bins)

    def bucket(self, value: int, bins: int) -> int:
        text = str(value).encode()
        h = siphash24(*self.salt, text) if self.salt is not None else fingerprint64(text)
        return h % bins

    def forward(self, x):
        values = np.asarray(x)
        ints = values.astype(np.int64) if values.dtype.kind == "f" else values.astype(np.int64, copy=False)
        masked = self.mask_value is not None and self.num_bins > 1
        bins = self.num_bins - 1 if masked else self.num_bins
        out = _map_values(ints, lambda v: self.bucket(v, bins))
        if masked:
            out = np.where(values == self.mask_value, 0, out + 1)
        if self.output_mode == "int":
            return out.astype(np.int32 if self.get("dtype", "int64") == "int32" else np.int64)
        return encode(out, self.output_mode, self.num_bins)

    def explain(self, input_shape, output_shape):
        how = "SipHash with the salt" if self.salt is not None else "FarmHash64"
        return f"{how} of each value's decimal form into {self.num_bins} bins ({self.output_mode}); 0 params"


@register("HashedCrossing")
class HashedCrossing(Layer):
    """Two or more integer features per sample -> one bin: their values folded into a fingerprint."""

    def __init__(self, config, name=None):
        super().__init__(config, name)
        self.num_bins = self.positive_int("num_bins")
        self.output_mode = self.choice("output_mode", ("int", "one_hot"), "int")
        if self.get("sparse", False):
            raise self.fail("sparse outputs are not supported (kcompat computes dense arrays)")

    def output_shape(self, input_shape):
        shapes = input_shape if isinstance(input_shape, list) else [input_shape]
        if len(shapes) < 2 or any(tuple(s) != tuple(shapes[0]) for s in shapes):
            raise self.fail(f"expects a list of 2 or more inputs of one shape. Received: {fmt_shape(shapes)}")
        if len(shapes[0]) > 2 or (len(shapes[0]) == 2 and shapes[0][1] not in (1, None)):
            raise self.fail(f"crosses one value per sample: inputs (batch,) or (batch, 1). "
                            f"Received: {fmt_shape(shapes)}")
        return encoded_shape(shapes[0], self.output_mode, self.num_bins)

    def forward(self, x):
        columns = [np.asarray(a).astype(np.int64) for a in x]  # each (N,) or (N, 1)

        def cross(row: tuple) -> int:
            h = CROSS_KEY
            for value in row:
                h = fingerprint_cat64(h, value & M64)
            return h % self.num_bins
        flat = [c.reshape(-1) for c in columns]
        out = np.asarray([cross(tuple(int(c[i]) for c in flat)) for i in range(flat[0].size)], np.int64)
        out = out.reshape(columns[0].shape)
        return out if self.output_mode == "int" else encode(out, "one_hot", self.num_bins)

    def explain(self, input_shape, output_shape):
        return f"one bin of {self.num_bins} per combination of the input values ({self.output_mode}); 0 params"
