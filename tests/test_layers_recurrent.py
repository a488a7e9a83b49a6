"""Conformance of the recurrent layers, their wrappers and Keras masks, against real Keras 3 and tf_keras.

Each group of rows is ONE functional model with random weights, built in Keras 3 (saved as .keras) or
in tf_keras (saved as .h5, the Keras 2 file users bring), loaded by kcompat and run once on both
sides; every row compares each of its outputs (return_state / merge_mode=None rows have several),
then every layer's output shape(s) and parameter count. Mask rows feed padded index sequences: zeros
in the middle and at the end, a fully masked sample, a sample without padding.

Keras 3 writes the masks into the graph (each masked call gets ``mask=`` from op nodes such as
``not_equal``); tf_keras files and Keras 3 Sequential models carry none, so kcompat derives them
(kcompat/masks.py). test_keras3_derives_the_same_masks_as_kcompat strips the masks from a Keras 3 file and lets Keras 3 and
kcompat both derive them again.

Tolerance: 1e-5 absolute and relative; the largest difference seen is ~3e-7 (TF and NumPy sum the
gate matmuls in another order). A wrong gate order, bias split or masked step is O(0.1).
"""
from __future__ import annotations

import io
import zipfile

import h5py
import numpy as np
import pytest

import kcompat
from recurrent_rows import (ATOL, KERAS3, RTOL, T, TF_KERAS, check_layers, check_row, padded_ids, randomize,
                            strip_masks)
from recurrent_rows import built as build_group

pytestmark = [pytest.mark.filterwarnings("ignore:Layer '.*' \\(of type .*\\) was passed an input with a mask"),
              pytest.mark.filterwarnings("ignore:You are saving your model as an HDF5 file")]
SLOW = {"masks_more"}  # tf_keras groups marked slow (recurrent_rows.py says why)


def _marks(group):
    return [pytest.mark.slow] if group in SLOW else []


ROWS = ([pytest.param("keras", g, p.values[0], id=f"keras3-{p.id}") for g, rows in KERAS3.items() for p in rows]
        + [pytest.param("tf_keras", g, p.values[0], id=f"tf_keras-{p.id}", marks=_marks(g))
           for g, rows in TF_KERAS.items() for p in rows])
GROUPS = ([pytest.param("keras", g, id=f"keras3-{g}") for g in KERAS3]
          + [pytest.param("tf_keras", g, id=f"tf_keras-{g}", marks=_marks(g)) for g in TF_KERAS])


@pytest.fixture(scope="module")
def built(keras):
    return build_group


@pytest.mark.parametrize("module,group,r", ROWS)
def test_values_and_shapes_match_keras(built, module, group, r):
    check_row(built(module, group)[r.id])


@pytest.mark.parametrize("module,group", GROUPS)
def test_every_layer_shape_and_params_match_keras(built, module, group):
    kmodel, kc, *_ = built(module, group)["__model__"]
    check_layers(kmodel, kc)


def test_masks_change_the_results(built):
    """The mask rows exercise masks: the same model without them (no mask_zero, no Masking, no mask
    arguments) differs on every row but those where Keras 3 itself ends up unmasked: an RNN given
    initial states, a Conv1D (drops the mask), a Concatenate with an unmasked input (Keras 3 ORs the
    per-feature masks: every step is kept; tf_keras ANDs them)."""
    result = built("keras", "masks")
    _, kc, path, feed, _ = result["__model__"]
    spec = kcompat.load(str(path)).spec
    for ls in spec.layers:
        if ls.class_name == "Embedding":
            ls.config["mask_zero"] = False
        if ls.class_name == "Masking":  # its masked steps are all zeros already
            ls.class_name, ls.config = "Identity", {"name": ls.name}
        for node in ls.nodes:
            node.kwargs.pop("mask", None)
    unmasked = kcompat.Model(spec).predict(dict(zip(kc.input_names, feed)))
    same = {rid for rid, (start, n) in result["__spans__"].items()
            if all(np.allclose(got, unmasked[start + i]) for i, (_, got) in enumerate(result[rid]))}
    assert same == {"mask_with_initial_state", "mask_conv1d_drops_it", "mask_concat_with_unmasked"}


def test_keras3_derives_the_same_masks_as_kcompat(keras, built, tmp_path):
    """Without masks in the file, Keras 3 derives them while it rebuilds the graph; kcompat's rules
    (kcompat/masks.py) give the same outputs on every mask row. (Weights are set by layer name: the
    positional weights file follows the graph order, which dropping op nodes changes.)"""
    kmodel, kc, path, feed, want = built("keras", "masks")["__model__"]
    stripped = tmp_path / "stripped.keras"
    strip_masks(path, stripped)
    derived_model = keras.models.load_model(stripped, compile=False)
    assert not any(op.__class__.__module__.startswith("keras.src.ops") for op in derived_model.operations[:1])
    weights = {lyr.name: lyr.get_weights() for lyr in kmodel.layers}
    for lyr in derived_model.layers:
        lyr.set_weights(weights[lyr.name])
    derived = [np.asarray(v) for v in derived_model(feed)]
    for a, b in zip(derived, want):  # Keras 3 derives the masks it wrote
        np.testing.assert_allclose(a, b, atol=ATOL, rtol=RTOL)
    spec = kcompat.load(str(stripped)).spec
    assert not any(ls.is_op for ls in spec.layers)
    for ls in spec.layers:
        ls.weights = kc.weights_of(ls.name)
    for got, w in zip(kcompat.Model(spec).predict(dict(zip(kc.input_names, feed))), want):
        np.testing.assert_allclose(got, w, atol=ATOL, rtol=RTOL)


def test_keras_unroll_bug_kcompat_computes_the_loop_result(keras, tmp_path):
    """Keras on TF with unroll=True zeroes a backwards layer's masked outputs by the UNreversed mask
    (keras/src/backend/tensorflow/rnn.py, unrolled branch with zero_output_for_mask, which Bidirectional
    forces): unroll should change nothing. kcompat gives the unroll=False result for both."""
    L = keras.layers
    ids = padded_ids(3)[0]
    outs = []
    for unroll in (False, True):
        x = keras.Input((T,), dtype="int32")
        bi = L.Bidirectional(L.LSTM(2, return_sequences=True, unroll=unroll), name=f"bi_{unroll}")
        model = keras.Model(x, bi(L.Embedding(12, 3, mask_zero=True, name=f"e_{unroll}")(x)))
        randomize(model, seed=4)
        model.save(tmp_path / f"u{unroll}.keras")
        outs.append((np.asarray(model(ids)), kcompat.load(str(tmp_path / f"u{unroll}.keras")).predict(ids)[0]))
    (loop, kc_loop), (unrolled, kc_unrolled) = outs
    np.testing.assert_allclose(kc_loop, loop, atol=ATOL, rtol=RTOL)
    np.testing.assert_allclose(kc_unrolled, loop, atol=ATOL, rtol=RTOL)
    assert not np.allclose(unrolled, loop, atol=1e-3)  # the Keras bug: fixed upstream, this fails: drop it


@pytest.mark.parametrize("group", ["rnn", "cells", "wrappers", "conv_lstm"])
def test_written_weights_are_laid_out_like_keras(built, group, tmp_path):
    """kcompat's .keras holds every variable at the path and shape Keras 3 saves it (nested layers under
    cell/, forward_layer/, backward_layer/, layer/, cell/cells/<cell>/), and Keras 3 loads it."""
    _, kc, path, *_ = built("keras", group)["__model__"]
    out = tmp_path / "kc.keras"
    kcompat.save(kc, str(out))
    assert _datasets(out) == _datasets(path)


def _datasets(path) -> dict:
    with zipfile.ZipFile(path) as z, h5py.File(io.BytesIO(z.read("model.weights.h5")), "r") as f:
        found = {}
        f.visititems(lambda name, obj: found.update({name: (obj.shape, obj[()].tobytes())})
                     if isinstance(obj, h5py.Dataset) else None)
    return found


@pytest.mark.parametrize("group", ["rnn", "wrappers", "initial_state"])
def test_verify_passes(built, group):
    """kcompat verify against Keras 3 passes; layers with several outputs (return_state, merge_mode=None)
    are compared output by output; initial states given as call arguments reach both sides."""
    from kcompat.verify.run import verify_file
    path = built("keras", group)["__model__"][2]
    report = verify_file(str(path))
    assert report.ok, report.first_mismatch
    assert all(d.compared for d in report.layers)
    multi = [d for d in report.layers if isinstance(d.output_shape[0], list)]
    assert all(d.max_abs_err is not None for d in multi)
    assert bool(multi) == (group != "initial_state")
