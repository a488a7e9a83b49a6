"""Conformance of the conv and pooling layers against real Keras: values, shapes, param counts.

Each row is one layer on its own input. Rows of one family are branches of ONE functional
Keras model (random weights, biases included), saved as .keras, loaded by kcompat and run
once on both sides, so ~90 rows cost five model saves.

Tolerance: 1e-4 absolute and relative. A float32 convolution output is a sum of up to
k*k*C products; TF (oneDNN) and NumPy (BLAS) add them in different orders, so each output
may differ by a few float32 ulps times sqrt(terms) (~1e-6 here). 1e-4 leaves headroom
for that and still catches any real error (a wrong pad, tap or channel is O(0.1)).
"""
from __future__ import annotations

import numpy as np
import pytest

from conftest import rand, to_kcompat

ATOL = RTOL = 1e-4

# (id, Keras layer class name, kwargs, input shape without batch)
CONV = [
    ("conv1d_valid", "Conv1D", dict(filters=4, kernel_size=3), (10, 3)),
    ("conv1d_same_stride2", "Conv1D", dict(filters=4, kernel_size=3, strides=2, padding="same"), (11, 3)),
    ("conv1d_causal_dilation2_relu", "Conv1D",
     dict(filters=4, kernel_size=3, padding="causal", dilation_rate=2, activation="relu"), (12, 2)),
    ("conv1d_causal_channels_first", "Conv1D",
     dict(filters=4, kernel_size=2, padding="causal", data_format="channels_first"), (3, 9)),
    ("conv1d_groups3_nobias", "Conv1D", dict(filters=6, kernel_size=3, groups=3, use_bias=False), (8, 6)),
    ("conv2d_valid", "Conv2D", dict(filters=5, kernel_size=3), (9, 9, 3)),
    ("conv2d_same_strides23_odd", "Conv2D",
     dict(filters=4, kernel_size=(3, 2), strides=(2, 3), padding="same"), (10, 11, 2)),
    ("conv2d_same_even_kernel", "Conv2D", dict(filters=3, kernel_size=4, padding="same"), (7, 7, 2)),
    ("conv2d_dilation21_tanh", "Conv2D",
     dict(filters=4, kernel_size=3, dilation_rate=(2, 1), padding="same", activation="tanh"), (9, 9, 3)),
    ("conv2d_groups2_channels_first", "Conv2D",
     dict(filters=4, kernel_size=3, groups=2, data_format="channels_first"), (4, 8, 8)),
    ("conv2d_same_stride2_channels_first", "Conv2D",
     dict(filters=4, kernel_size=3, strides=2, padding="same", data_format="channels_first"), (3, 9, 9)),
    ("conv2d_groups_equal_channels", "Conv2D", dict(filters=6, kernel_size=3, groups=3, padding="same"), (6, 6, 3)),
    ("conv2d_1x1_nobias_sigmoid", "Conv2D",
     dict(filters=2, kernel_size=1, use_bias=False, activation="sigmoid"), (5, 5, 4)),
    ("conv3d_valid", "Conv3D", dict(filters=3, kernel_size=2), (5, 5, 5, 2)),
    ("conv3d_same_strides122", "Conv3D", dict(filters=2, kernel_size=3, strides=(1, 2, 2), padding="same"),
     (5, 6, 7, 2)),
    ("conv3d_dilation2_channels_first", "Conv3D",
     dict(filters=2, kernel_size=2, dilation_rate=2, data_format="channels_first"), (2, 6, 6, 6)),
    ("conv3d_groups2", "Conv3D", dict(filters=4, kernel_size=2, groups=2), (4, 4, 4, 4)),
    # shapes the kernels special-case: 1x1 as a plain matmul (strided: on a view), taps that read only padding
    ("conv2d_1x1_stride2_projection", "Conv2D", dict(filters=6, kernel_size=1, strides=2), (9, 8, 4)),
    ("conv2d_1x1_same_channels_first_relu", "Conv2D",
     dict(filters=3, kernel_size=1, padding="same", data_format="channels_first", activation="relu"), (4, 5, 6)),
    ("conv1d_1x1_stride3", "Conv1D", dict(filters=5, kernel_size=1, strides=3), (10, 4)),
    # 1x1 expanding with a bias: one matmul with a ones column; narrow: the bias added over long rows
    ("conv2d_1x1_expand_relu6", "Conv2D", dict(filters=24, kernel_size=1, activation="relu6"), (6, 7, 4)),
    ("conv2d_1x1_narrow_bias_long_rows", "Conv2D", dict(filters=3, kernel_size=1), (30, 30, 8)),
    ("conv3d_1x1_stride2_channels_first", "Conv3D",
     dict(filters=3, kernel_size=1, strides=2, data_format="channels_first"), (2, 5, 4, 8)),
    ("conv2d_same_stride2_even", "Conv2D", dict(filters=4, kernel_size=3, strides=2, padding="same"), (8, 10, 3)),
    ("conv2d_7x7_stride2_same_even", "Conv2D", dict(filters=4, kernel_size=7, strides=2, padding="same"), (12, 12, 3)),
    ("conv2d_same_dilation_wider_than_input", "Conv2D",
     dict(filters=2, kernel_size=3, dilation_rate=4, padding="same"), (3, 5, 2)),
    ("conv1d_causal_kernel_longer_than_input", "Conv1D", dict(filters=2, kernel_size=5, padding="causal"), (3, 2)),
    # 3x3 stride 1 with 32+ channels in and out: Winograd F(2x2, 3x3), odd sizes leave half tiles
    ("conv2d_3x3_winograd_same_odd_relu", "Conv2D", dict(filters=32, kernel_size=3, padding="same", activation="relu"),
     (9, 7, 32)),
    ("conv2d_3x3_winograd_valid_channels_first", "Conv2D", dict(filters=33, kernel_size=3, data_format="channels_first"),
     (40, 8, 11)),
]

DEPTHWISE_SEPARABLE = [
    ("dw1d_valid", "DepthwiseConv1D", dict(kernel_size=3), (10, 3)),
    ("dw1d_same_stride2_mult2", "DepthwiseConv1D",
     dict(kernel_size=3, strides=2, padding="same", depth_multiplier=2), (11, 3)),
    ("dw1d_dilation2_channels_first", "DepthwiseConv1D",
     dict(kernel_size=3, dilation_rate=2, data_format="channels_first"), (3, 12)),
    ("dw2d_valid", "DepthwiseConv2D", dict(kernel_size=3), (8, 8, 3)),
    ("dw2d_same_mult3_relu", "DepthwiseConv2D",
     dict(kernel_size=3, padding="same", depth_multiplier=3, activation="relu"), (7, 7, 2)),
    ("dw2d_stride2_and_dilation2", "DepthwiseConv2D",
     dict(kernel_size=3, strides=2, dilation_rate=2, padding="same"), (11, 11, 2)),
    ("dw2d_channels_first_nobias", "DepthwiseConv2D",
     dict(kernel_size=(2, 3), strides=(2, 1), data_format="channels_first", use_bias=False), (3, 8, 9)),
    ("dw2d_same_stride2_even_mult2", "DepthwiseConv2D",
     dict(kernel_size=3, strides=2, padding="same", depth_multiplier=2), (8, 10, 3)),
    ("dw2d_same_even_kernel_channels_first", "DepthwiseConv2D",
     dict(kernel_size=2, padding="same", data_format="channels_first"), (3, 7, 6)),
    ("dw2d_dilation_wider_than_input", "DepthwiseConv2D", dict(kernel_size=3, dilation_rate=3, padding="same"),
     (2, 4, 3)),
    ("dw1d_same_even_kernel_mult3", "DepthwiseConv1D", dict(kernel_size=4, padding="same", depth_multiplier=3),
     (9, 2)),
    ("sep2d_same_stride2_even", "SeparableConv2D", dict(filters=3, kernel_size=3, strides=2, padding="same"),
     (8, 8, 2)),
    ("sep1d_valid", "SeparableConv1D", dict(filters=4, kernel_size=3), (10, 3)),
    ("sep1d_same_stride2_mult2", "SeparableConv1D",
     dict(filters=5, kernel_size=3, strides=2, padding="same", depth_multiplier=2), (11, 3)),
    ("sep1d_dilation2_channels_first", "SeparableConv1D",
     dict(filters=3, kernel_size=3, dilation_rate=2, data_format="channels_first"), (2, 12)),
    ("sep2d_valid", "SeparableConv2D", dict(filters=4, kernel_size=3), (8, 8, 3)),
    ("sep2d_same_stride2_mult2_relu", "SeparableConv2D",
     dict(filters=6, kernel_size=3, strides=2, padding="same", depth_multiplier=2, activation="relu"), (9, 9, 3)),
    ("sep2d_dilation2_channels_first_nobias", "SeparableConv2D",
     dict(filters=4, kernel_size=3, dilation_rate=2, data_format="channels_first", use_bias=False), (3, 10, 10)),
]

TRANSPOSE = [
    ("conv1dT_valid", "Conv1DTranspose", dict(filters=4, kernel_size=3), (6, 3)),
    ("conv1dT_same_stride2", "Conv1DTranspose", dict(filters=4, kernel_size=3, strides=2, padding="same"), (6, 3)),
    ("conv1dT_valid_stride3_outpad2", "Conv1DTranspose",
     dict(filters=3, kernel_size=3, strides=3, output_padding=2), (5, 2)),
    ("conv1dT_kernel_smaller_than_stride", "Conv1DTranspose", dict(filters=3, kernel_size=2, strides=3), (5, 2)),
    ("conv1dT_same_dilation2_channels_first", "Conv1DTranspose",
     dict(filters=2, kernel_size=3, dilation_rate=2, padding="same", data_format="channels_first"), (3, 7)),
    ("conv2dT_valid_stride2", "Conv2DTranspose", dict(filters=4, kernel_size=3, strides=2), (5, 5, 3)),
    ("conv2dT_same_stride2_outpad1", "Conv2DTranspose",
     dict(filters=3, kernel_size=3, strides=2, padding="same", output_padding=1), (5, 4, 2)),
    ("conv2dT_same_even_kernel_stride2", "Conv2DTranspose",
     dict(filters=3, kernel_size=4, strides=2, padding="same"), (5, 5, 2)),
    ("conv2dT_same_strides23_outpad12", "Conv2DTranspose",
     dict(filters=3, kernel_size=(3, 2), strides=(2, 3), padding="same", output_padding=(1, 2)), (4, 5, 2)),
    ("conv2dT_valid_dilation2", "Conv2DTranspose", dict(filters=2, kernel_size=3, dilation_rate=2), (5, 5, 3)),
    ("conv2dT_same_strides12_channels_first_relu", "Conv2DTranspose",
     dict(filters=4, kernel_size=3, strides=(1, 2), padding="same", data_format="channels_first",
          activation="relu"), (3, 5, 6)),
    ("conv2dT_stride2_nobias", "Conv2DTranspose", dict(filters=2, kernel_size=2, strides=2, use_bias=False),
     (4, 4, 3)),
    ("conv3dT_valid_stride2", "Conv3DTranspose", dict(filters=2, kernel_size=2, strides=2), (3, 3, 3, 2)),
    ("conv3dT_same_stride2_outpad1", "Conv3DTranspose",
     dict(filters=2, kernel_size=3, strides=2, padding="same", output_padding=1), (3, 3, 3, 2)),
    ("conv3dT_channels_first", "Conv3DTranspose", dict(filters=2, kernel_size=3, data_format="channels_first"),
     (2, 3, 4, 3)),
]

POOLING = [
    ("maxpool1d_default_drops_tail", "MaxPooling1D", dict(), (9, 3)),
    ("maxpool1d_same_stride1", "MaxPooling1D", dict(pool_size=3, strides=1, padding="same"), (7, 2)),
    ("avgpool1d_same_stride2", "AveragePooling1D", dict(pool_size=3, strides=2, padding="same"), (8, 2)),
    ("avgpool1d_channels_first", "AveragePooling1D", dict(pool_size=2, data_format="channels_first"), (3, 8)),
    ("maxpool2d_valid", "MaxPooling2D", dict(pool_size=(2, 2)), (7, 7, 3)),
    ("maxpool2d_same_stride2_odd", "MaxPooling2D", dict(pool_size=3, strides=2, padding="same"), (8, 9, 2)),
    ("maxpool2d_same_channels_first", "MaxPooling2D",
     dict(pool_size=2, padding="same", data_format="channels_first"), (3, 5, 5)),
    ("avgpool2d_valid_strides12", "AveragePooling2D", dict(pool_size=3, strides=(1, 2)), (7, 8, 2)),
    ("avgpool2d_same_excludes_padding", "AveragePooling2D", dict(pool_size=3, strides=2, padding="same"),
     (8, 9, 2)),
    ("avgpool2d_same_stride1_channels_first", "AveragePooling2D",
     dict(pool_size=2, strides=1, padding="same", data_format="channels_first"), (2, 5, 5)),
    ("maxpool3d_valid", "MaxPooling3D", dict(pool_size=2), (5, 5, 5, 2)),
    ("maxpool3d_same_stride1_channels_first", "MaxPooling3D",
     dict(pool_size=2, strides=1, padding="same", data_format="channels_first"), (2, 3, 4, 5)),
    ("avgpool3d_same_stride2", "AveragePooling3D", dict(pool_size=3, strides=2, padding="same"), (5, 6, 4, 2)),
    ("avgpool3d_valid_channels_first", "AveragePooling3D",
     dict(pool_size=(2, 1, 2), data_format="channels_first"), (2, 4, 4, 4)),
]

GLOBAL = [
    ("gmax1d", "GlobalMaxPooling1D", dict(), (7, 3)),
    ("gmax1d_keepdims_channels_first", "GlobalMaxPooling1D", dict(keepdims=True, data_format="channels_first"),
     (3, 7)),
    ("gavg1d", "GlobalAveragePooling1D", dict(), (7, 3)),
    ("gavg1d_keepdims", "GlobalAveragePooling1D", dict(keepdims=True), (7, 3)),
    ("gmax2d", "GlobalMaxPooling2D", dict(), (5, 6, 3)),
    ("gmax2d_keepdims_channels_first", "GlobalMaxPooling2D", dict(keepdims=True, data_format="channels_first"),
     (3, 5, 6)),
    ("gavg2d", "GlobalAveragePooling2D", dict(), (5, 6, 3)),
    ("gavg2d_channels_first", "GlobalAveragePooling2D", dict(data_format="channels_first"), (3, 5, 6)),
    ("gmax3d", "GlobalMaxPooling3D", dict(), (3, 4, 5, 2)),
    ("gmax3d_channels_first", "GlobalMaxPooling3D", dict(data_format="channels_first"), (2, 3, 4, 5)),
    ("gavg3d_keepdims", "GlobalAveragePooling3D", dict(keepdims=True), (3, 4, 5, 2)),
    ("gavg3d_keepdims_channels_first", "GlobalAveragePooling3D", dict(keepdims=True, data_format="channels_first"),
     (2, 3, 4, 5)),
]

GROUPS = {"conv": CONV, "depthwise_separable": DEPTHWISE_SEPARABLE, "transpose": TRANSPOSE,
          "pooling": POOLING, "global": GLOBAL}
ROWS = [pytest.param(group, row[0], id=row[0]) for group, rows in GROUPS.items() for row in rows]
BATCH = 2


def _build_group(keras, rows, tmp_path, group):
    """One functional model, one branch per row; random weights; saved, loaded by kcompat, run on both sides."""
    inputs, outputs = [], []
    for i, (rid, cls, kwargs, shape) in enumerate(rows):
        x = keras.Input(shape, batch_size=None, name=f"in_{rid}")
        inputs.append(x)
        outputs.append(getattr(keras.layers, cls)(name=rid, **kwargs)(x))
    kmodel = keras.Model(inputs, outputs, name=group)
    rng = np.random.default_rng(1)
    for layer in kmodel.layers:
        layer.set_weights([rng.normal(0, 0.5, w.shape).astype(np.float32) for w in layer.get_weights()])
    data = {f"in_{rid}": rand((BATCH, *shape), seed=i) for i, (rid, _, _, shape) in enumerate(rows)}
    k_out = kmodel([data[t.name] for t in kmodel.inputs], training=False)
    kc = to_kcompat(kmodel, tmp_path, group)
    kc_out = kc.layer_outputs(data)
    result = {}
    for (rid, *_), k in zip(rows, k_out):
        layer = kmodel.get_layer(rid)
        result[rid] = dict(keras=keras.ops.convert_to_numpy(k), kcompat=kc_out[rid], keras_shape=tuple(layer.output.shape),
                           keras_params=layer.count_params(), info=kc.info[rid], layer=kc.layers[rid])
    return result


@pytest.fixture(scope="module")
def built(keras, tmp_path_factory):
    cache = {}

    def get(group):
        if group not in cache:
            cache[group] = _build_group(keras, GROUPS[group], tmp_path_factory.mktemp(group), group)
        return cache[group]
    return get


@pytest.mark.parametrize("group,rid", ROWS)
def test_values_match_keras(built, group, rid):
    r = built(group)[rid]
    got, want = r["kcompat"], r["keras"]
    assert got.dtype == np.float32
    assert got.shape == want.shape
    np.testing.assert_allclose(got, want, atol=ATOL, rtol=RTOL)


@pytest.mark.parametrize("group,rid", ROWS)
def test_shape_and_params_match_keras(built, group, rid):
    r = built(group)[rid]
    info = r["info"]
    assert info.output_shape == r["keras_shape"]
    assert info.params == r["keras_params"]
    text = r["layer"].explain(info.input_shape, info.output_shape)
    assert f"{info.params} params" in text


def test_explain_conv2d_wording(keras, tmp_path):
    m = keras.Sequential([keras.Input((28, 28, 1)), keras.layers.Conv2D(32, 3, name="c")])
    kc = to_kcompat(m, tmp_path)
    info = kc.info["c"]
    assert kc.layers["c"].explain(info.input_shape, info.output_shape) == \
        "kernel 3x3x1x32 + bias 32 = 320 params; (28, 28) -> (26, 26) with valid padding, stride 1"


def test_mnist_cnn_end_to_end(keras, tmp_path):
    L = keras.layers
    m = keras.Sequential([
        keras.Input((28, 28, 1)),
        L.Conv2D(32, 3, activation="relu"), L.MaxPooling2D(),
        L.Conv2D(64, 3, activation="relu"), L.MaxPooling2D(),
        L.Flatten(), L.Dense(10, activation="softmax"),
    ])
    rng = np.random.default_rng(3)
    for layer in m.layers:
        layer.set_weights([rng.normal(0, 0.2, w.shape).astype(np.float32) for w in layer.get_weights()])
    x = np.random.default_rng(4).random((16, 28, 28, 1), dtype=np.float32)
    want = m(x, training=False).numpy()
    kc = to_kcompat(m, tmp_path)
    got = kc.predict(x)[0]
    assert got.dtype == np.float32
    np.testing.assert_allclose(got, want, atol=ATOL, rtol=RTOL)
    assert kc.total_params == m.count_params() == 34826
    assert [kc.info[layer.name].output_shape for layer in m.layers] == [tuple(layer.output.shape) for layer in m.layers]


def _naive_conv(x, kernel, strides, dilation, pads, groups):
    """Textbook grouped cross-correlation on an explicitly padded input: one output channel at a time."""
    from kcompat.layers.conv_geometry import pad_spatial, windows
    r = kernel.ndim - 2
    *k, cg, f = kernel.shape
    win = windows(pad_spatial(x, pads), k, strides, dilation)  # (N, *out, C, *k)
    fg = f // groups
    cols = [np.einsum(f"...c{'ijk'[:r]},{'ijk'[:r]}c->...", win[(Ellipsis, slice((j // fg) * cg, (j // fg + 1) * cg)) + (slice(None),) * r],
                      kernel[..., j].astype(np.float64)) for j in range(f)]
    return np.stack(cols, axis=-1)


@pytest.mark.parametrize("x_shape,k_shape,strides,dilation,pads,groups", [
    ((5, 9, 9, 4), (3, 3, 4, 6), (2, 1), (1, 1), [(1, 1), (0, 1)], 1),  # im2col, partial taps
    ((3, 8, 7, 4), (3, 2, 4, 5), (1, 2), (2, 1), [(2, 3), (1, 0)], 1),  # dilation, pads wider than a tap
    ((3, 8, 9, 4), (3, 3, 4, 5), (1, 2), (1, 2), [(1, 1), (2, 2)], 1),  # dilated last axis: tap by tap
    ((2, 11, 3), (7, 3, 4), (2,), (1,), [(3, 3)], 1),  # 1D: one strided row of taps per output
    ((2, 4, 5, 6, 3), (2, 3, 2, 3, 4), (1, 2, 1), (2, 1, 1), [(1, 0), (1, 1), (0, 1)], 1),  # 3D, rows of taps
    ((4, 6, 6, 3), (1, 1, 3, 5), (2, 2), (1, 1), [(0, 0), (0, 0)], 1),  # 1x1 strided: matmul on a view
    ((4, 10, 11, 3), (3, 3, 1, 3), (2, 2), (2, 1), [(2, 2), (1, 1)], 3),  # depthwise, stride 2 + dilation
    ((2, 9, 8, 2), (3, 3, 1, 6), (1, 1), (1, 1), [(1, 1), (1, 1)], 2),  # depthwise, multiplier 3
    ((3, 12, 3), (5, 1, 3), (3,), (1,), [(4, 0)], 3),  # 1D depthwise, causal-style pad
    ((2, 5, 6, 7, 2), (2, 3, 2, 1, 2), (1, 2, 1), (1, 1, 2), [(0, 1), (1, 1), (1, 1)], 2),  # 3D depthwise
    ((2, 5, 7, 2), (3, 3, 1, 4), (1, 2), (1, 1), [(1, 1), (1, 1)], 2),  # depthwise, multiplier 2, stride on W only
    ((2, 7, 6, 3), (3, 2, 1, 3), (2, 1), (1, 2), [(4, 3), (2, 2)], 3),  # depthwise: bands of padding rows only
    ((2, 6, 1, 3), (3, 3, 1, 3), (1, 2), (1, 1), [(1, 1), (2, 2)], 3),  # strided depthwise: a width tap on padding only
    ((1, 3, 4, 2), (3, 3, 1, 2), (1, 1), (3, 3), [(3, 3), (3, 3)], 2),  # depthwise, taps wider than the input
    ((2, 9, 4), (3, 1, 4), (2,), (2,), [(2, 2)], 4),  # 1D depthwise, stride and dilation
    ((5, 9, 9, 4), (3, 3, 2, 6), (2, 1), (1, 1), [(1, 1), (1, 1)], 2),  # grouped
    ((3, 9, 8, 32), (3, 3, 32, 32), (1, 1), (1, 1), [(1, 1), (1, 1)], 1),  # Winograd: odd rows, whole images per block
    ((2, 6, 7, 33), (3, 3, 33, 40), (1, 1), (1, 1), [(0, 0), (0, 0)], 1),  # Winograd, 'valid', odd columns
    ((2, 5, 6, 32), (3, 3, 32, 32), (1, 1), (1, 1), [(0, 3), (2, 0)], 1),  # Winograd, uneven pads wider than a tap
])
def test_blocked_kernels_match_textbook_conv(monkeypatch, x_shape, k_shape, strides, dilation, pads, groups):
    """im2col in batch slices, Winograd and depthwise in bands of rows, 1x1 in row blocks: the textbook result."""
    from kcompat import threads
    from kcompat.layers import conv_kernels, tap_kernels, winograd
    x, k = rand(x_shape, seed=1), rand(k_shape, seed=2)
    want = _naive_conv(x, k, strides, dilation, pads, groups)
    whole = conv_kernels.convolve(x, k, strides, dilation, pads, groups)
    assert whole.dtype == np.float32 and whole.shape == want.shape
    np.testing.assert_allclose(whole, want, rtol=1e-5, atol=1e-5)
    monkeypatch.setattr(conv_kernels, "IM2COL_BYTES", 1)  # one image per tap-by-tap im2col slice
    monkeypatch.setattr(conv_kernels, "COLS_BYTES", 1)  # one output row per row-wise im2col block
    monkeypatch.setattr(conv_kernels, "BLOCK_ITEMS", 1)  # one row per matmul
    monkeypatch.setattr(tap_kernels, "BLOCK_ITEMS", 1)  # one row per 3-D depthwise block
    monkeypatch.setattr(tap_kernels, "BAND_ITEMS", 1)  # one output row per 1-D / 2-D depthwise band
    monkeypatch.setattr(winograd, "TILES", 1)  # one row of 2x2 tiles per Winograd block
    monkeypatch.setattr(threads, "THREADS", 1)
    blocked = conv_kernels.convolve(x, k, strides, dilation, pads, groups)
    np.testing.assert_allclose(blocked, whole, rtol=1e-6, atol=1e-6)
    monkeypatch.setattr(threads, "THREADS", 3)  # blocks on three threads: the same numbers, bit for bit
    np.testing.assert_array_equal(conv_kernels.convolve(x, k, strides, dilation, pads, groups), blocked)


@pytest.mark.parametrize("x_shape,k_shape,strides", [
    ((3, 7, 9, 5), (1, 1, 5, 24), (1, 1)),  # expanding 1x1: the bias as a ones column in the matmul
    ((3, 8, 9, 5), (1, 1, 5, 12), (2, 2)),  # strided expanding 1x1 (the view copied into the block)
    ((3, 30, 31, 8), (1, 1, 8, 3), (1, 1)),  # narrow 1x1: bias over rows of 2048+, then the remainder rows
    ((2, 9, 8, 6), (3, 3, 6, 5), (1, 1)),  # im2col with a bias epilogue
    ((2, 10, 12, 4), (3, 3, 1, 4), (1, 1)),  # depthwise bands with a bias epilogue
])
def test_bias_epilogue_paths_match_textbook(monkeypatch, x_shape, k_shape, strides):
    """Every way a kernel adds the bias (in the matmul, over long rows, per block) gives the textbook
    conv + bias + relu6, whole and in one-row blocks on three threads."""
    from kcompat import threads
    from kcompat.layers import conv_kernels
    from kcompat.layers.activations import IN_PLACE, BiasActivation
    x, k, bias = rand(x_shape, seed=3), rand(k_shape, seed=4), rand(k_shape[-1:], seed=5)
    pads = [(0, 0), (0, 0)] if k_shape[0] == 1 else [(1, 1), (1, 1)]
    groups = x_shape[-1] if k_shape[2] == 1 and x_shape[-1] > 1 else 1
    want = np.clip(_naive_conv(x, k, strides, (1, 1), pads, groups) + bias, 0, 6)
    folded = []
    real = conv_kernels._pointwise_with_bias
    monkeypatch.setattr(conv_kernels, "_pointwise_with_bias", lambda *a: folded.append(1) or real(*a))
    got = conv_kernels.convolve(x, k, strides, (1, 1), pads, groups, BiasActivation(bias, IN_PLACE["relu6"]))
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)
    assert bool(folded) == (k_shape[:2] == (1, 1) and k_shape[2] < k_shape[3])  # only expanding 1x1 folds the bias
    monkeypatch.setattr(conv_kernels, "BLOCK_ITEMS", 1)  # one row per matmul
    monkeypatch.setattr(threads, "THREADS", 3)
    blocked = conv_kernels.convolve(x, k, strides, (1, 1), pads, groups, BiasActivation(bias, IN_PLACE["relu6"]))
    np.testing.assert_allclose(blocked, want, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("shape,f", [((5, 7, 3), 3), ((700, 3), 3), ((9, 2048), 2048), ((4, 683, 24), 24)])
def test_bias_over_long_rows_is_the_plain_add(shape, f):
    """BiasActivation adds the bias over rows of R*F (the bias tiled R times): bit for bit numpy's
    broadcast add, with remainder rows, and on a non-contiguous block (the plain add)."""
    from kcompat.layers.activations import BiasActivation
    y, bias = rand(shape, seed=6), rand((f,), seed=7)
    want = y + bias
    got = y.copy()
    BiasActivation(bias, None)(got)
    np.testing.assert_array_equal(got, want)
    wide = rand((*shape[:-1], 2 * f), seed=8)
    view = wide[..., :f]  # every row cut: not contiguous
    want = view + bias
    BiasActivation(bias, None)(view)
    np.testing.assert_array_equal(view, want)


def test_kernel_threads_survive_fork(monkeypatch):
    """A process forked after the kernels' thread pool started gets its own pool (not a dead parent's)."""
    import os
    import time
    from kcompat import threads
    from kcompat.layers import tap_kernels
    monkeypatch.setattr(threads, "THREADS", 2)
    x, k = rand((4, 9, 9, 3), seed=1), rand((3, 3, 3), seed=2)
    for _ in range(3):
        threads.in_parallel(lambda part: None, [1, 2, 3])  # the parent's pool exists now...
    want = tap_kernels.depthwise(x, k, (1, 1), (1, 1), [(1, 1), (1, 1)])
    time.sleep(0.2)  # ...and its threads are idle: a child reusing it would wait for them forever
    pid = os.fork()
    if pid == 0:  # child: must finish, and agree
        ok = np.array_equal(tap_kernels.depthwise(x, k, (1, 1), (1, 1), [(1, 1), (1, 1)]), want)
        threads.in_parallel(lambda part: None, [1, 2, 3])
        os._exit(0 if ok else 1)
    deadline = time.monotonic() + 30
    while (done := os.waitpid(pid, os.WNOHANG))[0] == 0 and time.monotonic() < deadline:
        time.sleep(0.05)
    if done[0] == 0:
        os.kill(pid, 9)
        os.waitpid(pid, 0)
    assert done[0] == pid and os.waitstatus_to_exitcode(done[1]) == 0


@pytest.mark.parametrize("mode", ["max", "average"])
@pytest.mark.parametrize("x_shape,size,strides,pads", [
    ((3, 9, 8, 4), (3, 3), (2, 2), [(1, 1), (0, 1)]),
    ((2, 7, 5), (4,), (1,), [(1, 2)]),
    ((2, 5, 4, 6, 3), (2, 3, 2), (2, 1, 2), [(0, 1), (1, 1), (0, 0)]),
])
def test_blocked_pooling_matches_textbook(monkeypatch, mode, x_shape, size, strides, pads):
    """Pooling tap by tap in blocks == max / mean over explicit windows with padding left out (TF's rule)."""
    from kcompat.layers import conv_geometry, tap_kernels
    x = rand(x_shape, seed=3)
    r = len(size)
    axes = tuple(range(-r, 0))
    win = lambda a: conv_geometry.windows(conv_geometry.pad_spatial(a, pads, np.nan), size, strides, (1,) * r)  # noqa: E731
    want = np.nanmax(win(x), axis=axes) if mode == "max" else np.nanmean(win(x), axis=axes)
    got = tap_kernels.pool(x, size, strides, pads, mode)
    assert got.dtype == np.float32
    np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-6)
    monkeypatch.setattr(tap_kernels, "BLOCK_ITEMS", 1)  # one row per block
    np.testing.assert_allclose(tap_kernels.pool(x, size, strides, pads, mode), got, rtol=1e-6, atol=1e-6)


# ----------------------------------------------------------------- bad configs
def _layer(class_name, **config):
    from kcompat.layers import make_layer
    return make_layer(class_name, config, "bad")


@pytest.mark.parametrize("class_name,config,error,words", [
    ("Conv2D", dict(filters=4, kernel_size=3, padding="causal"), "UnsupportedError", "padding"),
    ("Conv2D", dict(filters=4, kernel_size=(3, 0)), "ConfigError", "kernel_size"),
    ("Conv2D", dict(filters=3, kernel_size=3, groups=2), "ConfigError", "groups"),
    ("Conv1D", dict(filters=0, kernel_size=3), "ConfigError", "filters"),
    ("Conv2DTranspose", dict(filters=2, kernel_size=3, strides=2, output_padding=2), "ConfigError", "output_padding"),
    ("MaxPooling2D", dict(pool_size=2, data_format="NHWC"), "UnsupportedError", "data_format"),
])
def test_bad_config_refused_by_name(class_name, config, error, words):
    import kcompat
    with pytest.raises(getattr(kcompat, error), match=words):
        _layer(class_name, **config)


def test_too_small_input_is_a_shape_error():
    import kcompat
    layer = _layer("Conv2D", filters=2, kernel_size=5)
    with pytest.raises(kcompat.ShapeError, match="zero or negative"):
        layer.output_shape((None, 3, 3, 1))
    with pytest.raises(kcompat.ShapeError, match="rank 4"):
        _layer("MaxPooling2D").output_shape((None, 8, 1))
