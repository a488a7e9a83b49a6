"""File helpers every reader and writer shares: readable checks, checked targets, atomic writes, lazy reads.

Imports nothing of kcompat but errors.py and schema.py (leaves), so any module may use it. A write goes to a
temporary file beside the target and is renamed over it only when complete: a failed or interrupted
write leaves the target absent or as it was, never half written.
"""
from __future__ import annotations

import functools
import io
import mmap
import os
import tempfile
import zipfile
from contextlib import contextmanager
from pathlib import Path

from .errors import FormatError
from .schema import readable_bytes

MAX_RATIO = 100  # zip member: declared size / compressed size. Weights ~1.1:1, JSON ~10:1, zip bombs ~1000:1


def check_readable(path: str) -> None:
    """FormatError unless ``path`` is a non-empty regular file."""
    p = Path(path)
    if not p.exists():
        raise FormatError(f"{path}: no such file")
    if p.is_dir():
        raise FormatError(f"{path}: is a directory, expected a model file")
    if p.stat().st_size == 0:
        raise FormatError(f"{path}: file is empty")


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
        os.chmod(tmp, new_file_mode(target))  # mkstemp makes 0600; a written file gets the usual mode
        os.replace(tmp, target)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


@contextmanager
def atomic_paths(main: str, *companions: str):
    """Temporary paths beside ``main`` and each companion (the .json and its weights, the .onnx and its
    external data), committed together on success. A writer that does not write a companion deletes its
    temporary file. The main file is the one readers open, and it names its companions, so the commit
    order keeps every instant consistent: the old main file is removed, companions are renamed into
    place, the new main file is renamed last. A write killed at any moment leaves the main file absent
    or whole with whole companions (a stray companion, or ``.part`` files, at worst)."""
    targets = [str(main), *map(str, companions)]
    folder = check_target(targets[0])
    tmps: list[str] = []
    try:
        for target in targets:
            check_target(target)
            try:
                fd, tmp = tempfile.mkstemp(prefix=f".{Path(target).name}.", suffix=".part", dir=folder)
            except OSError as e:
                raise FormatError(f"{target}: cannot write in folder {folder}: {e.strerror or e}") from None
            os.close(fd)
            tmps.append(tmp)
        yield tmps
        for tmp, target in zip(tmps, targets):
            if os.path.exists(tmp):
                os.chmod(tmp, new_file_mode(target))
        if os.path.lexists(targets[0]) and any(os.path.exists(t) for t in tmps[1:]):
            os.unlink(targets[0])  # the old main file must not name the new companions
        for tmp, target in zip(tmps[1:], targets[1:]):
            if os.path.exists(tmp):
                os.replace(tmp, target)
        os.replace(tmps[0], targets[0])
    finally:
        for tmp in tmps:
            if os.path.exists(tmp):
                os.unlink(tmp)


def new_file_mode(target: str) -> int:
    """The mode ``open(target, "w")`` would give: the existing file's, else 0o666 less the umask."""
    try:
        return os.stat(target).st_mode & 0o7777
    except OSError:
        umask = os.umask(0)
        os.umask(umask)
        return 0o666 & ~umask


def writes_atomically(write):
    """Decorator for ``write(model, path, **options)`` that writes one file: it writes a temporary file
    beside ``path``, renamed over ``path`` on success; the wrapped function returns ``[path]``."""
    @functools.wraps(write)
    def wrapped(model, path, *args, **options) -> list[str]:
        path = str(path)
        with atomic_path(path) as tmp:
            write(model, tmp, *args, **options)
        return [path]
    return wrapped


# ------------------------------------------------------------------ reading regions of a file lazily
class FileSlice(io.RawIOBase):
    """A read-only, seekable file object over bytes ``[start, start + size)`` of an open file (a stored zip
    member): h5py opens it like a file, and nothing is copied or extracted. Reads use ``os.pread``, so
    the slice shares no file position with anyone (a forked probe can read it too)."""

    def __init__(self, fileobj, start: int, size: int, name: str = ""):
        super().__init__()
        self.fileobj = fileobj  # kept open as long as the slice is used
        self.fd, self.start, self.size, self.name, self.pos = fileobj.fileno(), start, size, name, 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self.pos

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self.pos, io.SEEK_END: self.size}[whence]
        self.pos = max(0, base + offset)
        return self.pos

    def readinto(self, buffer) -> int:
        view = memoryview(buffer).cast("B")
        n = max(0, min(len(view), self.size - self.pos))
        got = os.preadv(self.fd, [view[:n]], self.start + self.pos) if n else 0
        self.pos += got
        return got


class FileMap:
    """One copy-on-write memory map of a whole file, handing out NumPy arrays at byte offsets: an array is
    read from disk by the OS only where it is used, and a 1 GiB weight file costs no memory until then;
    writing to an array changes memory, never the file. Offsets are checked against the file's size
    first (a truncated file is a FormatError, never a crash)."""

    def __init__(self, source, label: str):
        self.label = label
        self.fd = None  # where arrays are read from when the file cannot be mapped
        try:
            f = open(source, "rb") if isinstance(source, (str, os.PathLike)) else None
            fileno = (f or source).fileno()
            self.size = os.fstat(fileno).st_size
            try:
                self.mm = mmap.mmap(fileno, 0, access=mmap.ACCESS_COPY) if self.size else None
            except (OSError, ValueError):  # a file system without mmap: arrays are read when asked for
                self.mm, self.fd = None, os.dup(fileno)
            if f is not None:
                f.close()
        except OSError as e:
            raise FormatError(f"{label}: cannot read the file: {e.strerror or e}") from None

    def __del__(self):
        if getattr(self, "fd", None) is not None:
            os.close(self.fd)

    def array(self, offset: int, shape: tuple, dtype, what: str):
        """The array of ``shape`` / ``dtype`` stored at ``offset`` (read on first use)."""
        import numpy as np
        dtype = np.dtype(dtype)
        nbytes = dtype.itemsize
        for d in shape:
            nbytes *= int(d)
        if offset < 0 or offset + nbytes > self.size:
            raise FormatError(f"{self.label}: {what} claims bytes {offset}..{offset + nbytes} of a "
                              f"{self.size}-byte file (truncated or corrupt)")
        if self.mm is not None:
            return np.ndarray(shape, dtype, buffer=self.mm, offset=offset)
        data = bytearray(nbytes)
        if nbytes and (self.fd is None or os.preadv(self.fd, [data], offset) != nbytes):
            raise FormatError(f"{self.label}: {what}: the file ended early")
        return np.frombuffer(data, dtype).reshape(shape)


# ------------------------------------------------------------------ zip members, bounded
def zip_member_info(zf: zipfile.ZipFile, name: str, path: str, limit: int | None) -> zipfile.ZipInfo:
    """A zip member's ZipInfo once its sizes are plausible: under ``limit`` (None: any), not a zip bomb
    (more than MAX_RATIO times its compressed size), not encrypted; FormatError naming it otherwise."""
    info = zf.getinfo(name)
    if info.flag_bits & 0x1:
        raise FormatError(f"{path}: member {name} is encrypted; Keras archives are not")
    if limit is not None and info.file_size > limit:
        raise FormatError(f"{path}: member {name} claims {readable_bytes(info.file_size)}, more than the "
                          f"{readable_bytes(limit)} kcompat reads for it; refusing it")
    if info.file_size > (1 << 20) and info.file_size > MAX_RATIO * max(info.compress_size, 1):
        raise FormatError(f"{path}: member {name} claims {readable_bytes(info.file_size)} from "
                          f"{readable_bytes(info.compress_size)} compressed (a zip bomb); refusing to decompress it")
    if info.compress_type == zipfile.ZIP_STORED and info.compress_size != info.file_size:
        raise FormatError(f"{path}: member {name} is stored uncompressed but its sizes disagree (corrupt archive)")
    return info


def read_zip_member(zf: zipfile.ZipFile, name: str, path: str, limit: int) -> bytes:
    """A small member's bytes, its size checked before and counted while it is decompressed (never more
    than ``limit`` bytes are held, whatever the archive claims)."""
    info = zip_member_info(zf, name, path, limit)
    chunks, total = [], 0
    try:
        with zf.open(info) as f:
            while chunk := f.read(1 << 20):
                total += len(chunk)
                if total > limit:
                    raise FormatError(f"{path}: member {name} is larger than the {readable_bytes(limit)} kcompat "
                                      f"reads for it; refusing it")
                chunks.append(chunk)
    except (zipfile.BadZipFile, OSError, EOFError, ValueError, NotImplementedError, RuntimeError) as e:
        raise FormatError(f"{path}: member {name} is corrupt: {e}") from None
    return b"".join(chunks)


