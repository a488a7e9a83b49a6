"""Reading HDF5 safely: a time-limited probe for files that make libhdf5 hang, clear errors for corrupt
ones, and Keras's chunked string-list attributes. Reference: keras/src/legacy/saving/legacy_h5_format.py
(load_attributes_from_hdf5_group)."""
from __future__ import annotations

import os
import signal
import time
from typing import Any

import h5py
import numpy as np

from ...errors import FormatError


PROBE_SECONDS = 30.0  # a corrupt HDF5 object header can make libhdf5 loop forever


def _walk_h5(path: str) -> None:
    """Touch every object header, attribute and small dataset of an HDF5 file."""
    def visit(_name, obj):
        for key in obj.attrs:
            obj.attrs[key]
        if isinstance(obj, h5py.Dataset) and obj.size * obj.dtype.itemsize < 64 << 20:
            obj[()]
    with h5py.File(path, "r") as f:
        visit("/", f)
        f.visititems(visit)


def probe_h5(path: str, label: str, seconds: float | None = None) -> None:
    """Read the whole file once in a forked child with a time limit, so a corrupt file that makes
    libhdf5 spin (it holds the GIL: no thread or signal handler can interrupt it) becomes a clean error.
    Errors in the child are left for the real read to report; only a hang is reported here."""
    seconds = PROBE_SECONDS if seconds is None else seconds
    if not hasattr(os, "fork") or seconds <= 0:
        return
    pid = os.fork()
    if pid == 0:  # child: never returns into the caller's code
        code = 1
        try:
            _walk_h5(path)
            code = 0
        finally:
            os._exit(code)
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        done, _ = os.waitpid(pid, os.WNOHANG)
        if done:
            return
        time.sleep(0.005)
    os.kill(pid, signal.SIGKILL)
    os.waitpid(pid, 0)
    raise FormatError(f"{label}: reading the HDF5 structure did not finish in {seconds:g} s; the file is corrupt "
                      f"(libhdf5 loops on some damaged object headers)")


def open_h5(source: Any, label: str) -> h5py.File:
    """Open an HDF5 file (path or file-like) read-only with a clear error; paths are probed for hangs first."""
    if isinstance(source, (str, os.PathLike)):
        probe_h5(str(source), label)
    try:
        return h5py.File(source, "r")
    except (OSError, ValueError) as e:
        raise FormatError(f"{label}: not a valid HDF5 file (truncated or corrupt): {str(e).splitlines()[0]}") from None


def text(value: Any) -> str:
    """An HDF5 string attribute value as str."""
    return value.decode("utf-8") if isinstance(value, bytes) else str(value)


def read_attr_list(group: h5py.Group, name: str) -> list[str]:
    """A string-list attribute, joined from ``name0``, ``name1``... chunks when Keras split it."""
    if name in group.attrs:
        return [text(v) for v in np.atleast_1d(group.attrs[name])]
    out, i = [], 0
    while f"{name}{i}" in group.attrs:
        out += [text(v) for v in np.atleast_1d(group.attrs[f"{name}{i}"])]
        i += 1
    return out
