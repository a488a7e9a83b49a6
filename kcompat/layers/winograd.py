"""A 3x3, stride-1 2-D convolution by Winograd's minimal filtering F(2x2, 3x3), in NumPy.

Reference: A. Lavin, S. Gray, "Fast Algorithms for Convolutional Neural Networks" (CVPR 2016), section 4.1
(the matrices B, G, A below). Each 2x2 output tile is ``A^T [(G g G^T) * (B^T d B)] A`` over its 4x4
input tile d: per channel pair, 16 multiplications instead of 36. Summed over channels, the 16
products are 16 matmuls (tiles x C) @ (C x F), so a 3x3 convolution costs 16/36 of im2col's matmul
plus the transforms (additions and subtractions, coefficients 0, +-1, +-1/2: exact in float).

- The kernel transform ``G g G^T`` is made once per kernel array (float64, rounded to float32 once) and
  kept while that array lives (``transformed``).
- Tiles go a block at a time (about TILES tiles: several whole images, or a band of tile rows of one):
  the input rows under the block are copied into a zero-bordered scratch (that is the padding), the 16
  transformed tiles and the 16 products of a block stay in cache, and the output transform writes
  each of the 4 positions of every tile straight into the output; then ``epilogue`` on the block.
- Rounding: about 1e-6 of the output's scale in float32, like im2col's (other summation order).
"""
from __future__ import annotations

import weakref
from typing import Callable, Optional

import numpy as np

from ..threads import in_parallel_blas

Epilogue = Optional[Callable[[np.ndarray], None]]
TILES = 512  # tiles per block: with C, F <= 512, the 16 transformed tiles and products are about 1 MB each
G = np.array([[1, 0, 0], [0.5, 0.5, 0.5], [0.5, -0.5, 0.5], [0, 0, 1]])  # (4, 3): the kernel transform
_CACHE: dict[int, tuple] = {}  # id(kernel) -> (weakref to kernel, transformed kernel)


def transformed(kernel: np.ndarray, dtype) -> np.ndarray:
    """G g G^T of a (3, 3, C, F) kernel: (4, 4, C, F) in ``dtype``, cached while ``kernel`` lives."""
    key = id(kernel)
    hit = _CACHE.get(key)
    if hit is not None and hit[0]() is kernel and hit[1].dtype == dtype:
        return hit[1]
    u = np.einsum("ai,ijcf,bj->abcf", G, kernel.astype(np.float64), G).astype(dtype)  # (4, 4, C, F)
    try:
        ref = weakref.ref(kernel, lambda _, key=key: _CACHE.pop(key, None))
    except TypeError:  # a view of another array still supports weakrefs; anything else is not cached
        return u
    _CACHE[key] = (ref, u)
    return u


def winograd(x: np.ndarray, kernel: np.ndarray, pads, y: np.ndarray, epilogue: Epilogue = None) -> np.ndarray:
    """y (N, Ho, Wo, F) = x (N, H, W, C) cross-correlated with kernel (3, 3, C, F), stride 1, zero ``pads``."""
    n, h, w, c = x.shape
    ho, wo, f = y.shape[1:]
    u = transformed(kernel, y.dtype)
    (top, _), (left, _) = pads
    ty_all, tx = -(-ho // 2), -(-wo // 2)  # tiles down and across
    width = 2 * tx + 2  # the scratch's padded width: every tile's 4 columns
    if ty_all * tx >= TILES:  # big images: a band of tile rows of one image per block
        rows = max(1, TILES // tx)
        blocks = [(b, b + 1, t, min(t + rows, ty_all)) for b in range(n) for t in range(0, ty_all, rows)]
    else:  # small images: several whole images per block
        step = max(1, TILES // (ty_all * tx))
        blocks = [(b, min(b + step, n), 0, ty_all) for b in range(0, n, step)]
    most_n = max(b1 - b0 for b0, b1, _, _ in blocks)
    most_t = max(t1 - t0 for _, _, t0, t1 in blocks)

    def run(todo) -> None:
        band = np.zeros((most_n, 2 * most_t + 2, width, c), y.dtype)  # input rows under a block; borders stay 0
        rows_t = np.empty((4, most_n * most_t * width * c), y.dtype)  # B^T d along the rows
        v = np.empty((4, 4, most_n * most_t * tx, c), y.dtype)  # B^T d B: the 16 transformed tiles
        m = np.empty((4, 4, most_n * most_t * tx, f), y.dtype)  # their products with the kernel
        p = np.empty((2, 4, most_n * most_t * tx, f), y.dtype)  # A^T m along the rows
        for b0, b1, t0, t1 in todo:
            nb, ty = b1 - b0, t1 - t0
            tiles, shape = nb * ty * tx, (nb, ty, tx, c)
            need = 2 * ty + 2
            first = 2 * t0 - top  # the input row under band row 0
            lo, hi = min(max(0, -first), need), max(0, min(need, h - first))
            data = band[:nb, :need, left:left + w]
            if hi <= lo:
                data[...] = 0
            else:
                data[:, :lo] = 0
                data[:, hi:] = 0
                data[:, lo:hi] = x[b0:b1, first + lo:first + hi]
            d = [band[:nb, a:a + 2 * ty:2] for a in range(4)]  # (nb, ty, width, C): row a of every tile
            r = [rows_t[k, :nb * ty * width * c].reshape(nb, ty, width, c) for k in range(4)]
            np.subtract(d[0], d[2], out=r[0])  # B^T = [[1, 0, -1, 0], [0, 1, 1, 0], [0, -1, 1, 0], [0, 1, 0, -1]]
            np.add(d[1], d[2], out=r[1])
            np.subtract(d[2], d[1], out=r[2])
            np.subtract(d[1], d[3], out=r[3])
            for k in range(4):
                e = [r[k][:, :, j:j + 2 * tx:2] for j in range(4)]  # (nb, ty, tx, C): column j of every tile
                np.subtract(e[0], e[2], out=v[k, 0, :tiles].reshape(shape))
                np.add(e[1], e[2], out=v[k, 1, :tiles].reshape(shape))
                np.subtract(e[2], e[1], out=v[k, 2, :tiles].reshape(shape))
                np.subtract(e[1], e[3], out=v[k, 3, :tiles].reshape(shape))
            np.matmul(v[:, :, :tiles], u, out=m[:, :, :tiles])  # 16 x (tiles, C) @ (C, F)
            mt, pt = m[:, :, :tiles], p[:, :, :tiles]
            np.add(mt[0], mt[1], out=pt[0])  # A^T = [[1, 1, 1, 0], [0, 1, -1, -1]]
            np.add(pt[0], mt[2], out=pt[0])
            np.subtract(mt[1], mt[2], out=pt[1])
            np.subtract(pt[1], mt[3], out=pt[1])
            out = y[b0:b1, 2 * t0:min(2 * t1, ho)]  # (nb, rows, Wo, F)
            for a in range(2):
                q = [pt[a, j].reshape(nb, ty, tx, f) for j in range(4)]
                for col, (one, two, three, op) in enumerate(((0, 1, 2, np.add), (1, 2, 3, np.subtract))):
                    dst = out[:, a::2, col::2]  # (nb, ty or fewer, tx or fewer, F): position (a, col) of every tile
                    cut = (slice(None), slice(0, dst.shape[1]), slice(0, dst.shape[2]))
                    op(q[one][cut], q[two][cut], out=dst)  # column 0: p0 + p1 + p2; column 1: p1 - p2 - p3
                    (np.add if col == 0 else np.subtract)(dst, q[three][cut], out=dst)
            if epilogue is not None:
                epilogue(out)
    in_parallel_blas(run, blocks)
    return y
