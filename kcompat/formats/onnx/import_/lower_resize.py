"""ONNX Resize that no UpSampling layer says, as Keras 3 op nodes: any mode, coordinate transformation, scale or
size on axes of known size.

ONNX defines Resize as separable: one 1-D interpolation per axis (onnx/reference/ops/op_resize.py,
``_interpolate_nd``). Along an axis of n cells that is a fixed linear map, an (out, n) matrix M plus, for
tf_crop_and_resize's extrapolation, a constant c: y = M x + c. kcompat computes M and c at import by running
ONNX's own Resize (onnx.reference) on the identity and on zeros, so every mode is ONNX's exactly. nearest
(rows of M one-hot) becomes a Take of the source indices per axis; linear and cubic one Einsum of x with the
axes' matrices (and an Add of c per axis where it is not 0).
"""
from __future__ import annotations

import string

import numpy as np

from .builder import Sym
from .lowering import refuse

MAX_CELLS = 1 << 20  # per axis matrix: a constant in the Keras config


def _axis_map(n: int, attrs: dict, scale: float | None, size: int | None, roi: tuple | None) -> tuple:
    """(M, c) of ONNX's Resize along one axis of ``n`` cells."""
    from onnx import helper
    from onnx.reference import ReferenceEvaluator
    names = ["X", "roi" if roi is not None else "", "scales" if scale is not None else "",
             "sizes" if size is not None else ""]
    while not names[-1]:
        names.pop()
    node = helper.make_node("Resize", names, ["Y"], axes=[0], **attrs)
    feeds = {}
    if roi is not None:
        feeds["roi"] = np.asarray(roi, np.float32)
    if scale is not None:
        feeds["scales"] = np.asarray([scale], np.float32)
    if size is not None:
        feeds["sizes"] = np.asarray([size], np.int64)
    run = ReferenceEvaluator(node, opsets={"": 21})
    with np.errstate(all="ignore"):
        ones = run.run(None, {"X": np.eye(n), **feeds})[0]  # (out, n): M + c
        c = run.run(None, {"X": np.zeros((n, n)), **feeds})[0][:, 0]  # (out,)
    return ones - c[:, None], c


def resize_axes(b, x: Sym, shape: tuple, scales: dict, sizes: dict, roi, attrs: dict) -> Sym:
    """x resized along the axes in ``scales`` or ``sizes`` (axis -> value), as ONNX's Resize with ``attrs``."""
    r = len(shape)
    plan = []
    for a in sorted(set(scales) | set(sizes)):
        n = shape[a]
        if n is None:
            raise refuse("resizing an axis of unknown size")
        box = None if roi is None else (float(roi[a]), float(roi[a + r]))
        m, c = _axis_map(n, attrs, scales.get(a), sizes.get(a), box)
        if m.size > MAX_CELLS:
            raise refuse(f"an axis of {n} resized to {m.shape[0]} (more than {MAX_CELLS} interpolation weights)")
        if m.shape == (n, n) and np.array_equal(m, np.eye(n)) and not c.any():
            continue
        plan.append((a, m, c))
    if not plan:
        return x
    one_hot = all(not c.any() and np.all((m == 0) | (m == 1)) and np.all(m.sum(axis=1) == 1) for _, m, c in plan)
    if attrs.get("mode") == "nearest" and one_hot:  # a source cell per output cell: Take along each axis
        y = x
        for a, m, _ in plan:
            y = b.op("Take", [y, m.argmax(axis=1).astype(np.int64)], inner=True, suffix=f"axis{a}", axis=a)
        return b.claim(y)
    dtype = b.dtype(x)
    if dtype is not None and dtype.kind != "f":
        raise refuse(f"mode={attrs.get('mode')} on {dtype} (ONNX rounds and saturates the interpolated integers)")
    letters, fresh = string.ascii_lowercase[:r], string.ascii_lowercase[13:13 + r]  # lowercase only (Keras's TF
    if not any(c.any() for _, _, c in plan):  # einsum misreads capitals): x and each axis's (out, in) matrix
        out = list(letters)
        terms = [letters]
        for a, _, _ in plan:
            out[a] = fresh[a]
            terms.append(fresh[a] + letters[a])
        subscripts = ",".join(terms) + "->" + "".join(out)
        return b.claim(b.op("Einsum", [x] + [m.astype(np.float32) for _, m, _ in plan], inner=True,
                            subscripts=subscripts))
    y = x
    for a, m, c in plan:  # y = M y + c along each axis in turn (extrapolated cells take c)
        out = letters[:a] + fresh[a] + letters[a + 1:]
        y = b.op("Einsum", [y, m.astype(np.float32)], inner=True, suffix=f"axis{a}",
                 subscripts=f"{letters},{fresh[a]}{letters[a]}->{out}")
        if c.any():
            y = b.op("Add", [y, c.astype(np.float32).reshape([-1 if i == a else 1 for i in range(r)])], inner=True,
                     suffix=f"extrapolate{a}")
    return b.claim(y)
