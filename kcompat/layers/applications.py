"""The layer classes keras.applications defines for its own models: LayerScale and StochasticDepth
(ConvNeXt), CustomScaleLayer (InceptionResNetV2).

References: keras/src/applications/convnext.py, keras/src/applications/inception_resnet_v2.py (and the
same classes in tf_keras/src/applications). A Keras 3 config names them with ``module``
``keras.src.applications.<model>``; a Keras 2 .h5 has no module and calls the last one
``Custom>CustomScaleLayer``. A class of the same name from any other module is a user's, and is refused.
"""
from __future__ import annotations

import numpy as np

from .base import Layer, Weight, fmt_shape, register

CONVNEXT = ("keras.src.applications.convnext", "keras.applications.convnext", "tf_keras.src.applications.convnext")
INCEPTION_RESNET_V2 = ("keras.src.applications.inception_resnet_v2", "keras.applications.inception_resnet_v2",
                       "tf_keras.src.applications.inception_resnet_v2")


@register("LayerScale")
class LayerScale(Layer):
    """x * gamma, one learned scale per channel (last axis)."""

    keras_modules = CONVNEXT

    def __init__(self, config, name=None):
        super().__init__(config, name)
        self.projection_dim = self.positive_int("projection_dim")

    def weights(self, input_shape):
        return [Weight("variable", (self.projection_dim,))]  # Keras 3's name (add_weight without one)

    def output_shape(self, input_shape):
        if input_shape[-1] not in (None, self.projection_dim, 1):
            raise self.fail(f"expects a last axis of {self.projection_dim} (projection_dim). "
                            f"Received: input_shape={fmt_shape(input_shape)}")
        return (*input_shape[:-1], self.projection_dim) if input_shape[-1] == 1 else tuple(input_shape)

    def forward(self, x, gamma):
        return x * gamma  # (..., C) * (C,)

    def explain(self, input_shape, output_shape):
        return f"multiplies each of the {self.projection_dim} channels by its own scale; gamma {self.projection_dim} " \
               f"= {self.projection_dim} params"


@register("StochasticDepth")
class StochasticDepth(Layer):
    """Identity at inference (drops the whole residual branch per batch in training)."""

    keras_modules = CONVNEXT
    inference_identity = True

    def __init__(self, config, name=None):
        super().__init__(config, name)
        rate = self.get("drop_path_rate", 0.0)
        if isinstance(rate, bool) or not isinstance(rate, (int, float)) or not 0 <= rate <= 1:
            raise self.fail(f"'drop_path_rate' must be a number in [0, 1]. Received: drop_path_rate={rate!r}")

    def forward(self, x):
        return x

    def explain(self, input_shape, output_shape):
        return "identity at inference (drops the residual branch only in training); 0 params"


@register("CustomScaleLayer", "Custom>CustomScaleLayer")
class CustomScaleLayer(Layer):
    """inputs[0] + inputs[1] * scale: InceptionResNetV2's scaled residual."""

    keras_modules = INCEPTION_RESNET_V2

    def __init__(self, config, name=None):
        super().__init__(config, name)
        self.scale = self.config.get("scale")
        if isinstance(self.scale, bool) or not isinstance(self.scale, (int, float)):
            raise self.fail(f"'scale' must be a number. Received: scale={self.scale!r}")

    def output_shape(self, input_shape):
        if not isinstance(input_shape, list) or len(input_shape) != 2:
            raise self.fail(f"expects a list of 2 inputs [shortcut, residual]. Received: {fmt_shape(input_shape)}")
        a, b = input_shape
        if len(a) != len(b) or any(x is not None and y is not None and x != y and 1 not in (x, y) for x, y in zip(a, b)):
            raise self.fail(f"the two inputs must broadcast. Received: {fmt_shape(input_shape)}")
        return tuple(x if y in (None, 1) else y for x, y in zip(a, b))

    def forward(self, x):
        shortcut, residual = x
        return shortcut + residual * np.asarray(self.scale, residual.dtype)

    def explain(self, input_shape, output_shape):
        return f"shortcut + residual * {self.scale}; 0 params"
