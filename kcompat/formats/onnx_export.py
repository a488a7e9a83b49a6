"""ModelSpec -> ONNX, without TensorFlow: one small exporter function per Keras class.

The table is the extension point. A new layer family adds, in its own module::

    @exporter("Conv2D")
    def conv2d(ctx, layer, inputs, weights):
        x = inputs[0]                              # ONNX tensor name of the layer input
        return ctx.op("Conv", x, ctx.const(...), pads=[...])

``layer`` is the kcompat NumPy layer (its parsed config: ``layer.units``...), ``inputs``
the call node's args with every tensor replaced by its ONNX name (scalars stay numbers),
``weights`` the Keras-order arrays. ``ctx.op`` emits one node named ``<layer>/<Op>``;
the driver renames the returned tensor to the layer's name, so every Keras layer output
is an ONNX tensor of the same name (graph inputs and outputs too). Unsupported layers and
activations are collected over the whole model and reported together. Exporters live in
onnx_layers.py (core, ops, activations), onnx_export_conv.py (conv, pooling),
onnx_export_misc.py (normalization, reshaping, merging, embedding, preprocessing) and
onnx_export_ops.py (the other Keras 3 op nodes, and Keras's dtype rule for their operands;
``ctx.dtype`` follows dtypes through the graph, so bool / int outputs are typed as such);
``optimize`` then runs onnx_optimize.py, which cancels the layout Transposes between
channels-first ops (and so drops some per-layer tensors: ``optimize=False`` keeps them all).
Reference: onnx.helper / onnx.checker; tf2onnx (for what not to do: per-opset methods).
"""
from __future__ import annotations

import functools
from typing import Any, Callable

import numpy as np

from ..errors import KcompatError, UnsupportedError
from ..files import writes_atomically
from ..spec import map_refs

MIN_OPSET = 13
EXPORTERS: dict[str, Callable] = {}
BOOL_OUTPUTS = {"Equal", "Greater", "GreaterOrEqual", "Less", "LessOrEqual", "Not", "And", "Or", "Xor",
                "IsNaN", "IsInf"}  # ONNX ops whose output is bool whatever their inputs
INT64_OUTPUTS = {"ArgMax", "ArgMin", "Shape", "Size", "NonZero"}


def exporter(*class_names: str):
    """Register ``fn(ctx, layer, inputs, weights) -> tensor name(s)`` for Keras class names."""
    def wrap(fn):
        for name in class_names:
            EXPORTERS[name] = fn
        return fn
    return wrap


@functools.lru_cache(maxsize=None)
def default_opset() -> int:
    """The newest opset both the installed onnx and onnxruntime run (onnx's newest without onnxruntime)."""
    import onnx
    newest = onnx.defs.onnx_opset_version()
    try:
        import onnxruntime  # noqa: F401
    except ImportError:
        return newest
    for opset in range(newest, MIN_OPSET - 1, -1):
        if _onnxruntime_runs(opset):
            return opset
    return MIN_OPSET


def _onnxruntime_runs(opset: int) -> bool:
    """True when onnxruntime opens a one-Relu model stamped with ``opset``."""
    import onnxruntime as ort
    from onnx import TensorProto, helper
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1])
    graph = helper.make_graph([helper.make_node("Relu", ["x"], ["y"])], "probe", [x], [y])
    model = _make_model(graph, opset)
    options = ort.SessionOptions()
    options.log_severity_level = 3
    try:
        ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])
        return True
    except Exception:  # onnxruntime raises several types for "unknown opset"
        return False


def _make_model(graph, opset: int):
    from onnx import helper
    from ..version import __version__
    imports = [helper.make_opsetid("", opset)]
    model = helper.make_model(graph, opset_imports=imports, producer_name="kcompat", producer_version=__version__)
    model.ir_version = helper.find_min_ir_version_for(imports)  # the oldest IR that has this opset: widest reach
    return model


class ExportContext:
    """What an exporter writes into: nodes, initializers, unique names, known shapes."""

    def __init__(self, opset: int):
        self.opset = opset
        self.nodes: list = []
        self.initializers: list = []
        self.shapes: dict[str, tuple] = {}  # ONNX tensor name -> Keras shape (layer outputs)
        self.dtypes: dict[str, str] = {}  # graph input name -> its dtype (others: see dtype())
        self.prefix = ""  # the layer being exported: node and tensor names start with it
        self.kwargs: dict = {}  # the call node's kwargs (tensors as names)
        self._tensors: set[str] = set()
        self._node_names: set[str] = set()
        self._consts: dict[tuple, str] = {}

    def unique(self, base: str, used: set | None = None) -> str:
        """``base``, or ``base_1``, ``base_2``... whichever is free; reserves it."""
        used = self._tensors if used is None else used
        name, i = base, 0
        while name in used:
            i += 1
            name = f"{base}_{i}"
        used.add(name)
        return name

    def op(self, op_type: str, *inputs: str, outputs: int = 1, **attrs: Any) -> Any:
        """Emit one node ``<layer>/<op_type>``; returns its output name (a list when outputs > 1)."""
        from onnx import helper
        name = self.unique(f"{self.prefix}/{op_type}", self._node_names)
        outs = [self.unique(name if outputs == 1 else f"{name}:{i}") for i in range(outputs)]
        self.nodes.append(helper.make_node(op_type, list(inputs), outs, name=name, **attrs))
        return outs[0] if outputs == 1 else outs

    def const(self, value: Any, name: str = "const", dtype: Any = np.float32) -> str:
        """An initializer ``<layer>/<name>`` holding ``value`` (Keras weights keep their dtype)."""
        from onnx import numpy_helper
        array = value if isinstance(value, np.ndarray) and dtype is None else np.asarray(value, dtype=dtype)
        key = (self.prefix, name, array.dtype.str, array.shape, array.tobytes())
        if key in self._consts:  # a layer called twice shares its weights: one initializer, read twice
            return self._consts[key]
        tensor_name = self.unique(f"{self.prefix}/{name}")
        self.initializers.append(numpy_helper.from_array(array, tensor_name))
        self._consts[key] = tensor_name
        return tensor_name

    def operand(self, value: Any) -> str:
        """A call argument as a tensor name: names pass through, numbers and arrays become constants."""
        if isinstance(value, str):
            return value
        if isinstance(value, dict) and value.get("class_name") == "__numpy__":  # Keras's serialized array
            value = np.asarray(value["config"]["value"], dtype=value["config"].get("dtype", "float32"))
        return self.const(value, "const")

    def ints(self, values: Any, name: str = "ints") -> str:
        """An int64 constant (shapes, axes, split sizes, K)."""
        return self.const(np.asarray(values, dtype=np.int64), name, dtype=np.int64)

    def shape(self, tensor: str) -> tuple:
        """The Keras shape of a layer output tensor."""
        return self.shapes[tensor]

    def dtype(self, tensor: str) -> str:
        """A tensor's dtype ("float32", "int32", "bool"): graph inputs and initializers as declared, any
        other from the node that made it (comparisons: bool, Cast: its ``to``, most: their first input's)."""
        from onnx import helper
        while tensor not in self.dtypes:
            node = next((n for n in reversed(self.nodes) if tensor in n.output), None)
            if node is None:
                init = next((t for t in self.initializers if t.name == tensor), None)
                return "float32" if init is None else helper.tensor_dtype_to_np_dtype(init.data_type).name
            out = list(node.output).index(tensor)
            if node.op_type in BOOL_OUTPUTS:
                return "bool"
            if node.op_type in INT64_OUTPUTS or (node.op_type == "TopK" and out == 1):
                return "int64"
            if node.op_type == "Cast":
                to = next(a.i for a in node.attribute if a.name == "to")
                return helper.tensor_dtype_to_np_dtype(to).name
            if not node.input:
                return "float32"
            tensor = node.input[{"Where": 1, "OneHot": 2}.get(node.op_type, 0)]
        return str(self.dtypes[tensor])

    def reduce(self, op_type: str, x: str, axes: list[int], keepdims: int = 1) -> str:
        """ReduceSum / ReduceMax...: axes are an input from opset 13 (ReduceSum) or 18 (the rest)."""
        since = 13 if op_type == "ReduceSum" else 18
        if self.opset >= since:
            return self.op(op_type, x, self.ints(axes, "axes"), keepdims=keepdims)
        return self.op(op_type, x, axes=list(axes), keepdims=keepdims)

    def activation(self, name: str, x: str, shape: tuple, **params: Any) -> str:
        """Apply a Keras activation by name (see onnx_activations.py)."""
        from .onnx_activations import ACTIVATION_EXPORTERS
        return ACTIVATION_EXPORTERS[name](self, x, shape, **params)

    def rename(self, old: str, new: str, first_node: int) -> None:
        """Give tensor ``old`` (made by this layer's nodes) the name ``new``."""
        for node in self.nodes[first_node:]:
            for seq in (node.input, node.output):
                for i, n in enumerate(seq):
                    if n == old:
                        seq[i] = new
        self._tensors.add(new)


def register_exporters() -> None:
    """Import the modules whose ``@exporter`` functions fill EXPORTERS."""
    from . import onnx_export_conv, onnx_export_misc, onnx_export_ops, onnx_layers  # noqa: F401


def check_exportable(model) -> None:
    """Raise one UnsupportedError naming every layer class and activation with no ONNX exporter."""
    from collections import Counter

    from .onnx_activations import ACTIVATION_EXPORTERS
    missing: Counter = Counter()
    for ls in model.spec.layers:
        if ls.class_name not in EXPORTERS and ls.class_name != "InputLayer":
            missing[f"layer class {ls.class_name}"] += 1
            continue
        act = getattr(model.layers[ls.name], "activation_name", None)
        if act is not None and act.lower() not in ACTIVATION_EXPORTERS:
            missing[f"activation {act}"] += 1
    if missing:
        listed = ", ".join(f"{k} x{v}" for k, v in missing.items())
        raise UnsupportedError(f"{model.spec.source}: cannot export to ONNX: {listed}")


def resolve_opset(opset: int | None) -> int:
    """The opset to write: ``default_opset()`` for None, else checked against the range kcompat writes."""
    import onnx
    if opset is None:
        return default_opset()
    newest = onnx.defs.onnx_opset_version()
    if isinstance(opset, bool) or not isinstance(opset, (int, np.integer)) or not MIN_OPSET <= opset <= newest:
        raise UnsupportedError(f"ONNX opset must be an integer from {MIN_OPSET} to {newest} (the installed onnx's "
                               f"newest). Received: opset={opset!r}")
    return int(opset)


def to_onnx(model, opset: int | None = None, optimize: bool = True):
    """Build the ONNX ModelProto for a kcompat Model (checked with onnx.checker, full_check).

    ``optimize``: cancel and sink layout Transposes (onnx_optimize.py). False keeps every
    layer's output as a tensor named after the layer, as ``verify`` needs.
    """
    import onnx
    from onnx import helper

    register_exporters()
    opset = resolve_opset(opset)
    check_exportable(model)
    spec = model.spec
    ctx = ExportContext(opset)
    tensors: dict[tuple, Any] = {}  # (layer, node) -> ONNX name(s) of its output(s)
    graph_inputs = []
    for ref in spec.inputs:
        ctx.unique(ref.layer)
    for key in model.order:
        name, k = key
        ls = model.specs[name]
        if ls.class_name == "InputLayer":
            tensors[key] = name
            ctx.shapes[name] = model.shapes[key]
            ctx.dtypes[name] = _input_dtype(ls.config.get("dtype"))
            graph_inputs.append(_value_info(name, model.shapes[key], ctx.dtypes[name]))
            continue
        tensors[key] = _export_call(ctx, model, ls, k, tensors)
    outputs = []
    for ref in spec.outputs:
        out = tensors[(ref.layer, ref.node)]
        out = out[ref.index] if isinstance(out, list) else out
        if out in {o.name for o in outputs} or out in {i.name for i in graph_inputs}:
            ctx.prefix = ref.layer
            out = ctx.op("Identity", out)
        shape = model.shapes[(ref.layer, ref.node)]
        outputs.append(_value_info(out, shape[ref.index] if isinstance(shape, list) else shape, ctx.dtype(out)))
    nodes, initializers = ctx.nodes, ctx.initializers
    if optimize:
        from .onnx_optimize import optimize_transposes
        keep = {v.name for v in outputs} | {v.name for v in graph_inputs}
        nodes, initializers = optimize_transposes(nodes, initializers, keep)
    graph = helper.make_graph(nodes, spec.name, graph_inputs, outputs, initializers)
    proto = _make_model(graph, opset)
    try:
        onnx.checker.check_model(proto, full_check=True)
    except (onnx.checker.ValidationError, onnx.shape_inference.InferenceError) as e:
        raise KcompatError(f"{spec.source}: kcompat wrote an invalid ONNX graph (a kcompat bug): "
                           f"{str(e).splitlines()[0]}") from None
    return proto


def _export_call(ctx: ExportContext, model, ls, k: int, tensors: dict) -> Any:
    """Export call node ``k`` of one layer; its output tensors are named after the layer."""
    def name_of(ref):
        out = tensors[(ref.layer, ref.node)]
        return out[ref.index] if isinstance(out, list) else out
    node = ls.nodes[k]
    inputs = map_refs(node.args, name_of)
    ctx.kwargs = map_refs(node.kwargs, name_of)
    ctx.prefix = ls.name
    first = len(ctx.nodes)
    out = EXPORTERS[ls.class_name](ctx, model.layers[ls.name], inputs, list(ls.weights or []))
    shape = model.shapes[(ls.name, k)]
    base = ls.name if k == 0 else f"{ls.name}:{k}"
    outs = out if isinstance(out, list) else [out]
    shapes = shape if isinstance(out, list) else [shape]
    named = []
    made = {o for n in ctx.nodes[first:] for o in n.output}
    for i, (o, s) in enumerate(zip(outs, shapes)):
        target = ctx.unique(base if i == 0 else f"{base}:{i}")
        if o not in made:  # the layer passed a tensor through (Dropout, linear): one Identity carries the name
            o = ctx.op("Identity", o)
        ctx.rename(o, target, first)
        ctx.shapes[target] = s
        named.append(target)
    return named if isinstance(out, list) else named[0]


def _input_dtype(dtype: Any) -> str:
    """A graph input's dtype: ints and bool as declared, every float as float32 (kcompat computes in
    float32 and casts float inputs so, whatever the InputLayer declares: float16, float64, ...)."""
    name = dtype if isinstance(dtype, str) else "float32"
    return "float32" if "float" in name else np.dtype(name).name


def _value_info(name: str, shape: tuple, dtype: Any = None):
    """A graph input/output: batch axis 'batch', other unknown axes left unnamed."""
    from onnx import helper
    elem = helper.np_dtype_to_tensor_dtype(np.dtype(dtype or "float32"))
    dims = ["batch" if i == 0 and d is None else d for i, d in enumerate(shape)]
    return helper.make_tensor_value_info(name, elem, dims)


@writes_atomically
def write_onnx(model, path: str, opset: int | None = None, optimize: bool = True) -> None:
    """Write a kcompat Model as an ONNX file (``opset`` None: the newest onnxruntime runs)."""
    import onnx
    proto = to_onnx(model, opset, optimize)
    if proto.ByteSize() >= 2**31:
        raise UnsupportedError(f"{model.spec.source}: the ONNX model would exceed protobuf's 2 GB limit; "
                               f"external-data export is not supported yet")
    onnx.save_model(proto, str(path))
