"""Model: a ModelSpec built into NumPy layers and run over its graph.

Every call node is evaluated once, in dependency order, so Functional DAGs (several
inputs and outputs, branches, a layer used twice) and Sequential chains run the same
way. ``run`` returns the outputs; ``run_all`` every node's output, for per-layer checks.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from .errors import KcompatError, ShapeError, UnsupportedError
from .layers import Layer, Weight, make_layer
from .layers.base import fmt_shape, weight_size
from .schema import MAX_DIM, check_alloc, elements, readable_bytes, shown
from .spec import LayerSpec, ModelSpec, TensorRef, map_refs

NodeKey = tuple  # (layer name, node index)


@dataclass
class LayerInfo:
    """What summary and verify need of one layer: shapes and parameter counts."""

    name: str
    class_name: str
    output_shape: Any  # shape of node 0 (a list of shapes for multi-output)
    input_shape: Any
    trainable_params: int
    non_trainable_params: int
    weights: list[Weight]

    @property
    def params(self) -> int:
        return self.trainable_params + self.non_trainable_params


class Model:
    """A runnable model. Build it with ``Model(spec)``; weights come from the spec or ``init_weights``."""

    def __init__(self, spec: ModelSpec):
        self.spec = spec
        self.layers: dict[str, Layer] = {}
        problems = []
        for ls in spec.layers:
            try:
                self.layers[ls.name] = make_layer(ls.class_name, ls.config, ls.name, ls.is_op)
            except UnsupportedError as e:
                problems.append(str(e))
            except KcompatError as e:
                raise type(e)(f"{spec.source}: {e}") from None
        if problems:
            raise UnsupportedError(f"{spec.source}: " + "; ".join(problems) if len(problems) > 1
                                   else f"{spec.source}: {problems[0]}")
        self.specs: dict[str, LayerSpec] = {ls.name: ls for ls in spec.layers}  # layer name -> its LayerSpec
        self.order = self._topological_order()
        self.shapes = self._infer_shapes()
        self.info = self._layer_info()
        if spec.has_weights:
            self._check_weights()

    # ------------------------------------------------------------------ graph
    def _node_deps(self, key: NodeKey) -> list[NodeKey]:
        ls = self.specs[key[0]]
        if not ls.nodes:
            return []
        return [(r.layer, r.node) for r in ls.nodes[key[1]].refs()]

    def _topological_order(self) -> list[NodeKey]:
        keys = [(ls.name, i) for ls in self.spec.layers for i in range(max(len(ls.nodes), 1))]
        done: set = set()
        order: list[NodeKey] = []
        for start in keys:
            stack = [(start, False)]
            visiting: set = set()
            while stack:
                key, expanded = stack.pop()
                if key in done:
                    continue
                if expanded:
                    done.add(key)
                    visiting.discard(key)
                    order.append(key)
                    continue
                if key in visiting:
                    raise KcompatError(f"{self.spec.source}: the graph has a cycle through layer '{key[0]}'")
                visiting.add(key)
                stack.append((key, True))
                for dep in self._node_deps(key):
                    if dep[0] not in self.specs:
                        raise KcompatError(f"{self.spec.source}: layer '{key[0]}' reads unknown layer '{dep[0]}'")
                    if dep not in done:
                        stack.append((dep, False))
        return order

    def _node_args(self, key: NodeKey, values: dict) -> tuple[list, dict]:
        ls = self.specs[key[0]]
        if not ls.nodes:
            return [None], {}
        node = ls.nodes[key[1]]

        def get(ref: TensorRef):
            out = values[(ref.layer, ref.node)]
            return out[ref.index] if isinstance(out, (list, tuple)) and not _is_shape(out) else out
        return map_refs(node.args, get), map_refs(node.kwargs, get)

    def _infer_shapes(self) -> dict[NodeKey, Any]:
        shapes: dict[NodeKey, Any] = {}
        self._first_input_shapes: dict[str, Any] = {}  # layer -> the input shape of its first call
        for key in self.order:
            layer = self.layers[key[0]]
            args, kwargs = self._node_args(key, shapes)
            try:
                in_shape = layer.node_input_shape(args, kwargs)
                if self.specs[key[0]].nodes and not self.specs[key[0]].is_op and not _is_shapes(in_shape):
                    raise ShapeError(f"layer '{key[0]}' ({layer.class_name}): its input must be a tensor or a list "
                                     f"of tensors; received {shown(in_shape)}")
                if key[1] == 0:
                    self._first_input_shapes[key[0]] = in_shape
                shapes[key] = _as_shape(layer.node_output_shape(args, kwargs))
            except KcompatError as e:
                raise type(e)(f"{self.spec.source}: {e}") from None
            except (ValueError, TypeError, IndexError, KeyError, OverflowError) as e:
                raise ShapeError(f"{self.spec.source}: layer '{key[0]}' ({layer.class_name}): cannot compute its "
                                 f"output shape from input {_fmt_any(args[0] if args else None)}: {e}") from None
            if not _sane(shapes[key]):
                raise ShapeError(f"{self.spec.source}: layer '{key[0]}' ({layer.class_name}): output shape "
                                 f"{_fmt_any(shapes[key])} has a dimension below 0 or above {MAX_DIM}")
        return shapes

    def input_shape_of(self, name: str, node: int = 0) -> Any:
        """The input shape a layer saw at call ``node`` (what its weights are built for)."""
        layer = self.layers[name]
        args, kwargs = self._node_args((name, node), self.shapes)
        return layer.node_input_shape(args, kwargs)

    def _layer_info(self) -> dict[str, LayerInfo]:
        info = {}
        for ls in self.spec.layers:
            layer = self.layers[ls.name]
            in_shape = self._first_input_shapes[ls.name]
            try:
                ws = layer.weights(in_shape)
            except KcompatError as e:
                raise type(e)(f"{self.spec.source}: {e}") from None
            for w in ws:
                if not _sane(tuple(w.shape)):
                    raise ShapeError(f"{self.spec.source}: layer '{ls.name}' ({ls.class_name}): weight '{w.name}' "
                                     f"would have shape {fmt_shape(tuple(w.shape))}, beyond any model")
            t = sum(weight_size(w) for w in ws if w.trainable)
            n = sum(weight_size(w) for w in ws if not w.trainable)
            if ls.config.get("trainable") is False:  # a frozen layer: every weight non-trainable, as in Keras
                t, n = 0, t + n
            info[ls.name] = LayerInfo(ls.name, ls.class_name, self.shapes[(ls.name, 0)], in_shape, t, n, ws)
        return info

    # ---------------------------------------------------------------- weights
    def _check_weights(self) -> None:
        for ls in self.spec.layers:
            expected = self.info[ls.name].weights
            got = ls.weights or []
            where = f"{self.spec.source}: layer '{ls.name}' ({ls.class_name})"
            if len(got) != len(expected):
                names = [w.name for w in expected]
                raise ShapeError(f"{where}: expected {len(expected)} weight(s) {names}; received {len(got)}")
            for w, arr in zip(expected, got):
                if tuple(arr.shape) != tuple(w.shape):
                    raise ShapeError(f"{where}: weight '{w.name}' expected shape {fmt_shape(w.shape)}; "
                                     f"received {fmt_shape(tuple(arr.shape))}")
                if arr.dtype.kind not in "fiub" or arr.dtype.itemsize > 8:
                    raise ShapeError(f"{where}: weight '{w.name}' must hold numbers (float or integer); "
                                     f"received dtype {arr.dtype}")
            ls.weights = [np.asarray(a, dtype=np.float32) if a.dtype != np.float32 and a.dtype.kind == "f" else a
                          for a in got]

    def init_weights(self, seed: int = 0) -> "Model":
        """Give every layer seeded random weights (for an architecture-only JSON)."""
        rng = np.random.default_rng(seed)
        total = sum(weight_size(w) for info in self.info.values() for w in info.weights)
        check_alloc(total * 4, f"{self.spec.source}: random weights for {total} parameters")
        for ls in self.spec.layers:
            layer = self.layers[ls.name]
            ls.weights = [random_weight(layer, w, rng) for w in self.info[ls.name].weights]
        return self

    def weights_of(self, name: str) -> list[np.ndarray]:
        """A layer's weights in Keras order."""
        return self.specs[name].weights or []

    # -------------------------------------------------------------------- run
    @property
    def input_names(self) -> list[str]:
        return [r.layer for r in self.spec.inputs]

    @property
    def output_names(self) -> list[str]:
        return [r.layer for r in self.spec.outputs]

    def input_shapes(self) -> list[tuple]:
        return [self.shapes[(r.layer, r.node)] for r in self.spec.inputs]

    def _feed(self, inputs: Any) -> dict[NodeKey, np.ndarray]:
        if isinstance(inputs, dict):
            missing = [n for n in self.input_names if n not in inputs]
            if missing:
                raise ShapeError(f"missing input(s) {missing}; the model's inputs are {self.input_names}, "
                                 f"received {sorted(inputs)}")
            arrays = [inputs[n] for n in self.input_names]
        elif isinstance(inputs, (list, tuple)):
            arrays = list(inputs)
        else:
            arrays = [inputs]
        if len(arrays) != len(self.spec.inputs):
            raise ShapeError(f"the model has {len(self.spec.inputs)} input(s) {self.input_names}; received {len(arrays)}")
        feed = {}
        for ref, arr in zip(self.spec.inputs, arrays):
            arr = np.asarray(arr)
            if arr.dtype.kind not in "fiub":
                raise ShapeError(f"input '{ref.layer}' must be numeric; received dtype {arr.dtype}")
            if arr.dtype.kind == "f" or arr.dtype.kind == "b":
                arr = arr.astype(np.float32, copy=False)
            expected = self.shapes[(ref.layer, ref.node)]
            if arr.ndim and arr.shape[0] == 0:
                raise ShapeError(f"input '{ref.layer}' has no samples (shape {fmt_shape(arr.shape)}); give at least one")
            ok = arr.ndim == len(expected) and all(e is None or e == g for e, g in zip(expected, arr.shape))
            if not ok:
                raise ShapeError(f"input '{ref.layer}' expected shape {fmt_shape(expected)}; "
                                 f"received {fmt_shape(arr.shape)}")
            feed[(ref.layer, ref.node)] = arr
        return feed

    def run_all(self, inputs: Any, keep: set | None = None) -> dict[NodeKey, Any]:
        """Every call node's output, keyed by (layer name, node index).

        With ``keep`` (a set of node keys), outputs are dropped as soon as no later node
        reads them, except those in ``keep``: predict's memory is then the live tensors only.
        """
        if not self.spec.has_weights:
            raise KcompatError(f"{self.spec.source}: the model has no weights; give --weights or init_weights(seed)")
        values: dict[NodeKey, Any] = self._feed(inputs)
        batch = next(iter(values.values())).shape[0] if values and next(iter(values.values())).ndim else 1
        last_use = self._last_use() if keep is not None else {}
        for step, key in enumerate(self.order):
            if key in values:
                continue
            layer = self.layers[key[0]]
            self._check_output_size(key, batch)
            args, kwargs = self._node_args(key, values)
            try:
                values[key] = layer.call_node(args, kwargs, self.specs[key[0]].weights or [])
            except KcompatError as e:
                named = f"layer '{key[0]}'" in str(e)
                raise type(e)(str(e) if named else f"layer '{key[0]}' ({layer.class_name}): {e}") from None
            except ValueError as e:  # NumPy refusing these arrays (a graph whose shapes only fail at run time)
                shapes = [tuple(a.shape) for a in _arrays(args)]
                raise ShapeError(f"layer '{key[0]}' ({layer.class_name}): cannot run on inputs of shape "
                                 f"{_fmt_any(shapes)}: {e}") from None
            if keep is not None:
                for dep in set(self._node_deps(key)):
                    if last_use.get(dep) == step and dep not in keep:
                        values.pop(dep, None)
        return values

    def _check_output_size(self, key: NodeKey, batch: int) -> None:
        """ShapeError before a node whose output (at this batch size) this machine cannot hold."""
        shapes = self.shapes[key] if isinstance(self.shapes[key], list) else [self.shapes[key]]
        shapes = [s for s in shapes if None not in s[1:]]  # another unknown axis: its size is not known yet
        size = sum(elements(s, batch) for s in shapes) * 4
        if size > 1 << 30:
            check_alloc(size, f"layer '{key[0]}' ({self.layers[key[0]].class_name}): its output "
                              f"{' + '.join(fmt_shape(s) for s in shapes)} at batch {batch} "
                              f"({readable_bytes(size)} as float32)")

    def _last_use(self) -> dict[NodeKey, int]:
        """For each node, the step (index in ``order``) of the last node that reads it."""
        last: dict[NodeKey, int] = {}
        for step, key in enumerate(self.order):
            for dep in self._node_deps(key):
                last[dep] = step
        return last

    def predict(self, inputs: Any) -> list[np.ndarray]:
        """The model's outputs, in order, as a list (one entry per output)."""
        values = self.run_all(inputs, keep={(r.layer, r.node) for r in self.spec.outputs})
        out = []
        for r in self.spec.outputs:
            v = values[(r.layer, r.node)]
            out.append(v[r.index] if isinstance(v, (list, tuple)) else v)
        return out

    def layer_outputs(self, inputs: Any) -> dict[str, Any]:
        """Each layer's output at its first call, keyed by layer name."""
        values = self.run_all(inputs)
        return {ls.name: values[(ls.name, 0)] for ls in self.spec.layers}

    # ----------------------------------------------------------------- counts
    @property
    def total_params(self) -> int:
        return sum(i.params for i in self.info.values())

    @property
    def trainable_params(self) -> int:
        return sum(i.trainable_params for i in self.info.values())

    @property
    def non_trainable_params(self) -> int:
        return sum(i.non_trainable_params for i in self.info.values())

    def tensor_shapes(self) -> dict[TensorRef, tuple]:
        """TensorRef -> shape, for writers that record keras tensor shapes."""
        out = {}
        for (name, node), shape in self.shapes.items():
            if isinstance(shape, list):
                for i, s in enumerate(shape):
                    out[TensorRef(name, node, i)] = s
            else:
                out[TensorRef(name, node, 0)] = shape
        return out


def random_weight(layer: Layer, w: Weight, rng: np.random.Generator) -> np.ndarray:
    """A seeded random weight: the layer's own ``random_weight`` if it has one, else scaled normal."""
    custom = getattr(layer, "random_weight", None)
    if custom is not None:
        value = custom(w, rng)
        if value is not None:
            return np.asarray(value, np.float32)
    if len(w.shape) >= 2:
        fan_in = int(np.prod(w.shape[:-1]))
        fan_out = int(w.shape[-1])
        limit = np.sqrt(6.0 / max(fan_in + fan_out, 1))
        return rng.uniform(-limit, limit, size=w.shape).astype(np.float32)
    return rng.normal(0.0, 0.1, size=w.shape).astype(np.float32)


def _is_shapes(value: Any) -> bool:
    """A shape, or a non-empty list of shapes (what a layer's input may be)."""
    return _is_shape(value) or (isinstance(value, list) and bool(value) and all(_is_shapes(v) for v in value))


def _arrays(obj: Any) -> list:
    """The arrays in a nested call-argument structure."""
    if isinstance(obj, np.ndarray):
        return [obj]
    if isinstance(obj, (list, tuple)):
        return [a for item in obj for a in _arrays(item)]
    return []


def _sane(shape: Any) -> bool:
    """Every dimension unknown or from 0 to MAX_DIM (a shape computed from a hostile config may not be)."""
    if isinstance(shape, list):
        return all(_sane(s) for s in shape)
    for d in shape:
        if d is not None and not 0 <= d <= MAX_DIM:
            return False
    return True


def _is_shape(value: Any) -> bool:
    if type(value) is not tuple:
        return False
    for d in value:
        if d is not None and not isinstance(d, (int, np.integer)):
            return False
    return True


def _as_shape(value: Any) -> Any:
    if isinstance(value, list) and not _is_shape(tuple(value)):
        return [_as_shape(v) for v in value]
    return tuple(None if d is None else int(d) for d in value)


def _fmt_any(value: Any) -> str:
    if _is_shape(value):
        return fmt_shape(value)
    if isinstance(value, list):
        return "[" + ", ".join(_fmt_any(v) for v in value) + "]"
    return repr(value)
