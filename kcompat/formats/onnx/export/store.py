"""TensorStore: an ONNX export's big initializers written to disk as they are made, never all held at once.

``onnx.save_model`` needs the whole model as one protobuf in memory, then serializes it (a second copy),
and a protobuf cannot pass 2 GiB. Here each initializer of BIG_BYTES or more goes to a spool file beside
the target the moment the exporter makes it (from weights that are themselves mapped from the source
file), and the protobuf holds only its name, type, shape and an external-data reference. ``save`` then
writes either:

- external data (``--external-data``, automatic past AUTO_EXTERNAL): the spool *is* the data file
  (``<model>.onnx.data`` beside the model; offsets 4096-aligned so ONNX Runtime can map them), and the
  .onnx holds only the graph (onnx.external_data_helper's layout: location, offset, length);
- one self-contained .onnx: the small protobuf serialized, then each big initializer appended as one
  more ``GraphProto.initializer`` entry (field 5) of the ``ModelProto.graph`` message (field 7), its
  ``raw_data`` (field 9) copied from the spool a chunk at a time. Fields of a message may come in any
  order and repeated fields may be split (protobuf encoding: developers.google.com/protocol-buffers/docs/
  encoding), so ``onnx.load`` reads exactly the model ``onnx.save_model`` would have written.
"""
from __future__ import annotations

import os

import numpy as np

BIG_BYTES = 1 << 16  # initializers from this size on go to the spool (shape and axes constants stay inline)
EXTERNAL_BYTES = 1 << 10  # with external data asked for: onnx's own size_threshold (convert_model_to_external_data)
AUTO_EXTERNAL = (1 << 31) - (64 << 20)  # past this (protobuf's 2 GiB, less room for the graph): external data
ALIGN = 4096
SPOOLED = "kcompat:spool"  # the location of a spooled tensor until save() says where it lives


class TensorStore:
    """Big initializers appended to ``spool_path`` (a temporary file beside the target) as they are made."""

    def __init__(self, spool_path: str, threshold: int | None = None):
        self.path = spool_path
        self.threshold = BIG_BYTES if threshold is None else threshold
        self.file = open(spool_path, "wb+")
        self.where: dict[str, tuple[int, int]] = {}  # tensor name -> (offset, nbytes) in the spool

    @property
    def nbytes(self) -> int:
        return self.file.seek(0, os.SEEK_END)

    def tensor(self, array: np.ndarray, name: str):
        """A TensorProto for ``array``: inline when small, else its bytes appended to the spool."""
        from onnx import TensorProto, helper, numpy_helper
        if array.nbytes < self.threshold or array.dtype.hasobject:
            return numpy_helper.from_array(array, name)
        array = np.ascontiguousarray(array, dtype=array.dtype.newbyteorder("<"))
        offset = self.nbytes
        offset += -offset % ALIGN
        self.file.seek(offset)
        self.file.write(memoryview(array).cast("B"))  # (N, ...) -> bytes, no copy of a contiguous array
        self.where[name] = (offset, array.nbytes)
        proto = TensorProto()
        proto.name = name
        proto.dims.extend(array.shape)
        proto.data_type = helper.np_dtype_to_tensor_dtype(array.dtype)
        proto.data_location = TensorProto.EXTERNAL
        for key, value in (("location", SPOOLED), ("offset", str(offset)), ("length", str(array.nbytes))):
            entry = proto.external_data.add()
            entry.key, entry.value = key, value
        return proto

    def array(self, proto) -> np.ndarray:
        """A spooled tensor's value, read back (the optimizer permutes a constant now and then)."""
        from onnx import helper
        offset, nbytes = self.where[proto.name]
        self.file.flush()
        dtype = np.dtype(helper.tensor_dtype_to_np_dtype(proto.data_type)).newbyteorder("<")
        data = os.pread(self.file.fileno(), nbytes, offset)
        return np.frombuffer(data, dtype).reshape(tuple(proto.dims))

    def fits_one_file(self, model) -> bool:
        """Whether ``model`` with its spooled tensors stays under AUTO_EXTERNAL as one protobuf."""
        return self.nbytes + model.ByteSize() < AUTO_EXTERNAL

    def spooled(self, proto) -> bool:
        return any(e.key == "location" and e.value == SPOOLED for e in proto.external_data)

    def save(self, model, path: str, location: str, external: bool | None) -> bool:
        """Write ``model`` to ``path`` (spooled tensors from this store); ``external`` None: only past
        AUTO_EXTERNAL. Returns True when the spool is kept as the external data file, which the model then
        names ``location`` (the data file's final name, beside the model); else the spool is removed."""
        import onnx
        self.file.flush()
        big = [t for t in model.graph.initializer if self.spooled(t)]
        if external is None:
            external = not self.fits_one_file(model)
        if external and big:
            for t in big:
                for entry in t.external_data:
                    if entry.key == "location":
                        entry.value = location
            onnx.save_model(model, path)
            self.file.close()
            return True
        kept = [t for t in model.graph.initializer if not self.spooled(t)]
        graph = onnx.GraphProto()
        graph.CopyFrom(model.graph)
        del graph.initializer[:]
        graph.initializer.extend(kept)
        head = onnx.ModelProto()
        head.CopyFrom(model)
        head.ClearField("graph")
        entries = [_initializer_head(t, self.where[t.name][1]) for t in big]
        graph_bytes = graph.SerializeToString()
        with open(path, "wb") as out:
            out.write(head.SerializeToString())
            out.write(_key(7) + _varint(len(graph_bytes) + sum(len(h) + n for h, n in entries)))
            out.write(graph_bytes)
            for t, (h, n) in zip(big, entries):
                out.write(h)
                self._copy(out, self.where[t.name][0], n)
        self.file.close()
        os.unlink(self.path)
        return False

    def _copy(self, out, offset: int, nbytes: int) -> None:
        self.file.seek(offset)
        left = nbytes
        while left:
            chunk = self.file.read(min(left, 1 << 24))
            if not chunk:
                raise OSError(f"{self.path}: spool ended early")
            out.write(chunk)
            left -= len(chunk)

    def discard(self) -> None:
        """Close and remove the spool (an export that failed)."""
        if not self.file.closed:
            self.file.close()
        if os.path.exists(self.path):
            os.unlink(self.path)


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        byte, n = n & 0x7F, n >> 7
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out)


def _key(field: int) -> bytes:
    """The key of a length-delimited field (wire type 2)."""
    return _varint(field << 3 | 2)


def _initializer_head(tensor, nbytes: int) -> tuple[bytes, int]:
    """The bytes of ``GraphProto.initializer`` entry ``tensor`` up to its raw data, and that data's length."""
    from onnx import TensorProto
    meta = TensorProto()
    meta.name, meta.data_type = tensor.name, tensor.data_type
    meta.dims.extend(tensor.dims)
    body = meta.SerializeToString() + _key(9) + _varint(nbytes)
    return _key(5) + _varint(len(body) + nbytes) + body, nbytes
