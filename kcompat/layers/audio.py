"""Audio preprocessing: STFTSpectrogram and MelSpectrogram.

References: keras/src/layers/preprocessing/stft_spectrogram.py (a strided conv1d of each channel with
the saved ``real_kernel`` / ``imag_kernel`` DFT filters, then the mode's arithmetic),
keras/src/layers/preprocessing/mel_spectrogram.py and keras/src/backend/tensorflow/math.py ``stft``
(reflect padding by fft_length // 2, a periodic window centered in fft_length, ``tf.signal.stft``),
the HTK mel filterbank, and a dB scale clipped at top_db below the largest value of the whole batch.
MelSpectrogram's declared time length, (T + stride + 1) // stride, is one more than it computes when
T % stride == stride - 1 (a Keras bug); kcompat declares the computed 1 + T // stride.
"""
from __future__ import annotations

import math

import numpy as np

from .base import Layer, Weight, fmt_shape, register

EPSILON = np.float32(1e-7)  # keras.config.epsilon()
STFT_MODES = ("log", "magnitude", "psd", "real", "imag", "angle", "stft")


@register("STFTSpectrogram")
class STFTSpectrogram(Layer):
    """Per channel, frames of frame_length every frame_step against the saved DFT kernels (N, T, C) ->
    (N, frames, C * bins) (or (N, frames, bins, C) with expand_dims)."""

    def __init__(self, config, name=None):
        super().__init__(config, name)
        self.mode = self.choice("mode", STFT_MODES, "log")
        self.frame_length = self.positive_int("frame_length", 256)
        self.frame_step = self.positive_int("frame_step", self.frame_length // 2)
        self.fft_length = self.positive_int("fft_length", 2 ** int(math.ceil(math.log2(self.frame_length))))
        self.padding = self.choice("padding", ("valid", "same"), "valid")
        self.expand = bool(self.get("expand_dims", False))
        self.channels_first = self.choice("data_format", ("channels_last", "channels_first"),
                                          "channels_last") == "channels_first"
        self.bins = self.fft_length // 2 + 1

    def weights(self, input_shape):
        shape = (self.frame_length, 1, self.bins)
        return ([Weight("real_kernel", shape)] if self.mode != "imag" else []) + \
               ([Weight("imag_kernel", shape)] if self.mode != "real" else [])

    def frames(self, t: int | None) -> int | None:
        if t is None:
            return None
        if self.padding == "same":
            return -(-t // self.frame_step)
        return (t - self.frame_length) // self.frame_step + 1

    def output_shape(self, input_shape):
        if len(input_shape) != 3:
            raise self.fail(f"expects (batch, time, channels). Received: input_shape={fmt_shape(input_shape)}")
        n, t, c = (input_shape[0], input_shape[2], input_shape[1]) if self.channels_first else input_shape
        frames = self.frames(t)
        if frames is not None and frames < 1:
            raise self.fail(f"the input is shorter than frame_length={self.frame_length}. "
                            f"Received: input_shape={fmt_shape(input_shape)}")
        bins = self.bins * (2 if self.mode == "stft" else 1)
        if self.expand:
            return (n, c, frames, bins) if self.channels_first else (n, frames, bins, c)
        feats = None if c is None else c * bins
        return (n, feats, frames) if self.channels_first else (n, frames, feats)

    def _conv(self, signal: np.ndarray, kernel: np.ndarray) -> np.ndarray:
        """(N, C, T) signals -> (N, C, bins, frames), a 'valid' / 'same' strided conv with (L, 1, bins)."""
        t = signal.shape[-1]
        if self.padding == "same":
            frames = self.frames(t)
            total = max((frames - 1) * self.frame_step + self.frame_length - t, 0)
            signal = np.pad(signal, ((0, 0), (0, 0), (total // 2, total - total // 2)))
        windows = np.lib.stride_tricks.sliding_window_view(signal, self.frame_length, axis=-1)[..., ::self.frame_step, :]
        return np.einsum("ncfl,lb->ncbf", windows, kernel[:, 0, :], optimize=True)  # (N, C, frames, L) -> (N, C, bins, frames)

    def forward(self, x, *kernels):
        x = x.astype(np.float32, copy=False)
        signal = x if self.channels_first else np.swapaxes(x, 1, 2)  # -> (N, C, T)
        kernels = list(kernels)
        real = self._conv(signal, kernels.pop(0)) if self.mode != "imag" else None
        imag = self._conv(signal, kernels.pop(0)) if self.mode != "real" else None
        if self.mode in ("real", "imag"):
            out = real if self.mode == "real" else imag
        elif self.mode == "angle":
            out = np.arctan2(imag, real)
        elif self.mode == "stft":
            out = np.concatenate([real, imag], axis=2)
        else:
            power = np.square(real) + np.square(imag)
            if self.mode == "psd":
                out = power + np.pad(power[:, :, 1:-1, :], ((0, 0), (0, 0), (1, 1), (0, 0)))
            else:
                out = np.sqrt(np.maximum(power, EPSILON))
                if self.mode == "log":
                    out = np.log(np.maximum(out, EPSILON))
        n, c, b, f = out.shape  # (N, C, bins, frames)
        if self.expand:
            return np.transpose(out, (0, 1, 3, 2)) if self.channels_first else np.transpose(out, (0, 3, 2, 1))
        out = out.reshape(n, c * b, f)  # channel-major features
        return out if self.channels_first else np.swapaxes(out, 1, 2)

    def explain(self, input_shape, output_shape):
        total = sum(self.param_count(input_shape))
        return (f"{self.mode} spectrogram: frames of {self.frame_length} every {self.frame_step}, "
                f"{self.bins} frequency bins from the saved DFT kernels; {total} params")


def window(name: str | None, length: int) -> np.ndarray:
    """tf.signal.hann_window / hamming_window with periodic=True, in float32."""
    if name is None:
        return np.ones(length, np.float32)
    n = np.arange(length, dtype=np.float32)
    a = np.float32(0.5 if name == "hann" else 0.54)
    return (a - (np.float32(1) - a) * np.cos(np.float32(2 * np.pi) * n / np.float32(length))).astype(np.float32)


def mel_matrix(num_mel_bins: int, num_spectrogram_bins: int, sampling_rate: float, lower: float, upper: float):
    """linear_to_mel_weight_matrix (HTK mel scale, triangles peaking at 1): (spectrogram bins, mel bins)."""
    def mel(hz):
        return np.float32(1127.0) * np.log(np.float32(1.0) + hz / np.float32(700.0))
    f32 = np.float32
    linear = np.linspace(f32(0), f32(sampling_rate) / f32(2), num_spectrogram_bins, dtype=np.float32)[1:]
    bins_mel = mel(linear)[:, None]  # (S - 1, 1)
    edges = np.linspace(mel(f32(lower)), mel(f32(upper)), num_mel_bins + 2, dtype=np.float32)
    lo, center, hi = edges[:-2][None], edges[1:-1][None], edges[2:][None]  # (1, M) each
    lower_slopes = (bins_mel - lo) / (center - lo)
    upper_slopes = (hi - bins_mel) / (hi - center)
    weights = np.maximum(f32(0), np.minimum(lower_slopes, upper_slopes))  # (S - 1, M)
    return np.pad(weights, ((1, 0), (0, 0))).astype(np.float32)


@register("MelSpectrogram")
class MelSpectrogram(Layer):
    """(N, T) audio -> (N, num_mel_bins, frames): |STFT|^mag_exp, HTK mel filterbank, then dB (optional)."""

    def __init__(self, config, name=None):
        super().__init__(config, name)
        self.fft_length = self.positive_int("fft_length", 2048)
        self.stride = self.positive_int("sequence_stride", 512)
        self.sequence_length = self.positive_int("sequence_length", self.fft_length)
        if self.sequence_length > self.fft_length:
            raise self.fail(f"'fft_length' must be >= 'sequence_length'. Received: fft_length={self.fft_length}, "
                            f"sequence_length={self.sequence_length}")
        self.window = self.config.get("window", "hann")
        if self.window not in ("hann", "hamming", None):
            raise self.fail(f"'window' must be 'hann', 'hamming' or null. Received: window={self.window!r}")
        self.rate = float(self.get("sampling_rate", 16000))
        self.num_mel_bins = self.positive_int("num_mel_bins", 128)
        self.min_freq = float(self.get("min_freq", 20.0))
        self.max_freq = float(self.get("max_freq", int(self.rate / 2)))
        self.power_to_db = bool(self.get("power_to_db", True))
        self.top_db = float(self.get("top_db", 80.0))
        self.mag_exp = float(self.get("mag_exp", 2.0))
        self.min_power = float(self.get("min_power", 1e-10))
        self.ref_power = float(self.get("ref_power", 1.0))

    def output_shape(self, input_shape):
        if len(input_shape) != 2:
            raise self.fail(f"expects (batch, time). Received: input_shape={fmt_shape(input_shape)}")
        t = input_shape[1]
        return (input_shape[0], self.num_mel_bins, None if t is None else 1 + t // self.stride)

    def spectrogram(self, x: np.ndarray) -> np.ndarray:
        """|stft|^mag_exp: (N, T) -> (N, frames, fft_length // 2 + 1)."""
        half = self.fft_length // 2
        x = np.pad(x, ((0, 0), (half, half)), mode="reflect")
        left = (self.fft_length - self.sequence_length) // 2
        win = np.zeros(self.fft_length, np.float32)
        win[left:left + self.sequence_length] = window(self.window, self.sequence_length)
        frames = np.lib.stride_tricks.sliding_window_view(x, self.fft_length, axis=-1)[:, ::self.stride]
        spectrum = np.fft.rfft(frames * win, n=self.fft_length, axis=-1)  # (N, frames, bins) complex
        magnitude = np.sqrt(np.square(spectrum.real) + np.square(spectrum.imag)).astype(np.float32)
        return np.power(magnitude, np.float32(self.mag_exp))

    def forward(self, x):
        spec = self.spectrogram(x.astype(np.float32, copy=False))
        matrix = mel_matrix(self.num_mel_bins, spec.shape[-1], self.rate, self.min_freq, self.max_freq)
        out = np.tensordot(spec, matrix, axes=1)  # (N, frames, bins) -> (N, frames, mel)
        if self.power_to_db:
            f32 = np.float32
            out = f32(10) * np.log10(np.maximum(out, f32(self.min_power)))
            out = out - f32(10) * np.log10(np.maximum(f32(abs(self.ref_power)), f32(self.min_power)))
            out = np.maximum(out, np.max(out) - f32(self.top_db))  # the maximum over the whole batch, as Keras
        return np.swapaxes(out, -1, -2).astype(np.float32)  # -> (N, mel, frames)

    def explain(self, input_shape, output_shape):
        db = ", in dB" if self.power_to_db else ""
        return (f"STFT of {self.fft_length} every {self.stride} samples, {self.num_mel_bins} mel bands "
                f"({self.min_freq:g}-{self.max_freq:g} Hz){db}; 0 params")
