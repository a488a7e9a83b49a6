"""File helpers every reader and writer shares: readable checks, checked targets, atomic writes.

Imports nothing of kcompat but its errors (a leaf module), so any module may use it. A write goes to a
temporary file beside the target and is renamed over it only when complete: a failed or interrupted
write leaves the target absent or as it was, never half written.
"""
from __future__ import annotations

import os
import tempfile
import functools
from contextlib import contextmanager
from pathlib import Path

from .errors import FormatError


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
