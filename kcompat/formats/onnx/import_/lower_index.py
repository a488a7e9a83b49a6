"""ONNX ops that select, index or rearrange -> Keras 3 op nodes: Trilu (Triu / Tril), Split (GetItem slices),
Einsum, GatherElements (TakeAlongAxis), GatherND (Reshape + Take), ScatterND / ScatterElements (ScatterUpdate,
element indices made index tuples at import), OneHot, Expand (BroadcastTo), DepthToSpace / SpaceToDepth
(Reshape + Transpose), Shape and Size (Size op nodes: the shape of x as Keras can compute it).
Contract: lowering.py. Reference: onnx/reference/ops/op_*.py.
"""
from __future__ import annotations

import numpy as np

from .builder import Sym
from .lower_logic import as_int_constant, cast
from .lowering import as_const, as_sym, lowering, refuse
from .windows import axis_slice

CORE = "keras.src.ops.core"


def _axis(b, x, axis: int) -> int:
    rank = b.rank(x)
    if not -rank <= axis < rank:
        raise refuse(f"axis={axis} for a rank-{rank} input")
    return axis % rank


@lowering("Trilu")
def Trilu(b, input, k=None, upper=1):
    x = as_sym(b, input)
    if b.rank(x) < 2:
        raise refuse("an input of rank < 2")
    diagonal = 0 if k is None else as_int_constant(k, "k")
    rows, cols = b.shape(x)[-2:]
    whole = (upper and rows is not None and diagonal <= 1 - rows) or \
        (not upper and cols is not None and diagonal >= cols - 1)
    if whole:
        return x  # the whole matrix (TF's band_part refuses such a k: Keras's triu / tril would fail)
    return b.op("Triu" if upper else "Tril", [x], k=diagonal)


@lowering("Split")
def Split(b, input, split=None, axis=0, num_outputs=None):
    x = as_sym(b, input)
    axis = _axis(b, x, axis)
    n = b.shape(x)[axis]
    count = len(b.node.output)
    if split is not None:
        given = split if isinstance(split, (list, tuple)) else as_const(split, "split")  # an attribute before opset 13
        sizes = [int(v) for v in np.reshape(given, -1)]
    elif n is None:
        raise refuse("an even split of an axis of unknown size")
    elif num_outputs is not None:  # opset 18: ceil(n / num_outputs) each, the last smaller
        part = -(-n // int(num_outputs))
        sizes = [min(part, n - i * part) for i in range(int(num_outputs))]
    else:
        sizes = [n // count] * count
    if len(sizes) != count or (n is not None and sum(sizes) != n) or min(sizes, default=0) < 0:
        raise refuse(f"split {sizes} of an axis of {n} into {count} outputs")
    outs, start = [], 0
    for size, name in zip(sizes, b.node.output):
        stop = start + size
        key = axis_slice(axis, start or None, None if n is not None and stop == n else stop)
        outs.append(b.op("GetItem", [x, key], inner=True, suffix=f"split{len(outs)}"))
        start = stop
    return outs


@lowering("Einsum")
def Einsum(b, *Inputs, equation=""):
    if not any(isinstance(v, Sym) for v in Inputs):
        raise refuse("every operand constant")
    return b.op("Einsum", list(Inputs), subscripts=equation.replace(" ", ""))


@lowering("GatherElements")
def GatherElements(b, data, indices, axis=0):
    x = as_sym(b, data, "data")
    axis = _axis(b, x, axis)
    return b.op("TakeAlongAxis", [x, _indices(indices)], axis=axis)


def _indices(indices):
    """Constant indices as int64 (a computed index tensor stays as it is)."""
    return indices.astype(np.int64) if isinstance(indices, np.ndarray) else indices


@lowering("GatherND")
def GatherND(b, data, indices, batch_dims=0):
    """x[idx...] as one Take on x flattened over the indexed axes, with the flat positions computed at import."""
    x = as_sym(b, data, "data")
    idx = as_const(indices, "indices").astype(np.int64)
    shape = b.shape(x)
    k, lead = idx.shape[-1], int(batch_dims)
    dims = shape[:lead + k]
    if None in dims:
        raise refuse("indexed axes of unknown size")
    idx = np.where(idx < 0, idx + np.asarray(dims[lead:]), idx)
    grids = np.indices(idx.shape[:lead]) if lead else []
    coords = [np.broadcast_to(g.reshape(g.shape + (1,) * (idx.ndim - 1 - lead)), idx.shape[:-1]) for g in grids]
    coords += [idx[..., j] for j in range(k)]
    flat = np.ravel_multi_index(coords, dims) if dims else np.zeros(idx.shape[:-1], np.int64)
    rest = [int(d) for d in shape[lead + k:]] if None not in shape[lead + k:] else None
    if rest is None:
        raise refuse("trailing axes of unknown size")
    y = b.op("Reshape", [x], inner=True, suffix="flat", newshape=[int(np.prod(dims, dtype=np.int64)), *rest])
    return b.op("Take", [y, flat.astype(np.int64)], axis=0)


REDUCTIONS = {"none": None, "add": "add", "mul": "mul", "max": "max", "min": "min"}


@lowering("ScatterND")
def ScatterND(b, data, indices, updates, reduction="none"):
    x = as_sym(b, data, "data")
    if reduction not in REDUCTIONS:
        raise refuse(f"reduction={reduction}")
    idx = as_const(indices, "indices").astype(np.int64)
    shape = b.shape(x)
    dims = shape[:idx.shape[-1]]
    if None in dims:
        raise refuse("indexed axes of unknown size")
    idx = np.where(idx < 0, idx + np.asarray(dims, np.int64), idx)
    return _scatter(b, x, idx, updates, shape, REDUCTIONS[reduction])


def _scatter(b, x, tuples: np.ndarray, updates, shape: tuple, reduction) -> Sym:
    """ScatterUpdate with the index tuples as one list (U, depth) and updates (U, ...): Keras's TF "mul" loops over
    the first axis of ``indices`` only, so a nested list would multiply repeated indices once."""
    depth = tuples.shape[-1]
    flat = tuples.reshape(-1, depth)
    rest = list(shape[depth:])
    if isinstance(updates, np.ndarray):
        updates = updates.reshape([flat.shape[0], *rest])
    elif tuples.ndim != 2:
        if None in rest:
            raise refuse("computed updates for slices of unknown size")
        updates = b.op("Reshape", [updates], inner=True, suffix="updates", newshape=[flat.shape[0], *rest])
    return b.op("ScatterUpdate", [x, flat, updates], module=CORE, reduction=reduction)


@lowering("ScatterElements", "Scatter")
def ScatterElements(b, data, indices, updates, axis=0, reduction="none"):
    """Element indices along ``axis`` become full index tuples (the other coordinates are the position)."""
    x = as_sym(b, data, "data")
    if reduction not in REDUCTIONS:
        raise refuse(f"reduction={reduction}")
    idx = as_const(indices, "indices").astype(np.int64)
    axis = _axis(b, x, axis)
    n = b.shape(x)[axis]
    if n is None and (idx < 0).any():
        raise refuse("negative indices on an axis of unknown size")
    idx = np.where(idx < 0, idx + (n or 0), idx)
    grid = list(np.indices(idx.shape))
    grid[axis] = idx
    tuples = np.stack(grid, axis=-1)  # (*indices.shape, rank)
    return _scatter(b, x, tuples, updates, b.shape(x), REDUCTIONS[reduction])


@lowering("OneHot")
def OneHot(b, indices, depth, values, axis=-1):
    x = as_sym(b, indices, "indices")
    rank = b.rank(x)
    n = int(np.asarray(as_const(depth, "depth")).reshape(-1)[0])
    off, on = np.asarray(as_const(values, "values")).reshape(-1)[:2]
    dtype = np.asarray(values).dtype
    if (b.dtype(x) is None or b.dtype(x).kind != "u") and n > 0:  # ONNX counts a negative index from the end
        if b.dtype(x) is not None and b.dtype(x).kind == "f":
            x = cast(b, x, np.int64, inner=True)
        wrapped = b.op("Add", [x, np.asarray(n, b.dtype(x) or np.int64)], inner=True, suffix="wrap")
        x = b.op("Where", [b.op("Less", [x, 0], inner=True, suffix="negative"), wrapped, x], inner=True,
                 suffix="index")
    keras_dtype = "float32" if dtype.kind == "f" else dtype.name
    axis = int(axis) % (rank + 1)
    axis = -1 if axis == rank else axis  # tf.one_hot takes -1, not rank, for a new last axis
    y = b.op("OneHot", [x], module="keras.src.ops.nn", inner=True, num_classes=n, axis=axis, dtype=keras_dtype,
             sparse=False)
    if (off, on) != (0, 1):  # off + (on - off) * one_hot
        y = b.op("Multiply", [y, np.asarray(on - off, dtype)], inner=True, suffix="scale")
        y = b.op("Add", [y, np.asarray(off, dtype)], inner=True, suffix="offset")
    return b.claim(y)


@lowering("Expand")
def Expand(b, input, shape):
    x = as_sym(b, input)
    have = b.shape(x)
    target = [int(v) for v in as_const(shape, "shape").reshape(-1)]
    if have is None or None in have:
        raise refuse("an input of unknown shape")
    out = list(np.broadcast_shapes(tuple(have), tuple(target)))
    if out == list(have):
        return x
    return b.op("BroadcastTo", [x], shape=out)


def _static(b, x, what: str) -> tuple:
    shape = b.shape(x)
    if shape is None or None in shape[1:]:
        raise refuse(f"{what} of an input of unknown shape")
    return shape


@lowering("DepthToSpace")
def DepthToSpace(b, input, blocksize=1, mode="DCR"):
    x = as_sym(b, input)
    n, c, h, w = _static(b, x, "DepthToSpace")
    s = int(blocksize)
    if c % (s * s) or mode not in ("DCR", "CRD"):
        raise refuse(f"{c} channels, blocksize={s}, mode={mode}")
    if mode == "DCR":  # (N, s, s, C', H, W) -> (N, C', H, s, W, s)
        split, perm = [-1, s, s, c // (s * s), h, w], [0, 3, 4, 1, 5, 2]
    else:  # (N, C', s, s, H, W) -> (N, C', H, s, W, s)
        split, perm = [-1, c // (s * s), s, s, h, w], [0, 1, 4, 2, 5, 3]
    y = b.op("Reshape", [x], inner=True, suffix="blocks", newshape=split)
    y = b.op("Transpose", [y], inner=True, suffix="interleave", axes=perm)
    return b.op("Reshape", [y], newshape=[-1, c // (s * s), h * s, w * s])


@lowering("SpaceToDepth")
def SpaceToDepth(b, input, blocksize=1, mode="DCR"):
    x = as_sym(b, input)
    n, c, h, w = _static(b, x, "SpaceToDepth")
    s = int(blocksize)
    if h % s or w % s or mode not in ("DCR", "CRD"):
        raise refuse(f"a {h}x{w} input with blocksize={s}, mode={mode}")
    y = b.op("Reshape", [x], inner=True, suffix="blocks", newshape=[-1, c, h // s, s, w // s, s])
    perm = [0, 3, 5, 1, 2, 4] if mode == "DCR" else [0, 1, 3, 5, 2, 4]  # (N, s, s, C, H', W') / (N, C, s, s, ..)
    y = b.op("Transpose", [y], inner=True, suffix="gather", axes=perm)
    return b.op("Reshape", [y], newshape=[-1, c * s * s, h // s, w // s])


@lowering("Size")
def Size(b, data):
    return b.claim(b.op("Cast", [b.op("Size", [as_sym(b, data)], inner=True)], module=CORE, inner=True,
                        dtype="int64"))


@lowering("Shape")
def Shape(b, data, start=0, end=None):
    """Each size as ``ops.size`` of x's line along that axis (index 0 elsewhere), stacked, int64: the shape
    computed in the model, so it follows a dynamic batch too."""
    x = as_sym(b, data)
    shape = b.shape(x)
    rank = len(shape)
    first, last = slice(start, end).indices(rank)[:2]
    axes = range(first, max(first, last))
    if not axes or 0 in shape:
        raise refuse(f"the shape of a tensor of shape {list(shape)} (start={start}, end={end})")
    sizes = []
    for a in axes:
        line = [0] * a + [_whole()] + [0] * (rank - a - 1)
        sizes.append(b.op("Size", [b.op("GetItem", [x, line], inner=True, suffix=f"axis{a}")], inner=True))
    y = b.op("Stack", [sizes], inner=True, axis=0)
    return b.claim(b.op("Cast", [y], module=CORE, inner=True, dtype="int64"))


def _whole() -> dict:
    return {"class_name": "__slice__", "config": {"start": None, "stop": None, "step": None}}


@lowering("Compress")
def Compress(b, input, condition, axis=None):
    """The slices where the constant condition holds (beyond its end: not kept), as a Take."""
    x = as_sym(b, input)
    keep = np.nonzero(np.asarray(as_const(condition, "condition")).reshape(-1))[0].astype(np.int64)
    if axis is None:
        return b.op("Take", [x, keep], axis=None)
    return b.op("Take", [x, keep], axis=_axis(b, x, axis))


@lowering("ReverseSequence")
def ReverseSequence(b, input, sequence_lens, batch_axis=1, time_axis=0):
    """Each batch entry's first sequence_lens[i] steps reversed: one TakeAlongAxis with the source step of every
    (entry, step), computed at import."""
    x = as_sym(b, input)
    shape = b.shape(x)
    lens = np.asarray(as_const(sequence_lens, "sequence_lens")).reshape(-1).astype(np.int64)
    t_axis, b_axis = _axis(b, x, time_axis), _axis(b, x, batch_axis)
    steps = shape[t_axis]
    if steps is None or shape[b_axis] not in (None, len(lens)):
        raise refuse("a time axis of unknown size")
    t = np.arange(steps)[None, :]  # (1, T)
    source = np.where(t < lens[:, None], lens[:, None] - 1 - t, t)  # (B, T)
    if b_axis > t_axis:
        source = source.T
    view = [1] * len(shape)
    view[b_axis], view[t_axis] = len(lens), steps
    return b.op("TakeAlongAxis", [x, source.reshape(view)], axis=t_axis)


@lowering("CenterCropPad")
def CenterCropPad(b, input_data, shape, axes=None):
    """Each listed axis cropped (a GetItem slice) or zero-padded (a Concatenate with zero blocks) to its target size,
    centred (the odd cell after), as onnx's reference."""
    x = as_sym(b, input_data)
    have = list(b.shape(x))
    rank = len(have)
    where = list(range(rank)) if axes is None else [int(a) % rank for a in axes]
    target = [int(v) for v in as_const(shape, "shape").reshape(-1)]
    y, now = x, list(have)
    for a, size in zip(where, target):
        n = now[a]
        if n is None:
            raise refuse("a crop or pad of an axis of unknown size")
        if size < n:
            lo = (n - size) // 2
            y = b.op("GetItem", [y, axis_slice(a, lo, lo + size)], inner=True, suffix=f"crop{a}")
        elif size > n:
            if None in now:
                raise refuse("zero padding of a tensor of unknown shape")
            lo = (size - n) // 2
            dtype = b.dtype(x) if b.dtype(x) is not None and b.dtype(x).kind != "f" else np.dtype(np.float32)
            blocks = [np.zeros([lo if i == a else d for i, d in enumerate(now)], dtype), y,
                      np.zeros([size - n - lo if i == a else d for i, d in enumerate(now)], dtype)]
            y = b.op("Concatenate", [[v for v in blocks if not isinstance(v, np.ndarray) or v.size]], inner=True,
                     suffix=f"pad{a}", axis=a)
        now[a] = size
    return y if y is x else b.claim(y)


@lowering("TensorScatter")
def TensorScatter(b, past_cache, update, write_indices=None, axis=-2, mode="linear"):
    """The update's steps written into the cache along ``axis`` from each batch entry's write index (circular:
    modulo the cache length): a ScatterUpdate with the index tuples computed at import."""
    x = as_sym(b, past_cache, "past_cache")
    shape = b.shape(x)
    if shape is None or None in shape or mode not in ("linear", "circular"):
        raise refuse(f"a cache of unknown shape, or mode={mode}")
    a = int(axis) % len(shape)
    steps = np.shape(update)[a] if isinstance(update, np.ndarray) else b.shape(update)[a]
    starts = np.zeros(shape[0], np.int64) if write_indices is None else \
        as_const(write_indices, "write_indices").astype(np.int64).reshape(-1)
    grid = np.indices([*shape[:a], steps, *shape[a + 1:]])  # every cell of the update: its cache position
    grid[a] = grid[a] + starts.reshape([-1] + [1] * (len(shape) - 1))
    if mode == "circular":
        grid[a] %= shape[a]
    if (grid[a] >= shape[a]).any():
        raise refuse("writes past the end of the cache")
    return _scatter(b, x, np.stack(list(grid), axis=-1), update, shape, None)
