"""ONNX exporters of keras.applications' own layers: LayerScale (x * gamma), StochasticDepth (the identity at
inference), CustomScaleLayer (shortcut + residual * scale).

Reference: kcompat/layers/applications.py.
"""
from __future__ import annotations

from .registry import layer_exporter


@layer_exporter("LayerScale")
def layer_scale(ctx, layer, inputs, weights):
    return ctx.op("Mul", inputs[0], ctx.const(weights[0], "gamma", dtype=None))  # (..., C) * (C,)


@layer_exporter("StochasticDepth")
def stochastic_depth(ctx, layer, inputs, weights):
    return inputs[0]  # the driver adds the Identity that carries the layer's name


@layer_exporter("CustomScaleLayer")
def custom_scale(ctx, layer, inputs, weights):
    shortcut, residual = inputs[0] if isinstance(inputs[0], list) else inputs
    return ctx.op("Add", shortcut, ctx.op("Mul", residual, ctx.const(float(layer.scale), "scale")))
