"""Layer base class and registry: ``@register("Dense")`` next to each layer's definition.

A layer knows its Keras config (validated in ``__init__``), the shapes of its weights in
Keras order (``weights``), its ``output_shape`` and its NumPy ``forward``. Shapes are
tuples with ``None`` for unknown dimensions (the batch). Plumbing lives here so each
layer body stays the math and nothing else (like onnx/reference/ops/op_relu.py).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np

from ..errors import ConfigError, UnsupportedError
from ..schema import MAX_DIM, shown

Shape = tuple  # (None, 3, 2)

REGISTRY: dict[str, type["Layer"]] = {}
OP_REGISTRY: dict[str, type["Layer"]] = {}


def register(*class_names: str, op: bool = False):
    """Class decorator: make a layer available under its Keras class name(s)."""
    def wrap(cls):
        for name in class_names:
            (OP_REGISTRY if op else REGISTRY)[name] = cls
        cls.class_name = class_names[0]
        return cls
    return wrap


@dataclass(frozen=True)
class Weight:
    """A weight's Keras name, shape and trainability (moving statistics are not trainable)."""

    name: str
    shape: tuple
    trainable: bool = True


class Layer:
    """Base: one Keras layer. Subclasses override ``weights``, ``output_shape``, ``forward``."""

    class_name: ClassVar[str] = "Layer"
    # Facts other modules read (formats/, verify/): kept here, never as class-name lists elsewhere.
    has_activation: ClassVar[bool] = False  # an ``activation`` config key applied last (Dense, Conv*)
    tf_bias_add: ClassVar[bool] = False  # Keras 3 on TF adds the bias with ops.add, which becomes an NHWC
    # bias_add when the last axis has the bias's size: wrong for channels_first (verify names it)

    def __init__(self, config: dict, name: str | None = None):
        self.config = config
        self.name = name or config.get("name", self.class_name)

    # -- config helpers: Keras-style messages, "expected ... Received: units=-3"
    def get(self, key: str, default: Any = None) -> Any:
        """A config value, with ``default`` when the key is absent or None."""
        value = self.config.get(key)
        return default if value is None else value

    def fail(self, message: str) -> ConfigError:
        """A ConfigError naming this layer."""
        return ConfigError(f"layer '{self.name}' ({self.class_name}): {message}")

    def positive_int(self, key: str, default: Any = None, maximum: int = MAX_DIM) -> int:
        """A config value that must be an integer from 1 to ``maximum`` (a size no model has is refused
        here, before any shape or weight is computed from it)."""
        value = self.get(key, default)
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or not 1 <= value <= maximum:
            raise self.fail(f"'{key}' must be a positive integer (at most {maximum}). Received: {key}={shown(value)}")
        return int(value)

    def choice(self, key: str, options: tuple, default: Any = None) -> Any:
        """A config value that must be one of ``options``."""
        value = self.get(key, default)
        if isinstance(value, str):
            value = value.lower()
        if value not in options:
            raise UnsupportedError(
                f"layer '{self.name}' ({self.class_name}): '{key}' must be one of {list(options)}. "
                f"Received: {key}={value!r}")
        return value

    # -- the contract
    def weights(self, input_shape: Any) -> list[Weight]:
        """Weights in Keras order for this input shape (none by default)."""
        return []

    def output_shape(self, input_shape: Any) -> Any:
        """Output shape for an input shape (identity by default)."""
        return input_shape

    def forward(self, x: Any, *weights: np.ndarray) -> Any:
        """The NumPy computation."""
        raise NotImplementedError

    # -- how a call node is applied; op nodes override these to see every argument
    def call_node(self, args: list, kwargs: dict, weights: list[np.ndarray]) -> Any:
        """Run one call node: by default the first argument is the layer input."""
        return self.forward(args[0], *weights)

    def node_input_shape(self, args: list, kwargs: dict) -> Any:
        """The input shape used for ``weights`` / ``output_shape`` from shape-valued args."""
        return args[0]

    def node_output_shape(self, args: list, kwargs: dict) -> Any:
        """Output shape of one call node given shape-valued args."""
        return self.output_shape(self.node_input_shape(args, kwargs))

    def param_count(self, input_shape: Any) -> tuple[int, int]:
        """(trainable, non-trainable) parameter counts."""
        t = n = 0
        for w in self.weights(input_shape):
            size = weight_size(w)
            if w.trainable:
                t += size
            else:
                n += size
        return t, n

    def explain(self, input_shape: Any, output_shape: Any) -> str:
        """Shape and parameter arithmetic in words (overridden by layers with something to say)."""
        ws = self.weights(input_shape)
        if not ws:
            return f"{_fmt(input_shape)} -> {_fmt(output_shape)}; no weights, 0 params"
        parts = " + ".join(f"{w.name} {'x'.join(str(d) for d in w.shape)}" for w in ws)
        total = sum(self.param_count(input_shape))
        return f"{_fmt(input_shape)} -> {_fmt(output_shape)}; {parts} = {total} params"


def weight_size(w: Weight) -> int:
    """Elements of a weight, as an exact Python integer (np.prod would wrap around past 2**63)."""
    n = 1
    for d in w.shape:
        n *= int(d)
    return n


def _fmt(shape: Any) -> str:
    if isinstance(shape, list):
        return "[" + ", ".join(_fmt(s) for s in shape) + "]"
    return "(" + ", ".join("None" if d is None else str(d) for d in shape) + ("," if len(shape) == 1 else "") + ")"


def fmt_shape(shape: Any) -> str:
    """Keras's way of writing a shape: (None, 3, 16)."""
    return _fmt(shape)


def make_layer(class_name: str, config: dict, name: str, is_op: bool = False, source: str = "") -> Layer:
    """Instantiate a registered layer; unknown classes are refused by name."""
    table = OP_REGISTRY if is_op else REGISTRY
    cls = table.get(class_name)
    if cls is None:
        kind = "Keras op" if is_op else "layer class"
        prefix = f"{source}: " if source else ""
        raise UnsupportedError(f"{prefix}layer '{name}': unknown or unsupported {kind} {class_name!r}")
    return cls(config, name)
