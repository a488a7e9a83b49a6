"""Every bundled Keras fixture exports to ONNX (default opset and 13), passes the full checker, matches the
outputs real Keras computed (fixtures/<name>.io.npz) in ONNX Runtime, and imports back with identical weights."""
from __future__ import annotations

import numpy as np
import onnx
import pytest

import kcompat
from kcompat.formats.onnx.export.driver import to_onnx

from conftest import FIXTURES

import onnxruntime as ort  # noqa: E402  (the dev install always has it: missing fails)
NAMES = sorted(p.name[: -len(".io.npz")] for p in FIXTURES.glob("*.io.npz"))


@pytest.mark.parametrize("opset", [None, 13], ids=["default", "opset13"])
@pytest.mark.parametrize("name", NAMES)
def test_fixture_exports_and_matches_keras_in_onnxruntime(name, opset, tmp_path):
    model = kcompat.load(str(FIXTURES / "keras3" / f"{name}.keras"))
    proto = to_onnx(model, opset=opset)
    onnx.checker.check_model(proto, full_check=True)
    path = tmp_path / f"{name}.onnx"
    kcompat.save(model, str(path), **({} if opset is None else {"opset": opset}))
    io = np.load(FIXTURES / f"{name}.io.npz")
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    feed = {i.name: io[f"input:{i.name}"] for i in sess.get_inputs()}
    outputs = sess.run(None, feed)
    for i, got in enumerate(outputs):
        np.testing.assert_allclose(got, io[f"output:{i}"], atol=1e-5, rtol=1e-4, err_msg=f"{name} output {i}")
    back = kcompat.load(str(path))
    assert back.total_params == model.total_params == int(io["params"])
    for i, got in enumerate(back.predict([feed[n] for n in back.input_names])):
        np.testing.assert_allclose(got, io[f"output:{i}"], atol=1e-5, rtol=1e-4, err_msg=f"{name} re-import {i}")


@pytest.mark.parametrize("name", NAMES)
def test_fixture_weights_survive_the_round_trip_bit_for_bit(name, tmp_path):
    model = kcompat.load(str(FIXTURES / "keras3" / f"{name}.keras"))
    path = tmp_path / f"{name}.onnx"
    kcompat.save(model, str(path), optimize=False)
    back = kcompat.load(str(path))
    ours = sorted((w.tobytes(), w.shape) for ls in model.spec.layers for w in ls.weights or [])
    theirs = sorted((w.tobytes(), w.shape) for ls in back.spec.layers for w in ls.weights or [])
    assert ours == theirs


@pytest.mark.parametrize("name", sorted(p.stem for p in (FIXTURES / "onnx").glob("*.keras")))
def test_fewer_nodes_than_tf2onnx(name):
    """Known shapes make tf2onnx's Shape/Gather/Concat/Reshape plumbing unnecessary: kcompat's graph is smaller."""
    ours = to_onnx(kcompat.load(str(FIXTURES / "onnx" / f"{name}.keras")))
    theirs = onnx.load(str(FIXTURES / "onnx" / f"{name}.tf2onnx.onnx"))
    assert len(ours.graph.node) < len(theirs.graph.node), (len(ours.graph.node), len(theirs.graph.node))
    plumbing = {"Shape", "Gather", "Concat", "Reshape", "Cast", "Unsqueeze"}
    assert not plumbing & {n.op_type for n in ours.graph.node}
