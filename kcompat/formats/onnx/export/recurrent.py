"""ONNX exporters of the recurrent layers SimpleRNN, LSTM, GRU, RNN(cell): the sequence around the cells.

rnn_cells.py runs the cells (ONNX's RNN / LSTM / GRU ops, or the loop unrolled); this module gives them
what Keras's RNN.call gives its loop: the sequence time first, reversed for ``go_backwards`` (Keras
returns a backwards layer's outputs in that reversed order), the initial states, and the mask.

Masks, exactly as Keras computes them for ANY mask (holes in the middle, padding at either end): a
masked step keeps the states and outputs the previous output (0 before the first step), or 0 with
``zero_output_for_mask``. That is the cell run over the unmasked steps only, so each sample's unmasked
steps are moved to the front (a GatherElements, their order kept: positions from CumSum of the mask), the
op runs with ``sequence_lens`` = their count, and every step's output is gathered back from the
position of the last unmasked step at or before it (GatherElements), 0 where Keras gives 0. A fully
masked sample keeps its initial states (ONNX Runtime's ops give 0 there: a Where puts them back).
References: kcompat/layers/recurrent.py (run_sequence), keras/src/backend/tensorflow/rnn.py.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from onnx import TensorProto

from ....layers.base import first_mask
from .masks import as_bool_mask
from .registry import layer_exporter
from .rnn_cells import fusable, native_op, run_cell


@dataclass
class Packed:
    """A masked sequence with its unmasked steps first: the positions to gather outputs back from."""

    lens: str  # (N,) int32: unmasked steps per sample
    pos: str  # (N, T) int64: position of the last unmasked step at or before each step (0 before any)
    seen: str  # (N, T) bool: some step at or before this one is unmasked
    mask: str  # (N, T) bool
    any: str  # (N,) bool: the sample has an unmasked step


def time_first(ctx, x: str, rank: int) -> str:
    return ctx.op("Transpose", x, perm=[1, 0, *range(2, rank)])  # (N, T, ...) <-> (T, N, ...)


def reverse_time(ctx, x: str, axis: int) -> str:
    """x reversed along ``axis`` (Slice with step -1; the size may be unknown)."""
    big = np.iinfo(np.int64).max
    return ctx.op("Slice", x, ctx.ints([-1]), ctx.ints([-big]), ctx.ints([axis]), ctx.ints([-1]))


def spread(ctx, index: str, like: str, rank: int) -> str:
    """An (N, T) int64 index repeated over the other axes of ``like`` (N, T, ...): + zeros of like's shape
    (x > x is False even for NaN; an Expand to Shape(x) would read the shape, which ONNX importers fold badly)."""
    zeros = ctx.op("Cast", ctx.op("Greater", like, like), to=TensorProto.INT64)  # (N, T, ...)
    return ctx.op("Add", ctx.op("Unsqueeze", index, ctx.ints(list(range(2, rank)), "axes")), zeros)


def pack(ctx, x: str, mask: str) -> tuple[str, Packed]:
    """x (N, T, ...) with each sample's unmasked steps moved to the front, in order; and how to undo it.
    The move is a gather from the inverse permutation (j -> the step that goes to j: ArgMax of dest == j),
    not a ScatterElements, which importers take only with constant indices."""
    m = ctx.op("Cast", mask, to=TensorProto.INT64)
    seen_count = ctx.op("CumSum", m, ctx.ints(1, "axis"))  # (N, T): unmasked steps up to t
    one = ctx.ints(1, "one")
    lens = ctx.reduce("ReduceSum", m, [1], keepdims=0)  # (N,)
    rest = ctx.op("CumSum", ctx.op("Sub", one, m), ctx.ints(1, "axis"))  # masked steps up to t
    dest = ctx.op("Where", mask, ctx.op("Sub", seen_count, one),  # unmasked: their rank; masked: after them
                  ctx.op("Add", ctx.op("Unsqueeze", lens, ctx.ints([1], "axes")), ctx.op("Sub", rest, one)))
    steps = ctx.op("Sub", ctx.op("CumSum", ctx.op("Cast", ctx.op("Not", ctx.op("Greater", m, m)), to=TensorProto.INT64),
                                 ctx.ints(1, "axis")), one)  # (N, T): 0, 1, ..., T-1 (T may be unknown)
    hit = ctx.op("Equal", ctx.op("Unsqueeze", dest, ctx.ints([1], "axes")), ctx.op("Unsqueeze", steps, ctx.ints([2], "axes")))
    src = ctx.op("ArgMax", ctx.op("Cast", hit, to=TensorProto.INT32), axis=2, keepdims=0)  # (N, T): step packed to j
    rank = len(ctx.shape(x)) if x in ctx.shapes else 3
    packed = ctx.op("GatherElements", x, spread(ctx, src, x, rank), axis=1)
    pos = ctx.op("Max", ctx.op("Sub", seen_count, one), ctx.ints(0, "zero"))
    seen = ctx.op("Greater", seen_count, ctx.ints(0, "zero"))
    return packed, Packed(ctx.op("Cast", lens, to=TensorProto.INT32), pos, seen, mask,
                          ctx.op("Greater", lens, ctx.ints(0, "zero")))


def unpack(ctx, y: str, p: Packed, rank: int, zero_output: bool) -> str:
    """Outputs y (N, T, ...) of the packed steps back at every step, as Keras's masked loop gives them."""
    gathered = ctx.op("GatherElements", y, spread(ctx, p.pos, y, rank), axis=1)
    keep = ctx.op("Unsqueeze", p.mask if zero_output else p.seen, ctx.ints(list(range(2, rank)), "axes"))
    return ctx.op("Where", keep, gathered, ctx.const(0.0, "zero"))


def only_if(ctx, cond: str, value: str, other: str | None, rank: int) -> str:
    """Where(cond (N,), value, other or 0) over (N, ...) tensors."""
    c = ctx.op("Unsqueeze", cond, ctx.ints(list(range(1, rank)), "axes"))
    return ctx.op("Where", c, value, other or ctx.const(0.0, "zero"))


def call_parts(ctx, inputs: list) -> tuple[str, list | None, str | None]:
    """(sequences, initial states or None, mask or None) of a recurrent call node."""
    initial = inputs[1] if len(inputs) > 1 and inputs[1] is not None else None
    if ctx.kwargs.get("initial_state") is not None:
        initial = ctx.kwargs["initial_state"]
    if initial is not None:
        initial = list(initial) if isinstance(initial, (list, tuple)) else [initial]
    mask = first_mask(ctx.kwargs.get("mask"))
    return inputs[0], initial, mask


def mask_nt(ctx, mask: str, time_major: bool) -> str:
    """A Keras mask as (N, T) bool ((N, T, 1) masks too)."""
    m = ctx.op("Reshape", as_bool_mask(ctx, mask), ctx.ints([0, -1], "mask_shape"))
    return ctx.op("Transpose", m, perm=[1, 0]) if time_major else m


def run_layer(ctx, layer, x: str, initial: list | None, mask: str | None, weights: list) -> list[str]:
    """A recurrent layer's call: [output (sequence or last), *final states], in the layer's layout."""
    cell = layer.cell
    shape = ctx.shape(x)
    rank = len(shape)
    seq = layer.sequence_shape(shape)  # (N, T, ...)
    where = f"layer '{layer.name}' ({layer.class_name})"
    xn = time_first(ctx, x, rank) if layer.time_major else x  # (N, T, ...)
    m = None if mask is None else mask_nt(ctx, mask, layer.time_major)
    if layer.go_backwards:
        xn = reverse_time(ctx, xn, 1)
        m = None if m is None else reverse_time(ctx, m, 1)
    packed = None
    if m is not None:
        ctx.shapes.setdefault(xn, seq)
        xn, packed = pack(ctx, xn, m)
    init = None if initial is None else [cell_state_in(cell, ctx, s) for s in initial]
    xt = time_first(ctx, xn, rank)
    ctx.shapes[xt] = (seq[1], seq[0], *seq[2:])  # (T, N, ...)
    y, finals = cell_run(ctx, cell, cell.prepare(weights), xt, seq[1], None if packed is None else packed.lens,
                         init, False, where)  # (T, N, ...)
    out_rank = rank  # the per-step output has the input's rank (N, U) / (N, *sp, F)
    if packed is not None:
        states = [only_if(ctx, packed.any, s, None if init is None else i, out_rank - 1)
                  for s, i in zip(finals, init or [None] * len(finals))]
    else:
        states = finals
    last = states[0] if not hasattr(cell, "cells") else states[-cell.cells[-1].states]
    if layer.return_sequences:
        out = time_first(ctx, y, out_rank)  # (T, N, ...) -> (N, T, ...)
        if packed is not None:
            out = unpack(ctx, out, packed, out_rank, layer.zero_output_for_mask)
        out = cell_sequence_out(cell, ctx, out)
        if layer.time_major:
            out = time_first(ctx, out, out_rank)
    else:
        out = last
        if packed is not None:
            last_step = ctx.op("Gather", packed.mask, ctx.ints(-1, "last"), axis=1)  # (N,)
            out = only_if(ctx, last_step if layer.zero_output_for_mask else packed.any, last, None, out_rank - 1)
        out = cell_state_out(cell, ctx, out)
    return [out, *[cell_state_out(cell, ctx, s) for s in states]] if layer.return_state else [out]


# ------------------------------------------------------------------ cells with a layout of their own (ConvLSTM)
CELL_FORMS: dict[type, dict] = {}  # cell class -> {"run", "state_in", "state_out", "sequence_out"} (conv_lstm.py)


def cell_form(cell_class: type, **fns) -> None:
    """Register how a cell class runs in ONNX and converts its states / outputs at the layer's boundary."""
    CELL_FORMS[cell_class] = fns


def _hook(cell, name: str):
    return CELL_FORMS.get(type(cell), {}).get(name)


def cell_run(ctx, cell, p, x, steps, lens, init, reverse, where):
    run = _hook(cell, "run") or run_cell
    return run(ctx, cell, p, x, steps, lens, init, reverse, where)


def cell_state_in(cell, ctx, state: str) -> str:
    fn = _hook(cell, "state_in")
    return state if fn is None else fn(ctx, cell, state)


def cell_state_out(cell, ctx, state: str) -> str:
    fn = _hook(cell, "state_out")
    return state if fn is None else fn(ctx, cell, state)


def cell_sequence_out(cell, ctx, seq: str) -> str:
    fn = _hook(cell, "sequence_out")
    return seq if fn is None else fn(ctx, cell, seq)


def distinct(ctx, outs: list[str]) -> list[str]:
    """The layer's outputs as distinct tensors (the last output of a state-returning layer is its h state)."""
    seen: set = set()
    fixed = []
    for o in outs:
        fixed.append(ctx.op("Identity", o) if o in seen else o)
        seen.add(o)
    return fixed


@layer_exporter("SimpleRNN", "LSTM", "GRU", "RNN")
def recurrent(ctx, layer, inputs, weights):
    x, initial, mask = call_parts(ctx, inputs)
    out = distinct(ctx, run_layer(ctx, layer, x, initial, mask, weights))
    return out if layer.return_state else out[0]


def run_bidirectional(ctx, layer, x: str, initial: list | None, mask: str | None, weights: list) -> list | None:
    """Both directions as one ONNX op (direction="bidirectional"): [forward out, backward out (input order),
    *forward states, *backward states]; None when the two layers are not one op's two directions."""
    fwd, bwd = layer.forward, layer.backward
    if (not fusable(fwd.cell, bwd.cell) or fwd.go_backwards or not bwd.go_backwards
            or fwd.time_major != bwd.time_major):
        return None
    shape = ctx.shape(x)
    rank = len(shape)
    seq = fwd.sequence_shape(shape)
    xn = time_first(ctx, x, rank) if fwd.time_major else x
    packed = None
    if mask is not None:
        ctx.shapes.setdefault(xn, seq)
        xn, packed = pack(ctx, xn, mask_nt(ctx, mask, fwd.time_major))
    n = len(fwd.weights(shape))
    half = None if initial is None else len(initial) // 2
    inits = None if initial is None else [initial[:half], initial[half:]]
    y, finals = native_op(ctx, [fwd.cell, bwd.cell], [fwd.cell.prepare(weights[:n]), bwd.cell.prepare(weights[n:])],
                          time_first(ctx, xn, rank), None if packed is None else packed.lens, inits, "bidirectional")
    outs, states = [], [[], []]
    for d in range(2):
        idx = ctx.ints([d], "direction")
        for k, f in enumerate(finals):
            s = ctx.op("Squeeze", ctx.op("Gather", f, idx, axis=0), ctx.ints([0], "axes"))  # (2, N, U) -> (N, U)
            if packed is not None:
                s = only_if(ctx, packed.any, s, None if inits is None else inits[d][k], 2)
            states[d].append(s)
        if fwd.return_sequences:
            o = ctx.op("Squeeze", ctx.op("Gather", y, idx, axis=1), ctx.ints([1], "axes"))  # (T, 2, N, U) -> (T, N, U)
            o = time_first(ctx, o, 3)
            if packed is not None:
                o = unpack(ctx, o, packed, 3, True)
            outs.append(time_first(ctx, o, 3) if fwd.time_major else o)
        else:
            o = states[d][0]
            outs.append(o if packed is None else only_if(ctx, packed.any, o, None, 2))
    return [*outs, *states[0], *states[1]]
