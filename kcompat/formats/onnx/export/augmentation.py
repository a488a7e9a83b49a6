"""ONNX exporter of the random augmentation layers (kcompat/layers/augmentation.py): the identity at inference,
cast to float32 where Keras casts (the layer's ``casts``). Every class registered from that module is
exported here, so a new augmentation layer needs no row in this file.
"""
from __future__ import annotations

from onnx import TensorProto

from ....layers import REGISTRY
from ....layers import augmentation as layers_module
from .registry import layer_exporter


def augmentation(ctx, layer, inputs, weights):
    x = inputs[0]
    if layer.casts and ctx.dtype(x) != "float32":
        return ctx.op("Cast", x, to=TensorProto.FLOAT)
    return x  # the driver adds the Identity that carries the layer's name


layer_exporter(*sorted({cls.class_name for cls in REGISTRY.values()
                        if cls.__module__ == layers_module.__name__}))(augmentation)
