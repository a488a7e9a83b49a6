"""ONNX import: kcompat's own exports (exact round trip), tf2onnx and Keras-export files, PyTorch-style
graphs at opsets 6 to newest, and hostile files. Imported models are written as .keras and loaded by
REAL Keras; their outputs must match onnxruntime on the original file."""
from __future__ import annotations


import numpy as np
import pytest
from conftest import FIXTURES, to_kcompat
from onnx_helpers import (activation_inputs, activations_model, assert_close, dense_flatten_inputs,
                          dense_flatten_model, randomize_biases, run_onnx, torch_style)

import kcompat
import kcompat.formats.onnx.export.driver
from kcompat.errors import FormatError, UnsupportedError
from kcompat.formats.onnx.export.driver import default_opset, write_onnx
from kcompat.formats.onnx.import_.driver import read_onnx
from kcompat.model import Model

import onnx  # noqa: E402  (the dev install always has onnx and onnxruntime: a missing one fails)
import onnxruntime  # noqa: E402,F401
from onnx import TensorProto, helper, numpy_helper  # noqa: E402

ONNX_FIXTURES = sorted((FIXTURES / "onnx").glob("*.onnx"))


def _through_real_keras(keras, spec, tmp_path, inputs):
    """Write the imported spec as .keras, load it with real Keras, run it."""
    path = tmp_path / "imported.keras"
    kcompat.save(Model(spec), str(path))
    kmodel = keras.models.load_model(path, compile=False)
    out = kmodel(inputs if len(inputs) > 1 else inputs[0])
    return [np.asarray(o) for o in (out if isinstance(out, (list, tuple)) else [out])]


def _graph_inputs(proto):
    init = {t.name for t in proto.graph.initializer}
    return [v.name for v in proto.graph.input if v.name not in init]


# ------------------------------------------------------------------ kcompat's own exports
@pytest.fixture(scope="module", params=["activations", "dense_flatten"])
def keras_source(request, keras, tmp_path_factory):
    build = {"activations": (activations_model, activation_inputs),
             "dense_flatten": (dense_flatten_model, dense_flatten_inputs)}[request.param]
    kmodel = randomize_biases(build[0](keras))
    folder = tmp_path_factory.mktemp(request.param)
    return to_kcompat(kmodel, folder, request.param), build[1](), folder


@pytest.mark.parametrize("opset", [13, None])
def test_round_trip_is_exact(keras, keras_source, opset):
    model, inputs, folder = keras_source
    path = folder / f"rt{opset}.onnx"
    write_onnx(model, str(path), opset)
    spec = read_onnx(str(path))
    before = {ls.name: ls for ls in model.spec.layers}
    after = {ls.name: ls for ls in spec.layers}
    assert list(after) == [ls.name for ls in model.spec.layers if ls.name in after] and set(after) == set(before)
    for name, ls in before.items():
        got = after[name]
        if ls.class_name == "Activation" and ls.config.get("activation") == "linear":
            assert got.class_name == "Identity", name  # one ONNX Identity, like Dropout: both come back as Identity
            continue
        assert got.class_name == ls.class_name, name
        assert got.config.get("activation") == ls.config.get("activation"), name
        if ls.class_name == "Flatten" and len(model.input_shape_of(name)) > 2:  # rank 2: both formats are one op
            assert got.config["data_format"] == ls.config.get("data_format", "channels_last"), name
        assert len(got.weights) == len(ls.weights or []), name
        for a, b in zip(got.weights, ls.weights or []):
            assert a.dtype == b.dtype and a.shape == b.shape and a.tobytes() == b.tobytes(), name
    imported = Model(spec)
    assert imported.shapes == Model(model.spec).shapes
    ours = imported.predict(inputs)
    for a, b in zip(ours, model.predict(inputs)):
        assert_close(a, b, "kcompat after round trip")
    if opset is None:  # once per model: real Keras loads the imported spec
        for a, b in zip(_through_real_keras(keras, spec, folder, inputs), ours):
            assert_close(a, b, "real Keras on the re-imported model")


# ------------------------------------------------------------------ tf2onnx and keras Model.export files
@pytest.mark.parametrize("path", ONNX_FIXTURES, ids=lambda p: p.name)
def test_converter_files(keras, path, tmp_path):
    spec = read_onnx(str(path))
    source = kcompat.load(str(path.parent / (path.name.split(".")[0] + ".keras")))
    assert sorted(ls.name for ls in spec.layers) == sorted(ls.name for ls in source.spec.layers)  # Keras names
    for ls in spec.layers:
        src = source.spec.layer(ls.name)
        assert ls.class_name == src.class_name and ls.config.get("activation") == src.config.get("activation")
        for a, b in zip(ls.weights, src.weights):
            np.testing.assert_array_equal(a, b)  # TF's weights are the Keras weights, untouched
    proto = onnx.load(str(path))
    rng = np.random.default_rng(0)
    model = Model(spec)
    inputs = [rng.normal(size=(3, *s[1:])).astype(np.float32) for s in model.input_shapes()]
    expected = run_onnx(proto, dict(zip(_graph_inputs(proto), inputs)))
    for a, b in zip(model.predict(inputs), expected):
        assert_close(a, b, f"kcompat vs onnxruntime on {path.name}")
    for a, b in zip(_through_real_keras(keras, spec, tmp_path, inputs), expected):
        assert_close(a, b, f"real Keras vs onnxruntime on {path.name}")


def test_verify_with_onnxruntime_reference(tmp_path):
    from kcompat.verify.run import verify_file
    path = FIXTURES / "onnx" / "dense_3d.tf2onnx.onnx"
    report = verify_file(str(path), reference="onnxruntime")
    assert report.ok and report.reference.startswith("onnxruntime")
    assert all(d.compared for d in report.layers)
    report = verify_file(str(FIXTURES / "onnx" / "branches.keras"), reference="onnxruntime")
    assert report.ok and all(d.compared for d in report.layers) and "kcompat's own ONNX export" in report.notes[0]


# ------------------------------------------------------------------ PyTorch-style graphs
NEWEST = None  # resolved at run time: default_opset()


@pytest.mark.parametrize("opset", [6, 11, 13, NEWEST], ids=["opset6", "opset11", "opset13", "newest"])
def test_torch_style_graphs(keras, opset, tmp_path):
    opset = opset or default_opset()
    graphs = torch_style(opset)
    rng = np.random.default_rng(opset)
    for name, (proto, in_shape) in graphs.items():
        path = tmp_path / f"{name}.onnx"
        onnx.save(proto, str(path))
        spec = read_onnx(str(path))
        x = (rng.normal(size=(3, *in_shape[1:])) * 2).astype(np.float32)
        expected = run_onnx(proto, {"input": x})[0]
        if name == "softmax_axis1" and opset < 7:  # onnx.reference applies opset-13 semantics to old Softmax
            e = np.exp(x.reshape(3, -1) - x.reshape(3, -1).max(axis=1, keepdims=True))
            expected = (e / e.sum(axis=1, keepdims=True)).reshape(x.shape)
        assert_close(Model(spec).predict([x])[0], expected, f"{name} at opset {opset}")
        assert_close(_through_real_keras(keras, spec, tmp_path, [x])[0], expected, f"{name} (Keras) opset {opset}")
        again = kcompat.formats.onnx.export.driver.to_onnx(Model(spec))  # and back to ONNX (op nodes included)
        assert_close(run_onnx(again, {"input": x})[0], expected, f"{name} re-exported, opset {opset}")
        classes = [ls.class_name for ls in spec.layers]
        if name == "mlp":
            assert classes == ["InputLayer", "Dense", "Activation", "Dense", "Activation"]
            assert [ls.name for ls in spec.layers] == ["input", "fc1", "act", "fc2", "softmax"]
            kernel = spec.layer("fc1").weights[0]
            np.testing.assert_array_equal(kernel, numpy_helper.to_array(proto.graph.initializer[0]).T)
        if name == "patterns":
            acts = [ls.config.get("activation") for ls in spec.layers[1:]]
            assert acts == ["gelu", "softsign", "glu"], acts
        if name == "acts_3d":
            assert classes[1] == "Dense" and spec.layers[1].config["use_bias"]
            assert spec.layers[2].class_name == "LeakyRelu" and spec.layers[2].config["negative_slope"] == 0.01
            assert spec.layer("act8").class_name == "Multiply"  # HardSigmoid(0.2, 0.5): 0.2 x + 0.5, clipped
            assert {"act8", "act8_1"}.isdisjoint(spec.onnx_names)  # inner steps stand for no ONNX tensor
        if name == "softmax_axis1" and opset < 13:
            assert classes == ["InputLayer", "Reshape", "Activation", "Reshape"]  # softmax over axes 1 and 2
            assert spec.layers[1].config["target_shape"] == [12]


# ------------------------------------------------------------------ hostile and unsupported files
def _tiny(nodes=None, inits=None, inputs=None, opset=13):
    nodes = nodes or [helper.make_node("Relu", ["x"], ["y"], name="r")]
    inputs = inputs or [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 4])]
    graph = helper.make_graph(nodes, "g", inputs, [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
                              inits or [])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])


def test_truncated_and_garbage_files(tmp_path):
    good = tmp_path / "good.onnx"
    write_onnx(kcompat.load(str(FIXTURES / "onnx" / "mlp.keras")), str(good))
    data = good.read_bytes()
    for name, payload in [("cut.onnx", data[: len(data) // 2]), ("cut_early.onnx", data[:40]),
                          ("garbage.onnx", b"\x93NUMPY not an onnx file" * 10)]:
        path = tmp_path / name
        path.write_bytes(payload)
        with pytest.raises(FormatError, match=name):
            kcompat.load(str(path))


def test_external_data_outside_the_folder_is_never_read(tmp_path):
    secret = tmp_path / "secret.bin"
    secret.write_bytes(np.ones(4, np.float32).tobytes())
    folder = tmp_path / "model"
    folder.mkdir()
    w = numpy_helper.from_array(np.ones((4, 4), np.float32), "w")
    w.ClearField("raw_data")
    w.data_location = TensorProto.EXTERNAL
    for key, value in {"location": "../secret.bin", "offset": "0", "length": "64"}.items():
        w.external_data.add(key=key, value=value)
    proto = _tiny([helper.make_node("MatMul", ["x", "w"], ["y"], name="m")], [w])
    path = folder / "ext.onnx"
    path.write_bytes(proto.SerializeToString())
    with pytest.raises(FormatError, match=r"ext\.onnx.*outside the model's folder"):
        read_onnx(str(path))
    for key in ("/etc/passwd", str(secret)):
        w.external_data[0].value = key
        path.write_bytes(_tiny([helper.make_node("MatMul", ["x", "w"], ["y"])], [w]).SerializeToString())
        with pytest.raises(FormatError, match="refusing"):
            read_onnx(str(path))


def test_external_data_inside_the_folder_loads(tmp_path):
    model = kcompat.load(str(FIXTURES / "onnx" / "mlp.keras"))
    proto = onnx.load_from_string(kcompat.formats.onnx.export.driver.to_onnx(model).SerializeToString())
    onnx.save(proto, str(tmp_path / "ext.onnx"), save_as_external_data=True, location="ext.data", size_threshold=0)
    spec = read_onnx(str(tmp_path / "ext.onnx"))
    for ls in model.spec.layers:
        for a, b in zip(spec.layer(ls.name).weights, ls.weights):
            np.testing.assert_array_equal(a, b)


def test_absurd_dims_are_refused(tmp_path):
    huge = TensorProto(name="w", data_type=TensorProto.FLOAT, dims=[10**6, 10**6])  # claims 4 TB, holds nothing
    path = tmp_path / "huge.onnx"
    path.write_bytes(_tiny([helper.make_node("MatMul", ["x", "w"], ["y"])], [huge]).SerializeToString())
    with pytest.raises(FormatError, match=r"huge\.onnx.*'w'.*refusing"):
        read_onnx(str(path))
    short = numpy_helper.from_array(np.ones((4, 4), np.float32), "w")
    short.raw_data = short.raw_data[:10]
    path = tmp_path / "short.onnx"
    path.write_bytes(_tiny([helper.make_node("MatMul", ["x", "w"], ["y"])], [short]).SerializeToString())
    with pytest.raises(FormatError, match=r"short\.onnx.*truncated"):
        read_onnx(str(path))
    big_input = [helper.make_tensor_value_info("x", TensorProto.FLOAT, [10**6, 10**6, 10**3])]
    path = tmp_path / "big_input.onnx"
    path.write_bytes(_tiny(inputs=big_input).SerializeToString())
    with pytest.raises(FormatError, match=r"big_input\.onnx"):
        read_onnx(str(path))


def test_unsupported_ops_reported_together(tmp_path):
    nodes = [helper.make_node("Erfc", ["x"], ["a"], name="e1"), helper.make_node("Erfc", ["a"], ["b"], name="e2"),
             helper.make_node("Relu", ["b"], ["c"], name="r"),
             helper.make_node("NonZero", ["c"], ["d"], name="nz"),
             helper.make_node("Cast", ["d"], ["y"], to=1, name="cast")]
    path = tmp_path / "unsupported.onnx"
    path.write_bytes(_tiny(nodes).SerializeToString())
    with pytest.raises(UnsupportedError) as e:
        read_onnx(str(path))
    assert str(e.value).startswith(f"{path}: unsupported ONNX ops:")
    assert "Erfc x2" in str(e.value) and "NonZero x1" in str(e.value) and "Relu" not in str(e.value)


def test_pattern_after_an_unsupported_op_is_reported_not_crashed(tmp_path):
    """Unsqueeze -> Tile (a RepeatVector pattern) reading an unsupported op's output: the op is reported."""
    nodes = [helper.make_node("Erfc", ["x"], ["a"], name="e"),
             helper.make_node("Unsqueeze", ["a", "axes"], ["b"], name="rep/Unsqueeze"),
             helper.make_node("Tile", ["b", "reps"], ["y"], name="rep/Tile")]
    inits = [numpy_helper.from_array(np.asarray([1], np.int64), "axes"),
             numpy_helper.from_array(np.asarray([1, 3, 1], np.int64), "reps")]
    path = tmp_path / "poisoned.onnx"
    path.write_bytes(_tiny(nodes, inits).SerializeToString())
    with pytest.raises(UnsupportedError, match=r"unsupported ONNX ops: Erfc x1$"):
        read_onnx(str(path))


def test_cli_exit_code_2_on_unsupported(tmp_path):
    from kcompat.cli import main
    path = tmp_path / "unsupported.onnx"
    path.write_bytes(_tiny([helper.make_node("Erfc", ["x"], ["y"])]).SerializeToString())
    assert main(["summary", str(path)]) == 2


def test_shape_chains_fold_to_constants():
    """tf2onnx's Shape -> Gather -> Concat -> Reshape chain folds; its batch entry is recognised."""
    from kcompat.formats.onnx.import_.graph import OnnxGraph
    graph = OnnxGraph.load(str(FIXTURES / "onnx" / "dense_3d.tf2onnx.onnx"))
    dynamic = [name for name in graph.dynamic if "concat" in name.lower()]
    assert dynamic and all(graph.dynamic[n][0][0] != graph.dynamic[n][1][0] for n in dynamic)
    assert all(v.dtype.kind in "iu" for v in (graph.dynamic[n][0] for n in dynamic))


def test_shapes_after_a_pool_with_asymmetric_pads_follow_shape_inference(keras, tmp_path):
    """A 'same' MaxPool (pads [0, 0, 1, 1]) read by a TimeDistributed export's Shape / Reshape chain: the
    importer runs such chains on dummy data through onnx.reference, whose MaxPool misreads asymmetric pads
    ((1, 2, 4, 7) -> (1, 2, 3, 8); ONNX Runtime and shape inference say (1, 2, 4, 7)). The import must use
    inference's sizes (found by random model 1110: a wrong Conv kernel shape downstream)."""
    L = keras.layers
    inp = keras.Input((4, 7, 2))
    x = L.TimeDistributed(L.Dense(5))(L.MaxPooling2D(2, strides=1, padding="same")(inp))
    model = to_kcompat(keras.Model(inp, L.Conv2D(1, 2, padding="same", data_format="channels_first")(x)), tmp_path)
    kcompat.save(model, str(tmp_path / "m.onnx"))
    xs = np.random.default_rng(0).standard_normal((3, 4, 7, 2)).astype(np.float32)
    np.testing.assert_allclose(kcompat.load(str(tmp_path / "m.onnx")).predict(xs)[0], model.predict(xs)[0],
                               atol=1e-6, rtol=1e-6)
