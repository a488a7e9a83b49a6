"""ExportContext: what an ONNX exporter writes into: nodes, initializers, unique names, known shapes and
dtypes. Exporters call ``ctx.op`` / ``ctx.const`` and never touch the graph otherwise.
Reference: onnx.helper (make_node), onnx.numpy_helper (from_array).
"""
from __future__ import annotations

from typing import Any

import numpy as np

from ....spec import fresh_name
from ..common import BOOL_OUTPUTS, INT64_OUTPUTS
from .registry import ACTIVATIONS


class ExportContext:
    """What an exporter writes into: nodes, initializers, unique names, known shapes."""

    def __init__(self, opset: int, store=None):
        self.opset = opset
        self.store = store  # a TensorStore: big initializers go to disk as they are made (store.py)
        self.nodes: list = []
        self.initializers: list = []
        self.shapes: dict[str, tuple] = {}  # ONNX tensor name -> Keras shape (layer outputs)
        self.dtypes: dict[str, str] = {}  # graph input name -> its dtype (others: see dtype())
        self.prefix = ""  # the layer being exported: node and tensor names start with it
        self.kwargs: dict = {}  # the call node's kwargs (tensors as names)
        self._tensors: set[str] = set()
        self._node_names: set[str] = set()
        self._consts: dict[tuple, str] = {}
        self._producer: dict[str, Any] = {}  # tensor -> the node making it
        self._init_dtype: dict[str, str] = {}  # initializer -> its dtype

    def unique(self, base: str, used: set | None = None) -> str:
        """``base``, or ``base_1``, ``base_2``... whichever is free; reserves it."""
        return fresh_name(base, self._tensors if used is None else used)

    def op(self, op_type: str, *inputs: str, outputs: int = 1, **attrs: Any) -> Any:
        """Emit one node ``<layer>/<op_type>``; returns its output name (a list when outputs > 1)."""
        from onnx import helper
        name = self.unique(f"{self.prefix}/{op_type}", self._node_names)
        outs = [self.unique(name if outputs == 1 else f"{name}:{i}") for i in range(outputs)]
        node = helper.make_node(op_type, list(inputs), outs, name=name, **attrs)
        self.nodes.append(node)
        self._producer.update((o, node) for o in outs)
        return outs[0] if outputs == 1 else outs

    def const(self, value: Any, name: str = "const", dtype: Any = np.float32) -> str:
        """An initializer ``<layer>/<name>`` holding ``value`` (Keras weights keep their dtype)."""
        from onnx import numpy_helper
        array = value if isinstance(value, np.ndarray) and dtype is None else np.asarray(value, dtype=dtype)
        key = (self.prefix, name, array.dtype.str, array.shape, _digest(array))
        if key in self._consts:  # a layer called twice shares its weights: one initializer, read twice
            return self._consts[key]
        tensor_name = self.unique(f"{self.prefix}/{name}")
        self.initializers.append(self.store.tensor(array, tensor_name) if self.store is not None
                                 else numpy_helper.from_array(array, tensor_name))
        self._init_dtype[tensor_name] = array.dtype.name
        self._consts[key] = tensor_name
        return tensor_name

    def operand(self, value: Any) -> str:
        """A call argument as a tensor name: names pass through, numbers and arrays become constants."""
        if isinstance(value, str):
            return value
        if isinstance(value, dict) and value.get("class_name") == "__numpy__":  # Keras's serialized array
            value = np.asarray(value["config"]["value"], dtype=value["config"].get("dtype", "float32"))
        return self.const(value, "const")

    def ints(self, values: Any, name: str = "ints") -> str:
        """An int64 constant (shapes, axes, split sizes, K)."""
        return self.const(np.asarray(values, dtype=np.int64), name, dtype=np.int64)

    def shape(self, tensor: str) -> tuple:
        """The Keras shape of a layer output tensor."""
        return self.shapes[tensor]

    def dtype(self, tensor: str) -> str:
        """A tensor's dtype ("float32", "int32", "bool"): graph inputs and initializers as declared, any
        other from the node that made it (comparisons: bool, Cast: its ``to``, most: their first input's)."""
        from onnx import helper
        while tensor not in self.dtypes:
            node = self._producer.get(tensor)
            if node is None:
                return self._init_dtype.get(tensor, "float32")
            out = list(node.output).index(tensor)
            if node.op_type in BOOL_OUTPUTS:
                return "bool"
            if node.op_type in INT64_OUTPUTS or (node.op_type == "TopK" and out == 1):
                return "int64"
            if node.op_type == "Cast":
                to = next(a.i for a in node.attribute if a.name == "to")
                return helper.tensor_dtype_to_np_dtype(to).name
            if not node.input:
                return "float32"
            tensor = node.input[{"Where": 1, "OneHot": 2}.get(node.op_type, 0)]
        return str(self.dtypes[tensor])

    def reduce(self, op_type: str, x: str, axes: list[int], keepdims: int = 1) -> str:
        """ReduceSum / ReduceMax...: axes are an input from opset 13 (ReduceSum) or 18 (the rest)."""
        since = 13 if op_type == "ReduceSum" else 18
        if self.opset >= since:
            return self.op(op_type, x, self.ints(axes, "axes"), keepdims=keepdims)
        return self.op(op_type, x, axes=list(axes), keepdims=keepdims)

    def activation(self, name: str, x: str, shape: tuple, **params: Any) -> str:
        """Apply a Keras activation by name (see activations.py)."""
        return ACTIVATIONS[name](self, x, shape, **params)

    def rename(self, old: str, new: str, first_node: int) -> None:
        """Give tensor ``old`` (made by this layer's nodes) the name ``new``."""
        for node in self.nodes[first_node:]:
            for seq in (node.input, node.output):
                for i, n in enumerate(seq):
                    if n == old:
                        seq[i] = new
        if old in self._producer:
            self._producer[new] = self._producer.pop(old)
        self._tensors.add(new)


def _digest(array: np.ndarray) -> bytes:
    """A fingerprint of an array's bytes (a big weight is not copied to be compared)."""
    import hashlib
    if array.dtype.hasobject:
        return repr(array.tolist()).encode()
    return hashlib.blake2b(memoryview(np.ascontiguousarray(array)).cast("B"), digest_size=32).digest()
