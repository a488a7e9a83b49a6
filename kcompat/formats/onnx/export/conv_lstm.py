"""ONNX exporter of ConvLSTM1D / 2D / 3D: ONNX has no convolutional LSTM op, so the time loop is unrolled
(a known number of timesteps needed) around ONNX Convs, channels first inside.

Every timestep's input convolution is one Conv over the (T*N) batch (the layer's strides, padding and
dilation); each step adds the recurrent Conv of h (stride 1, 'same') and the gates i, f, c, o (Keras's
order, along the channel axis). The masks, go_backwards, states and outputs are recurrent.py's, which
calls this cell form through ``cell_form``; states come in and go out in the layer's data_format.
References: kcompat/layers/conv_lstm.py; keras/src/layers/rnn/conv_lstm.py.
"""
from __future__ import annotations

from ....layers.conv_kernels import conv_pads
from ....layers.conv_lstm import ConvLSTMCell
from .conv import onnx_kernel
from .recurrent import cell_form, distinct, run_layer, call_parts
from .registry import layer_exporter
from .rnn_cells import blocks, unroll, zeros


def _to_first(ctx, cell, x: str, rank: int) -> str:
    """(B, *sp, C) -> (B, C, *sp) for a channels_last layer."""
    if cell.channels_first:
        return x
    return ctx.op("Transpose", x, perm=[0, rank - 1, *range(1, rank - 1)])


def _from_first(ctx, cell, x: str, rank: int) -> str:
    if cell.channels_first:
        return x
    return ctx.op("Transpose", x, perm=[0, *range(2, rank), 1])


def run(ctx, cell, p, x: str, steps, lens, init, reverse, where):
    """The cell over x (T, N, *step) in the layer's layout: (outputs (T, N, F, *out), final states (N, F, *out))."""
    kernel, recurrent, bias = p[0], p[1], p[2]
    r, f = cell.rank, cell.filters
    step_shape = (None, *ctx.shapes[x][2:])  # ctx.shapes holds (T, N, *step) for x (recurrent.py sets it)
    _, sizes, channels = cell.split(step_shape)
    out = cell.out_spatial(step_shape)
    flat = ctx.op("Reshape", x, ctx.ints([-1, *step_shape[1:]], "steps_shape"))  # (T, N, ...) -> (T*N, ...)
    pads = conv_pads(sizes, cell.kernel_size, cell.strides, cell.dilation, cell.padding)
    attrs = {"kernel_shape": list(cell.kernel_size), "strides": list(cell.strides), "dilations": list(cell.dilation),
             "pads": [b for b, _ in pads] + [a for _, a in pads]}
    b = [] if bias is None else [ctx.const(bias, "bias", dtype=None)]
    xp = ctx.op("Conv", _to_first(ctx, cell, flat, r + 2), ctx.const(onnx_kernel(kernel), "kernel", dtype=None), *b,
                **attrs)  # (T*N, C, *sp) -> (T*N, 4F, *out)
    head = ctx.op("Slice", ctx.op("Shape", x), ctx.ints([0]), ctx.ints([2]))  # (T, N)
    xp = ctx.op("Reshape", xp, ctx.op("Concat", head, ctx.ints([4 * f, *out], "gates_shape"), axis=0))
    ones = [1] * r
    same = conv_pads(out, cell.kernel_size, ones, ones, "same")
    rec = ctx.const(onnx_kernel(recurrent), "recurrent_kernel", dtype=None)

    def act(z, name=cell.activation_name):
        return ctx.activation(name, z, (None, f, *out))

    def step(t, states):
        h, c = states
        z = ctx.op("Conv", h, rec, kernel_shape=list(cell.kernel_size), strides=ones, dilations=ones,
                   pads=[b for b, _ in same] + [a for _, a in same])  # (N, F, *out) -> (N, 4F, *out)
        z = ctx.op("Add", ctx.op("Gather", xp, ctx.ints(t, "t"), axis=0), z)
        i, fg, cc, o = blocks(ctx, z, f, 4)
        ra = cell.recurrent_activation_name
        c = ctx.op("Add", ctx.op("Mul", act(fg, ra), c), ctx.op("Mul", act(i, ra), act(cc)))
        h = ctx.op("Mul", act(o, ra), act(c))
        return h, [h, c]

    init = init or [zeros(ctx, x, [f, *out]) for _ in range(2)]
    return unroll(ctx, steps, step, init, lens, reverse, r + 2, where)


cell_form(ConvLSTMCell, run=run,
          state_in=lambda ctx, cell, s: _to_first(ctx, cell, s, cell.rank + 2),  # (N, *out, F) -> (N, F, *out)
          state_out=lambda ctx, cell, s: _from_first(ctx, cell, s, cell.rank + 2),
          sequence_out=lambda ctx, cell, s: s if cell.channels_first else ctx.op(
              "Transpose", s, perm=[0, 1, *range(3, cell.rank + 3), 2]))  # (N, T, F, *out) -> (N, T, *out, F)


@layer_exporter("ConvLSTM1D", "ConvLSTM2D", "ConvLSTM3D")
def conv_lstm(ctx, layer, inputs, weights):
    x, initial, mask = call_parts(ctx, inputs)
    out = distinct(ctx, run_layer(ctx, layer, x, initial, mask, weights))
    return out if layer.return_state else out[0]
