"""Recurrent models end to end: the IMDB-style classifier users bring (Embedding(mask_zero=True) ->
Bidirectional(LSTM(return_sequences=True)) -> GRU -> Dense(sigmoid)), saved by Keras 3 and by tf_keras,
through the CLI (summary, run, verify, convert) and back into real Keras 3; conversions of the conformance
groups (tests/recurrent_rows.py); bad configs refused by name.
"""
from __future__ import annotations

import json
import re

import numpy as np
import pytest

import kcompat
from kcompat.errors import ConfigError, ShapeError, UnsupportedError
from kcompat.layers import make_layer
from recurrent_rows import ATOL, RTOL, built, randomize
from test_cli import cli

pytestmark = [pytest.mark.filterwarnings("ignore:You are saving your model as an HDF5 file"),
              pytest.mark.filterwarnings("ignore:Layer '.*' \\(of type .*\\) was passed an input with a mask")]
STEPS = 20


def imdb(k):
    """The classifier, Sequential as in the Keras IMDB examples (so the file carries no masks)."""
    L = k.layers
    return k.Sequential([k.Input((STEPS,), dtype="int32"), L.Embedding(50, 8, mask_zero=True),
                         L.Bidirectional(L.LSTM(6, return_sequences=True)), L.GRU(4),
                         L.Dense(1, activation="sigmoid")], name="imdb")


def reviews() -> np.ndarray:
    """Padded reviews: right-padded, one with a hole, one all padding, one full."""
    rng = np.random.default_rng(7)
    x = rng.integers(1, 50, size=(6, STEPS)).astype(np.int32)
    for i, n in enumerate([20, 12, 5, 0, 17, 9]):
        x[i, n:] = 0
    x[4, 3:6] = 0
    return x


@pytest.fixture(scope="module", params=["keras", "tf_keras"])
def imdb_file(request, keras, tmp_path_factory):
    """(path, Keras's outputs, the Keras model) of the classifier saved by Keras 3 (.keras) or tf_keras (.h5)."""
    import importlib
    module = importlib.import_module(request.param)
    model = imdb(module)
    randomize(model, seed=3)
    path = tmp_path_factory.mktemp(request.param) / ("imdb.keras" if request.param == "keras" else "imdb.h5")
    model.save(path)
    return path, np.asarray(model(reviews())), model


def test_imdb_summary_params_match_keras(imdb_file):
    path, _, model = imdb_file
    code, out, err = cli("summary", path)
    assert code == 0, err
    total = re.search(r"Total params: ([\d,]+)", out).group(1)
    assert int(total.replace(",", "")) == model.count_params()
    code, out, err = cli("summary", path, "--json")
    assert code == 0, err
    layers = {entry["name"]: entry for entry in json.loads(out)["layers"]}
    for lyr in model.layers:
        assert layers[lyr.name]["params"] == lyr.count_params(), lyr.name
        assert tuple(layers[lyr.name]["output_shape"]) == tuple(lyr.output.shape), lyr.name


def test_imdb_run_matches_keras(imdb_file, tmp_path):
    path, want, _ = imdb_file
    np.save(tmp_path / "x.npy", reviews())
    code, out, err = cli("run", path, "-i", tmp_path / "x.npy", "-o", tmp_path / "y.npy")
    assert code == 0, err
    np.testing.assert_allclose(np.load(tmp_path / "y.npy"), want, atol=ATOL, rtol=RTOL)
    masked = kcompat.load(str(path))
    assert masked.uses_masks


def test_imdb_verify_passes(imdb_file):
    """Against Keras 3; for the tf_keras file Keras 3 cannot read (LSTM's time_major), against Keras 2 itself."""
    from kcompat.verify.run import verify_file
    path, _, _ = imdb_file
    report = verify_file(str(path), inputs=reviews())
    assert report.ok, report.first_mismatch
    assert [d.name for d in report.layers if not d.compared] == []
    keras2 = any("the reference is Keras 2" in n for n in report.notes)
    assert keras2 == str(path).endswith(".h5"), report.notes


@pytest.mark.parametrize("ext", [".keras", ".h5", ".json"])
def test_imdb_converts_to_files_keras3_runs_alike(imdb_file, keras, ext, tmp_path):
    path, want, _ = imdb_file
    out = tmp_path / f"converted{ext}"
    code, _, err = cli("convert", path, out)
    assert code == 0, err
    back = _keras3_load(keras, out)
    np.testing.assert_allclose(np.asarray(back(reviews())), want, atol=ATOL, rtol=RTOL)
    assert back.count_params() == imdb_file[2].count_params()


def _keras3_load(keras, path):
    if path.suffix == ".json":
        model = keras.models.model_from_json(path.read_text())
        model.load_weights(path.with_suffix(".weights.h5"))
        return model
    return keras.models.load_model(path, compile=False)


# Conversions of the conformance groups: tf_keras .h5 -> Keras 3 files, and Keras 3 .keras -> .h5 / .json.
# Not the tf_keras mask rows: Keras 3 masks an Add / Concatenate or an RNN given initial states
# differently from tf_keras (kcompat/masks.py), so Keras 3 computes those converted models differently.
@pytest.mark.parametrize("module,group,ext", [("tf_keras", "wrappers", ".keras"), ("tf_keras", "initial_state", ".json"),
                                              ("keras", "masks", ".h5"), ("keras", "wrappers", ".json")])
def test_groups_convert_to_files_keras3_runs_alike(keras, module, group, ext, tmp_path):
    _, kc, _, feed, want = built(module, group)["__model__"]
    out = tmp_path / f"{group}{ext}"
    kcompat.save(kc, str(out))
    got = _keras3_load(keras, out)(feed)
    for g, w in zip(got if isinstance(got, (list, tuple)) else [got], want):
        np.testing.assert_allclose(np.asarray(g), w, atol=ATOL, rtol=RTOL)


def _keras2_config(layer: dict, inbound: list, batch_shape=(None, 3, 2)) -> dict:
    """A tf_keras Functional config: input 'x' of ``batch_shape``, then ``layer`` called on ``inbound``."""
    return {"class_name": "Functional", "keras_version": "2.15.0", "config": {
        "name": "m", "input_layers": [["x", 0, 0]], "output_layers": [[layer["name"], 0, 0]], "layers": [
            {"class_name": "InputLayer", "name": "x", "inbound_nodes": [],
             "config": {"batch_input_shape": list(batch_shape), "name": "x"}},
            {**layer, "inbound_nodes": [inbound]}]}}


def test_tf_keras_seq2seq_decoder_keeps_its_mask_in_keras3(keras, tmp_path):
    """The Keras seq2seq pattern: a decoder LSTM on masked embeddings, started from the encoder's states.
    tf_keras masks the decoder; Keras 3 would not (it passes masks only to a call with one tensor
    argument), so kcompat writes the mask into the Keras 3 graph: not_equal(decoder indices, 0)."""
    import tf_keras
    L = tf_keras.layers
    enc_in, dec_in = tf_keras.Input((STEPS,), dtype="int32"), tf_keras.Input((7,), dtype="int32")
    _, h, c = L.LSTM(5, return_state=True)(L.Embedding(50, 4, mask_zero=True)(enc_in))
    dec = L.LSTM(5, return_sequences=True)(L.Embedding(50, 4, mask_zero=True)(dec_in), initial_state=[h, c])
    model = tf_keras.Model([enc_in, dec_in], L.Dense(30, activation="softmax")(dec))
    randomize(model, seed=5)
    model.save(tmp_path / "s2s.h5")
    dec_ids = reviews()[:, :7]
    want = np.asarray(model([reviews(), dec_ids]))
    kc = kcompat.load(str(tmp_path / "s2s.h5"))
    np.testing.assert_allclose(kc.predict([reviews(), dec_ids])[0], want, atol=ATOL, rtol=RTOL)
    kcompat.save(kc, str(tmp_path / "s2s.keras"))
    back = keras.models.load_model(tmp_path / "s2s.keras", compile=False)
    np.testing.assert_allclose(np.asarray(back([reviews(), dec_ids])), want, atol=ATOL, rtol=RTOL)
    ops = [ls for ls in kcompat.load(str(tmp_path / "s2s.keras")).spec.layers if ls.is_op]
    assert [(ls.class_name, ls.name.endswith("_mask")) for ls in ops] == [("NotEqual", True)]


def test_time_major_cannot_be_written_for_keras3(tmp_path):
    from kcompat.formats.keras.config import spec_from_config
    config = _keras2_config({"class_name": "GRU", "name": "r", "config": {"units": 2, "name": "r", "time_major": True}},
                            [["x", 0, 0, {}]])
    model = kcompat.Model(spec_from_config(config, "m.json")).init_weights(0)
    with pytest.raises(UnsupportedError, match="time_major"):
        kcompat.save(model, str(tmp_path / "x.keras"))


# ------------------------------------------------------------------------ bad configs
def _lstm(**kw):
    return {"class_name": "LSTM", "config": {"name": "inner", "units": 2, **kw}}


@pytest.mark.parametrize("class_name,config,error,words", [
    ("LSTM", dict(units=0), ConfigError, "units"),
    ("GRU", dict(units=2, recurrent_activation="nope"), UnsupportedError, "nope"),
    ("SimpleRNN", dict(units=2, dropout="x"), ConfigError, "dropout"),
    ("RNN", dict(cell={"class_name": "MyCell", "config": {}}), UnsupportedError, "MyCell"),
    ("RNN", dict(cell={"class_name": "StackedRNNCells", "config": {"cells": []}}), ConfigError, "cells"),
    ("Bidirectional", dict(layer={"class_name": "Dense", "config": {"units": 2}}), UnsupportedError, "Dense"),
    ("Bidirectional", dict(layer=_lstm(), merge_mode="max"), ConfigError, "merge_mode"),
    ("Bidirectional", dict(layer=_lstm(), backward_layer=_lstm()), ConfigError, "go_backwards"),
    ("Bidirectional", dict(layer=_lstm(return_sequences=True), backward_layer=_lstm(go_backwards=True)),
     ConfigError, "return_sequences"),
    ("TimeDistributed", dict(layer={"class_name": "Lambda", "config": {}}), UnsupportedError, "Lambda"),
    ("ConvLSTM2D", dict(filters=2, kernel_size=3, strides=2, dilation_rate=2), ConfigError, "dilation_rate"),
])
def test_bad_config_refused_by_name(class_name, config, error, words):
    with pytest.raises(error) as e:
        make_layer(class_name, {"name": "bad", **config}, "bad")
    assert words in str(e.value) and "'bad'" in str(e.value)


def test_bad_input_shapes_refused():
    lstm = make_layer("LSTM", {"units": 2}, "bad")
    with pytest.raises(ShapeError, match="rank >= 3"):
        lstm.output_shape((None, 4))
    with pytest.raises(ShapeError, match="initial states"):
        lstm.run(np.zeros((2, 3, 4), np.float32), [np.zeros((2, 3), np.float32)] * 2, None,
                 [np.zeros(w.shape, np.float32) for w in lstm.weights((None, 3, 4))])
    with pytest.raises(ShapeError, match="rank >= 3"):
        make_layer("TimeDistributed", {"layer": {"class_name": "Dense", "config": {"units": 2}}}, "bad").weights(
            (None, 4))


def test_tf_keras_rnn_constants_refused():
    from kcompat.formats.keras.config import spec_from_config
    config = _keras2_config({"class_name": "LSTM", "name": "r", "config": {"units": 2, "name": "r"}},
                            [["x", 0, 0, {"constants": ["x", 0, 0]}]])
    with pytest.raises(UnsupportedError, match="constants"):
        spec_from_config(config, "m.json")
