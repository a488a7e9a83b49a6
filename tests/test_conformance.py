"""Conformance table: kcompat against real Keras 3 (TensorFlow backend), row by row.

Rows: every activation Keras 3 accepts by name, as ``Activation(name)`` and as
``Dense(6, activation=name)``; Dense at input ranks 2-5 with and without bias; Flatten
channels_last / channels_first at ranks 1-5; Dropout; a Sequential and a Functional model.
Each row checks values, output shape and parameter count. Rows share Keras models (one
Functional model with a branch per row, built, saved and called once per module), so the
file costs a few Keras calls, not one per row.

Tolerance, float32: ``|kcompat - keras| <= ATOL + RTOL * |keras|`` with RTOL = 1e-5 and
ATOL = 1e-6. float32 epsilon is 1.19e-7, so RTOL is ~80 ULP: room for TensorFlow's Eigen
tanh / erf / expm1 and NumPy's libm to round differently and for matmuls over 5-8 terms to
sum in another order (observed worst: ~12% of the tolerance). ATOL covers outputs that
cancel towards 0 (tanh_shrink, gelu at x < 0, log_softmax near 0), where relative error
means nothing. Both are 10x tighter than verify's defaults (kcompat/verify/metrics.py), as these
layers are tiny, and a wrong formula is far outside them: tanh-approximate vs exact gelu
differs by up to 4.7e-4, Keras 2's hard_sigmoid (0.2x + 0.5) by up to 0.08. Pure data
movement (Flatten, Dropout) must be exact.
"""
from __future__ import annotations

import math
import warnings

import numpy as np
import pytest

from conftest import to_kcompat
from kcompat import ConfigError, Model, ShapeError, UnsupportedError
from kcompat.formats.keras.config import spec_from_config
from kcompat.layers.activations import erf, get_activation

RTOL, ATOL = 1e-5, 1e-6

ACTIVATIONS = (
    "celu elu exponential gelu glu hard_shrink hard_sigmoid hard_silu hard_swish hard_tanh leaky_relu linear "
    "log_sigmoid log_softmax mish relu relu6 selu sigmoid silu swish soft_shrink softmax softplus softsign "
    "sparse_plus sparse_sigmoid sparsemax squareplus tanh tanh_shrink").split()


def assert_close(got, want, exact=False):
    """kcompat's array against Keras's: same shape, then the float32 tolerance above (or exact)."""
    assert got.shape == want.shape
    np.testing.assert_allclose(got, want, rtol=0 if exact else RTOL, atol=0 if exact else ATOL)


def compatible(declared, real):
    """A declared shape (None = unknown) matches a real array shape."""
    return len(declared) == len(real) and all(d is None or d == r for d, r in zip(declared, real))


def inputs(shape, seed):
    """float32 data in [-5, 5] on a 1/8 grid (hits every kink: 0, +-0.5, +-1, +-3) plus a few +-12 and +-30."""
    rng = np.random.default_rng(seed)
    x = rng.integers(-40, 41, size=shape) / 8
    flat = x.reshape(-1)
    flat[::11] = rng.choice([-30.0, -12.0, 12.0, 30.0], size=flat[::11].shape)
    return x.astype(np.float32)


def run_rows(model, xs, tmp_path_factory):
    """Call a Keras model whose outputs are one named layer each (a row); load it in kcompat; run both."""
    ys = model(xs, training=False)
    km = to_kcompat(model, tmp_path_factory.mktemp("conformance"))
    outs = km.layer_outputs(xs)
    rows = {}
    for out, y, ref in zip(model.outputs, ys, km.spec.outputs):
        layer = model.get_layer(ref.layer)
        rows[ref.layer] = dict(keras=np.asarray(y), keras_shape=tuple(out.shape), keras_params=layer.count_params(),
                               kc=outs[ref.layer], kc_shape=km.shapes[(ref.layer, 0)],
                               kc_params=km.info[ref.layer].params)
    return rows


def seed_biases(model, seed):
    """Keras initialises biases to 0; give them values so the bias path is compared too."""
    rng = np.random.default_rng(seed)
    for layer in model.layers:
        if getattr(layer, "bias", None) is not None:
            layer.bias.assign(rng.normal(size=layer.bias.shape).astype(np.float32))


# ------------------------------------------------------------------ activations
@pytest.fixture(scope="module")
def activation_rows(keras, tmp_path_factory):
    """One Functional model, input (3, 8): a branch Activation(name) and one Dense(6, activation=name) per name."""
    keras.utils.set_random_seed(0)
    x = keras.Input(shape=(3, 8))
    outs = []
    for name in ACTIVATIONS:
        outs.append(keras.layers.Activation(name, name=f"act_{name}")(x))
        outs.append(keras.layers.Dense(6, activation=name, name=f"dense_{name}")(x))
    model = keras.Model(x, outs)
    seed_biases(model, 1)
    data = inputs((8, 3, 8), seed=2)
    return data, run_rows(model, data, tmp_path_factory)


@pytest.mark.parametrize("kind", ["act", "dense"])
@pytest.mark.parametrize("name", ACTIVATIONS)
def test_activation(activation_rows, name, kind):
    data, rows = activation_rows
    row = rows[f"{kind}_{name}"]
    assert_close(row["kc"], row["keras"])
    assert row["kc_params"] == row["keras_params"] == (0 if kind == "act" else 8 * 6 + 6)
    assert compatible(row["kc_shape"], row["keras"].shape)
    if name == "glu":
        # Keras bug: Activation / Dense declare the input's (or units') last axis for glu, but the
        # real output halves it (Activation.compute_output_shape returns input_shape unchanged).
        # kcompat declares the real shape. If this fails, Keras fixed it: drop the special case.
        assert row["keras_shape"][-1] == 2 * row["keras"].shape[-1]
    else:
        assert row["kc_shape"] == row["keras_shape"]
    if kind == "act":
        # Keras saves swish / hard_swish as silu / hard_silu; look the row's own name up too.
        assert_close(get_activation(name)(data), row["keras"])


# ------------------------------------------------------------------ Dense, Flatten, Dropout
SHAPES = {1: (), 2: (5,), 3: (3, 5), 4: (2, 3, 5), 5: (4, 2, 3, 5)}  # without the batch axis
CORE_ROWS = {  # row (= layer name): (input shape without batch, Keras class, config)
    **{f"dense_rank{r}_{'bias' if b else 'nobias'}": (SHAPES[r], "Dense", {"units": 4, "use_bias": b})
       for r in (2, 3, 4, 5) for b in (True, False)},
    "dense_rank3_unknown_axis": ((None, 5), "Dense", {"units": 4}),
    **{f"flatten_rank{r}_{fmt}": (SHAPES[r], "Flatten", {"data_format": fmt})
       for r in SHAPES for fmt in ("channels_last", "channels_first")},
    "flatten_rank3_unknown_axis": ((None, 5), "Flatten", {"data_format": "channels_first"}),
    "dropout_rank2": ((5,), "Dropout", {"rate": 0.5}),
    "dropout_rank4_noise_shape": ((2, 3, 5), "Dropout", {"rate": 0.3, "noise_shape": (None, 1, 1, 5), "seed": 1}),
}


@pytest.fixture(scope="module")
def core_rows(keras, tmp_path_factory):
    """One Functional model: an Input per distinct shape (rank 1 is Input(shape=())) and a branch per row."""
    keras.utils.set_random_seed(0)
    shapes = sorted({shape for shape, _, _ in CORE_ROWS.values()}, key=lambda s: (len(s), str(s)))
    ins = {s: keras.Input(shape=s, name=f"in_{i}") for i, s in enumerate(shapes)}
    outs = [getattr(keras.layers, cls)(name=row, **config)(ins[shape])
            for row, (shape, cls, config) in CORE_ROWS.items()]
    model = keras.Model(list(ins.values()), outs)
    seed_biases(model, 1)
    data = [inputs((3, *(7 if d is None else d for d in s)), seed=i) for i, s in enumerate(shapes)]
    return run_rows(model, data, tmp_path_factory)


@pytest.mark.parametrize("row", list(CORE_ROWS))
def test_core_layer(core_rows, row):
    _, cls, config = CORE_ROWS[row]
    got = core_rows[row]
    assert_close(got["kc"], got["keras"], exact=cls != "Dense")
    assert got["kc_shape"] == got["keras_shape"]
    assert compatible(got["kc_shape"], got["keras"].shape)
    assert got["kc_params"] == got["keras_params"]
    if cls == "Dense":
        assert got["kc_params"] == 5 * 4 + (4 if config.get("use_bias", True) else 0)


# ------------------------------------------------------------------ whole models
def _sequential(keras):
    return keras.Sequential([keras.Input(shape=(4, 5)), keras.layers.Dense(8, activation="relu"),
                             keras.layers.Dropout(0.5), keras.layers.Flatten(),
                             keras.layers.Dense(3, activation="softmax")])


def _functional(keras):
    """Two inputs, two outputs, and a Dense shared by both branches (its call nodes 0 and 1)."""
    a, c = keras.Input(shape=(4, 5), name="a"), keras.Input(shape=(2, 5), name="c")
    shared = keras.layers.Dense(6, activation="gelu", name="shared")
    flat = keras.layers.Flatten(data_format="channels_first")(shared(a))
    left = keras.layers.Dense(3, activation="log_softmax", name="head")(flat)
    right = keras.layers.Activation("tanh", name="right")(keras.layers.Dropout(0.2)(shared(c)))
    return keras.Model([a, c], [left, right])


@pytest.mark.parametrize("build", [_sequential, _functional], ids=["sequential", "functional"])
def test_model(keras, tmp_path, build):
    keras.utils.set_random_seed(0)
    model = build(keras)
    seed_biases(model, 1)
    xs = [inputs((3, *i.shape[1:]), seed=k) for k, i in enumerate(model.inputs)]
    km = to_kcompat(model, tmp_path)
    want = model(xs if len(xs) > 1 else xs[0], training=False)
    want = want if isinstance(want, (list, tuple)) else [want]
    got = km.predict(xs)
    assert len(got) == len(want)
    for g, w, out, ref in zip(got, want, model.outputs, km.spec.outputs):
        assert_close(g, np.asarray(w))
        assert km.shapes[(ref.layer, ref.node)] == tuple(out.shape)
    assert km.total_params == model.count_params()
    assert km.trainable_params == sum(int(np.prod(w.shape)) for w in model.trainable_weights)
    for layer in model.layers:
        assert km.info[layer.name].params == layer.count_params(), layer.name


# ------------------------------------------------------------------ numerical stability at |x| = 1000
STABLE = ["softmax", "log_softmax", "softplus", "log_sigmoid", "sigmoid", "silu", "mish", "elu", "selu", "celu",
          "exponential"]
BIG = np.array([[-1000, 0, 1000], [1000, 999, 998], [-1000, -999, -1000], [-100, 20, 100], [-20, -1, 1]], np.float32)
BIG_EXP = np.array([[-1000, -100, -20], [0, 20, 88]], np.float32)  # exp(1000) is inf even in float64

# float64 references, used where Keras (float32) is not finite
_SELU_A, _SELU_S = 1.6732632423543772848170429916717, 1.0507009873554804934193349852946


def _softplus64(x):
    return np.logaddexp(x, 0.0)


def _log_softmax64(x):
    shifted = x - x.max(-1, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(-1, keepdims=True))


REF64 = {
    "softmax": lambda x: np.exp(_log_softmax64(x)),
    "log_softmax": _log_softmax64,
    "softplus": _softplus64,
    "log_sigmoid": lambda x: -_softplus64(-x),
    "sigmoid": lambda x: np.exp(-_softplus64(-x)),
    "silu": lambda x: x * np.exp(-_softplus64(-x)),
    "mish": lambda x: x * np.tanh(_softplus64(x)),
    "elu": lambda x: np.where(x > 0, x, np.expm1(np.minimum(x, 0))),
    "selu": lambda x: _SELU_S * np.where(x > 0, x, _SELU_A * np.expm1(np.minimum(x, 0))),
    "celu": lambda x: np.where(x > 0, x, np.expm1(np.minimum(x, 0))),
    "exponential": np.exp,
}


@pytest.mark.parametrize("name", STABLE)
def test_stable_at_large_magnitude(keras, name):
    x = BIG_EXP if name == "exponential" else BIG
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # an overflow / invalid RuntimeWarning from NumPy fails the row
        got = get_activation(name)(x)
    assert got.dtype == np.float32 and np.isfinite(got).all()
    want = np.asarray(keras.activations.get(name)(x))
    finite = np.isfinite(want)
    with np.errstate(over="ignore"):
        ref64 = REF64[name](x.astype(np.float64))
    np.testing.assert_allclose(ref64[finite], want[finite], rtol=RTOL, atol=ATOL)  # the reference agrees too
    assert_close(got, np.where(finite, want, ref64).astype(np.float32))


# ------------------------------------------------------------------ erf (gelu's exact form)
def test_erf_matches_math_erf():
    tiny = np.geomspace(1e-300, 1e-3, 2001)
    x = np.concatenate([np.linspace(-30, 30, 120_001), tiny, -tiny,
                        [0.0, 0.46875, np.nextafter(0.46875, 1), 4.0, np.nextafter(4.0, 5), 26.5, 27.0, 1e300]])
    want = np.array([math.erf(v) for v in x])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        got = erf(x)
    assert got.dtype == np.float64
    rel = np.abs(got - want) / np.maximum(np.abs(want), np.finfo(np.float64).tiny)
    assert rel.max() < 1e-12, f"max relative error {rel.max():.2e} at x={x[rel.argmax()]!r}"
    special = erf(np.array([np.inf, -np.inf, np.nan, -0.0]))
    assert special[:2].tolist() == [1.0, -1.0] and np.isnan(special[2]) and np.signbit(special[3])
    assert erf(np.float32([0.5])).dtype == np.float32


# ------------------------------------------------------------------ bad configs (no Keras needed)
BAD = {  # row: (input batch_shape, class, config, error, what was expected, what was received)
    "units_negative": ([None, 4], "Dense", {"units": -3}, ConfigError, "positive integer", "Received: units=-3"),
    "units_zero": ([None, 4], "Dense", {"units": 0}, ConfigError, "positive integer", "Received: units=0"),
    "units_string": ([None, 4], "Dense", {"units": "a"}, ConfigError, "positive integer", "Received: units='a'"),
    "unknown_activation": ([None, 4], "Dense", {"units": 2, "activation": "relux"}, UnsupportedError,
                           "expected one of", "Received: activation='relux'"),
    "activation_not_a_name": ([None, 4], "Activation", {"activation": 3}, UnsupportedError,
                              "must be an activation name", "Received: activation=3"),
    "flatten_nchw": ([None, 2, 3], "Flatten", {"data_format": "nchw"}, UnsupportedError,
                     "must be one of ['channels_last', 'channels_first']", "Received: data_format='nchw'"),
    "dense_unknown_last_axis": ([None, 3, None], "Dense", {"units": 2}, ShapeError,
                                "known last axis", "Received: input_shape=(None, 3, None)"),
    "dense_rank1": ([None], "Dense", {"units": 2}, ShapeError, "rank >= 2", "Received: input_shape=(None,)"),
    "glu_odd_axis": ([None, 5], "Activation", {"activation": "glu"}, ShapeError, "even last axis",
                     "Received: input_shape=(None, 5)"),
}


@pytest.mark.parametrize("row", list(BAD))
def test_bad_config(row):
    batch_shape, cls, config, error, expected, received = BAD[row]
    data = {"class_name": "Sequential", "config": {"name": "bad", "layers": [
        {"class_name": "InputLayer", "config": {"name": "x", "batch_shape": batch_shape}},
        {"class_name": cls, "config": {"name": "bad_layer", **config}}]}}
    with pytest.raises(error) as info:
        Model(spec_from_config(data, "bad.json"))
    message = str(info.value)
    assert f"layer 'bad_layer' ({cls})" in message
    assert expected in message and received in message
