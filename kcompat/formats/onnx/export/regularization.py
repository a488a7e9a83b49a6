"""ONNX exporters of the layers that are the identity at inference, and Masking.

Reference: kcompat/layers/regularization.py (what each computes at inference).
"""
from __future__ import annotations

from onnx import TensorProto

from .registry import layer_exporter, mask_exporter


@layer_exporter("Identity", "SpatialDropout1D", "SpatialDropout2D", "SpatialDropout3D", "GaussianDropout",
                "GaussianNoise", "AlphaDropout", "ActivityRegularization")
def identity(ctx, layer, inputs, weights):
    return inputs[0]  # the driver adds the Identity node that carries the layer's name


@layer_exporter("Masking")
def masking(ctx, layer, inputs, weights):
    x = inputs[0]
    same = ctx.op("Equal", x, ctx.const(float(layer.mask_value)))
    differs = ctx.op("Cast", ctx.op("Not", same), to=TensorProto.FLOAT)
    keep = ctx.op("Greater", ctx.reduce("ReduceMax", differs, [-1]), ctx.const(0.0))  # (N, T, 1): any feature differs
    return ctx.op("Where", keep, x, ctx.const(0.0))


@mask_exporter("Masking")
def masking_mask(ctx, layer, x, previous, keras2):
    differs = ctx.op("Cast", ctx.op("Not", ctx.op("Equal", x, ctx.const(float(layer.mask_value)))), to=TensorProto.FLOAT)
    return ctx.op("Cast", ctx.reduce("ReduceMax", differs, [-1], keepdims=0), to=TensorProto.BOOL)  # (N, T, F) -> (N, T)
