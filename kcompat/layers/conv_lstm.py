"""ConvLSTM1D / 2D / 3D: an LSTM whose input and recurrent transformations are convolutions.

References: keras/src/layers/rnn/conv_lstm.py (``ConvLSTMCell``: gates i, f, c, o along the kernel's
last axis; the input conv uses the layer's strides, padding and dilation, the recurrent conv stride 1
and 'same' padding), conv_lstm1d.py / 2d / 3d; tf_keras/src/layers/rnn/base_conv_lstm.py (same math;
its default recurrent_activation is hard_sigmoid).

The cell computes channels_last: ``project`` convolves every timestep at once ((N*T, *sp, C) with the
(*k, C, 4F) kernel, kcompat's im2col ``convolve``), ``step`` adds the recurrent conv of h. A
channels_first layer moves channels last on the way in and back on the way out (outputs and states).
"""
from __future__ import annotations

import numpy as np

from ..errors import ShapeError
from .base import Weight, fmt_shape, register
from .conv_kernels import conv_length, conv_pads, convolve
from .recurrent import Recurrent
from .rnn_cells import Cell
from .spatial import Spatial


class ConvLSTMCell(Cell, Spatial):
    """One ConvLSTM step; states h and c are (N, *out, filters), channels last inside."""

    gates, states = 4, 2

    def __init__(self, config, name=None, owner="", rank=2):
        self.rank = rank
        config = {**config, "units": config.get("filters")}
        super().__init__(config, name, owner)
        self.filters = self.units
        self.init_recurrent_activation()
        self.init_spatial()
        self.kernel_size = self.int_tuple("kernel_size")
        self.strides = self.int_tuple("strides", 1)
        self.dilation = self.int_tuple("dilation_rate", 1)
        self.padding = self.choice("padding", ("valid", "same"), "valid")
        if max(self.strides) > 1 and max(self.dilation) > 1:
            raise self.fail(f"strides > 1 is not compatible with dilation_rate > 1. Received: strides={self.strides}, "
                            f"dilation_rate={self.dilation}")

    def fail(self, message):
        return Cell.fail(self, message)

    def input_dim(self, step_shape):
        _, sp, c = self.split(step_shape)
        if c is None or any(d is None for d in sp):
            raise ShapeError(f"{self.where}: ConvLSTM needs known spatial and channel sizes. Received: step input "
                             f"{fmt_shape(tuple(step_shape))}")
        return c

    def out_spatial(self, step_shape) -> tuple:
        sp = self.split(step_shape)[1]
        out = tuple(conv_length(n, k, s, d, self.padding)
                    for n, k, s, d in zip(sp, self.kernel_size, self.strides, self.dilation))
        self.check_positive(sp, out, step_shape)
        return out

    def output_shape(self, step_shape):
        return self.join(step_shape[0], self.out_spatial(step_shape), self.filters)

    def state_shapes(self, step_shape):
        return [self.output_shape(step_shape)] * 2

    def weights(self, step_shape):
        c, f = self.input_dim(step_shape), self.filters
        ws = [Weight("kernel", (*self.kernel_size, c, 4 * f)),
              Weight("recurrent_kernel", (*self.kernel_size, f, 4 * f))]
        return ws + [Weight("bias", (4 * f,))] if self.use_bias else ws

    def project(self, x, p):
        n, t = x.shape[:2]
        x = self.to_last(x.reshape(n * t, *x.shape[2:]))  # (N, T, ...) -> (N*T, *sp, C)
        pads = conv_pads(x.shape[1:-1], self.kernel_size, self.strides, self.dilation, self.padding)
        y = convolve(x, p[0], self.strides, self.dilation, pads)  # (N*T, *out, 4F): every step's input conv at once
        if p[2] is not None:
            y = y + p[2]
        return y.reshape(n, t, *y.shape[1:])  # (N*T, *out, 4F) -> (N, T, *out, 4F)

    def step(self, xp, states, p):
        h, c = states  # (N, *out, F) each
        f, k = self.filters, self.kernel_size
        ones = (1,) * self.rank
        z = xp + convolve(h, p[1], ones, ones, conv_pads(h.shape[1:-1], k, ones, ones, "same"))  # + conv(h)
        ra = self.recurrent_activation
        i, fg, o = ra(z[..., :f]), ra(z[..., f:2 * f]), ra(z[..., 3 * f:])
        c = fg * c + i * self.activation(z[..., 2 * f:3 * f])  # (N, *out, F)
        h = o * self.activation(c)
        return h, [h, c]

    # -- the layer's data format at the boundary: states in, outputs and states out
    def state_in(self, state):
        return self.to_last(state)  # (N, F, *out) -> (N, *out, F)

    def state_out(self, state):
        return self.from_last(state)

    def sequence_out(self, seq):
        return np.moveaxis(seq, -1, 2) if self.channels_first else seq  # (N, T, *out, F) -> (N, T, F, *out)


class _ConvLSTM(Recurrent):
    """ConvLSTM over (N, T, *spatial, C) (channels_last) or (N, T, C, *spatial)."""

    rank = 2
    cell_name = "conv_lstm_cell"

    def make_cell(self):
        return ConvLSTMCell(self.config, self.cell_name, f"layer '{self.name}' ({self.class_name})", self.rank)

    def describe(self):
        c = self.cell
        return (f"ConvLSTM{self.rank}D, 4 gates (i, f, c, o) x {c.filters} filters, kernel {c.kernel_size}, "
                f"{c.padding} padding")


@register("ConvLSTM1D")
class ConvLSTM1D(_ConvLSTM):
    rank = 1


@register("ConvLSTM2D")
class ConvLSTM2D(_ConvLSTM):
    rank = 2


@register("ConvLSTM3D")
class ConvLSTM3D(_ConvLSTM):
    rank = 3
