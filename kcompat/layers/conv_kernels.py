"""Convolution kernels in NumPy, channels_last, 1 to 3 spatial axes: a BLAS matmul on an im2col matrix.

References: keras/src/layers/convolutional/base_conv.py (what is computed), conv_geometry.py (the shapes).

- A 1x1 kernel is a plain matmul on a reshape (no copy), in row blocks so the epilogue finds them in cache;
  an expanding one (C < F) with a bias copies each block beside a column of ones and multiplies it by
  [kernel; bias]: the copy (C + 1 per row) is cheaper than a bias pass over the output (F per row).
- A 3x3 stride-1 2-D kernel with 32+ channels in and out goes by Winograd's F(2x2, 3x3) (winograd.py):
  16 small matmuls per tile instead of 36 multiply-adds per output in im2col's.
- Otherwise each row of taps (k[-1] taps x C channels, contiguous in channels_last) is one copy out of
  the padded input into the im2col matrix, then one matmul writes the output.
- Depthwise convolutions (groups == channels) go to tap_kernels.py; other grouped ones are one batched
  matmul over groups.
- ``epilogue`` (bias, elementwise activation) runs in place on each output block while it is in cache.
Everything stays in the input's dtype (float32 in, float32 out). The names of conv_geometry.py that
layers and exporters use (span, conv_length, conv_pads, ...) are importable from here too.
"""
from __future__ import annotations

import itertools
import math

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from .. import buffers
from ..threads import bands, in_parallel, in_parallel_blas
from .conv_geometry import (conv_length, conv_pads, out_sizes, pad_spatial, same_pads, span, tap_slices,  # noqa: F401
                            transpose_length, windows)
from .tap_kernels import Epilogue, batch_slices, depthwise
from .winograd import winograd

# ------------------------------------------------------------------ the kernels
IM2COL_BYTES = 16 * 2**20  # tap-by-tap im2col (dilated last axis): the batch is cut so one matrix stays under this
COLS_BYTES = 2 * 2**20  # row-wise im2col: a block of the matrix, matmul'd while it is in cache (L2 / L3)
BLOCK_ITEMS = 2**17  # a 1x1 output block: about 512 KB of float32
WINOGRAD_CHANNELS = 32  # 3x3 stride 1 by Winograd from this many input and output channels (fewer: im2col wins)


def _finish(y: np.ndarray, epilogue: Epilogue) -> None:
    """The epilogue on a contiguous y (..., F): in bands of rows on THREADS threads when y is large."""
    if epilogue is None:
        return
    if y.size < 4 * BLOCK_ITEMS:
        epilogue(y)
        return
    rows = y.reshape(-1, y.shape[-1])  # a view: y is contiguous
    in_parallel(lambda todo: [epilogue(rows[lo:hi]) for lo, hi in todo], bands(rows.shape[0]))


def convolve(x: np.ndarray, kernel: np.ndarray, strides, dilation, pads, groups: int = 1,
             epilogue: Epilogue = None) -> np.ndarray:
    """Cross-correlate x (N, *spatial, C) with kernel (*k, C/groups, F), zero ``pads`` around x.

    Returns (N, *out, F) with ``epilogue`` applied in place, block by block.
    """
    r = kernel.ndim - 2
    *k, cg, f = kernel.shape
    if groups > 1 and cg == 1:
        return depthwise(x, kernel.reshape(*k, f), strides, dilation, pads, epilogue)
    if groups > 1:
        return _grouped(x, kernel, strides, dilation, pads, groups, epilogue)
    n, sizes, c = x.shape[0], x.shape[1:r + 1], x.shape[-1]
    outs = out_sizes(sizes, k, strides, dilation, pads)
    w2 = kernel.reshape(-1, f)  # (*k, C, F) -> (k*C, F): im2col rows are (tap, channel)
    y = buffers.empty((n, *outs, f), np.result_type(x, kernel))  # (N, *out, F)
    if all(kk == 1 for kk in k) and not any(b or a for b, a in pads):  # 1x1: a plain matmul, no im2col
        if any(s > 1 for s in strides):
            x = x[(slice(None),) + tuple(slice(None, None, s) for s in strides)]  # (N, *out, C) view
        rows, y2 = x.reshape(-1, c), y.reshape(-1, f)  # (N*out, C), (N*out, F); copies only if strided
        step = max(1, 32 * BLOCK_ITEMS // f)  # 16 MB of output per matmul: few BLAS calls, epilogue in cache (L3)
        bias = getattr(epilogue, "bias", None)
        if bias is not None and c < f and y.dtype.kind == "f":  # expanding: the bias rides in the matmul
            _pointwise_with_bias(rows, w2, bias, y2, step, epilogue.activation)
            return y
        for i in range(0, rows.shape[0], step):
            np.matmul(rows[i:i + step], w2, out=y2[i:i + step])  # (B, C) @ (C, F) -> (B, F)
            _finish(y2[i:i + step], epilogue)
        return y
    if (k == [3, 3] and tuple(strides) == (1, 1) and tuple(dilation) == (1, 1) and min(c, f) >= WINOGRAD_CHANNELS
            and y.dtype.kind == "f"):
        return winograd(x, kernel, pads, y, epilogue)  # 16 products per 2x2 tile instead of 36
    if dilation[-1] == 1:
        _im2col_rows(x, w2, k, strides, dilation, pads, y, epilogue)
        return y
    per_item = math.prod(outs) * math.prod(k) * c * x.itemsize
    parts = batch_slices(n, per_item, IM2COL_BYTES)
    fill, buf = _im2col_taps(x, k, strides, dilation, pads, outs, parts[0].stop - parts[0].start)
    for part in parts:
        cols = buf[:part.stop - part.start]  # (n, *out, *k, C)
        fill(cols, part)
        out = y[part]
        np.matmul(cols.reshape(-1, w2.shape[0]), w2, out=out.reshape(-1, f))  # (n*out, k*C) @ (k*C, F)
        _finish(out, epilogue)
    return y


def _pointwise_with_bias(rows: np.ndarray, w2: np.ndarray, bias: np.ndarray, y2: np.ndarray, step: int,
                         activation) -> None:
    """y2 = rows @ w2 + bias as ONE matmul per block: [rows, 1] @ [w2; bias]. With C < F the block's copy
    (C + 1 per row) costs less than a bias pass over its output (F per row, read and written)."""
    c = rows.shape[1]
    wb = np.concatenate([w2, bias.reshape(1, -1).astype(w2.dtype)]).astype(y2.dtype, copy=False)  # (C+1, F)
    ones = buffers.empty((min(step, rows.shape[0]), c + 1), y2.dtype)  # (B, C+1): the block, then a column of 1
    ones[:, c] = 1
    for i in range(0, rows.shape[0], step):
        block, out = ones[:min(step, rows.shape[0] - i)], y2[i:i + step]
        block[:, :c] = rows[i:i + step]
        np.matmul(block, wb, out=out)  # (B, C+1) @ (C+1, F) -> (B, F)
        if activation is not None:
            _finish(out, activation)


def _im2col_rows(x, w2, k, strides, dilation, pads, y, epilogue) -> None:
    """im2col + matmul a block at a time (several whole images, or a band of first-axis rows of one), so
    each block of the im2col matrix is still in cache when the matmul reads it, and its output when the
    epilogue does. Undilated last axis: in channels_last a row of k[-1] taps x C channels is contiguous,
    so the input is padded once and each row of taps is one copy."""
    r, n, c, f = len(k), x.shape[0], x.shape[-1], w2.shape[1]
    outs = y.shape[1:r + 1]
    xp = pad_spatial(x, pads)  # (N, *padded, C)
    flat = xp.reshape(*xp.shape[:r], -1)  # (N, *padded[:-1], W*C)
    rows = sliding_window_view(flat, k[-1] * c, axis=-1)[..., ::strides[-1] * c, :][..., :outs[-1], :]
    # rows: (N, *padded[:-1], out[-1], k[-1]*C), a view; each outer tap picks its shifted rows
    outer = [(tap, [(t * d, s) for t, d, s in zip(tap, dilation, strides)])
             for tap in itertools.product(*(range(kk) for kk in k[:-1]))]
    per_row = math.prod(outs[1:]) * w2.shape[0] * x.itemsize  # im2col bytes of one first-axis output row
    if per_row * outs[0] <= COLS_BYTES:
        step = max(1, COLS_BYTES // (per_row * outs[0]))
        blocks = [(b, min(b + step, n), 0, outs[0]) for b in range(0, n, step)]
    else:
        step = max(1, COLS_BYTES // per_row)
        blocks = [(b, b + 1, h, min(h + step, outs[0])) for b in range(n) for h in range(0, outs[0], step)]
    most = max((b1 - b0) * (h1 - h0) for b0, b1, h0, h1 in blocks)

    def run(todo) -> None:
        scratch = np.empty(most * math.prod(outs[1:]) * w2.shape[0], x.dtype)
        for b0, b1, h0, h1 in todo:
            cols = scratch[:(b1 - b0) * (h1 - h0) * math.prod(outs[1:]) * w2.shape[0]].reshape(
                b1 - b0, h1 - h0, *outs[1:], *k[:-1], k[-1] * c)  # (nb, h, *out[1:], *k[:-1], k[-1]*C)
            for tap, starts in outer:
                src = tuple(slice(t + o0 * s, t + (o1 - 1) * s + 1, s)
                            for (t, s), o0, o1 in zip(starts, (h0, *([0] * (r - 2))), (h1, *outs[1:-1])))
                if r == 1:  # 1-D: the block's rows are the output positions themselves
                    src = (slice(h0, h1),)
                cols[(Ellipsis, *tap, slice(None))] = rows[(slice(b0, b1), *src)]  # (nb, h, *out[1:], k[-1]*C)
            out = y[b0:b1, h0:h1]  # (nb, h, *out[1:], F): contiguous
            np.matmul(cols.reshape(-1, w2.shape[0]), w2, out=out.reshape(-1, f))  # (rows, k*C) @ (k*C, F)
            if epilogue is not None:
                epilogue(out)
    in_parallel_blas(run, blocks)


def _im2col_taps(x, k, strides, dilation, pads, outs, most: int):
    """A buffer for the im2col matrix of up to ``most`` images, (n, *out, *k, C), and fill(cols, batch slice):
    each tap copies the part of the input it reaches (a dilated last axis); the buffer is reused for every
    batch slice, so the padding (what no tap writes) stays zero."""
    r, c = len(k), x.shape[-1]
    taps = [(tap, o, i) for tap, o, i in tap_slices(x.shape[1:r + 1], outs, k, strides, dilation, pads) if o is not None]
    partial = len(taps) < math.prod(k) or any(sl.stop - sl.start < m for _, o, _ in taps for sl, m in zip(o, outs))

    def fill_taps(cols, part):
        for tap, o, i in taps:
            cols[(slice(None), *o, *tap)] = x[(part, *i)]  # (n, *o, C) <- shifted input
    return fill_taps, (buffers.zeros if partial else buffers.empty)((most, *outs, *k, c), x.dtype)


def _grouped(x, kernel, strides, dilation, pads, groups, epilogue):
    """Grouped conv (C/groups > 1 channels per group): one batched matmul over groups on a padded copy."""
    r = kernel.ndim - 2
    *k, cg, f = kernel.shape
    n = x.shape[0]
    fg = f // groups
    xg = pad_spatial(x, pads)
    xg = xg.reshape(*xg.shape[:-1], groups, cg)  # (N, *sp, C) -> (N, *sp, G, Cg)
    win = windows(xg, k, strides, dilation)  # (N, *out, G, Cg, *k)
    outs = win.shape[1:r + 1]
    win = np.moveaxis(win, (r + 1, r + 2), (0, -1))  # (G, N, *out, *k, Cg)
    cols = win.reshape(groups, -1, math.prod(k) * cg)  # copy: (G, N*out, k*Cg)
    w = kernel.reshape(*k, cg, groups, fg)  # (*k, Cg, F) -> (*k, Cg, G, F/G)
    w = np.moveaxis(w, r + 1, 0).reshape(groups, -1, fg)  # (G, k*Cg, F/G)
    y = np.matmul(cols, w)  # (G, N*out, k*Cg) @ (G, k*Cg, F/G) -> (G, N*out, F/G)
    y = np.ascontiguousarray(np.moveaxis(y, 0, 1)).reshape(n, *outs, f)  # (N*out, G, F/G) -> (N, *out, F)
    _finish(y, epilogue)
    return y


def convolve_transpose(x: np.ndarray, kernel: np.ndarray, strides, dilation, out_sizes_, pads_before,
                       epilogue: Epilogue = None) -> np.ndarray:
    """Gradient of a conv: x (N, *in, C), kernel (*k, F, C) -> (N, *out_sizes_, F)."""
    r = kernel.ndim - 2
    k = kernel.shape[:r]
    n, sizes, c = x.shape[0], x.shape[1:-1], x.shape[-1]
    spread = tuple((i - 1) * s + 1 for i, s in zip(sizes, strides))
    xd = np.zeros((n, *spread, c), x.dtype)  # (N, (in-1)*s+1, ..., C): input spread out by the strides
    xd[(slice(None),) + tuple(slice(None, None, s) for s in strides)] = x
    pads = []
    for kk, d, o, pb, m in zip(k, dilation, out_sizes_, pads_before, spread):
        before = span(kk, d) - 1 - pb
        pads.append((before, o + span(kk, d) - 1 - before - m))
    w = np.swapaxes(np.flip(kernel, axis=tuple(range(r))), -1, -2)  # (*k, F, C) flipped -> (*k, C, F)
    if any(b < 0 or a < 0 for b, a in pads):  # negative pads crop: do it on the input, then pad the rest
        xd = pad_spatial(xd, [(min(b, 0), min(a, 0)) for b, a in pads])
        pads = [(max(b, 0), max(a, 0)) for b, a in pads]
    return convolve(xd, np.ascontiguousarray(w), (1,) * r, dilation, pads, epilogue=epilogue)
