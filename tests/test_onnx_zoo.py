"""The model-zoo architectures shipped in the installed onnx package (its backend test data, "light" models:
opset 9 Caffe2 exports whose weights are made by ConstantOfShape): import, run like ONNX Runtime, verify
against ONNX Runtime, and convert to a channels-last .keras file that real Keras loads with ONNX Runtime's
outputs. Nobody here wrote these files. The big ones (VGG-19, AlexNet, ZFNet-512: 60-140 M parameters;
DenseNet-121: 900 layers in Keras) are ``slow``.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import kcompat
from onnx_helpers import run_onnx

import onnx  # noqa: E402  (the dev install always has onnx and onnxruntime: a missing one fails)

LIGHT = Path(onnx.__file__).parent / "backend" / "test" / "data" / "light"
TOL = 1e-4
MODELS = [pytest.param("resnet50"), pytest.param("shufflenet"), pytest.param("squeezenet"),
          pytest.param("inception_v2"), pytest.param("inception_v1"),  # LRN: square, channel-window mean, pow
          pytest.param("densenet121", marks=pytest.mark.slow), pytest.param("vgg19", marks=pytest.mark.slow),
          pytest.param("bvlc_alexnet", marks=pytest.mark.slow), pytest.param("zfnet512", marks=pytest.mark.slow)]


def _feeds(path: Path) -> dict:
    model = onnx.load(str(path), load_external_data=False)
    init = {t.name for t in model.graph.initializer}
    rng = np.random.default_rng(0)
    return {v.name: rng.normal(size=[d.dim_value or 1 for d in v.type.tensor_type.shape.dim]).astype(np.float32)
            for v in model.graph.input if v.name not in init}


def test_every_light_model_is_in_a_table():
    shipped = {p.stem.removeprefix("light_") for p in LIGHT.glob("light_*.onnx")}
    assert shipped == {p.values[0] for p in MODELS}


@pytest.mark.parametrize("name", MODELS)
def test_light_model_imports_verifies_and_converts(keras, name, tmp_path):
    path = LIGHT / f"light_{name}.onnx"
    feeds = _feeds(path)
    expected = run_onnx(onnx.load(str(path)), feeds)
    model = kcompat.load(str(path))
    got = model.predict([feeds[n] for n in model.spec.onnx_names and
                         [model.spec.onnx_names.get(i, i) for i in model.input_names]])
    for g, want in zip(got, expected):
        np.testing.assert_allclose(g, want, atol=TOL, rtol=TOL, err_msg=name)
    from kcompat.verify.run import verify_file
    report = verify_file(str(path), reference="onnxruntime", inputs=list(feeds.values()))
    assert report.ok, report.render()
    out = tmp_path / f"{name}.keras"
    channels_last = kcompat.load(str(path), layout="channels_last", inputs="channels_last")
    kcompat.save(channels_last, str(out))
    kmodel = keras.saving.load_model(str(out), compile=False)
    x = np.transpose(next(iter(feeds.values())), (0, 2, 3, 1))  # the same image, NHWC
    np.testing.assert_allclose(np.asarray(kmodel(x, training=False)), expected[0], atol=TOL, rtol=TOL,
                               err_msg=f"{name}: real Keras on kcompat's channels-last .keras")
