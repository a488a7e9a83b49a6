"""Keras 3 ``.keras`` archives: config.json + metadata.json + model.weights.h5 in a zip.

Weights are stored by position (keras/src/saving/saving_lib.py): the model's layers
in order, each under ``layers/<snake_case class name>[_N]/vars/<i>``, trainable
variables first. Nothing is extracted to disk. Keras stores members uncompressed, so the weights
h5 is opened where it lies in the zip and its arrays are mapped, not read (a 1 GiB model costs no
memory until a layer runs). A compressed weights member is streamed into an anonymous temporary
file (never into memory). Every member's size is bounded before and while it is read: a member
claiming more than files.MAX_RATIO times its compressed size (a zip bomb) is refused before decompressing.
"""
from __future__ import annotations

import json
import os
import shutil
import struct
import tempfile
import time
import zipfile

from ...errors import FormatError
from ...files import FileMap, FileSlice, read_zip_member, writes_atomically, zip_member_info
from ...schema import readable_bytes
from ...spec import ModelSpec
from .config import KERAS_VERSION, config_from_spec, parse_json_text, spec_from_config
from .legacy_h5 import read_weights_file
from .weights import read_positional_weights, saved_layers, write_positional_weights

MAX_CONFIG = 256 << 20  # config.json: a 20,000-layer model's is ~20 MB
MAX_METADATA = 1 << 20
ALIGN = 64  # kcompat writes the weights member's bytes at a 64-byte boundary of the archive


def read_keras(path: str, weights: str | None = None) -> ModelSpec:
    """Read a Keras 3 ``.keras`` file (architecture and weights; ``weights``: from that file instead)."""
    try:
        zf = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, zipfile.LargeZipFile, ValueError, EOFError):
        raise FormatError(f"{path}: not a valid .keras file (not a zip archive, or truncated)") from None
    with zf:
        names = set(zf.namelist())
        if "config.json" not in names:
            raise FormatError(f"{path}: .keras archive has no config.json; received members {sorted(names)[:5]}")
        config = parse_json_text(read_zip_member(zf, "config.json", path, MAX_CONFIG), f"{path}:config.json")
        version = None
        if "metadata.json" in names:
            try:
                version = json.loads(read_zip_member(zf, "metadata.json", path, MAX_METADATA)).get("keras_version")
            except (json.JSONDecodeError, AttributeError, RecursionError, UnicodeDecodeError):
                version = None
            version = version if isinstance(version, str) else None
        spec = spec_from_config(config, path, version)
        _read_vocabularies(zf, names, spec, path)
        if "model.weights.h5" not in names:
            raise FormatError(f"{path}: .keras archive has no model.weights.h5")
        label = f"{path}:model.weights.h5"
        info = zip_member_info(zf, "model.weights.h5", path, None)
        if info.compress_type == zipfile.ZIP_STORED:
            with open(path, "rb") as raw:  # mapped arrays keep their mapping after it is closed
                start = _data_offset(raw, info, path)
                read_positional_weights(FileSlice(raw, start, info.file_size, label), spec, label,
                                        FileMap(raw, label), start)
        else:
            with tempfile.TemporaryFile(prefix="kcompat-") as tmp:  # unlinked: gone when closed or killed
                _stream_member(zf, info, path, tmp)
                read_positional_weights(tmp, spec, label, FileMap(tmp, label), 0)
    return spec if weights is None else read_weights_file(weights, spec)


def _read_vocabularies(zf: zipfile.ZipFile, names: set, spec: ModelSpec, path: str) -> None:
    """An adapted lookup layer keeps its vocabulary in ``assets/<layer group>/vocabulary.txt`` (one token a
    line, special tokens first: keras IndexLookup.save_assets); it goes into the layer's config."""
    for group_path, layer in saved_layers(spec):
        member = f"assets/{group_path}/vocabulary.txt"
        if member in names and layer.config.get("vocabulary") is None:
            lines = read_zip_member(zf, member, path, MAX_CONFIG).decode("utf-8", errors="replace").splitlines()
            while lines and lines[-1] == "":
                lines.pop()
            try:
                layer.config["vocabulary"] = [int(t) for t in lines]
            except ValueError:
                layer.config["vocabulary"] = lines


def _data_offset(raw, info: zipfile.ZipInfo, path: str) -> int:
    """Where a stored member's bytes start in the archive: after its local header (PKWARE APPNOTE 4.3.7)."""
    raw.seek(info.header_offset)
    header = raw.read(30)
    if len(header) != 30 or header[:4] != b"PK\x03\x04":
        raise FormatError(f"{path}: member {info.filename} has no local header (corrupt archive)")
    name_len, extra_len = struct.unpack("<HH", header[26:30])
    start = info.header_offset + 30 + name_len + extra_len
    if start + info.file_size > os.fstat(raw.fileno()).st_size:
        raise FormatError(f"{path}: member {info.filename} runs past the end of the file (truncated archive)")
    return start


def _stream_member(zf: zipfile.ZipFile, info: zipfile.ZipInfo, path: str, out) -> None:
    """Decompress a member into ``out`` a chunk at a time (its CRC checked by zipfile at the end)."""
    free = shutil.disk_usage(tempfile.gettempdir()).free
    if info.file_size > free:
        raise FormatError(f"{path}: member {info.filename} needs {readable_bytes(info.file_size)} of temporary "
                          f"disk space; {readable_bytes(free)} are free")
    try:
        with zf.open(info) as f:
            shutil.copyfileobj(f, out, 1 << 20)
    except (zipfile.BadZipFile, OSError, EOFError, ValueError, NotImplementedError, RuntimeError) as e:
        raise FormatError(f"{path}: member {info.filename} is corrupt: {e}") from None
    out.flush()


@writes_atomically
def write_keras(model, path: str) -> None:
    """Write ``model`` as a Keras 3 ``.keras`` archive that ``keras.models.load_model`` opens. The weights
    h5 is written to a temporary file beside ``path`` and copied into the zip a chunk at a time, its
    bytes starting on a 64-byte boundary (so a reader can map its arrays aligned)."""
    spec = model.spec
    config = config_from_spec(spec, model.tensor_shapes())
    metadata = {"keras_version": spec.keras_version if (spec.keras_version or "").startswith("3") else KERAS_VERSION,
                "date_saved": "kcompat"}
    folder = os.path.dirname(os.path.abspath(path))
    with tempfile.TemporaryFile(prefix=".kcompat-", dir=folder) as weights, \
            open(path, "wb") as raw, zipfile.ZipFile(raw, "w") as zf:  # (unlinked: gone even if killed)
        write_positional_weights(model, weights)
        zf.writestr("metadata.json", json.dumps(metadata))
        zf.writestr("config.json", json.dumps(config))
        info = zipfile.ZipInfo("model.weights.h5", date_time=time.localtime()[:6])
        info.file_size = size = weights.seek(0, os.SEEK_END)
        zip64 = size * 1.05 > zipfile.ZIP64_LIMIT  # zipfile's own rule: a zip64 extra follows ours
        fixed = raw.tell() + 30 + len(info.filename.encode()) + 4 + (20 if zip64 else 0)
        info.extra = struct.pack("<HH", 0xD935, -fixed % ALIGN) + bytes(-fixed % ALIGN)  # padding (zipalign's id)
        weights.seek(0)
        with zf.open(info, "w", force_zip64=zip64) as dst:
            shutil.copyfileobj(weights, dst, 1 << 20)
