"""Nested models (a Sequential or Functional called as a layer, at any depth, a sub-model called twice) against
real Keras 3 and Keras 2 (tf_keras): every Keras format read and written, run, verify down to the inner layers
(``outer/inner``), ONNX export in ONNX Runtime, and summary text identical to Keras's with and without
``expand_nested``. Weights are seeded random, BatchNormalization statistics included, so every weight counts.

The transfer-learning models follow the Keras tutorial (Rescaling, a frozen base called with training=False,
GlobalAveragePooling2D, Dropout, Dense) without RandomFlip / RandomRotation (identity at inference; another
branch adds them): a miniature base here always, MobileNetV2(alpha=0.35) at 32x32 under the slow marker.
"""
from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import pytest

import kcompat
from kcompat.summary import summary_json, summary_text
from kcompat.verify.run import verify_file

RTOL, ATOL = 1e-4, 1e-5


def randomize(kmodel, seed: int, scale: float = 0.3) -> None:
    """Seeded random values for every weight (Keras 3 or tf_keras), positive BN variances and gammas."""
    rng = np.random.default_rng(seed)
    for w in kmodel.weights:
        name, shape = w.name.split("/")[-1], tuple(w.shape)
        if "variance" in name or "gamma" in name:
            value = rng.uniform(0.5, 1.5, shape)
        else:
            value = rng.normal(0.0, scale, shape)
        w.assign(value.astype("float32"))


def data(kmodel, seed: int = 1, batch: int = 3) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [rng.normal(size=(batch, *t.shape[1:])).astype("float32") for t in kmodel.inputs]


def run_keras(kmodel, xs: list[np.ndarray]) -> list[np.ndarray]:
    out = kmodel(xs if len(xs) > 1 else xs[0], training=False)
    return [np.asarray(o) for o in (out if isinstance(out, (list, tuple)) else [out])]


def assert_outputs(got: list, want: list) -> None:
    assert len(got) == len(want)
    for g, w in zip(got, want):
        assert g.shape == w.shape
        np.testing.assert_allclose(g, w, rtol=RTOL, atol=ATOL)


# ------------------------------------------------------------------ models, built by a Keras (3 or 2) module
def seq_in_functional(K):
    L = K.layers
    block = K.Sequential([K.Input((8,)), L.Dense(5, name="d"), L.BatchNormalization(name="bn"),
                          L.Activation("relu", name="act")], name="block")
    inp = K.Input((6,), name="x")
    return K.Model(inp, L.Dense(3, name="head")(block(L.Dense(8, name="pre")(inp))), name="seq_in_functional")


def functional_in_sequential(K):
    L = K.layers
    i = K.Input((8,), name="inner_in")
    merged = L.Add(name="add")([L.Dense(4, name="a")(i), L.Dense(4, name="b")(i)])
    inner = K.Model(i, L.BatchNormalization(name="bn")(merged), name="inner")
    return K.Sequential([K.Input((6,)), L.Dense(8, name="pre"), inner, L.Dense(2, name="head")],
                        name="functional_in_sequential")


def two_levels(K):
    """A Sequential in a Functional in a Functional; the outer model also outputs the nested model's output."""
    L = K.layers
    level2 = K.Sequential([K.Input((4,)), L.Dense(4, name="l2_dense"), L.BatchNormalization(name="l2_bn")],
                          name="level2")
    i = K.Input((5,), name="l1_in")
    level1 = K.Model(i, L.Dense(3, name="l1_out")(level2(L.Dense(4, name="l1_dense")(i))), name="level1")
    inp = K.Input((5,), name="x")
    y = level1(inp)
    return K.Model(inp, [L.Dense(2, name="head")(y), y], name="two_levels")


def siamese(K):
    """One encoder called on two inputs: its layers run twice with the same weights."""
    L = K.layers
    i = K.Input((6,), name="enc_in")
    h = L.BatchNormalization(name="bn")(L.Dense(5, activation="relu", name="d1")(i))
    encoder = K.Model(i, L.Dense(4, name="d2")(h), name="encoder")
    a, b = K.Input((6,), name="a"), K.Input((6,), name="b")
    diff = L.Subtract(name="diff")([encoder(a), encoder(b)])
    return K.Model([a, b], L.Dense(1, name="score")(diff), name="siamese")


def frozen_base(K):
    """The transfer-learning tutorial in miniature: a frozen convolutional base called with training=False."""
    L = K.layers
    base = K.Sequential([K.Input((8, 8, 3)), L.Conv2D(4, 3, name="c1"), L.BatchNormalization(name="bn1"),
                         L.ReLU(name="r1"), L.Conv2D(6, 3, padding="same", name="c2"),
                         L.BatchNormalization(name="bn2")], name="base")
    base.trainable = False
    inp = K.Input((8, 8, 3), name="image")
    x = base(L.Rescaling(1 / 127.5, offset=-1, name="rescale")(inp), training=False)
    x = L.Dropout(0.2, name="drop")(L.GlobalAveragePooling2D(name="gap")(x))
    return K.Model(inp, L.Dense(2, name="head")(x), name="frozen_base")


def convnext_like(K):
    """ConvNeXt's shape: a stem Sequential built without an Input, on its caller's tensor."""
    L = K.layers
    stem = K.Sequential([L.Conv2D(8, 4, strides=4, name="stem_conv"),
                         L.LayerNormalization(epsilon=1e-6, name="stem_ln")], name="stem")
    inp = K.Input((16, 16, 3), name="image")
    x = L.DepthwiseConv2D(3, padding="same", name="dw")(stem(inp))
    return K.Model(inp, L.Dense(3, name="head")(L.GlobalAveragePooling2D(name="gap")(x)), name="convnext_like")


def multi_io(K):
    """A nested Functional with two inputs and two outputs."""
    L = K.layers
    i, j = K.Input((4,), name="i"), K.Input((3,), name="j")
    both = L.Concatenate(name="cat")([L.Dense(3, name="di")(i), j])
    inner = K.Model([i, j], [L.Dense(2, name="p")(both), L.Dense(5, name="q")(j)], name="two_way")
    a, b = K.Input((4,), name="a"), K.Input((3,), name="b")
    p, q = inner([a, b])
    return K.Model([a, b], L.Dense(2, name="head")(L.Concatenate(name="join")([p, q])), name="multi_io")


KERAS3 = [seq_in_functional, functional_in_sequential, two_levels, siamese, frozen_base, convnext_like, multi_io]
NAMES = [f.__name__ for f in KERAS3]
FORMATS = [".keras", ".h5", ".json"]


def save_keras(kmodel, folder: Path, name: str) -> dict[str, Path]:
    """The model in every Keras format, written by Keras itself."""
    paths = {ext: folder / f"{name}{ext}" for ext in FORMATS}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # Keras's "HDF5 is legacy"
        kmodel.save(paths[".keras"])
        kmodel.save(paths[".h5"])
    paths[".json"].write_text(kmodel.to_json())
    kmodel.save_weights(folder / f"{name}.weights.h5")
    return paths


@pytest.fixture(scope="module")
def built(keras, tmp_path_factory):
    """name -> (Keras model, its files, inputs, Keras's outputs)."""
    tmp = tmp_path_factory.mktemp("nested")
    out = {}
    for i, make in enumerate(KERAS3):
        kmodel = make(keras)
        randomize(kmodel, i)
        xs = data(kmodel)
        out[make.__name__] = (kmodel, save_keras(kmodel, tmp, make.__name__), xs, run_keras(kmodel, xs))
    return out


@pytest.mark.parametrize("ext", FORMATS)
@pytest.mark.parametrize("name", NAMES)
def test_reads_every_keras3_format(built, name, ext):
    kmodel, paths, xs, want = built[name]
    model = kcompat.load(str(paths[ext]))
    assert model.total_params == kmodel.count_params()
    assert model.trainable_params == sum(int(np.prod(w.shape)) for w in kmodel.trainable_weights)
    assert_outputs(model.predict(xs), want)


@pytest.mark.parametrize("name", NAMES)
def test_verify_reaches_the_inner_layers(built, name):
    kmodel, paths, _, _ = built[name]
    report = verify_file(str(paths[".keras"]))
    assert report.ok, report.render()
    compared = {d.name for d in report.layers if d.compared}
    inner = {f"{layer.name}/{sub.name}" for layer in kmodel.layers if hasattr(layer, "layers")
             for sub in layer.layers if sub.__class__.__name__ != "InputLayer"}
    assert inner and inner <= compared  # every inner layer of the first level, by its outer/inner name
    for layer in kmodel.layers:  # and each nested model's own output, with Keras's parameter count
        if hasattr(layer, "layers"):
            d = next(d for d in report.layers if d.name == layer.name)
            assert d.compared and d.params == d.reference_params == layer.count_params()


@pytest.mark.parametrize("expand", [False, True])
@pytest.mark.parametrize("name", NAMES)
def test_summary_text_identical_to_keras(built, monkeypatch, name, expand):
    kmodel, paths, _, _ = built[name]
    model = kcompat.load(str(paths[".keras"]))
    for columns in (100, 150):
        monkeypatch.setenv("COLUMNS", str(columns))
        text: list[str] = []
        kmodel.summary(expand_nested=expand, print_fn=text.append)
        assert summary_text(model, width=columns, expand_nested=expand) == "".join(text)


def test_summary_json_nests_the_inner_layers(built):
    model = kcompat.load(str(built["two_levels"][1][".keras"]))
    entry = next(l for l in summary_json(model)["layers"] if l["name"] == "level1")
    assert entry["params"] == built["two_levels"][0].get_layer("level1").count_params()
    inner = next(l for l in entry["layers"] if l["name"] == "level1/level2")
    assert [l["name"] for l in inner["layers"]] == ["level1/level2/l2_dense", "level1/level2/l2_bn"]


@pytest.mark.parametrize("ext", FORMATS)
@pytest.mark.parametrize("name", NAMES)
def test_writes_every_format_keras3_loads(keras, built, tmp_path, name, ext):
    kmodel, paths, xs, want = built[name]
    model = kcompat.load(str(paths[".keras"]))
    target = tmp_path / f"out{ext}"
    kcompat.save(model, str(target))
    if ext == ".json":
        loaded = keras.models.model_from_json(target.read_text())
        loaded.load_weights(tmp_path / "out.weights.h5")
    else:
        loaded = keras.models.load_model(target, compile=False)
    assert_outputs(run_keras(loaded, xs), want)
    assert loaded.count_params() == kmodel.count_params()
    assert_outputs(kcompat.load(str(target)).predict(xs), want)  # and kcompat reads its own file back


def test_written_layout_is_keras3s(built, tmp_path):
    """The weights group of a nested model is where Keras 3 puts it, in .keras and in legacy .h5."""
    import h5py
    import zipfile
    model = kcompat.load(str(built["two_levels"][1][".keras"]))
    kcompat.save(model, str(tmp_path / "m.keras"))
    with zipfile.ZipFile(tmp_path / "m.keras") as z:
        (tmp_path / "w.h5").write_bytes(z.read("model.weights.h5"))
    with h5py.File(tmp_path / "w.h5") as f:
        assert f["layers/functional/layers/sequential/layers/batch_normalization/vars/3"].shape == (4,)
        assert f["layers/functional/layers/sequential/vars"].attrs["name"] == "level2"
    kcompat.save(model, str(tmp_path / "m.h5"))
    with h5py.File(tmp_path / "m.h5") as f, h5py.File(built["two_levels"][1][".h5"]) as k:
        ours, theirs = f["model_weights/level1"], k["model_weights/level1"]
        names = [n.decode() if isinstance(n, bytes) else str(n) for n in theirs.attrs["weight_names"]]
        assert [n.decode() if isinstance(n, bytes) else str(n) for n in ours.attrs["weight_names"]] == names
        for name in names:
            np.testing.assert_array_equal(ours[name][()], theirs[name][()])


@pytest.mark.parametrize("name", NAMES)
def test_onnx_export_runs_in_onnxruntime(built, tmp_path, name):
    import onnxruntime as ort
    _, paths, xs, want = built[name]
    model = kcompat.load(str(paths[".keras"]))
    kcompat.save(model, str(tmp_path / "m.onnx"))
    session = ort.InferenceSession(str(tmp_path / "m.onnx"), providers=["CPUExecutionProvider"])
    feed = dict(zip([i.name for i in session.get_inputs()], xs))
    assert [i.name for i in session.get_inputs()] == model.input_names
    assert_outputs(session.run(None, feed), want)


def test_onnx_names_every_inner_layer(built):
    from kcompat.formats.onnx.export.driver import to_onnx
    model = kcompat.load(str(built["siamese"][1][".keras"]))
    proto = to_onnx(model, optimize=False)
    made = {o for n in proto.graph.node for o in n.output}
    assert {"encoder", "encoder:1", "encoder/d1", "encoder/d1:1", "encoder/bn", "encoder/d2"} <= made


def test_shared_sub_model_runs_twice_with_the_same_weights(built):
    kmodel, paths, xs, _ = built["siamese"]
    model = kcompat.load(str(paths[".keras"]))
    values = model.run_all(xs)
    encoder = kmodel.get_layer("encoder")
    np.testing.assert_allclose(values[("encoder", 0)], np.asarray(encoder(xs[0])), rtol=RTOL, atol=ATOL)
    np.testing.assert_allclose(values[("encoder", 1)], np.asarray(encoder(xs[1])), rtol=RTOL, atol=ATOL)
    assert len(model.specs["encoder/d1"].nodes) == 2 and model.weights_of("encoder/d1")[0].shape == (6, 5)


def test_random_weights_for_a_nested_architecture(keras, built, tmp_path):
    """An architecture-only JSON: seeded weights reach the inner layers, and verify gives Keras the same."""
    path = tmp_path / "arch.json"
    path.write_text(Path(built["frozen_base"][1][".json"]).read_text())
    report = verify_file(str(path), seed=3)
    assert report.ok, report.render()
    assert any(d.name == "base/bn2" and d.compared for d in report.layers)


def test_nested_model_input_count_mismatch_is_a_clean_error(built):
    config = json.loads(Path(built["siamese"][1][".json"]).read_text())
    encoder = next(l for l in config["config"]["layers"] if l["name"] == "encoder")
    encoder["inbound_nodes"][0]["args"] = [[encoder["inbound_nodes"][0]["args"][0]] * 2]
    from kcompat.formats.keras.config import spec_from_config
    with pytest.raises(kcompat.FormatError, match="nested model 'encoder' has 1 input"):
        kcompat.Model(spec_from_config(config, "bad.json"))


# ------------------------------------------------------------------ Keras 2 (tf_keras) files
def lazy_sequential(K):
    """A nested Sequential with no input of its own: tf_keras numbers its calls from 0, not 1."""
    L = K.layers
    inner = K.Sequential([L.Dense(4, name="d"), L.BatchNormalization(name="bn")], name="lazy")
    inp = K.Input((5,), name="x")
    return K.Model(inp, L.Dense(2, name="head")(inner(inp)), name="lazy_sequential")


KERAS2 = [seq_in_functional, two_levels, siamese, frozen_base, lazy_sequential, multi_io]


@pytest.fixture(scope="module")
def built2(tmp_path_factory):
    """name -> (tf_keras model, .h5, .json with a Keras 2 weights .h5, inputs, tf_keras's outputs)."""
    import tf_keras
    tmp = tmp_path_factory.mktemp("nested_k2")
    out = {}
    for i, make in enumerate(KERAS2):
        kmodel = make(tf_keras)
        randomize(kmodel, 10 + i)
        xs = data(kmodel)
        h5, js, weights = tmp / f"{make.__name__}.h5", tmp / f"{make.__name__}.json", tmp / f"{make.__name__}_w.h5"
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            kmodel.save(h5)
        js.write_text(kmodel.to_json())
        kmodel.save_weights(weights)
        out[make.__name__] = (kmodel, h5, js, weights, xs, run_keras(kmodel, xs))
    return out


@pytest.mark.parametrize("name", [f.__name__ for f in KERAS2])
def test_keras2_files_read_and_run_like_tf_keras(built2, name):
    kmodel, h5, js, weights, xs, want = built2[name]
    for model in (kcompat.load(str(h5)), kcompat.load(str(js), weights=str(weights))):
        assert model.total_params == kmodel.count_params()
        assert model.trainable_params == sum(int(np.prod(w.shape)) for w in kmodel.trainable_weights)
        assert_outputs(model.predict(xs), want)


@pytest.mark.parametrize("name", [f.__name__ for f in KERAS2])
def test_keras2_files_convert_to_keras3(keras, built2, tmp_path, name):
    """Keras 3 itself cannot read tf_keras's nested-model configs (their calls are numbered from 1);
    kcompat's .keras of the same model loads in Keras 3 and computes what tf_keras does."""
    _, h5, _, _, xs, want = built2[name]
    kcompat.save(kcompat.load(str(h5)), str(tmp_path / "m.keras"))
    loaded = keras.models.load_model(tmp_path / "m.keras", compile=False)
    assert_outputs(run_keras(loaded, xs), want)


def test_keras3_refuses_tf_keras_nested_h5_and_verify_says_so(keras, built2):
    _, h5, _, _, _, _ = built2["seq_in_functional"]
    with pytest.raises(ValueError, match="Invalid Functional model configuration"):
        keras.models.load_model(h5, compile=False)  # the Keras 3 limitation kcompat works around
    report = verify_file(str(h5))  # Keras 2 (tf_keras), which wrote it, is the reference then
    assert report.ok, report.render()
    assert any("Keras 3 could not read" in n and "the reference is Keras 2" in n for n in report.notes), report.notes
    assert any(d.name == "block/bn" and d.compared for d in report.layers)


# ------------------------------------------------------------------ the real tutorial models (slow)
def transfer_learning(K, base):
    L = K.layers
    base.trainable = False
    inp = K.Input((32, 32, 3))
    x = base(L.Rescaling(1 / 127.5, offset=-1)(inp), training=False)
    x = L.Dropout(0.2)(L.GlobalAveragePooling2D()(x))
    return K.Model(inp, L.Dense(1)(x))


@pytest.mark.slow
def test_transfer_learning_mobilenetv2_keras3(keras, tmp_path, monkeypatch):
    base = keras.applications.MobileNetV2(input_shape=(32, 32, 3), alpha=0.35, include_top=False, weights=None)
    kmodel = transfer_learning(keras, base)
    randomize(kmodel, 0, scale=0.1)  # 0.3 makes 50 layers' activations grow past float32's 1e-5 agreement
    paths = save_keras(kmodel, tmp_path, "tl")
    xs = data(kmodel, batch=2)
    want = run_keras(kmodel, xs)
    model = kcompat.load(str(paths[".keras"]))
    assert model.total_params == kmodel.count_params() and model.trainable_params == 1281
    assert_outputs(model.predict(xs), want)
    for ext in (".h5", ".json"):
        assert_outputs(kcompat.load(str(paths[ext])).predict(xs), want)
    monkeypatch.setenv("COLUMNS", "120")
    for expand in (False, True):
        text: list[str] = []
        kmodel.summary(expand_nested=expand, print_fn=text.append)
        assert summary_text(model, width=120, expand_nested=expand) == "".join(text)
    report = verify_file(str(paths[".keras"]))
    assert report.ok and sum(d.compared for d in report.layers) > 150, report.render()
    kcompat.save(model, str(tmp_path / "back.keras"))
    assert_outputs(run_keras(keras.models.load_model(tmp_path / "back.keras", compile=False), xs), want)


@pytest.mark.slow
def test_transfer_learning_mobilenetv2_tf_keras_h5(tmp_path):
    """The Keras 2 tutorial file: kcompat reads and runs it as tf_keras does. (Its .keras re-write needs the
    Keras 2 -> 3 config dialect for DepthwiseConv2D's `groups`, done on another branch.)"""
    import tf_keras
    base = tf_keras.applications.MobileNetV2(input_shape=(32, 32, 3), alpha=0.35, include_top=False, weights=None)
    kmodel = transfer_learning(tf_keras, base)
    randomize(kmodel, 1, scale=0.1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        kmodel.save(tmp_path / "tl.h5")
    xs = data(kmodel, batch=2)
    model = kcompat.load(str(tmp_path / "tl.h5"))
    assert model.total_params == kmodel.count_params() and model.trainable_params == 1281
    assert_outputs(model.predict(xs), run_keras(kmodel, xs))


def test_keras2_names_with_slashes_inside_a_nested_model(keras, tmp_path):
    """Keras 2 allowed '/' in names, Keras 3 refuses them at any depth: the writer renames them in nested
    models too, with one note, and Keras 3 loads the result."""
    import tf_keras
    L = tf_keras.layers
    inner = tf_keras.Sequential([tf_keras.Input((4,)), L.Dense(3, name="blk/dense")], name="enc/seq")
    inp = tf_keras.Input((4,), name="x")
    kmodel = tf_keras.Model(inp, L.Dense(2, name="head")(inner(inp)))
    randomize(kmodel, 5)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        kmodel.save(tmp_path / "slash.h5")
    with pytest.warns(UserWarning, match="enc/seq -> enc_seq, enc_seq/blk/dense -> enc_seq/blk_dense"):
        kcompat.save(kcompat.load(str(tmp_path / "slash.h5")), str(tmp_path / "slash.keras"))
    loaded = keras.models.load_model(tmp_path / "slash.keras", compile=False)
    xs = data(kmodel)
    assert_outputs(run_keras(loaded, xs), run_keras(kmodel, xs))
    assert loaded.get_layer("enc_seq").get_layer("blk_dense").count_params() == 15
