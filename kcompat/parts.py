"""Predict in parts of the batch: the whole plan runs on a few samples at a time, the parts on threads.

Why, on a CNN at batch 16:

- cache: a MobileNetV2 layer output is 77 MB at batch 16, so every layer streams its input and output
  through main memory; on one or two samples it is 5-10 MB, and the next layer finds it in cache;
- threads: with T threads, T workers each run whole parts (kernels and OpenBLAS on one thread each,
  ``threads.serial`` / ``threads.blas_threads(1)``) instead of every layer splitting its work T ways
  and waiting for the slowest share: no synchronisation per layer, no OpenBLAS threads spinning while
  they wait, and a worker that the OS pauses delays only its own part.

The tail of the plan whose outputs are all small per sample (a classifier's pooling and Dense: under
TAIL_BYTES each) runs once on the whole joined batch after the parts, so its weights are read once,
not once per part (MobileNetV2's last Dense reads 5 MB of weights to make 4 KB per sample).

Only where it computes the same thing: every call node is ``samples_apart`` (each sample's output from
that sample alone, the batch on axis 0), every model input has the same batch size on axis 0, and
each output of a part has the part's length. Anything else runs the whole batch at once, as before.
The per-sample results are the same up to float32 rounding (a matmul of fewer rows may add in another
order); ``run_all`` (what verify compares) never uses parts.
"""
from __future__ import annotations

import math
from contextlib import nullcontext
from typing import Any

import numpy as np

from . import buffers, threads

PART_BYTES = 16 * 2**20  # the largest layer output of a part stays under this (L3 cache: 32 MB here, shared)
TAIL_BYTES = 64 * 2**10  # from the first node after which every output is under this per sample: once, whole batch

NodeKey = tuple  # (layer name, node index)


def sample_bytes(model: Any) -> int | None:
    """The largest call-node output of one sample, in bytes (float32), or None when a size is unknown."""
    most = 0
    for shape in model.shapes.values():
        for s in (shape if isinstance(shape, list) else [shape]):
            if not isinstance(s, tuple) or not s or any(d is None for d in s[1:]):
                return None
            most = max(most, math.prod(s[1:]) * 4)
    return most


def splittable(model: Any) -> bool:
    """True when every call node computes each sample on its own (so the batch may run in parts) and every
    input takes any batch size (an imported ONNX graph may fix it)."""
    for ref in model.spec.inputs:
        shape = model.shapes[(ref.layer, ref.node)]
        if not isinstance(shape, tuple) or not shape or shape[0] is not None:
            return False
    for name, node in model.order:
        if not model.layers[name].samples_apart(model.input_shape_of(name, node)):
            return False
    return True


def tail_start(model: Any) -> int:
    """The first step of ``model.order`` from which every node's output is under TAIL_BYTES per sample (the
    tail, run once on the whole batch); ``len(order)`` when the last node's is not, or masks are made."""
    order = model.order
    start = len(order)
    if model.uses_masks:
        return start
    for step in range(len(order) - 1, -1, -1):
        shape = model.shapes[order[step]]
        for s in (shape if isinstance(shape, list) else [shape]):
            if not isinstance(s, tuple) or not s or any(d is None for d in s[1:]) or math.prod(s[1:]) * 4 > TAIL_BYTES:
                return start
        start = step
    return start


def part_slices(n: int, per_sample: int | None, workers: int) -> list[slice]:
    """Cut a batch of n into parts: each under PART_BYTES of layer output, at least ``workers`` of them, even sizes.

    Where a few more parts make them all the same size and every worker the same number of them (16 as
    8 x 2, not 3 + 2 + 3 + 3 + 2 + 3), they are cut so: unequal parts leave a worker idle at the end.
    """
    size = n if per_sample is None else max(1, PART_BYTES // max(per_sample, 1))
    count = max(-(-n // size), min(n, workers))
    if workers > 1 and count % workers and count < n:  # every worker the same number of parts, when n allows
        count = min(n, count + workers - count % workers)
    count = next((c for c in range(count, min(n, 2 * count - 1) + 1) if n % c == 0 and c % max(workers, 1) == 0),
                 count)
    edges = np.linspace(0, n, count + 1).round().astype(int)
    return [slice(int(a), int(b)) for a, b in zip(edges[:-1], edges[1:]) if b > a]


def run_in_parts(model: Any, arrays: list[np.ndarray], keep: set[NodeKey]) -> dict[NodeKey, Any] | None:
    """The ``keep`` nodes' outputs on the whole batch, computed part by part; None when parts do not apply."""
    n = arrays[0].shape[0] if arrays and all(a.ndim for a in arrays) else 0
    if n < 2 or any(a.shape[0] != n for a in arrays) or not splittable(model):
        return None
    with threads.blas_threads(1) if threads.THREADS > 1 else nullcontext(False) as pinned:
        workers = threads.THREADS if pinned else 1  # BLAS unknown: parts in turn, each layer on every thread
        parts = part_slices(n, sample_bytes(model), workers)
        if len(parts) < 2:
            return None
        results: list = [None] * len(parts)
        fed = {(r.layer, r.node): a for r, a in zip(model.spec.inputs, arrays)}
        stop = tail_start(model)
        if all(key in fed for key in model.order[:stop]):
            stop = len(model.order)  # all of it small: parts as before, no tail
        inner = _crossing(model, stop) | keep  # what the parts hand over: the tail's inputs, outputs before it

        def run(todo) -> None:
            with buffers.reuse(), threads.serial() if workers > 1 else nullcontext():
                for i in todo:
                    values = model.run_all([a[parts[i]] for a in arrays], keep=inner, stop=stop)
                    results[i] = {key: values[key] for key in inner if key in values}
        if workers > 1:
            threads.in_parallel(run, list(range(len(parts))))
        else:
            run(range(len(parts)))
    values = dict(fed)
    for key in (k for k in results[0] if k not in fed):
        pieces = [r[key] for r in results]
        several = isinstance(pieces[0], (list, tuple))
        joined = [_join([p[i] for p in pieces], parts) for i in range(len(pieces[0]))] if several else [_join(pieces, parts)]
        if any(j is None for j in joined):
            return None  # an output without the batch on axis 0: not something parts can rebuild
        values[key] = joined if several else joined[0]
    model.run_steps(values, stop, keep=keep)  # the tail: once, on the whole batch
    return {key: values[key] for key in keep}


def _crossing(model: Any, stop: int) -> set[NodeKey]:
    """The nodes before ``order[stop]`` that a node from there on reads."""
    before = set(model.order[:stop])
    return {dep for key in model.order[stop:] for dep in model.node_deps(key) if dep in before}


def _join(pieces: list, parts: list[slice]) -> np.ndarray | None:
    """The parts' outputs, concatenated on axis 0; None unless each holds exactly its part's samples."""
    if not all(isinstance(p, np.ndarray) and p.ndim and p.shape[0] == s.stop - s.start for p, s in zip(pieces, parts)):
        return None
    return np.concatenate(pieces, axis=0)
