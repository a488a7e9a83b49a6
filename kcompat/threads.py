"""Threads for the NumPy kernels and for predict's batch parts, and the BLAS library's own thread count.

- ``in_parallel(run, items)``: THREADS threads (this one included) share a list of work items, each
  taking the next one when it is free (NumPy releases the GIL inside ufunc loops, copies and matmul),
  so a thread the OS pauses holds up no one. Inside ``serial()`` (a worker that already has its own
  share of the work, e.g. one part of the batch) it runs everything on the calling thread.
- ``blas_threads(1)``: numpy's OpenBLAS on one thread for the duration of the block, so that two
  Python threads can each run their own matmuls (OpenBLAS's pool serves one caller at a time: two
  callers on a two-thread pool run several times slower than one). Found through ctypes in the
  library numpy already loaded (OpenBLAS's documented ``openblas_set_num_threads``, or the
  ``scipy_openblas`` spelling of numpy's wheels); the setting is process-wide and restored on exit.
  Where it is not found (MKL, Accelerate), ``blas_threads`` says so and changes nothing.

Reference: threadpoolctl (the same OpenBLAS entry points), OpenBLAS's cblas.h.
"""
from __future__ import annotations

import ctypes
import glob
import os
import threading
from contextlib import contextmanager
from typing import Callable, Iterable, Iterator

_LOCAL = threading.local()  # .serial: this thread runs in_parallel's items itself


def default_threads() -> int:
    """KCOMPAT_NUM_THREADS, else OMP_NUM_THREADS, else the CPUs this process may run on."""
    for var in ("KCOMPAT_NUM_THREADS", "OMP_NUM_THREADS"):
        value = os.environ.get(var, "").strip()
        if value.isdigit() and int(value) > 0:
            return int(value)
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


THREADS = default_threads()  # threads for the blockwise kernels and predict's batch parts; BLAS has its own
_POOL: dict = {}  # process id -> (size, ThreadPoolExecutor): a forked child has none of its parent's threads
_END = object()


@contextmanager
def serial() -> Iterator[None]:
    """In this block, ``in_parallel`` on this thread runs its items here, one after the other."""
    before = getattr(_LOCAL, "serial", False)
    _LOCAL.serial = True
    try:
        yield
    finally:
        _LOCAL.serial = before


def in_parallel(run: Callable[[Iterable], None], items: list) -> None:
    """run(items) shared by THREADS threads, this one included: each takes the next item when it is free."""
    n = min(THREADS, len(items))
    if n <= 1 or getattr(_LOCAL, "serial", False):
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

    def worker() -> None:  # a pool thread never waits on the pool (its nested in_parallel runs here)
        with serial():
            run(take())
    futures = [pool.submit(worker) for _ in range(n - 1)]
    try:
        run(take())
    finally:
        for f in futures:
            f.result()


def in_parallel_blas(run: Callable[[Iterable], None], items: list) -> None:
    """``in_parallel`` for work items that call BLAS: on threads only with OpenBLAS on one thread meanwhile
    (two callers of a multi-threaded OpenBLAS wait for each other); otherwise in turn on this thread."""
    if min(THREADS, len(items)) <= 1 or getattr(_LOCAL, "serial", False):
        run(items)
        return
    with blas_threads(1) as pinned:
        if pinned:
            in_parallel(run, items)
        else:
            run(items)


def bands(n: int) -> list[tuple[int, int]]:
    """[lo, hi) ranges cutting n rows into about 4 per thread (work items for in_parallel)."""
    step = max(1, -(-n // (4 * THREADS)))
    return [(i, min(i + step, n)) for i in range(0, n, step)]


# ------------------------------------------------------------------ BLAS threads
_BLAS: list = []  # [(get, set) or None], found once


def _openblas() -> tuple | None:
    """(get_num_threads, set_num_threads) of the OpenBLAS numpy uses, or None."""
    if _BLAS:
        return _BLAS[0]
    found = None
    try:
        import numpy as np
        here = os.path.dirname(os.path.dirname(np.__file__))
        paths = []
        if os.path.exists("/proc/self/maps"):  # Linux: the libraries this process has loaded
            with open("/proc/self/maps") as maps:
                paths = sorted({line.split(None, 5)[-1].strip() for line in maps if "openblas" in line.lower()})
        paths += glob.glob(os.path.join(here, "numpy.libs", "*openblas*")) + glob.glob(
            os.path.join(here, "numpy", ".dylibs", "*openblas*"))
        for path in paths:
            if not os.path.isfile(path):
                continue
            lib = ctypes.CDLL(path)  # already loaded by numpy: the same library, not a second copy
            for prefix, suffix in (("scipy_openblas", "64_"), ("scipy_openblas", "_"), ("openblas", "64_"),
                                   ("openblas", "")):
                get = getattr(lib, f"{prefix}_get_num_threads{suffix}", None)
                put = getattr(lib, f"{prefix}_set_num_threads{suffix}", None)
                if get is not None and put is not None:
                    get.restype, put.restype, put.argtypes = ctypes.c_int, None, [ctypes.c_int]
                    found = (get, put)
                    break
            if found:
                break
    except (OSError, AttributeError, ImportError):
        found = None
    _BLAS.append(found)
    return found


def blas_thread_count() -> int | None:
    """OpenBLAS's current thread count, or None when kcompat cannot see the BLAS library."""
    lib = _openblas()
    return None if lib is None else int(lib[0]())


@contextmanager
def blas_threads(n: int) -> Iterator[bool]:
    """OpenBLAS on ``n`` threads inside the block (process-wide), restored after; yields False when unknown."""
    lib = _openblas()
    if lib is None:
        yield False
        return
    before = int(lib[0]())
    if before != n:
        lib[1](n)
    try:
        yield True
    finally:
        if before != n:
            lib[1](before)
