"""An ONNX file, read defensively (load.py), as a graph the importer can query.

``OnnxGraph`` gives producers / consumers, constants (initializers, Constant nodes and every
node computable from them or from shapes alone: the Shape -> Gather -> Concat -> Reshape
chains of tf2onnx) and each tensor's shape. Shape-derived values are computed twice, with
two different sizes for every dynamic input dimension, so a value that follows the batch
size is told apart from a true constant. Evaluation uses onnx.reference, one node at a time.
"""
from __future__ import annotations

from collections import Counter, defaultdict

import numpy as np

from ....errors import FormatError, UnsupportedError
from ....schema import MAX_DIM, elements
from ..common import np_dtype
from .load import read_lazily, skeleton, tensor_array

FOLD_ELEMENTS = 1 << 24  # constant folding computes no tensor bigger than this (a 4 TiB ConstantOfShape)
SHAPE_INPUTS = {"Reshape": 1, "Expand": 1, "ConstantOfShape": 0, "Tile": 1}  # input holding a shape / repeats
PROBES = ((2, 5, 7, 11, 13), (3, 17, 19, 23, 29))  # sizes given to dynamic dims, one tuple per run
SAME_SHAPE = {"GroupNormalization", "InstanceNormalization", "LayerNormalization", "RMSNormalization",
              "MeanVarianceNormalization", "LpNormalization", "BatchNormalization"}  # output 0: input 0's shape
NONDETERMINISTIC = {"RandomNormal", "RandomUniform", "RandomNormalLike", "RandomUniformLike", "Multinomial",
                    "Bernoulli", "Dropout"}


# ------------------------------------------------------------------ the graph
class OnnxGraph:
    """Producers, consumers, constants and shapes of one ONNX graph (default domain)."""

    def __init__(self, model, path: str, arrays: dict | None = None):
        self.model = model
        self.path = path
        graph = model.graph
        self.arrays = arrays if arrays is not None else {t.name: tensor_array(t, path) for t in graph.initializer}
        self.skeleton = skeleton(model)  # for shape inference: the stripped initializers as typed inputs
        self.opset = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), None)
        if self.opset is None:
            others = Counter(f"{n.domain}.{n.op_type}" for n in model.graph.node if n.domain not in ("", "ai.onnx"))
            if others:  # ai.onnx.ml, ai.onnx.preview.training: ops kcompat has no Keras form for
                listed = ", ".join(f"{k} x{v}" for k, v in others.items())
                raise UnsupportedError(f"{path}: unsupported ONNX ops: {listed}")
            raise FormatError(f"{path}: the model imports no default-domain ONNX opset")
        self.producer_name = model.producer_name or ""
        self.nodes = list(graph.node)
        self._attributes: dict[int, dict] = {}  # id(node) -> attributes (the nodes live as long as the graph)
        init_names = {t.name for t in graph.initializer}
        self.inputs = [v for v in graph.input if v.name not in init_names]
        self.outputs = [v.name for v in graph.output]
        self.producer: dict[str, tuple[int, int]] = {}
        self.consumers: dict[str, list[int]] = defaultdict(list)
        for i, node in enumerate(self.nodes):
            for j, out in enumerate(node.output):
                if out:
                    self.producer[out] = (i, j)
            for inp in node.input:
                if inp:
                    self.consumers[inp].append(i)
        self._check_order()
        self.dim_params = self._name_input_dims()
        self.consts: dict[str, np.ndarray] = {}  # batch-independent values
        self.dynamic: dict[str, tuple[np.ndarray, np.ndarray]] = {}  # values that follow a dynamic dim
        self.probe_shapes: dict[str, tuple[tuple, tuple]] = {}  # concrete shapes at both probes
        self.sym_shapes: dict[str, tuple] = {}
        self.elem_types: dict[str, int] = {}  # ONNX element type of each tensor shape inference typed
        self._fold()

    @classmethod
    def load(cls, path: str) -> "OnnxGraph":
        """Read ``path`` with every hostile-file check (load.py), its initializers as arrays."""
        model, arrays = read_lazily(path)
        return cls(model, path, arrays)

    # -- structure
    def _check_order(self) -> None:
        known = {t.name for t in self.model.graph.initializer} | {v.name for v in self.inputs} | {""}
        for node in self.nodes:
            missing = [n for n in node.input if n not in known]
            if missing:
                raise FormatError(f"{self.path}: node '{node.name}' ({node.op_type}) reads {missing[0]!r} before it is "
                                  f"computed (graph not topologically sorted, or a dangling input)")
            known.update(node.output)

    def attributes(self, node) -> dict:
        """A node's attributes as Python values (bytes decoded, repeated as lists), computed once per node."""
        key = id(node)
        if key not in self._attributes:
            from onnx import helper
            values = {a.name: helper.get_attribute_value(a) for a in node.attribute}
            self._attributes[key] = {k: v.decode(errors="replace") if isinstance(v, bytes) else
                                     (list(v) if isinstance(v, (list, tuple)) else v) for k, v in values.items()}
        return self._attributes[key]

    def single_use(self, tensor: str) -> bool:
        """``tensor`` feeds exactly one node and is not a graph output."""
        return len(self.consumers.get(tensor, [])) == 1 and tensor not in self.outputs

    # -- shapes
    def _name_input_dims(self) -> list[str]:
        """Every dynamic input dim gets a parameter name; returns the names in order of appearance."""
        params: list[str] = []
        for v in self.inputs:
            for i, d in enumerate(v.type.tensor_type.shape.dim):
                if not d.HasField("dim_value"):
                    if not d.dim_param:
                        d.dim_param = f"{v.name}__dim{i}"
                    if d.dim_param not in params:
                        params.append(d.dim_param)
        if len(params) > len(PROBES[0]):
            raise FormatError(f"{self.path}: {len(params)} distinct dynamic input dimensions; kcompat handles "
                              f"up to {len(PROBES[0])}")
        return params

    def input_shape(self, value) -> tuple:
        """A graph input's Keras shape: None for dynamic dims."""
        return tuple(d.dim_value if d.HasField("dim_value") else None for d in value.type.tensor_type.shape.dim)

    def _infer_symbolic(self) -> None:
        """onnx's shape inference, helped where it stops or loses the batch: a context-dependent function op
        (GroupNormalization) gives no shape, Resize and Tile turn a named dim they keep into a fresh
        ``unk__0``. Such an output gets a hint (its shape from its input's) and inference runs again."""
        import onnx
        model = self.skeleton
        for _ in range(len(self.nodes) + 1):
            try:
                inferred = onnx.shape_inference.infer_shapes(model, strict_mode=False, data_prop=True)
            except Exception:  # inference is a help, not a requirement
                return
            known = {}
            for v in list(inferred.graph.value_info) + list(inferred.graph.output) + list(inferred.graph.input):
                t = v.type.tensor_type
                if t.elem_type:
                    self.elem_types[v.name] = t.elem_type
                if t.HasField("shape"):
                    known[v.name] = v
                    self.sym_shapes[v.name] = tuple(d.dim_value if d.HasField("dim_value") else
                                                    (d.dim_param or None) for d in t.shape.dim)
            hints = [h for h in (self._hint(node, known) for node in self.nodes) if h is not None]
            if not hints:
                return
            if model is self.skeleton:
                model = onnx.ModelProto()
                model.CopyFrom(self.skeleton)
            model.graph.value_info.extend(hints)

    def _resolved(self, tensor: str) -> bool:
        sym = self.sym_shapes.get(tensor)
        return sym is not None and all(isinstance(d, int) or d in self.dim_params for d in sym)

    def _hint(self, node, known: dict):
        """A value_info for node's output 0 when inference left it unknown or with an unnamed dim."""
        from onnx import helper
        if node.op_type not in SAME_SHAPE and node.op_type not in ("Resize", "Upsample", "Tile"):
            return None
        out = node.output[0] if node.output else ""
        x = node.input[0] if node.input else ""
        if not out or not x or x not in known or self._resolved(out) or not self._resolved(x):
            return None
        dims = list(self.sym_shapes[x])
        if node.op_type in ("Resize", "Upsample", "Tile"):
            where = {"Tile": 1, "Upsample": 1, "Resize": 1 if self.opset < 11 else 2}[node.op_type]
            factors = self._initial(node.input[where]) if len(node.input) > where else None
            if factors is None and node.op_type == "Upsample":
                factors = next((a.floats for a in node.attribute if a.name == "scales"), None)
            if factors is None or len(factors) != len(dims):
                return None
            dims = [d if f == 1 else (int(d * f) if isinstance(d, int) else None) for d, f in zip(dims, factors)]
        elif node.op_type not in SAME_SHAPE:
            return None
        elem = known[x].type.tensor_type.elem_type
        return helper.make_tensor_value_info(out, elem, dims)

    def _initial(self, name: str) -> list | None:
        """An initializer's values (before folding: the scales / repeats written as initializers)."""
        value = self.arrays.get(name)
        if value is None or value.dtype.kind not in "fiub" or value.size > 64:
            return None
        return [float(v) for v in value.reshape(-1)]

    def shape(self, tensor: str) -> tuple | None:
        """The Keras shape of a tensor (None for dims that vary with the input), or None if unknown."""
        if tensor in self.consts:
            return tuple(self.consts[tensor].shape)
        if tensor in self.probe_shapes:
            a, b = self.probe_shapes[tensor]
            return tuple(x if x == y else None for x, y in zip(a, b))
        sym = self.sym_shapes.get(tensor)
        if sym is None:
            return None
        return tuple(d if isinstance(d, int) else None for d in sym)

    def dtype(self, tensor: str) -> np.dtype | None:
        """The ONNX element type of a tensor as a NumPy dtype (None if inference left it untyped)."""
        if tensor in self.consts:
            return self.consts[tensor].dtype
        elem = self.elem_types.get(tensor)
        return None if elem is None else np_dtype(elem)

    def concrete_shape(self, tensor: str, probe: int) -> tuple | None:
        """The tensor's shape when dynamic dims take the sizes of ``PROBES[probe]``."""
        if tensor in self.probe_shapes:
            return self.probe_shapes[tensor][probe]
        sym = self.sym_shapes.get(tensor)
        if sym is None:
            return None
        sizes = dict(zip(self.dim_params, PROBES[probe]))
        out = []
        for d in sym:
            if isinstance(d, int):
                out.append(d)
            elif d in sizes:
                out.append(sizes[d])
            else:
                return None
        return tuple(out)

    # -- constant folding
    def _fold(self) -> None:
        """Compute every value that does not depend on input data, at both probe sizes."""
        self._infer_symbolic()
        static = self._static_nodes()
        need_data = self._data_needed(static)
        with np.errstate(all="ignore"):  # dummy data may overflow; only shapes and shape values are kept
            first = self._run(static, need_data, 0)
            runs = [first, self._run(static, need_data, 1, reuse=first)]
        inputs = {v.name for v in self.inputs}
        for name, v0 in runs[0].items():
            v1 = runs[1].get(name)
            if v1 is None or name in inputs:
                continue
            if name in need_data["tensors"]:
                if not self._resolved(name):  # inference's sizes win: onnx.reference has pooling bugs
                    sym = self.sym_shapes.get(name)
                    self.probe_shapes[name] = tuple(
                        tuple(d if isinstance(d, int) else p for d, p in zip(sym, v.shape))
                        if sym is not None and len(sym) == v.ndim else tuple(v.shape) for v in (v0, v1))
                continue
            if v0 is v1 or (v0.shape == v1.shape and np.array_equal(v0, v1, equal_nan=v0.dtype.kind in "fc")):
                self.consts[name] = v0
            else:
                self.dynamic[name] = (v0, v1)
        self.check_shape_inputs()

    def _static_nodes(self) -> set[int]:
        """Nodes whose outputs follow from constants and input shapes alone."""
        static_tensors = {t.name for t in self.model.graph.initializer}
        static: set[int] = set()
        for i, node in enumerate(self.nodes):
            if node.domain not in ("", "ai.onnx") or node.op_type in NONDETERMINISTIC:
                continue
            shape_only = node.op_type in ("Shape", "Size")
            if shape_only or all(n == "" or n in static_tensors for n in node.input):
                if any(attr.type in (5, 10) for attr in node.attribute):  # GRAPH / GRAPHS: If, Loop, Scan
                    continue
                static.add(i)
                static_tensors.update(o for o in node.output if o)
        return static

    def _data_needed(self, static: set[int]) -> dict:
        """Data nodes to run on dummy inputs: all of them when shape inference left a shape unknown
        (tf2onnx's Reshape to a computed shape), none otherwise."""
        data = [i for i in range(len(self.nodes)) if i not in static]
        used = {n for node in self.nodes for n in node.input} | set(self.outputs)  # an unread output (Dropout's
        unresolved = any(self.concrete_shape(o, 0) is None  # mask) needs no value: the slow run is for reads
                         for i in data for o in self.nodes[i].output if o and o in used)
        needed = set(data) if unresolved else set()
        return {"nodes": needed, "tensors": {o for i in needed for o in self.nodes[i].output if o}}

    def _run(self, static: set[int], need_data: dict, probe: int, reuse: dict | None = None) -> dict[str, np.ndarray]:
        """Values at one probe size. ``reuse``: the other probe's values, taken as they are for nodes that read
        only constants (ConstantOfShape weights, folded initializers: the same at every size, run once)."""
        values = dict(self.arrays)  # the same array objects in both runs
        constant = set(values) if reuse is not None else set()  # tensors that do not depend on the input
        if need_data["nodes"]:
            rng = np.random.default_rng(probe)
            for v in self.inputs:
                shape = self.concrete_shape(v.name, probe) or ()
                dtype = np_dtype(v.type.tensor_type.elem_type)
                values[v.name] = (rng.standard_normal(shape) if dtype.kind == "f" else np.ones(shape)).astype(dtype)
        for i, node in enumerate(self.nodes):
            if i not in static and i not in need_data["nodes"]:
                continue
            if node.op_type in ("Shape", "Size") and node.input[0] not in values:
                shape = self.concrete_shape(node.input[0], probe)
                if shape is not None:
                    values[node.output[0]] = _shape_value(node, shape)
                continue
            if any(n and n not in values for n in node.input):
                continue
            if reuse is not None and node.op_type not in ("Shape", "Size") and all(not n or n in constant
                                                                                  for n in node.input):
                outs = [o for o in node.output if o]
                if all(o in reuse for o in outs):
                    values.update({o: reuse[o] for o in outs})
                    constant.update(outs)
                    continue
            if self._too_big(node, values, probe):
                continue
            try:
                outs = evaluate_node(node, [values[n] if n else None for n in node.input], self.opset)
            except Exception:  # an op onnx.reference cannot run here: left for the lowering to report
                continue
            for name, value in zip(node.output, outs):
                if name:
                    values[name] = self._inferred_size(name, np.asarray(value), probe, need_data["tensors"])
        return values

    def _inferred_size(self, name: str, value: np.ndarray, probe: int, dummy: set) -> np.ndarray:
        """A value computed on dummy data whose shape differs from shape inference's: zeros of inference's
        shape (onnx.reference's MaxPool misreads asymmetric pads; the values there only feed shapes)."""
        shape = self.concrete_shape(name, probe) if name in dummy else None
        if shape is None or tuple(value.shape) == tuple(shape):
            return value
        return np.zeros(shape, value.dtype)


    def _too_big(self, node, values: dict, probe: int) -> bool:
        """A node folding would make a tensor over FOLD_ELEMENTS (left to the lowering), or whose shape input
        asks for a dimension no model has (a FormatError naming the node: never NumPy's 'Unable to allocate')."""
        where = SHAPE_INPUTS.get(node.op_type)
        if where is not None and len(node.input) > where and node.input[where] in values:
            value = np.asarray(values[node.input[where]])
            self._check_shape_input(node, value)
            if node.op_type in ("ConstantOfShape", "Expand") and value.dtype.kind in "iu" and \
                    elements(np.maximum(value.reshape(-1), 1).tolist()) > FOLD_ELEMENTS:
                return True
        for out in node.output:
            shape = self.concrete_shape(out, probe) if out else None
            if shape is not None and elements(shape) > FOLD_ELEMENTS:
                return True
        return False


    def _check_shape_input(self, node, value: np.ndarray) -> None:
        """FormatError naming the node when its shape input asks for a dimension no model has."""
        if value.dtype.kind in "iu" and value.size and (value.max() > MAX_DIM or value.min() < -1):
            raise FormatError(f"{self.path}: node '{node.name}' ({node.op_type}): shape input "
                              f"{node.input[SHAPE_INPUTS[node.op_type]]!r} holds {value.reshape(-1)[:8].tolist()}, "
                              f"a dimension outside -1..{MAX_DIM}")

    def check_shape_inputs(self) -> None:
        """Every constant shape input (Reshape targets, Expand / ConstantOfShape shapes, Tile repeats) bounded."""
        for node in self.nodes:
            where = SHAPE_INPUTS.get(node.op_type)
            if where is not None and len(node.input) > where and node.input[where] in self.consts:
                self._check_shape_input(node, np.asarray(self.consts[node.input[where]]))


def _shape_value(node, shape: tuple) -> np.ndarray:
    """Shape (with its start / end attributes) or Size of a tensor of known shape."""
    if node.op_type == "Size":
        return np.asarray(int(np.prod(shape, dtype=np.int64)), dtype=np.int64)
    attrs = {a.name: a.i for a in node.attribute}
    start, end = attrs.get("start", 0), attrs.get("end", len(shape))
    return np.asarray(shape[start:end], dtype=np.int64)


def evaluate_node(node, inputs: list, opset: int) -> list:
    """Run one node with onnx.reference, in a model with typed inputs (a context-dependent function op,
    GroupNormalization, is expanded only when its input types are known)."""
    from onnx import helper
    from onnx.reference import ReferenceEvaluator
    names = [f"in{i}" if x is not None else "" for i, x in enumerate(inputs)]
    single = helper.make_node(node.op_type, names, list(node.output), domain=node.domain)
    single.attribute.extend(node.attribute)
    feeds = {n: x for n, x in zip(names, inputs) if n}
    try:
        if not all(isinstance(x, (np.ndarray, np.generic)) for x in feeds.values()):
            raise TypeError("not all tensors")
        typed = [helper.make_tensor_value_info(n, helper.np_dtype_to_tensor_dtype(x.dtype), x.shape)
                 for n, x in feeds.items()]
    except (KeyError, TypeError, ValueError):  # sequences, strings: the node alone, untyped
        return ReferenceEvaluator(single, opsets={"": opset}).run(None, feeds)
    outs = [o for o in node.output if o]
    graph = helper.make_graph([single], "node", typed, [helper.make_empty_tensor_value_info(o) for o in outs])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    got = dict(zip(outs, ReferenceEvaluator(model).run(None, feeds)))
    return [got.get(o) if o else None for o in node.output]
