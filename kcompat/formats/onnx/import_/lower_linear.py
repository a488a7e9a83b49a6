"""ONNX ops that are linear in their data input once every other input is a constant -> one Keras Einsum / Matmul.

DFT (of a computed signal: the DFT matrix of the axis), GridSample (of a computed image on a constant grid:
each output cell a fixed mix of input cells), AffineGrid (of a computed theta: the base grid), and ops that
map each batch entry alike (Col2Im, STFT, DeformConv with constant offsets: a matrix over the sample). The map is
read off ONNX's own reference (onnx.reference) run on a basis, so every mode, padding and normalisation is
ONNX's exactly; the Einsum's constant is capped in size. Contract: lowering.py.
"""
from __future__ import annotations

import string

import numpy as np

from .graph import evaluate_node
from .builder import float64
from .lower_logic import CORE, as_int_constant
from .lowering import as_const, as_sym, lowering, refuse

MAX_WEIGHTS = 1 << 22  # entries of the constant an Einsum carries


def _run(op: str, inputs: list, opset: int, **attrs) -> np.ndarray:
    """ONNX's reference for one ``op`` node on ``inputs`` (None: an omitted optional input)."""
    from onnx import helper
    names = [f"in{i}" if v is not None else "" for i, v in enumerate(inputs)]
    node = helper.make_node(op, names, ["out"], **attrs)
    with np.errstate(all="ignore"):
        return np.asarray(evaluate_node(node, inputs, opset)[0])


def _check(weights: np.ndarray) -> np.ndarray:
    if weights.size > MAX_WEIGHTS:
        raise refuse(f"a linear map of {weights.size} weights (more than {MAX_WEIGHTS})")
    return weights.astype(np.float32)


@lowering("DFT")
def DFT(b, input, dft_length=None, axis=None, inverse=0, onesided=0):
    """y[.., k, o] = sum over (j, i) of W[k, o, j, i] x[.., j, .., i] along ``axis`` (i: real / imaginary)."""
    x = as_sym(b, input)
    shape = b.shape(x)
    r = len(shape or ())
    new = b.g.opset >= 20  # axis: an input from opset 20 (default -2), an attribute before (default 1)
    where = (as_int_constant(axis, "axis") if new else int(axis)) if axis is not None else (-2 if new else 1)
    where %= max(r, 1)
    if r < 2 or where in (0, r - 1) or shape[where] is None or shape[-1] not in (1, 2):
        raise refuse(f"a DFT along axis {where} of shape {None if shape is None else list(shape)}")
    n, c = shape[where], shape[-1]
    basis = np.eye(n * c, dtype=np.float32).reshape(n * c, n, c)  # one input cell per batch entry
    length = None if dft_length is None else np.asarray(as_const(dft_length, "dft_length"), np.int64)
    inputs = [basis, length] + ([np.asarray(1, np.int64)] if new else [])
    attrs = {"inverse": int(inverse), "onesided": int(onesided)} | ({} if new else {"axis": 1})
    out = _run("DFT", inputs, b.g.opset, **attrs)  # (n * c, n_out, c_out)
    weights = out.reshape(n, c, *out.shape[1:]).transpose(2, 3, 0, 1)  # (n_out, c_out, n, c)
    if weights.size > MAX_WEIGHTS:
        raise refuse(f"a DFT of {weights.size} weights (more than {MAX_WEIGHTS})")
    letters = string.ascii_lowercase[:r]
    k, o = "yz"
    result = letters[:where] + k + letters[where + 1:-1] + o
    wide = b.op("Cast", [x], module=CORE, inner=True, suffix="float64", dtype="float64")  # as np.fft: in float64
    y = b.op("Einsum", [wide, float64(weights)], inner=True,
             subscripts=f"{letters},{k}{o}{letters[where]}{letters[-1]}->{result}")
    return b.claim(b.op("Cast", [y], module=CORE, inner=True, dtype="float32"))


@lowering("GridSample")
def GridSample(b, X, grid, align_corners=0, mode="linear", padding_mode="zeros"):
    """A computed image sampled on a constant grid: per batch entry, each output cell is a fixed mix of input cells
    (ONNX's GridSample of one-hot images, one per channel)."""
    x = as_sym(b, X)
    g = as_const(grid, "grid")
    shape = b.shape(x)
    if shape is None or len(shape) not in (4, 5) or None in shape[2:] or shape[0] not in (None, g.shape[0]):
        raise refuse(f"an input of shape {None if shape is None else list(shape)} on a grid of {list(g.shape)}")
    n, spatial = g.shape[0], tuple(shape[2:])
    cells = int(np.prod(spatial))
    basis = np.broadcast_to(np.eye(cells, dtype=np.float32).reshape(1, cells, *spatial), (n, cells, *spatial))
    out = _run("GridSample", [np.ascontiguousarray(basis), g.astype(np.float32)], b.g.opset,
               align_corners=int(align_corners), mode=mode, padding_mode=padding_mode)  # (N, cells, *out)
    weights = _check(out.reshape(n, *spatial, *out.shape[2:]))  # (N, *in, *out)
    r = len(spatial)
    ins, outs = "defg"[:r], "pqrs"[:r]
    return b.op("Einsum", [x, weights], subscripts=f"nc{ins},n{ins}{outs}->nc{outs}")


@lowering("AffineGrid")
def AffineGrid(b, theta, size, align_corners=0):
    """grid[n, .., i] = sum_j theta[n, i, j] base[.., j]: the base grid read off ONNX's AffineGrid of unit thetas."""
    t = as_sym(b, theta)
    dims = [int(v) for v in as_const(size, "size").reshape(-1)]
    r = len(dims) - 2
    if r not in (2, 3):
        raise refuse(f"size {dims}")
    base = []
    for j in range(r + 1):  # theta with a single 1 at [0, 0, j]: the grid's first coordinate is base[.., j]
        unit = np.zeros((1, r, r + 1), np.float32)
        unit[0, 0, j] = 1.0
        base.append(_run("AffineGrid", [unit, np.asarray([1, 1, *dims[2:]], np.int64)], b.g.opset,
                         align_corners=int(align_corners))[0, ..., 0])
    grid = _check(np.stack(base, axis=-1))  # (*spatial, r + 1)
    cells = "dhw"[-r:]
    return b.op("Einsum", [t, grid], subscripts=f"nij,{cells}j->n{cells}i")


def _per_sample(b, x, op: str, others: list, attrs: dict, batched: tuple = ()):
    """An op that maps each batch entry of x linearly and alike: (N, *s) -> (N, *o) as x flattened times a matrix
    read off ONNX's reference run on one one-hot sample per entry of a basis batch. ``others``: the other inputs,
    constants; those at the positions ``batched`` (per-batch offsets, of one entry) are repeated over the basis."""
    x = as_sym(b, x)
    shape = b.shape(x)
    if shape is None or None in shape[1:] or (batched and shape[0] != 1):
        raise refuse(f"an input of shape {None if shape is None else list(shape)}")
    size = int(np.prod(shape[1:]))
    basis = np.eye(size, dtype=np.float32).reshape(size, *shape[1:])
    others = [np.repeat(o, size, axis=0) if i in batched and o is not None else o for i, o in enumerate(others)]
    out = _run(op, [basis, *others], b.g.opset, **attrs)  # (size, *o)
    weights = _check(out.reshape(size, -1))
    flat = b.op("Reshape", [x], inner=True, suffix="flat", newshape=[-1, size])
    y = b.op("Matmul", [flat, weights], inner=True, suffix="map")  # (N, size) @ (size, prod(o))
    return b.claim(b.op("Reshape", [y], inner=True, suffix="shaped", newshape=[-1, *out.shape[1:]]))


@lowering("Col2Im")
def Col2Im(b, input, image_shape, block_shape, dilations=None, pads=None, strides=None):
    attrs = {k: list(v) for k, v in (("dilations", dilations), ("pads", pads), ("strides", strides)) if v is not None}
    return _per_sample(b, input, "Col2Im", [as_const(image_shape, "image_shape"), as_const(block_shape, "block_shape")],
                       attrs)


@lowering("STFT")
def STFT(b, signal, frame_step, window=None, frame_length=None, onesided=1):
    others = [as_const(frame_step, "frame_step"), None if window is None else as_const(window, "window"),
              None if frame_length is None else as_const(frame_length, "frame_length")]
    while others and others[-1] is None:
        others.pop()
    return _per_sample(b, signal, "STFT", others, {"onesided": int(onesided)})


@lowering("DeformConv")
def DeformConv(b, X, W, offset, B=None, mask=None, dilations=None, group=1, kernel_shape=None, offset_group=1,
               pads=None, strides=None):
    """Linear in X once the weights, offsets and mask are constants (offsets of one batch entry, or the same)."""
    consts = [as_const(v, n) if v is not None else None for v, n in ((W, "W"), (offset, "offset"), (B, "B"),
                                                                     (mask, "mask"))]
    for v in consts[1::2]:
        if v is not None and v.shape[0] != 1:
            raise refuse("offsets or a mask per batch entry")
    attrs = {"group": int(group), "offset_group": int(offset_group)}
    attrs |= {k: list(v) for k, v in (("dilations", dilations), ("kernel_shape", kernel_shape), ("pads", pads),
                                      ("strides", strides)) if v is not None}
    bias = consts[2]
    others = [consts[0], consts[1], None, consts[3]]  # the bias is added after (it is not linear)
    while others and others[-1] is None:
        others.pop()
    y = _per_sample(b, X, "DeformConv", others, attrs, batched=(1, 3))
    if bias is None:
        return y
    return b.op("Add", [y, bias.astype(np.float32).reshape(1, -1, *[1] * (len(b.shape(X)) - 2))])
