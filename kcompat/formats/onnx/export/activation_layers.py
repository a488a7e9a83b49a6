"""ONNX exporters of the activation layers: ReLU, PReLU, LeakyReLU, ELU, Softmax.

Reference: kcompat/layers/activation_layers.py; keras/src/layers/activations/*.py.
"""
from __future__ import annotations

from .activations import activation_node
from .registry import layer_exporter

layer_exporter("LeakyReLU")(activation_node("leaky_relu", "negative_slope", 0.3))
layer_exporter("ELU")(activation_node("elu", "alpha", 1.0))
layer_exporter("Softmax")(activation_node("softmax", "axis", -1))  # with its optional mask input


@layer_exporter("ReLU")
def relu_layer(ctx, layer, inputs, weights):
    """Keras's ReLU.static_call: x above threshold (clipped at max_value), else slope * (x - threshold)."""
    x = inputs[0]
    slope, threshold, max_value = layer.negative_slope, layer.threshold, layer.max_value
    if slope and max_value is None and not threshold:
        return ctx.op("LeakyRelu", x, alpha=slope)
    if threshold:
        y = ctx.op("Where", ctx.op("Greater", x, ctx.const(threshold)), x, ctx.const(0.0))
    else:
        y = ctx.op("Relu", x)
    if max_value is not None:
        y = ctx.op("Clip", y, ctx.const(0.0), ctx.const(max_value))
    if slope:  # y - slope * relu(threshold - x)
        below = ctx.op("Relu", ctx.op("Sub", ctx.const(threshold), x))
        y = ctx.op("Sub", y, ctx.op("Mul", ctx.const(slope), below))
    return y


@layer_exporter("PReLU")
def prelu(ctx, layer, inputs, weights):
    return ctx.op("PRelu", inputs[0], ctx.const(weights[0], "alpha", dtype=None))  # alpha: input_shape[1:]
