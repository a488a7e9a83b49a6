"""ONNX export of the attention, preprocessing, image, audio, categorical, hashing, adaptive pooling,
reversible embedding, keras.applications and augmentation layers, run in ONNX Runtime against REAL Keras.

The rows are the conformance tables of test_layers_attention.py and test_layers_preprocessing.py: a row
added there is exported here with no change to this file. Each table is one Keras model (one branch per
row), saved as .keras, loaded by kcompat, exported at opset 13 and at the default, run once per export.
Values within the row's tolerance (1e-5 unless the row says otherwise), integer outputs exactly; dtypes as
kcompat declares them (IntegerLookup's encodings are float32, as Keras declares: test_layers_preprocessing
names the Keras bug of computing int64). Hashing needs opset 18 (uint64 bitwise ops): its table starts
there, and below it the export is refused by name. The attention exports also import back and run like Keras.
"""
from __future__ import annotations

import functools
from collections import Counter

import numpy as np
import pytest

from conftest import rand, to_kcompat
from kcompat.errors import UnsupportedError
from kcompat.formats.onnx.export.driver import to_onnx
from onnx_helpers import run_onnx

import test_layers_attention as attention_tables
import test_layers_misc as misc
import test_layers_preprocessing as preprocessing_tables

import onnx  # noqa: E402  (the dev install always has onnx and onnxruntime: a missing one fails)
import onnxruntime  # noqa: E402,F401
pytestmark = pytest.mark.filterwarnings("ignore:overflow encountered:RuntimeWarning")
OPSETS = [13, None]
GROUPS = {**{f"attention_{g}": rows for g, rows in attention_tables.GROUPS.items()},
          **{g: rows for g, rows in preprocessing_tables.GROUPS.items()}}
MIN_OPSET = {"categorical": 18}  # Hashing / HashedCrossing: BitwiseXor from opset 18
EXPORTS = [(g, o) for g in GROUPS for o in OPSETS if o is None or o >= MIN_OPSET.get(g, 0)]


def _build(keras, group, tmp_path):
    """One Keras model per table: (kcompat model, inputs by name, Keras outputs, rows)."""
    rows = [p.values[0] for p in GROUPS[group]]
    inputs, outputs, feeds = [], [], {}
    for i, r in enumerate(rows):
        xs = [keras.Input(s, name=f"{r.id}_in{j}", dtype=r.dtype) for j, s in enumerate(r.shapes)]
        arrays = r.data(i) if r.data else [rand((misc.BATCH, *s), seed=100 * i + j) for j, s in enumerate(r.shapes)]
        feeds.update({x.name: a for x, a in zip(xs, arrays)})
        inputs += xs
        outputs.append(r.build(keras, *xs))
    kmodel = keras.Model(inputs, outputs, name=group)
    misc.randomize(kmodel)
    want = [keras.ops.convert_to_numpy(w) for w in kmodel([feeds[x.name] for x in kmodel.inputs], training=False)]
    model = to_kcompat(kmodel, tmp_path, group)
    return model, {n: feeds[n] for n in model.input_names}, want, rows


@pytest.fixture(scope="module")
def built(keras, tmp_path_factory):
    return functools.cache(lambda group: _build(keras, group, tmp_path_factory.mktemp(group)))


def mismatches(rows, got, want, declared=None) -> list[str]:
    """Rows whose outputs differ from Keras's (values at the row's tolerance; dtype as kcompat declares)."""
    out = []
    for i, (r, ours, ref) in enumerate(zip(rows, got, want)):
        ours, ref = np.asarray(ours), np.asarray(ref)
        dtype = ref.dtype if declared is None else np.asarray(declared[i]).dtype
        if ours.shape != ref.shape or ours.dtype != dtype:
            out.append(f"{r.id}: {ours.dtype}{ours.shape} != {dtype}{ref.shape}")
        elif ref.dtype.kind == "f" and not np.allclose(ours, ref, atol=r.tol, rtol=r.tol, equal_nan=True):
            out.append(f"{r.id}: max |diff| {np.nanmax(np.abs(ours - ref)):.2e}")
        elif ref.dtype.kind != "f" and not np.array_equal(ours, ref):
            out.append(f"{r.id}: {(ours != ref).sum()} values differ")
    return out


@pytest.mark.parametrize("group,opset", EXPORTS)
def test_every_row_matches_keras(built, group, opset):
    model, feeds, want, rows = built(group)
    proto = to_onnx(model, opset)
    onnx.checker.check_model(proto, full_check=True)
    got = run_onnx(proto, feeds)
    assert len(got) == len(want) == len(rows)
    failures = mismatches(rows, got, want, model.predict(feeds))
    assert not failures, f"{group} at opset {opset}: " + "; ".join(failures)


@pytest.mark.parametrize("group", sorted(MIN_OPSET))
def test_older_opset_is_refused_by_name(built, group):
    with pytest.raises(UnsupportedError, match=f"Hashing.*from opset {MIN_OPSET[group]}"):
        to_onnx(built(group)[0], MIN_OPSET[group] - 1)


@pytest.mark.parametrize("group", [g for g in GROUPS if g.startswith("attention_")])
def test_attention_exports_import_back(built, group, tmp_path):
    """kcompat's ONNX of the attention layers reads back (op nodes and layers) and runs like Keras."""
    import kcompat
    model, feeds, want, rows = built(group)
    path = tmp_path / f"{group}.onnx"
    onnx.save(to_onnx(model), str(path))
    back = kcompat.load(str(path))
    assert not mismatches(rows, back.predict(feeds), want, model.predict(feeds))


def test_attention_forms(built):
    """MultiHeadAttention: Einsum projections and scores, one softmax (the Softmax op, or exp / sum over two
    attention axes); a dense-like EinsumDense is a MatMul; a causal mask is computed from the tensors (any
    sequence length)."""
    proto = to_onnx(built("attention_multi_head")[0], optimize=False)
    by_layer = Counter((n.name.split("/")[0], n.op_type) for n in proto.graph.node)
    layers = {name for name, _ in by_layer}
    mha = sorted(name for name in layers if name.startswith("multi_head_attention"))
    assert mha and all(by_layer[(name, "Einsum")] >= 5 for name in mha)
    assert all(by_layer[(name, "Softmax")] + by_layer[(name, "Exp")] == 1 for name in mha)
    assert any(by_layer[(name, "CumSum")] for name in mha)  # the causal rows: positions from the tensors
    model = built("attention_einsum")[0]
    proto = to_onnx(model, optimize=False)
    ops = {(n.name.split("/")[0], n.op_type) for n in proto.graph.node}
    dense_like = [ls.name for ls in model.graph.layers if ls.config.get("equation") == "ab,bc->ac"]
    assert dense_like and all((name, "MatMul") in ops and (name, "Einsum") not in ops for name in dense_like)


def test_resize_needs_a_known_image_size(keras, tmp_path):
    """Resizing exports as constant per-axis matrices: an unknown height or width is refused by name."""
    inp = keras.Input((None, None, 3))
    model = to_kcompat(keras.Model(inp, keras.layers.Resizing(4, 5, name="resize")(inp)), tmp_path)
    with pytest.raises(UnsupportedError, match="'resize' \\(Resizing\\).*known input height and width"):
        to_onnx(model)


def test_hashing_is_bit_exact_on_every_length(keras, tmp_path):
    """FarmHash (every string length 1..20, both signs, int64's extremes) and salted SipHash (0, 1, 2 full
    blocks), against TensorFlow's hashes, with many bins so a wrong hash shows."""
    values = np.array([[0, 7, -3, 42, -98, 123, 1234, -12345, 1234567, 12345678, 123456789, -1234567890,
                        10 ** 15, -(2 ** 62), 2 ** 63 - 1, -2 ** 63, 1234567890123456789, -123456789012345678]],
                      np.int64)
    inp = keras.Input((values.shape[1],), dtype="int64")
    outs = [keras.layers.Hashing(num_bins=2 ** 31 - 1, salt=salt)(inp) for salt in (None, [133, 7], 11)]
    kmodel = keras.Model(inp, outs)
    want = [np.asarray(w) for w in kmodel(values)]
    model = to_kcompat(kmodel, tmp_path)
    got = run_onnx(to_onnx(model), {model.input_names[0]: values})
    for g, w in zip(got, want):
        np.testing.assert_array_equal(g, w)
