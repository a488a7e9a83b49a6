"""Channels-last conversion (kcompat/layout.py), the way onnx2tf converts NCHW models.

PyTorch-style NCHW graphs (tests/test_onnx_import_cnn.py's GRAPHS) import as channels_first Keras layers; with
``layout="channels_last"`` the same model must come out with no channels_first layer, the same outputs as
ONNX Runtime, and layout changes (Permute layers) only at the edges for plain CNNs; real Keras must load the
.keras file kcompat writes and compute ONNX Runtime's outputs. kcompat's own ONNX export of a channels-last
Keras model must read back as that model (layout="auto", the default): no Permute, no Transpose op, no
channels_first layer.
"""
from __future__ import annotations

import numpy as np
import pytest

import kcompat
from conftest import FIXTURES
from onnx_helpers import run_onnx
from test_onnx_import_cnn import GRAPHS, Graph, _inputs

import onnx  # noqa: E402  (the dev install always has onnx and onnxruntime: a missing one fails)

TOL = 1e-4
# plain CNNs: after conversion, layout changes only right after inputs and right before outputs
EDGES_ONLY = {"conv", "groups", "conv1d", "conv3d", "transpose", "pool", "mnist", "resnet", "prelu", "concat",
              "squeeze_excite"}


def _channels_first(model) -> list[str]:
    return [n for n, layer in model.layers.items() if getattr(layer, "channels_first", False)]


def _moves(model) -> list[str]:
    return [n for n, layer in model.layers.items() if layer.layout == "permute"]


def _onnx_file(tmp_path, name: str, opset: int = 13):
    g = Graph(opset, seed=opset)
    inputs, outputs = GRAPHS[name](g)
    path = tmp_path / f"{name}.onnx"
    onnx.save(g.model(inputs, outputs), str(path))
    return path, inputs


@pytest.mark.parametrize("name", list(GRAPHS))
def test_nchw_graph_becomes_channels_last(name, tmp_path):
    path, inputs = _onnx_file(tmp_path, name)
    feeds = _inputs(inputs, 0)
    expected = run_onnx(onnx.load(str(path)), feeds)
    nchw = kcompat.load(str(path), layout="onnx")
    model = kcompat.load(str(path), layout="channels_last")
    assert not _channels_first(model), f"{name}: still channels_first: {_channels_first(model)}"
    for i, (got, want) in enumerate(zip(model.predict([feeds[n] for n in model.input_names]), expected)):
        np.testing.assert_allclose(got, want, atol=TOL, rtol=TOL, err_msg=f"{name} output {i}")
    if name in EDGES_ONLY:
        first = {r.layer for r in model.spec.inputs}
        for layer in _moves(model):
            reads = {r.layer for r in model.specs[layer].nodes[0].refs()}
            readers = [ls for ls in model.spec.layers if any(r.layer == layer for n in ls.nodes for r in n.refs())]
            at_edge = reads <= first or not readers
            assert at_edge, f"{name}: Permute '{layer}' in the middle of the model (reads {reads})"
    assert len(model.spec.outputs) == len(nchw.spec.outputs)


@pytest.mark.parametrize("name", ["mnist", "resnet"])
def test_channels_last_inputs_need_no_permute(name, tmp_path):
    """--inputs channels_last: the input is (N, H, W, C) and a plain CNN has no layout change at all."""
    path, inputs = _onnx_file(tmp_path, name)
    feeds = _inputs(inputs, 0)
    expected = run_onnx(onnx.load(str(path)), feeds)
    model = kcompat.load(str(path), layout="channels_last", inputs="channels_last")
    assert not _moves(model) and not _channels_first(model)
    x = np.transpose(feeds["input"], (0, 2, 3, 1))  # NCHW -> NHWC
    np.testing.assert_allclose(model.predict(x)[0], expected[0], atol=TOL, rtol=TOL)


def test_flatten_keeps_onnx_element_order_in_the_dense_kernel(tmp_path):
    """Conv -> Flatten (NCHW element order) -> Gemm: the Dense kernel's rows are permuted instead of
    transposing back before Flatten, so the converted model has no Permute between them."""
    path, inputs = _onnx_file(tmp_path, "mnist")
    nchw = kcompat.load(str(path), layout="onnx")
    model = kcompat.load(str(path), layout="channels_last", inputs="channels_last")
    flat = next(n for n, layer in model.layers.items() if layer.class_name == "Flatten")
    dense = next(n for n, layer in model.layers.items() if layer.class_name == "Dense")
    assert model.specs[flat].config["data_format"] == "channels_last"
    before, after = nchw.weights_of(dense)[0], model.weights_of(dense)[0]
    assert not np.array_equal(before, after) and np.array_equal(np.sort(before, 0), np.sort(after, 0))


@pytest.mark.parametrize("name", ["mnist", "resnet", "squeeze_excite"])
def test_converted_keras_file_runs_in_keras(keras, name, tmp_path):
    """The channels-last .keras file real Keras 3 loads computes ONNX Runtime's outputs."""
    path, inputs = _onnx_file(tmp_path, name)
    feeds = _inputs(inputs, 0)
    expected = run_onnx(onnx.load(str(path)), feeds)
    out = tmp_path / f"{name}.keras"
    kcompat.save(kcompat.load(str(path), layout="channels_last"), str(out))
    kmodel = keras.saving.load_model(str(out), compile=False)
    got = kmodel([feeds[n] for n in ("input",)], training=False)
    got = got if isinstance(got, (list, tuple)) else [got]
    for g, want in zip(got, expected):
        np.testing.assert_allclose(np.asarray(g), want, atol=TOL, rtol=TOL)
    assert not [l.name for l in kmodel.layers if getattr(l, "data_format", None) == "channels_first"]


@pytest.mark.parametrize("fixture", ["mnist_cnn", "small_resnet", "conv_bn"])
def test_kcompat_export_reads_back_as_the_original(fixture, tmp_path):
    """A channels-last Keras model -> kcompat's ONNX -> kcompat: the same layers, channels-last, no layout change;
    its outputs are Keras's; verify against ONNX Runtime still compares every layer (transposed where moved)."""
    original = kcompat.load(str(FIXTURES / "keras3" / f"{fixture}.keras"))
    path = tmp_path / f"{fixture}.onnx"
    kcompat.save(original, str(path))
    back = kcompat.load(str(path))
    assert not _moves(back) and not _channels_first(back), [ls.class_name for ls in back.spec.layers]
    same = {"Dropout": "Identity", "ReLU": "Activation"}  # ONNX has no Dropout at inference; Relu is Activation
    classes = lambda m: [same.get(ls.class_name, ls.class_name) for ls in m.spec.layers]  # noqa: E731
    assert classes(back) == classes(original)
    x = np.random.default_rng(0).normal(size=(2, *original.input_shapes()[0][1:])).astype(np.float32)
    for a, b in zip(original.predict(x), back.predict(x)):
        np.testing.assert_allclose(b, a, atol=1e-5, rtol=1e-5)
    from kcompat.verify.run import verify_file
    report = verify_file(str(path), reference="onnxruntime")
    assert report.ok and sum(d.compared for d in report.layers) == len(back.spec.layers), report.render()


def test_layout_onnx_keeps_the_import(tmp_path):
    original = kcompat.load(str(FIXTURES / "keras3" / "mnist_cnn.keras"))
    path = tmp_path / "m.onnx"
    kcompat.save(original, str(path))
    raw = kcompat.load(str(path), layout="onnx")
    assert _channels_first(raw) and _moves(raw)


def test_bad_layout_is_refused():
    with pytest.raises(kcompat.UnsupportedError, match="layout must be one of"):
        kcompat.load(str(FIXTURES / "keras3" / "mnist_cnn.keras"), layout="nhwc")
