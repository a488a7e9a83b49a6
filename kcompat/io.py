"""Load and save by file extension; every write goes beside the target, then is renamed."""
from __future__ import annotations

import os
import tempfile
from contextlib import contextmanager
from pathlib import Path

from .errors import FormatError, UnsupportedError
from .spec import ModelSpec

READ_FORMATS = (".keras", ".h5", ".hdf5", ".json", ".onnx")
WRITE_FORMATS = (".keras", ".h5", ".json", ".onnx")


def _check_readable(path: str) -> None:
    p = Path(path)
    if not p.exists():
        raise FormatError(f"{path}: no such file")
    if p.is_dir():
        raise FormatError(f"{path}: is a directory, expected a model file")
    if p.stat().st_size == 0:
        raise FormatError(f"{path}: file is empty")


def load_spec(path: str, weights: str | None = None) -> ModelSpec:
    """Read any supported model file into a ModelSpec (weights loaded when the file has them)."""
    path = str(path)
    _check_readable(path)
    ext = Path(path).suffix.lower()
    if ext in (".keras", ".h5", ".hdf5") or (weights is not None and ext != ".onnx"):
        try:
            return _load_spec(path, ext, weights)
        except (KeyError, OSError, ValueError, RuntimeError) as e:  # h5py on a corrupt object header, etc.
            where = path if weights is None else f"{path} (weights {weights})"
            raise FormatError(f"{where}: corrupt HDF5 data: {str(e).strip(chr(39))}") from None
    return _load_spec(path, ext, weights)


def _load_spec(path: str, ext: str, weights: str | None) -> ModelSpec:
    if ext in (".keras", ".h5", ".hdf5") and weights is not None:  # architecture from the file, weights from --weights
        from .formats.keras_h5 import read_weights_file
        spec = load_spec(path)
        return read_weights_file(str(weights), spec)
    if ext == ".keras":
        from .formats.keras_zip import read_keras
        return read_keras(path)
    if ext in (".h5", ".hdf5"):
        from .formats.keras_h5 import read_h5
        return read_h5(path)
    if ext == ".json":
        from .formats.keras_json import read_json
        return read_json(path, weights)
    if ext == ".onnx":
        from .formats.onnx_import import read_onnx
        return read_onnx(path)
    raise UnsupportedError(f"{path}: unknown model file extension {ext!r}; expected one of {list(READ_FORMATS)}")


@contextmanager
def atomic_path(target: str):
    """Yield a temporary path beside ``target``; rename it over ``target`` only on success."""
    target_path = Path(target)
    folder = target_path.parent if str(target_path.parent) else Path(".")
    if not folder.is_dir():
        raise FormatError(f"{target}: folder {folder} does not exist")
    fd, tmp = tempfile.mkstemp(prefix=f".{target_path.name}.", suffix=".part", dir=folder)
    os.close(fd)
    try:
        yield tmp
        os.replace(tmp, target)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def save(model, path: str, **options) -> list[str]:
    """Write a Model to ``path`` by extension; returns the files written."""
    path = str(path)
    ext = Path(path).suffix.lower()
    if ext not in WRITE_FORMATS:
        raise UnsupportedError(f"{path}: cannot write extension {ext!r}; expected one of {list(WRITE_FORMATS)}")
    if not model.spec.has_weights:
        raise FormatError(f"{path}: the model has no weights to write (give --weights, or --random-weights)")
    if ext == ".keras":
        from .formats.keras_zip import write_keras as writer
    elif ext == ".h5":
        from .formats.keras_h5 import write_h5 as writer
    elif ext == ".json":
        from .formats.keras_json import write_json
        return write_json(model, path)
    else:
        from .formats.onnx_export import write_onnx
        with atomic_path(path) as tmp:
            write_onnx(model, tmp, **options)
        return [path]
    with atomic_path(path) as tmp:
        writer(model, tmp)
    return [path]
