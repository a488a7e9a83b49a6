"""Core layers: InputLayer, Dense, Flatten, Activation, Dropout.

References: keras/src/layers/core/dense.py, keras/src/layers/reshaping/flatten.py,
keras/src/layers/activations/activation.py.
"""
from __future__ import annotations

import math

import numpy as np

from ..errors import ShapeError
from .activations import (AXIS_ACTIVATIONS, BiasActivation, activation_name, activation_shape, get_activation,
                          in_place_activation, is_elementwise)
from .base import Layer, Weight, fmt_shape, register


@register("InputLayer")
class InputLayer(Layer):
    """The model input: holds its batch shape; forward is identity."""

    per_sample = True

    def __init__(self, config, name=None):
        super().__init__(config, name)
        shape = config.get("batch_shape")
        if not isinstance(shape, (list, tuple)) or not shape:
            raise self.fail(f"needs a 'batch_shape' like [null, 3, 2]. Received: batch_shape={shape!r}")
        for d in shape[1:]:
            if d is not None and (isinstance(d, bool) or not isinstance(d, int) or d < 0):
                raise self.fail(f"dimensions must be non-negative integers or null. Received: batch_shape={shape!r}")
        self.batch_shape = tuple(shape)

    def output_shape(self, input_shape):
        return self.batch_shape

    def forward(self, x):
        return x

    def explain(self, input_shape, output_shape):
        batch = "None (any size)" if self.batch_shape[0] is None else self.batch_shape[0]
        return f"the model input: batch axis {batch}, then {fmt_shape(self.batch_shape[1:])} per sample; 0 params"


class WithActivation(Layer):
    """A layer with an ``activation`` config key."""

    has_activation = True

    @property
    def pointwise_activation(self) -> bool:
        """The activation acts on each value alone (not softmax / glu... along the last axis)."""
        return self.activation_name not in AXIS_ACTIVATIONS

    def init_activation(self):
        self.activation_name = activation_name(self.config.get("activation"), self.where)
        self.activation = get_activation(self.activation_name, self.where)

    @property
    def where(self) -> str:
        return f"layer '{self.name}' ({self.class_name})"

    def epilogue(self, bias: np.ndarray | None) -> BiasActivation | None:
        """The bias add and an elementwise activation, in place on an output block (channels last)."""
        name = self.activation_name
        in_place = in_place_activation(name) if is_elementwise(name) else None
        return None if bias is None and in_place is None else BiasActivation(bias, in_place)

    def after_epilogue(self, y: np.ndarray) -> np.ndarray:
        """The activation when it is not elementwise (softmax, glu...): on the whole output."""
        return y if is_elementwise(self.activation_name) else self.activation(y)

    def activated_shape(self, shape):
        try:
            return activation_shape(self.activation_name, shape)
        except ShapeError as e:
            raise ShapeError(f"{self.where}: {e}") from None


@register("Dense")
class Dense(WithActivation):
    """y = activation(x @ kernel + bias), on the last axis of an input of any rank >= 2."""

    per_sample = True

    layout = "last_axis"
    supports_masking = True  # passes its input's mask on

    def __init__(self, config, name=None):
        super().__init__(config, name)
        self.units = self.positive_int("units")
        self.use_bias = bool(self.get("use_bias", True))
        if self.config.get("lora_rank"):
            raise self.fail(f"LoRA-enabled Dense is not supported. Received: lora_rank={self.config['lora_rank']}")
        if self.config.get("quantization_config"):
            raise self.fail("quantized Dense is not supported")
        self.init_activation()

    def _in_units(self, input_shape):
        if len(input_shape) < 2 or input_shape[-1] is None:
            raise ShapeError(f"{self.where}: expected an input of rank >= 2 with a known last axis. "
                             f"Received: input_shape={fmt_shape(input_shape)}")
        return input_shape[-1]

    def weights(self, input_shape):
        ws = [Weight("kernel", (self._in_units(input_shape), self.units))]
        return ws + [Weight("bias", (self.units,))] if self.use_bias else ws

    def output_shape(self, input_shape):
        self._in_units(input_shape)
        return self.activated_shape((*input_shape[:-1], self.units))

    def forward(self, x, kernel, bias=None):
        y = np.matmul(x, kernel)  # (..., in) @ (in, units) -> (..., units)
        epilogue = self.epilogue(bias)
        if epilogue is not None:
            epilogue(y)
        return self.after_epilogue(y)

    def fold_affine(self, weights: list, axis: int, ndim: int, scale: np.ndarray, shift: np.ndarray) -> list | None:
        """Weights for this layer then ``y * scale + shift`` on the last axis, with a bias (None: cannot)."""
        if self.activation_name != "linear" or axis != ndim - 1:
            return None
        kernel, bias = weights[0], weights[1] if self.use_bias else 0
        return [kernel * scale, bias * scale + shift]  # (in, units) * (units,)

    def explain(self, input_shape, output_shape):
        n_in = self._in_units(input_shape)
        where = "acts on the last axis" if len(input_shape) > 2 else "acts on the features"
        keep = (f"; the other axes {fmt_shape(input_shape[1:-1])} are kept and share the kernel"
                if len(input_shape) > 2 else "")
        total = n_in * self.units + (self.units if self.use_bias else 0)
        bias = f" + bias {self.units}" if self.use_bias else " (no bias)"
        act = f"; then {self.activation_name}" if self.activation_name != "linear" else ""
        return f"{where}, {n_in} -> {self.units}{keep}; kernel {n_in}x{self.units}{bias} = {total} params{act}"


@register("Flatten")
class Flatten(Layer):
    """Collapse every non-batch axis; channels_first moves channels last first (Keras order)."""

    per_sample = True

    layout = "flatten"

    def __init__(self, config, name=None):
        super().__init__(config, name)
        self.data_format = self.choice("data_format", ("channels_last", "channels_first"), "channels_last")

    def output_shape(self, input_shape):
        rest = input_shape[1:]
        if not rest:
            return (input_shape[0], 1)
        size = None if any(d is None for d in rest) else math.prod(rest)
        return (input_shape[0], size)

    def forward(self, x):
        if self.data_format == "channels_first" and x.ndim > 2:
            x = np.moveaxis(x, 1, -1)  # (N, C, ...) -> (N, ..., C)
        return x.reshape(x.shape[0], math.prod(x.shape[1:]))  # (N, d1, d2, ...) -> (N, d1*d2*...); N may be 0

    def explain(self, input_shape, output_shape):
        rest = input_shape[1:]
        if not rest:
            return "rank-1 input becomes (batch, 1); 0 params"
        prod = " * ".join(str(d) for d in rest)
        order = ("moves channels last, then " if self.data_format == "channels_first" and len(rest) > 1 else "")
        return f"{order}keeps the batch axis and multiplies the rest: {prod} = {output_shape[1]}; 0 params"


@register("Activation")
class Activation(WithActivation):
    """Apply a named activation elementwise (glu halves the last axis)."""

    per_sample = True

    @property
    def layout(self) -> str:
        return "elementwise" if self.pointwise_activation else "logical"
    supports_masking = True  # passes its input's mask on

    def __init__(self, config, name=None):
        super().__init__(config, name)
        self.init_activation()

    def output_shape(self, input_shape):
        return self.activated_shape(tuple(input_shape))

    def forward(self, x):
        return self.activation(x)

    def as_activation(self):
        return self.activation_name

    def explain(self, input_shape, output_shape):
        if output_shape == tuple(input_shape):
            return f"applies {self.activation_name} elementwise, shape unchanged; 0 params"
        return f"applies {self.activation_name}: {fmt_shape(input_shape)} -> {fmt_shape(output_shape)}; 0 params"


@register("Dropout")
class Dropout(Layer):
    """Identity at inference."""

    per_sample = True

    layout = "elementwise"
    inference_identity = True
    supports_masking = True  # passes its input's mask on

    def __init__(self, config, name=None):
        super().__init__(config, name)
        rate = self.get("rate", 0.0)
        if not isinstance(rate, (int, float)) or not 0 <= rate <= 1:
            raise self.fail(f"'rate' must be a number in [0, 1]. Received: rate={rate!r}")

    def forward(self, x):
        return x

    def explain(self, input_shape, output_shape):
        return "identity at inference (drops units only in training); 0 params"
