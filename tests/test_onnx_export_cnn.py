"""ONNX export of conv, pooling, normalization, reshaping, merging and preprocessing layers,
run in onnxruntime against REAL Keras outputs; and the Transpose pass on CNNs.

The rows are the layer conformance tables of test_layers_conv.py and test_layers_misc.py, so
every configuration kcompat's NumPy layers are checked on is exported too. Each table is one
Keras model (one branch per row), saved as .keras, loaded by kcompat, exported at opset 13 and
at the default opset (Transpose pass on; a few tables with it off too), run once per export.
A row added to those tables is exported here with no change to this file.

Tolerance: 1e-4 absolute and relative for convolutions (sums of up to k*k*C products in
different orders), 1e-5 absolute / 1e-4 relative elsewhere (the ONNX normalization ops
compute their statistics in their own order).
"""
from __future__ import annotations

import functools
from collections import Counter

import numpy as np
import pytest

from conftest import rand, to_kcompat
from kcompat.formats.onnx.export.driver import to_onnx
from onnx_helpers import run_onnx

import test_layers_conv as conv_tables
import test_layers_misc as misc_tables

import onnx  # noqa: E402  (the dev install always has onnx and onnxruntime: a missing one fails)
import onnxruntime  # noqa: E402,F401
pytestmark = pytest.mark.filterwarnings("ignore:You passed `rms_scaling=True`:UserWarning")
OPSETS = [13, None]  # the oldest kcompat writes, and the default (the newest onnxruntime runs)
BATCH = 2


def _conv_rows(rows):
    """test_layers_conv rows (id, class, kwargs, shape) as (id, build, shapes, data)."""
    out = []
    for rid, cls, kwargs, shape in rows:
        def build(keras, x, cls=cls, kwargs=kwargs, rid=rid):
            return getattr(keras.layers, cls)(name=rid, **kwargs)(x)
        out.append((rid, build, [shape], "float32", lambda s, shape=shape: [rand((BATCH, *shape), seed=s)]))
    return out


def _misc_rows(params):
    out = []
    for p in params:
        r = p.values[0]
        data = r.data or (lambda s, shapes=r.shapes: [rand((misc_tables.BATCH, *sh), seed=s + j)
                                                      for j, sh in enumerate(shapes)])
        out.append((r.id, r.build, r.shapes, r.dtype, data))
    return out


GROUPS = {**{g: ("conv", rows) for g, rows in conv_tables.GROUPS.items()},
          **{g: ("misc", rows) for g, rows in misc_tables.GROUPS.items()}}


def _build(keras, group, tmp_path):
    """One Keras model per table; returns (kcompat model, inputs by name, Keras outputs by output name)."""
    kind, table = GROUPS[group]
    rows = _conv_rows(table) if kind == "conv" else _misc_rows(table)
    inputs, outputs, data = [], [], {}
    for i, (rid, build, shapes, dtype, make) in enumerate(rows):
        xs = [keras.Input(s, name=f"{rid}_in{j}", dtype=dtype) for j, s in enumerate(shapes)]
        data.update({x.name: a for x, a in zip(xs, make(100 * i))})
        inputs += xs
        outputs.append(build(keras, *xs))
    kmodel = keras.Model(inputs, outputs, name=group)
    misc_tables.randomize(kmodel)
    want = kmodel([data[x.name] for x in kmodel.inputs], training=False)
    model = to_kcompat(kmodel, tmp_path, group)
    return model, data, [keras.ops.convert_to_numpy(w) for w in want], [r[0] for r in rows]


@pytest.fixture(scope="module")
def built(keras, tmp_path_factory):
    """``built(group)``: the group's model built and exported once per module."""
    return functools.cache(lambda group: _build(keras, group, tmp_path_factory.mktemp(group)))


def _check_group(built, group, opset, optimize):
    model, data, want, rids = built(group)
    proto = to_onnx(model, opset, optimize=optimize)
    onnx.checker.check_model(proto, full_check=True)
    feeds = {name: data[name] for name in model.input_names}
    got = run_onnx(proto, feeds)
    assert len(got) == len(want) == len(rids)
    tol = 1e-4 if GROUPS[group][0] == "conv" else 1e-5
    failures = []
    for rid, ours, ref in zip(rids, got, want):
        if ours.shape != ref.shape:
            failures.append(f"{rid}: shape {ours.shape} != Keras {ref.shape}")
        elif ref.dtype.kind == "f" and not np.allclose(ours, ref, atol=tol, rtol=1e-4):
            failures.append(f"{rid}: max |diff| {np.max(np.abs(ours - ref)):.2e}")
        elif ref.dtype.kind != "f" and not np.array_equal(ours, ref):
            failures.append(f"{rid}: values differ")
    assert not failures, f"{group} at opset {opset}, optimize={optimize}: " + "; ".join(failures)
    return proto


@pytest.mark.parametrize("opset", OPSETS)
@pytest.mark.parametrize("group", list(GROUPS))
def test_every_row_matches_keras(built, group, opset):
    _check_group(built, group, opset, optimize=True)


@pytest.mark.parametrize("group", ["conv", "transpose", "normalization", "reshaping"])
def test_unoptimized_export_keeps_every_layer_and_matches(built, group):
    proto = _check_group(built, group, None, optimize=False)
    made = {o for n in proto.graph.node for o in n.output}
    model = built(group)[0]
    assert {ls.name for ls in model.spec.layers} - set(model.input_names) <= made


@pytest.mark.parametrize("opset, forms", [
    (13, {"ln_last_axis": "ReduceMean", "rmsnorm_last": "ReduceMean", "gn_groups2": "ReduceMean"}),
    (17, {"ln_last_axis": "LayerNormalization", "rmsnorm_last": "ReduceMean", "gn_groups2": "ReduceMean"}),
    (21, {"ln_last_axis": "LayerNormalization", "gn_groups2": "GroupNormalization"}),
    (23, {"rmsnorm_last": "RMSNormalization", "ln_axes_1_2": "LayerNormalization"}),
])
def test_normalization_forms_per_opset(built, opset, forms):
    proto = _check_group(built, "normalization", opset, optimize=True)
    model, _, _, rids = built("normalization")
    names = dict(zip(rids, [r.layer for r in model.spec.outputs]))  # row id -> its Keras layer's name
    for rid, op in forms.items():
        layer = names[rid]
        assert op in [n.op_type for n in proto.graph.node if n.name.split("/")[0] == layer], (rid, opset)


def test_layer_forms(built):
    """One ONNX op where ONNX has the layer; TF 'same' and Keras's transposed-conv shapes as explicit pads."""
    proto = to_onnx(built("conv")[0], optimize=False)
    nodes = {n.name: n for n in proto.graph.node}
    attrs = lambda name: {a.name: onnx.helper.get_attribute_value(a) for a in nodes[name].attribute}  # noqa: E731
    assert attrs("conv2d_same_strides23_odd/Conv")["pads"] == [0, 0, 1, 0]  # odd pixel after, TF-style
    assert attrs("conv1d_causal_dilation2_relu/Conv")["pads"] == [4, 0]
    assert attrs("conv2d_groups2_channels_first/Conv")["group"] == 2
    assert "conv2d_groups2_channels_first/Transpose" not in nodes  # channels_first: no layout change
    proto = to_onnx(built("transpose")[0], optimize=False)
    nodes = {n.name: n for n in proto.graph.node}
    assert attrs("conv1dT_kernel_smaller_than_stride/ConvTranspose")["output_padding"] == [1]
    proto = to_onnx(built("pooling")[0], optimize=False)
    nodes = {n.name: n for n in proto.graph.node}
    assert attrs("avgpool2d_same_excludes_padding/AveragePool")["count_include_pad"] == 0
    ops = Counter(n.op_type for n in to_onnx(built("identity")[0]).graph.node)
    assert ops["Identity"] == 9  # one per identity layer, named after it


# ------------------------------------------------------------------ whole CNNs and the Transpose pass
def mnist_cnn(keras):
    L = keras.layers
    return keras.Sequential([keras.Input((28, 28, 1)), L.Conv2D(8, 3, activation="relu"), L.MaxPooling2D(),
                             L.Conv2D(16, 3, activation="relu"), L.MaxPooling2D(), L.Flatten(), L.Dropout(0.5),
                             L.Dense(10, activation="softmax")], name="mnist_cnn")


def resnet_block(keras):
    """Conv-BN-ReLU stem, Conv-BN-ReLU-Conv-BN + identity, Add, ReLU; a strided projection block; GAP; Dense."""
    L = keras.layers

    def block(x, filters, stride):
        y = L.ReLU()(L.BatchNormalization()(L.Conv2D(filters, 3, strides=stride, padding="same")(x)))
        y = L.BatchNormalization()(L.Conv2D(filters, 3, padding="same")(y))
        if stride != 1:
            x = L.BatchNormalization()(L.Conv2D(filters, 1, strides=stride)(x))
        return L.ReLU()(L.Add()([x, y]))

    x_in = keras.Input((15, 15, 3))
    x = L.ReLU()(L.BatchNormalization()(L.Conv2D(8, 3, padding="same")(x_in)))
    x = block(block(x, 8, 1), 12, 2)
    return keras.Model(x_in, L.Dense(5)(L.GlobalAveragePooling2D()(x)), name="resnet_block")


def layout_pipeline(keras):
    """A channels_last CNN through every op the pass moves Transposes across."""
    L = keras.layers
    x_in = keras.Input((10, 10, 3))
    x = L.Conv2D(6, 3, padding="same")(x_in)
    x = L.PReLU(shared_axes=[1, 2])(x)
    x = L.Rescaling(scale=[0.5, 1.0, 2.0, 1.5, 1.0, 0.5], offset=0.1)(x)
    x = L.ZeroPadding2D(((1, 0), (2, 1)))(x)
    x = L.Cropping2D(((0, 1), (1, 1)))(x)
    x = L.UpSampling2D(2)(x)
    y = L.DepthwiseConv2D(3, padding="same", activation="relu6")(x)
    x = L.Concatenate()([x, y])
    x = L.SeparableConv2D(8, 3, strides=2, padding="same")(x)
    x = L.AveragePooling2D(3, strides=2, padding="same")(x)
    x = L.Multiply()([x, L.Activation("sigmoid")(x)])
    a = L.Softmax(axis=-1)(x)
    b = L.GlobalMaxPooling2D(keepdims=True)(x)
    x = L.Add()([a, b])
    x = L.Conv2DTranspose(4, 3, strides=2, padding="same")(x)
    return keras.Model(x_in, [L.GlobalAveragePooling2D()(x), x], name="layout_pipeline")


CNNS = {"mnist_cnn": (mnist_cnn, (28, 28, 1), 2), "resnet_block": (resnet_block, (15, 15, 3), 1),
        "layout_pipeline": (layout_pipeline, (10, 10, 3), 2)}


@pytest.fixture(scope="module")
def cnn(keras, tmp_path_factory):
    cache = {}

    def get(name):
        if name not in cache:
            build, shape, _ = CNNS[name]
            keras.utils.set_random_seed(0)
            kmodel = build(keras)
            misc_tables.randomize(kmodel, seed=3)
            folder = tmp_path_factory.mktemp(name)
            x = rand((3, *shape), seed=4)
            want = [np.asarray(w) for w in kmodel(x, training=False)] if len(kmodel.outputs) > 1 else \
                [np.asarray(kmodel(x, training=False))]
            kmodel.save(folder / f"{name}.keras")
            cache[name] = (to_kcompat(kmodel, folder, name), x, want, folder / f"{name}.keras")
        return cache[name]
    return get


@pytest.mark.parametrize("opset", OPSETS)
@pytest.mark.parametrize("name", list(CNNS))
def test_cnn_runs_nchw_inside(cnn, name, opset):
    model, x, want, _ = cnn(name)
    proto = to_onnx(model, opset)
    ops = Counter(n.op_type for n in proto.graph.node)
    assert ops["Transpose"] <= CNNS[name][2], ops  # the input's NHWC -> NCHW, before Flatten, graph outputs
    got = run_onnx(proto, {model.input_names[0]: x})
    for ours, ref in zip(got, want):
        np.testing.assert_allclose(ours, ref, atol=1e-4, rtol=1e-4)
    unoptimized = Counter(n.op_type for n in to_onnx(model, opset, optimize=False).graph.node)
    assert unoptimized["Transpose"] > ops["Transpose"]
    assert [o.name for o in proto.graph.output] == [r.layer for r in model.spec.outputs]


def test_mnist_transposes_sit_at_the_boundaries(cnn):
    proto = to_onnx(cnn("mnist_cnn")[0])
    order = [n.op_type for n in proto.graph.node if n.op_type not in ("Identity",)]
    assert order == ["Transpose", "Conv", "Relu", "MaxPool", "Conv", "Relu", "MaxPool", "Transpose", "Flatten",
                     "Gemm", "Softmax"]
    assert proto.graph.node[0].input[0] == proto.graph.input[0].name


@pytest.mark.parametrize("name", ["mnist_cnn", "resnet_block"])
def test_verify_with_onnxruntime_reference(cnn, name):
    from kcompat.verify.run import verify_file
    report = verify_file(str(cnn(name)[3]), reference="onnxruntime")
    assert report.ok, report.first_mismatch
    compared = {d.name for d in report.layers}
    assert {ls.name for ls in cnn(name)[0].spec.layers if ls.class_name != "InputLayer"} <= compared


def test_pass_cancels_and_composes_transposes():
    """Transpose pairs on their own: identity pairs vanish, others compose; graph outputs keep their names."""
    from onnx import TensorProto, helper

    from kcompat.formats.onnx.export.optimize import optimize_transposes
    n = helper.make_node
    nodes = [n("Transpose", ["x"], ["a"], name="t1", perm=[0, 2, 3, 1]),
             n("Transpose", ["a"], ["b"], name="t2", perm=[0, 3, 1, 2]),  # cancels t1
             n("Relu", ["b"], ["c"], name="r"),
             n("Transpose", ["a"], ["d"], name="t3", perm=[0, 2, 1, 3]),  # composes with t1
             n("Transpose", ["x"], ["e"], name="t4", perm=[0, 2, 3, 1]),
             n("ReduceMax", ["e"], ["f"], name="m", axes=[1, 2], keepdims=0),  # (N, C): no Transpose after
             n("Transpose", ["x"], ["y"], name="t5", perm=[0, 1, 2, 3])]  # identity, but a graph output
    out, _ = optimize_transposes(nodes, [], {"x", "c", "d", "f", "y"})
    by_name = {node.name: node for node in out}
    attr = lambda node, key: {a.name: helper.get_attribute_value(a) for a in by_name[node].attribute}[key]  # noqa: E731
    assert by_name["r"].input[0] == "x" and "t2" not in by_name and "t1" not in by_name
    assert attr("t3", "perm") == [0, 3, 2, 1] and by_name["t3"].input[0] == "x"
    assert attr("m", "axes") == [2, 3] and by_name["m"].input[0] == "x" and by_name["m"].output[0] == "f"
    assert "t4" not in by_name
    assert by_name["t5"].op_type == "Identity"
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 2, 3, 4])
    outs = [helper.make_tensor_value_info(v, TensorProto.FLOAT, None) for v in "cdfy"]
    graph = helper.make_graph(out, "g", [x], outs)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    data = rand((1, 2, 3, 4))
    c, d, f, y = run_onnx(model, {"x": data})
    np.testing.assert_array_equal(c, np.maximum(data, 0))
    np.testing.assert_array_equal(d, data.transpose(0, 2, 3, 1).transpose(0, 2, 1, 3))
    np.testing.assert_array_equal(f, data.max(axis=(2, 3)))
    np.testing.assert_array_equal(y, data)


def test_unknown_spatial_sizes(keras, tmp_path):
    """Input (None, None, C): 'same' windows become auto_pad SAME_UPPER (TF's rule); one export runs any size."""
    L = keras.layers
    x_in = keras.Input((None, None, 3))
    x = L.Conv2D(4, 3, strides=2, padding="same", activation="relu")(x_in)
    x = L.MaxPooling2D(3, strides=2, padding="same")(x)
    y = L.AveragePooling2D(2, padding="same")(x)
    y = L.DepthwiseConv2D(3, padding="same")(y)
    y = L.Conv2DTranspose(3, 3, strides=2, padding="same")(y)
    y = L.UpSampling2D(2, interpolation="bilinear")(y)
    kmodel = keras.Model(x_in, [y, L.GlobalAveragePooling2D()(x)])
    misc_tables.randomize(kmodel, seed=2)
    model = to_kcompat(kmodel, tmp_path)
    proto = to_onnx(model)
    assert "auto_pad" in {a.name for n in proto.graph.node if n.op_type == "Conv" for a in n.attribute}
    for size in [(7, 9), (10, 6)]:
        x = rand((2, *size, 3), seed=size[0])
        for ours, ref in zip(run_onnx(proto, {model.input_names[0]: x}), kmodel(x, training=False)):
            np.testing.assert_allclose(ours, np.asarray(ref), atol=1e-4, rtol=1e-4)
