"""ONNX exporter of EinsumDense: a MatMul where the equation is a plain dense ('abc,cd->abd'), else one Einsum
on the constant kernel; then the bias (broadcast over the trailing output axes, as NumPy and ONNX agree)
and the activation.

Reference: kcompat/layers/einsum_dense.py.
"""
from __future__ import annotations

from ....layers.einsum_dense import check_equation
from .registry import layer_exporter


def plain_dense(equation: str) -> bool:
    """'...x,xy->...y' with every input axis but the last kept in order: x @ kernel."""
    in_spec, w_spec, out_spec, left = check_equation(equation)
    return (not left and "..." not in equation and len(w_spec) == 2 and in_spec[-1] == w_spec[0]
            and out_spec == in_spec[:-1] + w_spec[1] and w_spec[1] not in in_spec)


def einsum(ctx, equation: str, x: str, kernel: str) -> str:
    if plain_dense(equation):
        return ctx.op("MatMul", x, kernel)  # (N, ..., in) @ (in, out)
    return ctx.op("Einsum", x, kernel, equation=equation)


@layer_exporter("EinsumDense")
def einsum_dense(ctx, layer, inputs, weights):
    x = inputs[0]
    y = einsum(ctx, layer.equation, x, ctx.const(weights[0], "kernel", dtype=None))
    if len(weights) > 1:
        y = ctx.op("Add", y, ctx.const(weights[1], "bias", dtype=None))
    return ctx.activation(layer.activation_name, y, layer.output_shape(ctx.shape(x)))
