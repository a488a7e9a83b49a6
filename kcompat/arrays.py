"""Reading and writing .npy / .npz data safely: pickles off, names checked, atomic writes."""
from __future__ import annotations

import zipfile
from pathlib import Path

import numpy as np

from .errors import FormatError, ShapeError
from .files import atomic_path


def _load(path: str):
    p = Path(path)
    if not p.exists():
        raise FormatError(f"{path}: no such file")
    if p.stat().st_size == 0:
        raise FormatError(f"{path}: file is empty")
    if p.suffix.lower() not in (".npy", ".npz"):
        raise FormatError(f"{path}: expected a .npy or .npz file; received extension {p.suffix!r}")
    try:
        data = np.load(path, allow_pickle=False)
        if isinstance(data, np.lib.npyio.NpzFile):
            return {k: data[k] for k in data.files}
        return data
    except ValueError as e:
        if "allow_pickle" in str(e) or "pickle" in str(e).lower():
            raise FormatError(f"{path}: holds pickled Python objects; kcompat never unpickles data files "
                              f"(save plain numeric arrays)") from None
        raise FormatError(f"{path}: not a valid NumPy file: {e}") from None
    except (OSError, EOFError, zipfile.BadZipFile) as e:
        raise FormatError(f"{path}: not a valid NumPy file (truncated or corrupt): {e}") from None


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
