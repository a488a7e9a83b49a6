"""An .onnx file read defensively: every check a hostile file needs before anything uses it.

Refused by name: truncated or corrupt protobuf, names that are not text, tensors claiming absurd sizes
or holding fewer bytes than their shape needs, unknown element types, external data outside the
model's folder (``../``, absolute paths, symlinks out, FIFOs: never opened), graphs onnx.checker rejects.

``read_lazily`` is the importer's read: each initializer becomes a NumPy array once (external data is
mapped from its file, read by the OS only where used), and initializers over STRIP_BYTES leave the
protobuf, which keeps their name, type and shape: a 1 GiB model is held once, not once per copy that
onnx.checker and shape inference would serialize. ``skeleton`` is the small model those two are given
(the big initializers as typed graph inputs). ``load_checked`` keeps everything inline (for ONNX Runtime).
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from ....errors import FormatError
from ....files import FileMap
from ....schema import elements
from ..common import skeleton as skeleton_of

MAX_ELEMENTS = 1 << 31  # per tensor: refuse a claim of 10^12 elements before allocating anything
STRIP_BYTES = 1 << 20  # initializers bigger than this leave the protobuf once read into arrays
STRIPPED = "kcompat:read"  # the external-data location marking a stripped initializer (never opened)
PACKED = (16, 17, 18, 19, 20, 21, 22, 23, 25, 26)  # bfloat16 / float8 / 4-bit: stored in other widths


def _parse(path: str):
    """The ModelProto of ``path`` (no external data), with the checks that need no data."""
    import onnx
    from google.protobuf.message import DecodeError
    try:
        model = onnx.load(path, load_external_data=False)
    except (DecodeError, ValueError, RuntimeWarning, UnicodeDecodeError, RecursionError) as e:
        raise FormatError(f"{path}: not a valid ONNX file (truncated or corrupt protobuf): {_first_line(e)}") from None
    except OSError as e:
        raise FormatError(f"{path}: cannot read: {e}") from None
    if not model.HasField("graph") or (not model.graph.node and not model.graph.output):
        raise FormatError(f"{path}: ONNX file has no graph (truncated, or not an ONNX model)")
    _check_text(model, path)
    for tensor in _all_tensors(model.graph):
        _check_tensor_size(tensor, path)
    for value in list(model.graph.input) + list(model.graph.output):
        dims = [d.dim_value for d in value.type.tensor_type.shape.dim if d.HasField("dim_value")]
        if any(d < 0 for d in dims) or elements([max(d, 1) for d in dims]) > MAX_ELEMENTS:
            raise FormatError(f"{path}: graph input/output '{value.name}' claims shape {dims}; refusing it")
    return model


def _check(model, path: str) -> None:
    import onnx
    if not _unknown_ops(model):  # with ops onnx does not know, the importer reports them all instead
        try:
            onnx.checker.check_model(model)
        except (onnx.checker.ValidationError, UnicodeDecodeError) as e:
            raise FormatError(f"{path}: invalid ONNX model: {_first_line(e)}") from None


def load_checked(path: str):
    """Read an .onnx file with every hostile-file check; returns a ModelProto with all data inline."""
    model = _parse(path)
    for tensor in _all_tensors(model.graph):
        _load_external(tensor, path)
    _check(model, path)
    return model


def read_lazily(path: str):
    """(model, arrays): the checked ModelProto with its big initializers' data stripped (name, type and
    dims kept), and every initializer's value as a NumPy array (external data mapped, not read)."""
    model = _parse(path)
    arrays = {}
    maps: dict[Path, FileMap] = {}
    for tensor in model.graph.initializer:
        if _external(tensor):
            arrays[tensor.name] = _map_external(tensor, path, maps)
        else:
            arrays[tensor.name] = tensor_array(tensor, path)
        if _external(tensor) or arrays[tensor.name].nbytes > STRIP_BYTES:
            _strip(tensor)
    for node in model.graph.node:  # Constant nodes, subgraphs: small, read inline as before
        for attr in node.attribute:
            for tensor in _all_tensors_of_attr(attr):
                _load_external(tensor, path)
    _check(skeleton(model), path)
    return model, arrays


def skeleton(model):
    """``model`` with its stripped initializers as typed graph inputs (for onnx.checker and shape inference)."""
    return skeleton_of(model, STRIPPED)


def tensor_array(tensor, path: str) -> np.ndarray:
    """An inline tensor's value, or FormatError naming it (unknown element type, bytes that do not fit)."""
    from onnx import numpy_helper
    try:
        return numpy_helper.to_array(tensor)
    except Exception as e:  # noqa: BLE001 (KeyError for an unknown type, ValueError / TypeError for bad data)
        raise FormatError(f"{path}: tensor '{tensor.name}' (element type {tensor.data_type}) cannot be read: "
                          f"{_first_line(e) or type(e).__name__}") from None


def _strip(tensor) -> None:
    from onnx import TensorProto
    for field in ("raw_data", "float_data", "int32_data", "int64_data", "double_data", "uint64_data", "string_data"):
        tensor.ClearField(field)
    del tensor.external_data[:]
    tensor.data_location = TensorProto.EXTERNAL
    entry = tensor.external_data.add()
    entry.key, entry.value = "location", STRIPPED


def _is_stripped(tensor) -> bool:
    return any(e.key == "location" and e.value == STRIPPED for e in tensor.external_data)


def _external(tensor) -> bool:
    from onnx.external_data_helper import uses_external_data
    return uses_external_data(tensor)


def _external_target(tensor, path: str) -> tuple[Path, int, int | None]:
    """(file, offset, length) of a tensor's external data, checked: a regular file in the model's folder."""
    from onnx.external_data_helper import ExternalDataInfo
    try:
        info = ExternalDataInfo(tensor)
    except (ValueError, TypeError) as e:
        raise FormatError(f"{path}: tensor '{tensor.name}': bad external data fields ({_first_line(e)})") from None
    folder = Path(path).resolve().parent
    location = info.location or ""
    target = (folder / location).resolve()
    if not location or os.path.isabs(location) or folder not in target.parents:
        raise FormatError(f"{path}: tensor '{tensor.name}' points to external data {location!r} outside the "
                          f"model's folder; refusing to read it")
    if not target.is_file():
        raise FormatError(f"{path}: tensor '{tensor.name}': external data file {location!r} is missing (or not "
                          f"a regular file)")
    offset, length = info.offset or 0, info.length or None
    if offset < 0 or (length is not None and length < 0) or offset + (length or 0) > target.stat().st_size:
        raise FormatError(f"{path}: tensor '{tensor.name}': external data {location!r} is shorter than the "
                          f"{offset + (length or 0)} bytes it claims")
    return target, offset, length


def _map_external(tensor, path: str, maps: dict) -> np.ndarray:
    """An initializer's external data as an array mapped from its file (checked first)."""
    from onnx import helper
    target, offset, length = _external_target(tensor, path)
    try:
        dtype = np.dtype(helper.tensor_dtype_to_np_dtype(tensor.data_type))
    except (KeyError, TypeError, ValueError):
        raise FormatError(f"{path}: tensor '{tensor.name}' has unknown element type {tensor.data_type}") from None
    if dtype.hasobject or tensor.data_type in PACKED:  # strings, packed types: read the usual way
        _load_external(tensor, path)
        return tensor_array(tensor, path)
    shape = tuple(int(d) for d in tensor.dims)
    nbytes = elements(shape) * dtype.itemsize
    if length is not None and length != nbytes:
        raise FormatError(f"{path}: tensor '{tensor.name}' of shape {list(shape)} needs {nbytes} bytes; its "
                          f"external data holds {length}")
    if target not in maps:
        maps[target] = FileMap(target, f"{path}: external data {target.name}")
    return maps[target].array(offset, shape, dtype.newbyteorder("<"), f"tensor '{tensor.name}'")


def _load_external(tensor, path: str) -> None:
    """Load one tensor's external data into the protobuf (after the checks), if it has any."""
    from onnx.external_data_helper import load_external_data_for_tensor
    if not _external(tensor) or _is_stripped(tensor):
        return
    target, _, _ = _external_target(tensor, path)
    try:
        load_external_data_for_tensor(tensor, str(target.parent))
    except (OSError, ValueError) as e:
        raise FormatError(f"{path}: tensor '{tensor.name}': cannot read its external data: {_first_line(e)}") from None
    _check_tensor_size(tensor, path)
    del tensor.external_data[:]
    tensor.data_location = 0  # DEFAULT: the bytes are inline now


def _check_text(model, path: str) -> None:
    """Names and op types must be text (a corrupt file can hold bytes that are not UTF-8)."""
    graph = model.graph
    names = [v.name for v in list(graph.input) + list(graph.output)] + [t.name for t in graph.initializer]
    names += [graph.name, model.producer_name]
    for node in graph.node:
        names += [node.op_type, node.name, node.domain, *node.input, *node.output]
    if not all(isinstance(n, str) for n in names):
        raise FormatError(f"{path}: corrupt ONNX file: a name or op type is not UTF-8 text")


def _unknown_ops(model) -> set[str]:
    """Default-domain op types with no ONNX schema (Erfc from tf2onnx, typos, future ops)."""
    import onnx
    used = {n.op_type for n in model.graph.node if n.domain in ("", "ai.onnx")}
    return {op for op in used if not onnx.defs.has(op, "")}


def _all_tensors_of_attr(attr):
    if attr.HasField("t"):
        yield attr.t
    yield from attr.tensors
    for sub in list(attr.graphs) + ([attr.g] if attr.HasField("g") else []):
        yield from _all_tensors(sub)


def _all_tensors(graph):
    """Initializers and Constant-node tensors, subgraphs included."""
    yield from graph.initializer
    for node in graph.node:
        for attr in node.attribute:
            yield from _all_tensors_of_attr(attr)


def _check_tensor_size(tensor, path: str) -> None:
    """A tensor's dims must be sane, and its inline bytes must match them."""
    from onnx import helper
    dims = list(tensor.dims)
    count = elements(dims) if all(d >= 0 for d in dims) else -1
    if count < 0 or count > MAX_ELEMENTS:
        raise FormatError(f"{path}: tensor '{tensor.name}' claims shape {dims} ({float(count):.3g} elements); "
                          f"refusing it")
    if tensor.HasField("raw_data") and tensor.data_type not in (8, 0):  # 8 = STRING
        try:
            itemsize = np.dtype(helper.tensor_dtype_to_np_dtype(tensor.data_type)).itemsize
        except (KeyError, TypeError):
            return
        if tensor.data_type in PACKED:
            return
        if len(tensor.raw_data) != count * itemsize:
            raise FormatError(f"{path}: tensor '{tensor.name}' of shape {dims} holds {len(tensor.raw_data)} bytes, "
                              f"expected {count * itemsize} (truncated or corrupt)")


def _first_line(e: Exception) -> str:
    text = str(e).strip().splitlines()
    return text[0] if text else type(e).__name__
