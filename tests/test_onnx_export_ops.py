"""ONNX export of Keras 3 op nodes, run in onnxruntime against REAL Keras outputs.

The rows are test_ops.py's conformance tables (a row added there is exported here with no change to
this file) plus this file's tables, which reach every op exporter in formats/onnx/export/ops.py and ops_array.py on the values
where exports go wrong: ties and halves (Round is half to even), -0.0 (Keras's argmax puts it below
+0.0), nan / inf, tiny and huge log1p / expm1 arguments, negative operands of Mod / FloorDivide,
integer and bool operands (Keras's dtype rule), negative GetItem steps. Each table is one Keras model,
exported at opset 13 and at the default; outputs must match in shape and dtype, exactly for integer
and bool results, within 1e-5 otherwise (signs of zeros are not compared: onnxruntime's Where returns
+0.0 where it picks -0.0).
Also: every layer class and op kcompat knows has an exporter (bar a named list of refusals).
"""
from __future__ import annotations

import functools
import numpy as np
import pytest

from conftest import rand, to_kcompat
from kcompat.formats.onnx.export import registry
from kcompat.formats.onnx.export.context import ExportContext
from kcompat.formats.onnx.export.driver import to_onnx
from kcompat.layers import OP_REGISTRY, REGISTRY
from onnx_helpers import run_onnx
from test_layers_misc import BATCH, row

import test_ops as ops_tables

import onnx  # noqa: E402  (the dev install always has onnx and onnxruntime: a missing one fails)
import onnxruntime  # noqa: E402,F401
pytestmark = [pytest.mark.filterwarnings("ignore:overflow encountered:RuntimeWarning"),  # kcompat's expm1(100)
              pytest.mark.filterwarnings("ignore:divide by zero encountered:RuntimeWarning")]  # logsumexp(-inf)
OPSETS = [13, None]  # the oldest kcompat writes, and the default (the newest onnxruntime runs)
A = (4, 3)

# layer class -> why kcompat cannot export it exactly: kcompat/formats/onnx/export/registry.py's REFUSED, filled
# next to the exporters (``refuse_export``) and named by ``kcompat convert`` (none at present)
REFUSED = registry.REFUSED
# rows where kcompat's NumPy op (kcompat/layers/ops.py) differs from Keras; the ONNX export matches Keras
NUMPY_GAPS: dict[str, str] = {}


def data(*columns):
    """One input (BATCH, 4, 3) per column of listed special values, cycled."""
    return lambda seed: [np.resize(np.asarray(v, np.float32), BATCH * 12).reshape(BATCH, *A) for v in columns]


def ints(*columns):
    return lambda seed: [np.resize(np.asarray(v, np.int32), BATCH * 12).reshape(BATCH, *A) for v in columns]


HALVES = [0.5, 1.5, 2.5, -0.5, -1.5, -2.5, 2.4999, 0.0, -0.0, 3.5, -3.49, 1e-3]
SPECIAL = [np.nan, np.inf, -np.inf, 0.0, -0.0, 1.0, -1.0, 3e38, -1e-30, 0.5, 2.0, -7.0]
SIGNED = [0.0, -0.0, 1.0, -1.0, 2.5, -2.5, np.inf, -np.inf, 1e-20, -3.0, 0.7, -0.7]
TIES = [1.0, 1.0, 0.0, -0.0, -0.0, 0.0, -1.0, 3.0, 3.0, -5.0, -5.0, 2.0]
TINY = [1e-8, -1e-8, 1e-30, 0.0, -0.0, 1e-4, -0.3, -1.0, np.inf, 100.0, -100.0, 1e30]
INTS = [0, 1, -1, 7, -7, 3, -3, 10, -10, 2, 5, -6]

COMPARE_LOGIC = [
    row("equal_const", lambda k, x: k.ops.equal(x, 0.5), A, data=data(HALVES)),
    row("not_equal_tensors", lambda k, x, y: x != y, A, A, data=data(TIES, TIES[::-1])),
    row("greater", lambda k, x, y: k.ops.greater(x, y), A, A, data=data(TIES, TIES[::-1])),
    row("greater_equal", lambda k, x: x >= 0.0, A, data=data(SIGNED)),
    row("less_const_first", lambda k, x: k.ops.less(1.0, x), A, data=data(TIES)),
    row("int_vs_float_const", lambda k, x: k.ops.greater(x, 2.5), A, dtype="int32", data=ints(INTS)),
    row("int_vs_int_const", lambda k, x: k.ops.equal(x, 3), A, dtype="int32", data=ints(INTS)),
    row("logical_and_or_xor", lambda k, x, y: k.ops.logical_xor(k.ops.logical_and(x > 0, y > 0),
                                                                 k.ops.logical_or(x < -1, y)), A, A,
        data=data(TIES, SIGNED)),
    row("logical_not_float", lambda k, x: k.ops.logical_not(x), A, data=data(SPECIAL)),
    row("isnan", lambda k, x: k.ops.isnan(x), A, data=data(SPECIAL)),
    row("isinf", lambda k, x: k.ops.isinf(x), A, data=data(SPECIAL)),
    row("isfinite", lambda k, x: k.ops.isfinite(x), A, data=data(SPECIAL)),
    row("isfinite_int", lambda k, x: k.ops.isfinite(x), A, dtype="int32", data=ints(INTS)),
    row("where_int_branches", lambda k, x: k.ops.where(x > 0, k.ops.cast(x * 3, "int32"), 7), A),
    row("where_float_condition", lambda k, x, y: k.ops.where(x, y, -y), A, A, data=data(SPECIAL, TIES)),
    row("cast_float_to_int_truncates", lambda k, x: k.ops.cast(x * 2, "int32"), A, data=data(HALVES)),
    row("cast_to_bool", lambda k, x: k.ops.cast(x, "bool"), A, data=data(SIGNED)),
    row("cast_int_to_float", lambda k, x: k.ops.cast(x, "float32") / 4, A, dtype="int32", data=ints(INTS)),
    row("zeros_ones_like", lambda k, x: k.ops.zeros_like(x) + k.ops.ones_like(x, dtype="int32") * 2 - x, A,
        data=data(SPECIAL)),
    row("zeros_ones_like_bool", lambda k, x: k.ops.equal(k.ops.logical_or(k.ops.zeros_like(x, dtype="bool"), x > 0),
                                                         k.ops.ones_like(x > 1)), A, data=data(SIGNED)),
]

MATH = [
    row("log1p_tiny_and_huge", lambda k, x: k.ops.log1p(x), A, data=data(TINY)),
    row("expm1_tiny_and_huge", lambda k, x: k.ops.expm1(x), A, data=data(TINY)),
    row("exp2_log2_log10", lambda k, x: k.ops.exp2(x) + k.ops.log2(k.ops.abs(x) + 0.1)
        + k.ops.log10(k.ops.abs(x) + 0.1), A),
    row("log2_log10_exact_powers", lambda k, x: k.ops.log2(x) * k.ops.log10(x), A,
        data=data([1.0, 2.0, 4.0, 8.0, 10.0, 100.0, 1000.0, 0.5, 1024.0, 1e-3, 0.25, 64.0])),
    row("tan_sinh_cosh", lambda k, x: k.ops.tan(x) + k.ops.sinh(x) * k.ops.cosh(x), A),
    row("arcsin_arccos", lambda k, x: k.ops.arcsin(k.ops.tanh(x)) - k.ops.arccos(k.ops.tanh(x)), A),
    row("arctan_arcsinh_arctanh", lambda k, x: k.ops.arctan(x) + k.ops.arcsinh(x) + k.ops.arctanh(k.ops.tanh(x)), A),
    row("rsqrt_square", lambda k, x: k.ops.rsqrt(k.ops.square(x) + 0.1), A),
    row("trunc", lambda k, x: k.ops.trunc(x * 3), A),
    row("round_half_even", lambda k, x: k.ops.round(x), A, data=data(HALVES)),
    row("round_decimals", lambda k, x: k.ops.round(x * 7, decimals=1), A),
    row("round_negative_decimals", lambda k, x: k.ops.round(x * 300, decimals=-1), A),
    row("round_int_negative_decimals", lambda k, x: k.ops.round(x * 11, decimals=-1), A, dtype="int32",
        data=ints(INTS)),
    row("mod_float_signs", lambda k, x, y: k.ops.mod(x, y), A, A, data=data(SIGNED[2:6] * 3, [0.7, -0.7, 2.0] * 4)),
    row("mod_const", lambda k, x: x % -0.75, A),
    row("mod_int", lambda k, x: k.ops.mod(x, 3) + k.ops.mod(x, -4), A, dtype="int32", data=ints(INTS)),
    row("floor_divide_float", lambda k, x, y: k.ops.floor_divide(x, y), A, A,
        data=data(HALVES, [0.5, -0.5, 2.0, -3.0] * 3)),
    row("floor_divide_int", lambda k, x: k.ops.floor_divide(x, 3) * 10 + x // -4, A, dtype="int32",
        data=ints(INTS)),
    row("hypot", lambda k, x, y: k.ops.hypot(x, y), A, A, data=data(TIES, SIGNED[:6] * 2)),
    row("arctan2_quadrants_zeros_infs", lambda k, x, y: k.ops.arctan2(x, y), A, A,
        data=data(SIGNED, SIGNED[::-1])),
    row("arctan2_signed_zeros", lambda k, x, y: k.ops.arctan2(x, y), A, A,
        data=data([0.0, -0.0, 0.0, -0.0, 1.0, -1.0, 0.0, -0.0, np.inf, -np.inf, np.inf, -np.inf],
                  [0.0, 0.0, -0.0, -0.0, -0.0, -0.0, -1.0, -1.0, np.inf, np.inf, -np.inf, -np.inf])),
    row("arctan2_random", lambda k, x, y: k.ops.arctan2(x, y), A, A),
    row("int_arithmetic", lambda k, x: k.ops.maximum(x * 2 - 1, -5) + x ** 2 + k.ops.minimum(3, x), A, dtype="int32",
        data=ints(INTS)),
    row("int_float_unary", lambda k, x: k.ops.exp(x / 5) + k.ops.sqrt(k.ops.abs(x)) + k.ops.floor(x)
        - k.ops.ceil(x / 3), A, dtype="int32", data=ints(INTS)),
    row("int_true_divide_int", lambda k, x: k.ops.true_divide(x, k.ops.abs(x) + 1), A, dtype="int32",
        data=ints(INTS)),
]

REDUCE_INDEX = [
    row("prod_all_keepdims", lambda k, x: k.ops.prod(x, keepdims=True), A),
    row("prod_int", lambda k, x: k.ops.prod(x, axis=-1), A, dtype="int32", data=ints(INTS)),
    row("var_all", lambda k, x: k.ops.var(x), A),
    row("std_axes_keepdims", lambda k, x: k.ops.std(x, axis=(1, 2), keepdims=True), A),
    row("var_int", lambda k, x: k.ops.var(x, axis=1), A, dtype="int32", data=ints(INTS)),
    row("logsumexp_all", lambda k, x: k.ops.logsumexp(x), A),
    row("logsumexp_keepdims_infs", lambda k, x: k.ops.logsumexp(x, axis=-1, keepdims=True), A,
        data=data([-np.inf, -np.inf, -np.inf, 1.0, np.inf, 2.0, 80.0, 90.0, 100.0, -3.0, 0.0, 1.0])),
    row("argmax_ties_minus_zero", lambda k, x: k.ops.argmax(x, axis=-1), A, data=data(TIES)),
    row("argmin_ties_minus_zero", lambda k, x: k.ops.argmin(x, axis=1, keepdims=True), A, data=data(TIES)),
    row("argmax_all", lambda k, x: k.ops.argmax(x), A),
    row("argmin_all_keepdims", lambda k, x: k.ops.argmin(x, keepdims=True), A),
    row("argmax_int", lambda k, x: k.ops.argmax(x, axis=-1), A, dtype="int32", data=ints(INTS)),
    row("any_all_axes", lambda k, x: k.ops.any(x), A, data=data(TIES)),
    row("all_float_keepdims", lambda k, x: k.ops.all(x, axis=-1, keepdims=True), A, data=data(TIES)),
    row("amax_amin", lambda k, x: k.ops.amax(x, axis=1) - k.ops.amin(x, axis=1), A),
    row("stack_three_last", lambda k, x, y: k.ops.stack([x, y, x * 2], axis=-1), A, A),
    row("stack_axis0_moves_batch", lambda k, x, y: k.ops.stack([x, y]), A, A),
    row("getitem_reverse", lambda k, x: x[..., ::-1], A),
    row("getitem_negative_steps", lambda k, x: x[:, 3:0:-2, -1::-1], A),
    row("getitem_batch_and_last", lambda k, x: x[1:, -2:], A),
    row("getitem_none_first", lambda k, x: x[None, ...], A),
    row("getitem_int_ellipsis_none", lambda k, x: x[:, 1, ..., None], A),
    row("getitem_middle_ellipsis", lambda k, x: x[:, ..., None, 0], (2, 4, 3)),
    row("getitem_int_batch", lambda k, x: x[-1], A),
]

NN_OPS = [  # the keras.ops.nn activations test_ops.py leaves out (their exporters are onnx_layers.py's)
    row("celu_selu", lambda k, x: k.ops.celu(x, alpha=0.5) + k.ops.selu(x), A, data=data(SIGNED[:6], TINY[:6])),
    row("shrinks", lambda k, x: k.ops.hard_shrink(x, threshold=0.3) + k.ops.soft_shrink(x) + k.ops.tanh_shrink(x), A),
    row("hard_silu_tanh", lambda k, x: k.ops.hard_silu(x * 3) + k.ops.hard_tanh(x * 2), A),
    row("sparse_plus_sigmoid", lambda k, x: k.ops.sparse_plus(x * 2) + k.ops.sparse_sigmoid(x * 2), A),
    row("squareplus_softsign_log_sigmoid", lambda k, x: k.ops.squareplus(x, b=2) + k.ops.softsign(x)
        + k.ops.log_sigmoid(x), A),
    row("abs_class", lambda k, x: k.src.ops.numpy.Abs()(x), A),  # ops.abs makes Absolute
]

EXTRA = {"compare_logic": COMPARE_LOGIC, "math": MATH, "reduce_index": REDUCE_INDEX, "nn_ops": NN_OPS}
GROUPS = {**ops_tables.GROUPS, **EXTRA}


def _build(keras, group, tmp_path):
    """One Keras model per table: (kcompat model, inputs by name, Keras outputs, kcompat outputs, row ids)."""
    rows = [p.values[0] for p in GROUPS[group]]
    inputs, outputs, feeds = [], [], {}
    for i, r in enumerate(rows):
        xs = [keras.Input(s, name=f"{r.id}_in{j}", dtype=r.dtype) for j, s in enumerate(r.shapes)]
        arrays = r.data(i) if r.data else [rand((BATCH, *s), seed=100 * i + j) for j, s in enumerate(r.shapes)]
        feeds.update({x.name: a for x, a in zip(xs, arrays)})
        inputs += xs
        outputs.append(r.build(keras, *xs))
    kmodel = keras.Model(inputs, outputs, name=group)
    want = [keras.ops.convert_to_numpy(w) for w in kmodel([feeds[x.name] for x in kmodel.inputs])]
    model = to_kcompat(kmodel, tmp_path, group)
    return model, feeds, want, model.predict(feeds), [r.id for r in rows]


@pytest.fixture(scope="module")
def built(keras, tmp_path_factory):
    """``built(group)``: the group's model built and exported once per module."""
    return functools.cache(lambda group: _build(keras, group, tmp_path_factory.mktemp(group)))


def _mismatches(rids, got, want) -> list[str]:
    out = []
    for rid, ours, ref in zip(rids, got, want):
        ours, ref = np.asarray(ours), np.asarray(ref)
        if ours.shape != ref.shape or ours.dtype != ref.dtype:
            out.append(f"{rid}: {ours.dtype}{ours.shape} != Keras {ref.dtype}{ref.shape}")
        else:
            same = np.isclose(ours, ref, atol=1e-5, rtol=1e-5, equal_nan=True) if ref.dtype.kind == "f" else ours == ref
            if not same.all():
                out.append(f"{rid}: {(~same).sum()} values differ, e.g. {ours[~same][0]} != Keras {ref[~same][0]}")
    return out


MIN_OPSET = {"bitwise": 18, "float8": 19}  # groups whose ops ONNX has from a later opset than kcompat's oldest (13)
EXPORTS = [(g, o) for g in GROUPS for o in OPSETS if o is None or o >= MIN_OPSET.get(g, 0)]


@pytest.mark.parametrize("group,opset", EXPORTS)
def test_every_row_matches_keras(built, group, opset):
    model, feeds, want, _, rids = built(group)
    proto = to_onnx(model, opset)
    onnx.checker.check_model(proto, full_check=True)
    got = run_onnx(proto, {name: feeds[name] for name in model.input_names})
    assert len(got) == len(want) == len(rids)
    failures = _mismatches(rids, got, want)
    assert not failures, f"{group} at opset {opset}: " + "; ".join(failures)


@pytest.mark.parametrize("group", list(MIN_OPSET))
def test_older_opset_is_refused_by_name(built, group):
    """Below the opset an op needs, the export is one clean error naming the op and the opset."""
    from kcompat.errors import UnsupportedError
    model = built(group)[0]
    with pytest.raises(UnsupportedError, match=f"from opset {MIN_OPSET[group]}"):
        to_onnx(model, MIN_OPSET[group] - 1)


def test_unoptimized_export_keeps_every_op_node(built):
    model, feeds, want, _, rids = built("reduce_index")
    proto = to_onnx(model, optimize=False)
    made = {o for n in proto.graph.node for o in n.output}
    assert {ls.name for ls in model.spec.layers} - set(model.input_names) <= made
    assert not _mismatches(rids, run_onnx(proto, {n: feeds[n] for n in model.input_names}), want)


@pytest.mark.parametrize("group", list(EXTRA))
def test_extra_rows_kcompat_numpy_matches_keras(built, group):
    """This file's rows are conformance rows too: kcompat's NumPy ops against Keras."""
    _, _, want, got, rids = built(group)
    failures = _mismatches(rids, got, want)
    unexpected = [f for f in failures if f.split(":")[0] not in NUMPY_GAPS]
    assert not unexpected, "; ".join(unexpected)
    fixed = {rid for rid in NUMPY_GAPS if rid in rids} - {f.split(":")[0] for f in failures}
    assert not fixed, f"kcompat now matches Keras on {sorted(fixed)}: drop them from NUMPY_GAPS"


def test_every_op_is_exercised(built):
    """Each op kcompat knows (and each op exporter) appears in at least one table."""
    seen = {ls.class_name for g in GROUPS for ls in built(g)[0].spec.layers}
    assert not sorted((set(OP_REGISTRY) | set(registry.OPS)) - seen)


def test_every_layer_and_op_has_an_exporter():
    """A layer or op kcompat runs but cannot export fails here: add its exporter (or a reason to REFUSED).
    Layer classes are checked by canonical name (their aliases share the exporter); ops by op name."""
    layers = {cls.class_name for cls in REGISTRY.values()} - {"InputLayer"}
    missing = sorted((layers - set(registry.LAYERS)) | (set(OP_REGISTRY) - set(registry.OPS)))
    assert not [m for m in missing if m not in REFUSED]
    exported = set(registry.LAYERS) | set(registry.OPS)
    assert not sorted(set(REFUSED) & exported), "an exporter exists: drop it from REFUSED"
    assert not sorted(set(registry.LAYERS) - layers), "an exporter for a layer class kcompat does not have"
    assert not sorted(set(registry.OPS) - set(OP_REGISTRY)), "an exporter for an op kcompat does not have"


def test_boolean_and_integer_outputs_are_typed(built):
    """Graph outputs carry the dtype Keras gives (bool, int32), not float32."""
    model, *_ = built("reduce_index")
    proto = to_onnx(model)
    types = {o.name: o.type.tensor_type.elem_type for o in proto.graph.output}
    names = dict(zip(built("reduce_index")[4], [r.layer for r in model.spec.outputs]))
    assert types[names["argmax_int"]] == onnx.TensorProto.INT32
    assert types[names["any_all_axes"]] == onnx.TensorProto.BOOL
    assert types[names["var_int"]] == onnx.TensorProto.FLOAT


def test_op_nodes_after_a_conv_with_the_transpose_pass(keras, tmp_path):
    """Op nodes on an NHWC conv output: the layout Transposes move only where each op stays exact."""
    L, ops = keras.layers, keras.ops
    x_in = keras.Input((6, 5, 3))
    y = L.Conv2D(4, 3, padding="same")(x_in)
    outs = [ops.argmax(y, axis=-1), y[:, ::-1, 1:, ::2], ops.prod(ops.abs(y) + 0.5, axis=(1, 2)),
            ops.logsumexp(y, axis=-1), ops.any(y > 1.0, axis=-1), ops.stack([y, ops.mod(y, 0.3)], axis=1),
            ops.where(ops.isfinite(y), ops.round(y * 4), 0.0), ops.var(y, axis=1, keepdims=True)]
    kmodel = keras.Model(x_in, outs)
    x = rand((2, 6, 5, 3), seed=5)
    want = [keras.ops.convert_to_numpy(w) for w in kmodel(x)]
    model = to_kcompat(kmodel, tmp_path)
    for opset in OPSETS:
        got = run_onnx(to_onnx(model, opset), {model.input_names[0]: x})
        assert not _mismatches([f"out{i}" for i in range(len(outs))], got, want)


def test_where_without_branches_is_refused():
    from kcompat.errors import UnsupportedError
    from kcompat.layers import make_layer
    ctx = ExportContext(13)
    layer = make_layer("Where", {"name": "w"}, "w", is_op=True)
    with pytest.raises(UnsupportedError, match="x1 / x2"):
        registry.OPS["Where"](ctx, layer, ["c"], [])
