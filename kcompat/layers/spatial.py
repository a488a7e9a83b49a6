"""The base of every layer over 1-3 spatial axes (convolution, pooling, padding, cropping, upsampling).

``rank`` spatial axes placed by ``data_format`` (channels_last: (N, *spatial, C); channels_first:
(N, C, *spatial)), config helpers for per-axis integers and (before, after) pairs, and the shape checks
these layers share. Reference: keras/src/backend/config.py (standardize_data_format),
keras/src/utils/argument_validation.py (standardize_tuple).
"""
from __future__ import annotations

from typing import ClassVar

import numpy as np

from ..errors import ShapeError
from ..schema import MAX_DIM, shown
from .base import Layer, fmt_shape

DATA_FORMATS = ("channels_last", "channels_first")


class Spatial(Layer):
    """Shared plumbing for layers over ``rank`` spatial axes: data_format, tuples, shape checks."""

    rank: ClassVar[int] = 2
    has_data_format: ClassVar[bool] = True  # Cropping1D / UpSampling1D have none: always channels_last
    layout = "spatial"

    def init_spatial(self) -> None:
        """Read ``data_format`` (call from ``__init__``)."""
        self.data_format = (self.choice("data_format", DATA_FORMATS, "channels_last") if self.has_data_format
                            else "channels_last")
        self.channels_first = self.data_format == "channels_first"

    # -- config helpers
    def int_tuple(self, key: str, default=None, minimum: int = 1) -> tuple:
        """An int or a list of ``rank`` ints, each >= minimum."""
        value = self.get(key, default)
        if isinstance(value, (int, np.integer)) and not isinstance(value, bool):
            value = (value,) * self.rank
        ok = (isinstance(value, (list, tuple)) and len(value) == self.rank
              and all(isinstance(v, (int, np.integer)) and not isinstance(v, bool) and minimum <= v <= MAX_DIM
                      for v in value))
        if not ok:
            raise self.fail(f"'{key}' must be an integer or a list of {self.rank} integers from {minimum} to "
                            f"{MAX_DIM}. Received: {key}={shown(value)}")
        return tuple(int(v) for v in value)

    def pairs(self, key: str, default) -> tuple:
        """``padding`` / ``cropping``: an int, ``rank`` ints, or ``rank`` (before, after) pairs -> pairs."""
        value = self.get(key, default)
        if isinstance(value, int) and not isinstance(value, bool):
            value = [value] * self.rank if self.rank > 1 else [value, value]
        if self.rank == 1:  # 1D: one int or one (before, after) pair
            value = [value]
        if not isinstance(value, (list, tuple)) or len(value) != self.rank:
            raise self.fail(f"'{key}' must be an int or {self.rank} values. Received: {key}={shown(self.config.get(key))}")
        out = []
        for v in value:
            pair = (v, v) if isinstance(v, int) else tuple(v) if isinstance(v, (list, tuple)) else None
            if (pair is None or len(pair) != 2
                    or any(isinstance(p, bool) or not isinstance(p, int) or not 0 <= p <= MAX_DIM for p in pair)):
                raise self.fail(f"'{key}' values must be integers from 0 to {MAX_DIM} or pairs of them. "
                                f"Received: {key}={shown(self.config.get(key))}")
            out.append(pair)
        return tuple(out)

    # -- shapes
    def spatial_axes(self) -> list[int]:
        """The spatial axes of the input, batch axis included in the count."""
        first = 2 if self.channels_first else 1
        return list(range(first, first + self.rank))

    def check_rank(self, input_shape) -> None:
        if len(input_shape) != self.rank + 2:
            raise self.fail(f"expected an input of rank {self.rank + 2}. Received: input_shape={fmt_shape(input_shape)}")

    def split(self, shape) -> tuple:
        """(batch, spatial tuple, channels) of an input shape."""
        shape = tuple(shape)
        if len(shape) != self.rank + 2:
            raise ShapeError(f"layer '{self.name}' ({self.class_name}): expected an input of rank {self.rank + 2} "
                             f"(batch, {self.rank} spatial axes, channels). Received: input_shape={fmt_shape(shape)}")
        if self.channels_first:
            return shape[0], shape[2:], shape[1]
        return shape[0], shape[1:-1], shape[-1]

    def join(self, batch, spatial, channels) -> tuple:
        return (batch, channels, *spatial) if self.channels_first else (batch, *spatial, channels)

    def to_last(self, x: np.ndarray) -> np.ndarray:
        return np.moveaxis(x, 1, -1) if self.channels_first else x  # (N, C, *sp) -> (N, *sp, C)

    def from_last(self, y: np.ndarray) -> np.ndarray:
        return np.moveaxis(y, -1, 1) if self.channels_first else y  # (N, *sp, C) -> (N, C, *sp)

    def known_channels(self, shape) -> int:
        c = self.split(shape)[2]
        if c is None:
            raise ShapeError(f"layer '{self.name}' ({self.class_name}): the channel axis must be known. "
                             f"Received: input_shape={fmt_shape(tuple(shape))}")
        return c

    def check_positive(self, spatial_in, spatial_out, input_shape) -> None:
        if any(o is not None and o <= 0 for o in spatial_out):
            raise ShapeError(f"layer '{self.name}' ({self.class_name}): computed output size would be zero or "
                             f"negative: spatial {fmt_shape(spatial_in)} -> {fmt_shape(spatial_out)}. "
                             f"Received: input_shape={fmt_shape(tuple(input_shape))}, {self.describe_window()}")

    def describe_window(self) -> str:
        return ""
