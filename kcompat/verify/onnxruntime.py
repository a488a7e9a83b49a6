"""ONNX Runtime as the reference: every layer's output from ONE onnxruntime run.

For an .onnx file the ORIGINAL file runs, with the ONNX tensor behind each imported layer
(``spec.onnx_names``, kept by the importer) added as a graph output. For a Keras file,
kcompat exports the model (every call node's output is an ONNX tensor named after its key)
and onnxruntime runs that export: then an exporter bug and a NumPy bug that agree would
go unseen, and the notes say so.
Reference: onnxruntime.InferenceSession; kcompat/formats/onnx/export/driver.py (tensor naming).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from ..errors import KcompatError
from .reference import Reference, ReferenceResult, node_key


def import_onnxruntime():
    """Import onnxruntime with a clear error when it is missing."""
    try:
        import onnxruntime
    except ImportError as e:
        raise KcompatError(f"the onnxruntime reference needs onnxruntime (pip install onnxruntime): {e}") from None
    return onnxruntime


class OnnxRuntimeReference(Reference):
    """Runs the original .onnx file, or kcompat's ONNX export of a Keras file, in onnxruntime."""

    name = "onnxruntime"

    def __init__(self, path: str, weights: str | None = None, opset: int | None = None):
        self.path = str(path)
        self.weights = weights
        self.opset = opset

    def run(self, model, inputs: list[np.ndarray]) -> ReferenceResult:
        ort = import_onnxruntime()
        notes: list[str] = []
        if Path(self.path).suffix.lower() == ".onnx":
            from ..formats.onnx.import_.load import load_checked
            proto = load_checked(self.path)
            names = dict(model.spec.onnx_names or {})  # imported layers are called once: key = layer name
            missing = [ls.name for ls in model.spec.layers if ls.name not in names]
            if missing:
                notes.append(f"layers {missing} have no ONNX tensor of their own (made by kcompat's import); "
                             f"not compared")
        else:
            from ..formats.onnx.export.driver import to_onnx
            proto = to_onnx(model, self.opset, optimize=False)  # every layer's output kept
            names = _export_names(model, proto)
            notes.append(f"onnxruntime ran kcompat's own ONNX export (opset {proto.opset_import[0].version}) of "
                         f"{self.path}; an exporter bug that matches a NumPy bug would not show")
        feed = self._feed(proto, model, names, inputs)
        tensors = [t for v in names.values() for t in (v if isinstance(v, list) else [v])]
        wanted = [t for t in dict.fromkeys(tensors) if t not in feed]
        _add_outputs(proto, wanted)
        options = ort.SessionOptions()
        options.log_severity_level = 3
        options.intra_op_num_threads = 1
        try:
            session = ort.InferenceSession(proto.SerializeToString(), options, providers=["CPUExecutionProvider"])
            values = session.run(wanted, feed)
        except Exception as e:  # onnxruntime raises its own exception types
            raise KcompatError(f"onnxruntime reference: {self.path}: {str(e).strip().splitlines()[0]}") from None
        by_tensor = dict(zip(wanted, values)) | feed
        outputs = {}
        for key, t in names.items():
            if isinstance(t, list):
                if all(x in by_tensor for x in t):
                    outputs[key] = [by_tensor[x] for x in t]
            elif t in by_tensor:
                outputs[key] = by_tensor[t]
        layouts = model.spec.onnx_layouts or {}  # a layer kcompat moved to channels-last: its tensor, moved too
        for key in set(layouts) & set(outputs):
            outputs[key] = np.transpose(outputs[key], layouts[key])
        return ReferenceResult(f"onnxruntime {ort.__version__}", outputs, {}, {}, notes)

    @staticmethod
    def _feed(proto, model, names: dict, inputs: list[np.ndarray]) -> dict:
        """Graph input name -> array, matching kcompat's inputs through their ONNX names."""
        init = {t.name for t in proto.graph.initializer}
        graph_inputs = [v.name for v in proto.graph.input if v.name not in init]
        feed = {}
        for name, array in zip(model.input_names, inputs):
            tensor = names.get(name, name)
            if tensor not in graph_inputs:
                raise KcompatError(f"onnxruntime reference: input '{name}' is not an input of the ONNX graph "
                                   f"{graph_inputs}")
            perm = (model.spec.onnx_layouts or {}).get(name)
            feed[tensor] = array if perm is None else np.transpose(array, np.argsort(perm))  # back to ONNX's
        return feed


def _export_names(model, proto) -> dict:
    """Node key -> the ONNX tensor(s) kcompat's exporter named after it (export/driver.py): ``name`` for
    a layer's first call, ``name:N`` for call N, ``<that>:i`` for output i >= 1 of a multi-output layer."""
    made = {o for n in proto.graph.node for o in n.output} | {i.name for i in proto.graph.input}
    names = {}
    for name, k in model.order:
        base = node_key(name, k)
        shape = model.shapes[(name, k)]
        tensors = [base] + [f"{base}:{i}" for i in range(1, len(shape))] if isinstance(shape, list) else [base]
        if all(t in made for t in tensors):
            names[base] = tensors if isinstance(shape, list) else base
    return names


def _add_outputs(proto, tensors: list[str]) -> None:
    """Make intermediate tensors graph outputs, typed from shape inference (float32 if unknown)."""
    import onnx
    from onnx import TensorProto, helper
    present = {o.name for o in proto.graph.output}
    types = {}
    try:
        inferred = onnx.shape_inference.infer_shapes(proto, strict_mode=False)
        for v in list(inferred.graph.value_info) + list(inferred.graph.output):
            types[v.name] = v.type.tensor_type.elem_type
    except Exception:  # inference is only used for dtypes here
        pass
    for t in tensors:
        if t not in present:
            proto.graph.output.append(helper.make_tensor_value_info(t, types.get(t) or TensorProto.FLOAT, None))
