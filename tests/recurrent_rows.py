"""Rows of the recurrent conformance tables (tests/test_layers_recurrent.py, test_recurrent_models.py) and
the helpers that build them: each group of rows is one model in Keras 3 (.keras) or tf_keras (.h5),
loaded by kcompat; ``built(module, group)`` builds a group once per test process.
"""
from __future__ import annotations

import functools
import json
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import pytest

import kcompat
from conftest import rand

ATOL = RTOL = 1e-5
BATCH, T = 4, 6


@dataclass
class Row:
    """``build(keras_module, *inputs)`` -> a tensor or a list of tensors; inputs of ``shapes`` (no batch)."""

    id: str
    build: Callable
    shapes: list
    dtype: str | tuple = "float32"  # one for every input, or one per input
    data: Callable | None = None  # seed -> arrays, when random normal data does not fit
    batch_size: int | None = None  # a fixed batch (stateful layers need one)


def row(rid, build, *shapes, **kw):
    return pytest.param(Row(rid, build, list(shapes), **kw), id=rid)


def layer(cls, **kwargs):
    """A row builder: ``<module>.layers.<cls>(**kwargs)`` on the row's input."""
    return lambda k, x: getattr(k.layers, cls)(**kwargs)(x)


def wrapped(wrapper, cls, wrapper_kw=None, **kwargs):
    """``Bidirectional(LSTM(**kwargs), **wrapper_kw)`` and the like."""
    return lambda k, x: getattr(k.layers, wrapper)(getattr(k.layers, cls)(**kwargs), **(wrapper_kw or {}))(x)


def padded_ids(seed, vocab=12, steps=T):
    """Index sequences with padding 0 in the middle and at the end, one all padding, one without any."""
    ids = np.random.default_rng(seed).integers(1, vocab, size=(BATCH, steps)).astype(np.int32)
    ids[0, 2] = ids[0, 4:] = 0  # middle and end
    ids[1, :] = 0  # fully masked
    ids[2, 1:3] = 0  # a hole
    return [ids]


def embedded(then, units=3, mask_zero=True):
    """Embedding(12, units, mask_zero) on the index input, then ``then(k, x)``."""
    return lambda k, ids, *rest: then(k, k.layers.Embedding(12, units, mask_zero=mask_zero)(ids), *rest)


def randomize(model, seed=1):
    """Random weights for Keras 3 or tf_keras layers; variances positive."""
    rng = np.random.default_rng(seed)
    for lyr in model.layers:
        names = [getattr(v, "path", v.name) for v in lyr.weights]
        values = [rng.uniform(0.5, 1.5, w.shape) if "variance" in n else rng.normal(0, 0.5, w.shape)
                  for n, w in zip(names, lyr.get_weights())]
        if values:
            lyr.set_weights([v.astype(np.float32) for v in values])


def flat(value) -> list:
    return [t for v in value for t in flat(v)] if isinstance(value, (list, tuple)) else [value]


def run_group(module, rows: list[Row], tmp_path, name: str, ext: str = ".keras") -> dict:
    """Build the rows as one model in ``module`` (keras or tf_keras), save it, load it in kcompat, run both."""
    inputs, outputs, data, spans = [], [], {}, {}
    for i, r in enumerate(rows):
        dtypes = r.dtype if isinstance(r.dtype, tuple) else (r.dtype,) * len(r.shapes)
        xs = [module.Input(s, name=f"{r.id}_in{j}", dtype=d, batch_size=r.batch_size)
              for j, (s, d) in enumerate(zip(r.shapes, dtypes))]
        arrays = r.data(i) if r.data else [rand((BATCH, *s), seed=100 * i + j) for j, s in enumerate(r.shapes)]
        data.update({x.name.split(":")[0]: a for x, a in zip(xs, arrays)})
        inputs += xs
        outs = flat(r.build(module, *xs))
        spans[r.id] = (len(outputs), len(outs))
        outputs += outs
    kmodel = module.Model(inputs, outputs, name=name)
    randomize(kmodel)
    feed = [data[x.name.split(":")[0]] for x in kmodel.inputs]
    want = [np.asarray(w) for w in flat(kmodel(feed, training=False))]
    path = tmp_path / f"{name}{ext}"
    kmodel.save(path)
    kc = kcompat.load(str(path))
    got = kc.predict(dict(zip(kc.input_names, feed)))
    out = {r.id: [(want[i], got[i]) for i in range(start, start + n)] for r, (start, n) in
           zip(rows, spans.values())}
    out["__model__"] = (kmodel, kc, path, feed, want)
    out["__spans__"] = spans
    return out


def check_row(pairs: list) -> None:
    for want, got in pairs:
        assert got.shape == want.shape and got.dtype == np.float32
        np.testing.assert_allclose(got, want, atol=ATOL, rtol=RTOL)


def check_layers(kmodel, kc) -> None:
    """Every Keras layer's output shape(s) and parameter count, and the model's total."""
    for lyr in kmodel.layers:
        info = kc.info[lyr.name]
        want = [tuple(t.shape) for t in flat(lyr.output)]
        got = info.output_shape if isinstance(info.output_shape, list) else [info.output_shape]
        assert got == want, f"{lyr.name} ({type(lyr).__name__})"
        assert info.params == lyr.count_params(), f"{lyr.name} ({type(lyr).__name__})"
        assert "params" in kc.layers[lyr.name].explain(info.input_shape, info.output_shape)
    assert kc.total_params == kmodel.count_params()


# ------------------------------------------------------------------------------------------ rows
RNN = [
    row("simple_rnn_last", layer("SimpleRNN", units=4), (T, 3)),
    row("simple_rnn_seq_relu_no_bias", layer("SimpleRNN", units=3, activation="relu", use_bias=False,
                                             return_sequences=True), (T, 3)),
    row("simple_rnn_backwards_state", layer("SimpleRNN", units=2, go_backwards=True, return_state=True), (T, 3)),
    row("lstm_last", layer("LSTM", units=4), (T, 3)),
    row("lstm_seq", layer("LSTM", units=4, return_sequences=True), (T, 3)),
    row("lstm_seq_and_states", layer("LSTM", units=3, return_sequences=True, return_state=True), (T, 2)),
    row("lstm_backwards_seq", layer("LSTM", units=3, go_backwards=True, return_sequences=True), (T, 3)),
    row("lstm_unroll", layer("LSTM", units=3, unroll=True, return_sequences=True), (T, 3)),
    row("lstm_relu_hard_sigmoid", layer("LSTM", units=3, activation="relu", recurrent_activation="hard_sigmoid",
                                        return_sequences=True), (T, 3)),
    row("lstm_no_bias_no_forget_bias", layer("LSTM", units=3, use_bias=False, unit_forget_bias=False), (T, 3)),
    row("lstm_dropouts_ignored_impl1", layer("LSTM", units=3, dropout=0.4, recurrent_dropout=0.3,
                                             implementation=1), (T, 3)),
    row("lstm_stateful_zero_state", layer("LSTM", units=3, stateful=True), (T, 3), batch_size=BATCH),
    row("gru_reset_after", layer("GRU", units=4, return_sequences=True), (T, 3)),
    row("gru_reset_before", layer("GRU", units=4, reset_after=False, return_sequences=True), (T, 3)),
    row("gru_reset_before_no_bias", layer("GRU", units=3, reset_after=False, use_bias=False), (T, 3)),
    row("gru_reset_after_no_bias", layer("GRU", units=3, use_bias=False), (T, 3)),
    row("gru_backwards_state", layer("GRU", units=3, go_backwards=True, return_state=True), (T, 3)),
    row("gru_unroll_selu", layer("GRU", units=3, unroll=True, activation="selu"), (T, 3)),
    row("gru_long_sequence", layer("GRU", units=5, return_sequences=True), (40, 2)),
]

CELLS = [
    row("rnn_lstm_cell", lambda k, x: k.layers.RNN(k.layers.LSTMCell(3))(x), (T, 3)),
    row("rnn_gru_cell_reset_before_state", lambda k, x: k.layers.RNN(k.layers.GRUCell(3, reset_after=False),
                                                                     return_state=True)(x), (T, 3)),
    row("rnn_simple_cell_backwards_seq", lambda k, x: k.layers.RNN(k.layers.SimpleRNNCell(2), go_backwards=True,
                                                                   return_sequences=True)(x), (T, 3)),
    row("rnn_stacked_cells_states", lambda k, x: k.layers.RNN(
        [k.layers.LSTMCell(3), k.layers.GRUCell(2), k.layers.SimpleRNNCell(4)], return_state=True)(x), (T, 3)),
    row("rnn_stacked_two_lstm_cells_seq", lambda k, x: k.layers.RNN(
        [k.layers.LSTMCell(3), k.layers.LSTMCell(2)], return_sequences=True)(x), (T, 3)),
]

WRAPPERS = [
    row("bidir_lstm_concat", wrapped("Bidirectional", "LSTM", units=3, return_sequences=True), (T, 3)),
    row("bidir_lstm_sum", wrapped("Bidirectional", "LSTM", {"merge_mode": "sum"}, units=3, return_sequences=True),
        (T, 3)),
    row("bidir_gru_mul", wrapped("Bidirectional", "GRU", {"merge_mode": "mul"}, units=3, return_sequences=True),
        (T, 3)),
    row("bidir_gru_ave_last", wrapped("Bidirectional", "GRU", {"merge_mode": "ave"}, units=3), (T, 3)),
    row("bidir_simple_none_two_outputs", wrapped("Bidirectional", "SimpleRNN", {"merge_mode": None}, units=2,
                                                 return_sequences=True), (T, 3)),
    row("bidir_lstm_state", wrapped("Bidirectional", "LSTM", units=2, return_state=True), (T, 3)),
    row("bidir_gru_none_state", wrapped("Bidirectional", "GRU", {"merge_mode": None}, units=2, return_state=True,
                                        return_sequences=True), (T, 3)),
    row("bidir_backward_layer_gru", lambda k, x: k.layers.Bidirectional(
        k.layers.LSTM(3, return_sequences=True),
        backward_layer=k.layers.GRU(3, return_sequences=True, go_backwards=True))(x), (T, 3)),
    row("bidir_stacked_cells", lambda k, x: k.layers.Bidirectional(
        k.layers.RNN([k.layers.GRUCell(2), k.layers.LSTMCell(2)]))(x), (T, 3)),
    row("td_dense", wrapped("TimeDistributed", "Dense", units=2, activation="tanh"), (T, 3)),
    row("td_dense_rank4", wrapped("TimeDistributed", "Dense", units=2), (T, 4, 3)),
    row("td_conv2d", wrapped("TimeDistributed", "Conv2D", filters=2, kernel_size=2), (3, 5, 5, 2)),
    row("td_batchnorm", wrapped("TimeDistributed", "BatchNormalization"), (T, 3)),
    row("td_lstm", wrapped("TimeDistributed", "LSTM", units=2), (3, 5, 2)),
]

CONV_LSTM = [
    row("conv_lstm1d", layer("ConvLSTM1D", filters=2, kernel_size=3), (T, 7, 2)),
    row("conv_lstm1d_same_seq_backwards", layer("ConvLSTM1D", filters=2, kernel_size=3, padding="same",
                                                return_sequences=True, go_backwards=True), (4, 5, 2)),
    row("conv_lstm1d_channels_first_state", layer("ConvLSTM1D", filters=2, kernel_size=2, return_state=True,
                                                  data_format="channels_first"), (4, 2, 6)),
    row("conv_lstm1d_dilation", layer("ConvLSTM1D", filters=2, kernel_size=2, dilation_rate=2), (4, 7, 2)),
    row("conv_lstm2d_same_seq", layer("ConvLSTM2D", filters=3, kernel_size=3, padding="same",
                                      return_sequences=True), (3, 5, 4, 2)),
    row("conv_lstm2d_strides_no_bias", layer("ConvLSTM2D", filters=2, kernel_size=(2, 3), strides=(1, 2),
                                             use_bias=False), (3, 5, 6, 2)),
    row("conv_lstm3d", layer("ConvLSTM3D", filters=2, kernel_size=2), (3, 3, 3, 3, 1)),
    row("bidir_conv_lstm1d", wrapped("Bidirectional", "ConvLSTM1D", filters=2, kernel_size=2,
                                     return_sequences=True), (4, 5, 2)),
]

INITIAL_STATE = [
    row("lstm_initial_state", lambda k, x, h, c: k.layers.LSTM(3, return_sequences=True)(x, initial_state=[h, c]),
        (T, 2), (3,), (3,)),
    row("gru_initial_state_positional", lambda k, x, h: k.layers.GRU(3)(x, h), (T, 2), (3,)),
    row("simple_rnn_initial_state_backwards", lambda k, x, h: k.layers.SimpleRNN(2, go_backwards=True)(
        x, initial_state=h), (T, 2), (2,)),
    row("bidir_initial_state", lambda k, x, h1, c1, h2, c2: k.layers.Bidirectional(k.layers.LSTM(2))(
        x, initial_state=[h1, c1, h2, c2]), (T, 2), (2,), (2,), (2,), (2,)),
    row("rnn_stacked_initial_state", lambda k, x, a, b: k.layers.RNN([k.layers.GRUCell(2), k.layers.GRUCell(3)])(
        x, initial_state=[a, b]), (T, 2), (2,), (3,)),
]


def _masking_input(seed):
    x = rand((BATCH, T, 3), seed=seed)
    x[0, 2] = x[0, 4:] = 0.0
    x[1] = 0.0
    return [x]


def _concat_masked(k, e):
    # named: loading a config without masks, Keras 3 names the ops it adds for this mask "concatenate" too
    # and refuses the clash (test_keras3_derives_the_same_masks_as_kcompat)
    return k.layers.GRU(2, return_sequences=True)(k.layers.Concatenate(name="concat")([e, k.layers.Conv1D(2, 1)(e)]))


MASKS = [  # every row: index input (BATCH, T) -> Embedding(mask_zero=True) -> ...
    row("mask_lstm_last", embedded(layer("LSTM", units=3)), (T,), dtype="int32", data=padded_ids),
    row("mask_lstm_seq", embedded(layer("LSTM", units=3, return_sequences=True)), (T,), dtype="int32",
        data=padded_ids),
    row("mask_gru_backwards_seq", embedded(layer("GRU", units=3, go_backwards=True, return_sequences=True)), (T,),
        dtype="int32", data=padded_ids),
    row("mask_gru_reset_before_state", embedded(layer("GRU", units=2, reset_after=False, return_state=True)), (T,),
        dtype="int32", data=padded_ids),
    row("mask_simple_rnn_seq", embedded(layer("SimpleRNN", units=3, return_sequences=True)), (T,), dtype="int32",
        data=padded_ids),
    row("mask_lstm_zero_output", embedded(layer("LSTM", units=2, return_sequences=True, zero_output_for_mask=True)),
        (T,), dtype="int32", data=padded_ids),
    row("mask_lstm_zero_output_last", embedded(layer("LSTM", units=2, zero_output_for_mask=True)), (T,),
        dtype="int32", data=padded_ids),
    row("mask_bidir_concat_seq", embedded(wrapped("Bidirectional", "LSTM", units=2, return_sequences=True)), (T,),
        dtype="int32", data=padded_ids),
    row("mask_bidir_none_seq", embedded(wrapped("Bidirectional", "GRU", {"merge_mode": None}, units=2,
                                                return_sequences=True)), (T,), dtype="int32", data=padded_ids),
    row("mask_bidir_sum_last_state", embedded(wrapped("Bidirectional", "LSTM", {"merge_mode": "sum"}, units=2,
                                                      return_state=True)), (T,), dtype="int32", data=padded_ids),
    row("mask_two_lstms", embedded(lambda k, e: k.layers.LSTM(2)(k.layers.LSTM(3, return_sequences=True)(e))),
        (T,), dtype="int32", data=padded_ids),
    row("mask_dense_passes_it_on", embedded(lambda k, e: k.layers.GRU(2)(k.layers.Dense(3)(e))), (T,),
        dtype="int32", data=padded_ids),
    row("mask_conv1d_drops_it", embedded(lambda k, e: k.layers.GRU(2)(k.layers.Conv1D(3, 1)(e))), (T,),
        dtype="int32", data=padded_ids),
    row("mask_td_dense_then_gru", embedded(lambda k, e: k.layers.GRU(2)(k.layers.TimeDistributed(
        k.layers.Dense(2))(e))), (T,), dtype="int32", data=padded_ids),
    row("mask_add_masked_branches", embedded(lambda k, e: k.layers.GRU(2, return_sequences=True)(
        k.layers.Add()([e, k.layers.Dense(3)(e)]))), (T,), dtype="int32", data=padded_ids),
    row("mask_concat_with_unmasked", embedded(_concat_masked), (T,), dtype="int32", data=padded_ids),
    row("mask_stacked_cells", embedded(lambda k, e: k.layers.RNN([k.layers.LSTMCell(2), k.layers.GRUCell(2)],
                                                                 return_sequences=True)(e)), (T,), dtype="int32",
        data=padded_ids),
    row("mask_global_average_pooling", embedded(layer("GlobalAveragePooling1D")), (T,), dtype="int32",
        data=padded_ids),
    row("mask_masking_layer", lambda k, x: k.layers.LSTM(3, return_sequences=True)(k.layers.Masking()(x)), (T, 3),
        data=_masking_input),
]


def _ids_and_states(seed):
    return padded_ids(seed) + [rand((BATCH, 3), seed=seed + 1), rand((BATCH, 3), seed=seed + 2)]


# Keras 3 runs an RNN given initial_state tensors WITHOUT the input's mask (it fills ``mask`` only for a
# single tensor argument: keras/src/layers/layer.py __call__ step 6); tf_keras applies it.
MASK_AND_STATE = [
    row("mask_with_initial_state", embedded(lambda k, e, h, c: k.layers.LSTM(3, return_sequences=True)(
        e, initial_state=[h, c])), (T,), (3,), (3,), dtype=("int32", "float32", "float32"), data=_ids_and_states),
]

KERAS2_ONLY = [  # tf_keras options Keras 3 dropped
    row("gru_time_major", layer("GRU", units=3, time_major=True, return_sequences=True), (T, 3)),
    row("lstm_time_major_last", layer("LSTM", units=2, time_major=True), (T, 3)),
]

KERAS3 = {"rnn": RNN, "cells": CELLS, "wrappers": WRAPPERS, "conv_lstm": CONV_LSTM,
          "initial_state": INITIAL_STATE, "masks": MASKS + MASK_AND_STATE}
# tf_keras: the same rows, except hard_sigmoid (tf_keras's is 0.2x + 0.5, Keras 3's x/6 + 0.5: kcompat runs
# Keras 3's) and ConvLSTM's default recurrent activation (hard_sigmoid in tf_keras), given explicitly
# tf_keras builds a masked LSTM / GRU graph slowly (~2 s each): the rows where Keras 2's mask rules
# differ from Keras 3's run always, the rest ("masks_more", ~30 s) are marked slow.
TF_KERAS_MASKS = {"mask_lstm_last", "mask_simple_rnn_seq", "mask_add_masked_branches", "mask_concat_with_unmasked",
                  "mask_stacked_cells", "mask_global_average_pooling", "mask_masking_layer", "mask_with_initial_state"}
TF_KERAS = {"rnn": [p for p in RNN if "hard_sigmoid" not in p.id] + KERAS2_ONLY, "cells": CELLS,
            "wrappers": WRAPPERS, "initial_state": INITIAL_STATE,
            "masks": [p for p in MASKS + MASK_AND_STATE if p.id in TF_KERAS_MASKS],
            "masks_more": [p for p in MASKS if p.id not in TF_KERAS_MASKS],
            "conv_lstm": [pytest.param(Row(p.id, lambda k, *xs, b=p.values[0].build: _sigmoid(k, b, *xs),
                                           p.values[0].shapes), id=p.id) for p in CONV_LSTM]}


def _sigmoid(k, build, *xs):
    """A ConvLSTM row built with recurrent_activation="sigmoid" (tf_keras's default is hard_sigmoid)."""
    original = {n: getattr(k.layers, n) for n in ("ConvLSTM1D", "ConvLSTM2D", "ConvLSTM3D")}
    try:
        for n, cls in original.items():
            setattr(k.layers, n, lambda *a, cls=cls, **kw: cls(*a, **{"recurrent_activation": "sigmoid", **kw}))
        return build(k, *xs)
    finally:
        for n, cls in original.items():
            setattr(k.layers, n, cls)



@functools.cache
def built(module: str, group: str) -> dict:
    """Group ``group`` of KERAS3 (module "keras") or TF_KERAS ("tf_keras"), built, saved, loaded, run: once."""
    import importlib
    mod = importlib.import_module(module)
    groups, ext = (KERAS3, ".keras") if module == "keras" else (TF_KERAS, ".h5")
    tmp = Path(tempfile.mkdtemp(prefix=f"kcompat-{module}-{group}-"))
    return run_group(mod, [p.values[0] for p in groups[group]], tmp, group, ext)


def strip_masks(src, dst) -> None:
    """A copy of a .keras file without the masks Keras 3 wrote into its graph (``mask=`` call arguments and
    the op nodes computing them): what a config written by kcompat from a tf_keras file looks like."""
    with zipfile.ZipFile(src) as z:
        files = {n: z.read(n) for n in z.namelist()}
    config = json.loads(files["config.json"])
    layers = config["config"]["layers"]
    for entry in layers:
        for node in entry["inbound_nodes"]:
            node["kwargs"].pop("mask", None)
    by_name = {e["name"]: e for e in layers}
    needed, todo = set(), [ref[0] for ref in config["config"]["output_layers"]]
    while todo:
        name = todo.pop()
        if name not in needed:
            needed.add(name)
            todo += [h for h in _histories(by_name[name]["inbound_nodes"]) if h not in needed]
    config["config"]["layers"] = [e for e in layers if e["name"] in needed]
    files["config.json"] = json.dumps(config).encode()
    with zipfile.ZipFile(dst, "w") as z:
        for name, data in files.items():
            z.writestr(name, data)


def _histories(obj) -> list:
    if isinstance(obj, dict):
        if obj.get("class_name") == "__keras_tensor__":
            return [obj["config"]["keras_history"][0]]
        return [h for v in obj.values() for h in _histories(v)]
    if isinstance(obj, list):
        return [h for v in obj for h in _histories(v)]
    return []
