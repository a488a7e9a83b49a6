"""Recurrent layers in NumPy: SimpleRNN, LSTM, GRU and RNN(cell), with Keras's masking.

References: keras/src/layers/rnn/rnn.py (``RNN.call``, ``compute_output_shape``,
``compute_mask``), keras/src/backend/tensorflow/rnn.py (the time loop and its masking),
simple_rnn.py / lstm.py / gru.py (configs, the implicit cell and its name);
tf_keras/src/layers/rnn/base_rnn.py (``time_major``; ``[sequences, *initial_state]`` inputs).

The loop: ``cell.project`` maps every timestep's input in ONE matmul, then each step adds
``h @ recurrent_kernel`` and the gates. A masked step (mask False) keeps the previous states and
outputs the previous output (zeros before the first step), or zeros with ``zero_output_for_mask``
(Bidirectional sets it to ``return_sequences``). ``go_backwards`` walks the time axis from the end
and returns the sequence in that reversed order. ``unroll`` changes nothing: Keras on TensorFlow
with unroll=True, go_backwards and zero_output_for_mask zeroes the outputs by the UNreversed mask
(tf backend ``rnn``'s unrolled branch; tf_keras too), a Keras bug: kcompat computes the unroll=False
result. ``stateful`` layers start from zero states, as a freshly loaded Keras model does.
"""
from __future__ import annotations

from typing import Any, ClassVar

import numpy as np

from ..errors import ShapeError, UnsupportedError
from .base import Layer, Weight, first_mask, fmt_shape, join_path, register
from .rnn_cells import CELLS, Cell, GRUCell, LSTMCell, SimpleRNNCell, make_cell


def initial_state_of(args: list, kwargs: dict) -> Any:
    """An RNN call's initial state: the ``initial_state`` keyword, else the second positional argument."""
    if kwargs.get("initial_state") is not None:
        return kwargs["initial_state"]
    return args[1] if len(args) > 1 else None


def run_sequence(cell: Cell, params: tuple, x: np.ndarray, states: list, mask: np.ndarray | None,
                 go_backwards: bool, zero_output_for_mask: bool, return_sequences: bool):
    """(last output, all outputs or None, final states) of ``cell`` over x (N, T, ...)."""
    n, steps = x.shape[0], x.shape[1]
    if steps == 0:
        raise ShapeError(f"{cell.where}: the input has 0 timesteps. Received: input shape {x.shape}")
    xp = cell.project(x, params)  # (N, T, F) @ (F, kU) -> (N, T, kU): every step's input side at once
    outputs = []
    out = None
    for t in (range(steps - 1, -1, -1) if go_backwards else range(steps)):
        new_out, new_states = cell.step(xp[:, t], states, params)  # (N, kU), [(N, U)...] -> (N, U)
        if mask is not None:
            keep = mask[:, t].reshape((n,) + (1,) * (new_out.ndim - 1))  # (N,) -> (N, 1, ...)
            fill = np.zeros_like(new_out) if out is None or zero_output_for_mask else out
            new_out = np.where(keep, new_out, fill)  # (N, U)
            new_states = [np.where(keep, s, old) for s, old in zip(new_states, states)]
        out, states = new_out, new_states
        if return_sequences:
            outputs.append(out)
    return out, (np.stack(outputs, axis=1) if return_sequences else None), states  # (N, T, U)


class Recurrent(Layer):
    """The RNN base: options, shapes, initial states and masks; subclasses say how to build the cell."""

    supports_masking = True
    call_params = ("sequences", "initial_state", "mask", "training")
    cell_class: ClassVar[type[Cell] | None] = None  # the implicit cell of LSTM / GRU / SimpleRNN
    cell_name: ClassVar[str] = ""  # its Keras name (variable paths: lstm/lstm_cell/kernel)

    def __init__(self, config, name=None):
        super().__init__(config, name)
        for key in ("return_sequences", "return_state", "go_backwards", "stateful", "unroll",
                    "zero_output_for_mask", "time_major"):
            setattr(self, key, bool(self.get(key, False)))
        self.cell = self.make_cell()

    def make_cell(self) -> Cell:
        return self.cell_class(self.config, self.cell_name, owner=f"layer '{self.name}' ({self.class_name})")

    @classmethod
    def keras3_config(cls, config):
        config = dict(super().keras3_config(config))
        if config.pop("time_major", False):
            raise UnsupportedError(f"layer '{config.get('name')}' ({cls.class_name}): time_major=True (tf_keras) "
                                   f"has no Keras 3 equivalent; the file cannot be written for Keras 3")
        return config

    # -- shapes
    def sequence_shape(self, shape: Any) -> tuple:
        """(batch, time, *step) from a sequences shape (time first in it when time_major)."""
        shape = tuple(shape)
        if len(shape) < 3:
            raise ShapeError(f"layer '{self.name}' ({self.class_name}): expected sequences (batch, timesteps, "
                             f"...) of rank >= 3. Received: input_shape={fmt_shape(shape)}")
        return (shape[1], shape[0], *shape[2:]) if self.time_major else shape

    def weights(self, input_shape):
        seq = self.sequence_shape(input_shape)
        return [Weight(join_path(self.cell.name, w.name), w.shape, w.trainable, join_path("cell", w.group))
                for w in self.cell.weights((seq[0], *seq[2:]))]

    def weight_groups(self):
        return [join_path("cell", g) for g in self.cell.weight_groups()]

    def output_shape(self, input_shape):
        seq = self.sequence_shape(input_shape)
        step = (seq[0], *seq[2:])
        out = self.cell.output_shape(step)
        if self.return_sequences:
            out = (out[0], seq[1], *out[1:])
            out = (out[1], out[0], *out[2:]) if self.time_major else out
        return [out, *self.cell.state_shapes(step)] if self.return_state else out

    def compute_mask(self, inputs, mask, keras2=False):
        out = first_mask(mask) if self.return_sequences else None
        return [out] + [None] * self.cell.states if self.return_state else out

    # -- the call
    def call_node(self, args, kwargs, weights):
        x, initial = args[0], initial_state_of(args, kwargs)
        return self.run(x, initial, first_mask(kwargs.get("mask")), weights)

    def run(self, x: np.ndarray, initial: Any, mask: np.ndarray | None, weights: list[np.ndarray]) -> Any:
        """The layer's output(s) for sequences x, optional initial states and a (N, T) mask."""
        if self.time_major:
            x = np.swapaxes(x, 0, 1)  # (T, N, ...) -> (N, T, ...)
            mask = None if mask is None else np.swapaxes(mask, 0, 1)
        step = (x.shape[0], *x.shape[2:])
        states = self.initial_states(initial, step, x.dtype)
        if mask is not None:
            mask = np.asarray(mask).astype(bool).reshape(x.shape[:2])  # (N, T) (a (N, T, 1) mask too)
        last, seq, states = run_sequence(self.cell, self.cell.prepare(weights), x, states, mask, self.go_backwards,
                                         self.zero_output_for_mask, self.return_sequences)
        out = self.cell.sequence_out(seq) if self.return_sequences else self.cell.state_out(last)
        states = [self.cell.state_out(s) for s in states]
        if self.time_major and self.return_sequences:
            out = np.swapaxes(out, 0, 1)  # (N, T, U) -> (T, N, U)
        return [out, *states] if self.return_state else out

    def initial_states(self, initial: Any, step: tuple, dtype) -> list[np.ndarray]:
        shapes = self.cell.state_shapes(step)
        if initial is None:
            return [self.cell.state_in(np.zeros(s, dtype)) for s in shapes]
        initial = list(initial) if isinstance(initial, (list, tuple)) else [initial]
        got = [tuple(np.shape(s)) for s in initial]
        if got != [tuple(s) for s in shapes]:
            raise ShapeError(f"layer '{self.name}' ({self.class_name}): expected initial states of shapes "
                             f"{[fmt_shape(s) for s in shapes]}. Received: {[fmt_shape(s) for s in got]}")
        return [self.cell.state_in(np.asarray(s, dtype)) for s in initial]

    def explain(self, input_shape, output_shape):
        seq = self.sequence_shape(input_shape)
        ws = self.weights(input_shape)
        total = sum(self.param_count(input_shape))
        parts = " + ".join(f"{w.name.rsplit('/', 1)[-1]} {'x'.join(map(str, w.shape))}" for w in ws)
        what = "every step" if self.return_sequences else "the last step"
        order = ", right to left" if self.go_backwards else ""
        states = f" and its {self.cell.states} final state(s)" if self.return_state else ""
        return (f"{self.describe()}; runs over {seq[1]} timesteps{order} and returns {what}{states}; "
                f"{parts} = {total} params; masked steps keep the previous state")

    def describe(self) -> str:
        return f"{self.cell.class_name} with {self.cell.units} units"


@register("SimpleRNN")
class SimpleRNN(Recurrent):
    """A fully connected recurrence: h = activation(x @ kernel + bias + h @ recurrent_kernel)."""

    cell_class, cell_name = SimpleRNNCell, "simple_rnn_cell"


@register("LSTM")
class LSTM(Recurrent):
    """Long short-term memory: gates i, f, c, o; states h and c."""

    cell_class, cell_name = LSTMCell, "lstm_cell"

    def describe(self):
        return f"LSTM, 4 gates (i, f, c, o) x {self.cell.units} units"


@register("GRU")
class GRU(Recurrent):
    """Gated recurrent unit: gates z, r and the candidate h; reset_after picks where r applies."""

    cell_class, cell_name = GRUCell, "gru_cell"

    def describe(self):
        where = "after" if self.cell.reset_after else "before"
        return f"GRU, 3 gates (z, r, h) x {self.cell.units} units, reset {where} the recurrent matmul"


@register("RNN")
class RNN(Recurrent):
    """The generic RNN over a cell config (SimpleRNNCell, LSTMCell, GRUCell or StackedRNNCells)."""

    def make_cell(self):
        where = f"layer '{self.name}' (RNN)"
        cell = self.config.get("cell")
        if isinstance(cell, list):  # a list of cells is a stack
            cell = {"class_name": "StackedRNNCells", "config": {"name": "stacked_rnn_cells", "cells": cell}}
        if isinstance(cell, dict) and cell.get("class_name") not in CELLS:
            raise UnsupportedError(f"{where}: unsupported RNN cell class {cell.get('class_name')!r}; kcompat "
                                   f"runs {sorted(CELLS)} (custom cells hold code)")
        return make_cell(cell, where)

    def describe(self):
        if len(getattr(self.cell, "cells", [])) > 1:
            return "a stack of " + " then ".join(f"{c.class_name}({c.units})" for c in self.cell.cells)
        return super().describe()
