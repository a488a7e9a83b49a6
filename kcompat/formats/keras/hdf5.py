"""Reading HDF5 safely: a probe for files that make libhdf5 hang, links followed only when they are plain
(hard) links, weights as datasets of numbers mapped from the file (read by the OS on first use, never
copied whole), clear errors for corrupt files, and Keras's chunked string-list attributes.
Reference: keras/src/legacy/saving/legacy_h5_format.py (load_attributes_from_hdf5_group).

Hostile HDF5 files can: spin libhdf5 forever on a damaged object header (it holds the GIL: only a
separate process can be stopped), hold soft or external links (an external link to a FIFO blocks the
reader; one to another file reads outside the model), store a dataset's bytes in other files
(external storage, virtual datasets), or hold strings and compound records where numbers belong.
Each is refused by name here, before anything reads it.
"""
from __future__ import annotations

import os
import select
import signal
import time
from contextlib import contextmanager
from typing import Any

import h5py
import numpy as np

from ...errors import FormatError
from ...files import FileMap
from ...schema import check_alloc, shown, text as text_value

PROBE_SECONDS = 1.0  # the probe is stopped after this long without progress (libhdf5 spinning)
PROBE_LIMIT = 300.0  # ... and after this long in all


def _walk_h5(source: Any, tick=lambda: None) -> None:
    """Parse every object header and attribute of an HDF5 file (never dataset bytes), calling ``tick`` as it
    goes. Low-level calls: libhdf5 visits the objects in C (hard links only), so a 20,000-object file takes a
    second, not ten. An error in one place (a damaged symbol table) does not end the walk: everything
    else the real read may touch is still walked, root attributes first."""
    with h5py.File(source, "r") as f:
        _read_attributes(f.id)
        objects = []

        def seen(name, info):
            objects.append((name, info.num_attrs))
            if len(objects) % 64 == 0:
                tick()
        try:
            h5py.h5o.visit(f.id, seen, info=True)
        except Exception:  # noqa: BLE001 (the objects listed so far are still walked)
            pass
        tick()
        for count, (name, n_attrs) in enumerate(objects):
            if count % 64 == 0:
                tick()
            if n_attrs:
                try:
                    _read_attributes(h5py.h5o.open(f.id, name))
                except Exception:  # noqa: BLE001 (errors are for the real read to report; hangs are ours)
                    pass


def _read_attributes(oid) -> None:
    """Read every attribute of one object, as h5py's AttributeManager would (errors ignored)."""
    try:
        count = h5py.h5a.get_num_attrs(oid)
    except Exception:  # noqa: BLE001
        return
    for i in range(count):
        try:
            attr = h5py.h5a.open(oid, index=i)
            value = np.empty(attr.shape, dtype=attr.dtype)
            attr.read(value, mtype=h5py.h5t.py_create(attr.dtype))
        except Exception:  # noqa: BLE001
            pass


def probe_h5(source: Any, label: str, seconds: float | None = None) -> None:
    """Walk the file's structure once in a forked child that reports progress, and stop it when it makes
    none for ``seconds``: a corrupt file that makes libhdf5 spin becomes a clean error in about a second,
    while a big healthy file takes as long as it needs. Errors in the child are left for the real read."""
    seconds = PROBE_SECONDS if seconds is None else seconds
    if not hasattr(os, "fork") or seconds <= 0:
        return
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # child: never returns into the caller's code
        code = 1
        try:
            os.close(read_end)
            _walk_h5(source, lambda: os.write(write_end, b"."))
            code = 0
        finally:
            os._exit(code)
    os.close(write_end)
    start = last = time.monotonic()
    try:
        while True:
            ready, _, _ = select.select([read_end], [], [], 0.01)
            if ready and os.read(read_end, 65536):
                last = time.monotonic()
            done, _ = os.waitpid(pid, os.WNOHANG)
            if done:
                return
            now = time.monotonic()
            if now - last > seconds or now - start > PROBE_LIMIT:
                break
    finally:
        os.close(read_end)
    os.kill(pid, signal.SIGKILL)
    os.waitpid(pid, 0)
    raise FormatError(f"{label}: reading the HDF5 structure did not finish (no progress for {seconds:g} s); the file "
                      f"is corrupt (libhdf5 loops on some damaged object headers)")


def open_h5(source: Any, label: str, probe: bool = True) -> h5py.File:
    """Open an HDF5 file (path or file object) read-only with a clear error, after the probe for hangs."""
    if probe:
        probe_h5(source, label)
    try:
        return h5py.File(source, "r")
    except (OSError, ValueError, RuntimeError) as e:
        raise FormatError(f"{label}: not a valid HDF5 file (truncated or corrupt): {str(e).splitlines()[0]}") from None


@contextmanager
def h5_errors(label: str):
    """libhdf5's failures on a damaged file (RuntimeError 'bad symbol table node signature', OSError,
    KeyError...) as one FormatError naming the file."""
    try:
        yield
    except (RuntimeError, OSError, KeyError, ValueError, TypeError) as e:
        message = str(e).strip().strip("'").splitlines()
        raise FormatError(f"{label}: corrupt HDF5 data: {message[0] if message else type(e).__name__}") from None


def link_types(f: h5py.File) -> dict[str, int]:
    """Every link of the file (path without the leading '/') -> its type (h5py.h5l.TYPE_HARD, _SOFT,
    _EXTERNAL), listed by libhdf5 without following soft or external links: one call, then lookups are free."""
    out: dict[str, int] = {}
    f.id.links.visit(lambda name, info: out.__setitem__(name.decode("utf-8", "replace"), info.type), info=True)
    return out


def member(group: h5py.Group, path: str, where: str, links: dict[str, int] | None = None) -> Any:
    """The object at ``path`` under ``group``, following hard links only (None when absent). A soft or
    external link anywhere on the path is refused by name: Keras writes none, and an external link
    reads another file (or blocks on a FIFO). ``links``: link_types(file), to check the path without
    opening each of its groups."""
    parts = [p for p in path.split("/") if p]
    if links is not None:
        if member_path_ok(group, path, where, links) is None:
            return None
        return group["/".join(parts)] if parts else group
    obj = group
    for part in parts:
        if not isinstance(obj, h5py.Group):
            return None
        link = obj.get(part, getlink=True)
        if link is None:
            return None
        if not isinstance(link, h5py.HardLink):
            return _refuse_link(h5py.h5l.TYPE_EXTERNAL if isinstance(link, h5py.ExternalLink) else h5py.h5l.TYPE_SOFT,
                                path, where)
        obj = obj[part]
    return obj


def _refuse_link(kind: int, path: str, where: str):
    what = "an external link" if kind == h5py.h5l.TYPE_EXTERNAL else "a soft link"
    raise FormatError(f"{where}: '{path}' is {what}; kcompat reads only what the file itself holds")


def children(group: h5py.Group) -> list[str]:
    """Names of a group's members (links of any kind: ``member`` refuses the ones not to follow)."""
    return list(group.keys())


def dataset(group: h5py.Group, path: str, where: str, links: dict[str, int]) -> Any:
    """The dataset at ``path`` under ``group`` as a low-level h5py DatasetID (three times faster to query
    than h5py.Dataset, which counts at 10,000 weights), after member's link checks; None when absent."""
    if member_path_ok(group, path, where, links) is None:
        return None
    return h5py.h5o.open(group.id, path.encode("utf-8"))


def member_path_ok(group: h5py.Group, path: str, where: str, links: dict[str, int]) -> bool | None:
    """True when every link on ``path`` is a hard link (FormatError for a soft or external one), None if absent."""
    parts = [p for p in path.split("/") if p]
    prefix = group.name.strip("/")
    for i in range(len(parts)):
        kind = links.get("/".join([prefix, *parts[:i + 1]] if prefix else parts[:i + 1]))
        if kind is None:
            return None
        if kind != h5py.h5l.TYPE_HARD:
            return _refuse_link(kind, path, where)
    return True


def weight_array(item: Any, where: str, fmap: FileMap | None, base: int = 0) -> np.ndarray:
    """A weight dataset (an h5py.Dataset or its DatasetID) as an array: mapped from the file when it is
    stored plainly (Keras's layout: contiguous, unfiltered), else read now. Refused by name: a group or
    anything but a dataset, bytes stored outside the file (external storage, virtual datasets), and dtypes
    that are not numbers."""
    dsid = item.id if isinstance(item, h5py.Dataset) else item
    if not isinstance(dsid, h5py.h5d.DatasetID):
        kind = "a group" if isinstance(dsid, h5py.h5g.GroupID) else type(item).__name__
        raise FormatError(f"{where}: expected a dataset of numbers; received {kind}")
    dtype = dsid.dtype
    if dtype == np.dtype("V2") and h5py.Dataset(dsid).attrs.get("dtype") in ("bfloat16", b"bfloat16"):
        import ml_dtypes  # Keras 3's bfloat16 (saving_lib.py H5IOStore: opaque 2-byte values, attribute dtype)
        check_alloc(int(np.prod(dsid.shape)) * 4, f"{where} (shape {dsid.shape}, bfloat16 as float32)")
        return np.asarray(h5py.Dataset(dsid)[()]).view(ml_dtypes.bfloat16).astype(np.float32)
    if dtype.kind not in "fiub" or dtype.itemsize > 8 or dtype.fields or dtype.subdtype:
        raise FormatError(f"{where}: expected a dataset of numbers (float or integer); received dtype {dtype}")
    shape = tuple(int(d) for d in dsid.shape)
    plist = dsid.get_create_plist()
    if plist.get_external_count() or plist.get_layout() == h5py.h5d.VIRTUAL:
        raise FormatError(f"{where}: the dataset's bytes are stored in other files; kcompat reads only what "
                          f"the model file itself holds")
    nbytes = dtype.itemsize
    for d in shape:
        nbytes *= d
    offset = dsid.get_offset() if plist.get_layout() == h5py.h5d.CONTIGUOUS and not plist.get_nfilters() else None
    if fmap is not None and offset is not None and nbytes:
        return fmap.array(base + offset, shape, dtype, f"{where} (shape {shape})")
    check_alloc(nbytes, f"{where} (shape {shape}, {dtype})")
    return np.asarray(h5py.Dataset(dsid)[()])


def text(value: Any) -> str:
    """An HDF5 string attribute value as str."""
    return value.decode("utf-8", errors="replace") if isinstance(value, bytes) else str(value)


def string_attr(group: h5py.Group, name: str, where: str) -> str:
    """A single string attribute (``model_config``, ``keras_version``), type-checked."""
    return text_value(group.attrs[name], where, name)


def read_attr_list(group: h5py.Group, name: str, where: str = "") -> list[str]:
    """A string-list attribute, joined from ``name0``, ``name1``... chunks when Keras split it."""
    if name in group.attrs:
        chunks = [group.attrs[name]]
    else:
        chunks, i = [], 0
        while f"{name}{i}" in group.attrs:
            chunks.append(group.attrs[f"{name}{i}"])
            i += 1
    out = []
    for chunk in chunks:
        values = np.atleast_1d(chunk)
        if values.size == 0:  # Keras writes an empty list as an empty float array
            continue
        if values.dtype.kind not in "SUO" or values.ndim != 1:
            raise FormatError(f"{where or group.name}: attribute '{name}' must be a list of strings. "
                              f"Received: {name}={shown(chunk)}")
        out += [text_value(v, where or group.name, name) for v in values]
    return out
