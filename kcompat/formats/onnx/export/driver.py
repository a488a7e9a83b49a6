"""ModelSpec -> ONNX, without TensorFlow: the driver. One small exporter per Keras class fills the tables
in registry.py, from one module per layer family (core.py, conv.py, pooling.py, normalization.py,
reshaping.py, merging.py, activation_layers.py, embedding.py, preprocessing.py, regularization.py,
mirroring kcompat/layers/; ops.py and ops_array.py for Keras 3 op nodes; activations.py).

Every call node is exported in graph order; ``ctx.op`` emits one node named ``<layer>/<Op>`` and the
driver renames the returned tensor to the layer's name, so every Keras layer output is an ONNX tensor
of the same name (graph inputs and outputs too). Unsupported layers and activations are collected over
the whole model and reported together. ``optimize`` then runs optimize.py, which cancels the layout
Transposes between channels-first ops (and so drops some per-layer tensors: ``optimize=False`` keeps
them all, for verify). Reference: onnx.helper / onnx.checker; tf2onnx (for what not to do: per-opset
methods, handlers that mutate a shared graph).
"""
from __future__ import annotations

import functools
import os
from typing import Any

import numpy as np

from ....errors import KcompatError, UnsupportedError
from ....files import atomic_paths
from ....spec import map_refs
from ..common import MIN_OPSET, skeleton
from . import (activation_layers, activations, adaptive_pooling, applications, attention, audio,  # noqa: F401
               augmentation, categorical, clahe, conv, conv_lstm, core, einsum_dense, embedding, hashing,
               image_preprocessing, merging, models, multi_head_attention, normalization, ops, ops_array,
               ops_index, pooling, preprocessing, recurrent, regularization, reshaping,
               wrappers)  # (they fill the tables)
from .context import ExportContext
from .masks import MaskFlow
from .registry import ACTIVATIONS, REFUSED, exporter_for
from .store import EXTERNAL_BYTES, SPOOLED, TensorStore


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
    from ....version import __version__
    imports = [helper.make_opsetid("", opset)]
    model = helper.make_model(graph, opset_imports=imports, producer_name="kcompat", producer_version=__version__)
    model.ir_version = helper.find_min_ir_version_for(imports)  # the oldest IR that has this opset: widest reach
    return model


def check_exportable(model) -> None:
    """Raise one UnsupportedError naming every layer class and activation with no ONNX exporter."""
    from collections import Counter
    missing: Counter = Counter()
    for ls in model.graph.layers:  # a nested model's layers too
        layer = model.layers[ls.name]
        if not ls.is_op and layer.class_name in REFUSED:
            missing[f"layer class {ls.class_name} ({REFUSED[layer.class_name]})"] += 1
        elif exporter_for(layer, ls.is_op) is None and ls.class_name != "InputLayer":
            missing[f"{'op' if ls.is_op else 'layer class'} {ls.class_name}"] += 1
            continue
        act = getattr(layer, "activation_name", None)
        if act is not None and act.lower() not in ACTIVATIONS:
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


def to_onnx(model, opset: int | None = None, optimize: bool = True, store=None):
    """Build the ONNX ModelProto for a kcompat Model (checked with onnx.checker, full_check).

    ``optimize``: cancel and sink layout Transposes (optimize.py). False keeps every
    layer's output as a tensor named after the layer, as ``verify`` needs. ``store``: a TensorStore
    (store.py) that takes the big initializers as they are made; the proto then references them.
    """
    import onnx
    from onnx import helper

    opset = resolve_opset(opset)
    check_exportable(model)
    spec = model.spec
    ctx = ExportContext(opset, store)
    tensors: dict[tuple, Any] = {}  # (layer, node) -> ONNX name(s) of its output(s)
    masks = MaskFlow(model)  # Keras masks beside the values (masks.py)
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
        tensors[key] = _export_call(ctx, model, ls, k, tensors, masks)
    outputs = []
    for ref in spec.outputs:
        out = tensors[(ref.layer, ref.node)]
        out = out[ref.index] if isinstance(out, list) else out
        if out in {o.name for o in outputs} or out in {i.name for i in graph_inputs}:
            ctx.prefix = ref.layer
            out = ctx.op("Identity", out)
        shape = model.shapes[(ref.layer, ref.node)]
        outputs.append(_value_info(out, shape[ref.index] if isinstance(shape, list) else shape, ctx.dtype(out)))
    nodes, initializers = masks.prune(ctx.nodes, {v.name for v in outputs}), ctx.initializers
    if optimize:
        from .optimize import optimize_transposes
        keep = {v.name for v in outputs} | {v.name for v in graph_inputs}
        nodes, initializers = optimize_transposes(nodes, initializers, keep, store)
    graph = helper.make_graph(nodes, spec.name, graph_inputs, outputs, initializers)
    proto = _make_model(graph, opset)
    try:
        onnx.checker.check_model(skeleton(proto, SPOOLED), full_check=True)
    except (onnx.checker.ValidationError, onnx.shape_inference.InferenceError) as e:
        raise KcompatError(f"{spec.source}: kcompat wrote an invalid ONNX graph (a kcompat bug): "
                           f"{str(e).splitlines()[0]}") from None
    return proto


def _export_call(ctx: ExportContext, model, ls, k: int, tensors: dict, masks: MaskFlow) -> Any:
    """Export call node ``k`` of one layer; its output tensors are named after the layer."""
    def name_of(ref):
        out = tensors[(ref.layer, ref.node)]
        return out[ref.index] if isinstance(out, list) else out
    node = ls.nodes[k]
    inputs = map_refs(node.args, name_of)
    layer = model.layers[ls.name]
    ctx.kwargs, previous = masks.arguments((ls.name, k), layer, map_refs(node.kwargs, name_of), tensors)
    ctx.prefix = ls.name
    first = len(ctx.nodes)
    out = exporter_for(layer, ls.is_op)(ctx, layer, inputs, list(ls.weights or []))
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
    result = named if isinstance(out, list) else named[0]
    masks.outputs(ctx, (ls.name, k), layer, inputs, ctx.kwargs, previous, result)
    return result


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


def write_onnx(model, path: str, opset: int | None = None, optimize: bool = True,
               external_data: bool | None = None) -> list[str]:
    """Write a kcompat Model as an ONNX file (``opset`` None: the newest onnxruntime runs). Big initializers
    are streamed to disk as they are made (store.py); ``external_data``: True writes them to
    ``<path>.data`` beside the model, False inside it, None (default) inside unless the model would pass
    protobuf's 2 GiB. Both files appear together or neither does (files.atomic_paths)."""
    path = str(path)
    data_path = path + ".data"
    with atomic_paths(path, data_path) as (tmp, tmp_data):
        store = TensorStore(tmp_data, EXTERNAL_BYTES if external_data else None)
        try:
            proto = to_onnx(model, opset, optimize, store)
            if external_data is False and not store.fits_one_file(proto):
                raise UnsupportedError(f"{model.spec.source}: the ONNX model would exceed protobuf's 2 GB limit; "
                                       f"write it with external data (--external-data)")
            external = store.save(proto, tmp, os.path.basename(data_path), external_data)
        except BaseException:
            store.discard()
            raise
    return [path, data_path] if external else [path]