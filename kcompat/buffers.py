"""Large output buffers reused inside one predict call, instead of fresh memory for every layer.

A fresh array of tens of MB costs the kernel a page fault and a zeroed page per 4 KB (or 2 MB)
touched, every time: malloc hands arrays above 32 MB straight back to the OS when they are freed.
On ResNet50 at batch 16 that was a sixth of predict's CPU time. Inside ``reuse()``, ``empty`` gives
out a buffer again as soon as nothing references it any more (NumPy views hold a reference to the
buffer they view, so a buffer whose only references are this module's is free), and on leaving the
block the pool is let go: an array still in use (predict's outputs) lives on by its own references.
Outside ``reuse()`` (run_all, verify) ``empty`` is ``np.empty``. The pool is per thread.
"""
from __future__ import annotations

import math
import sys
import threading
from contextlib import contextmanager
from typing import Iterator

import numpy as np

MIN_BYTES = 4 * 2**20  # smaller arrays come from malloc's free lists without faults
MAX_BUFFERS = 16  # beyond this many live pooled buffers, arrays are plain np.empty
_LOCAL = threading.local()


@contextmanager
def reuse() -> Iterator[None]:
    """Pool large buffers from ``empty`` until the block ends (nested blocks share the outer pool)."""
    if getattr(_LOCAL, "pool", None) is not None:
        yield
        return
    _LOCAL.pool = []
    try:
        yield
    finally:
        _LOCAL.pool = None


def empty(shape: tuple, dtype) -> np.ndarray:
    """np.empty(shape, dtype), from a free pooled buffer when inside ``reuse()`` and the array is large."""
    dtype = np.dtype(dtype)
    nbytes = math.prod(shape) * dtype.itemsize
    pool = getattr(_LOCAL, "pool", None)
    if pool is None or nbytes < MIN_BYTES:
        return np.empty(shape, dtype)
    best = None
    for buf in pool:  # free = referenced by the pool list, this loop variable and getrefcount's argument only
        if nbytes <= buf.nbytes <= 2 * nbytes and sys.getrefcount(buf) == 3 and (best is None or buf.nbytes < best.nbytes):
            best = buf
    if best is None:
        best = np.empty(nbytes, np.uint8)
        if len(pool) < MAX_BUFFERS:
            pool.append(best)
    return best[:nbytes].view(dtype).reshape(shape)


def zeros(shape: tuple, dtype) -> np.ndarray:
    """np.zeros through ``empty``."""
    out = empty(shape, dtype)
    out.fill(0)
    return out
