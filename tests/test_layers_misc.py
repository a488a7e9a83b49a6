"""Conformance of normalization, identity, reshaping, activation, merging and preprocessing layers
against real Keras: values, output shapes, parameter counts.

Each row builds one branch (its own inputs) in real Keras; the rows of a group are ONE functional
model with random weights (variances positive), saved as .keras, loaded by kcompat and run once on
both sides. Then every layer's output shape and parameter count is compared too.

Tolerance: 1e-5 absolute and relative. The largest difference seen is ~1e-6 (bicubic upsampling,
normalizations that divide by a standard deviation TF and NumPy sum in different orders); a wrong
axis, pad, tap or statistic is O(0.1).
"""
from __future__ import annotations

import functools
from dataclasses import dataclass, field
from typing import Callable

import numpy as np
import pytest

from conftest import rand, to_kcompat
from kcompat.conformance.export import randomize_weights

ATOL = RTOL = 1e-5
pytestmark = pytest.mark.filterwarnings("ignore:You passed `rms_scaling=True`:UserWarning")
BATCH = 3


@dataclass
class Row:
    """One conformance row: ``build(keras, *inputs) -> tensor`` on inputs of ``shapes`` (no batch)."""

    id: str
    build: Callable
    shapes: list
    dtype: str = "float32"
    data: Callable | None = None  # seed -> list of arrays, when random normal data does not fit
    tol: float = ATOL
    extra: dict = field(default_factory=dict)


def row(rid, build, *shapes, **kw):
    return pytest.param(Row(rid, build, list(shapes), **kw), id=rid)


def layer(cls, **kwargs):
    """A row builder applying ``keras.layers.<cls>(**kwargs)`` to the row's input(s)."""
    def build(keras, *xs):
        lyr = getattr(keras.layers, cls)(**kwargs)
        return lyr(list(xs)) if len(xs) > 1 else lyr(xs[0])
    return build


def spectral(cls, power_iterations=1, **kwargs):
    """A row builder: ``SpectralNormalization(keras.layers.<cls>(**kwargs))`` (the wrapped layer at inference)."""
    def build(keras, x):
        return keras.layers.SpectralNormalization(getattr(keras.layers, cls)(**kwargs),
                                                  power_iterations=power_iterations)(x)
    return build


def randomize(kmodel, seed=1):
    """Random weights everywhere; variances / stddevs positive; integer counts left alone."""
    randomize_weights(kmodel, np.random.default_rng(seed))


def run_group(keras, rows: list[Row], tmp_path, name: str) -> dict:
    """Build the rows as one Keras model, save / load it with kcompat, run both; results per row id."""
    inputs, outputs, data = [], [], {}
    for i, r in enumerate(rows):
        xs = [keras.Input(s, name=f"{r.id}_in{j}", dtype=r.dtype) for j, s in enumerate(r.shapes)]
        arrays = r.data(i) if r.data else [rand((BATCH, *s), seed=100 * i + j) for j, s in enumerate(r.shapes)]
        data.update({x.name: a for x, a in zip(xs, arrays)})
        inputs += xs
        outputs.append(r.build(keras, *xs))
    kmodel = keras.Model(inputs, outputs, name=name)
    randomize(kmodel)
    want = kmodel([data[x.name] for x in kmodel.inputs], training=False)
    kc = to_kcompat(kmodel, tmp_path, name)
    got = kc.predict(data)
    out = {}
    for r, w, g, ref, t in zip(rows, want, got, kc.spec.outputs, kmodel.outputs):
        kc_shape = kc.shapes[(ref.layer, ref.node)]
        kc_shape = kc_shape[ref.index] if isinstance(kc_shape, list) else kc_shape  # a multi-output op's
        out[r.id] = dict(keras=keras.ops.convert_to_numpy(w), kcompat=g, keras_shape=tuple(t.shape),
                         kc_shape=kc_shape, tol=r.tol)
    ops = []
    for op in kmodel.operations:
        params = op.count_params() if isinstance(op, keras.layers.Layer) else 0
        made = op.output
        shape = [tuple(o.shape) for o in made] if isinstance(made, (list, tuple)) else tuple(made.shape)  # TopK: 2
        ops.append((op.name, type(op).__name__, shape, params))
    out["__ops__"] = (ops, kc)
    out["__total__"] = (kmodel.count_params(), kc.total_params)
    return out


def check_row(result: dict) -> None:
    got, want = result["kcompat"], result["keras"]
    assert result["kc_shape"] == result["keras_shape"]
    assert got.shape == want.shape
    if want.dtype.kind == "f":
        assert got.dtype == np.float32
        np.testing.assert_allclose(got, want, atol=result["tol"], rtol=result["tol"])
    else:
        np.testing.assert_array_equal(got, want)


def check_layers(result_group: dict) -> None:
    ops, kc = result_group["__ops__"]
    for name, cls, shape, params in ops:
        info = kc.info[name]
        assert info.output_shape == shape, f"{name} ({cls}): {info.output_shape} != Keras {shape}"
        assert info.params == params, f"{name} ({cls}): {info.params} params != Keras {params}"
        text = kc.layers[name].explain(info.input_shape, info.output_shape)
        assert "params" in text
    total_k, total_kc = result_group["__total__"]
    assert total_kc == total_k


# ------------------------------------------------------------------------------------------ rows
def _masked_steps(seed):
    x = rand((BATCH, 5, 3), seed=seed)
    x[:, 1] = 0.0
    x[0, 3] = 0.0
    return [x]


def _ints(seed, high=10, shape=(BATCH, 6)):
    rng = np.random.default_rng(seed)
    return [rng.integers(0, high, size=shape).astype(np.int32)]


NORMALIZATION = [
    row("bn_last_axis", layer("BatchNormalization"), (4, 5)),
    row("bn_axis1_channels_first", layer("BatchNormalization", axis=1, epsilon=1e-5), (3, 4, 4)),
    row("bn_no_center", layer("BatchNormalization", center=False), (6,)),
    row("bn_no_scale", layer("BatchNormalization", scale=False, momentum=0.9), (6,)),
    row("bn_no_center_no_scale", layer("BatchNormalization", center=False, scale=False), (2, 2, 5)),
    row("bn_renorm", layer("BatchNormalization", renorm=True), (5,)),
    row("ln_last_axis", layer("LayerNormalization"), (4, 6)),
    row("ln_axes_1_2", layer("LayerNormalization", axis=[1, 2], epsilon=1e-6), (3, 4, 2)),
    row("ln_mixed_sign_axes_reshape_not_transpose", layer("LayerNormalization", axis=[-1, 1]), (3, 4)),
    row("ln_no_center", layer("LayerNormalization", center=False), (5,)),
    row("ln_no_scale", layer("LayerNormalization", scale=False), (5,)),
    row("ln_rms_scaling", layer("LayerNormalization", rms_scaling=True), (4, 5)),
    row("gn_groups2", layer("GroupNormalization", groups=2), (4, 4, 6)),
    row("gn_instance_norm", layer("GroupNormalization", groups=-1, epsilon=1e-5), (5, 3)),
    row("gn_layer_norm_channels_first", layer("GroupNormalization", groups=1, axis=1), (4, 3, 3)),
    row("gn_no_center_no_scale", layer("GroupNormalization", groups=3, center=False, scale=False), (6,)),
    row("unitnorm_last", layer("UnitNormalization"), (4, 5)),
    row("unitnorm_axes_1_2", layer("UnitNormalization", axis=[1, 2]), (3, 4)),
    row("rmsnorm_last", layer("RMSNormalization"), (4, 5)),
    row("rmsnorm_trailing_axes_eps", layer("RMSNormalization", axis=[-2, -1], epsilon=1e-3), (3, 4)),
    row("spectral_norm_dense", spectral("Dense", units=3, activation="tanh"), (5,)),
    row("spectral_norm_conv2d_power2", spectral("Conv2D", filters=2, kernel_size=2, power_iterations=2), (5, 5, 3)),
    row("spectral_norm_einsum_dense", spectral("EinsumDense", equation="abc,cd->abd", output_shape=(None, 2)), (4, 3)),
]

IDENTITY = [
    row("spatial_dropout1d", layer("SpatialDropout1D", rate=0.5), (5, 3)),
    row("spatial_dropout2d", layer("SpatialDropout2D", rate=0.3, data_format="channels_first"), (2, 3, 3)),
    row("spatial_dropout3d", layer("SpatialDropout3D", rate=0.3), (2, 2, 2, 3)),
    row("gaussian_noise", layer("GaussianNoise", stddev=0.5), (4,)),
    row("gaussian_dropout", layer("GaussianDropout", rate=0.4), (4,)),
    row("alpha_dropout", layer("AlphaDropout", rate=0.2), (4,)),
    row("activity_regularization", layer("ActivityRegularization", l1=0.1, l2=0.01), (4,)),
    row("identity", layer("Identity"), (2, 3)),
    row("dropout", layer("Dropout", rate=0.5), (4,)),
    row("masking_zeroes_masked_steps", layer("Masking", mask_value=0.0), (5, 3), data=_masked_steps),
]

RESHAPING = [
    row("reshape_minus1", layer("Reshape", target_shape=(-1, 2)), (3, 4)),
    row("reshape_to_3d", layer("Reshape", target_shape=(2, 3, 2)), (12,)),
    row("permute_21", layer("Permute", dims=(2, 1)), (3, 4)),
    row("permute_312", layer("Permute", dims=(3, 1, 2)), (2, 3, 4)),
    row("repeat_vector", layer("RepeatVector", n=3), (4,)),
    row("zeropad1d_int", layer("ZeroPadding1D", padding=2), (4, 3)),
    row("zeropad1d_pair", layer("ZeroPadding1D", padding=(1, 3)), (4, 3)),
    row("zeropad2d_int", layer("ZeroPadding2D", padding=1), (3, 3, 2)),
    row("zeropad2d_pairs", layer("ZeroPadding2D", padding=((1, 2), (0, 3))), (3, 4, 2)),
    row("zeropad2d_channels_first", layer("ZeroPadding2D", padding=(2, 1), data_format="channels_first"),
        (2, 3, 3)),
    row("zeropad3d", layer("ZeroPadding3D", padding=((1, 0), (0, 2), (1, 1))), (2, 3, 2, 2)),
    row("zeropad3d_channels_first", layer("ZeroPadding3D", padding=1, data_format="channels_first"),
        (2, 2, 2, 2)),
    row("crop1d", layer("Cropping1D", cropping=(1, 2)), (6, 3)),
    row("crop1d_start_only", layer("Cropping1D", cropping=(2, 0)), (6, 3)),
    row("crop2d", layer("Cropping2D", cropping=((1, 0), (2, 1))), (5, 6, 2)),
    row("crop2d_channels_first", layer("Cropping2D", cropping=1, data_format="channels_first"), (2, 5, 5)),
    row("crop3d", layer("Cropping3D", cropping=((1, 1), (0, 1), (2, 0))), (4, 4, 4, 2)),
    row("crop3d_channels_first", layer("Cropping3D", cropping=1, data_format="channels_first"), (2, 4, 4, 4)),
    row("upsample1d", layer("UpSampling1D", size=3), (4, 2)),
    row("upsample2d_nearest_23", layer("UpSampling2D", size=(2, 3)), (3, 3, 2)),
    row("upsample2d_nearest_channels_first", layer("UpSampling2D", size=2, data_format="channels_first"),
        (2, 3, 3)),
    row("upsample2d_bilinear", layer("UpSampling2D", size=2, interpolation="bilinear"), (4, 5, 2)),
    row("upsample2d_bilinear_size3_channels_first",
        layer("UpSampling2D", size=(3, 2), interpolation="bilinear", data_format="channels_first"), (2, 4, 3)),
    row("upsample2d_bicubic", layer("UpSampling2D", size=2, interpolation="bicubic"), (5, 4, 2)),
    row("upsample2d_bicubic_size3", layer("UpSampling2D", size=(3, 3), interpolation="bicubic"), (4, 4, 1)),
    row("upsample2d_area", layer("UpSampling2D", size=2, interpolation="area"), (3, 3, 2)),
    row("upsample3d", layer("UpSampling3D", size=(1, 2, 3)), (2, 2, 2, 2)),
    row("upsample3d_channels_first", layer("UpSampling3D", size=2, data_format="channels_first"),
        (2, 2, 2, 2)),
]

ACTIVATIONS = [
    row("relu", layer("ReLU"), (6,)),
    row("relu_max6", layer("ReLU", max_value=6.0), (6,), data=lambda s: [rand((BATCH, 6), seed=s, scale=5)]),
    row("relu_max_2_5", layer("ReLU", max_value=2.5), (6,), data=lambda s: [rand((BATCH, 6), seed=s, scale=3)]),
    row("relu_negative_slope", layer("ReLU", negative_slope=0.1), (6,)),
    row("relu_threshold", layer("ReLU", threshold=0.5), (6,)),
    row("relu_threshold_slope", layer("ReLU", threshold=0.5, negative_slope=0.2), (6,)),
    row("relu_all_three", layer("ReLU", max_value=1.0, negative_slope=0.3, threshold=0.25), (6,)),
    row("relu_max_slope", layer("ReLU", max_value=1.0, negative_slope=0.3), (6,)),
    row("leaky_relu_default", layer("LeakyReLU"), (6,)),
    row("leaky_relu_0_05", layer("LeakyReLU", negative_slope=0.05), (6,)),
    row("prelu", layer("PReLU"), (3, 4)),
    row("prelu_shared_axes", layer("PReLU", shared_axes=[1, 2]), (3, 3, 4)),
    row("elu", layer("ELU"), (6,)),
    row("elu_alpha", layer("ELU", alpha=0.5), (6,)),
    row("softmax_last", layer("Softmax"), (3, 5)),
    row("softmax_axis1", layer("Softmax", axis=1), (3, 5)),
    row("softmax_axes_list", layer("Softmax", axis=[1, 2]), (3, 5)),
    row("softmax_with_mask_input", lambda k, x, m: k.layers.Softmax()(x, mask=m), (3, 5), (3, 5),
        data=lambda s: [rand((BATCH, 3, 5), seed=s),
                        (np.random.default_rng(s).random((BATCH, 3, 5)) > 0.3).astype(np.float32)]),
    row("softmax_large_logits", layer("Softmax"), (5,), data=lambda s: [rand((BATCH, 5), seed=s, scale=300)]),
]

MERGING = [
    row("add_two", layer("Add"), (4,), (4,)),
    row("add_three", layer("Add"), (2, 3), (2, 3), (2, 3)),
    row("add_broadcast_size1", layer("Add"), (4, 3), (1, 3)),
    row("add_lower_rank_inserts_after_batch", layer("Add"), (4, 3), (3,)),
    row("subtract", layer("Subtract"), (5,), (5,)),
    row("multiply_three", layer("Multiply"), (4,), (4,), (4,)),
    row("average", layer("Average"), (2, 3), (2, 3), (2, 3)),
    row("maximum", layer("Maximum"), (5,), (5,)),
    row("minimum", layer("Minimum"), (5,), (5,)),
    row("concat_last", layer("Concatenate"), (3, 2), (3, 4)),
    row("concat_axis1", layer("Concatenate", axis=1), (2, 3), (4, 3), (1, 3)),
    row("dot_2d", layer("Dot", axes=1), (5,), (5,)),
    row("dot_2d_normalize_cosine", layer("Dot", axes=-1, normalize=True), (5,), (5,)),
    row("dot_3d_axes22_attention", layer("Dot", axes=(2, 2)), (3, 4), (5, 4)),
    row("dot_3d_axes12", layer("Dot", axes=(1, 2)), (4, 3), (2, 4)),
    row("dot_3d_2d", layer("Dot", axes=(2, 1)), (3, 4), (4,)),
    row("dot_3d_normalize", layer("Dot", axes=(1, 1), normalize=True), (4, 3), (4, 2)),
]

PREPROCESSING = [
    row("embedding", layer("Embedding", input_dim=10, output_dim=4), (6,), dtype="int32", data=_ints),
    row("embedding_2d_indices", layer("Embedding", input_dim=7, output_dim=3), (2, 3), dtype="int32",
        data=lambda s: _ints(s, 7, (BATCH, 2, 3))),
    row("rescaling", layer("Rescaling", scale=1 / 255.0), (4, 4, 3)),
    row("rescaling_offset", layer("Rescaling", scale=2.0, offset=-1.0), (5,)),
    row("rescaling_per_channel", layer("Rescaling", scale=[0.5, 2.0, 4.0], offset=[1.0, 0.0, -1.0]), (2, 3)),
    row("normalization_adapted", layer("Normalization"), (4, 3)),
    row("normalization_axis_none", layer("Normalization", axis=None), (4, 3)),
    row("normalization_axes_1_2", layer("Normalization", axis=(1, 2)), (4, 3)),
    row("normalization_config_mean", layer("Normalization", mean=[1.0, 2.0, 3.0], variance=[1.0, 4.0, 0.25]),
        (2, 3)),
    row("normalization_config_scalar_invert", layer("Normalization", mean=2.0, variance=9.0, invert=True),
        (2, 3)),
]

GROUPS = {"normalization": NORMALIZATION, "identity": IDENTITY, "reshaping": RESHAPING,
          "activations": ACTIVATIONS, "merging": MERGING, "preprocessing": PREPROCESSING}


def group_runner(keras, tmp_path_factory, groups: dict):
    """``get(group)``: build and run a group's rows once (one Keras model per group), cached."""
    return functools.cache(lambda group: run_group(keras, [p.values[0] for p in groups[group]],
                                                   tmp_path_factory.mktemp(group), group))


def table_tests(groups: dict):
    """A family table's tests: ``built`` (module fixture: ``built(group)`` builds and runs a group once) and
    the two tests over every row (values and shape; every layer's shape and params), for the module to bind
    to its own names (pytest collects them there)."""
    rows = [pytest.param(g, p.values[0], id=p.id) for g, group in groups.items() for p in group]

    @pytest.fixture(scope="module")
    def built(keras, tmp_path_factory):
        return group_runner(keras, tmp_path_factory, groups)

    @pytest.mark.parametrize("group,r", rows)
    def test_values(built, group, r):
        check_row(built(group)[r.id])

    @pytest.mark.parametrize("group", list(groups))
    def test_layers(built, group):
        check_layers(built(group))
    return built, test_values, test_layers


# built(group): the group's results, cached; the two tests over every row
built, test_values_and_shape_match_keras, test_every_layer_shape_and_params_match_keras = table_tests(GROUPS)


# ------------------------------------------------------------------------ end to end
def test_resnet_dense_block_end_to_end(keras, tmp_path):
    """Dense / BatchNormalization / ReLU / Add residual blocks, then LayerNormalization and Softmax."""
    L = keras.layers
    x_in = keras.Input((16,), name="features")
    x = L.Dense(32, name="stem")(x_in)
    for i in range(2):
        h = L.Dense(32, name=f"b{i}_dense1")(x)
        h = L.BatchNormalization(name=f"b{i}_bn1")(h)
        h = L.ReLU(name=f"b{i}_relu1")(h)
        h = L.Dense(32, name=f"b{i}_dense2")(h)
        h = L.BatchNormalization(name=f"b{i}_bn2")(h)
        x = L.Add(name=f"b{i}_add")([x, h])
        x = L.ReLU(name=f"b{i}_out")(x)
    x = L.LayerNormalization(name="ln")(x)
    out = L.Dense(5, activation="softmax", name="head")(x)
    kmodel = keras.Model(x_in, out)
    randomize(kmodel, seed=5)
    data = rand((8, 16), seed=6)
    want = kmodel(data, training=False).numpy()
    kc = to_kcompat(kmodel, tmp_path)
    got = kc.predict(data)[0]
    np.testing.assert_allclose(got, want, atol=2e-5, rtol=2e-5)
    assert kc.total_params == kmodel.count_params()
    assert kc.trainable_params == sum(int(np.prod(w.shape)) for w in kmodel.trainable_weights)
    k_layers = {lyr.name: lyr for lyr in kmodel.layers}
    for name, info in kc.info.items():
        assert info.output_shape == tuple(k_layers[name].output.shape)


def test_resnet_conv_block_end_to_end(keras, tmp_path):
    """A ResNet basic block with a projection shortcut: Conv2D / BN / ReLU / Add, then pooling."""
    L = keras.layers
    x_in = keras.Input((12, 12, 3))
    x = L.ZeroPadding2D(1)(x_in)
    x = L.Conv2D(8, 3, strides=2, use_bias=False)(x)
    x = L.BatchNormalization()(x)
    x = L.ReLU()(x)
    h = L.Conv2D(16, 3, padding="same", use_bias=False)(x)
    h = L.BatchNormalization()(h)
    h = L.ReLU()(h)
    h = L.Conv2D(16, 3, padding="same", use_bias=False)(h)
    h = L.BatchNormalization()(h)
    shortcut = L.Conv2D(16, 1, use_bias=False)(x)
    shortcut = L.BatchNormalization()(shortcut)
    x = L.ReLU()(L.Add()([h, shortcut]))
    x = L.UpSampling2D(interpolation="bilinear")(x)
    x = L.GlobalAveragePooling2D()(x)
    out = L.Dense(4, activation="softmax")(x)
    kmodel = keras.Model(x_in, out)
    randomize(kmodel, seed=7)
    data = rand((4, 12, 12, 3), seed=8)
    want = kmodel(data, training=False).numpy()
    kc = to_kcompat(kmodel, tmp_path)
    np.testing.assert_allclose(kc.predict(data)[0], want, atol=2e-5, rtol=2e-5)
    assert kc.total_params == kmodel.count_params()
    assert kc.non_trainable_params == sum(int(np.prod(w.shape)) for w in kmodel.non_trainable_weights)


# ------------------------------------------------------------------------ bad configs
def _make(class_name, **config):
    from kcompat.layers import make_layer
    return make_layer(class_name, config, "bad")


@pytest.mark.parametrize("class_name,config,error,words", [
    ("UpSampling2D", dict(size=2, interpolation="lanczos3"), "UnsupportedError", "interpolation"),
    ("UpSampling2D", dict(size=(2, 0)), "ConfigError", "size"),
    ("Reshape", dict(target_shape=[-1, -1]), "ConfigError", "target_shape"),
    ("Permute", dict(dims=[1, 3]), "ConfigError", "dims"),
    ("ZeroPadding2D", dict(padding=[1, 2, 3]), "ConfigError", "padding"),
    ("Cropping2D", dict(cropping=[[1, -1], [0, 0]]), "ConfigError", "cropping"),
    ("RepeatVector", dict(n=0), "ConfigError", "n"),
    ("GroupNormalization", dict(groups=0), "ConfigError", "groups"),
    ("BatchNormalization", dict(virtual_batch_size=4), "ConfigError", "virtual_batch_size"),
    ("ReLU", dict(max_value=-1.0), "ConfigError", "max_value"),
    ("Dot", dict(axes=[1, 2, 3]), "ConfigError", "axes"),
    ("Embedding", dict(input_dim=0, output_dim=3), "ConfigError", "input_dim"),
    ("Rescaling", dict(scale=None), "ConfigError", "scale"),
    ("GaussianDropout", dict(rate=1.5), "ConfigError", "rate"),
])
def test_bad_config_refused_by_name(class_name, config, error, words):
    import kcompat
    with pytest.raises(getattr(kcompat, error)) as e:
        _make(class_name, **config)
    assert words in str(e.value) and "'bad'" in str(e.value)


@pytest.mark.parametrize("class_name,config,shape,words", [
    ("Cropping1D", dict(cropping=[3, 3]), (None, 6, 2), "cropping"),
    ("GroupNormalization", dict(groups=4), (None, 6), "groups"),
    ("Concatenate", dict(axis=-1), [(None, 3, 2), (None, 4, 2)], "match"),
    ("Add", dict(), [(None, 3), (None, 4)], "incompatible"),
    ("Dot", dict(axes=1), [(None, 3), (None, 4)], "differ"),
    ("SpatialDropout2D", dict(rate=0.1), (None, 3, 3), "rank 4"),
    ("BatchNormalization", dict(axis=3), (None, 4, 4), "out of bounds"),
    ("Reshape", dict(target_shape=[5, -1]), (None, 3, 4), "reshape"),
])
def test_bad_input_shape_refused(class_name, config, shape, words):
    import kcompat
    lyr = _make(class_name, **config)
    with pytest.raises((kcompat.KcompatError, ValueError)) as e:
        lyr.output_shape(shape)
        lyr.weights(shape)
    assert words in str(e.value)


def test_embedding_out_of_range_index_is_refused():
    import kcompat
    lyr = _make("Embedding", input_dim=4, output_dim=2)
    with pytest.raises(kcompat.ShapeError, match="indices must be in"):
        lyr.forward(np.array([[1, 4]]), np.zeros((4, 2), np.float32))


def test_keras2_configs_accepted():
    """tf.keras spellings: LeakyReLU 'alpha', BatchNormalization axis as a list."""
    lr = _make("LeakyReLU", alpha=0.1)
    np.testing.assert_allclose(lr.forward(np.array([-1.0, 2.0], np.float32)), [-0.1, 2.0])
    bn = _make("BatchNormalization", axis=[3], epsilon=0.0)
    assert [w.name for w in bn.weights((None, 2, 2, 5))] == ["gamma", "beta", "moving_mean", "moving_variance"]
    ones, zeros = np.ones(5, np.float32), np.zeros(5, np.float32)
    x = rand((1, 2, 2, 5))
    np.testing.assert_allclose(bn.forward(x, ones, zeros, zeros, ones), x, rtol=1e-6)


def test_random_weights_keep_variances_positive():
    """init_weights on an architecture-only model gives BN / Normalization usable statistics."""
    from kcompat.model import random_weight
    rng = np.random.default_rng(0)
    bn = _make("BatchNormalization")
    var = [random_weight(bn, w, rng) for w in bn.weights((None, 50))][3]
    assert var.min() > 0
    norm = _make("Normalization", axis=-1)
    ws = [random_weight(norm, w, rng) for w in norm.weights((None, 4))]
    assert ws[1].min() > 0 and ws[2].shape == ()


# ------------------------------------------------------------------ SpectralNormalization's files
def _spectral_model(keras):
    L = keras.layers
    inp = keras.Input((6, 6, 2))
    x = L.SpectralNormalization(L.Conv2D(3, 2), power_iterations=2, name="sn_conv")(inp)
    x = L.SpectralNormalization(L.Dense(2, use_bias=False), name="sn_dense")(x)
    model = keras.Model(inp, x)
    randomize(model)
    return model


def _h5_listing(path) -> list:
    import h5py
    out = []
    with h5py.File(path) as f:
        f.visititems(lambda name, obj: out.append((name, getattr(obj, "shape", None))))
    return out


def test_spectral_normalization_keras_weight_layout_is_written_back(keras, tmp_path):
    """Keras 3 saves the wrapper's own variables (the wrapped kernel again, then vector_u) in its ``vars`` and
    the wrapped layer's in ``layer/vars``: kcompat reads the kernel once and writes the same datasets back."""
    import zipfile
    import kcompat
    model = _spectral_model(keras)
    model.save(tmp_path / "m.keras")
    kc = kcompat.load(str(tmp_path / "m.keras"))
    inner = model.get_layer("sn_conv").layer.name
    assert [w.name for w in kc.info["sn_conv"].weights] == [f"{inner}/kernel", f"{inner}/bias", "vector_u"]
    assert (kc.info["sn_conv"].trainable_params, kc.info["sn_conv"].non_trainable_params) == (2 * 2 * 2 * 3 + 3, 3)
    kcompat.save(kc, str(tmp_path / "out.keras"))
    for name in ("m", "out"):
        with zipfile.ZipFile(tmp_path / f"{name}.keras") as z:
            z.extract("model.weights.h5", tmp_path / name)
    assert _h5_listing(tmp_path / "out" / "model.weights.h5") == _h5_listing(tmp_path / "m" / "model.weights.h5")
    assert ("layers/spectral_normalization/vars/0", (2, 2, 2, 3)) in _h5_listing(tmp_path / "m" / "model.weights.h5")


def keras_reads_what_kcompat_writes(keras, model, data, tmp_path, ext: str, check=None) -> None:
    """``model`` saved by Keras as .keras and .h5; kcompat reads each (outputs as Keras's; ``check(kc)``), writes
    it as ``ext``, and real Keras loads that with the same outputs and the same weights (names, trainable, values)."""
    import kcompat
    want = np.asarray(model(data, training=False))
    model.save(tmp_path / "m.keras")
    model.save(tmp_path / "m.h5")
    for source in ("m.keras", "m.h5"):
        kc = kcompat.load(str(tmp_path / source))
        np.testing.assert_allclose(kc.predict(data)[0], want, atol=1e-5, rtol=1e-5)
        if check is not None:
            check(kc)
        target = tmp_path / f"out_{source[2:]}.{ext}"
        kcompat.save(kc, str(target))
        if ext == "json":
            back = keras.models.model_from_json(target.read_text())
            back.load_weights(tmp_path / f"out_{source[2:]}.weights.h5")
        else:
            back = keras.models.load_model(target)
        np.testing.assert_allclose(np.asarray(back(data, training=False)), want, atol=1e-6, rtol=1e-6)
        for got, orig in zip(back.weights, model.weights):
            assert got.name == orig.name and got.trainable == orig.trainable  # (a loaded wrapper scopes paths anew)
            np.testing.assert_array_equal(np.asarray(got), np.asarray(orig))


@pytest.mark.parametrize("ext", ["keras", "h5", "json"])
def test_spectral_normalization_files_load_in_keras_with_the_same_outputs(keras, tmp_path, ext):
    keras_reads_what_kcompat_writes(keras, _spectral_model(keras), rand((BATCH, 6, 6, 2), 4), tmp_path, ext)


def test_spectral_normalization_of_an_embedding_keeps_floats(keras, tmp_path):
    """Keras bug: SpectralNormalization casts its output to the input's dtype (keras/src/layers/normalization/
    spectral_normalization.py ``call``), so over integer ids every embedding is truncated to an integer, while
    the output it declares is float32. kcompat returns the wrapped Embedding's output, as the docs describe."""
    import kcompat
    ids = keras.Input((4,), dtype="int32")
    sn = keras.layers.SpectralNormalization(keras.layers.Embedding(10, 3))
    model = keras.Model(ids, sn(ids))
    randomize(model)
    data = np.random.default_rng(0).integers(0, 10, (BATCH, 4)).astype(np.int32)
    assert model.outputs[0].dtype == "float32"
    assert keras.ops.convert_to_numpy(model(data)).dtype.kind == "i"  # the bug
    got = to_kcompat(model, tmp_path, "emb").predict(data)[0]
    np.testing.assert_allclose(got, np.asarray(sn.layer(data)), atol=1e-7)
    assert got.dtype == np.float32
    assert kcompat.load(str(tmp_path / "emb.keras")).total_params == model.count_params() == 30 + 3


TF_KERAS_SPECTRAL = """
import sys, numpy as np, tf_keras as tk
inp = tk.Input((6, 6, 2))
sn = tk.layers.SpectralNormalization(tk.layers.Conv2D(3, 2), power_iterations=2)
model = tk.Model(inp, tk.layers.SpectralNormalization(tk.layers.Dense(2, use_bias=False))(sn(inp)))
rng = np.random.default_rng(3)
model.set_weights([rng.uniform(0.5, 1.5, w.shape).astype("float32") for w in model.get_weights()])
x = rng.normal(size=(3, 6, 6, 2)).astype("float32")
model.save(sys.argv[1])
np.savez(sys.argv[2], x=x, y=model(x, training=False).numpy())
"""


def test_spectral_normalization_tf_keras_h5(keras, tmp_path):
    """tf_keras's SpectralNormalization (Keras 2): a legacy .h5 lists the wrapped layer's weights, then
    vector_u (``kernel:0, bias:0, vector_u:0``), as Keras 3's does. tf_keras builds it only as the legacy Keras
    of TensorFlow (TF_USE_LEGACY_KERAS=1): its ``build`` makes a ``tf.keras.layers.InputSpec``, which is Keras
    3's otherwise and refused (a tf_keras bug); so the file is made in a subprocess."""
    import os
    import subprocess
    import sys
    import kcompat
    env = {**os.environ, "TF_USE_LEGACY_KERAS": "1", "TF_CPP_MIN_LOG_LEVEL": "3"}
    h5, npz = tmp_path / "k2.h5", tmp_path / "k2.npz"
    run = subprocess.run([sys.executable, "-c", TF_KERAS_SPECTRAL, str(h5), str(npz)], env=env, capture_output=True,
                         text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-2000:]
    data = np.load(npz)
    kc = kcompat.load(str(h5))
    np.testing.assert_allclose(kc.predict(data["x"])[0], data["y"], atol=1e-5, rtol=1e-5)
    assert kc.total_params == (2 * 2 * 2 * 3 + 3 + 3) + (3 * 2 + 2)
    kcompat.save(kc, str(tmp_path / "k3.keras"))
    back = keras.models.load_model(tmp_path / "k3.keras")
    np.testing.assert_allclose(np.asarray(back(data["x"], training=False)), data["y"], atol=1e-5, rtol=1e-5)
