"""Convolution geometry, channels_last, 1 to 3 spatial axes: output sizes, padding, windows, and which
part of the input each kernel tap reads.

References: keras/src/ops/operation_utils.py compute_conv_output_shape,
keras/src/backend/common/backend_utils.py compute_conv_transpose_output_shape (shapes);
keras/src/backend/tensorflow/nn.py (TF 'same' padding puts the odd pixel at the end).
"""
from __future__ import annotations

import itertools

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from .. import buffers


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
