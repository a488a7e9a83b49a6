"""ONNX export of the recurrent layers (SimpleRNN, LSTM, GRU, RNN with cells, Bidirectional, TimeDistributed,
ConvLSTM1D-3D) in ONNX Runtime against REAL Keras 3 and tf_keras, and back through kcompat's ONNX import.

The rows are the recurrent conformance groups (tests/recurrent_rows.py: return_sequences / return_state,
go_backwards, initial states, every merge mode, stacked cells, masks with holes, padding at both ends and
fully masked samples, Keras 3 files with masks in the graph and tf_keras files without): a row added there
is exported here with no change to this file. Tolerance 1e-5, as the conformance tests. Then the forms
(ONNX's own LSTM / GRU / RNN ops, one bidirectional node, the unrolled loop only where no op fits), the
IMDB-style classifier and a Transformer encoder block end to end: ONNX Runtime, and the ONNX file
converted back to a .keras file that real Keras loads with the same outputs.
"""
from __future__ import annotations

from collections import Counter

import numpy as np
import pytest

import kcompat
from conftest import rand, to_kcompat
from kcompat.errors import UnsupportedError
from kcompat.formats.onnx.export.driver import to_onnx
from onnx_helpers import run_onnx
from recurrent_rows import ATOL, KERAS3, RTOL, TF_KERAS, built, padded_ids, randomize
from test_layers_attention import transformer_block
from test_recurrent_models import imdb, reviews

import onnx  # noqa: E402  (the dev install always has onnx and onnxruntime: a missing one fails)
import onnxruntime  # noqa: E402,F401
pytestmark = [pytest.mark.filterwarnings("ignore:Layer '.*' \\(of type .*\\) was passed an input with a mask"),
              pytest.mark.filterwarnings("ignore:You are saving your model as an HDF5 file")]
OPSETS = [13, None]
SLOW = {"masks_more"}  # tf_keras builds these slowly (recurrent_rows.py)
GROUPS = ([pytest.param("keras", g, id=f"keras3-{g}") for g in KERAS3]
          + [pytest.param("tf_keras", g, id=f"tf_keras-{g}", marks=[pytest.mark.slow] if g in SLOW else [])
             for g in TF_KERAS])


def _failures(result: dict, got: list) -> list[str]:
    want = result["__model__"][4]
    out = []
    for rid, (start, n) in result["__spans__"].items():
        for i in range(start, start + n):
            ours, ref = np.asarray(got[i]), want[i]
            if ours.shape != ref.shape:
                out.append(f"{rid}[{i - start}]: shape {ours.shape} != Keras {ref.shape}")
            elif not np.allclose(ours, ref, atol=ATOL, rtol=RTOL, equal_nan=True):  # a fully masked average: NaN
                out.append(f"{rid}[{i - start}]: max |diff| {np.nanmax(np.abs(ours - ref)):.2e}")
    return out


def _feeds(result: dict) -> dict:
    _, kc, _, feed, _ = result["__model__"]
    return dict(zip(kc.input_names, feed))


@pytest.mark.parametrize("opset", OPSETS)
@pytest.mark.parametrize("module,group", GROUPS)
def test_every_row_matches_keras(module, group, opset):
    result = built(module, group)
    proto = to_onnx(result["__model__"][1], opset)
    onnx.checker.check_model(proto, full_check=True)
    failures = _failures(result, run_onnx(proto, _feeds(result)))
    assert not failures, f"{module} {group} at opset {opset}: " + "; ".join(failures)


@pytest.mark.parametrize("module,group", GROUPS)
def test_exports_import_back(module, group, tmp_path):
    """kcompat's ONNX of each group reads back (LSTM / GRU / RNN nodes as recurrent layers, the mask
    packing as op nodes) and runs like Keras."""
    result = built(module, group)
    path = tmp_path / f"{group}.onnx"
    onnx.save(to_onnx(result["__model__"][1]), str(path))
    back = kcompat.load(str(path))
    failures = _failures(result, back.predict(_feeds(result)))
    assert not failures, f"{module} {group}: " + "; ".join(failures)


def _ops(proto) -> Counter:
    return Counter((n.name.split("/")[0], n.op_type) for n in proto.graph.node)


def _attrs(proto, op_type: str) -> list[dict]:
    return [{a.name: onnx.helper.get_attribute_value(a) for a in n.attribute} for n in proto.graph.node
            if n.op_type == op_type]


def test_forms():
    """ONNX's own ops where they compute the cell: LSTM / GRU (linear_before_reset = reset_after) / RNN, a
    default Bidirectional as ONE bidirectional node, hard_sigmoid as HardSigmoid(1/6, 1/2); the loop unrolled
    only for activations no op has (selu); ConvLSTM around Conv; masks as sequence_lens."""
    kc = built("keras", "rnn")["__model__"][1]
    proto = to_onnx(kc, optimize=False)
    ops = _ops(proto)
    kinds = {ls.name: ls.class_name for ls in kc.spec.layers}
    assert sum(n for (layer, op), n in ops.items() if op == "LSTM") == sum(v == "LSTM" for v in kinds.values())
    assert not [layer for (layer, op) in ops if op == "GRU" and "selu" in str(kc.specs[layer].config)]
    gru = _attrs(proto, "GRU")
    assert sorted(a["linear_before_reset"] for a in gru) == [0, 0, 1, 1, 1, 1]  # reset_before rows: 2; the selu one unrolled
    hard = [a for a in _attrs(proto, "LSTM") if "HardSigmoid" in [x.decode() for x in a["activations"]]]
    assert hard and np.allclose(hard[0]["activation_alpha"], [1 / 6]) and np.allclose(hard[0]["activation_beta"], [0.5])
    wrappers = to_onnx(built("keras", "wrappers")["__model__"][1], optimize=False)
    directions = Counter(a.get("direction", b"forward").decode() for op in ("LSTM", "GRU", "RNN")
                         for a in _attrs(wrappers, op))
    assert directions["bidirectional"] >= 6  # every default Bidirectional of one native cell
    conv = to_onnx(built("keras", "conv_lstm")["__model__"][1], optimize=False)
    assert not {op for _, op in _ops(conv)} & {"LSTM", "GRU", "RNN"} and any(op == "Conv" for _, op in _ops(conv))
    masked = to_onnx(built("keras", "masks")["__model__"][1], optimize=False)
    lens = Counter(len(n.input) >= 5 and bool(n.input[4]) for n in masked.graph.node
                   if n.op_type in ("LSTM", "GRU", "RNN"))
    assert lens[True] >= 15 and lens[False] <= 3  # unmasked: where Keras itself runs without the mask


def test_unrolled_loop_needs_known_timesteps(keras, tmp_path):
    """A cell no ONNX op computes (selu) is unrolled: with an unknown number of timesteps, refused by name."""
    inp = keras.Input((None, 3))
    model = to_kcompat(keras.Model(inp, keras.layers.GRU(2, activation="selu", name="odd_gru")(inp)), tmp_path)
    with pytest.raises(UnsupportedError, match="'odd_gru' \\(GRU\\).*known number of timesteps"):
        to_onnx(model)


def test_masks_with_an_unknown_number_of_timesteps(keras, tmp_path):
    """The native ops and the mask packing need no known length: one export runs sequences of any length."""
    L = keras.layers
    ids = keras.Input((None,), dtype="int32")
    x = L.Embedding(12, 3, mask_zero=True)(ids)
    kmodel = keras.Model(ids, [L.Bidirectional(L.GRU(2, return_sequences=True))(x), L.LSTM(3, go_backwards=True)(x)])
    randomize(kmodel, seed=2)
    model = to_kcompat(kmodel, tmp_path)
    proto = to_onnx(model)
    for steps in (4, 9):
        data = padded_ids(steps, steps=steps)[0]
        for got, want in zip(run_onnx(proto, {model.input_names[0]: data}), kmodel(data)):
            np.testing.assert_allclose(got, np.asarray(want), atol=ATOL, rtol=RTOL)


# ------------------------------------------------------------------ whole models, there and back
def _there_and_back(keras, path, x, want, tmp_path) -> None:
    """The file exported to ONNX runs in ONNX Runtime like Keras; the ONNX file converted to .keras loads in
    real Keras with the same outputs."""
    model = kcompat.load(str(path))
    onnx_path = tmp_path / "model.onnx"
    kcompat.save(model, str(onnx_path))
    got = run_onnx(onnx.load(str(onnx_path)), {model.input_names[0]: x})[0]
    np.testing.assert_allclose(got, want, atol=ATOL, rtol=RTOL)
    back = kcompat.load(str(onnx_path))
    np.testing.assert_allclose(back.predict(x)[0], want, atol=ATOL, rtol=RTOL)
    keras_path = tmp_path / "back.keras"
    kcompat.save(back, str(keras_path))
    reloaded = keras.saving.load_model(str(keras_path))
    np.testing.assert_allclose(np.asarray(reloaded(x)), want, atol=ATOL, rtol=RTOL)


@pytest.mark.parametrize("module", ["keras", "tf_keras"])
def test_imdb_classifier_onnx_and_back(keras, module, tmp_path):
    """Embedding(mask_zero=True) -> Bidirectional(LSTM) -> GRU -> Dense, Sequential (its masks derived, not in
    the file), saved by Keras 3 and by tf_keras; reviews right-padded, with a hole, all padding."""
    import importlib
    kmodel = imdb(importlib.import_module(module))
    randomize(kmodel, seed=3)
    path = tmp_path / ("imdb.keras" if module == "keras" else "imdb.h5")
    kmodel.save(path)
    _there_and_back(keras, path, reviews(), np.asarray(kmodel(reviews())), tmp_path)


def test_transformer_encoder_block_onnx_and_back(keras, tmp_path):
    kmodel = transformer_block(keras)
    path = tmp_path / "block.keras"
    kmodel.save(path)
    x = rand((3, 6, 8), seed=5)
    _there_and_back(keras, path, x, np.asarray(kmodel(x)), tmp_path)
