"""EinsumDense: y = activation(einsum(equation, x, kernel) + bias), and the equation analysis it needs.

Reference: keras/src/layers/core/einsum_dense.py (``_analyze_einsum_string`` / ``_analyze_split_string``:
the kernel takes each axis's size from the output shape or the input shape; the bias spans the
output axes from the first of ``bias_axes`` to the end, size 1 where not a bias axis).
Two Keras bugs kcompat does not copy: with a leading ``...`` over two or more axes Keras declares
those axes reversed; and on TensorFlow its ``ops.add(x, bias)`` becomes an NCHW ``bias_add`` when the
bias squeezes to a vector the size of x's axis 1 but not of its last axis (a bias (2, 1) on x
(N, 2, 2, 1)), adding it along the wrong axis.
MultiHeadAttention and GroupedQueryAttention project with the same analysis (attention.py).
"""
from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np

from ..errors import ShapeError
from .base import Weight, fmt_shape, register
from .core import WithActivation

_FORMS = (  # (regex on the equation with "..." replaced by "0", ellipsis on the left)
    (re.compile(r"^([a-zA-Z]+),([a-zA-Z]+)->([a-zA-Z]+)$"), False),
    (re.compile(r"^0([a-zA-Z]+),([a-zA-Z]+)->0([a-zA-Z]+)$"), True),
    (re.compile(r"^([a-zA-Z]{2,})0,([a-zA-Z]+)->([a-zA-Z]+)0$"), False),
)


@dataclass(frozen=True)
class EinsumShapes:
    """What an equation makes of one input shape."""

    kernel: tuple
    bias: tuple | None
    output: tuple


def check_equation(equation: object) -> tuple[str, str, str, bool]:
    """(input spec, kernel spec, output spec, ellipsis on the left) of a Keras EinsumDense equation."""
    if isinstance(equation, str):
        flat = equation.replace("...", "0")
        for pattern, left in _FORMS:
            m = pattern.match(flat)
            if m:
                return m.group(1), m.group(2), m.group(3), left
    raise ValueError(f"equations must be of the form 'ab,bc->ac', '...b,bc->...c' or 'ab...,bc->ac...'. "
                     f"Received: equation={equation!r}")


def einsum_shapes(equation: str, bias_axes: str | None, input_shape: tuple, partial_output: tuple) -> EinsumShapes:
    """Kernel, bias and full output shape, as keras's ``_analyze_split_string`` computes them."""
    in_spec, w_spec, out_spec, left = check_equation(equation)
    elided = len(input_shape) - len(in_spec)
    if elided < 0 or (elided > 0 and "..." not in equation):
        raise ValueError(f"the input has rank {len(input_shape)} but the equation's input is {in_spec!r}")
    output = [input_shape[0], *partial_output]
    if elided > 0 and left:  # Keras inserts these one by one at position 1, reversing them in its declared
        output[1:1] = list(input_shape[1:elided])  # shape (a Keras bug); einsum keeps their order
    elif elided > 0:
        output += list(input_shape[len(input_shape) - elided:])
    if left:
        in_map = {d: i + elided - len(input_shape) for i, d in enumerate(in_spec)}
        out_map = {d: i + elided for i, d in enumerate(out_spec)}
    else:
        in_map = {d: i for i, d in enumerate(in_spec)}
        out_map = {d: i for i, d in enumerate(out_spec)}
    if len(output) != len(out_spec) + max(elided, 0):
        raise ValueError(f"output_shape {list(partial_output)} does not fit the output spec {out_spec!r}")
    for d in in_spec:
        if d in out_map and output[out_map[d]] is not None and output[out_map[d]] != input_shape[in_map[d]]:
            raise ValueError(f"input and output sizes differ at shared dimension {d!r}: "
                             f"{input_shape[in_map[d]]} != {output[out_map[d]]}")
    for d in out_spec:
        if d not in in_spec and d not in w_spec:
            raise ValueError(f"output dimension {d!r} is in neither the input nor the kernel spec")
    kernel = []
    for d in w_spec:
        if d in out_map:
            kernel.append(output[out_map[d]])
        elif d in in_map:
            kernel.append(input_shape[in_map[d]])
        else:
            raise ValueError(f"kernel dimension {d!r} is in neither the input nor the output spec")
    bias = None
    if bias_axes:
        missing = [c for c in bias_axes if c not in out_spec]
        if missing:
            raise ValueError(f"bias axes {missing} are not in the output spec {out_spec!r}")
        skip = elided if left else 0
        sizes = {c: output[i + skip] for i, c in enumerate(out_spec)}
        first = min(out_spec.find(c) for c in bias_axes)
        bias = [sizes[c] if c in bias_axes else 1 for c in out_spec[first:]]
        if not left:
            bias += [1] * max(elided, 0)
    if any(d is None for d in kernel) or (bias is not None and any(d is None for d in bias)):
        raise ValueError(f"the kernel needs known sizes; got kernel {kernel}, bias {bias}")
    return EinsumShapes(tuple(kernel), None if bias is None else tuple(bias), tuple(output))


def partial_output_shape(value: object) -> tuple:
    """EinsumDense's ``output_shape`` config: an int or a list of ints / nulls."""
    if isinstance(value, int) and not isinstance(value, bool):
        return (value,)
    if isinstance(value, (list, tuple)) and all(d is None or (isinstance(d, int) and not isinstance(d, bool))
                                                for d in value):
        return tuple(value)
    raise ValueError(f"'output_shape' must be an integer or a list of integers. Received: output_shape={value!r}")


@register("EinsumDense")
class EinsumDense(WithActivation):
    """y = activation(einsum(equation, x, kernel) + bias); bias over ``bias_axes``."""

    def __init__(self, config, name=None):
        super().__init__(config, name)
        self.equation = self.config.get("equation")
        self.bias_axes = self.config.get("bias_axes") or None
        try:
            check_equation(self.equation)
            self.partial = partial_output_shape(self.config.get("output_shape"))
        except ValueError as e:
            raise self.fail(str(e)) from None
        if self.bias_axes is not None and not isinstance(self.bias_axes, str):
            raise self.fail(f"'bias_axes' must be a string of output letters. Received: bias_axes={self.bias_axes!r}")
        if self.config.get("lora_rank"):
            raise self.fail(f"LoRA-enabled EinsumDense is not supported. Received: lora_rank={self.config['lora_rank']}")
        if self.config.get("quantization_config"):
            raise self.fail("quantized EinsumDense is not supported")
        self.init_activation()

    def shapes(self, input_shape) -> EinsumShapes:
        try:
            return einsum_shapes(self.equation, self.bias_axes, tuple(input_shape), self.partial)
        except ValueError as e:
            raise ShapeError(f"{self.where}: {e}. Received: equation={self.equation!r}, "
                             f"input_shape={fmt_shape(input_shape)}") from None

    def weights(self, input_shape):
        s = self.shapes(input_shape)
        return [Weight("kernel", s.kernel)] + ([Weight("bias", s.bias)] if s.bias is not None else [])

    def output_shape(self, input_shape):
        return self.activated_shape(self.shapes(input_shape).output)

    def forward(self, x, kernel, bias=None):
        y = np.einsum(self.equation, x, kernel, optimize=True)  # e.g. (N, T, D) x (D, H, K) -> (N, T, H, K)
        if bias is not None:
            y = y + bias
        return self.activation(y)

    def explain(self, input_shape, output_shape):
        s = self.shapes(input_shape)
        size = int(np.prod(s.kernel)) + (int(np.prod(s.bias)) if s.bias is not None else 0)
        bias = f" + bias {'x'.join(map(str, s.bias))}" if s.bias is not None else " (no bias)"
        act = f"; then {self.activation_name}" if self.activation_name != "linear" else ""
        return (f"einsum {self.equation!r}: {fmt_shape(input_shape)} -> {fmt_shape(output_shape)}; "
                f"kernel {'x'.join(map(str, s.kernel))}{bias} = {size} params{act}")
