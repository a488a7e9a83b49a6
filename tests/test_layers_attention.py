"""Conformance of MultiHeadAttention, GroupQueryAttention, Attention, AdditiveAttention and EinsumDense
against real Keras 3: values (1e-5), output shapes, parameter counts; the returned attention scores
(and Keras's wrong declared shape for them); masks as Keras passes them (given, or propagated from an
Embedding(mask_zero=True), which Keras 3 does not write into the graph); a Transformer encoder block
end to end through the CLI (summary, run, verify, convert to .keras / .h5 / .json read back by Keras);
a Keras 2 (tf_keras) .h5 with MultiHeadAttention.

Rows follow tests/test_layers_misc.py: each row is a branch of one Keras model per group.
"""
from __future__ import annotations

import json

import numpy as np
import pytest

from conftest import rand, to_kcompat
from test_cli import cli
from test_layers_misc import BATCH, row, table_tests

Q, KV, IMG = (5, 8), (7, 8), (3, 4, 6)


def mask_data(*shapes, full_row=True):
    """Row data: random normal inputs, then a 0/1 mask of the last shape (one fully masked query row)."""
    def data(seed):
        rng = np.random.default_rng(seed)
        arrays = [rand((BATCH, *s), seed=seed + i) for i, s in enumerate(shapes[:-1])]
        m = (rng.random((BATCH, *shapes[-1])) > 0.4).astype(np.float32)
        if full_row:
            m[0, 1] = 0.0
        return arrays + [m]
    return data


def mha(**kw):
    return lambda k, *xs, **call: k.layers.MultiHeadAttention(**kw)(*xs, **call)


def gqa(**kw):
    return lambda k, *xs, **c: k.layers.GroupQueryAttention(**kw)(*xs, **c)


MULTI_HEAD = [
    row("mha_self", lambda k, x: mha(num_heads=2, key_dim=4)(k, x, x), Q),
    row("mha_self_causal", lambda k, x: mha(num_heads=2, key_dim=4)(k, x, x, use_causal_mask=True), Q),
    row("mha_cross_key_value_dim_output_shape",
        lambda k, x, c, kk: mha(num_heads=2, key_dim=3, value_dim=5, output_shape=(6,))(k, x, c, key=kk), Q, KV, (7, 4)),
    row("mha_attention_mask_fully_masked_row", lambda k, x, c, m: mha(num_heads=2, key_dim=3)(k, x, c, attention_mask=m),
        Q, KV, (5, 7), data=mask_data(Q, KV, (5, 7))),
    row("mha_attention_mask_and_causal",
        lambda k, x, m: mha(num_heads=3, key_dim=2)(k, x, x, attention_mask=m, use_causal_mask=True),
        Q, (5, 5), data=mask_data(Q, (5, 5), full_row=False)),
    row("mha_no_bias", lambda k, x, c: mha(num_heads=2, key_dim=4, use_bias=False)(k, x, c), Q, KV),
    row("mha_gate", lambda k, x: mha(num_heads=3, key_dim=2, use_gate=True)(k, x, x), Q),
    row("mha_sliding_window_causal", lambda k, x: mha(num_heads=2, key_dim=2, sliding_window=2)(k, x, x,
                                                                                              use_causal_mask=True), Q),
    row("mha_dropout_explicit_softmax_path", lambda k, x, c, m: mha(num_heads=2, key_dim=2, dropout=0.3)(
        k, x, c, attention_mask=m), Q, KV, (5, 7), data=mask_data(Q, KV, (5, 7))),
    row("mha_attention_axes_1_2", lambda k, x: mha(num_heads=2, key_dim=2, attention_axes=(1, 2))(k, x, x), IMG),
    row("mha_attention_axis_2_output_shape_2d",
        lambda k, x: mha(num_heads=2, key_dim=2, attention_axes=2, output_shape=(2, 3))(k, x, x), IMG),
    row("mha_one_head_key_dim_1", lambda k, x: mha(num_heads=1, key_dim=1)(k, x, x), Q),
]

GROUPED = [
    row("gqa_causal", lambda k, x: gqa(head_dim=3, num_query_heads=4, num_key_value_heads=2)(k, x, x,
                                                                                           use_causal_mask=True), Q),
    row("gqa_one_kv_head_gate_mask", lambda k, x, c, m: gqa(head_dim=2, num_query_heads=4, num_key_value_heads=1,
                                                             use_gate=True)(k, x, c, c, attention_mask=m),
        Q, KV, (5, 7), data=mask_data(Q, KV, (5, 7))),
    row("gqa_no_bias_window", lambda k, x: gqa(head_dim=2, num_query_heads=2, num_key_value_heads=2, use_bias=False,
                                               sliding_window=3)(k, x, x), Q),
    row("gqa_dropout_uncast_float_mask", lambda k, x, c, m: gqa(head_dim=2, num_query_heads=2, num_key_value_heads=1,
                                                                dropout=0.2)(k, x, c, attention_mask=m),
        Q, KV, (5, 7)),  # random normal mask: Keras keeps entries > 0.5 on this path
]


def att(cls, *inputs_idx, **kw):
    def build(k, *xs):
        layer_kw = {a: v for a, v in kw.items() if a not in ("mask", "use_causal_mask")}
        call_kw = {a: v for a, v in kw.items() if a == "use_causal_mask"}
        layer = getattr(k.layers, cls)(**layer_kw)
        if kw.get("mask"):
            return layer(list(xs[:-2]), mask=list(xs[-2:]), **call_kw)
        return layer(list(xs), **call_kw)
    return build


QM, VM = (5,), (7,)


def attention_masks(seed):
    rng = np.random.default_rng(seed)
    return [rand((BATCH, *Q), seed), rand((BATCH, *KV), seed + 1), (rng.random((BATCH, 5)) > 0.3).astype(np.float32),
            (rng.random((BATCH, 7)) > 0.3).astype(np.float32)]


DOT_ATTENTION = [
    row("attention_dot", att("Attention"), Q, KV),
    row("attention_dot_scale_key", att("Attention", use_scale=True), Q, (7, 3), KV),
    row("attention_concat", att("Attention", score_mode="concat"), Q, (7, 3), KV),
    row("attention_concat_scale", att("Attention", score_mode="concat", use_scale=True), Q, KV),
    row("attention_query_value_masks", att("Attention", mask=True), Q, KV, QM, VM, data=attention_masks),
    row("attention_causal_value_mask", att("Attention", mask=True, use_causal_mask=True), Q, KV, QM, VM,
        data=attention_masks),
    row("attention_causal", att("Attention", use_causal_mask=True), Q, KV),
    row("additive_attention", att("AdditiveAttention"), Q, KV),
    row("additive_attention_no_scale_masks", att("AdditiveAttention", use_scale=False, mask=True), Q, KV, QM, VM,
        data=attention_masks),
]


def einsum(equation, output_shape, **kw):
    return lambda k, x: k.layers.EinsumDense(equation, output_shape=output_shape, **kw)(x)


EINSUM = [
    row("einsum_dense_like", einsum("ab,bc->ac", 4, bias_axes="c"), (6,)),
    row("einsum_sequence_none_in_output_shape", einsum("abc,cd->abd", (None, 4), bias_axes="d", activation="relu"), Q),
    row("einsum_ellipsis_left", einsum("...b,bc->...c", 3), Q),  # over two axes: see the Keras bug test below
    row("einsum_ellipsis_right", einsum("ab...,bc->ac...", (2,), bias_axes="c"), IMG),
    row("einsum_heads_bias_two_axes", einsum("abc,cde->abde", (5, 2, 3), bias_axes="be"), Q),
    row("einsum_contract_two_axes", einsum("abcd,cde->abe", (3, 4), bias_axes="e", activation="gelu"), IMG),
]

def padded_ids(seed):
    """(BATCH, 6) indices with padding 0: at the end, in the middle, a whole row."""
    ids = np.random.default_rng(seed).integers(1, 12, (BATCH, 6)).astype(np.int32)
    ids[0, 4:] = ids[1, :] = ids[2, 2] = 0
    return [ids]


def after_masking_embedding(attend):
    """Embedding(mask_zero=True) on the indices, then ``attend(keras, e)``: Keras 3 does not write these
    masks into the graph (query_mask / value_mask, mask=[...]) but passes them on load; so must kcompat."""
    return lambda k, ids: attend(k, k.layers.Embedding(12, 4, mask_zero=True)(ids))


MASKED = [
    row("mha_self_masked_by_embedding", after_masking_embedding(lambda k, e: mha(num_heads=2, key_dim=3)(k, e, e)),
        (6,), dtype="int32", data=padded_ids),
    row("gqa_masked_by_embedding", after_masking_embedding(
        lambda k, e: gqa(head_dim=2, num_query_heads=2, num_key_value_heads=1)(k, e, e)), (6,), dtype="int32",
        data=padded_ids),
    row("attention_masked_by_embedding", after_masking_embedding(lambda k, e: k.layers.Attention()([e, e])), (6,),
        dtype="int32", data=padded_ids),
    row("additive_attention_masked_by_embedding", after_masking_embedding(
        lambda k, e: k.layers.AdditiveAttention()([e, e])), (6,), dtype="int32", data=padded_ids),
]

GROUPS = {"multi_head": MULTI_HEAD, "grouped": GROUPED, "dot_attention": DOT_ATTENTION, "einsum": EINSUM,
          "masked": MASKED}


# built(group): the group's results, cached; the two tests over every row
built, test_values_and_shape_match_keras, test_every_layer_shape_and_params_match_keras = table_tests(GROUPS)


# ------------------------------------------------------------------------ attention scores
def test_returned_scores_match_keras_which_declares_a_wrong_shape(keras, tmp_path):
    """return_attention_scores: both outputs match. Keras's MultiHeadAttention declares its scores
    (B, heads, T, T) whatever the value length and attention axes (compute_output_spec uses the query
    length twice): a Keras bug. kcompat declares the shape Keras computes."""
    L = keras.layers
    x, c, x4 = keras.Input(Q, name="x"), keras.Input(KV, name="c"), keras.Input(IMG, name="x4")
    outs = [*L.MultiHeadAttention(2, 3, name="cross")(x, c, return_attention_scores=True),
            *L.MultiHeadAttention(2, 2, attention_axes=(1, 2), name="axes")(x4, x4, return_attention_scores=True),
            *L.GroupQueryAttention(2, 4, 2, name="gqa")(x, c, return_attention_scores=True, use_causal_mask=True),
            *L.Attention(name="att")([x, c], return_attention_scores=True)]
    model = keras.Model([x, c, x4], outs)
    data = [rand((BATCH, *Q), 1), rand((BATCH, *KV), 2), rand((BATCH, *IMG), 3)]
    want = [np.asarray(w) for w in model(data)]
    kc = to_kcompat(model, tmp_path)
    got = kc.predict(data)
    for w, g in zip(want, got):
        np.testing.assert_allclose(g, w, atol=1e-5, rtol=1e-5)
    declared = [tuple(t.shape) for t in model.outputs]
    kc_shapes = [kc.shapes[(r.layer, r.node)][r.index] for r in kc.spec.outputs]
    assert declared[1] == (None, 2, 5, 5) and want[1].shape == (BATCH, 2, 5, 7)  # the Keras bug
    assert declared[3] == (None, 2, 3, 3) and want[3].shape == (BATCH, 2, 3, 4, 3, 4)
    assert [s[1:] for s in kc_shapes] == [w.shape[1:] for w in want]
    assert [s[0] for s in kc_shapes] == [None] * len(want)


# ------------------------------------------------------------------------ masks, as Keras passes them
def test_masks_in_keyword_arguments_match_keras_propagated_masks(keras):
    """Keras fills ``query_mask`` / ``value_mask`` (MultiHeadAttention) and ``mask=[q, v]`` (Attention)
    from its implicit masks; kcompat's layers take them the same way (propagation itself is model.py's)."""
    from kcompat.layers import make_layer
    L = keras.layers
    ids = keras.Input((6,), dtype="int32")
    emb = L.Embedding(9, 4, mask_zero=True)
    e = emb(ids)
    mha_layer = L.MultiHeadAttention(2, 3)
    att_layer = L.Attention(use_scale=True)
    model = keras.Model(ids, [mha_layer(e, e), att_layer([e, e]), e])
    rng = np.random.default_rng(0)
    for w in model.weights:
        w.assign(rng.normal(0, 0.5, w.shape).astype(np.float32))
    tokens = rng.integers(0, 9, (BATCH, 6)).astype(np.int32)
    tokens[:, -2:] = 0
    want_mha, want_att, embedded = (np.asarray(a) for a in model(tokens))
    mask = tokens != 0
    kc_mha = make_layer("MultiHeadAttention", mha_layer.get_config(), "mha")
    got = kc_mha.call_node([embedded, embedded], {"query_mask": mask, "value_mask": mask},
                           [np.asarray(w) for w in mha_layer.weights])
    np.testing.assert_allclose(got, want_mha, atol=1e-5, rtol=1e-5)
    kc_att = make_layer("Attention", att_layer.get_config(), "att")
    got = kc_att.call_node([[embedded, embedded]], {"mask": [mask, mask]}, [np.asarray(w) for w in att_layer.weights])
    np.testing.assert_allclose(got, want_att, atol=1e-5, rtol=1e-5)


# ------------------------------------------------------------------------ end to end
def transformer_block(keras, seq=6, d=8, ff=16):
    L = keras.layers
    x_in = keras.Input((seq, d), name="tokens")
    h = L.MultiHeadAttention(2, d // 2, name="self_attention")(x_in, x_in, use_causal_mask=True)
    x = L.LayerNormalization(name="ln1")(L.Add(name="res1")([x_in, h]))
    f = L.Dense(d, name="ff_out")(L.Dense(ff, activation="gelu", name="ff_in")(x))
    out = L.LayerNormalization(name="ln2")(L.Add(name="res2")([x, f]))
    model = keras.Model(x_in, out, name="encoder_block")
    rng = np.random.default_rng(3)
    for w in model.weights:
        w.assign(rng.normal(0, 0.3, w.shape).astype(np.float32))
    return model


def test_transformer_encoder_block_end_to_end(keras, tmp_path):
    model = transformer_block(keras)
    path = tmp_path / "block.keras"
    model.save(path)
    x = rand((BATCH, 6, 8), seed=5)
    want = np.asarray(model(x))
    np.save(tmp_path / "x.npy", x)

    code, out, err = cli("summary", path, "--json")
    assert code == 0, err
    summary = json.loads(out)
    assert summary["total_params"] == model.count_params()
    params = {layer["name"]: layer["params"] for layer in summary["layers"]}
    assert params["self_attention"] == model.get_layer("self_attention").count_params() == 4 * (8 * 8 + 8)

    code, out, err = cli("run", path, "-i", tmp_path / "x.npy", "-o", tmp_path / "y.npy")
    assert code == 0, err
    np.testing.assert_allclose(np.load(tmp_path / "y.npy"), want, atol=1e-5, rtol=1e-5)

    code, out, err = cli("verify", path, "--input", tmp_path / "x.npy")
    assert code == 0, out + err
    assert "OK:" in out

    for ext in ("keras", "h5", "json"):
        target = tmp_path / f"converted.{ext}"
        code, out, err = cli("convert", path, target)
        assert code == 0, err
        if ext == "json":
            back = keras.models.model_from_json(target.read_text())
            back.load_weights(tmp_path / "converted.weights.h5")
        else:
            back = keras.models.load_model(target)
        np.testing.assert_allclose(np.asarray(back(x)), want, atol=1e-6, rtol=1e-6, err_msg=ext)
        for a, b in zip(back.get_layer("self_attention").weights, model.get_layer("self_attention").weights):
            assert a.path == b.path
            np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


def test_transformer_summary_text_is_keras(keras, tmp_path, monkeypatch):
    from test_summary import keras_summary
    from kcompat.summary import summary_text
    model = transformer_block(keras)
    kc = to_kcompat(model, tmp_path)
    assert summary_text(kc, width=120) == keras_summary(model, monkeypatch, 120)


def test_keras2_multi_head_attention_h5(tmp_path):
    """A tf_keras (Keras 2) model: value and attention_mask are keywords of the call; weights named ':0'."""
    import tf_keras
    import kcompat
    L = tf_keras.layers
    x, m = tf_keras.Input((5, 8), name="x"), tf_keras.Input((5, 5), name="m")
    y = L.MultiHeadAttention(2, 4, name="mha")(x, x, attention_mask=m, use_causal_mask=True)
    a = L.Attention(score_mode="concat", use_scale=True, name="att")([x, y])
    model = tf_keras.Model([x, m], [y, a])
    rng = np.random.default_rng(4)
    model.set_weights([rng.normal(0, 0.5, w.shape).astype(np.float32) for w in model.get_weights()])
    path = tmp_path / "k2.h5"
    model.save(path)
    data = [rand((BATCH, 5, 8), 6), (rng.random((BATCH, 5, 5)) > 0.3).astype(np.float32)]
    data[1][:, :, 0] = 1.0  # no fully masked rows: tf_keras keeps a uniform softmax there, Keras 3 zeroes it
    want = [np.asarray(w) for w in model(data)]
    got = kcompat.load(str(path)).predict(data)
    for w, g in zip(want, got):
        np.testing.assert_allclose(g, w, atol=1e-5, rtol=1e-5)


# ------------------------------------------------------------------------ Keras bugs kcompat does not copy
def test_einsum_leading_ellipsis_over_two_axes_keras_declares_them_reversed(keras, tmp_path):
    """EinsumDense('...b,bc->...c') on (N, 3, 4, 6): Keras declares (None, 4, 3, c) and computes (N, 3, 4, c)."""
    inp = keras.Input(IMG)
    model = keras.Model(inp, keras.layers.EinsumDense("...b,bc->...c", output_shape=2, bias_axes="c")(inp))
    x = rand((BATCH, *IMG), 1)
    want = np.asarray(model(x))
    assert tuple(model.outputs[0].shape) == (None, 4, 3, 2) and want.shape == (BATCH, 3, 4, 2)  # the Keras bug
    kc = to_kcompat(model, tmp_path)
    assert kc.shapes[(kc.spec.outputs[0].layer, 0)] == (None, 3, 4, 2)
    np.testing.assert_allclose(kc.predict(x)[0], want, atol=1e-6)


def test_bias_squeezing_to_axis_1_keras_tensorflow_adds_along_the_wrong_axis(keras, tmp_path):
    """A (2, 1) bias on an (N, 2, 2, 1) EinsumDense output: Keras's TensorFlow ``ops.add`` turns it into an
    NCHW bias_add, adding bias[i] along axis 1 instead of axis 2 (GroupQueryAttention with head_dim=1 and
    two query steps hits it). kcompat adds the bias as the einsum's broadcast says."""
    inp = keras.Input((2, 3))
    layer = keras.layers.EinsumDense("abc,cde->abde", output_shape=(2, 2, 1), bias_axes="de")
    model = keras.Model(inp, layer(inp))
    kernel, bias = rand((3, 2, 1), 2), np.array([[1.0], [-1.0]], np.float32)
    layer.set_weights([kernel, bias])
    x = rand((BATCH, 2, 3), 3)
    right = np.einsum("abc,cde->abde", x, kernel) + bias
    keras_out = np.asarray(model(x))
    assert not np.allclose(keras_out, right)  # the Keras bug
    np.testing.assert_allclose(keras_out, np.einsum("abc,cde->abde", x, kernel) + bias[:, 0][None, :, None, None],
                               atol=1e-6)  # what Keras adds instead
    np.testing.assert_allclose(to_kcompat(model, tmp_path).predict(x)[0], right, atol=1e-6)


# ------------------------------------------------------------------------ refusals
@pytest.mark.parametrize("class_name,config,words", [
    ("MultiHeadAttention", {"num_heads": 0, "key_dim": 2}, "num_heads"),
    ("MultiHeadAttention", {"num_heads": 2, "key_dim": 2, "attention_axes": "time"}, "attention_axes"),
    ("GroupQueryAttention", {"head_dim": 2, "num_query_heads": 3, "num_key_value_heads": 2}, "divisible"),
    ("EinsumDense", {"equation": "ab,bc", "output_shape": 3}, "equation"),
    ("EinsumDense", {"equation": "ab,bc->ac", "output_shape": 3, "lora_rank": 4}, "LoRA"),
    ("Attention", {"score_mode": "cosine"}, "score_mode"),
])
def test_bad_config_refused_by_name(class_name, config, words):
    from kcompat.errors import KcompatError
    from kcompat.layers import make_layer
    with pytest.raises(KcompatError, match=words) as e:
        make_layer(class_name, {"name": "bad", **config}, "bad")
    assert "'bad'" in str(e.value) and class_name in str(e.value)


def test_einsum_shape_mismatch_refused():
    from kcompat.errors import ShapeError
    from kcompat.layers import make_layer
    layer = make_layer("EinsumDense", {"equation": "abc,cd->abd", "output_shape": (7, 4)}, "ed")
    with pytest.raises(ShapeError, match="'ed'.*differ"):
        layer.output_shape((None, 5, 8))
