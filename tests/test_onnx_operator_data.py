"""ONNX files nobody here wrote, through kcompat's import: the pytorch-operator test data shipped in the onnx
package, and tf2onnx conversions of Keras 3 models with every activation (sparsemax, hard / soft shrink and
sparse_plus become Less / Greater / Where / TopK / CumSum / ConstantOfShape graphs).

Each file must import, match the ONNX reference on the same inputs (ONNX Runtime; onnx's reference
evaluator for opset 6, which ONNX Runtime no longer runs) and convert to a .keras file that real Keras
loads with the same outputs. The pytorch-operator inputs are fed as kcompat reads them (floats as float32:
a few hold uninitialised doubles such as 1e-310 or 1e198), and the reference sees those same values.
"""
from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import numpy_helper

import kcompat
from onnx_helpers import ACTIVATION_NAMES, run_onnx

PYTORCH_OPERATOR = sorted((__import__("pathlib").Path(onnx.__file__).parent / "backend" / "test" / "data"
                           / "pytorch-operator").glob("test_operator_*"))
# what tf2onnx cannot write as ONNX (ONNX Runtime refuses those files too)
TF2ONNX_CANNOT = {"celu": "tf2onnx writes tf.math.expm1 as an 'Expm1' node ONNX does not have",
                  "gelu": "tf2onnx writes tf.math.erfc as an 'Erfc' node ONNX does not have"}


def _as_kcompat_reads(x: np.ndarray) -> np.ndarray:
    """A float input as kcompat feeds it (float32), back in its own dtype for the reference."""
    return x.astype(np.float32).astype(x.dtype) if x.dtype.kind == "f" else x


def _through_keras(keras, model, tmp_path, inputs: list) -> list:
    path = tmp_path / "converted.keras"
    kcompat.save(model, str(path))
    out = keras.saving.load_model(str(path))(inputs if len(inputs) > 1 else inputs[0])
    return [keras.ops.convert_to_numpy(o) for o in (out if isinstance(out, (list, tuple)) else [out])]


def _close(ours, ref, what: str) -> None:
    ours, ref = np.asarray(ours), np.asarray(ref)
    assert ours.shape == ref.shape, f"{what}: shape {ours.shape} != {ref.shape}"
    np.testing.assert_allclose(ours.astype(np.float64), ref.astype(np.float64), rtol=1e-4, atol=1e-5, err_msg=what)


def test_every_pytorch_operator_case_is_collected():
    assert len(PYTORCH_OPERATOR) == 35


@pytest.mark.filterwarnings("ignore::RuntimeWarning")
@pytest.mark.parametrize("case", PYTORCH_OPERATOR, ids=lambda p: p.name[len("test_operator_"):])
def test_pytorch_operator_case(keras, case, tmp_path):
    model = kcompat.load(str(case / "model.onnx"))
    proto = onnx.load(str(case / "model.onnx"))
    names = [v.name for v in proto.graph.input if v.name not in {t.name for t in proto.graph.initializer}]
    for data in sorted(case.glob("test_data_set_*")):
        stored = [numpy_helper.to_array(onnx.load_tensor(str(p))) for p in sorted(data.glob("input_*.pb"))]
        inputs = [_as_kcompat_reads(x) for x in stored[:len(names)]]
        expected = run_onnx(proto, dict(zip(names, inputs)))
        for i, (ours, ref) in enumerate(zip(model.predict(inputs), expected)):
            _close(ours, ref, f"{case.name} output {i}")
        keras_in = [x.astype(np.float32) if x.dtype.kind == "f" else x for x in inputs]
        for i, (ours, ref) in enumerate(zip(_through_keras(keras, model, tmp_path, keras_in), expected)):
            _close(ours, ref, f"{case.name} through real Keras, output {i}")


@pytest.fixture(scope="module")
def tf2onnx_activations(keras, tmp_path_factory):
    """One Keras 3 model, an output per activation (Dense on a rank-2 input, Activation on rank 3), through tf2onnx."""
    import tensorflow as tf
    import tf2onnx
    names = [a for a in ACTIVATION_NAMES if a not in TF2ONNX_CANNOT]
    keras.utils.set_random_seed(0)
    x2, x3 = keras.Input((8,), name="flat_in"), keras.Input((5, 8), name="seq_in")
    outs = []
    for a in names:
        outs.append(keras.layers.Dense(8, activation=a, name=f"dense_{a}")(x2))
        outs.append(keras.layers.Activation(a, name=f"act_{a}")(x3))
    kmodel = keras.Model([x2, x3], outs)
    spec = (tf.TensorSpec((None, 8), tf.float32, name="flat_in"),
            tf.TensorSpec((None, 5, 8), tf.float32, name="seq_in"))

    @tf.function(input_signature=spec)
    def call(a, b):
        return kmodel([a, b], training=False)
    path = tmp_path_factory.mktemp("tf2onnx") / "activations.tf2onnx.onnx"
    tf2onnx.convert.from_function(call, input_signature=spec, opset=13, output_path=str(path))
    rng = np.random.default_rng(3)
    inputs = [(rng.normal(size=(3, 8)) * 3).astype(np.float32), (rng.normal(size=(3, 5, 8)) * 3).astype(np.float32)]
    inputs[1][0, 0] = [0.5, -0.5, 0.25, -0.25, 0.0, 1.0, -1.0, 10.0]  # the shrink thresholds, the kinks at 0 and 1
    return path, names, inputs


def test_tf2onnx_activation_graphs_import_and_match_onnxruntime(keras, tf2onnx_activations, tmp_path):
    path, names, inputs = tf2onnx_activations
    proto = onnx.load(str(path))
    used = {n.op_type for n in proto.graph.node}
    assert {"Less", "Greater", "TopK", "CumSum", "ConstantOfShape"} <= used  # the graphs this is about
    expected = run_onnx(proto, {"flat_in": inputs[0], "seq_in": inputs[1]})
    model = kcompat.load(str(path))
    got = model.predict(inputs)
    assert len(got) == len(expected) == 2 * len(names)
    for i, (ours, ref) in enumerate(zip(got, expected)):
        _close(ours, ref, f"{names[i // 2]} ({'Dense' if i % 2 == 0 else 'Activation'})")
    for i, (ours, ref) in enumerate(zip(_through_keras(keras, model, tmp_path, inputs), expected)):
        _close(ours, ref, f"{names[i // 2]} through real Keras")


def _torch_modules() -> dict:
    """PyTorch modules as torch.onnx writes them (opset 17), each a one-input graph: {name: (proto, input shape)}."""
    from onnx import TensorProto, helper
    rng = np.random.default_rng(7)
    n = helper.make_node

    def w(*shape):
        return numpy_helper.from_array(rng.normal(0, 0.5, shape).astype(np.float32), f"w{len(shape)}_{shape[0]}")

    def graph(nodes, in_shape, inits=(), out_rank=None):
        x = helper.make_tensor_value_info("input", TensorProto.FLOAT, ["batch" if d is None else d for d in in_shape])
        y = helper.make_tensor_value_info("output", TensorProto.FLOAT, [None] * (out_rank or len(in_shape)))
        g = helper.make_graph(nodes, "module", [x], [y], list(inits))
        return helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)], producer_name="pytorch"), in_shape
    conv_w, conv_b = w(4, 3, 3, 3), w(4)
    gemm_w = w(5, 6)
    return {
        # nn.GLU(dim=1): Split in two along the channels, a * sigmoid(b)
        "glu_dim1": graph([n("Split", ["input", "split"], ["a", "b"], axis=1),
                           n("Sigmoid", ["b"], ["gate"]), n("Mul", ["a", "gate"], ["output"])], (None, 6, 5),
                          [numpy_helper.from_array(np.asarray([3, 3], np.int64), "split")]),
        # nn.Conv2d(3, 4, 3, stride=2, dilation=2, padding=1)
        "conv_stride_dilation": graph([n("Conv", ["input", conv_w.name, conv_b.name], ["output"], kernel_shape=[3, 3],
                                         strides=[2, 2], dilations=[2, 2], pads=[1, 1, 1, 1])], (None, 3, 11, 10),
                                      [conv_w, conv_b]),
        # nn.MaxPool2d(3, stride=2, dilation=2, padding=1, ceil_mode=True)
        "maxpool_dilation": graph([n("MaxPool", ["input"], ["output"], kernel_shape=[3, 3], strides=[2, 2],
                                     dilations=[2, 2], pads=[1, 1, 1, 1], ceil_mode=1)], (None, 2, 9, 8)),
        # torch.addmm(bias, x, x.T @ w): both Gemm operands computed
        "addmm": graph([n("MatMul", ["input", gemm_w.name], ["xw"]), n("Transpose", ["input"], ["xt"], perm=[1, 0]),
                        n("Gemm", ["xt", "xw", "bias"], ["output"], alpha=0.5, beta=2.0)], (4, 6),
                       [numpy_helper.from_array(rng.normal(size=(6, 5)).astype(np.float32), "bias"),
                        numpy_helper.from_array(rng.normal(size=(6, 5)).astype(np.float32), gemm_w.name)]),
        # x.view(-1) of the whole tensor, batch included: Flatten(axis=0)
        "view_all": graph([n("Flatten", ["input"], ["output"], axis=0)], (None, 3, 4), out_rank=2),
        # x.chunk(3, dim=2)[1]
        "chunk": graph([n("Split", ["input", "chunks"], ["c0", "output", "c2"], axis=2)], (None, 2, 9),
                       [numpy_helper.from_array(np.asarray([3, 3, 3], np.int64), "chunks")]),
    }


@pytest.mark.parametrize("name", list(_torch_modules()))
def test_pytorch_modules_keras_lacks_import_as_compositions(keras, name, tmp_path):
    """GLU on another axis, a convolution with both stride and dilation, a dilated MaxPool, addmm with both
    operands computed, view(-1), chunk: Keras layers do not say these, compositions of op nodes do."""
    proto, in_shape = _torch_modules()[name]
    path = tmp_path / f"{name}.onnx"
    onnx.save(proto, str(path))
    model = kcompat.load(str(path))
    x = np.random.default_rng(11).normal(size=(4 if in_shape[0] is None else in_shape[0], *in_shape[1:]))
    x = x.astype(np.float32)
    expected = run_onnx(proto, {"input": x})
    _close(model.predict(x)[0], expected[0], name)
    _close(_through_keras(keras, model, tmp_path, [x])[0], expected[0], f"{name} through real Keras")
