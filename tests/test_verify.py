"""verify: kcompat against real Keras layer by layer; diff arithmetic; report shape and text."""
from __future__ import annotations

import json

import numpy as np
import pytest

from kcompat.errors import KcompatError, ShapeError, UnsupportedError
from kcompat.verify.metrics import ATOL, RTOL, compare, diff_layer, ulp_distance
from kcompat.verify.reference import Reference, ReferenceResult
from kcompat.verify.report import EXTRA_LAYER_KEYS, LAYER_KEYS
from kcompat.verify.run import verify_file, verify_model


# ----------------------------------------------------------------- models built in real Keras
def faq_sequential(keras):
    return keras.Sequential([keras.Input((3, 2)), keras.layers.Flatten(), keras.layers.Dense(16),
                             keras.layers.Activation("relu"), keras.layers.Dense(4)])


def faq_named(keras):
    i = keras.Input((3, 2))
    x = keras.layers.Dense(16, name="D16")(i)
    x = keras.layers.Activation("relu", name="A")(x)
    x = keras.layers.Flatten(name="F")(x)
    return keras.Model(i, keras.layers.Dense(4, name="D4")(x))


def two_outputs_shared(keras):
    """Two outputs; 'A' and 'D4' are each called twice."""
    i = keras.Input((3, 2), name="x")
    act, d4 = keras.layers.Activation("tanh", name="A"), keras.layers.Dense(4, name="D4")
    o1 = d4(keras.layers.Flatten(name="F")(act(keras.layers.Dense(16, name="D16")(i))))
    o2 = d4(keras.layers.Flatten(name="F2")(act(keras.layers.Dense(16, name="E16")(i))))
    return keras.Model(i, [o1, o2])


def glu_model(keras):
    i = keras.Input((3, 4), name="x")
    dg = keras.layers.Dense(6, activation="glu", name="dg")(i)
    ag = keras.layers.Activation("glu", name="ag")(keras.layers.Dense(8, name="d8")(i))
    return keras.Model(i, [keras.layers.Flatten(name="f")(dg), ag])


@pytest.fixture(scope="module")
def files(keras, tmp_path_factory):
    """Each model saved once as .keras and .h5, plus an architecture-only JSON and Keras 3 weights."""
    folder = tmp_path_factory.mktemp("verify")
    out = {}
    for name, build in [("seq", faq_sequential), ("named", faq_named), ("shared", two_outputs_shared),
                        ("glu", glu_model)]:
        model = build(keras)
        for ext in (".keras", ".h5"):
            path = folder / f"{name}{ext}"
            model.save(path)
            out[name + ext] = str(path)
        if name == "named":  # named.json alone; beside.json with beside.weights.h5 (found by both sides)
            for stem in ("named", "beside"):
                (folder / f"{stem}.json").write_text(model.to_json())
                out[f"{stem}.json"] = str(folder / f"{stem}.json")
            model.save_weights(folder / "beside.weights.h5")
            out["beside.weights.h5"] = str(folder / "beside.weights.h5")
    return out


@pytest.mark.parametrize("name", ["seq", "named", "shared"])
@pytest.mark.parametrize("ext", [".keras", ".h5"])
def test_keras_built_models_pass(files, name, ext):
    report = verify_file(files[name + ext])
    assert report.ok, report.render()
    assert report.first_mismatch is None and report.exit_code == 0
    assert report.reference.startswith("keras 3")
    assert all(d.compared and d.params == d.reference_params for d in report.layers)
    assert "OK:" in report.render()


def test_layer_order_is_topological_and_shared_layers_use_first_call(files):
    report = verify_file(files["shared.keras"])
    names = [d.name for d in report.layers]
    assert names.index("D16") < names.index("A") < names.index("F") < names.index("D4")
    d4 = next(d for d in report.layers if d.name == "D4")
    assert d4.output_shape == [4, 4] and d4.params == 16 * 3 * 4 + 4


def test_architecture_only_json_uses_same_random_weights(files):
    report = verify_file(files["named.json"], seed=3)
    assert report.ok, report.render()
    assert any("seeded random weights (seed=3)" in n for n in report.notes)
    assert any("Keras was given kcompat's weights layer by layer" in n for n in report.notes)


@pytest.mark.parametrize("explicit", [True, False])
def test_json_with_keras3_weights(files, explicit):
    weights = files["beside.weights.h5"] if explicit else None
    report = verify_file(files["named.json" if explicit else "beside.json"], weights=weights)
    assert report.ok, report.render()
    assert not report.notes  # Keras loaded the same weights file itself


def test_broken_forward_is_caught_at_that_layer(files, monkeypatch):
    from kcompat.layers.core import Dense
    real = Dense.forward

    def off_by_1e3(self, x, *w):
        y = real(self, x, *w)
        return y + np.float32(1e-3) if self.name == "D16" else y
    monkeypatch.setattr(Dense, "forward", off_by_1e3)
    report = verify_file(files["named.keras"])
    assert not report.ok and report.exit_code == 1
    assert report.first_mismatch == "D16"
    d16 = report.layers[[d.name for d in report.layers].index("D16")]
    assert d16.max_abs_err == pytest.approx(1e-3, rel=1e-2)
    assert d16.min_passing_atol == pytest.approx(1e-3, rel=0.05)
    assert d16.isolated_max_abs_err == pytest.approx(1e-3, rel=1e-2) and d16.status == "mismatch"
    assert [d.name for d in report.layers if not d.ok] == ["D16"]  # downstream layers only drift
    assert report.min_passing_atol >= d16.min_passing_atol  # the final output carries the error on
    text = report.render(console_width=160)
    assert "MISMATCH: first mismatching layer 'D16' (Dense)" in text
    assert "smallest atol that passes every layer" in text
    again = verify_file(files["named.keras"], atol=report.min_passing_atol * 1.01)
    assert again.ok


def test_corrupt_weight_is_caught(keras, files):
    import kcompat
    from kcompat.verify.keras import KerasReference
    model = kcompat.load(files["named.keras"])
    kernel = model.spec.layer("D4").weights[0]
    kernel[0, 0] += 0.5
    report = verify_model(model, KerasReference(files["named.keras"]))
    assert report.first_mismatch == "D4" and not report.ok
    assert [d.ok for d in report.layers][:4] == [True, True, True, True]


def test_glu_declared_vs_actual_note(files):
    report = verify_file(files["glu.keras"])
    assert report.ok, report.render()
    dg = next(d for d in report.layers if d.name == "dg")
    assert dg.output_shape == [4, 3, 3] and dg.reference_declared_shape == [None, 3, 6]
    glu_notes = [n for n in report.notes if "does not halve the last axis for glu" in n]
    assert {"'dg'" in n or "'ag'" in n for n in glu_notes} == {True} and len(glu_notes) == 2
    assert any("layer 'f'" in n and "(None, 18)" in n and "(4, 9)" in n for n in report.notes)
    assert "glu" in report.render(console_width=200)


def test_json_report_keys(files):
    data = json.loads(json.dumps(verify_file(files["seq.keras"]).to_json(), allow_nan=False))
    assert set(data) == {"ok", "reference", "candidate", "atol", "rtol", "first_mismatch", "layers", "outputs",
                         "notes", "min_passing_atol"}
    assert data["candidate"] == "kcompat" and [o["name"] for o in data["outputs"]] == [data["layers"][-1]["name"]]
    assert data["atol"] == ATOL and data["rtol"] == RTOL and data["ok"] is True
    for row in data["layers"]:
        assert list(row) == list(LAYER_KEYS + EXTRA_LAYER_KEYS)
        assert isinstance(row["max_ulp"], int) and isinstance(row["isolated_max_ulp"], int)
        assert row["status"] == "ok" and row["isolated_max_abs_err"] <= row["max_abs_err"] + 1e-6


def test_inputs_list_dict_and_unknown_dims(keras, tmp_path):
    i = keras.Input((None, 2), name="seq_in")
    model = keras.Model(i, keras.layers.Dense(3, name="d")(i))
    path = str(tmp_path / "var.keras")
    model.save(path)
    with pytest.raises(ShapeError, match="--input"):
        verify_file(path)
    x = np.random.default_rng(1).normal(size=(2, 5, 2)).astype(np.float32)
    assert verify_file(path, inputs=[x]).ok
    assert verify_file(path, inputs={"seq_in": x}).ok
    with pytest.raises(ShapeError, match="missing input"):
        verify_file(path, inputs={"other": x})


def test_unknown_reference_name_and_bad_tolerance(files):
    with pytest.raises(UnsupportedError, match="'keras', 'tf_keras', 'onnxruntime', 'kcompat'.*reference='tflite'"):
        verify_file(files["seq.keras"], reference="tflite")
    with pytest.raises(KcompatError, match="atol=-1"):
        verify_file(files["seq.keras"], atol=-1)


class EchoReference(Reference):
    """A user's reference: kcompat itself, with one layer left out and one nudged."""

    def run(self, model, inputs):
        outs = model.layer_outputs(inputs)
        outs.pop("F")
        outs["D4"] = outs["D4"] + np.float32(1e-2)
        return ReferenceResult("echo", outs)


def test_user_reference_instance(files):
    report = verify_file(files["named.keras"], reference=EchoReference())
    by = {d.name: d for d in report.layers}
    assert report.reference == "echo" and report.first_mismatch == "D4"
    assert not by["F"].compared and by["F"].ok and by["D16"].reference_params is None
    assert "1 not compared" in report.render(console_width=100)  # the Flatten line of the per-class table


# ---------------------------------------------------------------------- diff arithmetic
def test_ulp_distance():
    one = np.float32(1.0)
    assert ulp_distance(one, np.nextafter(one, np.float32(2))) == 1
    assert ulp_distance(np.float32(-0.0), np.float32(0.0)) == 0
    tiny = np.float32(np.finfo(np.float32).smallest_subnormal)
    assert ulp_distance(tiny, -tiny) == 2
    assert ulp_distance(np.float32(np.inf), np.float32(np.inf)) == 0
    assert ulp_distance(np.float32(np.inf), np.finfo(np.float32).max) == 1
    assert ulp_distance(np.float32(np.nan), np.float32(np.nan)) == 0
    assert ulp_distance(np.float32(np.nan), one) == np.inf
    assert ulp_distance(np.float32(2.0), np.float32(1.0)) == 2 ** 23


def test_compare_abs_rel_and_min_atol():
    a = np.array([1.0, 2.0, 0.0], np.float32)
    b = np.array([1.0, 2.001, 0.0], np.float32)
    e = compare(a, b, atol=1e-5, rtol=1e-4)
    assert e.max_abs_err == pytest.approx(1e-3, rel=1e-3)
    assert e.max_rel_err == pytest.approx(1e-3 / 2.001, rel=1e-3)
    assert not e.ok and e.min_passing_atol == pytest.approx(1e-3 - 1e-4 * 2.001, rel=1e-3)
    assert compare(a, b, atol=e.min_passing_atol, rtol=1e-4).ok
    assert np.allclose(a, b, atol=e.min_passing_atol * 1.0001, rtol=1e-4)
    assert not np.allclose(a, b, atol=e.min_passing_atol * 0.999, rtol=1e-4)
    zero_ref = compare(np.float32([1e-30]), np.float32([0.0]))
    assert zero_ref.max_rel_err == pytest.approx(1e-30 / np.finfo(np.float32).tiny) and zero_ref.ok


def test_compare_special_values():
    nan, inf = np.float32(np.nan), np.float32(np.inf)
    same = compare(np.array([nan, inf, -inf, -0.0]), np.array([nan, inf, -inf, 0.0]))
    assert same.ok and same.max_abs_err == 0 and same.max_ulp == 0
    for a, b in [(nan, 1.0), (1.0, nan), (inf, -inf), (1.0, inf)]:
        e = compare(np.array([a]), np.array([b]))
        assert not e.ok and e.max_abs_err == np.inf and e.max_rel_err == np.inf and e.min_passing_atol == np.inf


def test_diff_layer_shape_and_params():
    x = np.zeros((2, 3), np.float32)
    d = diff_layer("l", "Dense", x, np.zeros((2, 4), np.float32), 10, 10)
    assert not d.ok and d.max_abs_err is None and "output shape" in d.problem
    d = diff_layer("l", "Dense", x, x, 10, 12)
    assert not d.ok and "params" in d.problem
    d = diff_layer("l", "Split", [x, x], [x, x + 1], 0, 0)
    assert not d.ok and d.output_shape == [[2, 3], [2, 3]] and d.max_abs_err == 1.0


def test_json_report_writes_non_finite_as_null():
    from kcompat.verify.report import Report
    x = np.zeros((2,), np.float32)
    d = diff_layer("n", "Dense", x, np.float32([np.nan, 0.0]), 0, 0)
    report = Report(False, "hand", ATOL, RTOL, "n", [d])
    row = json.loads(json.dumps(report.to_json(), allow_nan=False))["layers"][0]
    assert row["max_abs_err"] is None and row["max_ulp"] is None and row["ok"] is False
    assert "no tolerance would pass" in report.render()


@pytest.mark.parametrize("width, buggy", [(4, True), (5, False)])
def test_keras_channels_first_bias_add_bug_is_named(keras, tmp_path, width, buggy):
    """Keras 3 on TensorFlow adds a channels_first conv's bias along the last axis when that axis has as many
    entries as there are filters. verify reports the mismatch and names the Keras bug; otherwise all passes."""
    x = keras.Input((3, 6, width))
    y = keras.layers.Conv2D(4, 3, padding="same", data_format="channels_first", name="c")(x)
    m = keras.Model(x, y)
    kernel, _ = m.get_layer("c").get_weights()
    m.get_layer("c").set_weights([kernel, np.arange(1, 5, dtype=np.float32)])
    path = tmp_path / "cf.keras"
    m.save(path)
    report = verify_file(str(path))
    named = any("bias along the last axis" in n for n in report.notes)
    assert report.ok is (not buggy) and named is buggy
    if buggy:
        assert report.first_mismatch == "c"
