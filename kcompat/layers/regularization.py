"""Layers that are the identity at inference (noise, dropout, activity regularizers), Identity, Masking.

References: keras/src/layers/regularization/*.py, keras/src/layers/core/identity.py,
keras/src/layers/core/masking.py. kcompat runs inference only, so the random branches never run.
All of them pass their input's Keras mask on; Masking makes one (kcompat/masks.py carries it).
"""
from __future__ import annotations

import numpy as np

from .base import Layer, register


class InferenceIdentity(Layer):
    layout = "elementwise"

    """Returns its input; ``what`` says what the layer does in training."""

    what = "identity"
    inference_identity = True
    per_sample = True
    rank: int | None = None  # input rank Keras checks (SpatialDropout), if any
    rate_key: str | None = "rate"
    supports_masking = True  # passes its input's mask on

    def __init__(self, config, name=None):
        super().__init__(config, name)
        if self.rate_key is not None:
            rate = self.get(self.rate_key, 0.0)
            if isinstance(rate, bool) or not isinstance(rate, (int, float)) or not 0 <= rate <= 1:
                raise self.fail(f"'{self.rate_key}' must be a number in [0, 1]. Received: {self.rate_key}={rate!r}")

    def output_shape(self, input_shape):
        if self.rank is not None and len(input_shape) != self.rank:
            raise self.fail(f"expected an input of rank {self.rank}. Received: input_shape={input_shape}")
        return input_shape

    def forward(self, x):
        return x

    def explain(self, input_shape, output_shape):
        return f"identity at inference ({self.what} only in training); 0 params"


@register("SpatialDropout1D")
class SpatialDropout1D(InferenceIdentity):
    what, rank = "drops whole channels", 3


@register("SpatialDropout2D")
class SpatialDropout2D(InferenceIdentity):
    what, rank = "drops whole channels", 4


@register("SpatialDropout3D")
class SpatialDropout3D(InferenceIdentity):
    what, rank = "drops whole channels", 5


@register("GaussianNoise")
class GaussianNoise(InferenceIdentity):
    what, rate_key = "adds gaussian noise", "stddev"


@register("GaussianDropout")
class GaussianDropout(InferenceIdentity):
    what = "multiplies by gaussian noise"


@register("AlphaDropout")
class AlphaDropout(InferenceIdentity):
    what = "drops units keeping SELU statistics"


@register("ActivityRegularization")
class ActivityRegularization(InferenceIdentity):
    what, rate_key = "adds an activity penalty to the loss", None


@register("Identity")
class Identity(InferenceIdentity):
    """The identity, in training too."""

    what, rate_key = "always identity; nothing", None
    inference_identity = False  # not an inference-time shortcut: the layer's whole math
    keras2_supports_masking = False  # tf_keras's Identity drops a mask

    def explain(self, input_shape, output_shape):
        return "identity; 0 params"


@register("Masking")
class Masking(Layer):
    """Zero the timesteps whose features all equal ``mask_value``; the mask marks the other timesteps."""

    supports_masking = True
    creates_mask = True

    def __init__(self, config, name=None):
        super().__init__(config, name)
        self.mask_value = self.get("mask_value", 0.0)
        if isinstance(self.mask_value, bool) or not isinstance(self.mask_value, (int, float)):
            raise self.fail(f"'mask_value' must be a number. Received: mask_value={self.mask_value!r}")

    def forward(self, x):
        keep = np.any(x != np.asarray(self.mask_value, x.dtype), axis=-1, keepdims=True)  # (N, T, 1)
        return np.where(keep, x, np.asarray(0, x.dtype))

    def compute_mask(self, inputs, mask, keras2=False):
        return np.any(inputs != np.asarray(self.mask_value, inputs.dtype), axis=-1)  # (N, T, F) -> (N, T)

    def explain(self, input_shape, output_shape):
        return (f"zeroes timesteps whose features all equal {self.mask_value} and masks them for the layers "
                f"after it (recurrent layers skip them); 0 params")
