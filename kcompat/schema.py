"""What kcompat accepts from a model file, checked where each value is read.

Model files are input from anyone: every value a reader takes from one (a config entry, an HDF5
attribute, an ONNX attribute, a header) is checked here for its type and range before it is used,
so a wrong value is one error naming the file, the layer, the key, what was expected and what was
received, in Keras's style (``...: 'units' must be a positive integer. Received: units=-3``), never a
TypeError deep inside. The limits live here too: JSON nesting depth, the largest dimension, and the
bytes one array may take (checked before it is allocated, against this machine's memory).
A leaf module: imports nothing of kcompat but its errors.
"""
from __future__ import annotations

import copy
import os
import resource
from typing import Any

import numpy as np

from .errors import FormatError, ShapeError

MAX_DEPTH = 100  # JSON / config nesting: Keras configs are ~15 deep; Python recursion stops near 1,000
MAX_DIM = 2**31 - 1  # one axis, one unit count, one node index: beyond it no real model, only overflow
KINDS = {"a string": str, "an integer": int, "a list": list, "a dict": dict, "a number": (int, float),
         "a boolean": bool}


def shown(value: Any, limit: int = 60) -> str:
    """``repr`` of a received value, cut to ``limit`` characters (a hostile value can be megabytes)."""
    text = repr(value)
    return text if len(text) <= limit else text[:limit - 3] + "..."


def need(value: Any, kind: str, where: str, key: str, optional: bool = False) -> Any:
    """``value`` if it is of ``kind`` (a key of KINDS; booleans are not integers or numbers), else
    FormatError ``{where}: '{key}' must be {kind}. Received: {key}=...``. ``optional``: None passes."""
    if value is None and optional:
        return None
    types = KINDS[kind]
    if isinstance(value, types) and (kind == "a boolean" or not isinstance(value, bool)):
        return value
    raise FormatError(f"{where}: '{key}' must be {kind}{' or null' if optional else ''}. "
                      f"Received: {key}={shown(value)}")


def index(value: Any, where: str, key: str, limit: int = MAX_DIM) -> int:
    """A non-negative integer up to ``limit`` (a node index, a tensor index, a dimension)."""
    if isinstance(value, (int, np.integer)) and not isinstance(value, bool) and 0 <= value <= limit:
        return int(value)
    raise FormatError(f"{where}: '{key}' must be an integer from 0 to {limit}. Received: {key}={shown(value)}")


def dims(value: Any, where: str, key: str, batch: bool = True) -> list:
    """A shape as a config holds it: a list of dimensions, each a non-negative integer or null (unknown),
    each at most MAX_DIM. ``batch``: the first entry is the batch axis (null or an integer)."""
    if not isinstance(value, (list, tuple)) or len(value) > 64:
        raise FormatError(f"{where}: '{key}' must be a list of at most 64 dimensions. Received: {key}={shown(value)}")
    for d in value:
        if d is not None and not (isinstance(d, (int, np.integer)) and not isinstance(d, bool) and 0 <= d <= MAX_DIM):
            raise FormatError(f"{where}: '{key}' dimensions must be integers from 0 to {MAX_DIM} or null. "
                              f"Received: {key}={shown(value)}")
    return [None if d is None else int(d) for d in value]


def text(value: Any, where: str, key: str) -> str:
    """A string attribute (HDF5 stores str, bytes or a 0-d array of either): decoded, else FormatError."""
    if isinstance(value, np.ndarray) and value.shape == () and value.dtype.kind in "SUO":
        value = value[()]
    if isinstance(value, (bytes, np.bytes_)):
        try:
            return bytes(value).decode("utf-8")
        except UnicodeDecodeError:
            raise FormatError(f"{where}: '{key}' is not UTF-8 text") from None
    if isinstance(value, str):
        return str(value)
    raise FormatError(f"{where}: '{key}' must be a string. Received: {key} of type {type(value).__name__}"
                      + (f" with shape {value.shape}" if isinstance(value, np.ndarray) else ""))


def check_depth(obj: Any, source: str, limit: int = MAX_DEPTH) -> None:
    """FormatError if lists / dicts nest deeper than ``limit`` (walked level by level, without recursion)."""
    level, depth = [obj], 1
    while level:
        if depth > limit:
            raise FormatError(f"{source}: the config nests deeper than {limit} levels; not a Keras model config")
        deeper = []
        for item in level:
            values = item.values() if type(item) is dict else item if type(item) is list else ()
            deeper += [v for v in values if type(v) is dict or type(v) is list]
        level, depth = deeper, depth + 1


def copy_json(obj: Any) -> Any:
    """A deep copy of JSON data (dicts, lists, scalars): copy.deepcopy's result, several times faster."""
    if type(obj) is dict:
        return {k: copy_json(v) for k, v in obj.items()}
    if type(obj) is list:
        return [copy_json(v) for v in obj]
    return obj if type(obj) in (str, int, float, bool, type(None)) else copy.deepcopy(obj)


# ------------------------------------------------------------------ sizes and memory
def elements(shape: Any, batch: int = 1) -> int:
    """Elements of ``shape`` with unknown dims (the batch) taken as ``batch``: exact Python integers."""
    n = 1
    for d in shape:
        n *= batch if d is None else int(d)
    return n


def readable_bytes(n: float) -> str:
    """1536 -> '1.5 KiB'."""
    for unit in ("B", "KiB", "MiB", "GiB", "TiB", "PiB"):
        if n < 1024 or unit == "PiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} PiB"


def memory_limit() -> int:
    """The bytes one process may hold here: physical memory, or the address-space limit when lower."""
    try:
        total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        total = 1 << 40
    soft, _ = resource.getrlimit(resource.RLIMIT_AS)
    return min(total, soft) if soft not in (resource.RLIM_INFINITY, -1) and soft > 0 else total


def check_alloc(nbytes: int, what: str) -> None:
    """ShapeError before allocating ``nbytes`` for ``what`` (which names the file and layer) when this
    machine could not hold it: the user sees the layer and the size, never NumPy's 'Unable to allocate'."""
    limit = memory_limit()
    if nbytes > limit:
        raise ShapeError(f"{what} needs {readable_bytes(nbytes)}, more than this machine's memory "
                         f"({readable_bytes(limit)})")
