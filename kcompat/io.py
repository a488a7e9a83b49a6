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


MAGIC = {b"PK\x03\x04": ".keras", b"\x89HDF\r\n\x1a\n": ".h5"}  # file signature -> the extension it needs


def _check_extension(path: str, ext: str) -> None:
    """A file whose signature says another format than its extension (a .keras renamed .h5): say so."""
    with open(path, "rb") as f:
        head = f.read(8)
    for magic, real in MAGIC.items():
        if head.startswith(magic) and real != ext and not (real == ".h5" and ext == ".hdf5"):
            kind = "a .keras (zip) archive" if real == ".keras" else "an HDF5 file"
            raise FormatError(f"{path}: the extension says {ext}; received {kind}: rename it to {Path(path).stem}{real}")


def load_spec(path: str, weights: str | None = None) -> ModelSpec:
    """Read any supported model file into a ModelSpec (weights loaded when the file has them)."""
    path = str(path)
    _check_readable(path)
    ext = Path(path).suffix.lower()
    if ext in READ_FORMATS:
        _check_extension(path, ext)
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


def check_target(target: str) -> Path:
    """The folder ``target`` will be written in; FormatError if it cannot be (checked before any work)."""
    target_path = Path(target)
    folder = target_path.parent if str(target_path.parent) else Path(".")
    if not folder.is_dir():
        what = f"{folder} is a file, not a folder" if folder.exists() else f"folder {folder} does not exist"
        raise FormatError(f"{target}: {what}")
    if target_path.is_dir():
        raise FormatError(f"{target}: is a directory, expected a file path to write")
    return folder


@contextmanager
def atomic_path(target: str):
    """Yield a temporary path beside ``target``; rename it over ``target`` only on success."""
    target_path = Path(target)
    folder = check_target(target)
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{target_path.name}.", suffix=".part", dir=folder)
    except OSError as e:
        raise FormatError(f"{target}: cannot write in folder {folder}: {e.strerror or e}") from None
    os.close(fd)
    try:
        yield tmp
        os.chmod(tmp, _new_file_mode(target))  # mkstemp makes 0600; a written file gets the usual mode
        os.replace(tmp, target)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def _new_file_mode(target: str) -> int:
    """The mode ``open(target, "w")`` would give: the existing file's, else 0o666 less the umask."""
    try:
        return os.stat(target).st_mode & 0o7777
    except OSError:
        umask = os.umask(0)
        os.umask(umask)
        return 0o666 & ~umask


def save(model, path: str, **options) -> list[str]:
    """Write a Model to ``path`` by extension; returns the files written."""
    path = str(path)
    ext = Path(path).suffix.lower()
    if ext not in WRITE_FORMATS:
        raise UnsupportedError(f"{path}: cannot write extension {ext!r}; expected one of {list(WRITE_FORMATS)}")
    if not model.spec.has_weights:
        raise FormatError(f"{path}: the model has no weights to write (give --weights, or --random-weights)")
    if ext != ".onnx":
        model = keras3_names(model)
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


def keras3_names(model):
    """The model with layer names Keras 3 accepts: Keras 2 allowed '/' in names (``block1/dense``), Keras 3
    refuses to load them, so they become '_' (``block1_dense``), kept unique. Same model when nothing changes."""
    import copy
    import warnings

    from .model import Model
    from .spec import TensorRef, map_refs
    taken = {ls.name for ls in model.spec.layers}
    renamed: dict[str, str] = {}
    for ls in model.spec.layers:
        if "/" in ls.name:
            base = new = ls.name.replace("/", "_")
            i = 0
            while new in taken:
                i += 1
                new = f"{base}_{i}"
            taken.add(new)
            renamed[ls.name] = new
    if not renamed:
        return model
    spec = copy.deepcopy(model.spec)
    fix = lambda r: TensorRef(renamed.get(r.layer, r.layer), r.node, r.index)  # noqa: E731
    for ls in spec.layers:
        ls.name = renamed.get(ls.name, ls.name)
        ls.config["name"] = ls.name
        for node in ls.nodes:
            node.args, node.kwargs = map_refs(node.args, fix), map_refs(node.kwargs, fix)
    spec.inputs = [fix(r) for r in spec.inputs]
    spec.outputs = [fix(r) for r in spec.outputs]
    pairs = ", ".join(f"{a} -> {b}" for a, b in renamed.items())
    warnings.warn(f"renamed {len(renamed)} layer(s) for Keras 3, which does not allow '/' in names: {pairs}",
                  stacklevel=2)
    return Model(spec)
