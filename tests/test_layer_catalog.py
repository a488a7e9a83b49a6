"""Every class in the installed ``keras.layers`` is classified (computed, identity at inference, refused,
not yet, not computed) and docs/LAYERS.md is the table kcompat.catalog generates for it."""
from __future__ import annotations

import json

import pytest

from conftest import ROOT
from kcompat.catalog import NOT_COMPUTED, PENDING, classify, keras_layer_names, table
from kcompat.formats.keras.config import CODE_LAYERS
from kcompat.layers import REGISTRY


def test_every_keras_layer_class_is_classified(keras):
    names, _ = keras_layer_names()
    unclassified = [n for n in names if classify(n)[0] == "unclassified"]
    assert not unclassified, f"new keras.layers classes to classify in kcompat/catalog.py: {unclassified}"


def test_lists_do_not_overlap_the_registry():
    """A class implemented since (another branch merged) must leave the not-yet lists."""
    for listed in (PENDING, NOT_COMPUTED, CODE_LAYERS):
        assert not set(listed) & set(REGISTRY), set(listed) & set(REGISTRY)
    assert not set(PENDING) & set(NOT_COMPUTED)


def test_layers_md_is_current(keras):
    names, version = keras_layer_names()
    text = (ROOT / "docs" / "LAYERS.md").read_text()
    assert text == table(names, version), "docs/LAYERS.md is stale: run python -m kcompat.catalog"


def test_identity_classes_really_are_identity_in_keras(keras):
    """Every class the table calls identity at inference returns its input in Keras with training=False."""
    import numpy as np
    from test_layers_preprocessing import AUGMENTATION_CONFIGS
    configs = {**AUGMENTATION_CONFIGS, "Dropout": {"rate": 0.5}, "SpatialDropout1D": {"rate": 0.5},
               "SpatialDropout2D": {"rate": 0.5}, "SpatialDropout3D": {"rate": 0.5}, "GaussianNoise": {"stddev": 1.0},
               "GaussianDropout": {"rate": 0.5}, "AlphaDropout": {"rate": 0.5}, "ActivityRegularization": {"l1": 0.1},
               "Equalization": {}}
    shapes = {"SpatialDropout1D": (2, 5, 3), "SpatialDropout3D": (2, 3, 3, 3, 3)}
    names, _ = keras_layer_names()
    identity = [n for n in names if classify(n)[0] == "identity at inference"]
    assert set(identity) == set(configs), set(identity) ^ set(configs)
    x = np.random.default_rng(0).uniform(0, 255, (2, 8, 8, 3)).astype(np.float32)
    for name in identity:
        data = x if name not in shapes else np.random.default_rng(1).normal(size=shapes[name]).astype(np.float32)
        out = getattr(keras.layers, name)(**configs[name])(data, training=False)
        np.testing.assert_array_equal(np.asarray(out), data, err_msg=name)


@pytest.mark.parametrize("class_name", sorted(CODE_LAYERS))
def test_code_layers_refused_by_name(tmp_path, class_name):
    import kcompat
    from kcompat.errors import UnsupportedError
    config = {"class_name": "Functional", "config": {"name": "m", "layers": [
        {"class_name": "InputLayer", "name": "x", "config": {"batch_shape": [None, 3], "name": "x"}, "inbound_nodes": []},
        {"class_name": class_name, "name": "code", "config": {"name": "code"},
         "inbound_nodes": [{"args": [{"class_name": "__keras_tensor__", "config": {"keras_history": ["x", 0, 0]}}],
                            "kwargs": {}}]}],
        "input_layers": [["x", 0, 0]], "output_layers": [["code", 0, 0]]}}
    path = tmp_path / "code.json"
    path.write_text(json.dumps(config))
    with pytest.raises(UnsupportedError, match=f"'code' \\({class_name}\\).*(code|keras.ops)") as e:
        kcompat.load(str(path))  # code layers: "holds Python code"; Keras 2's TF op layers: "rebuild ... keras.ops"
    assert str(e.value).count(class_name) == 1
