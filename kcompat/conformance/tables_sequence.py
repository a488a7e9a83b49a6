"""Conformance cases of the recurrent layers (SimpleRNN, LSTM, GRU, RNN with cells, Bidirectional,
TimeDistributed, ConvLSTM1D/2D/3D), the attention layers (MultiHeadAttention, GroupQueryAttention,
Attention, AdditiveAttention), EinsumDense and keras.applications' own layers.

Masked cases put an ``Embedding(mask_zero=True)`` in front of index sequences with padding ("ids:K"): in a
Functional model Keras writes the mask into the graph (a NotEqual op node and ``mask=``); with
``build="sequential"`` it passes the mask implicitly, as a tf_keras file does. Either way the call gets
it as ``layer["masks"]`` in the adapter contract, and the case's manifest says so.
Configs follow tests/recurrent_rows.py and tests/test_layers_attention.py.
"""
from __future__ import annotations

from .variant import In, Variant, W, X, Y, Z, call, sub, v

T = 6
SEQ = (T, 3)
EMB = sub("Embedding", input_dim=12, output_dim=3, mask_zero=True)  # on "ids:12" index sequences
MASKED = {"data": "ids:12", "front": EMB}
Q, KV, KEY, IMG = (5, 8), (7, 8), (7, 4), (3, 4, 6)

RECURRENT: dict[str, list[Variant]] = {
    # the first two of SimpleRNN and LSTM: a masked case and a plain one (the fast test exports two per class)
    "SimpleRNN": [v((T,), build="sequential", units=3, return_sequences=True, **MASKED), v(SEQ, units=4),
                  v(SEQ, units=3, activation="relu", use_bias=False, return_sequences=True),
                  v(SEQ, units=2, go_backwards=True, return_state=True), v((T,), units=3, **MASKED),
                  v([SEQ, (2,)], call=call(X, initial_state=Y), units=2, go_backwards=True)],
    "LSTM": [v((T,), units=3, return_sequences=True, **MASKED), v(SEQ, units=4),
             v((T, 2), units=3, return_sequences=True, return_state=True),
             v(SEQ, units=3, go_backwards=True, return_sequences=True),
             v(SEQ, units=3, unroll=True, return_sequences=True),
             v(SEQ, units=3, activation="relu", recurrent_activation="hard_sigmoid", return_sequences=True),
             v(SEQ, units=3, use_bias=False, unit_forget_bias=False),
             v(SEQ, units=3, dropout=0.4, recurrent_dropout=0.3, implementation=1),
             v((T,), units=2, return_sequences=True, zero_output_for_mask=True, **MASKED),
             v((T,), build="sequential", units=3, go_backwards=True, **MASKED),
             v(SEQ, "masked", front=sub("Masking"), units=3, return_sequences=True),
             v([(T, 2), (3,), (3,)], call=call(X, initial_state=[Y, Z]), units=3, return_sequences=True)],
    "GRU": [v(SEQ, units=4, return_sequences=True), v(SEQ, units=4, reset_after=False, return_sequences=True),
            v(SEQ, units=3, reset_after=False, use_bias=False), v(SEQ, units=3, use_bias=False),
            v(SEQ, units=3, go_backwards=True, return_state=True), v(SEQ, units=3, unroll=True, activation="selu"),
            v((40, 2), units=5, return_sequences=True),
            v((T,), units=3, go_backwards=True, return_sequences=True, **MASKED),
            v((T,), build="sequential", units=2, reset_after=False, return_state=True, **MASKED),
            v([(T, 2), (3,)], call=call(X, Y), units=3)],
    "RNN": [v(SEQ, cell=sub("LSTMCell", units=3)),
            v(SEQ, cell=sub("GRUCell", units=3, reset_after=False), return_state=True),
            v(SEQ, cell=sub("SimpleRNNCell", units=2), go_backwards=True, return_sequences=True),
            v(SEQ, cell=[sub("LSTMCell", units=3), sub("GRUCell", units=2), sub("SimpleRNNCell", units=4)],
              return_state=True),
            v((T,), cell=[sub("LSTMCell", units=2), sub("GRUCell", units=2)], return_sequences=True, **MASKED),
            v([(T, 2), (2,), (3,)], call=call(X, initial_state=[Y, Z]),
              cell=[sub("GRUCell", units=2), sub("GRUCell", units=3)])],
    "Bidirectional": [v(SEQ, layer=sub("LSTM", units=3, return_sequences=True)),
                      v(SEQ, layer=sub("LSTM", units=3, return_sequences=True), merge_mode="sum"),
                      v(SEQ, layer=sub("GRU", units=3, return_sequences=True), merge_mode="mul"),
                      v(SEQ, layer=sub("GRU", units=3), merge_mode="ave"),
                      v(SEQ, layer=sub("SimpleRNN", units=2, return_sequences=True), merge_mode=None),
                      v(SEQ, layer=sub("LSTM", units=2, return_state=True)),
                      v(SEQ, layer=sub("LSTM", units=3, return_sequences=True),
                        backward_layer=sub("GRU", units=3, return_sequences=True, go_backwards=True)),
                      v(SEQ, layer=sub("RNN", cell=[sub("GRUCell", units=2), sub("LSTMCell", units=2)])),
                      v((T,), layer=sub("LSTM", units=2, return_sequences=True), **MASKED),
                      v((T,), build="sequential", layer=sub("GRU", units=2, return_sequences=True), merge_mode=None,
                        **MASKED),
                      v((4, 5, 2), layer=sub("ConvLSTM1D", filters=2, kernel_size=2, return_sequences=True)),
                      v([(T, 2), (2,), (2,), (2,), (2,)], call=call(X, initial_state=[Y, Z, W, In(4)]),
                        layer=sub("LSTM", units=2))],
    "TimeDistributed": [v(SEQ, layer=sub("Dense", units=2, activation="tanh")),
                        v((T, 4, 3), layer=sub("Dense", units=2)),
                        v((3, 5, 5, 2), layer=sub("Conv2D", filters=2, kernel_size=2)),
                        v(SEQ, layer=sub("BatchNormalization")),
                        v((3, 5, 2), layer=sub("LSTM", units=2)),
                        v((T,), layer=sub("Dense", units=2), **MASKED)],
    "ConvLSTM1D": [v((T, 7, 2), filters=2, kernel_size=3),
                   v((4, 5, 2), filters=2, kernel_size=3, padding="same", return_sequences=True, go_backwards=True),
                   v((4, 2, 6), filters=2, kernel_size=2, return_state=True, data_format="channels_first"),
                   v((4, 7, 2), filters=2, kernel_size=2, dilation_rate=2)],
    "ConvLSTM2D": [v((3, 5, 4, 2), filters=3, kernel_size=3, padding="same", return_sequences=True),
                   v((3, 5, 6, 2), filters=2, kernel_size=(2, 3), strides=(1, 2), use_bias=False)],
    "ConvLSTM3D": [v((3, 3, 3, 3, 1), filters=2, kernel_size=2),
                   v((2, 4, 3, 3, 2), filters=2, kernel_size=2, padding="same", return_sequences=True)],
}


def mha(*args, shapes=(Q,), data="normal", **config) -> Variant:
    """MultiHeadAttention / GroupQueryAttention called as ``layer(*args)`` (``X``... for the inputs)."""
    kwargs = {k: config.pop(k) for k in list(config) if k in CALL_KWARGS}
    return v(list(shapes), data, call=call(*args, **kwargs), **config)


CALL_KWARGS = ("key", "attention_mask", "use_causal_mask", "return_attention_scores", "query_mask", "value_mask")
BOOL2 = ("normal", "normal", "bool")

ATTENTION: dict[str, list[Variant]] = {
    "MultiHeadAttention": [
        mha(X, X, num_heads=2, key_dim=4), mha(X, X, num_heads=2, key_dim=4, use_causal_mask=True),
        mha(X, Y, key=Z, shapes=(Q, KV, KEY), num_heads=2, key_dim=3, value_dim=5, output_shape=(6,)),
        mha(X, Y, attention_mask=Z, shapes=(Q, KV, (5, 7)), data=BOOL2, num_heads=2, key_dim=3),
        mha(X, X, attention_mask=Y, use_causal_mask=True, shapes=(Q, (5, 5)), data=("normal", "bool"), num_heads=3,
            key_dim=2),
        mha(X, Y, shapes=(Q, KV), num_heads=2, key_dim=4, use_bias=False),
        mha(X, X, num_heads=3, key_dim=2, use_gate=True),
        mha(X, X, use_causal_mask=True, num_heads=2, key_dim=2, sliding_window=2),
        mha(X, X, shapes=(IMG,), num_heads=2, key_dim=2, attention_axes=(1, 2)),
        mha(X, X, shapes=(IMG,), num_heads=2, key_dim=2, attention_axes=2, output_shape=(2, 3)),
        mha(X, Y, return_attention_scores=True, shapes=(Q, KV), num_heads=2, key_dim=3),
        v((T,), call=call(X, X), num_heads=2, key_dim=3, **MASKED)],
    "GroupQueryAttention": [
        mha(X, X, use_causal_mask=True, head_dim=3, num_query_heads=4, num_key_value_heads=2),
        mha(X, Y, Y, attention_mask=Z, shapes=(Q, KV, (5, 7)), data=BOOL2, head_dim=2, num_query_heads=4,
            num_key_value_heads=1, use_gate=True),
        mha(X, X, head_dim=2, num_query_heads=2, num_key_value_heads=2, use_bias=False, sliding_window=3),
        mha(X, Y, attention_mask=Z, shapes=(Q, KV, (5, 7)), head_dim=2, num_query_heads=2, num_key_value_heads=1,
            dropout=0.2),  # a float mask: Keras keeps the entries > 0.5 on this path
        mha(X, Y, return_attention_scores=True, use_causal_mask=True, shapes=(Q, KV), head_dim=2,
            num_query_heads=2, num_key_value_heads=1)],
    "Attention": [
        v([Q, KV]), v([Q, (7, 3), KV], use_scale=True), v([Q, (7, 3), KV], score_mode="concat"),
        v([Q, KV], score_mode="concat", use_scale=True),
        v([Q, KV, (5,), (7,)], ("normal", "normal", "bool", "bool"), call=call([X, Y], mask=[Z, W])),
        v([Q, KV, (5,), (7,)], ("normal", "normal", "bool", "bool"), call=call([X, Y], mask=[Z, W],
                                                                             use_causal_mask=True)),
        v([Q, KV], call=call([X, Y], use_causal_mask=True)),
        v([Q, KV], call=call([X, Y], return_attention_scores=True)),
        v((T,), call=call([X, X]), use_scale=True, **MASKED)],
    "AdditiveAttention": [
        v([Q, KV]), v([Q, KV, (5,), (7,)], ("normal", "normal", "bool", "bool"), call=call([X, Y], mask=[Z, W]),
                      use_scale=False),
        v([Q, (7, 3), KV]), v((T,), call=call([X, X]), **MASKED)],
    "EinsumDense": [
        v((6,), equation="ab,bc->ac", output_shape=4, bias_axes="c"),
        v(Q, equation="abc,cd->abd", output_shape=(None, 4), bias_axes="d", activation="relu"),
        v(Q, equation="...b,bc->...c", output_shape=3),
        v(IMG, equation="ab...,bc->ac...", output_shape=(2,), bias_axes="c"),
        v(Q, equation="abc,cde->abde", output_shape=(5, 2, 3), bias_axes="be"),
        v(IMG, equation="abcd,cde->abe", output_shape=(3, 4), bias_axes="e", activation="gelu")],
}

APPLICATIONS: dict[str, list[Variant]] = {  # keras.applications' own layers (ConvNeXt, InceptionResNetV2)
    "LayerScale": [v((4, 4, 3), init_values=0.5, projection_dim=3), v((5, 6), init_values=1e-6, projection_dim=6)],
    "StochasticDepth": [v((4, 3), drop_path_rate=0.3), v((2, 3, 4), drop_path_rate=0.0)],
    "CustomScaleLayer": [v([(4, 3), (4, 3)], scale=0.17), v([(2, 2, 5), (2, 2, 5)], scale=1.5)],
}
