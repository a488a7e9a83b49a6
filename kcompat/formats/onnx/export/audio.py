"""ONNX exporters of STFTSpectrogram and MelSpectrogram.

STFTSpectrogram is what Keras computes: each channel convolved (ONNX Conv, stride frame_step; 'same' is
auto_pad SAME_UPPER, TF's split) with the saved real / imaginary DFT kernels, then the mode's arithmetic.
MelSpectrogram: reflect padding by fft_length // 2 (Pad mode reflect), the windowed real DFT of every frame
as one Conv with constant cos / -sin kernels (the window folded in), magnitude ** mag_exp, the HTK mel matrix
(MatMul), dB with the top_db floor below the batch's maximum. Reference: kcompat/layers/audio.py.
"""
from __future__ import annotations

import numpy as np
from onnx import TensorProto

from ....layers.audio import EPSILON, mel_matrix, window
from .ops import arctan2
from .registry import layer_exporter


def frames_conv(ctx, signal: str, kernel: np.ndarray, step: int, same: bool, name: str) -> str:
    """(B, T) signals -> (B, bins, frames): each frame of len(kernel) every ``step`` against (L, bins) filters."""
    w = ctx.const(np.ascontiguousarray(kernel.T[:, None, :]), name, dtype=np.float32)  # (bins, 1, L)
    attrs = {"auto_pad": "SAME_UPPER"} if same else {}
    return ctx.op("Conv", ctx.op("Unsqueeze", signal, ctx.ints([1], "axes")), w, strides=[step],
                  kernel_shape=[kernel.shape[0]], **attrs)


def dims(ctx, head: list[int], like: str, axis: int, size: int | None) -> str:
    """A Reshape target: ``head`` then ``like``'s size at ``axis`` (a constant when known)."""
    if size is not None:
        return ctx.ints([*head, size], "shape")
    return ctx.op("Concat", ctx.ints(head, "head"), ctx.op("Slice", ctx.op("Shape", like), ctx.ints([axis]),
                                                           ctx.ints([axis + 1])), axis=0)


@layer_exporter("STFTSpectrogram")
def stft_spectrogram(ctx, layer, inputs, weights):
    x = ctx.op("Cast", inputs[0], to=TensorProto.FLOAT)
    shape = ctx.shape(inputs[0])
    c = shape[1] if layer.channels_first else shape[2]
    signal = x if layer.channels_first else ctx.op("Transpose", x, perm=[0, 2, 1])  # (N, C, T)
    t = shape[2] if layer.channels_first else shape[1]
    flat = ctx.op("Reshape", signal, dims(ctx, [-1], signal, 2, t))  # (N, C, T) -> (N*C, T)
    kernels = list(weights)
    bins = layer.bins

    def conv(kernel, name):
        y = frames_conv(ctx, flat, kernel[:, 0, :], layer.frame_step, layer.padding == "same", name)  # (N*C, bins, F)
        return ctx.op("Reshape", y, dims(ctx, [-1, c, bins], y, 2, layer.frames(t)))  # -> (N, C, bins, frames)
    real = conv(kernels.pop(0), "real_kernel") if layer.mode != "imag" else None
    imag = conv(kernels.pop(0), "imag_kernel") if layer.mode != "real" else None  # (N, C, bins, frames)
    if layer.mode in ("real", "imag"):
        out = real if layer.mode == "real" else imag
    elif layer.mode == "angle":
        out = arctan2(ctx, layer, [imag, real], [])
    elif layer.mode == "stft":
        out = ctx.op("Concat", real, imag, axis=2)
    else:
        power = ctx.op("Add", ctx.op("Mul", real, real), ctx.op("Mul", imag, imag))
        if layer.mode == "psd":  # the inner bins counted twice (both halves of the spectrum)
            inner = ctx.op("Slice", power, ctx.ints([1]), ctx.ints([bins - 1]), ctx.ints([2]))
            out = ctx.op("Add", power, ctx.op("Pad", inner, ctx.ints([0, 0, 1, 0, 0, 0, 1, 0], "pads")))
        else:
            out = ctx.op("Sqrt", ctx.op("Max", power, ctx.const(EPSILON, "epsilon")))
            if layer.mode == "log":
                out = ctx.op("Log", ctx.op("Max", out, ctx.const(EPSILON, "epsilon")))
    width = bins * (2 if layer.mode == "stft" else 1)
    if layer.expand:
        return ctx.op("Transpose", out, perm=[0, 1, 3, 2] if layer.channels_first else [0, 3, 2, 1])
    out = ctx.op("Reshape", out, ctx.ints([0, c * width, -1], "features"))  # (N, C * bins, frames): channel-major
    return out if layer.channels_first else ctx.op("Transpose", out, perm=[0, 2, 1])


@layer_exporter("MelSpectrogram")
def mel_spectrogram(ctx, layer, inputs, weights):
    x = ctx.op("Cast", inputs[0], to=TensorProto.FLOAT)
    half = layer.fft_length // 2
    padded = ctx.op("Pad", x, ctx.ints([0, half, 0, half], "pads"), mode="reflect")  # (N, T + fft_length)
    left = (layer.fft_length - layer.sequence_length) // 2
    win = np.zeros(layer.fft_length, np.float32)
    win[left:left + layer.sequence_length] = window(layer.window, layer.sequence_length)
    n = np.arange(layer.fft_length)[:, None]
    k = np.arange(half + 1)[None, :]
    angle = 2 * np.pi * ((n * k) % layer.fft_length) / layer.fft_length  # exact phase, then float32
    re = frames_conv(ctx, padded, (win[:, None] * np.cos(angle)).astype(np.float32), layer.stride, False, "dft_real")
    im = frames_conv(ctx, padded, (win[:, None] * -np.sin(angle)).astype(np.float32), layer.stride, False, "dft_imag")
    magnitude = ctx.op("Sqrt", ctx.op("Add", ctx.op("Mul", re, re), ctx.op("Mul", im, im)))  # (N, bins, frames)
    spec = ctx.op("Pow", magnitude, ctx.const(layer.mag_exp, "mag_exp"))
    matrix = mel_matrix(layer.num_mel_bins, half + 1, layer.rate, layer.min_freq, layer.max_freq)  # (bins, mel)
    out = ctx.op("MatMul", ctx.const(np.ascontiguousarray(matrix.T), "mel_matrix"), spec)  # (mel, bins) @ -> (N, mel, F)
    if layer.power_to_db:
        ten_over_ln10 = ctx.const(10.0 / np.log(10.0), "db")
        out = ctx.op("Mul", ten_over_ln10, ctx.op("Log", ctx.op("Max", out, ctx.const(layer.min_power, "min_power"))))
        ref = 10.0 * np.log10(max(abs(layer.ref_power), layer.min_power))
        out = ctx.op("Sub", out, ctx.const(ref, "ref_db"))
        out = ctx.op("Max", out, ctx.op("Sub", ctx.reduce("ReduceMax", out, [0, 1, 2], keepdims=0),
                                        ctx.const(layer.top_db, "top_db")))  # the batch's maximum, as Keras
    return out
