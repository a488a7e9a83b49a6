"""Image preprocessing layers at inference: Resizing, CenterCrop, RandomCrop, AutoContrast.

References: keras/src/layers/preprocessing/image_preprocessing/{resizing,center_crop,random_crop,
auto_contrast}.py. Batched images only ((N, H, W, C), or (N, C, H, W) for channels_first). Integer
images come back rounded and saturated to their dtype where Keras does that (Resizing).

RandomCrop: Keras 3 returns the input unchanged at inference although it declares (and documents)
an output of (height, width): kcompat computes the documented result, the largest centered crop of the
target aspect ratio resized to (height, width) (``smart_resize``, what tf_keras computes), so the
declared shape and every layer after it hold. Verify against Keras 3 names the difference.
The random augmentation layers that are the identity at inference are in augmentation.py.
"""
from __future__ import annotations

import numpy as np

from .base import fmt_shape, register
from .image_resize import INTERPOLATIONS, crop_to_aspect, pad_to_aspect, resize, smart_resize
from .spatial import Spatial


def saturate_like(y: np.ndarray, dtype: np.dtype) -> np.ndarray:
    """Keras's ``_saturate_cast`` back to an integer image dtype (rounded first); floats pass through."""
    if np.dtype(dtype).kind not in "iu":
        return y
    info = np.iinfo(dtype)
    return np.clip(np.round(y), info.min, info.max).astype(dtype)


class _Image(Spatial):
    """A layer over (N, H, W, C) images with a ``height`` / ``width`` target."""

    rank = 2

    def init_target(self) -> None:
        self.init_spatial()
        self.height = self.positive_int("height")
        self.width = self.positive_int("width")

    def output_shape(self, input_shape):
        self.check_rank(input_shape)
        h, w = self.spatial_axes()
        out = list(input_shape)
        out[h], out[w] = self.height, self.width
        return tuple(out)

    def resized(self, x: np.ndarray) -> np.ndarray:
        """The channels_last math applied in the layer's data_format."""
        return self.from_last(self.last(self.to_last(x)))

    def last(self, x: np.ndarray) -> np.ndarray:
        raise NotImplementedError


@register("Resizing")
class Resizing(_Image):
    """tf.image.resize to (height, width), after an optional crop or pad to the target aspect ratio."""

    def __init__(self, config, name=None):
        super().__init__(config, name)
        self.init_target()
        self.interpolation = self.choice("interpolation", INTERPOLATIONS, "bilinear")
        self.crop = bool(self.get("crop_to_aspect_ratio", False))
        self.pad = bool(self.get("pad_to_aspect_ratio", False))
        if self.crop and self.pad:
            raise self.fail("only one of 'crop_to_aspect_ratio' and 'pad_to_aspect_ratio' can be true")
        self.choice("fill_mode", ("constant",), "constant")
        self.fill_value = self.get("fill_value", 0.0)
        self.antialias = bool(self.get("antialias", False))

    def last(self, x):
        size = (self.height, self.width)
        if self.crop:
            x = crop_to_aspect(x, size)
        elif self.pad:
            x = pad_to_aspect(x, size, self.fill_value)
        return resize(x, size, self.interpolation, self.antialias)  # (N, H, W, C) -> (N, height, width, C)

    def forward(self, x):
        return saturate_like(self.resized(x), x.dtype)

    def explain(self, input_shape, output_shape):
        how = ", after a centered crop to the target aspect ratio" if self.crop else \
            ", after padding to the target aspect ratio" if self.pad else ""
        return f"{self.interpolation} resize to {self.height}x{self.width}{how}; 0 params"


@register("CenterCrop")
class CenterCrop(_Image):
    """The centered (height, width) window; an image smaller than that is smart-resized instead."""

    def __init__(self, config, name=None):
        super().__init__(config, name)
        self.init_target()

    def last(self, x):
        dh, dw = x.shape[1] - self.height, x.shape[2] - self.width
        if dh >= 0 and dw >= 0:
            return x[:, dh // 2:dh // 2 + self.height, dw // 2:dw // 2 + self.width, :]
        return smart_resize(x, (self.height, self.width))

    def forward(self, x):
        return self.resized(x.astype(np.float32, copy=False))

    def explain(self, input_shape, output_shape):
        return f"the centered {self.height}x{self.width} window (smart-resized when the image is smaller); 0 params"


@register("RandomCrop")
class RandomCrop(_Image):
    """At inference: the largest centered window of the target aspect ratio, resized (Keras's documented result)."""

    def __init__(self, config, name=None):
        super().__init__(config, name)
        self.init_target()

    def last(self, x):
        return smart_resize(x, (self.height, self.width))

    def forward(self, x):
        return saturate_like(self.resized(x), x.dtype)

    def explain(self, input_shape, output_shape):
        return (f"at inference the centered window of aspect {self.height}:{self.width}, resized to "
                f"{self.height}x{self.width} (random crops only in training); 0 params")


@register("AutoContrast")
class AutoContrast(Spatial):
    """Per image and channel, stretch [min, max] to the value range (constant channels left alone); float32 out.

    Keras reduces over axes (1, 2) whatever the data_format (per row for channels_first, a Keras bug);
    kcompat reduces over the spatial axes, as documented."""

    rank = 2

    def __init__(self, config, name=None):
        super().__init__(config, name)
        self.init_spatial()
        value_range = self.get("value_range", (0, 255))
        if (not isinstance(value_range, (list, tuple)) or len(value_range) != 2
                or any(isinstance(v, bool) or not isinstance(v, (int, float)) for v in value_range)):
            raise self.fail(f"'value_range' must be a list of two numbers. Received: value_range={value_range!r}")
        self.low, self.high = sorted(float(v) for v in value_range)

    def output_shape(self, input_shape):
        self.check_rank(input_shape)
        return input_shape

    def forward(self, x):
        f32 = np.float32
        original = x
        y = x.astype(f32)
        if (self.low, self.high) != (0.0, 255.0):
            y = (y - f32(self.low)) / f32(self.high - self.low) * f32(255)
        axes = tuple(self.spatial_axes())
        low, high = y.min(axis=axes, keepdims=True), y.max(axis=axes, keepdims=True)  # (N, 1, 1, C)
        with np.errstate(divide="ignore", invalid="ignore"):
            scale = f32(255) / (high - low)
            y = np.clip(y * scale + (-low * scale), f32(0), f32(255))
        if (self.low, self.high) != (0.0, 255.0):
            y = y / f32(255) * f32(self.high - self.low) + f32(self.low)
        return np.where(np.isnan(y), original, y).astype(f32)  # a constant channel is 0 / 0: Keras keeps it

    def explain(self, input_shape, output_shape):
        return (f"stretches each image's channels to [{self.low:g}, {self.high:g}]; "
                f"{fmt_shape(input_shape)} unchanged; 0 params")
