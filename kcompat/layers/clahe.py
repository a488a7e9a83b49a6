"""ContrastLimitedAdaptiveHistogramEqualization (CLAHE), applied at inference too.

Reference: keras/src/layers/preprocessing/image_preprocessing/clahe.py, followed step by step: images
in [0, 255] padded (symmetric) to whole tiles; per tile and channel a 256-bin histogram of the
truncated pixel values, clipped at clip_limit * tile_pixels / 256 with the excess spread evenly; its
normalized cdf is the tile's mapping; each pixel blends the mappings of the four nearest tile centers
(edge tiles repeated). The result is cast back to the input dtype (truncated for integers, as Keras).
"""
from __future__ import annotations

import numpy as np

from .base import fmt_shape, register
from .spatial import Spatial


def tile_mappings(images: np.ndarray, grid: tuple, clip_limit: float) -> tuple[np.ndarray, np.ndarray, int, int]:
    """(padded images (N, Hp, Wp, C), per-tile cdf maps (N, gh + 2, gw + 2, C, 256) with edges repeated,
    tile height, tile width) for float images in [0, 255]."""
    n, h, w, c = images.shape
    gh, gw = grid
    th, tw = -(-h // gh), -(-w // gw)
    padded = np.pad(images, ((0, 0), (0, th * gh - h), (0, tw * gw - w), (0, 0)), mode="symmetric")
    tiles = padded.reshape(n, gh, th, gw, tw, c).transpose(0, 1, 3, 5, 2, 4).reshape(n, gh, gw, c, th * tw)
    values = np.clip(tiles.astype(np.int32), 0, 255)
    hist = (values[..., None] == np.arange(256)).sum(axis=-2).astype(np.float32)  # (N, gh, gw, C, 256)
    if clip_limit > 0:
        limit = np.float32(clip_limit * (th * tw) / 256.0)
        clipped = np.clip(hist, np.float32(0), limit)
        hist = clipped + np.sum(hist - clipped, axis=-1, keepdims=True) / np.float32(256)
    cdf = np.cumsum(hist, axis=-1)
    cdf_min = cdf.min(axis=-1, keepdims=True)
    denominator = np.float32(th * tw) - cdf_min
    denominator = np.where(denominator == 0, np.float32(1), denominator)
    cdf = np.clip((cdf - cdf_min) * np.float32(255) / denominator, 0, 255)
    cdf = np.concatenate([cdf[:, :1], cdf, cdf[:, -1:]], axis=1)
    cdf = np.concatenate([cdf[:, :, :1], cdf, cdf[:, :, -1:]], axis=2)  # (N, gh + 2, gw + 2, C, 256)
    return padded, cdf, th, tw


def tile_grid(size: int, tile: int, count: int):
    """Neighbouring tile rows (or columns) of each pixel and the weight of the second one."""
    pos = (np.arange(size, dtype=np.float32) - np.float32(tile / 2.0)) / np.float32(tile) + np.float32(1)
    lo = np.floor(pos)
    weight = pos - lo
    return (np.clip(lo, 0, count + 1).astype(np.int64), np.clip(lo + 1, 0, count + 1).astype(np.int64),
            weight.astype(np.float32))


@register("ContrastLimitedAdaptiveHistogramEqualization")
class ContrastLimitedAdaptiveHistogramEqualization(Spatial):
    """Per-tile clipped histogram equalization, blended between tile centers."""

    rank = 2

    def __init__(self, config, name=None):
        super().__init__(config, name)
        self.init_spatial()
        value_range = self.get("value_range", (0, 255))
        if not isinstance(value_range, (list, tuple)) or len(value_range) != 2:
            raise self.fail(f"'value_range' must be a list of two numbers. Received: value_range={value_range!r}")
        self.low, self.high = (float(v) for v in value_range)
        self.clip_limit = float(self.get("clip_limit", 4.0))
        self.grid = tuple(self.int_tuple("tile_grid_size", (8, 8)))

    def output_shape(self, input_shape):
        self.check_rank(input_shape)
        return input_shape

    def forward(self, x):
        f32 = np.float32
        images = self.to_last(x).astype(f32)
        if (self.low, self.high) != (0.0, 255.0):
            images = (images - f32(self.low)) / f32(self.high - self.low) * f32(255)
        n, h, w, c = images.shape
        padded, cdf, th, tw = tile_mappings(images, self.grid, self.clip_limit)
        y0, y1, wy = tile_grid(padded.shape[1], th, self.grid[0])
        x0, x1, wx = tile_grid(padded.shape[2], tw, self.grid[1])
        pixels = np.clip(padded, 0, 255).astype(np.int32)  # (N, Hp, Wp, C)
        b = np.arange(n)[:, None, None, None]
        ch = np.arange(c)[None, None, None, :]

        def at(ys, xs):
            return cdf[b, ys[None, :, None, None], xs[None, None, :, None], ch, pixels]

        wx_, wy_ = wx[None, None, :, None], wy[None, :, None, None]
        top = at(y0, x0) * (f32(1) - wx_) + at(y0, x1) * wx_
        bottom = at(y1, x0) * (f32(1) - wx_) + at(y1, x1) * wx_
        result = (top * (f32(1) - wy_) + bottom * wy_)[:, :h, :w, :]
        if (self.low, self.high) != (0.0, 255.0):
            result = result / f32(255) * f32(self.high - self.low) + f32(self.low)
        return self.from_last(result.astype(x.dtype))

    def explain(self, input_shape, output_shape):
        return (f"histogram equalization per {self.grid[0]}x{self.grid[1]} tile, clipped at {self.clip_limit:g}, "
                f"blended between tiles; {fmt_shape(input_shape)} unchanged; 0 params")
