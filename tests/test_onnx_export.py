"""ONNX export: every activation and Dense / Flatten configuration, run in onnxruntime against real Keras."""
from __future__ import annotations

from collections import Counter

import numpy as np
import pytest

import kcompat
from kcompat.errors import UnsupportedError
from kcompat.formats.onnx.export import registry
from kcompat.formats.onnx.common import MIN_OPSET
from kcompat.formats.onnx.export.driver import default_opset, resolve_opset, to_onnx

from conftest import to_kcompat
from onnx_helpers import (ACTIVATION_NAMES, activation_inputs, activations_model, assert_close,
                           dense_flatten_inputs, dense_flatten_model, randomize_biases, run_onnx)

import onnx  # noqa: E402  (the dev install always has onnx and onnxruntime: a missing one fails)
import onnxruntime  # noqa: E402,F401
OPSETS = [13, None]  # the oldest kcompat writes, and the default (newest onnxruntime runs)


@pytest.fixture(scope="module")
def activations(keras, tmp_path_factory):
    kmodel = randomize_biases(activations_model(keras))
    inputs = activation_inputs()
    expected = [np.asarray(v) for v in kmodel(inputs)]
    return to_kcompat(kmodel, tmp_path_factory.mktemp("act"), "activations"), inputs, expected


@pytest.fixture(scope="module")
def dense_flatten(keras, tmp_path_factory):
    kmodel = randomize_biases(dense_flatten_model(keras))
    inputs = dense_flatten_inputs()
    expected = [np.asarray(v) for v in kmodel(inputs)]
    return to_kcompat(kmodel, tmp_path_factory.mktemp("df"), "dense_flatten"), inputs, expected


def _feeds(model, inputs):
    return dict(zip(model.input_names, inputs))


def _nodes_of(proto, layer):
    return [n for n in proto.graph.node if n.name.split("/")[0] == layer]


def test_default_opset_is_runnable():
    opset = default_opset()
    assert MIN_OPSET <= opset <= onnx.defs.onnx_opset_version()
    assert opset >= 20  # onnxruntime 1.32 runs Gelu: the single-op forms are used by default
    assert resolve_opset(None) == opset and resolve_opset(13) == 13


@pytest.mark.parametrize("bad", [12, 9, 10**3, True, "13"])
def test_opset_out_of_range_is_refused(activations, bad):
    with pytest.raises(UnsupportedError, match="opset"):
        to_onnx(activations[0], bad)


@pytest.mark.parametrize("opset", OPSETS)
def test_every_activation_matches_keras(activations, opset):
    model, inputs, expected = activations
    proto = to_onnx(model, opset)
    onnx.checker.check_model(proto, full_check=True)
    got = run_onnx(proto, _feeds(model, inputs))
    names = [o.name for o in proto.graph.output]
    assert names == [r.layer for r in model.spec.outputs]
    for name, ours, ref in zip(names, got, expected):
        assert_close(ours, ref, f"{name} at opset {opset}")


@pytest.mark.parametrize("opset", OPSETS)
def test_dense_and_flatten_match_keras(dense_flatten, opset):
    model, inputs, expected = dense_flatten
    proto = to_onnx(model, opset)
    onnx.checker.check_model(proto, full_check=True)
    got = run_onnx(proto, _feeds(model, inputs))
    for out, ours, ref in zip(proto.graph.output, got, expected):
        assert_close(ours, ref, out.name)


def test_node_counts_and_names(dense_flatten):
    model = dense_flatten[0]
    proto = to_onnx(model)
    ops = lambda layer: [n.op_type for n in _nodes_of(proto, layer)]  # noqa: E731
    assert ops("dense_r2") == ["Gemm"]
    for rank in (3, 4, 5):
        assert ops(f"dense_r{rank}") == ["MatMul", "Add"]  # no Reshape plumbing
        assert ops(f"nobias_r{rank}") == ["MatMul", "Relu"]
        assert ops(f"flat_last_r{rank}") == ["Flatten"]
        assert ops(f"flat_first_r{rank}") == ["Transpose", "Flatten"]
    assert ops("flat_first_r2") == ["Flatten"]
    every_layer = {ls.name for ls in model.spec.layers}
    assert all(n.name.split("/")[0] in every_layer for n in proto.graph.node)
    assert [i.name for i in proto.graph.input] == model.input_names
    for value in list(proto.graph.input) + list(proto.graph.output):
        assert value.type.tensor_type.shape.dim[0].dim_param == "batch"
    made = {o for n in proto.graph.node for o in n.output}
    assert every_layer - set(model.input_names) <= made  # every layer's output is a tensor of its name


@pytest.mark.parametrize("opset, expected", [
    (13, {"gelu": ["Mul", "Div", "Erf", "Add", "Mul"], "hard_silu": ["HardSigmoid", "Mul"],
          "mish": ["Softplus", "Tanh", "Mul"], "celu": ["Celu"]}),
    (20, {"gelu": ["Gelu"], "hard_silu": ["HardSwish"], "mish": ["Mish"]}),
])
def test_activation_forms_per_opset(activations, opset, expected):
    proto = to_onnx(activations[0], opset)
    for act, ops in expected.items():
        assert [n.op_type for n in _nodes_of(proto, f"act_{act}")] == ops


def test_activation_attributes(activations):
    proto = to_onnx(activations[0])
    attrs = {n.name.split("/")[0]: {a.name: onnx.helper.get_attribute_value(a) for a in n.attribute}
             for n in proto.graph.node if len(_nodes_of(proto, n.name.split("/")[0])) == 1}
    assert attrs["act_hard_sigmoid"] == pytest.approx({"alpha": 1 / 6, "beta": 0.5})
    assert attrs["act_leaky_relu"] == pytest.approx({"alpha": 0.2})
    assert attrs["act_hard_shrink"] == pytest.approx({"bias": 0.0, "lambd": 0.5})
    assert attrs["act_soft_shrink"] == pytest.approx({"bias": 0.5, "lambd": 0.5})
    assert [n.op_type for n in _nodes_of(proto, "act_softsign")] == ["Softsign"]
    assert [n.op_type for n in _nodes_of(proto, "act_selu")] == ["Selu"]


def test_every_activation_is_covered():
    assert set(ACTIVATION_NAMES) <= set(registry.ACTIVATIONS)


def test_unsupported_layers_reported_together(activations, monkeypatch):
    monkeypatch.delitem(registry.LAYERS, "Dense")
    monkeypatch.delitem(registry.LAYERS, "Activation")
    with pytest.raises(UnsupportedError) as e:
        to_onnx(activations[0])
    n = len(ACTIVATION_NAMES)
    assert f"layer class Dense x{n}" in str(e.value) and f"layer class Activation x{n}" in str(e.value)


def test_save_by_extension_and_ops_model(keras, tmp_path):
    """Keras 3 op nodes and merging layers export too (x * 2, ops.exp, Add, Concatenate, Reshape...)."""
    from keras import ops
    x = keras.Input((4, 6), name="x")
    d = keras.layers.Dense(6, name="d")(x)
    y = ops.exp(ops.negative(d)) * 2.0
    y = keras.layers.Add(name="add")([y, d])
    y = ops.subtract(y, 1.0) / 3.0
    y = keras.layers.Concatenate(name="cat")([y, x])
    y = keras.layers.Reshape((12, 4), name="reshape")(y)
    y = keras.layers.Permute((2, 1), name="permute")(y)
    y = keras.layers.LeakyReLU(name="leaky")(y)
    y = keras.layers.ReLU(max_value=2.0, name="relu_cap")(y)
    y = keras.layers.Softmax(name="softmax")(y)
    y = ops.mean(y, axis=1, keepdims=True)
    kmodel = randomize_biases(keras.Model(x, y))
    model = to_kcompat(kmodel, tmp_path)
    path = tmp_path / "ops.onnx"
    assert kcompat.save(model, str(path), opset=13) == [str(path)]
    data = np.random.default_rng(0).normal(size=(2, 4, 6)).astype(np.float32)
    got = run_onnx(onnx.load(str(path)), {"x": data})[0]
    assert_close(got, np.asarray(kmodel(data)), "ops model")
    counts = Counter(n.op_type for n in onnx.load(str(path)).graph.node)
    assert counts["Concat"] == 1 and counts["Transpose"] == 1 and counts["ReduceMean"] == 1
