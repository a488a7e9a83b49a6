"""Shared by the ONNX tests: Keras test models, ONNX runners, PyTorch-style graphs built with onnx.helper."""
from __future__ import annotations

import numpy as np

from kcompat.layers.activations import ACTIVATIONS

ACTIVATION_NAMES = sorted(a for a in ACTIVATIONS if a not in ("swish", "hard_swish"))  # aliases
ATOL, RTOL = 1e-5, 1e-4


# ------------------------------------------------------------------ Keras models (real Keras as the oracle)
def activations_model(keras):
    """Every activation twice: in a Dense on a rank-2 input (Gemm) and as an Activation on rank 3."""
    x2 = keras.Input((8,), name="flat_in")
    x3 = keras.Input((6, 8), name="seq_in")
    outs = []
    for a in ACTIVATION_NAMES:
        outs.append(keras.layers.Dense(8, activation=a, name=f"dense_{a}")(x2))
        outs.append(keras.layers.Activation(a, name=f"act_{a}")(x3))
    return keras.Model([x2, x3], outs, name="activations")


def activation_inputs(batch=3):
    rng = np.random.default_rng(0)
    x2 = (rng.normal(size=(batch, 8)) * 2).astype(np.float32)
    x3 = (rng.normal(size=(batch, 6, 8)) * 3).astype(np.float32)
    x3[0, 0] = [1000, -1000, 30, -30, 0, 1, -1, 0.5]  # stability at large |x|, kinks at 0 and +-1
    x3[0, 1] = [-3, 3, 6, -6, 0.25, -0.25, 2, -2]
    return [x2, x3]


def dense_flatten_model(keras):
    """Dense with and without bias on ranks 2-5; Flatten in both data formats on ranks 2-5."""
    inputs = [keras.Input(shape, name=f"in_rank{len(shape) + 1}") for shape in [(5,), (3, 5), (2, 3, 5), (2, 2, 3, 5)]]
    outs = []
    for x in inputs:
        rank = len(x.shape)
        outs.append(keras.layers.Dense(4, name=f"dense_r{rank}")(x))
        outs.append(keras.layers.Dense(4, use_bias=False, activation="relu", name=f"nobias_r{rank}")(x))
        for fmt in ("channels_last", "channels_first"):
            f = keras.layers.Flatten(data_format=fmt, name=f"flat_{fmt[9:]}_r{rank}")(x)
            outs.append(keras.layers.Dense(3, name=f"after_{fmt[9:]}_r{rank}")(f))
    return keras.Model(inputs, outs, name="dense_flatten")


def dense_flatten_inputs(batch=2):
    rng = np.random.default_rng(1)
    return [rng.normal(size=(batch, *s)).astype(np.float32) for s in [(5,), (3, 5), (2, 3, 5), (2, 2, 3, 5)]]


def randomize_biases(model, seed=0):
    """Non-zero biases, so a dropped bias Add would show."""
    rng = np.random.default_rng(seed)
    for layer in model.layers:
        ws = layer.get_weights()
        if ws:
            layer.set_weights([w if w.ndim > 1 else rng.normal(0, 0.5, w.shape).astype(w.dtype) for w in ws])
    return model


# ------------------------------------------------------------------ running ONNX
def run_onnx(model, feeds: dict, outputs: list | None = None) -> list:
    """onnxruntime, or onnx's reference evaluator for opsets onnxruntime no longer runs (< 7)."""
    import onnx
    if isinstance(model, (str, bytes)) or hasattr(model, "__fspath__"):
        model = onnx.load(str(model))
    opset = next(o.version for o in model.opset_import if o.domain in ("", "ai.onnx"))
    if opset < 7:
        from onnx.reference import ReferenceEvaluator
        return ReferenceEvaluator(model).run(outputs, feeds)
    import onnxruntime as ort
    options = ort.SessionOptions()
    options.log_severity_level = 3
    session = ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])
    return session.run(outputs, feeds)


def assert_close(ours, ref, what=""):
    ours, ref = np.asarray(ours), np.asarray(ref)
    assert ours.shape == ref.shape, f"{what}: shape {ours.shape} != {ref.shape}"
    np.testing.assert_allclose(ours, ref, atol=ATOL, rtol=RTOL, err_msg=what)


# ------------------------------------------------------------------ PyTorch-exporter-style graphs
def torch_style(opset: int, ir_version: int | None = None):
    """Graphs shaped like torch.onnx output: Gemm(transB=1), Transpose+MatMul, activations, softmax axes.

    Returns {name: (ModelProto, input shape)}: one module per graph, as a PyTorch user exports it.
    """
    from onnx import TensorProto, helper, numpy_helper
    rng = np.random.default_rng(opset)

    def w(*shape):
        return rng.normal(0, 0.5, shape).astype(np.float32)

    graphs = {}

    def model(name, nodes, in_shape, out_shape, inits):
        inits = {k: (v if isinstance(v, np.ndarray) else np.asarray(v, np.float32)) for k, v in inits.items()}
        inputs = [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["batch", *in_shape[1:]])]
        tensors = [numpy_helper.from_array(v, k) for k, v in inits.items()]
        if opset < 7:  # IR 3: initializers are graph inputs too
            inputs += [helper.make_tensor_value_info(k, helper.np_dtype_to_tensor_dtype(v.dtype), v.shape)
                       for k, v in inits.items()]
        out = helper.make_tensor_value_info("output", TensorProto.FLOAT, ["batch", *out_shape[1:]])
        graph = helper.make_graph(nodes, f"torch_{name}", inputs, [out], tensors)
        proto = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)], producer_name="pytorch")
        proto.ir_version = ir_version or (3 if opset < 7 else helper.find_min_ir_version_for(proto.opset_import))
        graphs[name] = (proto, in_shape)

    n = helper.make_node
    gemm_extra = {"broadcast": 1} if opset < 7 else {}
    # Linear -> ReLU -> Linear -> Softmax(dim=1): Gemm with transB=1, (units, in) weights
    model("mlp", [n("Gemm", ["input", "fc1.weight", "fc1.bias"], ["/fc1/Gemm_output_0"], name="/fc1/Gemm",
                    transB=1, **gemm_extra),
                  n("Relu", ["/fc1/Gemm_output_0"], ["/act/Relu_output_0"], name="/act/Relu"),
                  n("Gemm", ["/act/Relu_output_0", "fc2.weight", "fc2.bias"], ["/fc2/Gemm_output_0"], name="/fc2/Gemm",
                    transB=1, **gemm_extra),
                  n("Softmax", ["/fc2/Gemm_output_0"], ["output"], name="/softmax/Softmax", axis=1)],
          (None, 6), (None, 3), {"fc1.weight": w(8, 6), "fc1.bias": w(8), "fc2.weight": w(3, 8), "fc2.bias": w(3)})
    # Transpose + MatMul (+ Add) on a 3-D input, activations, LogSoftmax on the last axis
    acts = [("LeakyRelu", {"alpha": 0.01}), ("Elu", {"alpha": 1.0}), ("Selu", {}), ("Softplus", {}),
            ("Softsign", {}), ("Sigmoid", {}), ("Tanh", {}), ("HardSigmoid", {"alpha": 1 / 6, "beta": 0.5}),
            ("HardSigmoid", {}), ("LeakyRelu", {"alpha": 0.2}), ("Elu", {"alpha": 0.5})]
    nodes, prev = [], "input"
    nodes.append(n("Transpose", ["lin.weight"], ["/lin/Transpose_output_0"], name="/lin/Transpose", perm=[1, 0]))
    nodes.append(n("MatMul", ["input", "/lin/Transpose_output_0"], ["/lin/MatMul_output_0"], name="/lin/MatMul"))
    nodes.append(n("Add", ["lin.bias", "/lin/MatMul_output_0"], ["/lin/Add_output_0"], name="/lin/Add"))
    prev = "/lin/Add_output_0"
    for i, (op, attrs) in enumerate(acts):
        out = f"/act{i}/{op}_output_0"
        nodes.append(n(op, [prev], [out], name=f"/act{i}/{op}", **attrs))
        prev = out
    nodes.append(n("LogSoftmax", [prev], ["output"], name="/logsoftmax/LogSoftmax", axis=2))
    if opset >= 7:
        model("acts_3d", nodes, (None, 4, 6), (None, 4, 5), {"lin.weight": w(5, 6), "lin.bias": w(5)})
    # Softmax over axis 1 of a 3-D input: before opset 13 that flattens axes 1 and 2 together
    model("softmax_axis1", [n("Softmax", ["input"], ["output"], name="/sm/Softmax", axis=1)], (None, 3, 4), (None, 3, 4), {})
    if opset >= 9:
        # decomposed patterns: gelu (erf form), softsign x / (1 + |x|), glu (Split + Sigmoid + Mul)
        sqrt2 = np.asarray(1.4142135381698608, np.float32)
        gelu = [n("Div", ["input", "sqrt2"], ["/gelu/Div_output_0"], name="/gelu/Div"),
                n("Erf", ["/gelu/Div_output_0"], ["/gelu/Erf_output_0"], name="/gelu/Erf"),
                n("Add", ["/gelu/Erf_output_0", "one"], ["/gelu/Add_output_0"], name="/gelu/Add"),
                n("Mul", ["input", "/gelu/Add_output_0"], ["/gelu/Mul_output_0"], name="/gelu/Mul"),
                n("Mul", ["/gelu/Mul_output_0", "half"], ["/gelu/Mul_1_output_0"], name="/gelu/Mul_1"),
                n("Abs", ["/gelu/Mul_1_output_0"], ["/ss/Abs_output_0"], name="/ss/Abs"),
                n("Add", ["one", "/ss/Abs_output_0"], ["/ss/Add_output_0"], name="/ss/Add"),
                n("Div", ["/gelu/Mul_1_output_0", "/ss/Add_output_0"], ["/ss/Div_output_0"], name="/ss/Div")]
        if opset < 13:
            split = n("Split", ["/ss/Div_output_0"], ["/glu/a", "/glu/b"], name="/glu/Split", axis=-1, split=[3, 3])
            extra = {}
        elif opset < 18:
            split = n("Split", ["/ss/Div_output_0", "split"], ["/glu/a", "/glu/b"], name="/glu/Split", axis=-1)
            extra = {"split": np.asarray([3, 3], np.int64)}
        else:
            split = n("Split", ["/ss/Div_output_0"], ["/glu/a", "/glu/b"], name="/glu/Split", axis=-1, num_outputs=2)
            extra = {}
        glu = [split, n("Sigmoid", ["/glu/b"], ["/glu/sig"], name="/glu/Sigmoid"),
               n("Mul", ["/glu/a", "/glu/sig"], ["output"], name="/glu/Mul")]
        model("patterns", gelu + glu, (None, 6), (None, 3),
              {"sqrt2": sqrt2, "one": np.asarray(1.0, np.float32), "half": np.asarray(0.5, np.float32), **extra})
    if opset >= 20:
        model("gelu_op", [n("Gelu", ["input"], ["/g/Gelu_output_0"], name="/g/Gelu"),
                          n("Mish", ["/g/Gelu_output_0"], ["/m/Mish_output_0"], name="/m/Mish"),
                          n("HardSwish", ["/m/Mish_output_0"], ["/h/HardSwish_output_0"], name="/h/HardSwish"),
                          n("Softmax", ["/h/HardSwish_output_0"], ["output"], name="/s/Softmax", axis=-1)],
              (None, 3, 4), (None, 3, 4), {})
    return graphs
