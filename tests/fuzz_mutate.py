"""Seeded mutations of model files, for the fuzz harness (tests/test_fuzz.py, tests/fuzz_run.py).

Each mutator takes a numpy Generator and a file (a copy of a bundled fixture, already in the case's
folder) and damages it the way a hostile or broken file would be: bytes flipped or cut; config values
of the wrong type, huge numbers, deep JSON, graph cycles; HDF5 attributes, links and datasets rewritten
with h5py; ONNX initializers, dims, attributes and external data rewritten with onnx's helpers; zip
members recompressed, bombed, lying about their size or named to escape the folder; .npy headers
flipped. Standard library + numpy + h5py + onnx only. A mutator returns a short label of what it did.
"""
from __future__ import annotations

import bz2
import json
import shutil
import struct
import zipfile
import zlib
from pathlib import Path

import h5py
import numpy as np

HUGE = [10**100, 2**63, 2**62, 2**31, -1, -2**63, 1e308, float("inf"), 0]
WRONG = [None, True, "x", 3.5, [], {}, [1, [2]], {"a": 1}, -7, "relu" * 1000]


def pick(rng, options):
    """One of ``options`` (any objects: rng.choice would turn lists into arrays)."""
    return options[int(rng.integers(len(options)))]


# ------------------------------------------------------------------ bytes
def flip_bits(rng, path: Path) -> str:
    data = bytearray(path.read_bytes())
    for _ in range(int(rng.integers(1, 9))):
        i = int(rng.integers(len(data)))
        data[i] ^= 1 << int(rng.integers(8))
    path.write_bytes(bytes(data))
    return "flip_bits"


def truncate(rng, path: Path) -> str:
    data = path.read_bytes()
    path.write_bytes(data[:int(rng.integers(1, len(data)))])
    return "truncate"


def zero_block(rng, path: Path) -> str:
    data = bytearray(path.read_bytes())
    start = int(rng.integers(len(data)))
    size = pick(rng, [16, 256, 1024])
    data[start:start + size] = bytes(len(data[start:start + size]))
    path.write_bytes(bytes(data))
    return "zero_block"


BYTES = [flip_bits, truncate, zero_block]


# ------------------------------------------------------------------ JSON configs
def _nodes(obj, path=()):
    """Every (path, value) in a JSON tree."""
    yield path, obj
    if isinstance(obj, dict):
        for k, v in obj.items():
            yield from _nodes(v, path + (k,))
    elif isinstance(obj, list):
        for i, v in enumerate(obj):
            yield from _nodes(v, path + (i,))


def _set(obj, path, value):
    for p in path[:-1]:
        obj = obj[p]
    obj[path[-1]] = value


def _deep(depth: int) -> str:
    """A placeholder that _dump writes as ``depth`` nested lists (json.dumps itself would recurse)."""
    return f"__DEEP_{depth}__"


def mutate_config(rng, config: dict) -> str:
    """Damage a Keras model config dict in place; returns what was done."""
    layers = config.get("config", {}).get("layers", [])
    kind = pick(rng, ["wrong_type", "huge", "deep", "cycle", "cycle2", "delete", "float_name", "int_tensor",
                           "list_index", "class"])
    functional = [l for l in layers if l.get("inbound_nodes")]
    if kind in ("cycle", "cycle2", "int_tensor", "list_index") and functional:
        layer = functional[int(rng.integers(len(functional)))]
        refs = [(p, v) for p, v in _nodes(layer["inbound_nodes"])
                if isinstance(v, list) and len(v) >= 3 and isinstance(v[0], str) and isinstance(v[1], int)]
        if refs:
            path, ref = refs[int(rng.integers(len(refs)))]
            if kind == "cycle":  # the layer reads its own output
                new = [layer.get("name", layer["config"].get("name")), 0, 0] + list(ref[3:])
            elif kind == "cycle2":  # a reads b, b reads a
                target = ref[0]
                other = next((l for l in functional if l.get("name") == target), None)
                if other is not None:
                    orefs = [(p, v) for p, v in _nodes(other["inbound_nodes"])
                             if isinstance(v, list) and len(v) >= 3 and isinstance(v[0], str)]
                    if orefs:
                        op, ov = orefs[0]
                        _set(other["inbound_nodes"], op, [layer.get("name"), 0, 0] + list(ov[3:]))
                new = ref
            elif kind == "int_tensor":
                new = 7
            else:
                new = [ref[0], [0], 0] + list(ref[3:])
            _set(layer["inbound_nodes"], path, new)
            return f"config:{kind}"
        hists = [(p, v) for p, v in _nodes(layer["inbound_nodes"]) if isinstance(v, dict)
                 and v.get("class_name") == "__keras_tensor__"]
        if hists:
            path, value = hists[int(rng.integers(len(hists)))]
            name = layer.get("name")
            hist = {"cycle": [name, 0, 0], "cycle2": [name, 0, 0], "int_tensor": 7,
                    "list_index": [value["config"]["keras_history"][0], [0], 0]}[kind]
            if kind == "int_tensor":
                _set(layer["inbound_nodes"], path, 7)
            else:
                value["config"]["keras_history"] = hist
            return f"config:{kind}"
    if kind == "float_name" and layers:
        layer = layers[int(rng.integers(len(layers)))]
        layer["name"] = 3.25
        layer["config"]["name"] = 3.25
        return "config:float_name"
    if kind == "class" and layers:
        layer = layers[int(rng.integers(len(layers)))]
        layer["class_name"] = pick(rng, ["Lambda", "Functional", "NoSuchLayer", "Sequential"])
        return "config:class"
    nodes = [(p, v) for p, v in _nodes(config) if p]
    path, value = nodes[int(rng.integers(len(nodes)))]
    if kind == "deep":
        _set(config, path, _deep(pick(rng, [200, 1000, 5000])))
    elif kind == "delete" and isinstance(path[-1], str):
        parent = config
        for p in path[:-1]:
            parent = parent[p]
        del parent[path[-1]]
    elif kind == "huge" or (kind == "delete" and isinstance(value, (int, float))):
        numbers = [(p, v) for p, v in nodes if isinstance(v, (int, float)) and not isinstance(v, bool)]
        path = numbers[int(rng.integers(len(numbers)))][0] if numbers else path
        _set(config, path, HUGE[int(rng.integers(len(HUGE)))])
    else:
        _set(config, path, WRONG[int(rng.integers(len(WRONG)))])
    return f"config:{kind}"


def _dump(config) -> str:
    text = json.dumps(config)
    for depth in (200, 1000, 5000):
        text = text.replace(f'"{_deep(depth)}"', "[" * depth + "0" + "]" * depth)
    return text


def json_file(rng, path: Path) -> str:
    config = json.loads(path.read_text())
    label = mutate_config(rng, config)
    path.write_text(_dump(config))
    return label


# ------------------------------------------------------------------ HDF5
def _datasets(f) -> list[str]:
    out = []
    f.visititems(lambda name, obj: out.append(name) if isinstance(obj, h5py.Dataset) else None)
    return out


def _objects(f) -> list[str]:
    out = []
    f.visit(out.append)
    return out


def hdf5(rng, path: Path) -> str:
    """Rewrite one attribute, link or dataset of an HDF5 file with h5py."""
    kind = pick(rng, ["attr_array", "attr_type", "model_config", "soft_link", "external_link", "compound",
                           "string", "reshape", "huge_shape", "external_storage", "delete", "bigendian"])
    with h5py.File(path, "r+") as f:
        names = _datasets(f)
        if kind == "model_config" and "model_config" in f.attrs:
            config = json.loads(f.attrs["model_config"])
            label = mutate_config(rng, config)
            f.attrs["model_config"] = _dump(config).encode()
            return f"hdf5:{label}"
        if kind in ("attr_array", "attr_type", "model_config"):
            holders = [h for h in [f] + [f[n] for n in _objects(f)] if len(h.attrs)] or [f]
            holder = pick(rng, holders)
            key = pick(rng, list(holder.attrs) or ["x"])
            holder.attrs[key] = np.arange(6.0).reshape(2, 3) if kind == "attr_array" else int(rng.integers(-5, 5))
            return f"hdf5:{kind}"
        if not names:
            return "hdf5:none"
        name = names[int(rng.integers(len(names)))]
        parent, leaf = (name.rsplit("/", 1) + [""])[:2] if "/" in name else ("", name)
        group = f[parent] if parent else f
        old = f[name]
        shape, dtype = old.shape, old.dtype
        del group[leaf]
        if kind == "soft_link":
            group[leaf] = h5py.SoftLink("/" + parent if parent else "/")
        elif kind == "external_link":
            group[leaf] = h5py.ExternalLink(pick(rng, ["fifo", "../../etc/passwd", "/dev/zero"]), "/x")
        elif kind == "compound":
            group.create_dataset(leaf, shape=shape, dtype=np.dtype([("a", "<i4"), ("b", "<f4")]))
        elif kind == "string":
            group.create_dataset(leaf, data=np.full(shape or (1,), b"abc"))
        elif kind == "reshape":
            group.create_dataset(leaf, data=np.zeros((int(rng.integers(1, 9)), 3), dtype))
        elif kind == "huge_shape":
            group.create_dataset(leaf, shape=(2**20, 2**20), dtype="f4", chunks=(16, 16))
        elif kind == "external_storage":
            group.create_dataset(leaf, shape=(16,), dtype="u1", external=[("/etc/hostname", 0, 16)])
        elif kind == "bigendian":
            group.create_dataset(leaf, shape=shape, dtype=dtype.newbyteorder(">") if dtype.kind in "fiu" else dtype)
        return f"hdf5:{kind}"


# ------------------------------------------------------------------ ONNX
def onnx_file(rng, path: Path) -> str:
    import onnx
    from onnx import TensorProto, helper, numpy_helper
    model = onnx.load(str(path))
    g = model.graph
    kind = pick(rng, ["init_dims", "raw_truncate", "data_type", "reshape_target", "attr", "cycle", "dangling",
                           "external", "input_dim", "op_type", "opset", "big_const"])
    inits = list(g.initializer)
    if kind == "init_dims" and inits:
        t = inits[int(rng.integers(len(inits)))]
        t.dims[:] = [pick(rng, [2**40, 0, 3, 2**62, 7])] + list(t.dims[1:])
    elif kind == "raw_truncate" and inits:
        t = inits[int(rng.integers(len(inits)))]
        if t.raw_data:
            t.raw_data = t.raw_data[:len(t.raw_data) // 2]
    elif kind == "data_type" and inits:
        t = inits[int(rng.integers(len(inits)))]
        t.data_type = pick(rng, [TensorProto.STRING, TensorProto.COMPLEX64, TensorProto.BOOL, 99,
                                      TensorProto.FLOAT16, TensorProto.INT64])
    elif kind == "reshape_target":
        reshapes = [n for n in g.node if n.op_type == "Reshape"]
        target = np.asarray(pick(rng, [[2**62, -1], [2**31, 2**31], [-1, 0, 2**40], [1, 2**62]]), np.int64)
        if reshapes:
            node = reshapes[int(rng.integers(len(reshapes)))]
            name = f"fuzz_shape_{rng.integers(1000)}"
            g.initializer.append(numpy_helper.from_array(target, name))
            node.input[1] = name
        elif g.node:
            node = g.node[int(rng.integers(len(g.node)))]
            name, out = "fuzz_shape", node.output[0]
            g.initializer.append(numpy_helper.from_array(target, name))
            node.output[0] = out + "_pre"
            g.node.insert(list(g.node).index(node) + 1, helper.make_node("Reshape", [out + "_pre", name], [out]))
    elif kind == "attr":
        nodes = [n for n in g.node if n.attribute]
        if nodes:
            node = nodes[int(rng.integers(len(nodes)))]
            attr = node.attribute[int(rng.integers(len(node.attribute)))]
            choice = int(rng.integers(4))
            new = [helper.make_attribute(attr.name, 2**62), helper.make_attribute(attr.name, [1.5, 2.5]),
                   helper.make_attribute(attr.name, "text"), helper.make_attribute(attr.name, -2**40)][choice]
            attr.CopyFrom(new)
    elif kind == "cycle" and len(g.node) > 1:
        i = int(rng.integers(len(g.node)))
        node = g.node[i]
        later = g.node[int(rng.integers(i, len(g.node)))]
        if node.input:
            node.input[0] = later.output[0]
    elif kind == "dangling" and g.node:
        node = g.node[int(rng.integers(len(g.node)))]
        if node.input:
            node.input[0] = "nowhere"
    elif kind == "external" and inits:
        t = inits[int(rng.integers(len(inits)))]
        t.ClearField("raw_data")
        del t.float_data[:]
        t.data_location = TensorProto.EXTERNAL
        for key, value in (("location", pick(rng, ["../outside.bin", "/etc/passwd", "missing.bin", "fifo"])),
                           ("offset", "0"), ("length", "64")):
            entry = t.external_data.add()
            entry.key, entry.value = key, value
    elif kind == "input_dim" and g.input:
        dims = g.input[0].type.tensor_type.shape.dim
        if dims:
            dims[-1].dim_value = pick(rng, [2**40, 2**62, 0])
    elif kind == "op_type" and g.node:
        node = g.node[int(rng.integers(len(g.node)))]
        node.op_type = pick(rng, ["Relu", "Reshape", "NoSuchOp", "Loop", "Conv", "MatMul", "ConstantOfShape"])
    elif kind == "opset":
        model.opset_import[0].version = pick(rng, [1, 7, 12, 99, 10**6])
    elif kind == "big_const" and g.node:
        name = "fuzz_big"
        shape = numpy_helper.from_array(np.asarray([2**20, 2**20], np.int64), "fuzz_big_shape")
        g.initializer.append(shape)
        node = g.node[0]
        g.node.insert(0, helper.make_node("ConstantOfShape", ["fuzz_big_shape"], [name]))
        node.input.append(name) if node.op_type in ("Add", "Mul", "Concat", "Sum") else None
    onnx.save(model, str(path))
    return f"onnx:{kind}"


# ------------------------------------------------------------------ zip (.keras)
def _rewrite_zip(path: Path, members: list[tuple[zipfile.ZipInfo, bytes]]) -> None:
    import warnings
    warnings.filterwarnings("ignore", "Duplicate name", UserWarning)
    tmp = path.with_suffix(".rezip")
    with zipfile.ZipFile(tmp, "w") as out:
        for info, data in members:
            out.writestr(info, data)
    tmp.replace(path)


def keras_zip(rng, path: Path) -> str:
    """Rewrite the .keras archive: recompress, bomb, lie about sizes, escape the folder, mutate a member."""
    with zipfile.ZipFile(path) as zf:
        members = [(info, zf.read(info)) for info in zf.infolist()]
    kind = pick(rng, ["recompress", "bomb", "lie_size", "traversal", "duplicate", "config", "weights"])
    if kind == "recompress":
        method = pick(rng, [zipfile.ZIP_DEFLATED, zipfile.ZIP_BZIP2, zipfile.ZIP_LZMA])
        for info, _ in members:
            info.compress_type = method
        _rewrite_zip(path, members)
    elif kind == "bomb":
        target = pick(rng, ["config.json", "model.weights.h5"])
        members = [(i, d) for i, d in members if i.filename != target]
        _rewrite_zip(path, members)
        _append_bomb(path, target, rng)
    elif kind == "lie_size":
        _rewrite_zip(path, members)
        _patch_central_size(path, pick(rng, ["config.json", "model.weights.h5"]),
                            pick(rng, [1, 2**32 - 1, 10]))
    elif kind == "traversal":
        renamed = []
        for info, data in members:
            if info.filename == "model.weights.h5" and rng.random() < 0.5:
                info.filename = "../model.weights.h5"
            renamed.append((info, data))
        renamed.append((zipfile.ZipInfo(pick(rng, ["../../evil.txt", "/tmp/evil.txt", "a/../../evil"])), b"x"))
        _rewrite_zip(path, renamed)
    elif kind == "duplicate":
        members.append((zipfile.ZipInfo("config.json"), b'{"class_name": "Sequential", "config": {"layers": 5}}'))
        _rewrite_zip(path, members)
    elif kind == "config":
        out = []
        for info, data in members:
            if info.filename == "config.json":
                config = json.loads(data)
                label = mutate_config(rng, config)
                data = _dump(config).encode()
            out.append((info, data))
        _rewrite_zip(path, out)
        return f"zip:{label}"
    else:  # mutate the weights h5 inside
        inner = path.with_suffix(".inner.h5")
        out = []
        for info, data in members:
            if info.filename == "model.weights.h5":
                inner.write_bytes(data)
                label = hdf5(rng, inner) if rng.random() < 0.6 else BYTES[int(rng.integers(3))](rng, inner)
                data = inner.read_bytes()
                inner.unlink()
            out.append((info, data))
        _rewrite_zip(path, out)
        return f"zip:weights:{label}"
    return f"zip:{kind}"


_BOMB: dict = {}


def _bomb(method: int) -> tuple[bytes, int, int]:
    """(compressed bytes, declared size, CRC): deflate of 1 GiB of zeros (16 MiB blocks, each ended by a
    full flush, so one compressed block repeats), or bzip2 of 16 MiB of zeros declaring 4 GiB."""
    if method not in _BOMB:
        chunk = bytes(1 << 24)
        if method == zipfile.ZIP_DEFLATED:
            c = zlib.compressobj(9, zlib.DEFLATED, -15)
            block = c.compress(chunk) + c.flush(zlib.Z_FULL_FLUSH)
            data = block * 64 + c.flush()
            crc = zlib.crc32(chunk)
            crc = 0
            for _ in range(64):
                crc = zlib.crc32(chunk, crc)
            _BOMB[method] = (data, 1 << 30, crc)
        else:
            _BOMB[method] = (bz2.compress(chunk, 9), (4 << 30) - 1, zlib.crc32(chunk))
    return _BOMB[method]


def _append_bomb(path: Path, name: str, rng) -> None:
    """Add member ``name``: a deflate bomb (1 GiB of zeros from ~1 MB) or a bzip2 one (claims 4 GiB)."""
    method = pick(rng, [zipfile.ZIP_DEFLATED, zipfile.ZIP_BZIP2])
    data, size, crc = _bomb(method)
    append_member(path, name, data, size, method, crc)


def append_member(path: Path, name: str, data: bytes, size: int, method: int, crc: int = 0) -> None:
    """Append a member of compressed ``data`` whose headers claim ``size`` bytes uncompressed (and ``crc``)."""
    with open(path, "r+b") as f:  # append a local header + data, then rebuild the central directory
        zf = zipfile.ZipFile(f, "a")
        info = zipfile.ZipInfo(name)
        info.compress_type = method
        info.file_size, info.compress_size, info.CRC = size, len(data), crc
        info.header_offset = zf.start_dir
        f.seek(zf.start_dir)
        f.write(info.FileHeader(zip64=size > zipfile.ZIP64_LIMIT))
        f.write(data)
        zf.start_dir = f.tell()
        zf.filelist.append(info)
        zf.NameToInfo[name] = info
        zf._didModify = True
        zf.close()


def _patch_central_size(path: Path, name: str, size: int) -> None:
    """Make the central directory claim ``size`` bytes for member ``name``."""
    data = bytearray(path.read_bytes())
    with zipfile.ZipFile(path) as zf:
        start = zf.start_dir
    i = start
    while True:
        i = data.find(b"PK\x01\x02", i)
        if i < 0:
            break
        n = struct.unpack("<H", data[i + 28:i + 30])[0]
        if data[i + 46:i + 46 + n].decode(errors="replace") == name:
            data[i + 24:i + 28] = struct.pack("<I", size)
        i += 4
    path.write_bytes(bytes(data))


# ------------------------------------------------------------------ .npy inputs
def npy_file(rng, path: Path) -> str:
    data = bytearray(path.read_bytes())
    kind = pick(rng, ["header_flip", "shape", "object", "truncate"])
    header_end = data.index(b"\n") + 1
    if kind == "header_flip":
        for _ in range(int(rng.integers(1, 4))):
            i = int(rng.integers(10, header_end))
            data[i] ^= 1 << int(rng.integers(8))
    elif kind in ("shape", "object"):
        header = data[10:header_end].decode("latin1")
        if kind == "shape":
            header = header.replace("'shape': (", f"'shape': ({pick(rng, [2**40, 2**31, 10**12])}, ", 1)
        else:
            header = header.replace("'descr': '<f4'", "'descr': '|O'")
        header = header.rstrip("\n").ljust(header_end - 11) + "\n"
        data = data[:10] + header.encode("latin1")[:header_end - 10] + data[header_end:]
        data[8:10] = struct.pack("<H", header_end - 10)
    else:
        data = data[:int(rng.integers(1, len(data)))]
    path.write_bytes(bytes(data))
    return f"npy:{kind}"


def mutate(rng, path: Path) -> str:
    """One seeded mutation of ``path`` in place, chosen by the file's kind."""
    ext = path.suffix.lower()
    if rng.random() < 0.2 or ext == ".npz":
        return BYTES[int(rng.integers(3))](rng, path)
    if ext == ".json":
        return json_file(rng, path)
    if ext == ".h5":
        return hdf5(rng, path)
    if ext == ".onnx":
        return onnx_file(rng, path)
    if ext == ".keras":
        return keras_zip(rng, path)
    if ext == ".npy":
        return npy_file(rng, path)
    return BYTES[int(rng.integers(3))](rng, path)


def copy_seed(src: Path, folder: Path, name: str) -> Path:
    dst = folder / name
    shutil.copyfile(src, dst)
    return dst
