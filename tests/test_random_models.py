"""Random-model conformance: seeded valid Keras models, run in real Keras and in kcompat, every layer compared.

Budget: KCOMPAT_RANDOM_MODELS models (default 40 in CI). A longer run is one command:
    KCOMPAT_RANDOM_MODELS=300 python -m pytest tests/test_random_models.py -q
"""
from __future__ import annotations

import os

import numpy as np
import pytest

from kcompat.layers import REGISTRY
from random_models import MERGES, build, makers

from conftest import rand, to_kcompat

N = int(os.environ.get("KCOMPAT_RANDOM_MODELS", "40"))
SEED0 = int(os.environ.get("KCOMPAT_RANDOM_SEED", "1000"))


def test_every_maker_is_a_kcompat_layer(keras):
    """The generator draws from every maker: a class kcompat lacks fails here instead of being left out."""
    names = {name for name, _, _ in makers(keras.layers)} | set(MERGES)
    assert not sorted(names - set(REGISTRY))


@pytest.mark.parametrize("seed", range(SEED0, SEED0 + N))
def test_random_model_matches_keras(keras, tmp_path, seed):
    model, used = build(keras, seed)
    km = to_kcompat(model, tmp_path)
    x = rand((3, *model.inputs[0].shape[1:]), seed=seed)
    layers = [l for l in model.layers if l.__class__.__name__ != "InputLayer"]
    probe = keras.Model(model.inputs, [l.output for l in layers])
    expected = probe([x], training=False)
    expected = expected if isinstance(expected, (list, tuple)) else [expected]
    got = km.layer_outputs(x)
    for layer, ref in zip(layers, expected):
        ref = np.asarray(ref)
        out = got[layer.name]
        where = f"seed {seed}, layer {layer.name} ({layer.__class__.__name__}); layers used {used}"
        assert out.shape == ref.shape, where
        assert km.info[layer.name].params == layer.count_params(), where
        np.testing.assert_allclose(out, ref, atol=2e-4, rtol=2e-3, err_msg=where)
    # predict runs the folded plan (kcompat/plan.py): the same output as every layer run as written
    final = got[model.outputs[0]._keras_history.operation.name]
    folded = km.predict(x)[0]
    np.testing.assert_allclose(folded, final, rtol=1e-5, atol=1e-5 * float(np.abs(final).max()),
                               err_msg=f"predict vs layer_outputs, seed {seed}; layers used {used}")


@pytest.mark.parametrize("seed", range(SEED0, SEED0 + N))
def test_random_model_onnx_round_trip(keras, tmp_path, seed):
    """The same random model exported by kcompat runs in ONNX Runtime like Keras, and imports back."""
    import onnxruntime as ort

    import kcompat
    model, used = build(keras, seed)  # every maker's class exports (test_onnx_export_ops.py checks)
    km = to_kcompat(model, tmp_path)
    x = rand((3, *model.inputs[0].shape[1:]), seed=seed)
    expected = np.asarray(model([x], training=False))
    onnx_path = tmp_path / "m.onnx"
    kcompat.save(km, str(onnx_path))
    sess = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    got = sess.run(None, {sess.get_inputs()[0].name: x})[0]
    where = f"seed {seed}; layers used {used}"
    np.testing.assert_allclose(got, expected, atol=2e-4, rtol=2e-3, err_msg=f"ONNX Runtime, {where}")
    back = kcompat.load(str(onnx_path))
    np.testing.assert_allclose(back.predict(x)[0], expected, atol=2e-4, rtol=2e-3, err_msg=f"re-import, {where}")
