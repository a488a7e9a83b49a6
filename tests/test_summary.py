"""Summary: kcompat's text is byte-identical to Keras 3's ``model.summary()`` at the same width."""
from __future__ import annotations

import json

import pytest

from conftest import to_kcompat
from kcompat.model import Model
from kcompat.summary import explain_text, summary_json, summary_text

WIDTHS = [(80, None), (120, None), (80, 100), (200, 60)]  # (terminal columns, line_length)


def keras_summary(kmodel, monkeypatch, columns, line_length=None) -> str:
    """What Keras prints, captured with print_fn, in a terminal ``columns`` wide."""
    monkeypatch.setenv("COLUMNS", str(columns))
    out: list[str] = []
    kmodel.summary(line_length=line_length, print_fn=out.append)
    return "".join(out)


# ------------------------------------------------------------------ models built in real Keras
def faq_sequential(keras):
    L = keras.layers
    return keras.Sequential([keras.Input((3, 2)), L.Flatten(), L.Dense(16), L.Activation("relu"), L.Dense(4)],
                            name="faq_seq")


def faq_functional(keras):
    L = keras.layers
    inp = keras.Input((3, 2))
    x = L.Dense(16, name="D16")(inp)
    x = L.Activation("relu", name="A")(x)
    x = L.Flatten(name="F")(x)
    return keras.Model(inp, L.Dense(4, name="D4")(x), name="faq")


def two_outputs_shared(keras):
    """Two inputs, two outputs, a branch, and a layer called on (None, 5) then on (None, 3, 5)."""
    L = keras.layers
    inp, seq = keras.Input((5,), name="inp"), keras.Input((3, 5), name="seq")
    shared = L.Dense(5, name="shared")
    h = L.Dropout(0.3, name="drop")(shared(inp))
    a = L.Dense(3, activation="softmax", name="head_a")(h)
    b = L.Dense(1, use_bias=False, name="head_b")(L.Flatten(name="f")(shared(seq)))
    return keras.Model([inp, seq], [a, L.Activation("tanh", name="t")(b)], name="two_heads")


def chain_with_two_outputs(keras):
    """Outputs [A, B] where B reads A: Keras still lays it out as sequential-like (no Connected to)."""
    L = keras.layers
    inp = keras.Input((4,), name="inp")
    a = L.Dense(6, name="A")(inp)
    return keras.Model(inp, [a, L.Dense(2, name="B")(a)], name="chain")


def long_names(keras):
    L = keras.layers
    inp = keras.Input((7,), name="an_input_with_a_rather_long_name_indeed")
    x = L.Dense(1000, name="a_dense_layer_whose_name_goes_on_and_on_and_on_past_any_column_width")(inp)
    x = L.Dropout(0.1, name="dropout_with_a_fairly_long_name_too")(x)
    return keras.Model(inp, L.Dense(3, use_bias=False, name="out")(x), name="very_long_model_name_" * 3)


def frozen_and_no_bias(keras):
    L = keras.layers
    frozen = L.Dense(8, name="frozen")
    frozen.trainable = False
    return keras.Sequential([keras.Input((4,)), frozen, L.Dense(2, use_bias=False, name="nobias")])


def weight_dtypes(keras):
    """Byte sizes follow each layer's variable dtype: float64 8, mixed_float16 4, bfloat16 2."""
    L = keras.layers
    inp = keras.Input((3,))
    x = L.Dense(4, dtype="float64", name="d64")(inp)
    x = L.Dense(4, dtype="mixed_float16", name="dmix")(x)
    return keras.Model(inp, L.Dense(4, dtype="bfloat16", name="dbf")(x), name="dtypes")


def shared_kernel_and_pipeline(keras):
    """SpectralNormalization tracks the wrapped kernel twice (counted once: 5*4 + 4, + vector_u 4 non-trainable);
    a Pipeline counts its layers' weights (BatchNormalization's moving statistics non-trainable)."""
    L = keras.layers
    inp = keras.Input((5,))
    x = L.SpectralNormalization(L.Dense(4), name="sn")(inp)
    x = L.Pipeline([L.BatchNormalization(), L.Dense(3), L.Rescaling(0.5)], name="pipe")(x)
    return keras.Model(inp, x, name="wrappers")


MODELS = [faq_sequential, faq_functional, two_outputs_shared, chain_with_two_outputs, long_names, frozen_and_no_bias,
          weight_dtypes, shared_kernel_and_pipeline]


@pytest.fixture(scope="module")
def built(keras, tmp_path_factory):
    """Each Keras model with its kcompat twin (saved to .keras and loaded by kcompat)."""
    tmp = tmp_path_factory.mktemp("summary")
    return {f.__name__: (k := f(keras), to_kcompat(k, tmp, f.__name__)) for f in MODELS}


@pytest.mark.parametrize("which", [f.__name__ for f in MODELS])
@pytest.mark.parametrize("columns,line_length", WIDTHS)
def test_text_identical_to_keras(built, monkeypatch, which, columns, line_length):
    kmodel, model = built[which]
    expected = keras_summary(kmodel, monkeypatch, columns, line_length)
    assert summary_text(model, line_length=line_length, width=columns) == expected


def test_width_defaults_to_the_terminal_like_keras(built, monkeypatch):
    kmodel, model = built["two_outputs_shared"]
    expected = keras_summary(kmodel, monkeypatch, 95)  # sets COLUMNS=95 for both
    assert summary_text(model) == expected


def test_text_shows_keras_layout(built):
    seq = summary_text(built["faq_sequential"][1], width=120)
    assert "InputLayer" not in seq and "Connected to" not in seq
    assert "(InputLayer)" in summary_text(built["faq_functional"][1], width=120)
    assert "Connected to" not in summary_text(built["chain_with_two_outputs"][1], width=120)
    two = summary_text(built["two_outputs_shared"][1], width=200)
    row = next(l for l in two.splitlines() if "shared (Dense)" in l)
    assert "(None, 3, 5)" in row and "inp[0][0], seq[0][0]" in row  # the last call's shape; every call's inputs


def test_json_matches_keras(built, keras):
    for kmodel, model in built.values():
        s = json.loads(json.dumps(summary_json(model)))
        by_name = {l["name"]: l for l in s["layers"]}
        for layer in kmodel.layers:
            got = by_name[layer.name]
            assert got["class_name"] == type(layer).__name__
            assert got["output_shape"] == list(layer.output.shape)
            assert got["params"] == layer.count_params()
        assert s["name"] == kmodel.name
        assert s["total_params"] == kmodel.count_params()
        assert s["trainable_params"] == sum(int(w.numpy().size) for w in kmodel.trainable_weights)
        assert s["non_trainable_params"] == sum(int(w.numpy().size) for w in kmodel.non_trainable_weights)


def test_json_lists_the_input_layer(built):
    s = summary_json(built["faq_sequential"][1])
    assert s["layers"][0]["class_name"] == "InputLayer" and s["layers"][0]["output_shape"] == [None, 3, 2]


@pytest.mark.parametrize("which", ["faq_functional", "faq_sequential"])
def test_explain_gives_the_arithmetic(built, which):
    kmodel, model = built[which]
    text = explain_text(model, width=100)
    dense = next(l for l in kmodel.layers if type(l).__name__ == "Dense")
    line = next(l for l in text.splitlines() if l.lstrip().startswith(f"{dense.name} (Dense)"))
    assert f"{dense.count_params()} params" in line
    assert str(tuple(dense.output.shape)) in line
    flatten = next(l for l in kmodel.layers if type(l).__name__ == "Flatten")
    line = next(l for l in text.splitlines() if l.lstrip().startswith(f"{flatten.name} (Flatten)"))
    assert str(tuple(flatten.output.shape)) in line and "multiplies" in line
    assert f"{kmodel.count_params():,} params" in text.splitlines()[-1]


def test_explain_faq_functional_why(built):
    text = explain_text(built["faq_functional"][1])
    line = next(l for l in text.splitlines() if l.lstrip().startswith("D16"))
    assert "last axis" in line and "2 -> 16" in line and "(None, 3, 2) -> (None, 3, 16)" in line
    assert "48 (D16) + 196 (D4) = 244 params" in text


def test_op_node_model(keras, tmp_path, monkeypatch):
    """Keras op nodes (x * 2, ops.exp) show as Keras shows them."""
    L = keras.layers
    inp = keras.Input((4,), name="x")
    h = L.Dense(4, name="d")(inp)
    y = keras.ops.exp(h) * h
    kmodel = keras.Model(inp, L.Add(name="add")([y, h]), name="ops")
    model = to_kcompat(kmodel, tmp_path)
    for columns, line_length in WIDTHS:
        assert summary_text(model, line_length, columns) == keras_summary(kmodel, monkeypatch, columns, line_length)


@pytest.mark.parametrize("sequential", [False, True])
def test_long_tables_are_laid_out_as_rich_would(sequential, monkeypatch):
    """Tables over FAST_ROWS rows are written without rich, from rich's own template: the same characters as
    rich's rendering, also for unicode names, names that read as markup, and names too long for a column."""
    from kcompat import summary
    from kcompat.formats.keras.config import spec_from_config
    names = [f"l{i}" for i in range(300)]
    names[5], names[7], names[9] = "ünï cödé", "a[b]" + "x" * 60, "long_" * 20
    layers = [{"class_name": "InputLayer", "name": "in", "config": {"batch_shape": [None, 3], "name": "in"},
               "inbound_nodes": []}]
    for name in names:
        layers.append({"class_name": "Dense", "name": name, "config": {"name": name, "units": 3},
                       "inbound_nodes": [] if sequential else [{"args": [{"class_name": "__keras_tensor__",
                                         "config": {"keras_history": [layers[-1]["name"], 0, 0]}}], "kwargs": {}}]})
    if sequential:
        config = {"class_name": "Sequential", "config": {"name": "s", "layers": layers}}
    else:
        config = {"class_name": "Functional", "config": {"name": "f", "layers": layers, "input_layers": [["in", 0, 0]],
                                                          "output_layers": [[names[-1], 0, 0]]}}
    model = Model(spec_from_config(config, "big"))
    for width in (80, 112, 200):
        fast = summary.summary_text(model, width=width)
        monkeypatch.setattr(summary, "FAST_ROWS", 10**9)
        assert fast == summary.summary_text(model, width=width)
        monkeypatch.setattr(summary, "FAST_ROWS", 100)
