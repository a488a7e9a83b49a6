"""Reading and writing .npy / .npz data safely: pickles off, headers checked against the bytes the file
holds before anything is allocated, .npz members bounded like any zip member, names checked, atomic
writes. Reference: numpy/lib/format.py (the .npy format)."""
from __future__ import annotations

import os
import zipfile
from pathlib import Path

import numpy as np

from .errors import FormatError, ShapeError
from .files import atomic_path, zip_member_info
from .schema import check_alloc, elements


def _load(path: str):
    p = Path(path)
    if not p.exists():
        raise FormatError(f"{path}: no such file")
    if p.stat().st_size == 0:
        raise FormatError(f"{path}: file is empty")
    if p.suffix.lower() not in (".npy", ".npz"):
        raise FormatError(f"{path}: expected a .npy or .npz file; received extension {p.suffix!r}")
    try:
        if p.suffix.lower() == ".npy":
            with open(path, "rb") as f:
                return _read_npy(f, os.fstat(f.fileno()).st_size, path)
        with zipfile.ZipFile(path) as zf:
            out = {}
            for info in zf.infolist():
                where = f"{path}:{info.filename}"
                zip_member_info(zf, info.filename, path, None)
                with zf.open(info) as f:
                    out[info.filename[:-4] if info.filename.endswith(".npy") else info.filename] = \
                        _read_npy(f, info.file_size, where)
            return out
    except (OSError, EOFError, zipfile.BadZipFile, ValueError, NotImplementedError) as e:
        raise FormatError(f"{path}: not a valid NumPy file (truncated or corrupt): {e}") from None


def _read_npy(f, size: int, where: str) -> np.ndarray:
    """One .npy array from ``f`` (``size`` bytes in all), its header checked first: a dtype of numbers or
    text (never pickled objects), and a shape the remaining bytes actually hold."""
    fmt = np.lib.format
    try:
        version = fmt.read_magic(f)
        read_header = fmt.read_array_header_1_0 if version == (1, 0) else fmt.read_array_header_2_0
        shape, fortran, dtype = read_header(f)
    except Exception as e:  # noqa: BLE001 (a damaged header raises ValueError, SyntaxError, TokenError...)
        raise FormatError(f"{where}: not a valid .npy array (corrupt header: {type(e).__name__})") from None
    if dtype.hasobject:
        raise FormatError(f"{where}: holds pickled Python objects; kcompat never unpickles data files "
                          f"(save plain numeric arrays)")
    nbytes = elements(shape) * dtype.itemsize
    if nbytes > size - f.tell():
        raise FormatError(f"{where}: the header claims shape {shape} of {dtype} ({nbytes} bytes) but the file holds "
                          f"{max(size - f.tell(), 0)} (truncated or corrupt)")
    check_alloc(nbytes, f"{where}: array of shape {shape}")
    f.seek(0)
    return fmt.read_array(f, allow_pickle=False)


def read_inputs(path: str, input_names: list[str]) -> list[np.ndarray]:
    """Model inputs from .npy (one input) or .npz keyed by input layer name."""
    data = _load(path)
    if isinstance(data, dict):
        missing = [n for n in input_names if n not in data]
        if missing and len(input_names) == 1 and len(data) == 1:
            return [next(iter(data.values()))]
        if missing:
            raise ShapeError(f"{path}: missing input(s) {missing}; the .npz must be keyed by the model's input "
                             f"names {input_names}, received keys {sorted(data)}")
        return [data[n] for n in input_names]
    if len(input_names) != 1:
        raise ShapeError(f"{path}: the model has {len(input_names)} inputs {input_names}; give a .npz keyed by "
                         f"those names, not a single .npy")
    return [data]


def read_arrays(path: str) -> dict[str, np.ndarray]:
    """Every array of an .npz, by key (pickles off)."""
    data = _load(path)
    if not isinstance(data, dict):
        raise FormatError(f"{path}: expected an .npz of named arrays; received a single .npy array")
    return data


def write_outputs(path: str, names: list[str], outputs: list[np.ndarray]) -> None:
    """Write outputs: .npy for a single output, .npz keyed by output layer name for any number."""
    ext = Path(path).suffix.lower()
    if ext not in (".npy", ".npz"):
        raise FormatError(f"{path}: output must be .npy or .npz; received extension {ext!r}")
    if ext == ".npy" and len(outputs) != 1:
        raise ShapeError(f"{path}: the model has {len(outputs)} outputs {names}; use a .npz output to keep all")
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as f:
            if ext == ".npy":
                np.save(f, outputs[0])
            else:
                np.savez(f, **dict(zip(_unique(names), outputs)))


def _unique(names: list[str]) -> list[str]:
    seen: dict[str, int] = {}
    out = []
    for n in names:
        seen[n] = seen.get(n, 0) + 1
        out.append(n if seen[n] == 1 else f"{n}_{seen[n] - 1}")
    return out
