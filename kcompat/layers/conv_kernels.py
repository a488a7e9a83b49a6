"""Convolution and pooling kernels in NumPy, channels_last, 1 to 3 spatial axes.

References: keras/src/ops/operation_utils.py compute_conv_output_shape,
keras/src/backend/common/backend_utils.py compute_conv_transpose_output_shape (shapes);
keras/src/backend/tensorflow/nn.py (TF 'same' padding puts the odd pixel at the end; pooling
never counts the padding).

- A convolution is one BLAS matmul per batch slice on an im2col matrix: a 1x1 kernel is a plain
  matmul on a reshape (no copy), otherwise each row of taps (k[-1] taps x C channels, contiguous in
  channels_last) is one copy out of the padded input.
- A depthwise convolution and pooling are sums (or maxima) over taps of shifted views, in output
  blocks small enough to stay in cache, on THREADS threads (``over_taps``). Each tap reads only the
  part of the input it reaches (``tap_slices``): the padding is what no tap writes, never a copy.
  A strided depthwise convolution would read every tap with a stride: there one einsum per image
  over the window view is 2-3x faster.
- ``epilogue`` (bias, elementwise activation) runs in place on each output block while it is in cache.
Everything stays in the input's dtype (float32 in, float32 out).
"""
from __future__ import annotations

import itertools
import math
import os
import threading
from typing import Callable, Iterable, Iterator, Optional

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from .. import buffers

Epilogue = Optional[Callable[[np.ndarray], None]]  # in place on an output block (n, *out, F)


# --------------------------------------------------------------- shape arithmetic
def span(k: int, d: int) -> int:
    """Extent of a dilated kernel: (k - 1) * d + 1."""
    return (k - 1) * d + 1


def conv_length(n: int | None, k: int, s: int, d: int, padding: str) -> int | None:
    """Output length of one spatial axis (compute_conv_output_shape)."""
    if n is None:
        return None
    if padding == "valid":
        return (n - span(k, d)) // s + 1
    return (n - 1) // s + 1  # same, causal


def same_pads(n: int, k: int, s: int, d: int) -> tuple[int, int]:
    """TF 'same' padding of one axis: (before, after), the odd pixel after."""
    out = (n - 1) // s + 1
    total = max((out - 1) * s + span(k, d) - n, 0)
    return total // 2, total - total // 2


def conv_pads(sizes, kernel_size, strides, dilation, padding) -> list[tuple[int, int]]:
    """Per-axis (before, after) padding for 'valid', 'same' or 'causal'."""
    if padding == "valid":
        return [(0, 0)] * len(sizes)
    if padding == "causal":
        return [(span(k, d) - 1, 0) for k, d in zip(kernel_size, dilation)]
    return [same_pads(n, k, s, d) for n, k, s, d in zip(sizes, kernel_size, strides, dilation)]


def transpose_length(n: int | None, k: int, s: int, d: int, padding: str, output_padding: int | None) -> int | None:
    """Output length of one axis of a transposed conv (compute_conv_transpose_output_shape)."""
    if n is None:
        return None
    k = span(k, d)
    if padding == "valid":
        extra = max(k, s) - k if output_padding is None else output_padding
        return (n - 1) * s + k + extra
    return n * s if output_padding is None else (n - 1) * s + k % 2 + output_padding


def pad_spatial(x: np.ndarray, pads, value=0) -> np.ndarray:
    """Pad (or, for negative amounts, crop) the spatial axes 1..r of (N, *spatial, C)."""
    if all(b == 0 and a == 0 for b, a in pads):
        return x
    if all(b >= 0 and a >= 0 for b, a in pads):  # into a (reused) buffer: copy the middle, fill the borders
        r = len(pads)
        out = buffers.empty((x.shape[0], *(n + b + a for n, (b, a) in zip(x.shape[1:r + 1], pads)), *x.shape[r + 1:]),
                            x.dtype)
        out[(slice(None), *(slice(b, b + n) for n, (b, _) in zip(x.shape[1:r + 1], pads)))] = x
        for axis, (b, a) in enumerate(pads, start=1):
            lead = (slice(None),) * axis
            out[lead + (slice(0, b),)] = value
            out[lead + (slice(out.shape[axis] - a, None),)] = value
        return out
    grow = [(0, 0)] + [(max(b, 0), max(a, 0)) for b, a in pads] + [(0, 0)] * (x.ndim - 1 - len(pads))
    x = np.pad(x, grow, constant_values=value)
    crop = (slice(None),) + tuple(slice(max(-b, 0), x.shape[i + 1] - max(-a, 0)) for i, (b, a) in enumerate(pads))
    return x[crop]


def windows(x: np.ndarray, kernel_size, strides, dilation) -> np.ndarray:
    """Strided view of every patch of x (N, *spatial, *rest) -> (N, *out, *rest, *kernel_size); no copy."""
    r = len(kernel_size)
    extent = tuple(span(k, d) for k, d in zip(kernel_size, dilation))
    v = sliding_window_view(x, extent, axis=tuple(range(1, r + 1)))  # (N, *full, *rest, *extent)
    pick = ((slice(None),) + tuple(slice(None, None, s) for s in strides) + (Ellipsis,)
            + tuple(slice(None, None, d) for d in dilation))
    return v[pick]


# ---------------------------------------------------------------- tap geometry
def tap_range(n_in: int, n_out: int, t: int, s: int, d: int, before: int) -> tuple[int, int, int]:
    """Outputs [lo, hi) that kernel tap ``t`` of one axis finds inside the input, and the input index of lo.

    Output o reads input o * s + t * d - before; the others read padding (zero).
    """
    offset = t * d - before
    lo = max(0, -(offset // s))
    hi = min(n_out, (n_in - 1 - offset) // s + 1)
    return lo, max(hi, lo), lo * s + offset


def tap_slices(in_sizes, out_sizes, kernel_size, strides, dilation, pads):
    """For every tap (in kernel order): (tap index, output slices, input slices), or None where it reads only padding."""
    axes = [[tap_range(n, o, t, s, d, p[0]) for t in range(k)]
            for n, o, k, s, d, p in zip(in_sizes, out_sizes, kernel_size, strides, dilation, pads)]
    for tap in itertools.product(*(range(k) for k in kernel_size)):
        ranges = [axes[a][t] for a, t in enumerate(tap)]
        if any(hi == lo for lo, hi, _ in ranges):
            yield tap, None, None
            continue
        out = tuple(slice(lo, hi) for lo, hi, _ in ranges)
        inp = tuple(slice(start, start + (hi - lo - 1) * s + 1, s) for (lo, hi, start), s in zip(ranges, strides))
        yield tap, out, inp


def out_sizes(in_sizes, kernel_size, strides, dilation, pads) -> tuple:
    """Spatial output sizes for explicit (before, after) pads."""
    return tuple((n + b + a - span(k, d)) // s + 1
                 for n, k, s, d, (b, a) in zip(in_sizes, kernel_size, strides, dilation, pads))


# ------------------------------------------------------------------ the kernels
IM2COL_BYTES = 16 * 2**20  # the batch is cut so one im2col matrix stays under this
BLOCK_ITEMS = 2**17  # a depthwise / 1x1 output block: about 512 KB of float32, to stay in L2 cache


def _batches(n: int, per_item: int, budget: int):
    """Slices of the batch axis, each about ``budget`` units when one item is ``per_item`` units."""
    step = max(1, budget // max(per_item, 1))
    return [slice(i, min(i + step, n)) for i in range(0, n, step)]


def default_threads() -> int:
    """KCOMPAT_NUM_THREADS, else OMP_NUM_THREADS, else the CPUs this process may run on."""
    for var in ("KCOMPAT_NUM_THREADS", "OMP_NUM_THREADS"):
        value = os.environ.get(var, "").strip()
        if value.isdigit() and int(value) > 0:
            return int(value)
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


THREADS = default_threads()  # threads for the blockwise kernels (depthwise, pooling); BLAS has its own
_POOL: dict = {}  # process id -> (size, ThreadPoolExecutor): a forked child has none of its parent's threads


def in_parallel(run: Callable[[Iterable], None], items: list) -> None:
    """run(items) shared by THREADS threads, this one included: each takes the next item when it is free
    (NumPy releases the GIL inside ufunc loops and copies), so a thread the OS pauses holds up no one."""
    n = min(THREADS, len(items))
    if n <= 1 or threading.current_thread().name.startswith("kcompat"):  # never wait on the pool from inside it
        run(items)
        return
    size, pool = _POOL.get(os.getpid(), (0, None))
    if size < n - 1:
        from concurrent.futures import ThreadPoolExecutor
        _POOL.clear()
        size, pool = _POOL[os.getpid()] = (n - 1, ThreadPoolExecutor(n - 1, thread_name_prefix="kcompat"))
    source, lock = iter(items), threading.Lock()

    def take() -> Iterator:
        while True:
            with lock:
                item = next(source, _END)
            if item is _END:
                return
            yield item
    futures = [pool.submit(run, take()) for _ in range(n - 1)]
    try:
        run(take())
    finally:
        for f in futures:
            f.result()


_END = object()


def _bands(n: int) -> list[tuple[int, int]]:
    """[lo, hi) ranges cutting n rows into about 4 per thread (for in_parallel)."""
    step = max(1, -(-n // (4 * THREADS)))
    return [(i, min(i + step, n)) for i in range(0, n, step)]


def _finish(y: np.ndarray, epilogue: Epilogue) -> None:
    """The epilogue on a contiguous y (..., F): in bands of rows on THREADS threads when y is large."""
    if epilogue is None:
        return
    if y.size < 4 * BLOCK_ITEMS:
        epilogue(y)
        return
    rows = y.reshape(-1, y.shape[-1])  # a view: y is contiguous
    in_parallel(lambda todo: [epilogue(rows[lo:hi]) for lo, hi in todo], _bands(rows.shape[0]))


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
        for i in range(0, rows.shape[0], step):
            np.matmul(rows[i:i + step], w2, out=y2[i:i + step])  # (B, C) @ (C, F) -> (B, F)
            _finish(y2[i:i + step], epilogue)
        return y
    per_item = math.prod(outs) * math.prod(k) * c * x.itemsize
    parts = _batches(n, per_item, IM2COL_BYTES)
    fill, buf = _im2col(x, k, strides, dilation, pads, outs, parts[0].stop - parts[0].start)
    for part in parts:
        cols = buf[:part.stop - part.start]  # (n, *out, *k, C)
        fill(cols, part)
        out = y[part]
        np.matmul(cols.reshape(-1, w2.shape[0]), w2, out=out.reshape(-1, f))  # (n*out, k*C) @ (k*C, F)
        _finish(out, epilogue)
    return y


def _im2col(x, k, strides, dilation, pads, outs, most: int):
    """A buffer for the im2col matrix of up to ``most`` images, (n, *out, *k, C), and fill(cols, batch slice).

    Undilated last axis: in channels_last a row of k[-1] taps x C channels is contiguous, so the input
    is padded once and each row of taps is one copy. Otherwise each tap copies the part of the input it
    reaches; the buffer is reused for every batch slice, so the padding (what no tap writes) stays zero.
    """
    r, c = len(k), x.shape[-1]
    if dilation[-1] == 1:
        xp = pad_spatial(x, pads)  # (N, *padded, C)
        flat = xp.reshape(*xp.shape[:r], -1)  # (N, *padded[:-1], W*C)
        rows = sliding_window_view(flat, k[-1] * c, axis=-1)[..., ::strides[-1] * c, :][..., :outs[-1], :]
        # rows: (N, *padded[:-1], out[-1], k[-1]*C), a view; each outer tap picks its shifted rows
        outer = [(tap, tuple(slice(t * d, t * d + (o - 1) * s + 1, s) for t, d, o, s in zip(tap, dilation, outs, strides)))
                 for tap in itertools.product(*(range(kk) for kk in k[:-1]))]

        def fill(cols, part):
            cols = cols.reshape(*cols.shape[:-2], -1)  # (n, *out, *k[:-1], k[-1]*C), a view

            def band(todo):  # output rows of the first axis: copies release the GIL, so bands run in parallel
                for lo, hi in todo:
                    for tap, sl in outer:
                        cols[(slice(None), slice(lo, hi)) + (slice(None),) * (r - 1) + tap] = \
                            rows[(part, *sl)][:, lo:hi]  # (n, h, *out[1:], k[-1]*C)
            in_parallel(band, _bands(outs[0]))
        return fill, buffers.empty((most, *outs, *k, c), x.dtype)
    taps = [(tap, o, i) for tap, o, i in tap_slices(x.shape[1:r + 1], outs, k, strides, dilation, pads) if o is not None]
    partial = len(taps) < math.prod(k) or any(sl.stop - sl.start < m for _, o, _ in taps for sl, m in zip(o, outs))

    def fill_taps(cols, part):
        for tap, o, i in taps:
            cols[(slice(None), *o, *tap)] = x[(part, *i)]  # (n, *o, C) <- shifted input
    return fill_taps, (buffers.zeros if partial else buffers.empty)((most, *outs, *k, c), x.dtype)


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
        blocks = [(b, slice(0, outs[0])) for b in _batches(n, per_row * outs[0], BLOCK_ITEMS)]
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
    """Each channel with its own filter: x (N, *sp, C), kernel (*k, F) with F = C * M (output c*M+m reads c).

    A sum over taps of ``x[shifted] * kernel[tap]``, block by block (over_taps): each block, its partial
    sums and the input rows it reads stay in cache.
    """
    r = kernel.ndim - 1
    *k, f = kernel.shape
    n, sizes, c = x.shape[0], x.shape[1:r + 1], x.shape[-1]
    if f != c:  # depth_multiplier M > 1: channel c feeds outputs c*M .. c*M+M-1
        x = np.repeat(x, f // c, axis=-1)  # (N, *sp, C) -> (N, *sp, C*M)
    outs = out_sizes(sizes, k, strides, dilation, pads)
    y = buffers.empty((n, *outs, f), np.result_type(x, kernel))  # (N, *out, F)
    if any(st > 1 for st in strides):  # strided reads make shifted taps slow: one einsum per image on windows
        win = windows(pad_spatial(x, pads), k, strides, dilation)  # (N, *out, F, *k): a view
        taps = "ijk"[:r]

        def images(todo):
            for b in todo:
                np.einsum(f"...c{taps},{taps}c->...c", win[b], kernel, out=y[b])  # (*out, F, *k) . (*k, F)
                if epilogue is not None:
                    epilogue(y[b])
        in_parallel(images, list(range(n)))
        return y
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
    return over_taps(x, y, k, strides, dilation, pads, apply, 0, finish)


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
