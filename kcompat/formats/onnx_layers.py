"""ONNX exporters of the core layers and of Keras 3 op nodes (``x * 2``, ``ops.exp``).

Each is ``fn(ctx, layer, inputs, weights) -> ONNX tensor name`` (see onnx_export.py).
Reference: keras/src/layers/core/dense.py, keras/src/layers/reshaping/flatten.py,
keras/src/ops/numpy.py.
"""
from __future__ import annotations

from .onnx_export import exporter


@exporter("Dense")
def dense(ctx, layer, inputs, weights):
    x = inputs[0]
    kernel = ctx.const(weights[0], "kernel", dtype=None)  # (in, units): Keras and ONNX agree
    bias = [ctx.const(weights[1], "bias", dtype=None)] if layer.use_bias else []
    shape = ctx.shape(x)
    if len(shape) == 2:
        y = ctx.op("Gemm", x, kernel, *bias)  # (N, in) @ (in, units) + (units,)
    else:
        y = ctx.op("MatMul", x, kernel)  # (N, ..., in) @ (in, units) -> (N, ..., units)
        if bias:
            y = ctx.op("Add", y, bias[0])
    return ctx.activation(layer.activation_name, y, (*shape[:-1], layer.units))


@exporter("Flatten")
def flatten(ctx, layer, inputs, weights):
    x = inputs[0]
    rank = len(ctx.shape(x))
    if layer.data_format == "channels_first" and rank > 2:
        x = ctx.op("Transpose", x, perm=[0, *range(2, rank), 1])  # (N, C, ...) -> (N, ..., C)
    return ctx.op("Flatten", x, axis=1)  # (N, d1, d2, ...) -> (N, d1*d2*...)


@exporter("Activation")
def activation(ctx, layer, inputs, weights):
    return ctx.activation(layer.activation_name, inputs[0], ctx.shape(inputs[0]))


@exporter("Dropout")
def dropout(ctx, layer, inputs, weights):
    return inputs[0]  # identity at inference; the driver adds the Identity that carries the name


# ------------------------------------------------------------ Keras 3 op nodes
BINARY_OPS = {"Add": "Add", "Subtract": "Sub", "Multiply": "Mul", "Divide": "Div", "TrueDivide": "Div",
              "Maximum": "Max", "Minimum": "Min", "Power": "Pow"}
UNARY_OPS = {"Exp": "Exp", "Negative": "Neg", "Absolute": "Abs", "Abs": "Abs", "Sqrt": "Sqrt", "Log": "Log",
             "Tanh": "Tanh", "Sin": "Sin", "Cos": "Cos", "Floor": "Floor", "Ceil": "Ceil", "Sign": "Sign",
             "Reciprocal": "Reciprocal", "Erf": "Erf"}


def merge_operands(ctx, tensors: list) -> list[str]:
    """A merging layer's inputs; a lower-rank one gets size-1 axes after the batch axis, like Keras."""
    names = [ctx.operand(t) for t in tensors]
    ranks = [len(ctx.shapes[n]) if n in ctx.shapes else None for n in names]
    top = max((r for r in ranks if r is not None), default=None)
    return [n if r is None or r == top else ctx.op("Unsqueeze", n, ctx.ints(list(range(1, 1 + top - r)), "axes"))
            for n, r in zip(names, ranks)]  # (N, F) -> (N, 1.., F)


def _binary(onnx_op):
    def export(ctx, layer, inputs, weights):
        if isinstance(inputs[0], list):  # merging layer: [[a, b, ...]]
            operands = merge_operands(ctx, inputs[0])
        else:
            operands = [ctx.operand(t) for t in inputs[:2]]
        y = operands[0]
        for other in operands[1:]:
            y = ctx.op(onnx_op, y, other)
        return y
    return export


def _unary(onnx_op):
    def export(ctx, layer, inputs, weights):
        return ctx.op(onnx_op, ctx.operand(inputs[0]))
    return export


for _keras, _onnx in BINARY_OPS.items():
    exporter(_keras)(_binary(_onnx))
for _keras, _onnx in UNARY_OPS.items():
    exporter(_keras)(_unary(_onnx))


@exporter("Square")
def square(ctx, layer, inputs, weights):
    x = ctx.operand(inputs[0])
    return ctx.op("Mul", x, x)


@exporter("Reshape")
def reshape(ctx, layer, inputs, weights):
    if layer.config.get("target_shape") is not None:  # keras.layers.Reshape: batch kept
        target = [0, *layer.config["target_shape"]]
    else:  # ops.reshape(x, newshape)
        target = list(layer.config.get("newshape", ctx.kwargs.get("newshape")))
    return ctx.op("Reshape", inputs[0], ctx.ints(target, "shape"))


@exporter("Transpose")
def transpose(ctx, layer, inputs, weights):
    axes = layer.config.get("axes")
    rank = len(ctx.shape(inputs[0]))
    perm = list(range(rank))[::-1] if axes is None else [a % rank for a in axes]
    return ctx.op("Transpose", inputs[0], perm=perm)


# ------------------------------------------------------------ activation layers and nn op nodes
# Keras class -> (activation, its config key, Keras's default); one ONNX activation each.
ACTIVATION_CLASSES = {
    "Relu": ("relu", None, None), "Relu6": ("relu6", None, None), "Sigmoid": ("sigmoid", None, None),
    "Silu": ("silu", None, None), "LogSigmoid": ("log_sigmoid", None, None),
    "HardSigmoid": ("hard_sigmoid", None, None), "HardSilu": ("hard_silu", None, None),
    "Selu": ("selu", None, None), "Softplus": ("softplus", None, None), "Softsign": ("softsign", None, None),
    "SparsePlus": ("sparse_plus", None, None), "SparseSigmoid": ("sparse_sigmoid", None, None),
    "TanhShrink": ("tanh_shrink", None, None), "HardTanh": ("hard_tanh", None, None),
    "LeakyRelu": ("leaky_relu", "negative_slope", 0.2), "LeakyReLU": ("leaky_relu", "negative_slope", 0.3),
    "Elu": ("elu", "alpha", 1.0), "ELU": ("elu", "alpha", 1.0), "Celu": ("celu", "alpha", 1.0),
    "Gelu": ("gelu", "approximate", True), "Squareplus": ("squareplus", "b", 4),
    "HardShrink": ("hard_shrink", "threshold", 0.5), "SoftShrink": ("soft_shrink", "threshold", 0.5),
    "Softmax": ("softmax", "axis", -1), "LogSoftmax": ("log_softmax", "axis", -1),
}


def _activation_class(activation_name, key, default):
    def export(ctx, layer, inputs, weights):
        x = inputs[0]
        mask = ctx.kwargs.get("mask", inputs[1] if len(inputs) > 1 else None)  # the Softmax layer's mask
        if isinstance(mask, str):  # keep where True (or > 0.5), else -1e9; zeroed afterwards
            if ctx.dtype(mask) != "bool":
                mask = ctx.op("Greater", ctx.op("Cast", mask, to=1), ctx.const(0.5))  # 1 = FLOAT
            x = ctx.op("Where", mask, x, ctx.const(-1e9))
        params = {}
        if key is not None:
            value = layer.config.get(key)
            params[key] = default if value is None else value
        if isinstance(params.get("axis"), (list, tuple)) and len(params["axis"]) != 1:
            y = _softmax_axes(ctx, activation_name, x, params["axis"], len(ctx.shape(inputs[0])))
        else:
            if isinstance(params.get("axis"), (list, tuple)):
                params["axis"] = params["axis"][0]
            y = ctx.activation(activation_name, x, ctx.shape(inputs[0]), **params)
        return ctx.op("Where", mask, y, ctx.const(0.0)) if isinstance(mask, str) else y
    return export


def _softmax_axes(ctx, activation_name: str, x: str, axes, rank: int) -> str:
    """(Log)softmax over several axes at once: exp(x - max) / sum(exp(x - max)) over all of them."""
    axes = sorted(a % rank for a in axes)
    shifted = ctx.op("Sub", x, ctx.reduce("ReduceMax", x, axes))
    e = ctx.op("Exp", shifted)
    total = ctx.reduce("ReduceSum", e, axes)
    if activation_name == "log_softmax":
        return ctx.op("Sub", shifted, ctx.op("Log", total))
    return ctx.op("Div", e, total)


for _keras, (_act, _key, _default) in ACTIVATION_CLASSES.items():
    exporter(_keras)(_activation_class(_act, _key, _default))


@exporter("ReLU")
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


@exporter("PReLU")
def prelu(ctx, layer, inputs, weights):
    return ctx.op("PRelu", inputs[0], ctx.const(weights[0], "alpha", dtype=None))  # alpha: input_shape[1:]


exporter("Identity", "SpatialDropout1D", "SpatialDropout2D", "SpatialDropout3D", "GaussianDropout",
         "GaussianNoise", "AlphaDropout", "ActivityRegularization")(dropout)


@exporter("Concatenate")
def concatenate(ctx, layer, inputs, weights):
    tensors = inputs[0] if isinstance(inputs[0], list) else inputs
    axis = layer.config.get("axis")
    return ctx.op("Concat", *[ctx.operand(t) for t in tensors], axis=-1 if axis is None else int(axis))


@exporter("Permute")
def permute(ctx, layer, inputs, weights):
    return ctx.op("Transpose", inputs[0], perm=[0, *[int(d) for d in layer.config["dims"]]])


@exporter("ExpandDims")
def expand_dims(ctx, layer, inputs, weights):
    axis = layer.config.get("axis")
    axes = list(axis) if isinstance(axis, (list, tuple)) else [axis]
    return ctx.op("Unsqueeze", inputs[0], ctx.ints(axes, "axes"))


@exporter("Squeeze")
def squeeze(ctx, layer, inputs, weights):
    axis = layer.config.get("axis")
    if axis is None:
        return ctx.op("Squeeze", inputs[0])
    axes = list(axis) if isinstance(axis, (list, tuple)) else [axis]
    return ctx.op("Squeeze", inputs[0], ctx.ints(axes, "axes"))


def _reduction(onnx_op):
    def export(ctx, layer, inputs, weights):
        x = inputs[0]
        axis = layer.config.get("axis")
        keep = int(bool(layer.config.get("keepdims", False)))
        if axis is None:
            axis = list(range(len(ctx.shape(x))))
        axes = list(axis) if isinstance(axis, (list, tuple)) else [axis]
        return ctx.reduce(onnx_op, x, axes, keep)
    return export


for _keras, _onnx in {"Mean": "ReduceMean", "Sum": "ReduceSum", "Max": "ReduceMax", "Min": "ReduceMin"}.items():
    exporter(_keras)(_reduction(_onnx))


@exporter("Matmul")
def matmul(ctx, layer, inputs, weights):
    return ctx.op("MatMul", ctx.operand(inputs[0]), ctx.operand(inputs[1]))


@exporter("Clip")
def clip(ctx, layer, inputs, weights):
    lo, hi = layer.config.get("x_min"), layer.config.get("x_max")
    bounds = [ctx.const(float(v)) if v is not None else "" for v in (lo, hi)]
    return ctx.op("Clip", ctx.operand(inputs[0]), *bounds)
