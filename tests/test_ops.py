"""Conformance of Keras 3 op nodes (``x * 2``, ``keras.ops.mean(x, axis=1)``, ``x[:, 1:3]``...) against
real Keras: values, exact output shapes (None batch kept), dtypes of integer / boolean results.

Rows of a group are branches of one functional Keras model, saved as .keras, loaded by kcompat and
run once on both sides (see test_layers_misc.run_group). Tolerance 1e-5 as there.
"""
from __future__ import annotations

import numpy as np
import pytest

from conftest import rand, to_kcompat
from test_layers_misc import BATCH, row, table_tests


def pos(seed, *shape):
    """Positive data for sqrt / log / fractional powers."""
    return np.abs(rand(shape, seed=seed)) + np.float32(0.1)


A, B = (4, 3), (3, 5)

ARITHMETIC = [
    row("mul_const", lambda k, x: x * 2, A),
    row("const_minus_x", lambda k, x: 2 - x, A),
    row("add_tensors_broadcast", lambda k, x, y: x + y, A, (1, 3)),
    row("constant_tensor_and_array_args", lambda k, x: x / k.ops.sqrt(8.0) + np.array([1.0, 2.0, 3.0], np.float32)
        - k.ops.ones((3,)), A),
    row("add_float_const", lambda k, x: x + 0.5, A),
    row("true_divide", lambda k, x, y: x / y, A, A, data=lambda s: [rand((BATCH, *A), s), pos(s, BATCH, *A)]),
    row("divide_const", lambda k, x: k.ops.divide(x, 4.0), A),
    row("floor_divide", lambda k, x: k.ops.floor_divide(x, 0.5), A),
    row("mod", lambda k, x: x % 0.7, A),
    row("power_int", lambda k, x: x ** 3, A),
    row("power_tensor", lambda k, x, y: k.ops.power(x, y), A, A,
        data=lambda s: [pos(s, BATCH, *A), rand((BATCH, *A), s)]),
    row("negative", lambda k, x: -x, A),
    row("absolute", lambda k, x: k.ops.abs(x), A),
    row("square", lambda k, x: k.ops.square(x), A),
    row("sqrt", lambda k, x: k.ops.sqrt(x), A, data=lambda s: [pos(s, BATCH, *A)]),
    row("exp", lambda k, x: k.ops.exp(x), A),
    row("log", lambda k, x: k.ops.log(x), A, data=lambda s: [pos(s, BATCH, *A)]),
    row("log1p_expm1", lambda k, x: k.ops.expm1(k.ops.log1p(k.ops.abs(x))), A),
    row("maximum_const", lambda k, x: k.ops.maximum(x, 0.5), A),
    row("minimum_tensors", lambda k, x, y: k.ops.minimum(x, y), A, A),
    row("matmul_3d", lambda k, x, y: x @ y, A, B),
    row("matmul_2d_by_3d", lambda k, x, y: k.ops.matmul(x, y), (3,), (3, 2)),
    row("reciprocal_sign_floor", lambda k, x: k.ops.reciprocal(x) + k.ops.sign(x) + k.ops.floor(x), A),
    row("clip_round", lambda k, x: k.ops.round(k.ops.clip(x * 3, -2.0, 2.0)), A),
    row("sin_cos", lambda k, x: k.ops.sin(x) * k.ops.cos(x), A),
]

ACTIVATION_OPS = [
    row("tanh", lambda k, x: k.ops.tanh(x), A),
    row("sigmoid", lambda k, x: k.ops.sigmoid(x), A),
    row("relu", lambda k, x: k.ops.relu(x), A),
    row("relu6", lambda k, x: k.ops.relu6(x * 4), A),
    row("silu", lambda k, x: k.ops.silu(x), A),
    row("gelu_approximate", lambda k, x: k.ops.gelu(x), A),
    row("gelu_exact", lambda k, x: k.ops.gelu(x, approximate=False), A),
    row("softplus", lambda k, x: k.ops.softplus(x), A),
    row("leaky_relu", lambda k, x: k.ops.leaky_relu(x, negative_slope=0.1), A),
    row("elu_alpha", lambda k, x: k.ops.elu(x, alpha=0.5), A),
    row("hard_sigmoid", lambda k, x: k.ops.hard_sigmoid(x * 3), A),
    row("softmax_axis1", lambda k, x: k.ops.softmax(x, axis=1), A),
    row("log_softmax", lambda k, x: k.ops.log_softmax(x), A),
    row("erf", lambda k, x: k.ops.erf(x), A),
    row("rsqrt", lambda k, x: k.ops.rsqrt(x), A, data=lambda s: [pos(s, BATCH, *A)]),
]

SHAPE_OPS = [
    row("reshape_minus1", lambda k, x: k.ops.reshape(x, (-1, 12)), A),
    row("reshape_3d", lambda k, x: k.ops.reshape(x, (-1, 2, 6)), A),
    row("transpose_axes", lambda k, x: k.ops.transpose(x, (0, 2, 1)), A),
    row("transpose_all_moves_batch_last", lambda k, x: k.ops.transpose(x), A),
    row("expand_dims_1", lambda k, x: k.ops.expand_dims(x, 1), A),
    row("expand_dims_last", lambda k, x: k.ops.expand_dims(x, -1), A),
    row("squeeze_axis", lambda k, x: k.ops.squeeze(x, axis=1), (1, 4)),
    row("squeeze_all", lambda k, x: k.ops.squeeze(x), (1, 4, 1)),
    row("concatenate_last", lambda k, x, y: k.ops.concatenate([x, y], axis=-1), A, (4, 2)),
    row("concatenate_axis1", lambda k, x, y: k.ops.concatenate([x, y], axis=1), A, (2, 3)),
    row("stack_axis1", lambda k, x, y: k.ops.stack([x, y], axis=1), A, A),
    row("tile_per_axis", lambda k, x: k.ops.tile(x, (1, 2, 3)), A),
    row("tile_short_repeats_count_from_the_last_axis", lambda k, x: k.ops.tile(x, 2), A),
    row("getitem_slice", lambda k, x: x[:, 1:3], A),
    row("getitem_ellipsis_int", lambda k, x: x[..., 0], A),
    row("getitem_newaxis_int", lambda k, x: x[:, None, 1], A),
    row("getitem_negative", lambda k, x: x[:, -1], A),
    row("getitem_step", lambda k, x: x[:, ::2, 1:], A),
]

REDUCTIONS = [
    row("mean_axis1", lambda k, x: k.ops.mean(x, axis=1), A),
    row("sum_axes_keepdims", lambda k, x: k.ops.sum(x, axis=[1, 2], keepdims=True), A),
    row("max_all_to_scalar", lambda k, x: k.ops.max(x), A),
    row("min_last", lambda k, x: k.ops.min(x, axis=-1), A),
    row("prod", lambda k, x: k.ops.prod(x, axis=1), A),
    row("var_std", lambda k, x: k.ops.var(x, axis=-1) + k.ops.std(x, axis=-1), A),
    row("logsumexp", lambda k, x: k.ops.logsumexp(x, axis=-1), A),
    row("argmax_int32", lambda k, x: k.ops.argmax(x, axis=-1), A),
    row("any_bool", lambda k, x: k.ops.any(x > 0.5, axis=1), A),
    row("where_greater", lambda k, x: k.ops.where(x > 0, x, 0.0), A),
    row("compare_cast", lambda k, x, y: k.ops.cast(k.ops.less_equal(x, y), "float32"), A, A),
    row("int_plus_int", lambda k, x: x + 1, (5,), dtype="int32",
        data=lambda s: [np.arange(BATCH * 5, dtype=np.int32).reshape(BATCH, 5)]),
    row("int_true_divide_is_float32", lambda k, x: x / 2, (5,), dtype="int32",
        data=lambda s: [np.arange(BATCH * 5, dtype=np.int32).reshape(BATCH, 5)]),
]

def ints(*shape, low=-6, high=7, dtype=np.int32):
    """Seeded integer data (BATCH, *shape)."""
    return lambda s: [np.random.default_rng(s).integers(low, high, size=(BATCH, *shape)).astype(dtype)]


def ties(s):
    """(BATCH, 4, 3) with repeated values, so order among equal values shows."""
    return [np.resize(np.asarray([1.0, 3.0, 1.0, 0.5, 3.0, -2.0, 0.5, 0.5, 0.5, -1.0, 2.0, 2.0], np.float32),
                      (BATCH, *A))]


INDEX_OPS = [  # kcompat/layers/ops_index.py
    row("cumsum_axis1", lambda k, x: k.ops.cumsum(x, axis=1), A),
    row("cumsum_flat_int8_keeps_int8", lambda k, x: k.ops.cumsum(x), (5,), dtype="int8", data=ints(5, dtype=np.int8)),
    row("cumprod_last", lambda k, x: k.ops.cumprod(x, axis=-1), A),
    row("triu_k1", lambda k, x: k.ops.triu(x, k=1), A),
    row("tril_negative_k", lambda k, x: k.ops.tril(x, k=-1), A),
    row("top_k_values", lambda k, x: k.ops.top_k(x, 2)[0], A),
    row("top_k_indices_ties_lower_first", lambda k, x: k.ops.top_k(x, 3)[1], A, data=ties),
    row("take_along_axis_broadcast", lambda k, x: k.ops.take_along_axis(
        x, np.array([[[2, 0, 1], [3, -1, 0]]], np.int32), axis=1), A),
    row("take_negative_index", lambda k, x: k.ops.take(x, np.array([0, -1, 2, 2]), axis=1), A),
    row("take_2d_indices_last_axis", lambda k, x: k.ops.take(x, np.array([[0, 2], [1, 1]]), axis=-1), A),
    row("scatter_update_rows", lambda k, x: k.ops.scatter_update(
        x, np.array([[0, 1], [2, 3]]), np.array([[5.0, 6.0, 7.0], [-1.0, -2.0, -3.0]], np.float32)), A),
    row("one_hot_axis1_negative_is_zeros", lambda k, x: k.ops.one_hot(x, 4, axis=1), (5,), dtype="int32",
        data=ints(5, low=-2, high=4)),
    row("one_hot_int64", lambda k, x: k.ops.one_hot(x, 3, dtype="int64"), (2,), dtype="int32",
        data=ints(2, low=0, high=3)),
    row("broadcast_to_static_batch", lambda k, x: k.ops.broadcast_to(x[:, :1], (BATCH, 4, 3)), A),
    row("flip_axis1", lambda k, x: k.ops.flip(x, axis=1), A),
    row("size_int32", lambda k, x: k.ops.size(x), A),
    row("einsum_batched_matmul", lambda k, x, y: k.ops.einsum("bij,bjk->bik", x, y), A, (3, 2)),
    row("einsum_constant_vector", lambda k, x: k.ops.einsum("bij,j->bi", x, np.array([1.0, -2.0, 0.5], np.float32)),
        A),
    row("max_initial", lambda k, x: k.ops.max(x, axis=1, initial=0.5), A),
    row("min_initial_int", lambda k, x: k.ops.min(x, axis=-1, initial=-2), (5,), dtype="int32", data=ints(5)),
    row("sum_int8_in_int32", lambda k, x: k.ops.sum(x, axis=-1), (5,), dtype="int8",
        data=ints(5, low=-120, high=120, dtype=np.int8)),
    row("fmod_signs", lambda k, x: k.ops.fmod(x * 3, np.float32(0.7)), A),
    row("threshold", lambda k, x: k.ops.threshold(x, 0.3, -1.0), A),
    row("det", lambda k, x: k.ops.linalg.det(x), (3, 3)),
    row("arccosh", lambda k, x: k.ops.arccosh(k.ops.abs(x) + 1.0), A),
    row("cast_bfloat16_round_trip", lambda k, x: k.ops.cast(k.ops.cast(x * 100, "bfloat16"), "float32"), A),
]

FLOAT8 = [  # ONNX has float8 types from opset 19 (test_onnx_export_ops.MIN_OPSET)
    row("cast_float8_e4m3fn_round_trip", lambda k, x: k.ops.cast(k.ops.cast(x * 10, "float8_e4m3fn"), "float32"), A),
    row("cast_float8_e5m2_round_trip", lambda k, x: k.ops.cast(k.ops.cast(x, "float8_e5m2"), "float32"), A),
]

BITWISE = [  # integers only; ONNX has Bitwise* from opset 18 (test_onnx_export_ops.MIN_OPSET)
    row("bitwise_and_or_xor", lambda k, x, y: k.ops.bitwise_xor(k.ops.bitwise_and(x, y),
                                                                k.ops.bitwise_or(x, np.full((5,), 5, np.int32))),
        (5,), (5,), dtype="int32", data=lambda s: ints(5)(s) + ints(5)(s + 1)),
    row("bitwise_not_invert", lambda k, x: k.ops.bitwise_not(x) + k.ops.bitwise_invert(x), (5,), dtype="int32",
        data=ints(5)),
    row("bitwise_uint8", lambda k, x: k.ops.bitwise_and(k.ops.bitwise_invert(x), np.full((5,), 0x5A, np.uint8)), (5,),
        dtype="uint8", data=ints(5, low=0, high=256, dtype=np.uint8)),
    row("shifts_signed", lambda k, x: k.ops.left_shift(x, 2) + k.ops.right_shift(x, 1), (5,), dtype="int32",
        data=ints(5, low=-40, high=40)),
    row("shifts_unsigned_tensor_amounts", lambda k, x, y: k.ops.bitwise_left_shift(x, y)
        + k.ops.bitwise_right_shift(x, y), (5,), (5,), dtype="uint8",
        data=lambda s: ints(5, low=0, high=256, dtype=np.uint8)(s) + ints(5, low=0, high=8, dtype=np.uint8)(s)),
]

GROUPS = {"arithmetic": ARITHMETIC, "activation_ops": ACTIVATION_OPS, "shape_ops": SHAPE_OPS,
          "reductions": REDUCTIONS, "index_ops": INDEX_OPS, "bitwise": BITWISE, "float8": FLOAT8}


# built(group): the group's results, cached; the two tests over every row
built, test_op_values_and_shape_match_keras, test_every_op_shape_matches_keras = table_tests(GROUPS)


def test_integer_results_keep_keras_dtypes(built):
    res = built("reductions")
    assert res["argmax_int32"]["kcompat"].dtype == np.int32
    assert res["any_bool"]["kcompat"].dtype == bool
    assert res["int_true_divide_is_float32"]["kcompat"].dtype == np.float32
    assert res["int_plus_int"]["kcompat"].dtype.kind == "i"


def test_op_nodes_serialize_as_expected(keras, tmp_path):
    """The serialized form kcompat relies on: module keras.src.ops.*, params in config, args in the node."""
    x = keras.Input((4, 3), name="x")
    m = keras.Model(x, [keras.ops.mean(x, axis=1), 2 - x, keras.ops.sigmoid(x)])
    kc = to_kcompat(m, tmp_path)
    by_class = {ls.class_name: ls for ls in kc.spec.layers}
    mean, sub, sig = by_class["Mean"], by_class["Subtract"], by_class["Sigmoid"]
    assert mean.is_op and mean.module == "keras.src.ops.numpy"
    assert mean.config["axis"] == 1 and mean.config["keepdims"] is False
    assert sub.nodes[0].args[0] == 2  # the constant comes first, the tensor second
    assert sig.module == "keras.src.ops.nn"
    assert kc.info[mean.name].output_shape == (None, 3)


def test_attention_block_with_ops_end_to_end(keras, tmp_path):
    """Scaled dot-product self-attention written with keras.ops, plus a residual and LayerNormalization."""
    L, ops = keras.layers, keras.ops
    x_in = keras.Input((6, 8))
    q, k, v = L.Dense(8, name="q")(x_in), L.Dense(8, name="k")(x_in), L.Dense(8, name="v")(x_in)
    scores = ops.matmul(q, ops.transpose(k, (0, 2, 1))) / ops.sqrt(8.0)
    attn = ops.softmax(scores, axis=-1)
    h = ops.matmul(attn, v)
    x = L.LayerNormalization()(x_in + h)
    pooled = ops.mean(x, axis=1)
    out = L.Dense(3)(ops.concatenate([pooled, ops.max(x, axis=1)], axis=-1))
    kmodel = keras.Model(x_in, out)
    data = rand((4, 6, 8), seed=9)
    want = kmodel(data, training=False).numpy()
    kc = to_kcompat(kmodel, tmp_path)
    np.testing.assert_allclose(kc.predict(data)[0], want, atol=1e-5, rtol=1e-5)
    assert kc.total_params == kmodel.count_params()


def test_unsupported_op_refused_by_name(keras, tmp_path):
    import kcompat
    x = keras.Input((4,))
    m = keras.Model(x, keras.ops.sort(x) + keras.ops.cbrt(x))
    with pytest.raises(kcompat.UnsupportedError) as e:
        to_kcompat(m, tmp_path)
    assert "'Sort'" in str(e.value) and "'Cbrt'" in str(e.value)


def test_tensor_index_refused():
    import kcompat
    from kcompat.layers import make_layer
    op = make_layer("GetItem", {"name": "g"}, "g", is_op=True)
    with pytest.raises(kcompat.UnsupportedError, match="indices"):
        op.node_output_shape([(None, 4), [{"class_name": "__keras_tensor__"}]], {})
