"""ONNX shape ops -> Keras reshaping layers and op nodes: Flatten, Reshape, Transpose, Squeeze / Unsqueeze,
Concat, Slice (Cropping or GetItem), Tile (RepeatVector), Pad, Gather, Resize / Upsample (UpSampling).
Contract: lowering.py. Reference: onnx/reference/ops/op_slice.py, op_pad.py, op_resize.py.
"""
from __future__ import annotations



import numpy as np

from ....errors import UnsupportedError
from ..common import INT64_MAX
from .builder import Builder, Sym, sanitize, scope_of
from .lower_resize import resize_axes
from .lowering import CF, Dynamic, as_const, as_sym, axes_arg, lowering, refuse
from .windows import axis_slice, block_pad, copy_pad, zero_pad


@lowering("Flatten")
def Flatten(b, input, axis=1):
    x = as_sym(b, input)
    rank = b.rank(x)
    axis %= max(rank, 1)
    if axis == 1:
        return b.layer("Flatten", {"data_format": "channels_last"}, [x])
    shape = b.shape(x)
    if axis == 0:  # (1, everything)
        return b.op("Reshape", [x], newshape=[1, -1])
    if any(d is None for d in shape[axis:]):
        raise refuse(f"axis={axis}")
    return b.op("Reshape", [x], newshape=[-1, int(np.prod(shape[axis:]))])


@lowering("Reshape")
def Reshape(b, data, shape, allowzero=0):
    x = as_sym(b, data)
    target = _reshape_target(b, x, shape)
    in_shape = b.shape(x)
    if in_shape is None:
        raise refuse("input of unknown shape")
    if not allowzero:
        if any(t == 0 and (i >= len(in_shape) or in_shape[i] is None) for i, t in enumerate(target[1:], 1)):
            raise refuse("0 in the target shape for a dynamic dimension")
        target = [in_shape[i] if t == 0 and i > 0 else t for i, t in enumerate(target)]
    if _keeps_batch(target, in_shape):
        rest = [int(t) for t in target[1:]]
        if len(rest) == 1 and len(in_shape) > 2 and (rest[0] == -1 or rest[0] == _prod(in_shape[1:])):
            return b.layer("Flatten", {"data_format": "channels_last"}, [x])
        return b.layer("Reshape", {"target_shape": rest}, [x])
    if target[0] == 0:
        raise refuse("0 in the target shape for a dynamic dimension")
    return b.op("Reshape", [x], newshape=[int(t) for t in target])


def _prod(dims) -> int | None:
    return None if any(d is None for d in dims) else int(np.prod(dims, dtype=np.int64))


def _keeps_batch(target: list, in_shape: tuple) -> bool:
    """The reshape leaves axis 0 alone (Keras's Reshape layer, which never touches the batch)."""
    first = target[0]
    if first == 0 or (in_shape[0] is not None and first == in_shape[0]):
        return True
    if first == -1 and -1 not in list(target[1:]):
        rest, total = _prod([int(t) for t in target[1:]]), _prod(in_shape[1:])
        return rest is not None and rest == total
    return False


def _reshape_target(b, x: Sym, shape) -> list:
    """A Reshape's target: 0 = keep the input's dim, -1 = infer; shape-computed values resolved."""
    if isinstance(shape, np.ndarray):
        return [int(v) for v in shape.reshape(-1)]
    if not isinstance(shape, Dynamic):
        raise refuse("target shape computed from data")
    v0, v1 = (np.asarray(v).reshape(-1) for v in shape.values)
    s0, s1 = (b.g.concrete_shape(x.onnx, k) for k in (0, 1))
    target = []
    varying = 0
    for i, (a, c) in enumerate(zip(v0, v1)):
        if a == c:
            target.append(int(a))
        elif s0 is not None and i < len(s0) and a == s0[i] and c == s1[i]:
            target.append(0)  # copies the input's dimension i (the batch, typically)
        else:
            target.append(-1)
            varying += 1
    if varying > 1:
        raise refuse("target shape with several computed dimensions")
    return target


@lowering("Transpose")
def Transpose(b, data, perm=None):
    x = as_sym(b, data)
    perm = list(range(b.rank(x)))[::-1] if perm is None else [int(p) for p in perm]
    scope = b.scope()
    readers = [b.g.nodes[i] for i in b.g.consumers.get(b.node.output[0], [])]
    inside = readers and all(scope_of(n.name, b.g.producer_name) == scope for n in readers)
    after = b.scopes.get(sanitize(scope or "")) == scope  # the layer itself is made: its layout change after it
    if scope and (inside or after):
        return b.op("Transpose", [x], axes=perm, suffix="transpose")  # a layout change inside a layer (NHWC conv)
    return b.op("Transpose", [x], axes=perm)


@lowering("Squeeze")
def Squeeze(b, data, axes=None):
    x = as_sym(b, data)
    found = axes_arg(axes) if isinstance(axes, np.ndarray) else axes_arg(None, axes)
    return b.op("Squeeze", [x], axis=None if found is None else (found[0] if len(found) == 1 else found))


@lowering("Unsqueeze")
def Unsqueeze(b, data, axes=None):
    x = as_sym(b, data)
    found = axes_arg(axes) if isinstance(axes, np.ndarray) else axes_arg(None, axes)
    if not found:
        raise refuse("no axes")
    rank = b.rank(x) + len(found)
    y = x
    axes = sorted(v % rank for v in found)
    for i, a in enumerate(axes):
        y = b.op("ExpandDims", [y], axis=a, inner=i < len(axes) - 1)
    return y


@lowering("Concat")
def Concat(b, *inputs, axis=0):
    if len(inputs) == 1:
        return inputs[0]
    ranks = {len(b.shape(v) or ()) or None if isinstance(v, Sym) else None for v in inputs}
    if len(ranks) == 1 and None not in ranks and int(axis) % max(ranks) != 0:  # tensors only, not the batch
        return b.layer("Concatenate", {"axis": int(axis) % ranks.pop()}, [list(inputs)])
    return b.op("Concatenate", [list(inputs)], axis=int(axis))


BIG = 2**31  # |start| or |end| at least this: "to the end" (INT64_MAX / INT64_MIN in exporters' Slices)


WHOLE = {"class_name": "__slice__", "config": {"start": None, "stop": None, "step": None}}


def slice_key(cuts: dict) -> list:
    """A GetItem key (Keras's serialized slices) taking ``cuts[a] = (start, stop, step)`` on axis a."""
    key = []
    for a in range(max(cuts) + 1):
        if a in cuts:
            start, stop, step = cuts[a]
            key.append({"class_name": "__slice__", "config": {"start": start, "stop": stop, "step": step}})
        else:
            key.append(WHOLE)
    return key


def _onnx_slice(start: int, end: int, step: int, n: int | None) -> tuple | None:
    """ONNX's start / end / step on an axis of size n as a Python slice (start, stop, step) with the same
    cells; None when it takes the whole axis. Refuses an empty result and what an unknown n leaves open."""
    if n is not None:  # ONNX clamps: [0, n] for a positive step, [0, n - 1] and [-1, n - 1] for a negative one
        s = start + n if start < 0 else start
        e = end + n if end < 0 else end
        lo, hi = (0, n) if step > 0 else (-1, n - 1)
        s, e = min(max(s, max(lo, 0)), hi), min(max(e, lo), hi)
        if not len(range(s, e, step)):
            raise refuse(f"starts={start}, ends={end}, steps={step} leave nothing of an axis of {n}")
        if step > 0:
            cut = (s or None, None if e == n else e, None if step == 1 else step)
        else:
            cut = (None if s == n - 1 else s, None if e < 0 else e, step)
        return None if cut == (None, None, None) else cut
    if step > 0:  # Python's clamping is ONNX's; only the "to the end" sentinels need translating
        if start >= BIG or end <= -BIG:
            raise refuse(f"starts={start}, ends={end} leave nothing")
        cut = (None if start <= -BIG or start == 0 else start, None if end >= BIG else end,
               None if step == 1 else step)
    else:  # Python's and ONNX's clamping differ for start < -n: refused when n is unknown
        if start <= -BIG or end >= BIG or (start < 0 and start != -1):
            raise refuse(f"starts={start}, ends={end}, steps={step} on an axis of unknown size")
        cut = (None if start >= BIG or start == -1 else start, None if end <= -BIG else end, step)
    return None if cut == (None, None, None) else cut


def _crop_pairs(cuts: dict, shape: tuple) -> dict | None:
    """(before, after) per cut axis when every cut is a step-1 crop; else None."""
    pairs = {}
    for a, (start, stop, step) in cuts.items():
        n = shape[a]
        start = start or 0
        if step not in (None, 1) or start < 0 or (stop is not None and stop >= 0 and n is None):
            return None
        after = 0 if stop is None else (-stop if stop < 0 else n - stop)
        if after < 0:
            return None
        pairs[a] = (start, after)
    return pairs


@lowering("Slice")
def Slice(b, data, starts=None, ends=None, axes=None, steps=None):
    """Cropping1D / 2D / 3D when it crops the spatial axes of NHWC or NCHW; else a GetItem op node."""
    x = as_sym(b, data)
    shape = b.shape(x)
    if shape is None:
        raise refuse("an input of unknown rank")
    rank = len(shape)
    if starts is None or ends is None:
        raise refuse("no starts / ends")
    first = [int(v) for v in np.reshape(as_const(starts, "starts") if not isinstance(starts, list) else starts, -1)]
    last = [int(v) for v in np.reshape(as_const(ends, "ends") if not isinstance(ends, list) else ends, -1)]
    where = list(range(len(first))) if axes is None else \
        [int(v) for v in np.reshape(axes if isinstance(axes, list) else as_const(axes, "axes"), -1)]
    step = [1] * len(first) if steps is None else [int(v) for v in np.reshape(as_const(steps, "steps"), -1)]
    if not len(first) == len(last) == len(where) == len(step) or any(not -rank <= a < rank for a in where):
        raise refuse(f"starts={first}, ends={last}, axes={where}, steps={step} for a rank-{rank} input")
    if 0 in step:
        raise refuse("steps=0")
    cuts = {}
    for a, s, e, k in zip(where, first, last, step):
        if k < 0 and e == INT64_MAX:  # onnxruntime reads it as "through index 0" (the spec: nothing)
            e = -INT64_MAX
        cut = _onnx_slice(s, e, k, shape[a % rank])
        if cut is not None:
            cuts[a % rank] = cut
    if not cuts:
        return x
    if 0 in cuts and shape[0] is None:
        raise refuse("slicing a batch axis of unknown size")
    pairs = _crop_pairs(cuts, shape)
    if pairs is not None and 3 <= rank <= 5:
        for fmt, spatial in (("channels_last", range(1, rank - 1)), ("channels_first", range(2, rank))):
            if set(pairs) <= set(spatial) and (fmt == "channels_last" or rank > 3):  # Cropping1D: axis 1 only
                crop = [list(pairs.get(a, (0, 0))) for a in spatial]
                config = {"cropping": crop[0]} if rank == 3 else {"cropping": crop, "data_format": fmt}
                return b.layer(f"Cropping{rank - 2}D", config, [x])
    return b.op("GetItem", [x, slice_key(cuts)])


@lowering("Tile")
def Tile(b, input, repeats):
    """A Keras Tile op node. (Unsqueeze -> Tile, Keras's RepeatVector, is a pattern: patterns.py.)"""
    x = as_sym(b, input)
    reps = [int(v) for v in np.reshape(as_const(repeats, "repeats"), -1)]
    if len(reps) != b.rank(x) or any(r < 0 for r in reps):
        raise refuse(f"repeats={reps} for a rank-{b.rank(x)} input")
    return x if all(r == 1 for r in reps) else b.op("Tile", [x], repeats=reps)



@lowering("Pad")
def Pad(b, data, pads=None, constant_value=None, axes=None, mode="constant", value=0.0):
    x = as_sym(b, data)
    shape = b.shape(x)
    if shape is None:
        raise refuse("an input of unknown rank")
    rank = len(shape)
    amounts = [int(v) for v in (as_const(pads, "pads").reshape(-1) if isinstance(pads, np.ndarray) or
                                not isinstance(pads, (list, tuple)) else pads)]
    where = list(range(rank)) if axes is None else [int(v) % rank for v in as_const(axes, "axes").reshape(-1)]
    if len(amounts) != 2 * len(where):
        raise refuse(f"pads={amounts} for axes {where}")
    pairs = [(0, 0)] * rank
    for i, a in enumerate(where):
        pairs[a] = (amounts[i], amounts[i + len(where)])
    if pairs[0] != (0, 0) and (shape[0] is None or mode != "constant"):
        raise refuse("padding the batch axis")
    if constant_value is not None:
        value = float(np.asarray(constant_value).reshape(-1)[0]) if np.size(constant_value) else 0.0
    grow = [(max(lo, 0), max(hi, 0)) for lo, hi in pairs]
    cut = [(max(-lo, 0), max(-hi, 0)) for lo, hi in pairs]
    if any(lo or hi for lo, hi in cut):  # negative pads crop
        for a, (lo, hi) in enumerate(cut):
            if lo or hi:
                inner = any(g != (0, 0) for g in grow) or any(lo or hi for lo, hi in cut[a + 1:])
                x = b.op("GetItem", [x, axis_slice(a, lo or None, -hi if hi else None)], suffix="crop" if inner else None,
                         inner=inner)
        shape = tuple(None if n is None else n - lo - hi for n, (lo, hi) in zip(shape, cut))
    if all(g == (0, 0) for g in grow):
        return x
    if mode in ("edge", "reflect", "wrap"):
        return copy_pad(b, x, grow[1:], mode, shape[1:], first_axis=1)
    if mode != "constant":
        raise refuse(f"mode={mode}")
    try:
        return _constant_pad(b, x, grow, shape, value)
    except UnsupportedError:  # axes ZeroPadding does not pad: blocks of the value on each side, if shapes are known
        return block_pad(b, x, grow, shape, value, b.dtype(data))


def _constant_pad(b: Builder, x: Sym, grow: list, shape: tuple, value: float) -> Sym:
    """ZeroPadding of axes 2.. (channels_first) or 1..r-2 (channels_last); other values added as a mask."""
    rank = len(shape)
    padded = {a for a, g in enumerate(grow) if g != (0, 0)}
    if not 3 <= rank <= 5:
        raise refuse(f"constant padding of a rank-{rank} tensor (ZeroPadding takes ranks 3 to 5)")
    if padded <= set(range(2, rank)):
        first = 2
    elif padded <= set(range(1, rank - 1)):
        first = 1
    else:
        raise refuse(f"constant padding of axes {sorted(padded)} of a rank-{rank} tensor (ZeroPadding pads axes "
                     f"2..{rank - 1} or 1..{rank - 2})")
    y = zero_pad(b, x, grow[first:first + rank - 2], first, inner=value != 0)
    if value == 0:
        return y
    sizes = [None if shape[a] is None else shape[a] + lo + hi for a, (lo, hi) in enumerate(grow)]
    if any(sizes[a] is None for a in padded):
        raise refuse(f"constant_value={value} on a dynamic axis")
    inside = np.ones([1] * rank, bool)
    for a in padded:
        lo, hi = grow[a]
        line = np.zeros(sizes[a], bool)
        line[lo:sizes[a] - hi] = True
        inside = inside & line.reshape([sizes[a] if i == a else 1 for i in range(rank)])
    mask = np.where(inside, np.float32(0), np.float32(value))  # (1, .., padded sizes, ..): value outside x
    return b.op("Add", [mask, y])  # constant first: see windows.conv_layer


@lowering("Gather")
def Gather(b, data, indices, axis=0):
    if isinstance(data, np.ndarray) and isinstance(indices, Sym):  # a lookup table: Embedding
        if data.ndim != 2 or axis % 2 != 0:
            raise refuse(f"a table of shape {list(data.shape)} gathered on axis {axis} (Embedding takes 2-D, axis 0)")
        return b.layer("Embedding", {"input_dim": int(data.shape[0]), "output_dim": int(data.shape[1]),
                                     "mask_zero": False}, [indices], [np.ascontiguousarray(data)])
    x = as_sym(b, data, "data")
    rank = b.rank(x)
    axis %= rank
    n = b.shape(x)[axis]
    if not isinstance(indices, np.ndarray):  # computed indices: Keras's take
        return b.op("Take", [x, indices], axis=axis)
    idx = indices
    flat = [int(v) + (n if v < 0 and n is not None else 0) for v in idx.reshape(-1)]
    if idx.ndim == 0:
        return b.op("GetItem", [x, axis_slice(axis)[:-1] + [flat[0]]])  # x[:, .., i]: the axis goes
    steps = {q - p for p, q in zip(flat, flat[1:])}
    if idx.ndim != 1 or len(steps) > 1 or 0 in steps or any(v < 0 for v in flat):  # any other list: Keras's take
        return b.op("Take", [x, np.asarray(flat, np.int64).reshape(idx.shape)], axis=axis)
    step = steps.pop() if steps else 1
    stop = flat[-1] + (1 if step > 0 else -1)
    return b.op("GetItem", [x, axis_slice(axis, flat[0], None if stop < 0 else stop, step)])


def _nearest_source(out: int, n: int, s: int, coords: str, rounding: str) -> np.ndarray | None:
    """The input index each output cell of ONNX nearest Resize reads (onnx/reference/ops/op_resize.py)."""
    x = np.arange(out, dtype=np.float64)
    source = {"asymmetric": x / s, "half_pixel": (x + 0.5) / s - 0.5, "tf_half_pixel_for_nn": (x + 0.5) / s,
              "pytorch_half_pixel": (x + 0.5) / s - 0.5 if out > 1 else np.zeros(out)}.get(coords)
    pick = {"floor": np.floor, "ceil": np.ceil, "round_prefer_floor": lambda v: np.ceil(v - 0.5),
            "round_prefer_ceil": lambda v: np.floor(v + 0.5)}.get(rounding)
    if source is None or pick is None:
        return None
    return np.clip(pick(source), 0, n - 1).astype(np.int64)


@lowering("Resize", "Upsample")
def Resize(b, X, *inputs, scales=None, mode="nearest", coordinate_transformation_mode="half_pixel",
           nearest_mode="round_prefer_floor", cubic_coeff_a=-0.75, exclude_outside=0, extrapolation_value=0.0,
           antialias=0, axes=None, keep_aspect_ratio_policy="stretch"):
    x = as_sym(b, X)
    shape = b.shape(x)
    rank = len(shape or ())
    if b.node.op_type == "Upsample" or b.g.opset < 11:  # Upsample / Resize-10: (X, scales); scales attr before 9
        coords, rounding = "asymmetric", "floor"
        factors, sizes = (inputs[0] if inputs else scales), None
    else:
        coords, rounding = coordinate_transformation_mode, nearest_mode
        factors, sizes = (list(inputs) + [None] * 3)[1:3]
    where = list(range(rank)) if axes is None else [int(a) % rank for a in axes]
    if factors is not None and np.size(factors):
        factors = np.asarray(factors) if isinstance(factors, (list, tuple)) else as_const(factors, "scales")
        scale = {a: float(f) for a, f in zip(where, factors.reshape(-1))}
    elif keep_aspect_ratio_policy != "stretch":
        raise refuse(f"keep_aspect_ratio_policy={keep_aspect_ratio_policy}")
    elif isinstance(sizes, Dynamic):  # torch.onnx: Concat(Shape(x)[:2], [h, w]); the same ratios at both probes
        ratios = [np.asarray(v, np.float64).reshape(-1) / np.asarray(b.g.concrete_shape(x.onnx, k))[where]
                  for k, v in enumerate(sizes.values)]
        if not np.array_equal(*ratios):
            raise refuse("sizes that do not scale the input by constant factors")
        scale = dict(zip(where, ratios[0].tolist()))
    elif sizes is not None:
        if any(shape[a] is None for a in where):
            raise refuse("sizes on a dynamic axis")
        scale = {a: int(t) / shape[a] for a, t in zip(where, as_const(sizes, "sizes").reshape(-1))}
    else:
        raise refuse("no scales and no sizes")
    factor = [scale.get(a, 1.0) for a in range(rank)]
    if all(f == 1.0 for f in factor) and coords != "tf_crop_and_resize":  # same cells, whatever the mode
        return x
    try:
        return _upsampling(b, x, shape, factor, mode, coords, rounding, antialias, cubic_coeff_a)
    except UnsupportedError:
        pass  # no UpSampling layer says it: ONNX's interpolation per axis (lower_resize.py)
    roi = inputs[0] if b.node.op_type == "Resize" and b.g.opset >= 11 and inputs and inputs[0] is not None else None
    roi = None if roi is None or not np.size(roi) else as_const(roi, "roi").reshape(-1)
    if roi is not None and axes is not None:  # roi per listed axis: starts then ends
        full = [0.0] * rank + [1.0] * rank
        for i, a in enumerate(where):
            full[a], full[a + rank] = roi[i], roi[i + len(where)]
        roi = np.asarray(full)
    given_sizes = isinstance(sizes, np.ndarray) and sizes.size and not (factors is not None and np.size(factors))
    attrs = {"mode": mode, "coordinate_transformation_mode": coords, "nearest_mode": rounding,
             "cubic_coeff_a": float(cubic_coeff_a), "exclude_outside": int(exclude_outside),
             "extrapolation_value": float(extrapolation_value), "antialias": int(antialias)}
    if given_sizes:
        return resize_axes(b, x, shape, {}, {a: int(t) for a, t in zip(where, sizes.reshape(-1))}, roi, attrs)
    return resize_axes(b, x, shape, {a: f for a, f in scale.items() if f != 1.0 or coords == "tf_crop_and_resize"},
                       {}, roi, attrs)


def _upsampling(b, x: Sym, shape: tuple, factor: list, mode: str, coords: str, rounding: str, antialias: int,
                cubic_coeff_a: float) -> Sym:
    """The UpSampling1D / 2D / 3D layer that is this Resize (whole factors on the spatial axes), else refused."""
    rank = len(shape)
    fmt, axes = _upsampled_axes(factor, rank)
    r = len(axes)
    size = [int(factor[a]) for a in axes]
    if mode == "nearest":
        for a, s in zip(axes, size):
            n = shape[a] or 7  # integer factors: the pattern does not depend on the size
            src = _nearest_source(n * s, n, s, coords, rounding)
            if src is None or not np.array_equal(src, np.arange(n * s) // s):
                raise refuse(f"mode=nearest with {coords} / {rounding} (not a plain repeat)")
        if r == 1 and fmt == CF:  # UpSampling1D repeats axis 1 only: (N, C, W) -> (N, W, C) and back
            y = b.layer("Permute", {"dims": [2, 1]}, [x], inner=True, suffix="to_last")
            y = b.layer("UpSampling1D", {"size": size[0]}, [y], inner=True)
            return b.layer("Permute", {"dims": [2, 1]}, [y], suffix="to_first")
        if r == 1:
            return b.layer("UpSampling1D", {"size": size[0]}, [x])
        nearest = {"interpolation": "nearest"} if r == 2 else {}  # UpSampling3D has no interpolation option
        return b.layer(f"UpSampling{r}D", {"size": size, "data_format": fmt, **nearest}, [x])
    if mode == "linear" and r == 2 and coords in ("half_pixel", "pytorch_half_pixel") and not antialias:
        return b.layer("UpSampling2D", {"size": size, "data_format": fmt, "interpolation": "bilinear"}, [x])
    if mode == "linear":
        raise refuse(f"mode=linear with {coords} coordinates on {r} spatial axes (Keras's bilinear is TF's 2-D "
                     f"half-pixel resize)")
    raise refuse(f"mode={mode} (Keras's bicubic is TF's, with a = -0.5 and its own table; ONNX's a = {cubic_coeff_a})")


def _upsampled_axes(factor: list, rank: int) -> tuple[str, list[int]]:
    """(data_format, spatial axes) of a Resize that repeats the spatial axes of (N, C, ...) or (N, ..., C)
    by whole factors: NCHW as kcompat imports it, or NHWC (kcompat's own UpSampling export)."""
    whole = all(f >= 1 and f == int(f) for f in factor)
    if 3 <= rank <= 5 and whole and factor[0] == 1:
        if factor[1] == 1:
            return CF, list(range(2, rank))
        if factor[-1] == 1:
            return "channels_last", list(range(1, rank - 1))
    raise refuse(f"scales {factor} (UpSampling1D / 2D / 3D repeat the spatial axes of (N, C, ...) or (N, ..., C) "
                 f"by whole factors)")
