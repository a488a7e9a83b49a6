"""Model: a ModelSpec built into NumPy layers and run over its graph.

Every call node is evaluated once, in dependency order, so Functional DAGs (several
inputs and outputs, branches, a layer used twice) and Sequential chains run the same
way. ``run`` returns the outputs; ``run_all`` every node's output, for per-layer checks.

``spec`` is the model as the file holds it (a nested model is one layer); ``graph`` is the flat call
graph that runs (kcompat/nested.py: a nested model's layers as ``outer/inner``; the same object as
``spec`` when nothing is nested). ``layers``, ``specs``, ``order``, ``shapes`` and ``info`` are about
``graph``; ``info`` of a nested model counts its layers' parameters.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from . import buffers
from .errors import KcompatError, ShapeError, UnsupportedError
from .layers import Layer, Weight, lookup, missing_class_message
from .layers.base import fmt_shape, weight_size
from .nested import expand, legacy_weight_order, weightless_to_empty
from .masks import keras2_rules, mask_arguments, output_masks
from .parts import run_in_parts
from .schema import MAX_DIM, check_alloc, elements, readable_bytes, shown
from .shapes import arrays_in, as_shape, fmt_any, is_shape, is_shapes, sane
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
        self.expansion = expand(spec)
        self.graph: ModelSpec = self.expansion.graph
        self.layers: dict[str, Layer] = self._make_layers()
        self.specs: dict[str, LayerSpec] = {ls.name: ls for ls in self.graph.layers}  # flat name -> LayerSpec
        self._plan: tuple | None = None  # (weights identity, the Model predict runs): see fused_model
        self.order = self._topological_order()
        self.shapes = self._infer_shapes()
        self.info = self._layer_info()
        if spec.has_weights:
            self._give_nested_weights()
            self._check_weights()

    def _make_layers(self) -> dict[str, Layer]:
        """Every layer of the graph; every class kcompat cannot build reported in one error, once per class."""
        layers: dict[str, Layer] = {}
        missing: dict[tuple, list[str]] = {}  # (class, is_op, module, registered name) -> layer names
        refused: dict[str, list] = {}  # class -> [first message, layer names]
        for ls in self.graph.layers:
            cls = lookup(ls.class_name, ls.is_op, ls.module, ls.registered_name)
            if cls is None:
                missing.setdefault((ls.class_name, ls.is_op, ls.module, ls.registered_name), []).append(ls.name)
                continue
            try:
                layers[ls.name] = cls(ls.config, ls.name)
            except UnsupportedError as e:
                refused.setdefault(ls.class_name, [str(e), []])[1].append(ls.name)
            except KcompatError as e:
                raise type(e)(f"{self.spec.source}: {e}") from None
        problems = [missing_class_message(c, names, op, module, reg) for (c, op, module, reg), names in missing.items()]
        for class_name, (first, names) in refused.items():
            more = names[1:]
            listed = ", ".join(repr(n) for n in more[:3]) + (", ..." if len(more) > 3 else "")
            problems.append(first + (f" (and {len(more)} more {class_name} layer(s) refused: {listed})" if more else ""))
        if problems:
            raise UnsupportedError(f"{self.spec.source}: " + "; ".join(problems))
        return layers

    # ------------------------------------------------------------------ graph
    def node_deps(self, key: NodeKey) -> list[NodeKey]:
        """The call nodes ``key`` (layer name, node index) reads, in argument order."""
        ls = self.specs[key[0]]
        if not ls.nodes:
            return []
        return [(r.layer, r.node) for r in ls.nodes[key[1]].refs()]

    def _topological_order(self) -> list[NodeKey]:
        keys = [(ls.name, i) for ls in self.graph.layers for i in range(max(len(ls.nodes), 1))]
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
                for dep in self.node_deps(key):
                    if dep[0] not in self.specs:
                        raise KcompatError(f"{self.spec.source}: layer '{key[0]}' reads unknown layer '{dep[0]}'")
                    if dep not in done:
                        stack.append((dep, False))
        return order

    def node_args(self, key: NodeKey, values: Any) -> tuple[list, dict]:
        """Call node ``key``'s args and kwargs with each tensor taken from ``values`` (node key -> output)."""
        ls = self.specs[key[0]]
        if not ls.nodes:
            return [None], {}
        node = ls.nodes[key[1]]

        def get(ref: TensorRef):
            out = values[(ref.layer, ref.node)]
            return out[ref.index] if isinstance(out, (list, tuple)) and not is_shape(out) else out
        return map_refs(node.args, get), map_refs(node.kwargs, get)

    def _infer_shapes(self) -> dict[NodeKey, Any]:
        shapes: dict[NodeKey, Any] = {}
        self._first_input_shapes: dict[str, Any] = {}  # layer -> the input shape of its first call
        for key in self.order:
            layer = self.layers[key[0]]
            args, kwargs = self.node_args(key, shapes)
            try:
                in_shape = layer.node_input_shape(args, kwargs)
                if self.specs[key[0]].nodes and not self.specs[key[0]].is_op and not is_shapes(in_shape):
                    raise ShapeError(f"layer '{key[0]}' ({layer.class_name}): its input must be a tensor or a list "
                                     f"of tensors; received {shown(in_shape)}")
                if key[1] == 0:
                    self._first_input_shapes[key[0]] = in_shape
                shapes[key] = as_shape(layer.node_output_shape(args, kwargs))
            except KcompatError as e:
                raise type(e)(f"{self.spec.source}: {e}") from None
            except (ValueError, TypeError, IndexError, KeyError, OverflowError) as e:
                raise ShapeError(f"{self.spec.source}: layer '{key[0]}' ({layer.class_name}): cannot compute its "
                                 f"output shape from input {fmt_any(args[0] if args else None)}: {e}") from None
            if not sane(shapes[key]):
                raise ShapeError(f"{self.spec.source}: layer '{key[0]}' ({layer.class_name}): output shape "
                                 f"{fmt_any(shapes[key])} has a dimension below 0 or above {MAX_DIM}")
        return shapes

    def input_shape_of(self, name: str, node: int = 0) -> Any:
        """The input shape a layer saw at call ``node`` (what its weights are built for)."""
        layer = self.layers[name]
        args, kwargs = self.node_args((name, node), self.shapes)
        return layer.node_input_shape(args, kwargs)

    def _layer_info(self) -> dict[str, LayerInfo]:
        info = {}
        frozen = self.expansion.frozen
        for ls in self.graph.layers:
            layer = self.layers[ls.name]
            in_shape = self._first_input_shapes[ls.name]
            try:
                ws = layer.weights(in_shape)
            except KcompatError as e:
                raise type(e)(f"{self.spec.source}: {e}") from None
            for w in ws:
                if not sane(tuple(w.shape)):
                    raise ShapeError(f"{self.spec.source}: layer '{ls.name}' ({ls.class_name}): weight '{w.name}' "
                                     f"would have shape {fmt_shape(tuple(w.shape))}, beyond any model")
            t = sum(weight_size(w) for w in ws if w.trainable)
            n = sum(weight_size(w) for w in ws if not w.trainable)
            if ls.name in frozen:  # a frozen layer (or in a frozen model): every weight non-trainable, as in Keras
                t, n = 0, t + n
            info[ls.name] = LayerInfo(ls.name, ls.class_name, self.shapes[(ls.name, 0)], in_shape, t, n, ws)
        for name in reversed(self.expansion.nested):  # inner models first: a nested model counts its layers
            kids = [info[c] for c in self.expansion.children[name]]
            info[name].trainable_params = sum(k.trainable_params for k in kids)
            info[name].non_trainable_params = sum(k.non_trainable_params for k in kids)
        return info

    def leaves(self) -> list[LayerSpec]:
        """The graph's layers that own weights (every layer but nested models' pass-through nodes)."""
        nested = self.expansion.children
        return [ls for ls in self.graph.layers if ls.name not in nested]

    # ---------------------------------------------------------------- weights
    def _store(self, name: str, weights: list[np.ndarray]) -> None:
        """Set a graph layer's weights, and those of the file's layer it expands (what writers write)."""
        self.specs[name].weights = weights
        self.expansion.origin[name].weights = weights

    def _give_nested_weights(self) -> None:
        """A nested model read from a legacy .h5 holds all its weights in Keras's legacy order: hand them out."""
        trainable = {n: [w.trainable for w in self.info[n].weights] for n in self.expansion.origin}
        for name in self.expansion.nested:
            origin = self.expansion.origin[name]
            if origin.weights is None:
                continue
            slots = legacy_weight_order(self.expansion, name, trainable)
            if len(slots) != len(origin.weights):
                raise ShapeError(f"{self.spec.source}: nested model '{name}' ({origin.class_name}) expected "
                                 f"{len(slots)} weight(s); received {len(origin.weights)}")
            given: dict[str, list] = {}
            for (layer, i), value in zip(slots, origin.weights):
                given.setdefault(layer, [None] * len(self.info[layer].weights))[i] = value
            for layer in self._leaves_under(name):
                self._store(layer, given.get(layer, []))
            origin.weights = None
            weightless_to_empty(origin.model)

    def _leaves_under(self, name: str) -> list[str]:
        out = []
        for child in self.expansion.children[name]:
            out += self._leaves_under(child) if child in self.expansion.children else [child]
        return out

    def _check_weights(self) -> None:
        for ls in self.leaves():
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
            self._store(ls.name, [np.asarray(a, dtype=np.float32) if a.dtype != np.float32 and a.dtype.kind == "f"
                                  else a for a in got])

    def init_weights(self, seed: int = 0) -> "Model":
        """Give every layer seeded random weights (for an architecture-only JSON)."""
        rng = np.random.default_rng(seed)
        total = sum(weight_size(w) for ls in self.leaves() for w in self.info[ls.name].weights)
        check_alloc(total * 4, f"{self.spec.source}: random weights for {total} parameters")
        for ls in self.leaves():
            layer = self.layers[ls.name]
            self._store(ls.name, [random_weight(layer, w, rng) for w in self.info[ls.name].weights])
        for name in self.expansion.nested:
            self.expansion.origin[name].weights = None
        weightless_to_empty(self.spec)  # a nested model's InputLayers and op nodes
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

    def feed(self, inputs: Any) -> dict[NodeKey, np.ndarray]:
        """The model inputs checked and keyed by their node key (input layer name, 0)."""
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
            if arr.dtype.kind == "V" and arr.dtype.name.startswith(("bfloat", "float")):  # ml_dtypes: bfloat16, float8
                arr = arr.astype(np.float32)
            if arr.dtype.kind not in "fiub":
                raise ShapeError(f"input '{ref.layer}' must be numeric; received dtype {arr.dtype}")
            declared = _declared_dtype(self.specs[ref.layer])
            if declared is not None and declared.kind in "biu":  # as Keras: converted to the Input's dtype
                arr = arr.astype(declared, copy=False)
            elif arr.dtype.kind == "f" or arr.dtype.kind == "b":
                arr = arr.astype(np.float32, copy=False)
            expected = self.shapes[(ref.layer, ref.node)]
            ok = arr.ndim == len(expected) and all(e is None or e == g for e, g in zip(expected, arr.shape))
            if not ok:
                raise ShapeError(f"input '{ref.layer}' expected shape {fmt_shape(expected)}; "
                                 f"received {fmt_shape(arr.shape)}")
            feed[(ref.layer, ref.node)] = arr
        return feed

    def run_all(self, inputs: Any, keep: set | None = None, masks_out: dict | None = None,
                stop: int | None = None) -> dict[NodeKey, Any]:
        """Every call node's output, keyed by (layer name, node index).

        With ``keep`` (a set of node keys), outputs are dropped as soon as no later node
        reads them, except those in ``keep``: predict's memory is then the live tensors only.
        ``masks_out``: filled with every node's Keras mask (when some layer makes masks).
        ``stop``: only the nodes before ``order[stop]`` run (predict's parts: kcompat/parts.py).
        """
        if not self.spec.has_weights:
            raise KcompatError(f"{self.spec.source}: the model has no weights; give --weights or init_weights(seed)")
        values: dict[NodeKey, Any] = self.feed(inputs)
        masks = {k: None for k in values} if self.uses_masks else None  # Keras masks beside values (masks.py)
        self.run_steps(values, 0, stop, keep, masks)
        if masks_out is not None and masks is not None:
            masks_out.update(masks)
        return values

    def run_steps(self, values: dict, start: int, stop: int | None = None, keep: set | None = None,
                  masks: dict | None = None) -> None:
        """Run the call nodes ``order[start:stop]`` not yet in ``values`` (fed inputs first), filling it in place;
        with ``keep``, an output is dropped after its last reader unless kept (run_all; predict's tail in parts)."""
        first = next(iter(values.values()), None)
        batch = first.shape[0] if first is not None and first.ndim else 1
        last_use = self.last_use() if keep is not None else {}
        for step in range(start, len(self.order) if stop is None else stop):
            key = self.order[step]
            if key in values:
                continue
            self._check_output_size(key, batch)
            values[key] = self.call(key, values, masks)
            if keep is not None:
                for dep in set(self.node_deps(key)):
                    if last_use.get(dep) == step and dep not in keep:
                        values.pop(dep, None)

    def call(self, key: NodeKey, values: dict, masks: dict | None = None) -> Any:
        """Call node ``key`` on the outputs in ``values``; with ``masks`` (node key -> Keras mask), the layer
        gets its input masks as Keras passes them, and ``masks[key]`` is set to its output mask."""
        layer = self.layers[key[0]]
        args, kwargs = self.node_args(key, values)
        try:
            if masks is not None:
                kwargs, previous = mask_arguments(layer, args, kwargs, *self.node_args(key, masks), self.keras2)
            value = layer.call_node(args, kwargs, self.specs[key[0]].weights or [])
            if masks is not None:
                masks[key] = output_masks(layer, args, kwargs, previous, value, self.keras2)
        except KcompatError as e:
            named = f"layer '{key[0]}'" in str(e)
            raise type(e)(str(e) if named else f"layer '{key[0]}' ({layer.class_name}): {e}") from None
        except ValueError as e:  # NumPy refusing these arrays (a graph whose shapes only fail at run time)
            shapes = [tuple(a.shape) for a in arrays_in(args)]
            raise ShapeError(f"layer '{key[0]}' ({layer.class_name}): cannot run on inputs of shape "
                             f"{fmt_any(shapes)}: {e}") from None
        return value

    def _check_output_size(self, key: NodeKey, batch: int) -> None:
        """ShapeError before a node whose output (at this batch size) this machine cannot hold."""
        shapes = self.shapes[key] if isinstance(self.shapes[key], list) else [self.shapes[key]]
        shapes = [s for s in shapes if None not in s[1:]]  # another unknown axis: its size is not known yet
        size = sum(elements(s, batch) for s in shapes) * 4
        if size > 1 << 30:
            check_alloc(size, f"layer '{key[0]}' ({self.layers[key[0]].class_name}): its output "
                              f"{' + '.join(fmt_shape(s) for s in shapes)} at batch {batch} "
                              f"({readable_bytes(size)} as float32)")

    def node_masks(self, inputs: Any) -> dict | None:
        """Every call node's Keras mask on ``inputs`` (kcompat's own run); None when no layer makes masks."""
        if not self.uses_masks:
            return None
        masks: dict = {}
        self.run_all(inputs, masks_out=masks)
        return masks

    @property
    def uses_masks(self) -> bool:
        """True when some layer makes a Keras mask (Embedding mask_zero, Masking): masks are then propagated."""
        return any(layer.creates_mask for layer in self.layers.values())

    @property
    def keras2(self) -> bool:
        """True for a model written by Keras 2 / tf.keras (whose mask rules differ a little from Keras 3's)."""
        return keras2_rules(self.spec)

    def last_use(self) -> dict[NodeKey, int]:
        """For each node, the step (index in ``order``) of the last node that reads it."""
        last: dict[NodeKey, int] = {}
        for step, key in enumerate(self.order):
            for dep in self.node_deps(key):
                last[dep] = step
        return last

    def fused_model(self) -> "Model":
        """The model predict runs: BatchNormalization and activation layers folded in (kcompat/plan.py)."""
        if not self.spec.has_weights:
            return self
        key = tuple(id(w) for ls in self.graph.layers for w in ls.weights or [])
        if self._plan is None or self._plan[0] != key:
            from .plan import fused_spec
            spec = fused_spec(self)
            self._plan = (key, self if spec is self.graph else Model(spec))
        return self._plan[1]

    def predict(self, inputs: Any, fused: bool = True) -> list[np.ndarray]:
        """The model's outputs, in order, as a list (one entry per output).

        ``fused`` runs the folded plan (fused_model), in parts of the batch on threads where every layer
        computes each sample on its own (kcompat/parts.py): the same values up to float32 rounding, faster;
        ``run_all`` and ``layer_outputs`` always run every layer as written, on the whole batch.
        """
        model = self.fused_model() if fused else self
        keep = {(r.layer, r.node) for r in model.spec.outputs}
        with buffers.reuse():  # large layer outputs reuse freed buffers (kcompat/buffers.py)
            values = run_in_parts(model, list(model.feed(inputs).values()), keep) if fused else None
            if values is None:  # parts do not apply (kcompat/parts.py): the whole batch at once
                values = model.run_all(inputs, keep=keep)
        out = []
        for r in model.spec.outputs:
            v = values[(r.layer, r.node)]
            out.append(v[r.index] if isinstance(v, (list, tuple)) else v)
        return out

    def layer_outputs(self, inputs: Any) -> dict[str, Any]:
        """Each layer's output at its first call, keyed by layer name (a nested model's layers as ``outer/inner``)."""
        values = self.run_all(inputs)
        return {ls.name: values[(ls.name, 0)] for ls in self.graph.layers}

    # ----------------------------------------------------------------- counts
    @property
    def total_params(self) -> int:
        return sum(self.info[ls.name].params for ls in self.leaves())

    @property
    def trainable_params(self) -> int:
        return sum(self.info[ls.name].trainable_params for ls in self.leaves())

    @property
    def non_trainable_params(self) -> int:
        return sum(self.info[ls.name].non_trainable_params for ls in self.leaves())

    def tensor_shapes(self) -> dict[TensorRef, tuple]:
        """TensorRef -> shape, for writers that record keras tensor shapes (a nested model's inner
        InputLayers as ``outer/input``: the shapes of its first call)."""
        out = {}
        for (name, node), shape in self.shapes.items():
            if isinstance(shape, list):
                for i, s in enumerate(shape):
                    out[TensorRef(name, node, i)] = s
            else:
                out[TensorRef(name, node, 0)] = shape
        for name, calls in self.expansion.calls.items():
            inner = self.expansion.origin[name].model
            for ref, fed in zip(inner.inputs, calls[0] if calls else []):
                out[TensorRef(f"{name}/{ref.layer}", 0, 0)] = out.get(fed)
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


def _declared_dtype(ls: LayerSpec) -> np.dtype | None:
    """An InputLayer's declared dtype when it is a plain NumPy dtype name ("int32", "bool"); else None."""
    dtype = ls.config.get("dtype")
    if ls.class_name != "InputLayer" or not isinstance(dtype, str):
        return None
    try:
        return np.dtype(dtype)
    except TypeError:
        return None
