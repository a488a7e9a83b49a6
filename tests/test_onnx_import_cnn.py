"""ONNX import of PyTorch-style CNNs (NCHW), built with onnx.helper at opsets 6, 11, 13 and newest.

Every graph: kcompat imports it and matches onnxruntime (onnx.reference below opset 7) on the
original file; the import, written as .keras by kcompat and loaded by REAL Keras, matches too;
``verify_file`` on the .onnx passes (Keras reference, and onnxruntime where it runs the opset).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from onnx_helpers import run_onnx

import kcompat
from kcompat.errors import UnsupportedError
from kcompat.formats.onnx.export.driver import default_opset, write_onnx
from kcompat.formats.onnx.import_.driver import read_onnx
from kcompat.model import Model
from kcompat.verify.keras import KerasReference
from kcompat.verify.reference import Reference
from kcompat.verify.run import verify_file

import onnx  # noqa: E402  (the dev install always has onnx and onnxruntime: a missing one fails)
import onnxruntime  # noqa: E402,F401
from onnx import TensorProto, helper, numpy_helper  # noqa: E402

TOL = 1e-4
OPSETS = [6, 11, 13, None]  # None: the newest onnxruntime runs


# ------------------------------------------------------------------ building PyTorch-style graphs
class Graph:
    """Nodes named like torch.onnx (``/conv1/Conv``), initializers, NCHW inputs with a dynamic batch."""

    def __init__(self, opset: int, seed: int = 0):
        self.opset, self.nodes, self.inits, self.rng = opset, [], {}, np.random.default_rng(seed)
        self.count = 0

    def w(self, name: str, *shape, scale=0.5, value=None) -> str:
        self.inits[name] = (np.asarray(value, np.float32) if value is not None
                            else self.rng.normal(0, scale, shape).astype(np.float32))
        return name

    def const(self, name: str, value, dtype=np.int64) -> str:
        self.inits[name] = np.asarray(value, dtype)
        return name

    def op(self, scope: str, op_type: str, *inputs: str, outputs: int = 1, **attrs) -> str:
        name = f"/{scope}/{op_type}"
        outs = [f"{name}_output_{i}" for i in range(outputs)]
        self.nodes.append(helper.make_node(op_type, list(inputs), outs, name=name, **attrs))
        return outs[0]

    def conv(self, scope, x, cin, cout, k, bias=True, group=1, **attrs) -> str:
        k = (k, k) if isinstance(k, int) else tuple(k)
        w = self.w(f"{scope}.weight", cout, cin // group, *k)
        b = [self.w(f"{scope}.bias", cout)] if bias else []
        return self.op(scope, "Conv", x, w, *b, group=group, kernel_shape=list(k), **attrs)

    def bn(self, scope, x, c) -> str:
        extra = {"spatial": 1, "is_test": 1} if self.opset < 7 else {}
        ins = [self.w(f"{scope}.weight", c), self.w(f"{scope}.bias", c),
               self.w(f"{scope}.running_mean", c, scale=0.3),
               self.w(f"{scope}.running_var", value=self.rng.uniform(0.5, 2.0, c))]
        return self.op(scope, "BatchNormalization", x, *ins, epsilon=1e-5, momentum=0.9, **extra)

    def gemm(self, scope, x, fin, fout) -> str:
        extra = {"broadcast": 1} if self.opset < 7 else {}
        return self.op(scope, "Gemm", x, self.w(f"{scope}.weight", fout, fin, scale=0.1),
                       self.w(f"{scope}.bias", fout), transB=1, **extra)

    def pad(self, scope, x, pads, mode="constant", value=0.0, axes=None) -> str:
        if self.opset < 11:
            return self.op(scope, "Pad", x, pads=pads, mode=mode, value=value)
        self.count += 1
        ins = [x, self.const(f"{scope}.pads{self.count}", pads)]
        if mode == "constant" and value:
            ins.append(self.const(f"{scope}.value{self.count}", value, np.float32))
        if axes is not None:
            ins += [""] * (3 - len(ins)) + [self.const(f"{scope}.axes{self.count}", axes)]
        return self.op(scope, "Pad", *ins, mode=mode)

    def model(self, inputs: dict, outputs: list[str], batch="batch"):
        """inputs: name -> (shape without batch, dtype); outputs renamed output0, output1..."""
        renamed = []
        for i, out in enumerate(outputs):
            self.nodes.append(helper.make_node("Identity", [out], [f"output{i}"], name=f"/out{i}/Identity"))
            renamed.append(helper.make_tensor_value_info(f"output{i}", TensorProto.FLOAT, None))
        graph_inputs = [helper.make_tensor_value_info(n, helper.np_dtype_to_tensor_dtype(np.dtype(dt)),
                                                      [batch, *shape]) for n, (shape, dt) in inputs.items()]
        ir = 3 if self.opset < 7 else helper.find_min_ir_version_for([helper.make_opsetid("", self.opset)])
        if ir < 4:  # IR 3: initializers are graph inputs too
            graph_inputs += [helper.make_tensor_value_info(k, helper.np_dtype_to_tensor_dtype(v.dtype), v.shape)
                             for k, v in self.inits.items()]
        tensors = [numpy_helper.from_array(v, k) for k, v in self.inits.items()]
        graph = helper.make_graph(self.nodes, "torch_cnn", graph_inputs, renamed, tensors)
        proto = helper.make_model(graph, opset_imports=[helper.make_opsetid("", self.opset)],
                                  producer_name="pytorch")
        proto.ir_version = ir
        inferred = onnx.shape_inference.infer_shapes(proto)  # graph outputs typed with their shapes, as torch does
        del proto.graph.output[:]
        for v in inferred.graph.output:
            if not v.type.tensor_type.HasField("shape"):  # function ops (GroupNormalization): ask onnx.reference
                from onnx.reference import ReferenceEvaluator
                value = ReferenceEvaluator(proto).run([v.name], _inputs(inputs, 0))[0]
                v = helper.make_tensor_value_info(v.name, TensorProto.FLOAT, [batch, *value.shape[1:]])
            proto.graph.output.append(v)
        onnx.checker.check_model(proto)
        return proto


def _image(g: Graph, *shape):
    return {"input": (shape, np.float32)}


def g_conv(g: Graph):
    """Asymmetric explicit pads (ZeroPadding), pads equal to 'same', dilations, auto_pad SAME_LOWER."""
    x = g.conv("c1", "input", 3, 4, 3, pads=[0, 1, 2, 1], strides=[2, 2])  # 9x8 -> explicit padding
    y = g.conv("c2", x, 4, 6, 3, bias=False, pads=[1, 1, 1, 1])  # 'same'
    y = g.conv("c3", y, 6, 4, (3, 2), pads=[2, 0, 2, 1], dilations=[2, 1])  # dilated 'same'
    z = g.conv("c4", y, 4, 5, 3, auto_pad="SAME_LOWER", strides=[2, 2])  # odd pixel before
    v = g.conv("c5", y, 4, 3, 3, auto_pad="SAME_UPPER", strides=[2, 2])  # TF's 'same'
    return _image(g, 3, 9, 8), [y, z, v]


def g_groups(g: Graph):
    """Grouped conv, depthwise with multiplier 2 (and 1, no bias)."""
    x = g.conv("grouped", "input", 4, 6, 3, group=2, pads=[1, 1, 1, 1])
    x = g.op("relu", "Relu", x)
    y = g.conv("dw", x, 6, 12, 3, group=6, pads=[1, 0, 1, 2], strides=[2, 1])
    y = g.conv("dw1", y, 12, 12, 3, group=12, bias=False, pads=[1, 1, 1, 1])
    return _image(g, 4, 7, 7), [y]


def g_conv1d(g: Graph):
    """Conv1d (grouped, padded), ConvTranspose1d with pads (sliced off), MaxPool1d, AveragePool1d."""
    x = g.conv("c1", "input", 4, 6, (3,), group=2, pads=[2, 1])
    w = g.w("up.weight", 6, 3, 4)
    y = g.op("up", "ConvTranspose", x, w, g.w("up.bias", 3), kernel_shape=[4], strides=[2], pads=[1, 2])
    y = g.op("mp", "MaxPool", y, kernel_shape=[3], strides=[2], pads=[1, 1])
    z = g.op("ap", "AveragePool", y, kernel_shape=[2], strides=[1])
    return _image(g, 4, 10), [y, z]


def g_conv3d(g: Graph):
    x = g.conv("c1", "input", 2, 4, (2, 3, 3), pads=[0, 1, 1, 1, 0, 1])
    y = g.conv("c2", x, 4, 4, (1, 3, 3), group=2, pads=[0, 1, 1, 0, 1, 1])
    y = g.op("pool", "MaxPool", g.op("relu", "Relu", y), kernel_shape=[2, 2, 2], strides=[2, 2, 2])
    z = g.op("gap", "GlobalAveragePool", x)
    return _image(g, 2, 4, 6, 5), [y, z]


def g_transpose(g: Graph):
    """ConvTranspose: k4 s2 p1 ('same'), pads with output_padding (valid + Cropping), dilated."""
    y = g.op("up1", "ConvTranspose", "input", g.w("up1.weight", 4, 6, 4, 4), g.w("up1.bias", 6),
             kernel_shape=[4, 4], strides=[2, 2], pads=[1, 1, 1, 1])
    z = g.op("up2", "ConvTranspose", y, g.w("up2.weight", 6, 3, 3, 3), g.w("up2.bias", 3),
             kernel_shape=[3, 3], strides=[2, 2], pads=[1, 0, 1, 1], output_padding=[1, 1])
    v = g.op("up3", "ConvTranspose", "input", g.w("up3.weight", 4, 2, 3, 3), kernel_shape=[3, 3],
             dilations=[2, 2])
    return _image(g, 4, 5, 5), [y, z, v]


def g_pool(g: Graph):
    """MaxPool / AveragePool with pads, ceil_mode, count_include_pad (when the opset has them)."""
    outs = [g.op("p1", "MaxPool", "input", kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1])]  # edge pad
    r = g.op("relu", "Relu", "input")
    outs.append(g.op("p2", "MaxPool", r, kernel_shape=[3, 3], strides=[2, 2], pads=[0, 1, 1, 1]))  # zeros
    outs.append(g.op("p4", "MaxPool", "input", kernel_shape=[3, 3], strides=[1, 1], pads=[1, 1, 1, 1]))  # same
    if g.opset >= 7:  # AveragePool-1 has no count_include_pad (onnx.reference counts the pads there, kcompat not)
        outs.append(g.op("p3", "AveragePool", "input", kernel_shape=[2, 3], strides=[2, 2], pads=[1, 0, 0, 1]))
        outs.append(g.op("p5", "AveragePool", "input", kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1],
                         count_include_pad=1))
    if g.opset >= 10:
        outs.append(g.op("p6", "MaxPool", "input", kernel_shape=[3, 3], strides=[2, 2], ceil_mode=1))
        for include in (0, 1):
            outs.append(g.op(f"p7_{include}", "AveragePool", "input", kernel_shape=[3, 2], strides=[2, 2],
                             pads=[1, 0, 0, 1], ceil_mode=1, count_include_pad=include))
    return _image(g, 3, 11, 10), outs


def g_batchnorm(g: Graph):
    """BatchNorm2d (at opset 6: spatial=1, is_test=1), InstanceNorm2d(affine), GroupNorm (opset 21+)."""
    x = g.bn("bn0", "input", 3)
    x = g.op("relu", "Relu", g.bn("bn1", g.conv("conv", x, 3, 4, 3, bias=False, pads=[1, 1, 1, 1]), 4))
    outs = [x, g.op("inorm", "InstanceNormalization", x, g.w("inorm.weight", 4), g.w("inorm.bias", 4), epsilon=1e-5)]
    if g.opset >= 21:
        outs.append(g.op("gnorm", "GroupNormalization", x, g.w("gnorm.weight", 4), g.w("gnorm.bias", 4),
                         num_groups=2, epsilon=1e-5))
    return _image(g, 3, 6, 6), outs


def g_pad(g: Graph):
    outs = [g.pad("zero", "input", [0, 0, 1, 2, 0, 0, 2, 1]),
            g.pad("half", "input", [0, 0, 1, 0, 0, 0, 0, 2], value=0.5),
            g.pad("reflect", "input", [0, 0, 2, 1, 0, 0, 1, 3], mode="reflect"),
            g.pad("edge", "input", [0, 0, 1, 2, 0, 0, 2, 1], mode="edge"),
            g.pad("chan", "input", [0, 1, 1, 0, 0, 2, 0, 0])]  # channel and H: ZeroPadding2D channels_last
    if g.opset >= 11:  # negative pads crop
        outs.append(g.pad("crop", "input", [0, 0, -1, 1, 0, 0, 2, -2]))
    if g.opset >= 18:
        outs.append(g.pad("axes", "input", [1, 2, 3, 0], mode="reflect", axes=[3, 2]))
    if g.opset >= 19:
        outs.append(g.pad("wrap", "input", [0, 0, 2, 1, 0, 0, 1, 3], mode="wrap"))
    return _image(g, 3, 6, 7), outs


def g_mnist(g: Graph):
    x = g.op("pool1", "MaxPool", g.op("relu1", "Relu", g.conv("conv1", "input", 1, 8, 3, pads=[1, 1, 1, 1])),
             kernel_shape=[2, 2], strides=[2, 2])
    x = g.op("pool2", "MaxPool", g.op("relu2", "Relu", g.conv("conv2", x, 8, 16, 3)),
             kernel_shape=[2, 2], strides=[2, 2])
    x = g.op("flatten", "Flatten", x, axis=1)
    x = g.gemm("fc2", g.op("relu3", "Relu", g.gemm("fc1", x, 16 * 6 * 6, 32)), 32, 10)
    return _image(g, 1, 28, 28), [x]


def g_resnet(g: Graph):
    """Stem, a basic block (identity shortcut), a downsampling block (1x1 conv shortcut), head."""
    x = g.op("stem_relu", "Relu", g.bn("stem_bn", g.conv("stem", "input", 3, 8, 3, bias=False, pads=[1] * 4), 8))
    x = g.op("maxpool", "MaxPool", x, kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1])

    def block(name, x, cin, cout, stride):
        y = g.op(f"{name}/relu", "Relu", g.bn(f"{name}/bn1", g.conv(f"{name}/conv1", x, cin, cout, 3, bias=False,
                                                                    pads=[1] * 4, strides=[stride] * 2), cout))
        y = g.bn(f"{name}/bn2", g.conv(f"{name}/conv2", y, cout, cout, 3, bias=False, pads=[1] * 4), cout)
        if stride > 1 or cin != cout:
            x = g.bn(f"{name}/down_bn", g.conv(f"{name}/down", x, cin, cout, 1, bias=False, strides=[stride] * 2),
                     cout)
        extra = {"broadcast": 0} if g.opset < 7 else {}
        return g.op(f"{name}/relu_1", "Relu", g.op(name, "Add", y, x, **extra))

    x = block("layer2", block("layer1", x, 8, 8, 1), 8, 16, 2)
    x = g.op("flatten", "Flatten", g.op("avgpool", "GlobalAveragePool", x), axis=1)
    return _image(g, 3, 16, 16), [g.gemm("fc", x, 16, 5)]


def g_prelu(g: Graph):
    x = g.conv("conv", "input", 3, 4, 3, pads=[1] * 4)
    y = g.op("prelu", "PRelu", x, g.w("prelu.weight", 4, 1, 1))  # nn.PReLU(4)
    z = g.op("prelu1", "PRelu", y, g.w("prelu1.weight", value=[0.25]))  # nn.PReLU()
    return _image(g, 3, 5, 5), [y, z]


def g_embedding(g: Graph):
    """nn.Embedding -> transpose to (N, C, T) -> Conv1d."""
    e = g.op("embed", "Gather", g.w("embed.weight", 20, 6), "tokens")
    x = g.op("tr", "Transpose", e, perm=[0, 2, 1])
    return {"tokens": ((5,), np.int64)}, [e, g.op("relu", "Relu", g.conv("conv", x, 6, 4, (3,), pads=[1, 1]))]


def g_concat(g: Graph):
    """Inception-style branches joined on the channel axis."""
    a = g.op("b1/relu", "Relu", g.conv("b1", "input", 4, 3, 1))
    b = g.op("b2/relu", "Relu", g.conv("b2", "input", 4, 5, 3, pads=[1] * 4))
    c = g.op("b3", "MaxPool", "input", kernel_shape=[3, 3], strides=[1, 1], pads=[1, 1, 1, 1])
    y = g.op("cat", "Concat", a, b, c, axis=1)
    return _image(g, 4, 6, 6), [g.conv("head", y, 12, 2, 1)]


def g_squeeze_excite(g: Graph):
    """GlobalAveragePool -> 1x1 convs -> Sigmoid -> Mul (broadcast merge), Sum of three, ReduceMean."""
    s = g.op("gap", "GlobalAveragePool", "input")
    s = g.op("sig", "Sigmoid", g.conv("fc2", g.op("relu", "Relu", g.conv("fc1", s, 6, 3, 1)), 3, 6, 1))
    extra = {"broadcast": 0} if g.opset < 7 else {}
    y = g.op("scale", "Mul", "input", s, **extra)
    z = g.op("sum", "Sum", "input", y, g.op("relu2", "Relu", "input"))
    m = g.op("gmp", "GlobalMaxPool", z)
    axes = {"axes": [2, 3]} if g.opset < 18 else {}
    mean = g.op("mean", "ReduceMean", z, *([g.const("mean.axes", [2, 3])] if g.opset >= 18 else []),
                keepdims=0, **axes)
    picked = g.op("pick", "Gather", z, g.const("pick.i", 1), axis=1)  # x[:, 1]
    rows = g.op("rows", "Gather", z, g.const("rows.i", [4, 2, 0]), axis=-2)  # x[..., 4::-2, :]
    return _image(g, 6, 5, 5), [z, m, mean, picked, rows]


def g_upsample(g: Graph):
    """nn.Upsample(scale_factor=2) nearest and bilinear (align_corners=False): Upsample at 7-9, Resize after."""
    x = g.conv("conv", "input", 3, 4, 3, pads=[1] * 4)
    scales = g.const("scales", [1, 1, 2, 2], np.float32)
    outs = []
    for mode in ("nearest", "linear"):
        if g.opset < 7 or (mode == "linear" and g.opset < 11):  # before 11: asymmetric linear, no Keras layer
            continue
        if g.opset == 7:
            outs.append(g.op(f"up_{mode}", "Upsample", x, scales=[1.0, 1.0, 2.0, 2.0], mode=mode))
        elif g.opset < 11:
            outs.append(g.op(f"up_{mode}", "Upsample" if g.opset < 10 else "Resize", x, scales, mode=mode))
        else:
            coords = "asymmetric" if mode == "nearest" else "pytorch_half_pixel"
            extra = {"nearest_mode": "floor"} if mode == "nearest" else {}
            roi = g.const("roi", [], np.float32) if g.opset < 13 else ""
            outs.append(g.op(f"up_{mode}", "Resize", x, roi, scales, mode=mode,
                             coordinate_transformation_mode=coords, **extra))
    if g.opset >= 13:  # output size given (F.interpolate(size=...)): half_pixel nearest, round_prefer_floor
        if g.opset >= 18:
            sizes = g.const("sizes", [10, 15])
            outs.append(g.op("up_sizes", "Resize", x, "", "", sizes, mode="nearest", axes=[2, 3]))
        else:  # torch.onnx: Shape -> Slice -> Concat(batch and channels, [10, 15])
            head = g.op("size", "Slice", g.op("shape", "Shape", x), g.const("s0", [0]), g.const("s1", [2]))
            sizes = g.op("cat", "Concat", head, g.const("hw", [10, 15]), axis=0)
            outs.append(g.op("up_sizes", "Resize", x, "", "", sizes, mode="nearest"))
    return _image(g, 3, 5, 5), outs or [x]


def g_norm(g: Graph):
    """LayerNormalization over the last axis (scale and bias) and the last two (scale only), RMSNormalization
    (opset 23+), GroupNormalization feeding a Conv (a function op: onnx infers no shape after it)."""
    outs = []
    if g.opset >= 17:
        outs.append(g.op("ln", "LayerNormalization", "input", g.w("ln.weight", 5), g.w("ln.bias", 5), epsilon=1e-5))
        outs.append(g.op("ln2", "LayerNormalization", "input", g.w("ln2.weight", 4, 5), axis=-2, epsilon=1e-3))
    if g.opset >= 23:
        outs.append(g.op("rms", "RMSNormalization", "input", g.w("rms.weight", 5), epsilon=1e-6))
    if g.opset >= 21:
        x = g.op("gn", "GroupNormalization", "input", g.w("gn.weight", 3), g.w("gn.bias", 3), num_groups=1,
                 epsilon=1e-5)
        outs.append(g.op("gmp", "GlobalMaxPool", g.conv("conv", x, 3, 2, 3)))
    return _image(g, 3, 4, 5), outs or [g.op("relu", "Relu", "input")]


BIG = 2**63 - 1  # "to the end", as exporters write it


def g_slice(g: Graph):
    """Slice: crops of spatial axes 2.. (Cropping2D channels_first) or 1..2 (channels_last), of axis 1 of a
    rank-3 tensor (Cropping1D); a crop of axis 2 of it, steps, negative steps (GetItem op nodes)."""
    def sl(scope, x, starts, ends, axes=None, steps=None):
        if g.opset < 10:  # Slice-1: attributes, no steps
            return g.op(scope, "Slice", x, starts=starts, ends=ends, **({} if axes is None else {"axes": axes}))
        ins = [x, g.const(f"{scope}.starts", starts), g.const(f"{scope}.ends", ends)]
        if axes is not None or steps is not None:
            ins.append("" if axes is None else g.const(f"{scope}.axes", axes))
        if steps is not None:
            ins.append(g.const(f"{scope}.steps", steps))
        return g.op(scope, "Slice", *ins)
    flat = g.op("flat", "Reshape", "input", g.const("flat.shape", [0, 18, 7]))  # (N, 18, 7)
    outs = [sl("crop_cf", "input", [1, 0], [BIG, -2], [2, 3]),
            sl("crop_cl", "input", [0, 1, 2], [BIG, BIG, 5], [0, 1, 2]),  # axis 0 whole: no batch slicing
            sl("crop1d", flat, [2], [-3], [1]),
            sl("tail", flat, [-4], [BIG], [2])]
    if g.opset >= 10:
        outs += [sl("stride", "input", [0, 1], [BIG, BIG], [2, 3], [2, 3]),
                 sl("flip", "input", [-1, -2, 4], [-BIG, 0, 1], [3, 1, 2], [-1, -1, -2])]
    return _image(g, 3, 6, 7), outs


def g_tile(g: Graph):
    """Unsqueeze -> Tile of a vector (Keras's RepeatVector); Tile of spatial axes."""
    v = g.op("flatten", "Flatten", g.op("gap", "GlobalAveragePool", "input"), axis=1)  # (N, 3)
    axes = [g.const("rep.axes", [1])] if g.opset >= 13 else []
    u = g.op("rep", "Unsqueeze", v, *axes, **({} if axes else {"axes": [1]}))
    rep = g.op("rep", "Tile", u, g.const("rep.repeats", [1, 4, 1]))
    tiled = g.op("tile", "Tile", "input", g.const("tile.repeats", [1, 1, 2, 3]))
    return _image(g, 3, 4, 5), [rep, tiled]


def g_resize_nhwc(g: Graph):
    """Resize repeating axes 1..2 of (N, H, W, C) (kcompat's UpSampling2D after its transpose sinking: [1, 2, 3, 1])
    and axis 1 or 2 of a rank-3 tensor: UpSampling2D channels_last, UpSampling1D, Permute + UpSampling1D + Permute."""
    def resize(scope, x, scales, mode="nearest"):
        if g.opset < 9:
            return g.op(scope, "Upsample", x, scales=[float(s) for s in scales], mode=mode)
        ins = [g.const(f"{scope}.scales", scales, np.float32)]
        if g.opset < 11:
            return g.op(scope, "Upsample" if g.opset < 10 else "Resize", x, *ins, mode=mode)
        roi = g.const(f"{scope}.roi", [], np.float32) if g.opset < 13 else ""
        attrs = ({"coordinate_transformation_mode": "asymmetric", "nearest_mode": "floor"} if mode == "nearest"
                 else {"coordinate_transformation_mode": "half_pixel"})
        return g.op(scope, "Resize", x, roi, *ins, mode=mode, **attrs)
    if g.opset < 7:
        return _image(g, 3, 4, 5), [g.op("relu", "Relu", "input")]
    nhwc = g.op("nhwc", "Transpose", "input", perm=[0, 2, 3, 1])  # (N, 4, 5, 3)
    flat = g.op("flat", "Reshape", "input", g.const("flat.shape", [0, 12, 5]))  # (N, 12, 5)
    outs = [resize("up_cl", nhwc, [1, 2, 3, 1]), resize("up_1d", flat, [1, 2, 1]), resize("up_ncw", flat, [1, 1, 2])]
    if g.opset >= 11:
        outs.append(resize("up_bilinear", nhwc, [1, 2, 2, 1], mode="linear"))
    return _image(g, 3, 4, 5), outs


GRAPHS = {"conv": g_conv, "groups": g_groups, "conv1d": g_conv1d, "conv3d": g_conv3d, "transpose": g_transpose,
          "pool": g_pool, "batchnorm": g_batchnorm, "pad": g_pad, "mnist": g_mnist, "resnet": g_resnet,
          "prelu": g_prelu, "embedding": g_embedding, "concat": g_concat, "squeeze_excite": g_squeeze_excite,
          "upsample": g_upsample, "norm": g_norm, "slice": g_slice, "tile": g_tile, "resize_nhwc": g_resize_nhwc}


def _inputs(inputs: dict, seed: int) -> dict:
    rng = np.random.default_rng(seed)
    return {n: (rng.integers(0, 20, (3, *s)).astype(dt) if np.dtype(dt).kind == "i"
                else rng.normal(size=(3, *s)).astype(dt)) for n, (s, dt) in inputs.items()}


class _Remember(Reference):
    """A reference that keeps what it computed (real Keras's per-layer outputs)."""

    def __init__(self, inner):
        self.inner, self.name, self.result = inner, inner.name, None

    def run(self, model, inputs):
        self.result = self.inner.run(model, inputs)
        return self.result


def _why(report) -> str:
    return f"{report.first_mismatch}: {[d for d in report.layers if not d.ok][:1]} {report.notes}"


def check_file(path: Path, feeds: dict, opset: int):
    """kcompat == onnxruntime, real Keras (kcompat's .keras) == onnxruntime, verify_file passes."""
    proto = onnx.load(str(path))
    expected = run_onnx(proto, feeds)
    spec = read_onnx(str(path))
    model = Model(spec)
    inputs = [feeds[n] for n in model.input_names]
    for i, (ours, ref) in enumerate(zip(model.predict(inputs), expected)):
        np.testing.assert_allclose(ours, ref, atol=TOL, rtol=TOL, err_msg=f"kcompat output {i}, {path.name}")
    keras_ref = _Remember(KerasReference(str(path)))  # Keras loads kcompat's .keras of the import
    report = verify_file(str(path), reference=keras_ref, inputs=inputs, atol=TOL, rtol=TOL)
    assert report.ok, f"verify_file (keras) on {path.name}: {_why(report)}"
    assert any("re-write as .keras" in n for n in report.notes)
    for i, (ref_out, ref) in enumerate(zip(spec.outputs, expected)):
        np.testing.assert_allclose(keras_ref.result.outputs[ref_out.layer], ref, atol=TOL, rtol=TOL,
                                   err_msg=f"real Keras output {i}, {path.name}")
    if opset >= 7:  # onnxruntime runs opsets 7 and up
        report = verify_file(str(path), reference="onnxruntime", inputs=inputs, atol=TOL, rtol=TOL)
        assert report.ok, f"verify_file (onnxruntime) on {path.name}: {_why(report)}"
    return spec


@pytest.mark.parametrize("opset", OPSETS, ids=lambda o: f"opset{o or 'newest'}")
@pytest.mark.parametrize("name", list(GRAPHS))
def test_torch_cnn_graphs(keras, name, opset, tmp_path):
    opset = opset or default_opset()
    g = Graph(opset, seed=opset)
    inputs, outputs = GRAPHS[name](g)
    path = tmp_path / f"{name}.onnx"
    onnx.save(g.model(inputs, outputs), str(path))
    spec = check_file(path, _inputs(inputs, opset), opset)
    _check_structure(name, spec, opset)


# The Keras layers each graph must become: the lowerings formats/onnx/import_/ promises.
# A row is (layer name, what, expected[, oldest opset it holds from]). ``what`` is a config key, or:
# "class", "module", "absent" (no such layer), "inputs" (tensors in its first call), "classes_of"
# (the set of classes of the layers whose names start with it), "count" (layers of class ``layer``).
MNIST = ["InputLayer", "Conv2D", "Activation", "MaxPooling2D", "Conv2D", "Activation", "MaxPooling2D", "Flatten",
         "Dense", "Activation", "Dense"]
STRUCTURE = {
    "conv": [("c1_pad", "class", "ZeroPadding2D"), ("c1_pad", "padding", [[0, 2], [1, 1]]),
             ("c1", "padding", "valid"), ("c2", "padding", "same"), ("c5", "padding", "same"), ("c5_pad", "absent", True),
             ("c3", "padding", "same"), ("c3", "dilation_rate", [2, 1]),
             ("c4_pad", "padding", [[1, 1], [1, 0]]),  # 5x4 -> SAME_LOWER puts the odd pixel first
             ("c1_bias", "class", "Add"), ("c1", "use_bias", False),  # width 4 == filters 4: the TF bias_add bug
             *[(c, "data_format", "channels_first") for c in ("c1", "c2", "c3", "c4")]],
    "groups": [("grouped", "class", "Conv2D"), ("grouped", "groups", 2), ("dw", "class", "DepthwiseConv2D"),
               ("dw", "depth_multiplier", 2), ("dw1", "class", "DepthwiseConv2D"), ("dw1", "use_bias", False)],
    "transpose": [("up1", "padding", "same"), ("up1_crop", "absent", True), ("up2", "output_padding", [1, 1]),
                  ("up2_crop", "class", "Cropping2D")],
    "pool": [("p2_pad", "class", "ZeroPadding2D"),  # after a relu: zero padding is exact for max pooling
             ("p1_pad", "classes_of", {"GetItem", "Concatenate"}),  # edge padding
             ("p4", "padding", "same")],
    "mnist": [("*", "classes", MNIST), ("flatten", "data_format", "channels_last")],  # raw NCHW order, like ONNX
    "resnet": [("Add", "count", 2), ("Add", "modules", {"keras.layers"}), ("BatchNormalization", "count", 6),
               ("maxpool_pad", "class", "ZeroPadding2D"),  # after a relu: zero padding is exact
               ("layer2.conv1_pad", "class", "ZeroPadding2D"), ("layer2.conv1", "class", "Conv2D")],  # torch names
    "prelu": [("prelu", "shared_axes", [2, 3]), ("prelu1", "shared_axes", [1, 2, 3])],
    "embedding": [("embed", "class", "Embedding"), ("tokens", "dtype", "int64")],
    "concat": [("cat", "class", "Concatenate"), ("cat", "module", "keras.layers")],
    "squeeze_excite": [("scale", "class", "Multiply"), ("scale", "module", "keras.layers"), ("sum", "class", "Add"),
                       ("sum", "inputs", 3), ("gap", "class", "GlobalAveragePooling2D"),
                       ("mean", "class", "GlobalAveragePooling2D"), ("pick", "class", "GetItem"),
                       ("rows", "class", "GetItem")],
    "norm": [("ln", "class", "LayerNormalization", 17), ("ln2", "class", "LayerNormalization", 17),
             ("ln", "axis", -1, 17), ("ln", "center", True, 17), ("ln2", "axis", [2, 3], 17),
             ("ln2", "center", False, 17), ("rms", "class", "RMSNormalization", 23),
             ("gn", "class", "GroupNormalization", 21), ("conv", "class", "Conv2D", 21)],
    "slice": [("crop_cf", "class", "Cropping2D"), ("crop_cf", "data_format", "channels_first"),
              ("crop_cf", "cropping", [[1, 0], [0, 2]]), ("crop_cl", "class", "Cropping2D"),
              ("crop_cl", "data_format", "channels_last"), ("crop_cl", "cropping", [[1, 0], [2, 1]]),
              ("crop1d", "class", "Cropping1D"), ("crop1d", "cropping", [2, 3]), ("tail", "class", "GetItem"),
              ("stride", "class", "GetItem", 10), ("flip", "class", "GetItem", 10)],
    "tile": [("rep", "class", "RepeatVector"), ("rep", "n", 4),
             ("rep_1", "absent", True),  # the Unsqueeze is part of the RepeatVector
             ("tile", "class", "Tile")],
    "resize_nhwc": [("up_cl", "class", "UpSampling2D", 7), ("up_cl", "data_format", "channels_last", 7),
                    ("up_cl", "size", [2, 3], 7), ("up_1d", "class", "UpSampling1D", 7), ("up_1d", "size", 2, 7),
                    ("up_ncw_to_last", "class", "Permute", 7), ("up_ncw", "class", "UpSampling1D", 7),
                    ("up_ncw_to_first", "class", "Permute", 7), ("up_bilinear", "interpolation", "bilinear", 11)],
}


def _fact(spec, layer: str, what: str):
    """One fact of an imported spec, as a STRUCTURE row names it."""
    by_name = {ls.name: ls for ls in spec.layers}
    if what == "absent":
        return layer not in by_name
    if what == "classes":
        return [ls.class_name for ls in spec.layers]
    if what == "count":
        return sum(ls.class_name == layer for ls in spec.layers)
    if what == "modules":
        return {ls.module for ls in spec.layers if ls.class_name == layer}
    if what == "classes_of":
        return {ls.class_name for ls in spec.layers if ls.name.startswith(layer)}
    ls = by_name[layer]
    if what == "class":
        return ls.class_name
    if what == "module":
        return ls.module
    if what == "inputs":
        return len(ls.nodes[0].args[0])
    return ls.config.get(what)


def _check_structure(name: str, spec, opset: int) -> None:
    for layer, what, expected, *since in STRUCTURE.get(name, []):
        if opset < (since[0] if since else 0):
            continue
        got = _fact(spec, layer, what)
        assert got == expected, f"{name} (opset {opset}): {layer} {what} = {got!r}, expected {expected!r}"


def test_structure_rows_name_real_graphs():
    assert set(STRUCTURE) <= set(GRAPHS), sorted(set(STRUCTURE) - set(GRAPHS))


# ------------------------------------------------------------------ single ops, edge cases, refusals
def _one(opset, build, tmp_path, name="one"):
    g = Graph(opset, seed=1)
    inputs, outputs = build(g)
    path = tmp_path / f"{name}.onnx"
    onnx.save(g.model(inputs, outputs), str(path))
    return path, inputs


def test_batchnorm_spatial_0(keras, tmp_path):
    """BatchNormalization-7 with spatial=0: statistics per activation, lowered to Multiply + Add ops.
    (At opset 6 onnx.reference cannot run it, and onnxruntime runs opsets from 7.)"""
    def build(g):
        ins = [g.w("s", 3, 4, 4), g.w("b", 3, 4, 4), g.w("m", 3, 4, 4),
               g.w("v", value=g.rng.uniform(0.5, 2, (3, 4, 4)))]
        return _image(g, 3, 4, 4), [g.op("bn", "BatchNormalization", "input", *ins, spatial=0)]
    path, inputs = _one(7, build, tmp_path)
    spec = check_file(path, _inputs(inputs, 0), 7)
    assert [ls.class_name for ls in spec.layers][1:3] == ["Multiply", "Add"]


@pytest.mark.parametrize("opset", [7, 9, 10])
def test_upsample_old_opsets(keras, opset, tmp_path):
    """Upsample-7 (scales attribute), Upsample-9 and Resize-10 (scales input): nearest -> UpSampling2D."""
    path, inputs = _one(opset, g_upsample, tmp_path)
    spec = check_file(path, _inputs(inputs, opset), opset)
    assert spec.layer("up_nearest").class_name == "UpSampling2D"


def test_gemm_trans_a(keras, tmp_path):
    """Gemm(transA=1): a Transpose op, then Dense (the input's first axis is Gemm's K)."""
    g = Graph(13, seed=2)
    y = g.op("fc", "Gemm", "input", g.w("fc.weight", 6, 4), g.w("fc.bias", 4), transA=1)
    path = tmp_path / "gemm_ta.onnx"
    onnx.save(g.model({"input": ((3,), np.float32)}, [y], batch=6), str(path))
    x = np.random.default_rng(0).normal(size=(6, 3)).astype(np.float32)
    spec = check_file(path, {"input": x}, 13)
    assert [ls.class_name for ls in spec.layers] == ["InputLayer", "Transpose", "Dense"]


def test_refusals_are_reported_together(tmp_path):
    """Every lowering that cannot be expressed in Keras says why, all in one error."""
    def build(g):
        a = g.op("nz", "NonZero", "input")
        b = g.op("tr", "ConvTranspose", "input", g.w("tr.weight", 3, 2, 3, 3), strides=[2, 2], dilations=[2, 2],
                 kernel_shape=[3, 3])
        c = g.op("uq", "Unique", "input")
        d = g.pad("batch", "input", [1, 0, 0, 0, 0, 0, 0, 0])
        return _image(g, 3, 8, 8), [a, b, c, d]
    path, _ = _one(13, build, tmp_path)
    with pytest.raises(UnsupportedError) as err:
        read_onnx(str(path))
    text = str(err.value)
    for part in ("NonZero x1", "ConvTranspose (strides [2, 2] with dilations [2, 2]", "Unique x1",
                 "Pad (padding the batch axis)"):
        assert part in text, text


def test_kcompat_export_merge_and_dropout_come_back_as_layers(keras, tmp_path):
    """A Keras Add merge layer comes back as the Add layer, Dropout as Identity (not Activation('linear'))."""
    x = keras.Input((6,), name="x")
    a = keras.layers.Dense(4, name="a")(x)
    b = keras.layers.Dense(4, name="b")(x)
    y = keras.layers.Add(name="add")([a, b])
    y = keras.layers.Dropout(0.5, name="drop")(y)
    y = keras.layers.Concatenate(name="cat")([y, a])
    kmodel = keras.Model(x, y)
    kmodel.save(tmp_path / "m.keras")
    write_onnx(kcompat.load(str(tmp_path / "m.keras")), str(tmp_path / "m.onnx"))
    spec = read_onnx(str(tmp_path / "m.onnx"))
    got = {ls.name: (ls.class_name, ls.module) for ls in spec.layers}
    assert got["add"] == ("Add", "keras.layers") and got["drop"] == ("Identity", "keras.layers")
    assert got["cat"] == ("Concatenate", "keras.layers")
    data = np.random.default_rng(0).normal(size=(3, 6)).astype(np.float32)
    np.testing.assert_allclose(Model(spec).predict([data])[0], kmodel(data), atol=1e-5, rtol=1e-5)


# ------------------------------------------------------------------ round trip through kcompat's CNN exporter
@pytest.mark.parametrize("data_format", ["channels_last", "channels_first"])
def test_keras_cnn_round_trip(keras, data_format, tmp_path):
    """MNIST CNN .keras -> kcompat .onnx -> kcompat import: outputs equal Keras's.

    The classes may differ: a channels_last model comes back channels_first inside, with one
    Transpose op after the input (``conv1_transpose``) and Flatten(channels_first) before the Dense;
    Dropout comes back as Identity.
    """
    last = data_format == "channels_last"
    shape = (28, 28, 1) if last else (1, 28, 28)
    x = keras.Input(shape, name="image")
    y = keras.layers.Conv2D(8, 3, activation="relu", padding="same", data_format=data_format, name="conv1")(x)
    y = keras.layers.MaxPooling2D(2, data_format=data_format, name="pool1")(y)
    y = keras.layers.Conv2D(16, 3, activation="relu", data_format=data_format, name="conv2")(y)
    y = keras.layers.BatchNormalization(axis=-1 if last else 1, name="bn")(y)
    y = keras.layers.MaxPooling2D(2, data_format=data_format, name="pool2")(y)
    y = keras.layers.Dropout(0.5, name="drop")(keras.layers.Flatten(name="flatten")(y))
    kmodel = keras.Model(x, keras.layers.Dense(10, activation="softmax", name="out")(y))
    rng = np.random.default_rng(0)
    for layer in kmodel.layers:
        if layer.get_weights():  # random weights; positive BatchNormalization variances (the 4th weight)
            layer.set_weights([rng.uniform(0.5, 2, w.shape).astype(np.float32) if i == 3 else
                               rng.normal(0, 0.3, w.shape).astype(np.float32)
                               for i, w in enumerate(layer.get_weights())])
    kmodel.save(tmp_path / "mnist.keras")
    write_onnx(kcompat.load(str(tmp_path / "mnist.keras")), str(tmp_path / "mnist.onnx"))
    spec = read_onnx(str(tmp_path / "mnist.onnx"))
    data = rng.normal(size=(3, *shape)).astype(np.float32)
    expected = np.asarray(kmodel(data))
    np.testing.assert_allclose(Model(spec).predict([data])[0], expected, atol=TOL, rtol=TOL)
    classes = {ls.name: ls.class_name for ls in spec.layers}
    assert classes["conv1"] == classes["conv2"] == "Conv2D" and classes["drop"] == "Identity"
    assert (classes.get("conv1_transpose") == "Transpose") == last
    assert all(spec.layer(n).config["data_format"] == "channels_first" for n in ("conv1", "conv2", "pool1", "pool2"))
    check_file(tmp_path / "mnist.onnx", {"image": data}, default_opset())


def test_kcompat_cnn_export_layer_names(keras, tmp_path):
    """kcompat's optimized export renames inner tensors (``conv2/Tanh:untransposed``) and adds the Transposes it
    sank (``crop/Slice/Transpose``): the import names every layer after a Keras layer of the source, a layout
    change ``<layer>_transpose``, and brings UpSampling, Cropping, ZeroPadding, RepeatVector, LayerNormalization
    and RMSNormalization back as those layers."""
    L = keras.layers
    x = keras.Input((8, 8, 3), name="image")
    y = L.Conv2D(4, 3, activation="relu", padding="same", name="conv1")(x)
    y = L.Cropping2D(((1, 0), (0, 1)), name="crop")(L.ZeroPadding2D(((1, 0), (0, 1)), name="zp")(y))
    y = L.Add(name="add")([L.Dense(3, name="dense")(y), L.Conv2D(3, 1, activation="tanh", name="conv2")(y)])
    y = L.MaxPooling2D(2, name="pool")(L.UpSampling2D(2, name="up")(y))
    z = L.RepeatVector(3, name="rep")(L.GlobalAveragePooling2D(name="gap")(y))
    z = L.RMSNormalization(name="rms")(L.LayerNormalization(name="ln")(z))
    z = L.Cropping1D((1, 0), name="crop1")(L.UpSampling1D(2, name="up1")(L.Conv1D(4, 2, name="c1d")(z)))
    kmodel = keras.Model(x, [L.Flatten(name="flat")(z), L.Reshape((-1, 3), name="rs")(y)])
    kmodel.save(tmp_path / "m.keras")
    write_onnx(kcompat.load(str(tmp_path / "m.keras")), str(tmp_path / "m.onnx"))
    spec = read_onnx(str(tmp_path / "m.onnx"))
    classes = {ls.name: ls.class_name for ls in spec.layers}
    keras_names = {layer.name for layer in kmodel.layers}
    for name in classes:
        base = name.rsplit("_transpose", 1)[0] if "_transpose" in name else name.rsplit("_to_", 1)[0]
        assert base in keras_names, f"layer '{name}' is named after no Keras layer: {sorted(classes)}"
    for name in ("conv1", "zp", "crop", "dense", "conv2", "add", "up", "pool", "gap", "rep", "ln", "rms", "c1d"):
        assert classes[name] == kmodel.get_layer(name).__class__.__name__, (name, classes[name])
    assert classes["conv2_transpose"] == classes["crop_transpose"] == "Transpose"
    data = np.random.default_rng(0).normal(size=(3, 8, 8, 3)).astype(np.float32)
    for ours, ref in zip(Model(spec).predict([data]), kmodel(data)):
        np.testing.assert_allclose(ours, np.asarray(ref), atol=TOL, rtol=TOL)
    check_file(tmp_path / "m.onnx", {"image": data}, default_opset())
