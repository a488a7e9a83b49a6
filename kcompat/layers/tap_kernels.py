"""Kernels that walk the taps of a window in NumPy, channels_last: depthwise convolution and pooling.

References: keras/src/layers/convolutional/base_depthwise_conv.py (output c*M+m reads channel c),
keras/src/backend/tensorflow/nn.py (TF's pooling never counts the padding).

- A 2-D (and 1-D) depthwise convolution runs a band of output rows at a time: the input rows under
  the band are copied into a zero-bordered scratch (that is the padding), then ONE ``np.einsum`` sums
  the kh*kw shifted products ``band[tap] * kernel[tap]`` of every output element of the band. Its
  inner loop is a multiply-add over a whole output row (Wo*C contiguous floats), one pass per tap, in
  cache: twice the speed of a multiply then an add per tap. Strided along the width, the scratch holds
  for each input row kw rows of Wo pixels (width tap j's columns, copied once), so that loop stays
  contiguous instead of C floats at a time.
- 3-D depthwise convolutions and pooling go through ``over_taps``: for each cache-sized output block,
  each tap's shifted view of the input (``tap_slices``: only the part it reaches, the padding is never
  copied) is multiplied-and-added / maxed / summed in.
- Blocks run on THREADS threads (kcompat/threads.py); ``epilogue`` (bias, elementwise activation)
  runs in place on each output block while it is in cache.
Everything stays in the input's dtype (float32 in, float32 out).
"""
from __future__ import annotations

import math
from typing import Callable, Optional

import numpy as np
from numpy.lib.stride_tricks import as_strided

from .. import buffers
from ..threads import in_parallel
from .conv_geometry import out_sizes, pad_spatial, tap_range, tap_slices, windows

Epilogue = Optional[Callable[[np.ndarray], None]]  # in place on an output block (n, *out, F)
BLOCK_ITEMS = 2**17  # an over_taps output block: about 512 KB of float32, to stay in L2 cache
BAND_ITEMS = 2**16  # a depthwise band of output rows: 256 KB of float32, its input rows about as much


def batch_slices(n: int, per_item: int, budget: int) -> list[slice]:
    """Slices of the batch axis, each about ``budget`` units when one item is ``per_item`` units."""
    step = max(1, budget // max(per_item, 1))
    return [slice(i, min(i + step, n)) for i in range(0, n, step)]


def over_taps(x: np.ndarray, y: np.ndarray, k, strides, dilation, pads, apply, empty=0, finish=None) -> np.ndarray:
    """Fill y (N, *out, F) from x (N, *sp, F) one cache-sized output block at a time, tap by tap.

    For each block and each kernel tap that reaches the input (fully covering taps first),
    ``apply(tap, src, dst, scratch, first)``: src is the shifted input under dst, a view of the block;
    ``first`` means dst is the whole block and nothing was written yet. A block whose first tap does not
    cover it is filled with ``empty`` first. Then ``finish(block, (batch slice, band of first-axis rows))``.
    Blocks run on THREADS threads (NumPy releases the GIL inside ufunc loops).
    """
    r = len(k)
    n, outs, f = y.shape[0], y.shape[1:r + 1], y.shape[-1]
    reads = []  # (tap, output slices, input slices), fully covering taps first
    for tap, o, i in tap_slices(x.shape[1:r + 1], outs, k, strides, dilation, pads):
        if o is not None:
            full = all(sl.stop - sl.start == m for sl, m in zip(o, outs))
            reads.insert(0 if full else len(reads), (tap, o, i))
    per_row = math.prod(outs[1:]) * f
    if per_row * outs[0] <= BLOCK_ITEMS:  # small images: several whole images per block
        blocks = [(b, slice(0, outs[0])) for b in batch_slices(n, per_row * outs[0], BLOCK_ITEMS)]
    else:  # big images: one image, a band of rows of the first spatial axis per block
        rows = max(1, BLOCK_ITEMS // per_row)
        blocks = [(slice(b, b + 1), slice(r0, min(r0 + rows, outs[0])))
                  for b in range(n) for r0 in range(0, outs[0], rows)]
    shape = (blocks[0][0].stop - blocks[0][0].start, blocks[0][1].stop, *outs[1:], f)

    def run(todo) -> None:
        scratch = np.empty(shape, y.dtype)  # one per worker
        for part, band in todo:
            block = y[part, band]  # (b, rows, *out[1:], F): a view of y
            started = False
            for tap, o, i in reads:
                lo, hi = max(o[0].start, band.start), min(o[0].stop, band.stop)  # this tap's rows in the band
                if hi <= lo:
                    continue
                first = i[0].start + (lo - o[0].start) * strides[0]
                src = x[(part, slice(first, first + (hi - lo - 1) * strides[0] + 1, strides[0]), *i[1:])]
                dst = block[(slice(None), slice(lo - band.start, hi - band.start), *o[1:])]  # (b, h, *o[1:], F)
                whole = not started and dst.shape == block.shape
                if not started and not whole:
                    block[...] = empty
                apply(tap, src, dst, scratch[tuple(slice(0, m) for m in dst.shape)], whole)
                started = True
            if not started:
                block[...] = empty
            if finish is not None:
                finish(block, (part, band))
    in_parallel(run, blocks)
    return y


def depthwise(x: np.ndarray, kernel: np.ndarray, strides, dilation, pads, epilogue: Epilogue = None) -> np.ndarray:
    """Each channel with its own filter: x (N, *sp, C), kernel (*k, F) with F = C * M (output c*M+m reads c)."""
    r = kernel.ndim - 1
    n, sizes, f = x.shape[0], x.shape[1:r + 1], kernel.shape[-1]
    outs = out_sizes(sizes, kernel.shape[:r], strides, dilation, pads)
    y = buffers.empty((n, *outs, f), np.result_type(x, kernel))  # (N, *out, F)
    if r == 2:
        _depthwise_rows(x, kernel, strides, dilation, pads, y, epilogue)
    elif r == 1:  # one row of a 2-D image: (N, W, C) -> (N, 1, W, C)
        _depthwise_rows(x[:, None], kernel[None], (1, *strides), (1, *dilation), [(0, 0), *pads], y[:, None],
                        epilogue)
    else:
        if f != x.shape[-1]:  # depth_multiplier M > 1: channel c feeds outputs c*M .. c*M+M-1
            x = np.repeat(x, f // x.shape[-1], axis=-1)  # (N, *sp, C) -> (N, *sp, C*M)
        _depthwise_taps(x, kernel, strides, dilation, pads, y, epilogue)
    return y


def _depthwise_rows(x: np.ndarray, kernel: np.ndarray, strides, dilation, pads, y: np.ndarray,
                    epilogue: Epilogue) -> None:
    """2-D depthwise into y (N, Ho, Wo, F) from x (N, H, W, C), kernel (kh, kw, F), a band of output rows at a time."""
    n, h_in, w_in, c = x.shape
    ho, wo, f = y.shape[1:]
    (kh, kw), (sh, sw), (dh, dw) = kernel.shape[:2], strides, dilation
    (top, _), (left, right) = pads
    rows = max(1, min(ho, BAND_ITEMS // (wo * f)))
    most = (rows - 1) * sh + (kh - 1) * dh + 1  # input rows under a band
    tiled = np.ascontiguousarray(np.broadcast_to(kernel.astype(y.dtype, copy=False)[:, :, None, :],
                                                 (kh, kw, wo, f))).reshape(kh, kw, wo * f)  # one output row per tap
    cols = [tap_range(w_in, wo, j, sw, dw, left) for j in range(kw)]  # per width tap: outputs [lo, hi), 1st column

    def run(todo) -> None:
        if sw == 1:  # a tap's row is the band row read dw pixels later: (Wo*F) contiguous per tap and row
            band = np.zeros((most, w_in + left + right, c, f // c), y.dtype)  # (rows, W + pads, C, M); borders stay 0
            tap_step = dw * f * band.itemsize
        else:  # strided: a band row holds kw rows of Wo pixels, tap j's columns o*sw + j*dw - left (0 in the padding)
            band = np.zeros((most, kw, wo, c, f // c), y.dtype)  # (rows, kw, Wo, C, M)
            tap_step = band.strides[1]
        step = band.strides[0]
        for b, o_lo in todo:
            o_hi = min(o_lo + rows, ho)
            need = (o_hi - o_lo - 1) * sh + (kh - 1) * dh + 1
            first = o_lo * sh - top  # the input row under band row 0
            lo, hi = min(max(0, -first), need), max(0, min(need, h_in - first))  # band rows that hold input rows
            src = x[b, first + lo:first + hi, :, :, None]  # (h, W, C, 1): broadcast to (h, W, C, M)
            data = band[:need, left:left + w_in] if sw == 1 else band[:need]
            data[:lo] = 0
            data[max(hi, lo):] = 0
            if hi > lo and sw == 1:
                data[lo:hi] = src
            elif hi > lo:
                for j, (a, z, start) in enumerate(cols):  # outputs outside [a, z) read padding: zero since allocation
                    if z > a:
                        data[lo:hi, j, a:z] = src[:, start:start + (z - a - 1) * sw + 1:sw]  # (h, z - a, C, M)
            out = y[b, o_lo:o_hi]  # (h, Wo, F), contiguous
            taps = as_strided(band, (kh, kw, o_hi - o_lo, wo * f), (dh * step, tap_step, sh * step, band.itemsize),
                              writeable=False)
            np.einsum("ijhn,ijn->hn", taps, tiled, out=out.reshape(o_hi - o_lo, wo * f))  # (kh, kw, h, Wo*F) . (kh, kw, Wo*F)
            if epilogue is not None:
                epilogue(out)
    in_parallel(run, [(b, o) for b in range(n) for o in range(0, ho, rows)])


def _depthwise_taps(x: np.ndarray, kernel: np.ndarray, strides, dilation, pads, y: np.ndarray,
                    epilogue: Epilogue) -> None:
    """Depthwise into y (N, *out, F) from x (N, *sp, F), kernel (*k, F), any rank: a sum over taps of
    ``x[shifted] * kernel[tap]`` block by block (over_taps); strided, one einsum per image over the window view."""
    r = kernel.ndim - 1
    *k, f = kernel.shape
    n, outs = x.shape[0], y.shape[1:r + 1]
    if any(st > 1 for st in strides):  # strided reads make shifted taps slow: one einsum per image on windows
        win = windows(pad_spatial(x, pads), k, strides, dilation)  # (N, *out, F, *k): a view
        taps = "ijk"[:r]

        def images(todo):
            for b in todo:
                np.einsum(f"...c{taps},{taps}c->...c", win[b], kernel, out=y[b])  # (*out, F, *k) . (*k, F)
                if epilogue is not None:
                    epilogue(y[b])
        in_parallel(images, list(range(n)))
        return
    # each tap's weights tiled over the inner output axes, so one multiply runs over contiguous rows
    tiled = np.ascontiguousarray(np.broadcast_to(kernel.astype(y.dtype, copy=False).reshape(*k, *(1,) * (r - 1), f),
                                                 (*k, *outs[1:], f)))  # (*k, *out[1:], F)

    def apply(tap, src, dst, scratch, whole):
        w = tiled[tap][tuple(slice(0, m) for m in dst.shape[2:-1])]  # (*dst inner, F): constant along the axes
        if whole:
            np.multiply(src, w, out=dst)
        else:
            np.multiply(src, w, out=scratch)
            np.add(dst, scratch, out=dst)
    finish = None if epilogue is None else lambda block, _: epilogue(block)  # noqa: E731 - in the block's worker
    over_taps(x, y, k, strides, dilation, pads, apply, 0, finish)


def pool(x: np.ndarray, size, strides, pads, mode: str) -> np.ndarray:
    """Max or mean of x (N, *sp, C) over windows; padding is never part of a window (TF's pooling)."""
    r = len(size)
    ones = (1,) * r
    outs = out_sizes(x.shape[1:r + 1], size, strides, ones, pads)
    if mode == "max":
        lowest = -np.inf if x.dtype.kind == "f" else np.iinfo(x.dtype).min
        y = buffers.empty((x.shape[0], *outs, x.shape[-1]), x.dtype)
        step = lambda tap, src, dst, scratch, whole: np.copyto(dst, src) if whole else np.maximum(dst, src, out=dst)  # noqa: E731
        return over_taps(x, y, size, strides, ones, pads, step, lowest)
    y = buffers.empty((x.shape[0], *outs, x.shape[-1]), x.dtype if x.dtype.kind == "f" else np.float64)
    # windows are cut by the padding: count the real cells of each (a product over axes)
    counts = np.ones((), y.dtype)
    for n, o, kk, s, (b, _) in zip(x.shape[1:r + 1], outs, size, strides, pads):
        per_axis = np.zeros(o, y.dtype)
        for t in range(kk):
            lo, hi, _ = tap_range(n, o, t, s, 1, b)
            per_axis[lo:hi] += 1
        counts = np.multiply.outer(counts, per_axis)
    counts = counts[..., None]  # (*out, 1)
    step = lambda tap, src, dst, scratch, whole: np.copyto(dst, src) if whole else np.add(dst, src, out=dst)  # noqa: E731
    return over_taps(x, y, size, strides, ones, pads, step, 0,
                     lambda block, where: np.divide(block, counts[where[1]], out=block))


