"""Recurrent cells over a whole sequence in ONNX: ONNX's own RNN / LSTM / GRU ops where they compute what
the Keras cell computes, the time loop unrolled otherwise.

Both forms have ONNX's op semantics, so recurrent.py treats them alike: input (T, N, F) time first, an
optional ``sequence_lens`` (N,) (steps at or past a sample's length are skipped: state kept, output 0),
initial states (N, U) each; the result is the output sequence (T, N, U) in input order (a ``reverse``
run walks from the end, as ONNX's direction="reverse") and the final states.

The ONNX ops: gate order LSTM i, o, f, c (Keras i, f, c, o); GRU z, r, h like Keras, with
``linear_before_reset`` = Keras's ``reset_after``; weights (D, gates*U, F) transposed from Keras's
(F, gates*U); B = [input bias, recurrent bias]. ``activations`` name Keras's recurrent_activation and
activation: sigmoid, tanh, relu, linear (Affine 1, 0) and hard_sigmoid (Keras 3: HardSigmoid 1/6, 1/2;
Keras 2: 0.2, 0.5). Any other activation (selu, gelu...) is unrolled: every step written out with
ctx.activation, which needs a known number of timesteps.
References: kcompat/layers/rnn_cells.py; onnx/docs/Operators.md LSTM, GRU, RNN.
"""
from __future__ import annotations

from typing import Callable

import numpy as np

from ....errors import UnsupportedError
from ....layers.rnn_cells import Cell, GRUCell, LSTMCell, SimpleRNNCell, StackedRNNCells

NATIVE = {"sigmoid": ("Sigmoid", None), "tanh": ("Tanh", None), "relu": ("Relu", None),
          "linear": ("Affine", (1.0, 0.0)), "hard_sigmoid": ("HardSigmoid", (1 / 6, 0.5)),
          "keras2:hard_sigmoid": ("HardSigmoid", (0.2, 0.5))}
OP = {SimpleRNNCell: "RNN", LSTMCell: "LSTM", GRUCell: "GRU"}


def cell_activations(cell: Cell) -> list[str]:
    """The cell's Keras activations in ONNX's order: RNN [f], GRU [f, g], LSTM [f, g, h]."""
    if isinstance(cell, LSTMCell):
        return [cell.recurrent_activation_name, cell.activation_name, cell.activation_name]
    if isinstance(cell, GRUCell):
        return [cell.recurrent_activation_name, cell.activation_name]
    return [cell.activation_name]


def native(cell: Cell) -> bool:
    """ONNX's own op computes this cell exactly."""
    return type(cell) in OP and all(a in NATIVE for a in cell_activations(cell))


def fusable(a: Cell, b: Cell) -> bool:
    """Two cells one ONNX op runs as direction="bidirectional": same kind, size and activations."""
    return (native(a) and native(b) and type(a) is type(b) and a.units == b.units
            and cell_activations(a) == cell_activations(b)
            and getattr(a, "reset_after", None) == getattr(b, "reset_after", None))


def _lstm_order(a: np.ndarray) -> np.ndarray:
    """Keras's gate blocks i, f, c, o (last axis) -> ONNX's i, o, f, c."""
    i, f, c, o = np.split(a, 4, axis=-1)
    return np.concatenate([i, o, f, c], axis=-1)


def onnx_weights(cell: Cell, p: tuple) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One direction's W (gU, F), R (gU, U), B (2gU,) from the cell's prepared Keras weights."""
    kernel, recurrent, b_in, b_rec = p
    g = kernel.shape[1]
    order = _lstm_order if isinstance(cell, LSTMCell) else (lambda a: a)
    b_in = np.zeros(g, np.float32) if b_in is None else b_in
    b_rec = np.zeros(g, np.float32) if b_rec is None else b_rec
    return (np.ascontiguousarray(order(kernel).T), np.ascontiguousarray(order(recurrent).T),
            np.concatenate([order(b_in), order(b_rec)]).astype(np.float32))


def native_op(ctx, cells: list, params: list, x: str, lens: str | None, inits: list | None,
              direction: str) -> tuple[str, list[str]]:
    """One ONNX RNN / LSTM / GRU node over x (T, N, F) for one cell (or two, bidirectional):
    (Y (T, D, N, U), [Y_h (D, N, U), Y_c]). ``inits``: per direction, its initial states, or None."""
    cell = cells[0]
    ws = [onnx_weights(c, p) for c, p in zip(cells, params)]
    w, r, b = (ctx.const(np.stack([t[i] for t in ws]), n, dtype=np.float32) for i, n in enumerate("WRB"))
    acts, alphas, betas = [], [], []
    for c in cells:
        for name in cell_activations(c):
            op, ab = NATIVE[name]
            acts.append(op)
            alphas += [] if ab is None else [ab[0]]
            betas += [] if ab is None else [ab[1]]
    attrs = {"hidden_size": cell.units, "direction": direction, "activations": acts}
    if alphas:  # ONNX pairs alpha / beta with the activations that take them, in order
        attrs.update(activation_alpha=alphas, activation_beta=betas)
    if isinstance(cell, GRUCell):
        attrs["linear_before_reset"] = int(cell.reset_after)
    states = 2 if isinstance(cell, LSTMCell) else 1
    init = [""] * states
    if inits is not None:
        init = [ctx.op("Concat", *[ctx.op("Unsqueeze", s[k], ctx.ints([0], "axes")) for s in inits], axis=0)
                if len(inits) > 1 else ctx.op("Unsqueeze", inits[0][k], ctx.ints([0], "axes"))
                for k in range(states)]  # (N, U) -> (D, N, U)
    ins = [x, w, r, b, lens or "", *init]
    while ins[-1] == "":
        ins.pop()
    outs = ctx.op(OP[type(cell)], *ins, outputs=1 + states, **attrs)
    return outs[0], outs[1:]


# ------------------------------------------------------------------ the unrolled form
def zeros(ctx, like: str, shape: list[int]) -> str:
    """Zeros of (N, *shape), N the size of axis 1 of ``like`` (a time-first tensor)."""
    n = ctx.op("Slice", ctx.op("Shape", like), ctx.ints([1]), ctx.ints([2]))
    return ctx.op("Expand", ctx.const(0.0, "zero"), ctx.op("Concat", n, ctx.ints(shape, "state_shape"), axis=0))


def unroll(ctx, steps: int | None, step: Callable, init: list[str], lens: str | None, reverse: bool, rank: int,
           where: str) -> tuple[str, list[str]]:
    """The time loop written out: ``step(t, states) -> (output, states)`` for each t, outputs and states of
    rank ``rank``; masked as ONNX's sequence_lens. Returns (outputs (T, N, ...) in input order, final states)."""
    if steps is None:
        raise UnsupportedError(f"{where}: exported as an unrolled time loop (no ONNX op computes it), which needs a "
                               f"known number of timesteps; give the model's Input a fixed sequence length")
    outs: dict[int, str] = {}
    states = init
    for t in (range(steps - 1, -1, -1) if reverse else range(steps)):
        y, new = step(t, states)
        if lens is not None:  # ONNX's sequence_lens: a step at or past the length keeps the state, outputs 0
            valid = ctx.op("Less", ctx.const(t, "t", dtype=np.int32), lens)  # (N,)
            valid = ctx.op("Unsqueeze", valid, ctx.ints(list(range(1, rank)), "axes"))  # (N,) -> (N, 1, ...)
            new = [ctx.op("Where", valid, s, old) for s, old in zip(new, states)]
            y = ctx.op("Where", valid, y, ctx.const(0.0, "zero"))
        states = new
        outs[t] = ctx.op("Unsqueeze", y, ctx.ints([0], "axes"))  # (N, ...) -> (1, N, ...)
    return ctx.op("Concat", *[outs[t] for t in range(steps)], axis=0), states


def blocks(ctx, z: str, size: int, count: int, axis: int = 1) -> list[str]:
    """``count`` blocks of ``size`` along ``axis`` (Slices: Split's forms differ per opset)."""
    return [ctx.op("Slice", z, ctx.ints([k * size]), ctx.ints([(k + 1) * size]), ctx.ints([axis]))
            for k in range(count)]


def unrolled_cell(ctx, cell: Cell, p: tuple, x: str, steps: int | None, lens: str | None, init: list | None,
                  reverse: bool, where: str) -> tuple[str, list[str]]:
    """SimpleRNN / LSTM / GRU cell (kcompat/layers/rnn_cells.py's math) over x (T, N, F), unrolled."""
    kernel, recurrent, b_in, b_rec = p
    u = cell.units
    xp = ctx.op("MatMul", x, ctx.const(kernel, "kernel", dtype=None))  # (T, N, F) @ (F, kU) -> (T, N, kU)
    if b_in is not None:
        xp = ctx.op("Add", xp, ctx.const(b_in, "bias", dtype=None))

    def act(z, name=cell.activation_name):
        return ctx.activation(name, z, (None, u))

    def ra(z):
        return act(z, cell.recurrent_activation_name)

    def matmul(h, kernel_part, name="recurrent_kernel"):
        return ctx.op("MatMul", h, ctx.const(np.ascontiguousarray(kernel_part), name, dtype=None))  # (N, U) @ (U, kU)

    def step(t, states):
        xt = ctx.op("Gather", xp, ctx.ints(t, "t"), axis=0)  # (T, N, kU) -> (N, kU)
        h = states[0]
        if isinstance(cell, LSTMCell):
            i, f, c, o = blocks(ctx, ctx.op("Add", xt, matmul(h, recurrent)), u, 4)
            c = ctx.op("Add", ctx.op("Mul", ra(f), states[1]), ctx.op("Mul", ra(i), act(c)))
            h = ctx.op("Mul", ra(o), act(c))
            return h, [h, c]
        if isinstance(cell, GRUCell):
            zx, rx, hx = blocks(ctx, xt, u, 3)
            if cell.reset_after:
                inner = matmul(h, recurrent)  # (N, 3U)
                if b_rec is not None:
                    inner = ctx.op("Add", inner, ctx.const(b_rec, "recurrent_bias", dtype=None))
                zi, ri, hi = blocks(ctx, inner, u, 3)
                z, r = ra(ctx.op("Add", zx, zi)), ra(ctx.op("Add", rx, ri))
                hh = act(ctx.op("Add", hx, ctx.op("Mul", r, hi)))
            else:
                zi, ri = blocks(ctx, matmul(h, recurrent[:, :2 * u]), u, 2)
                z, r = ra(ctx.op("Add", zx, zi)), ra(ctx.op("Add", rx, ri))
                hh = act(ctx.op("Add", hx, matmul(ctx.op("Mul", r, h), recurrent[:, 2 * u:], "recurrent_kernel_h")))
            one_minus = ctx.op("Sub", ctx.const(1.0, "one"), z)
            h = ctx.op("Add", ctx.op("Mul", z, h), ctx.op("Mul", one_minus, hh))
            return h, [h]
        h = act(ctx.op("Add", xt, matmul(h, recurrent)))
        return h, [h]

    init = init or [zeros(ctx, x, [u]) for _ in range(cell.states)]
    return unroll(ctx, steps, step, init, lens, reverse, 2, where)


def run_cell(ctx, cell: Cell, p: tuple, x: str, steps: int | None, lens: str | None, init: list | None,
             reverse: bool, where: str) -> tuple[str, list[str]]:
    """One cell (or a StackedRNNCells, cell after cell) over x (T, N, F): (outputs (T, N, U), final states)."""
    if isinstance(cell, StackedRNNCells):
        states, k = [], 0
        for c, cp in zip(cell.cells, p):
            x, s = run_cell(ctx, c, cp, x, steps, lens, None if init is None else init[k:k + c.states], reverse,
                            where)
            states += s
            k += c.states
        return x, states
    if native(cell):
        y, finals = native_op(ctx, [cell], [p], x, lens, None if init is None else [init],
                              "reverse" if reverse else "forward")
        y = ctx.op("Squeeze", y, ctx.ints([1], "axes"))  # (T, 1, N, U) -> (T, N, U)
        return y, [ctx.op("Squeeze", f, ctx.ints([0], "axes")) for f in finals]  # (1, N, U) -> (N, U)
    if type(cell) not in OP:
        raise UnsupportedError(f"{where}: cell {cell.class_name} has no ONNX export")
    return unrolled_cell(ctx, cell, p, x, steps, lens, init, reverse, where)
