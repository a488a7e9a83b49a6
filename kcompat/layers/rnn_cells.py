"""Recurrent cells: one time step of SimpleRNN, LSTM and GRU, and StackedRNNCells.

References: keras/src/layers/rnn/simple_rnn.py, lstm.py, gru.py (``*Cell.build`` / ``call``,
implementation 2: all gates from one matmul), stacked_rnn_cells.py; tf_keras/src/layers/rnn/ (the
same weights and math; tf_keras adds ``implementation`` and, for GRU before TF 2, ``reset_after``).

A cell splits its step in two so the layer can batch the input side: ``project`` maps every
timestep's input at once, ``x @ kernel + input bias`` ((N, T, F) -> (N, T, kU), one matmul), and
``step`` adds the recurrent side, ``h @ recurrent_kernel`` ((N, U) @ (U, kU)), and the gates.
Gate order in the kernels: LSTM i, f, c, o; GRU z, r, h. Cells are Layers (config helpers,
``weights``) registered in CELLS by Keras class name, for RNN(cell=...) configs.
"""
from __future__ import annotations

from typing import Any, ClassVar

import numpy as np

from ..errors import ConfigError, ShapeError
from .activations import activation_name, get_activation
from .base import Layer, Weight, fmt_shape, join_path, snake_case

CELLS: dict[str, type["Cell"]] = {}


def register_cell(*class_names: str):
    """Class decorator: a cell available to RNN configs under its Keras class name(s)."""
    def wrap(cls):
        for name in class_names:
            CELLS[name] = cls
        cls.class_name = class_names[0]
        return cls
    return wrap


class Cell(Layer):
    """One recurrent step. ``owner`` names the layer in messages (the LSTM layer for its implicit cell)."""

    gates: ClassVar[int] = 1  # kernel columns per unit
    states: ClassVar[int] = 1  # state tensors (LSTM: h and c)

    def __init__(self, config: dict, name: str | None = None, owner: str = ""):
        super().__init__(config, name)
        self.owner = owner
        self.units = self.positive_int("units")
        self.use_bias = bool(self.get("use_bias", True))
        for key in ("dropout", "recurrent_dropout"):  # training only: validated, then ignored
            rate = self.get(key, 0.0)
            if isinstance(rate, bool) or not isinstance(rate, (int, float)):
                raise self.fail(f"'{key}' must be a number in [0, 1]. Received: {key}={rate!r}")
        self.activation_name = activation_name(self.config.get("activation", "tanh"), self.where)
        self.activation = get_activation(self.activation_name, self.where)

    @property
    def where(self) -> str:
        return self.owner or f"cell '{self.name}' ({self.class_name})"

    def fail(self, message: str) -> ConfigError:
        return ConfigError(f"{self.where}: {message}")

    def init_recurrent_activation(self) -> None:
        name = self.config.get("recurrent_activation", "sigmoid")
        self.recurrent_activation_name = activation_name(name, self.where)
        self.recurrent_activation = get_activation(self.recurrent_activation_name, self.where)

    # -- shapes: a step sees (N, F); the output and each state are (N, units)
    def input_dim(self, step_shape: tuple) -> int:
        if len(step_shape) != 2 or step_shape[-1] is None:
            raise ShapeError(f"{self.where}: expected sequences (batch, timesteps, features) with known features. "
                             f"Received: step input {fmt_shape(step_shape)}")
        return step_shape[-1]

    def output_shape(self, step_shape):
        return (step_shape[0], self.units)

    def state_shapes(self, step_shape) -> list[tuple]:
        return [(step_shape[0], self.units)] * self.states

    def weights(self, step_shape):
        f, k = self.input_dim(step_shape), self.gates * self.units
        ws = [Weight("kernel", (f, k)), Weight("recurrent_kernel", (self.units, k))]
        return ws + [Weight("bias", self.bias_shape())] if self.use_bias else ws

    def bias_shape(self) -> tuple:
        return (self.gates * self.units,)

    # -- the math
    def prepare(self, weights: list[np.ndarray]) -> tuple:
        """(kernel, recurrent_kernel, input bias or None, recurrent bias or None)."""
        kernel, recurrent, *bias = weights
        return kernel, recurrent, (bias[0] if bias else None), None

    def project(self, x: np.ndarray, p: tuple) -> np.ndarray:
        """Input side of every step at once: (..., F) @ (F, kU) [+ b] -> (..., kU)."""
        y = np.matmul(x, p[0])  # (N, T, F) @ (F, kU) -> (N, T, kU)
        return y if p[2] is None else y + p[2]

    def step(self, xp: np.ndarray, states: list, p: tuple) -> tuple[np.ndarray, list]:
        """One step from the projected input (N, kU) and the states: (output, new states)."""
        raise NotImplementedError

    # -- the layer's layout at the boundary (ConvLSTM computes channels_last inside)
    def state_in(self, state: np.ndarray) -> np.ndarray:
        return state

    def state_out(self, state: np.ndarray) -> np.ndarray:
        return state

    def sequence_out(self, seq: np.ndarray) -> np.ndarray:
        return seq


@register_cell("SimpleRNNCell")
class SimpleRNNCell(Cell):
    """h = activation(x @ kernel + bias + h @ recurrent_kernel)."""

    def step(self, xp, states, p):
        h = self.activation(xp + states[0] @ p[1])  # (N, U) + (N, U) @ (U, U)
        return h, [h]


@register_cell("LSTMCell")
class LSTMCell(Cell):
    """Gates i, f, c, o from one (N, 4U) sum; c = f*c + i*act(zc); h = o*act(c)."""

    gates, states = 4, 2

    def __init__(self, config, name=None, owner=""):
        super().__init__(config, name, owner)
        self.init_recurrent_activation()

    def step(self, xp, states, p):
        h, c = states
        u = self.units
        z = xp + h @ p[1]  # (N, 4U) + (N, U) @ (U, 4U) -> (N, 4U)
        ra = self.recurrent_activation
        i, f, o = ra(z[:, :u]), ra(z[:, u:2 * u]), ra(z[:, 3 * u:])  # (N, U) each
        c = f * c + i * self.activation(z[:, 2 * u:3 * u])  # (N, U)
        h = o * self.activation(c)  # (N, U)
        return h, [h, c]


@register_cell("GRUCell")
class GRUCell(Cell):
    """z, r gates; reset_after=True: hh = act(xh + r * (h @ Rh + bh)); False: act(xh + (r * h) @ Rh)."""

    gates = 3

    def __init__(self, config, name=None, owner=""):
        super().__init__(config, name, owner)
        self.init_recurrent_activation()
        self.reset_after = bool(self.get("reset_after", True))  # Keras 3 and tf_keras 2 default

    def bias_shape(self):
        return (2, 3 * self.units) if self.reset_after else (3 * self.units,)  # (input, recurrent) biases

    def prepare(self, weights):
        kernel, recurrent, *bias = weights
        if not bias:
            return kernel, recurrent, None, None
        if self.reset_after:
            return kernel, recurrent, bias[0][0], bias[0][1]  # (2, 3U) -> (3U,), (3U,)
        return kernel, recurrent, bias[0], None

    def step(self, xp, states, p):
        h = states[0]
        u, ra = self.units, self.recurrent_activation
        if self.reset_after:
            inner = h @ p[1]  # (N, U) @ (U, 3U) -> (N, 3U)
            if p[3] is not None:
                inner = inner + p[3]
            z = ra(xp[:, :u] + inner[:, :u])  # (N, U)
            r = ra(xp[:, u:2 * u] + inner[:, u:2 * u])
            hh = self.activation(xp[:, 2 * u:] + r * inner[:, 2 * u:])
        else:
            inner = h @ p[1][:, :2 * u]  # (N, U) @ (U, 2U) -> (N, 2U)
            z = ra(xp[:, :u] + inner[:, :u])
            r = ra(xp[:, u:2 * u] + inner[:, u:])
            hh = self.activation(xp[:, 2 * u:] + (r * h) @ p[1][:, 2 * u:])  # (N, U) @ (U, U)
        h = z * h + (1 - z) * hh  # (N, U)
        return h, [h]


def unique_names(class_names: list[str]) -> list[str]:
    """Keras's saving names for a list of objects: snake_case class name, then _1, _2... on repeats."""
    used: dict[str, int] = {}
    out = []
    for cls in class_names:
        base = snake_case(cls)
        used[base] = used.get(base, -1) + 1
        out.append(f"{base}_{used[base]}" if used[base] else base)
    return out


@register_cell("StackedRNNCells")
class StackedRNNCells(Cell):
    """Cells one above the other at each step: cell k reads cell k-1's output; states are concatenated."""

    def __init__(self, config, name=None, owner=""):
        Layer.__init__(self, config, name)
        self.owner = owner
        entries = self.get("cells", [])
        if not isinstance(entries, list) or not entries:
            raise self.fail(f"'cells' must be a non-empty list of cell configs. Received: cells={entries!r}")
        self.cells = [make_cell(e, f"{self.where}: cells[{i}]") for i, e in enumerate(entries)]
        if any(isinstance(c, StackedRNNCells) for c in self.cells):
            raise self.fail("nested StackedRNNCells are not supported; list the cells in one StackedRNNCells")
        self.paths = [f"cells/{n}" for n in unique_names([c.class_name for c in self.cells])]
        self.units = self.cells[-1].units

    def step_shapes(self, step_shape) -> list[tuple]:
        shapes = [step_shape]
        for cell in self.cells[:-1]:
            shapes.append(cell.output_shape(shapes[-1]))
        return shapes

    def output_shape(self, step_shape):
        return self.cells[-1].output_shape(self.step_shapes(step_shape)[-1])

    def state_shapes(self, step_shape):
        return [s for cell, shape in zip(self.cells, self.step_shapes(step_shape)) for s in cell.state_shapes(shape)]

    def weights(self, step_shape):
        return [Weight(join_path(cell.name, w.name), w.shape, w.trainable, join_path(path, w.group))
                for cell, path, shape in zip(self.cells, self.paths, self.step_shapes(step_shape))
                for w in cell.weights(shape)]

    def weight_groups(self):
        return self.paths

    def prepare(self, weights):
        out, i = [], 0
        for cell in self.cells:
            n = 3 if cell.use_bias else 2  # kernel, recurrent_kernel [, bias]
            out.append(cell.prepare(weights[i:i + n]))
            i += n
        return tuple(out)

    def project(self, x, p):
        return self.cells[0].project(x, p[0])

    def step(self, xp, states, p):
        new, i, out = [], 0, None
        for k, cell in enumerate(self.cells):
            if k:
                xp = cell.project(out, p[k])  # (N, U_prev) @ (U_prev, kU) -> (N, kU)
            out, s = cell.step(xp, states[i:i + cell.states], p[k])
            new += s
            i += cell.states
        return out, new

    @property
    def states(self) -> int:  # type: ignore[override]
        return sum(c.states for c in self.cells)


def make_cell(entry: Any, where: str) -> Cell:
    """A cell from its serialized config ``{"class_name": "LSTMCell", "config": {...}}``."""
    if not isinstance(entry, dict) or not isinstance(entry.get("config"), dict):
        raise ConfigError(f"{where}: expected a cell config with 'class_name' and 'config'. Received: {entry!r}")
    cls = CELLS.get(entry.get("class_name"))
    if cls is None:
        from ..errors import UnsupportedError
        raise UnsupportedError(f"{where}: unsupported RNN cell class {entry.get('class_name')!r}; kcompat runs "
                               f"{sorted(CELLS)}")
    cfg = entry["config"]
    name = cfg.get("name") or entry["class_name"]
    return cls(cfg, name, owner=f"{where}: cell '{name}' ({cls.class_name})")
