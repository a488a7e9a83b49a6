"""Keras 2 -> Keras 3 migration, against Keras 2 itself (tf_keras) as the oracle.

Every model here is built and saved as .h5 by tf_keras. kcompat runs it equal to tf_keras;
kcompat's .keras / .h5 / .json load in Keras 3 with tf_keras's outputs; ``kcompat verify`` passes
(tf_keras is chosen automatically where Keras 3 cannot read the original).

The dialect table (kcompat/formats/keras/dialect.py) is kept honest by CASES: one real tf_keras file
per row, checking that tf_keras still writes the key, that the written Keras 3 config lost or renamed
it, and that the numbers are the same (or that the row refuses, by name). test_every_row_has_a_case
fails when a row has no case. Tolerance 1e-5: the largest difference seen is ~1e-6 (deep
applications, sums in another order); a wrong key (groups, an axis, a slope) is O(0.1).
"""
from __future__ import annotations

import copy
import json
import re
import subprocess
import sys
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import h5py
import numpy as np
import pytest

import kcompat
from conftest import ROOT
from kcompat.errors import UnsupportedError
from kcompat.formats.keras.dialect import CLASSES, ROWS, from_keras2, to_keras3
from kcompat.spec import LayerSpec
from kcompat.verify.run import verify_file

ATOL = RTOL = 1e-5
pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")


@pytest.fixture(scope="module")
def tfk():
    """Keras 2 (tf_keras), seeded."""
    import tf_keras
    tf_keras.utils.set_random_seed(0)
    return tf_keras


def randomize_stats(model, seed: int = 0) -> None:
    """Seeded BatchNormalization statistics (so BN is not the identity) and biases; kernels stay as
    tf_keras's seeded initializers made them (their scale keeps deep nets' activations O(1))."""
    rng = np.random.default_rng(seed)
    for layer in model.layers:
        values = []
        for v, w in zip(layer.weights, layer.get_weights()):
            short = v.name.split("/")[-1].split(":")[0]
            if short in ("moving_variance", "gamma", "moving_stddev", "renorm_stddev"):
                w = rng.uniform(0.5, 1.5, w.shape)
            elif short in ("moving_mean", "beta", "bias", "renorm_mean"):
                w = rng.normal(0, 0.2, w.shape)
            values.append(np.asarray(w, w.dtype))
        layer.set_weights(values)


def inputs_for(model, seed: int = 0, batch: int = 2) -> np.ndarray:
    shape = (batch, *model.inputs[0].shape[1:])
    rng = np.random.default_rng(seed)
    if "int" in str(model.inputs[0].dtype):
        return rng.integers(0, 10, shape).astype(np.int32)
    return rng.normal(size=shape).astype(np.float32)


def keras3_load(path: Path):
    import keras
    if path.suffix == ".json":
        model = keras.models.model_from_json(path.read_text())
        model.load_weights(str(path.with_name(path.stem + ".weights.h5")))
        return model
    return keras.saving.load_model(str(path), compile=False)


def h5_layers(path: Path) -> dict:
    """Layer name -> its entry in an .h5's model_config, as the writer wrote it."""
    with h5py.File(path) as f:
        config = json.loads(f.attrs["model_config"])
    return {(e.get("name") or e["config"]["name"]): e for e in config["config"]["layers"]}


def keras_layers(path: Path) -> dict:
    with zipfile.ZipFile(path) as zf:
        config = json.loads(zf.read("config.json"))
    return {(e.get("name") or e["config"]["name"]): e for e in config["config"]["layers"]}


def close(got, want, what: str, atol: float = ATOL) -> None:
    np.testing.assert_allclose(np.asarray(got, np.float32), np.asarray(want, np.float32), atol=atol, rtol=RTOL,
                               err_msg=what)


# ---------------------------------------------------------------- the dialect table, one real file per row

@dataclass
class Case:
    """A tf_keras model whose layer ``layer`` carries the Keras 2 key of ``rows``; ``check(k2, k3)`` sees the
    layer's config as tf_keras wrote it and as kcompat wrote it for Keras 3 (None: the write is refused with
    ``refuse``). ``level="layer"``: a class kcompat does not run; to_keras3 + Keras 3's deserializer instead."""

    id: str
    rows: list  # (class, key) pairs of ROWS, or class names of CLASSES, this case proves
    build: Callable  # tf_keras -> Model
    check: Callable | None = None
    refuse: str | None = None
    layer: str = "t"
    atol: float = ATOL
    level: str = "file"


def one(layer_fn, shape, dtype="float32"):
    def build(K):
        x = K.Input(shape, name="x", dtype=dtype)
        return K.Model(x, layer_fn(K)(x))
    return build


def absent(*keys):
    def check(k2, k3):
        for key in keys:
            assert key in k2["config"], f"tf_keras no longer writes {key!r}: the row is stale"
            assert key not in k3["config"], k3["config"]
    return check


def renamed(old, new, value=None):
    def check(k2, k3):
        assert old in k2["config"] and old not in k3["config"]
        assert k3["config"][new] == (k2["config"][old] if value is None else value)
    return check


def dtype_policy(name):
    def check(k2, k3):
        assert k3["config"]["dtype"] == {"module": "keras", "class_name": "DTypePolicy", "config": {"name": name},
                                         "registered_name": None}
        assert k2["config"]["dtype"] != k3["config"]["dtype"]
    return check


def class_became(new, **config):
    def check(k2, k3):
        assert k3["class_name"] == new and all(k3["config"][k] == v for k, v in config.items()), k3
    return check


def L(name, **kw):
    return lambda K: getattr(K.layers, name)(name="t", **kw)


def input_kept_shape(k2, k3):
    assert k2["config"]["batch_input_shape"] == k3["config"]["batch_shape"] and "batch_input_shape" not in k3["config"]


CASES = [
    Case("dtype-string", [("*", "dtype")], one(L("Dense", units=3), (4,)), dtype_policy("float32")),
    Case("dtype-mixed-policy", [("*", "dtype")], one(L("Dense", units=3, dtype="mixed_float16"), (4,)),
         dtype_policy("mixed_float16"), atol=1e-2),  # both sides compute in float16; kcompat in float32
    Case("sequential-batch_input_shape", [("*", "batch_input_shape")],
         lambda K: K.Sequential([K.layers.Dense(3, input_shape=(4,), name="t")]), absent("batch_input_shape")),
    Case("input-batch_input_shape", [("InputLayer", "batch_input_shape")], one(L("Dense", units=3), (4,)),
         input_kept_shape, layer="x"),
    Case("rng_type", [("*", "rng_type")], one(L("GaussianNoise", stddev=0.5, rng_type="stateless"), (4,)),
         absent("rng_type")),
    Case("hard_sigmoid", [("*", "*activation")], one(L("Dense", units=8, activation="hard_sigmoid"), (4,)),
         refuse="Keras 2's hard_sigmoid is clip(0.2 * x + 0.5, 0, 1)"),
    Case("radial-constraint", [("*", "*_constraint")],
         one(lambda K: K.layers.Conv2D(2, 3, name="t", kernel_constraint=K.constraints.RadialConstraint()), (5, 5, 2)),
         lambda k2, k3: (k2["config"]["kernel_constraint"]["class_name"] == "RadialConstraint"
                         and k3["config"]["kernel_constraint"] is None) or pytest.fail(str(k3))),
    Case("depthwise2d-groups", [("DepthwiseConv2D", "groups")], one(L("DepthwiseConv2D", kernel_size=3,
                                                                        depth_multiplier=2), (6, 6, 3)),
         absent("groups")),
    Case("depthwise1d-groups", [("DepthwiseConv1D", "groups")], one(L("DepthwiseConv1D", kernel_size=3), (7, 3)),
         absent("groups")),
    *(Case(f"{cls}-groups", [(cls, "groups")], one(L(cls, filters=2, kernel_size=3, strides=2), shape),
           absent("groups"))
      for cls, shape in [("Conv1DTranspose", (5, 3)), ("Conv2DTranspose", (4, 4, 3)), ("Conv3DTranspose", (3, 3, 3, 2))]),
    *(Case(f"{cls}-conv-keys", [(cls, k) for k in ("groups", "kernel_initializer", "kernel_regularizer",
                                                   "kernel_constraint")],
           one(L(cls, filters=4, kernel_size=3, depth_multiplier=2), shape),
           absent("groups", "kernel_initializer", "kernel_regularizer", "kernel_constraint"))
      for cls, shape in [("SeparableConv1D", (7, 3)), ("SeparableConv2D", (6, 6, 3))]),
    Case("batchnorm-axis-list", [("BatchNormalization", "axis")], one(L("BatchNormalization"), (5, 5, 3)),
         lambda k2, k3: (k2["config"]["axis"] == [3] and k3["config"]["axis"] == 3) or pytest.fail(str(k3))),
    Case("batchnorm-two-axes", [("BatchNormalization", "axis")], one(L("BatchNormalization", axis=[1, 2]), (3, 4, 2)),
         refuse="normalizes over ONE axis"),
    Case("batchnorm-virtual-batch", [("BatchNormalization", "virtual_batch_size")],
         one(L("BatchNormalization", virtual_batch_size=2), (3, 4, 2)), refuse="virtual_batch_size", level="layer"),
    Case("leaky-relu-alpha", [("LeakyReLU", "alpha")], one(L("LeakyReLU", alpha=0.1), (6,)),
         renamed("alpha", "negative_slope")),
    Case("thresholded-relu", [("ThresholdedReLU", "theta"), "ThresholdedReLU"],
         one(L("ThresholdedReLU", theta=0.5), (9,)), class_became("ReLU", threshold=0.5)),
    Case("embedding-input_length", [("Embedding", "input_length")],
         one(L("Embedding", input_dim=10, output_dim=3, input_length=5), (5,), "int32"), absent("input_length")),
    *(Case(f"{cls}-dropout-keys", [(cls, "trainable"), (cls, "noise_shape")], one(L(cls, rate=0.5), shape),
           absent("trainable", "noise_shape"))
      for cls, shape in [("SpatialDropout1D", (4, 3)), ("SpatialDropout2D", (4, 4, 3)), ("SpatialDropout3D", (2, 2, 2, 3))]),
    # classes kcompat does not run: the row is proved on the layer, in Keras 3
    Case("input-type_spec", [("InputLayer", "type_spec")], None, refuse="type_spec", level="layer", layer="x"),
    Case("discretization-trainable", [("Discretization", "trainable")],
         one(L("Discretization", bin_boundaries=[-0.5, 0.0, 0.5]), (6,)), absent("trainable"), level="layer"),
    *(Case(f"{cls}-time_major", [(cls, "time_major")], one(L(cls, **kw), shape), absent("time_major"), level="layer")
      for cls, kw, shape in [("SimpleRNN", {"units": 3}, (4, 2)), ("LSTM", {"units": 3}, (4, 2)),
                             ("GRU", {"units": 3}, (4, 2)), ("ConvLSTM1D", {"filters": 2, "kernel_size": 2, "recurrent_activation": "sigmoid"}, (3, 4, 2))]),
    Case("convlstm-recurrent-hard_sigmoid", [("*", "*activation")], one(L("ConvLSTM1D", filters=2, kernel_size=2), (3, 4, 2)),
         refuse="Keras 2's hard_sigmoid", level="layer"),  # tf_keras's default recurrent_activation
    Case("rnn-time_major-true", [("LSTM", "time_major")], one(L("LSTM", units=3, time_major=True), (4, 2)),
         refuse="time_major", level="layer"),
    Case("mha-shapes", [("MultiHeadAttention", "query_shape"), ("MultiHeadAttention", "key_shape"),
                        ("MultiHeadAttention", "value_shape"), ("MultiHeadAttention", "softmax_robust_masking")],
         lambda K: (lambda x: K.Model(x, K.layers.MultiHeadAttention(2, 3, name="t")(x, x)))(K.Input((4, 6), name="x")),
         absent("query_shape", "key_shape", "value_shape", "softmax_robust_masking"), level="layer"),
    # Keras 2 classes Keras 3 does not have: refused when read, by name, with what to do instead
    Case("tf-op-lambda", ["TFOpLambda"], lambda K: (lambda x: K.Model(x, x + 1.0))(K.Input((4,), name="x")),
         refuse="keras.ops", layer="tf.__operators__.add"),
    Case("slicing-op-lambda", ["SlicingOpLambda"], lambda K: (lambda x: K.Model(x, x[:, 1:]))(K.Input((4,), name="x")),
         refuse="slice", layer="tf.__operators__.getitem"),
    Case("locally-connected", ["LocallyConnected1D"], one(L("LocallyConnected1D", filters=2, kernel_size=2), (5, 3)),
         refuse="removed in Keras 3"),
    Case("locally-connected-2d", ["LocallyConnected2D"], one(L("LocallyConnected2D", filters=2, kernel_size=2), (4, 4, 3)),
         refuse="removed in Keras 3"),
    Case("random-height", ["RandomHeight"], one(L("RandomHeight", factor=0.2), (8, 8, 3)), refuse="removed in Keras 3"),
    Case("random-width", ["RandomWidth"], one(L("RandomWidth", factor=0.2), (8, 8, 3)), refuse="removed in Keras 3"),
]
# Classes tf_keras 2.21 can no longer write: their rows stand on the sources alone (docs/KERAS2_TO_3.md).
NOT_WRITABLE = {"TensorFlowOpLayer": "tf.keras 2.0-2.3", "CuDNNLSTM": "tf.compat.v1 only, needs a GPU",
                "CuDNNGRU": "tf.compat.v1 only, needs a GPU", "DenseFeatures": "needs tf.feature_column"}


def test_every_row_has_a_case():
    proved = {r for c in CASES for r in c.rows}
    missing = [(row.classes, row.key) for row in ROWS if not any(
        r[1] == row.key and (r[0] in row.classes or (r[0] == "*" and "*" in row.classes)) for r in proved
        if isinstance(r, tuple))]
    assert not missing, f"dialect rows without a tf_keras case: {missing}"
    assert set(CLASSES) - proved == set(NOT_WRITABLE)


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_dialect_row(case, tfk, tmp_path):
    import tensorflow as tf
    if case.id == "input-type_spec":  # Input(type_spec=...): its InputLayer entry as tf_keras writes it
        x = tfk.Input(type_spec=tf.TensorSpec((None, 4)), name="x")
        entry = json.loads(tfk.Model(x, tfk.layers.Dense(2)(x)).to_json())["config"]["layers"][0]
        with pytest.raises(UnsupportedError, match=re.escape(case.refuse)):
            to_keras3(entry)
        return
    model = case.build(tfk)
    randomize_stats(model)
    path = tmp_path / f"{case.id}.h5"
    model.save(path)
    k2 = h5_layers(path)[case.layer]
    x = inputs_for(model)
    want = np.asarray(model(x))
    if case.level == "layer":
        return _layer_level(case, model, k2, x, want)
    if case.refuse and isinstance(case.rows[0], str):  # a Keras 2 class: refused when read
        with pytest.raises(UnsupportedError, match=re.escape(case.refuse)):
            kcompat.load(str(path))
        return
    ours = kcompat.load(str(path))
    close(ours.predict([x])[0], want, f"{case.id}: kcompat vs tf_keras", case.atol)
    if case.refuse:
        with pytest.raises(UnsupportedError, match=re.escape(case.refuse)):
            kcompat.save(ours, str(tmp_path / "m.keras"))
        return
    out = tmp_path / "m.keras"
    kcompat.save(ours, str(out))
    case.check(k2, keras_layers(out)[case.layer])
    close(keras3_load(out)(x), want, f"{case.id}: Keras 3 on kcompat's .keras vs tf_keras", case.atol)


def _layer_level(case, model, k2, x, want):
    """A class kcompat does not run: the rewritten entry, deserialized by Keras 3, given tf_keras's weights."""
    import keras
    spec = LayerSpec(case.layer, k2["class_name"], copy.deepcopy(k2["config"]))
    from_keras2([spec])  # as kcompat reads a Keras 2 file
    entry = {"module": "keras.layers", "class_name": spec.class_name, "config": spec.config, "registered_name": None}
    if case.refuse:
        with pytest.raises(UnsupportedError, match=re.escape(case.refuse)):
            to_keras3(entry)
        return
    k3 = to_keras3(entry)
    case.check(k2, k3)
    layer = keras.layers.deserialize(k3)
    inp = keras.Input(model.inputs[0].shape[1:], dtype=model.inputs[0].dtype.name)
    k3_model = keras.Model(inp, layer(inp, inp) if case.id.startswith("mha") else layer(inp))
    layer.set_weights(model.get_layer(case.layer).get_weights())
    close(k3_model(x), want, f"{case.id}: Keras 3 layer from the rewritten config vs tf_keras", case.atol)


def test_keras2_hard_sigmoid_is_computed_as_keras2_and_verified_against_it(tfk, tmp_path):
    """Keras 3 reads 'hard_sigmoid' in a Keras 2 file as its own relu6(x + 3) / 6; Keras 2 meant
    clip(0.2 x + 0.5). kcompat computes Keras 2's, and verify runs Keras 2 for it, saying why."""
    x = tfk.Input((4,), name="x")
    model = tfk.Model(x, tfk.layers.Dense(8, activation="hard_sigmoid", name="t")(x))
    path = tmp_path / "hs.h5"
    model.save(path)
    data = inputs_for(model) * 4
    import keras
    keras3 = keras.saving.load_model(str(path), compile=False)(data)
    assert np.abs(np.asarray(keras3) - np.asarray(model(data))).max() > 0.05  # the meaning really changed
    close(kcompat.load(str(path)).predict([data])[0], model(data), "kcompat vs tf_keras")
    report = verify_file(str(path))
    assert report.ok and report.reference.startswith("tf_keras"), report.render()
    assert "uses Keras 2's hard_sigmoid" in report.notes[0]
    import onnxruntime as ort  # .onnx can say it: HardSigmoid with Keras 2's alpha 0.2, beta 0.5
    kcompat.save(kcompat.load(str(path)), str(tmp_path / "hs.onnx"))
    session = ort.InferenceSession(str(tmp_path / "hs.onnx"))
    close(session.run(None, {session.get_inputs()[0].name: data})[0], model(data), "ONNX Runtime vs tf_keras")


# ---------------------------------------------------------------- whole models

def migrate_and_check(model, path: Path, tmp_path: Path, fallback: bool) -> None:
    """kcompat runs ``path`` equal to tf_keras; .keras / .h5 / .json load in Keras 3 with tf_keras's outputs;
    verify passes (on tf_keras when Keras 3 cannot read the original)."""
    x = inputs_for(model, batch=2)
    want = np.asarray(model(x))
    ours = kcompat.load(str(path))
    close(ours.predict([x])[0], want, "kcompat vs tf_keras")
    for ext in (".keras", ".h5", ".json"):
        out = tmp_path / f"migrated{ext}"
        kcompat.save(ours, str(out))
        close(keras3_load(out)(x), want, f"Keras 3 on kcompat's {ext} vs tf_keras")
    report = verify_file(str(path), batch=2)
    assert report.ok, report.render()
    assert report.reference.startswith("tf_keras" if fallback else "keras"), report.reference
    assert any("Keras 3 could not read" in n for n in report.notes) == fallback, report.notes


APPS = {  # (builder, Keras 3 can read tf_keras's own .h5)
    "MobileNetV2": (lambda A: A.MobileNetV2((32, 32, 3), alpha=0.35, weights=None, classes=10,
                                            classifier_activation=None), False),
    "ResNet50": (lambda A: A.ResNet50(input_shape=(32, 32, 3), weights=None, classes=10,
                                      classifier_activation=None), True),
    "DenseNet121": (lambda A: A.DenseNet121(input_shape=(32, 32, 3), weights=None, classes=10,
                                            classifier_activation=None), False),
    "EfficientNetB0": (lambda A: A.EfficientNetB0(input_shape=(32, 32, 3), weights=None, classes=10,
                                                  classifier_activation=None), False),
}


@pytest.mark.parametrize("name", [pytest.param(n, marks=[] if n == "MobileNetV2" else pytest.mark.slow)
                                  for n in APPS])
def test_application_migrates(name, tfk, tmp_path):
    build, keras3_reads = APPS[name]
    model = build(tfk.applications)
    randomize_stats(model)
    path = tmp_path / f"{name}.h5"
    model.save(path)
    migrate_and_check(model, path, tmp_path, fallback=not keras3_reads)


def mini_app(K):
    """DenseNet's and EfficientNet's Keras 2 traits in 13 layers: names with '/', Rescaling + Normalization,
    DepthwiseConv2D (groups=1 written), a squeeze-excite block (Reshape, Multiply), BatchNormalization."""
    L = K.layers
    x = K.Input((12, 12, 3), name="image")
    y = L.Rescaling(1 / 255.0, name="rescale")(x)
    y = L.Normalization(axis=-1, mean=[0.1, 0.2, 0.3], variance=[1.5, 2.0, 0.5], name="norm")(y)
    y = L.Conv2D(8, 3, strides=2, padding="same", use_bias=False, name="stem/conv")(y)
    y = L.BatchNormalization(name="stem/bn")(y)
    y = L.Activation("swish", name="stem/act")(y)
    y = L.DepthwiseConv2D(3, padding="same", use_bias=False, name="block1/dwconv")(y)
    y = L.BatchNormalization(name="block1/bn")(y)
    se = L.GlobalAveragePooling2D(name="block1/se_squeeze")(y)
    se = L.Reshape((1, 1, 8), name="block1/se_reshape")(se)
    se = L.Conv2D(8, 1, activation="sigmoid", name="block1/se_expand")(se)
    y = L.Multiply(name="block1/se_excite")([y, se])
    y = L.GlobalAveragePooling2D(name="avg_pool")(y)
    return K.Model(x, L.Dense(5, name="logits")(y))


def test_mini_app_migrates(tfk, tmp_path):
    """The cheap sibling of the application tests (always run)."""
    model = mini_app(tfk)
    randomize_stats(model)
    path = tmp_path / "mini.h5"
    model.save(path)
    migrate_and_check(model, path, tmp_path, fallback=True)


def test_convert_prints_one_rename_note(tfk, tmp_path):
    """`kcompat convert` renames names with '/' for Keras 3 and says so ONCE, on stderr, with the mapping."""
    model = mini_app(tfk)
    model.save(tmp_path / "mini.h5")
    done = subprocess.run([sys.executable, "-m", "kcompat", "convert", "mini.h5", "mini.keras"], cwd=tmp_path,
                          capture_output=True, text=True, env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"})
    assert done.returncode == 0 and done.stdout == "", done.stderr
    notes = [line for line in done.stderr.splitlines() if line.startswith("kcompat: note:")]
    assert len(notes) == 1 and "stem/conv -> stem_conv" in notes[0] and "block1/se_excite -> block1_se_excite" in notes[0]
    assert done.stderr.splitlines()[-1] == "wrote mini.keras"
    names = {layer.name for layer in keras3_load(tmp_path / "mini.keras").layers}
    assert {"stem_conv", "block1_se_excite"} <= names and not any("/" in n for n in names)


def test_verify_reference_tf_keras_on_a_file_keras3_reads(tfk, tmp_path):
    """--reference tf_keras: Keras 2 itself, even where Keras 3 could read the file."""
    x = tfk.Input((6, 6, 2), name="x")
    model = tfk.Model(x, tfk.layers.BatchNormalization(name="bn")(tfk.layers.Conv2D(3, 3, name="conv")(x)))
    randomize_stats(model)
    model.save(tmp_path / "m.h5")
    report = verify_file(str(tmp_path / "m.h5"), reference="tf_keras")
    assert report.ok and report.reference.startswith("tf_keras") and not report.notes, report.render()


def test_diff_of_a_keras2_file_and_its_conversion_is_the_same(tfk, tmp_path):
    """Keys the conversion drops (DepthwiseConv2D's groups) or respells are not differences: diff exits 0."""
    import kcompat
    from kcompat.model_diff import diff_models
    k2 = tfk.Sequential([tfk.Input((6, 6, 3)), tfk.layers.DepthwiseConv2D(3, name="dw"),
                         tfk.layers.ThresholdedReLU(theta=0.3, name="th"), tfk.layers.Flatten(), tfk.layers.Dense(2)])
    old, new = tmp_path / "old.h5", tmp_path / "new.keras"
    k2.save(old)
    assert "groups" in h5_layers(old)["dw"]["config"]
    kcompat.save(kcompat.load(str(old)), str(new))
    result = diff_models(kcompat.load(str(old)), kcompat.load(str(new)))
    assert result.same, result.render()
