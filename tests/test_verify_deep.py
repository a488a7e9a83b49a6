"""Deep models drift without any layer being wrong: verify must pass them, and still name one broken layer.

NASNetMobile (keras.applications, 771 layers, seeded random weights and BatchNormalization statistics)
against real Keras, and the DenseNet-121 shipped with the onnx package against ONNX Runtime on the
original file: both verify OK on kcompat, and a candidate that perturbs ONE BatchNormalization gets
exactly that layer named. Both are slow (a minute each on two shared cores); the small CNN siblings
below test the same on ~20 layers, against Keras and against ONNX Runtime on kcompat's .onnx export.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest

import kcompat
from kcompat.verify.candidate import kcompat_call
from kcompat.verify.keras import KerasReference
from kcompat.verify.onnxruntime import OnnxRuntimeReference
from kcompat.verify.reference import StoredReference
from kcompat.verify.run import make_inputs, verify_model

DENSENET = Path(onnx.__file__).parent / "backend" / "test" / "data" / "light" / "light_densenet121.onnx"


def perturb(name: str):
    """A candidate: kcompat's own layers, with layer ``name`` off by 0.1% (a wrong epsilon does about that)."""
    def candidate(layer, weights, inputs):
        y = kcompat_call(layer, weights, inputs)
        return y * np.float32(1.001) if layer["name"] == name else y
    return candidate


def randomize_batchnorm(model, seed: int = 0) -> None:
    rng = np.random.default_rng(seed)
    for v in model.weights:
        if "moving_variance" in v.path:
            v.assign(rng.uniform(0.5, 1.5, v.shape).astype("float32"))
        elif "moving_mean" in v.path or "beta" in v.path:
            v.assign(rng.normal(0.0, 0.1, v.shape).astype("float32"))
        elif "gamma" in v.path:
            v.assign(rng.uniform(0.8, 1.2, v.shape).astype("float32"))


def check_deep(model, result, broken: str) -> None:
    """kcompat passes; the perturbed layer alone fails, isolated; layers after it only drift."""
    inputs = [result.outputs[n] for n in model.input_names]
    ok = verify_model(model, StoredReference(result), inputs)
    assert ok.ok, ok.render()
    assert {d.status for d in ok.layers if d.compared} == {"ok"}
    bad = verify_model(model, StoredReference(result), inputs, candidate=perturb(broken))
    assert [d.name for d in bad.layers if not d.ok] == [broken] and bad.first_mismatch == broken
    drifting = [d for d in bad.layers if d.status == "ok" and d.chained_ok is False]
    assert drifting, "the perturbation should reach later layers, chained"
    assert f"MISMATCH: first mismatching layer '{broken}' (BatchNormalization)" in bad.render(console_width=100)


def small_cnn(keras):
    """NASNet's layer kinds on 16x16: Conv-BN-ReLU, separable convs, padding/cropping, Add, Concatenate."""
    L = keras.layers
    x = keras.Input((16, 16, 3), name="image")
    y = L.ReLU(name="r0")(L.BatchNormalization(name="bn0")(L.Conv2D(8, 3, strides=2, name="c0")(x)))
    a = L.BatchNormalization(name="bn1")(L.SeparableConv2D(8, 3, padding="same", name="s1")(y))
    b = L.BatchNormalization(name="bn2")(L.Conv2D(8, 1, name="c2")(y))
    z = L.Add(name="add")([L.Activation("relu", name="r1")(a), b])
    p = L.Cropping2D(((1, 0), (1, 0)), name="crop")(L.ZeroPadding2D(((1, 0), (1, 0)), name="pad")(z))
    z = L.Concatenate(name="cat")([p, L.AveragePooling2D(3, 1, padding="same", name="avg")(z)])
    z = L.BatchNormalization(name="bn3")(L.Conv2D(12, 3, padding="same", name="c3")(z))
    z = L.GlobalAveragePooling2D(name="gap")(L.Activation("relu", name="r3")(z))
    model = keras.Model(x, L.Dense(10, activation="softmax", name="predictions")(z))
    randomize_batchnorm(model)
    return model


def test_small_cnn_ok_and_one_broken_batchnorm_named_against_keras(keras, tmp_path):
    small_cnn(keras).save(tmp_path / "cnn.keras")
    model = kcompat.load(str(tmp_path / "cnn.keras"))
    inputs, _ = make_inputs(model, 2, 0)
    check_deep(model, KerasReference(str(tmp_path / "cnn.keras")).run(model, inputs), "bn1")


def test_small_cnn_onnx_ok_and_one_broken_batchnorm_named_against_onnxruntime(keras, tmp_path):
    small_cnn(keras).save(tmp_path / "cnn.keras")
    kcompat.save(kcompat.load(str(tmp_path / "cnn.keras")), str(tmp_path / "cnn.onnx"))
    model = kcompat.load(str(tmp_path / "cnn.onnx"))  # the ONNX import, run against ORT on that file
    inputs, _ = make_inputs(model, 2, 0)
    result = OnnxRuntimeReference(str(tmp_path / "cnn.onnx")).run(model, inputs)
    bn = [ls.name for ls in model.spec.layers if ls.class_name == "BatchNormalization"]
    check_deep(model, result, bn[1])


@pytest.mark.slow
def test_nasnet_mobile_verifies_and_a_broken_batchnorm_is_named(keras, tmp_path):
    """771 layers: float32 drift reaches ~5e-5 chained (over atol) while every layer is within tolerance."""
    m = keras.applications.NASNetMobile(input_shape=(64, 64, 3), weights=None)
    randomize_batchnorm(m)
    m.save(tmp_path / "nasnet.keras")
    model = kcompat.load(str(tmp_path / "nasnet.keras"))
    inputs, _ = make_inputs(model, 2, 0)
    result = KerasReference(str(tmp_path / "nasnet.keras")).run(model, inputs)
    bns = [ls.name for ls in model.spec.layers if ls.class_name == "BatchNormalization"]
    check_deep(model, result, bns[len(bns) // 2])


@pytest.mark.slow
def test_densenet121_onnx_verifies_and_a_broken_batchnorm_is_named():
    """The onnx package's DenseNet-121 (ConstantOfShape weights, 1x3x224x224): the first BatchNormalization
    amplifies the convolution's rounding to 1.4e-4 chained while computing exactly in isolation."""
    model = kcompat.load(str(DENSENET))
    inputs, _ = make_inputs(model, 1, 0)
    result = OnnxRuntimeReference(str(DENSENET)).run(model, inputs)
    bns = [ls.name for ls in model.spec.layers if ls.class_name == "BatchNormalization"]
    check_deep(model, result, bns[60])
