"""Model files by extension: one table from extension to reader and writer.

A reader is ``read(path, weights=None) -> ModelSpec``; a writer is ``write(model, path, **options) ->
list[str]`` (the files it wrote, each written atomically: absent or whole). Readers and writers are named
as ``module:function`` and imported on first use, so reading a Keras file never imports onnx.
"""
from __future__ import annotations

import importlib
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from ..errors import FormatError, UnsupportedError
from ..files import check_readable
from ..spec import ModelSpec


@dataclass(frozen=True)
class Format:
    """One file format: what it is called, its reader and writer, and the bytes its files start with."""

    name: str
    reader: str  # "module:function" under kcompat.formats
    writer: str | None = None  # None: read only
    magic: bytes | None = None  # a file of another format with this signature is named for what it is
    takes_weights: bool = True  # --weights FILE may replace (or, for .json, supply) the model's weights
    keras: bool = True  # a Keras format: written with the layer names Keras 3 accepts

    def read(self) -> Callable[..., ModelSpec]:
        return _resolve(self.reader)

    def write(self) -> Callable[..., list[str]]:
        return _resolve(self.writer)


ZIP, HDF5 = b"PK\x03\x04", b"\x89HDF\r\n\x1a\n"
FORMATS: dict[str, Format] = {
    ".keras": Format("a .keras (zip) archive", "keras.archive:read_keras", "keras.archive:write_keras", ZIP),
    ".h5": Format("an HDF5 file", "keras.legacy_h5:read_h5", "keras.legacy_h5:write_h5", HDF5),
    ".hdf5": Format("an HDF5 file", "keras.legacy_h5:read_h5", None, HDF5),
    ".json": Format("a Keras JSON config", "keras.json_file:read_json", "keras.json_file:write_json"),
    ".onnx": Format("an ONNX model", "onnx.import_.driver:read_onnx", "onnx.export.driver:write_onnx",
                    takes_weights=False, keras=False),
}


def _resolve(target: str) -> Callable:
    module, function = target.split(":")
    return getattr(importlib.import_module(f"{__name__}.{module}"), function)


def format_of(path: str, writing: bool = False) -> Format:
    """The Format for ``path``'s extension; UnsupportedError naming the extensions kcompat knows."""
    ext = Path(path).suffix.lower()
    fmt = FORMATS.get(ext)
    if fmt is None or (writing and fmt.writer is None):
        known = [e for e, f in FORMATS.items() if f.writer or not writing]
        verb = "cannot write" if writing else "unknown model file"
        raise UnsupportedError(f"{path}: {verb} extension {ext!r}; expected one of {known}")
    return fmt


def check_signature(path: str, fmt: Format) -> None:
    """A file whose signature says another format than its extension (a .keras renamed .h5): say so."""
    with open(path, "rb") as f:
        head = f.read(8)
    for ext, other in FORMATS.items():
        if other.magic and head.startswith(other.magic) and other.magic != fmt.magic:
            raise FormatError(f"{path}: the extension says {Path(path).suffix.lower()}; received {other.name}: "
                              f"rename it to {Path(path).stem}{ext}")


def load_spec(path: str, weights: str | None = None) -> ModelSpec:
    """Read any supported model file into a ModelSpec (weights loaded when the file has them)."""
    path = str(path)
    check_readable(path)
    fmt = format_of(path)
    check_signature(path, fmt)
    if weights is not None and not fmt.takes_weights:
        raise UnsupportedError(f"{path}: {fmt.name} carries its own weights; --weights applies to Keras files")
    weights = None if weights is None else str(weights)
    try:
        return fmt.read()(path, weights)
    except (KeyError, OSError, ValueError, RuntimeError) as e:  # h5py on a corrupt object header, etc.
        if not fmt.keras or (fmt.magic is None and weights is None):  # HDF5 is inside every other Keras file
            raise
        where = path if weights is None else f"{path} (weights {weights})"
        raise FormatError(f"{where}: corrupt HDF5 data: {str(e).strip(chr(39))}") from None


def save(model, path: str, **options) -> list[str]:
    """Write a Model to ``path`` by extension; returns the files written."""
    path = str(path)
    fmt = format_of(path, writing=True)
    if not model.spec.has_weights:
        raise FormatError(f"{path}: the model has no weights to write (give --weights, or --random-weights)")
    if fmt.keras:
        from .keras.dialect import keras3_names
        model = keras3_names(model)
    return fmt.write()(model, path, **options)
