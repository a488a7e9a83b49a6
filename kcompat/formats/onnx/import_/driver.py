"""ONNX -> ModelSpec: a Keras Functional model (Keras 3 configs, Keras-order weights).

Steps: read the file defensively and fold constants (graph.py); find multi-node
patterns (patterns.py); lower every other node with its op function
(lower_*.py, contract in lowering.py). Every unsupported op in the graph is collected and reported at once:
``model.onnx: unsupported ONNX ops: Erfc x1, Gemm (transA=1) x2``. The model keeps the
ONNX layout (an NCHW input stays NCHW). ``spec.onnx_names`` maps each layer to the ONNX
tensor it computes, so ONNX Runtime can run the original file as the reference.
"""
from __future__ import annotations

import functools
import inspect
from collections import Counter
from typing import Any

import numpy as np

from ....errors import FormatError, UnsupportedError
from ....schema import shown
from ....spec import ModelSpec, Node, TensorRef, map_refs
from ...keras.weights import keras_order
from ..common import is_float, np_dtype
from . import (lower_attention, lower_conv, lower_index, lower_logic, lower_loss, lower_math,  # noqa: F401 (fill
               lower_linear, lower_normalization, lower_pooling, lower_quantize, lower_recurrent,  # LOWERINGS)
               lower_reduce, lower_reshaping)
from .builder import Builder, Sym, sanitize
from .graph import NONDETERMINISTIC, OnnxGraph, evaluate_node
from .lowering import LOWERINGS, Dynamic
from .patterns import find_matches


def read_onnx(path: str, weights: None = None) -> ModelSpec:
    """Read an .onnx file as a Keras Functional ModelSpec (weights included)."""
    path = str(path)
    graph = OnnxGraph.load(path)
    b = Builder(graph)
    for v in graph.inputs:
        dtype = np_dtype(v.type.tensor_type.elem_type)
        floating = is_float(dtype)  # bfloat16, float8 and float4 inputs are read as float32 too (exactly)
        if dtype.kind not in "biu" and not floating:  # strings, 4-bit and 2-bit integers
            raise UnsupportedError(f"{path}: graph input '{v.name}' holds {dtype}; a Keras model's inputs are "
                                   f"bool, integers or floats")
        if not graph.input_shape(v):
            raise UnsupportedError(f"{path}: graph input '{v.name}' is a scalar; a Keras Input has a batch axis")
        b.input(v.name, graph.input_shape(v), "float32" if floating else str(dtype))
    matches = find_matches(graph)
    inner = {i for m in matches.values() for i in m.nodes if i != m.root}
    unsupported: Counter = Counter()
    poisoned: set[str] = set()
    for i, node in enumerate(graph.nodes):
        outs = [o for o in node.output if o]
        folded = all(o in graph.consts or o in graph.dynamic for o in outs)
        if i in inner or (folded and not (node.op_type in ("Shape", "Size") and set(outs) & set(graph.outputs))):
            continue  # (a shape that is a graph output is computed in the model: Keras outputs depend on inputs)
        label = node.op_type if node.domain in ("", "ai.onnx") else f"{node.domain}.{node.op_type}"
        if node.domain not in ("", "ai.onnx") or (node.op_type not in LOWERINGS and i not in matches):
            unsupported[label] += 1
            poisoned.update(outs)
            continue
        if any(n in poisoned for n in node.input) or (i in matches and matches[i].x in poisoned):
            poisoned.update(outs)
            continue
        try:
            if i in matches:
                b.at(i, matches[i].nodes)
                values = [matches[i].emit(b, b.env[matches[i].x])]
            elif _fold(b, node):
                continue
            else:
                b.at(i)
                values = _lower(b, node)
        except UnsupportedError as e:
            unsupported[f"{label} ({e})"] += 1
            poisoned.update(outs)
            continue
        except FormatError as e:  # a malformed attribute
            raise FormatError(f"{path}: {e}") from None
        except (ValueError, TypeError, IndexError, KeyError, ArithmeticError) as e:  # inputs the op cannot take
            unsupported[f"{label} (cannot lower node '{node.name}': {e})"] += 1
            poisoned.update(outs)
            continue
        for name, value in zip(node.output, values):
            if name and isinstance(value, np.ndarray):  # a lowering that folded its node (CastLike of a constant)
                b.g.consts[name] = value
            if name and isinstance(value, Sym):
                known = b.g.shape(value.onnx) is not None or b.g.dtype(value.onnx) is not None
                b.env[name] = value if known else Sym(value.ref, name)  # an inner step now stands for `name`
    if unsupported:
        listed = ", ".join(f"{k} x{v}" for k, v in unsupported.items())
        raise UnsupportedError(f"{path}: unsupported ONNX ops: {listed}")
    return _spec(b, graph, path)


def _value(b: Builder, name: str) -> Any:
    """A node input: Sym, constant array, Dynamic, or None for an omitted optional input."""
    if not name:
        return None
    if name in b.env:
        return b.env[name]
    if name in b.g.consts:
        return b.g.consts[name]
    if name in b.g.dynamic:
        return Dynamic(*b.g.dynamic[name])
    raise UnsupportedError(f"input '{name}' could not be computed")


def _fold(b: Builder, node) -> bool:
    """Evaluate a node whose inputs became constants during lowering (a CastLike of a constant in a function
    body): its outputs join the constants. False when an input is computed or onnx.reference cannot run it."""
    names = [n for n in node.input if n]
    if not names or node.op_type in NONDETERMINISTIC or not all(n in b.g.consts for n in names):
        return False
    try:
        outs = evaluate_node(node, [b.g.consts[n] if n else None for n in node.input], b.g.opset)
    except Exception:  # onnx.reference cannot run it: the lowering decides
        return False
    for name, value in zip(node.output, outs):
        if name and value is not None:
            b.g.consts[name] = np.asarray(value)
    return True


BROADCASTING = {"Add", "Sub", "Mul", "Div", "Pow", "Max", "Min", "Sum", "Where", "Equal", "Less", "Greater",
                "LessOrEqual", "GreaterOrEqual", "And", "Or", "Xor", "Mod", "BitwiseAnd", "BitwiseOr", "BitwiseXor"}


def _collapse_dynamic(b: Builder, node, inputs: list) -> list:
    """An operand that follows the batch size but holds the same values along it (tf2onnx's
    ConstantOfShape(Shape(x)) zeros) is the constant it repeats, with size 1 on those axes, when broadcasting
    the other operands keeps the node's output shape: x * zeros_like(x) reads as x * 0."""
    out_shape = b.g.shape(node.output[0])
    if out_shape is None:
        return inputs
    fixed = []
    for v in inputs:
        if isinstance(v, Dynamic):
            v0, v1 = (np.asarray(a) for a in v.values)
            varying = [i for i in range(v0.ndim) if v0.ndim == v1.ndim and v0.shape[i] != v1.shape[i]]
            if v0.ndim != v1.ndim or not varying:
                return inputs
            first = v0[tuple(slice(0, 1) if i in varying else slice(None) for i in range(v0.ndim))]
            if not (np.array_equal(np.broadcast_to(first, v0.shape), v0) and
                    np.array_equal(np.broadcast_to(first, v1.shape), v1)):
                return inputs
            v = first
        fixed.append(v)
    shapes = [b.shape(v) for v in fixed if v is not None]
    if any(s is None for s in shapes):
        return inputs
    rank = max(len(s) for s in shapes)
    padded = [(1,) * (rank - len(s)) + tuple(s) for s in shapes]
    wide = tuple(None if any(p[i] is None for p in padded) else max(p[i] for p in padded) for i in range(rank))
    return fixed if wide == tuple(out_shape) else inputs


@functools.lru_cache(maxsize=None)
def attribute_schema(fn) -> tuple[dict, bool]:
    """A lowering's attributes, from its signature (the signature is the op's schema): name -> the kind
    its default says (int, float, str, list; None: any), and whether it takes any others (**kwargs)."""
    kinds, any_other = {}, False
    for p in list(inspect.signature(fn).parameters.values())[1:]:
        if p.kind == p.VAR_KEYWORD:
            any_other = True
        elif p.default is not p.empty:
            d = p.default
            kinds[p.name] = (bool if isinstance(d, bool) else int if isinstance(d, int) else float if isinstance(d, float)
                             else str if isinstance(d, str) else list if isinstance(d, (list, tuple)) else None)
        else:
            kinds[p.name] = None
    return kinds, any_other


def _attribute(node, a, kind) -> Any:
    """One attribute's value, checked against the kind the lowering's default gives it."""
    from onnx import helper
    try:
        value = helper.get_attribute_value(a)
    except (ValueError, TypeError) as e:
        raise FormatError(f"node '{node.name}' ({node.op_type}): attribute '{a.name}' is malformed: {e}") from None
    value = value.decode(errors="replace") if isinstance(value, bytes) else value
    ok = (kind is None or (kind in (int, bool) and isinstance(value, int)) or (kind is float and isinstance(value, (int, float)))
          or (kind is str and isinstance(value, str)) or (kind is list and isinstance(value, (list, tuple))))
    if not ok:
        expected = {int: "an integer", bool: "an integer", float: "a float", str: "a string", list: "a list"}[kind]
        raise FormatError(f"node '{node.name}' ({node.op_type}): attribute '{a.name}' must be {expected}. "
                          f"Received: {a.name}={shown(value)}")
    return value


def _lower(b: Builder, node) -> list:
    """Call the op's lowering with inputs positional and attributes by keyword (checked: attribute_schema)."""
    fn = LOWERINGS[node.op_type]
    kinds, any_other = attribute_schema(fn)
    attrs = {}
    for a in node.attribute:
        if a.name not in kinds and not any_other:
            raise UnsupportedError(f"attribute {a.name}")
        attrs[a.name] = _attribute(node, a, kinds.get(a.name))
    inputs = [_value(b, n) for n in node.input]
    while inputs and inputs[-1] is None:
        inputs.pop()
    if node.op_type in BROADCASTING and any(isinstance(v, Dynamic) for v in inputs):
        inputs = _collapse_dynamic(b, node, inputs)
    out = fn(b, *inputs, **attrs)
    return out if isinstance(out, list) else [out]


def _merge_shared_layers(b: Builder, outputs: list) -> list:
    """One Keras layer called twice exports as two ONNX node groups of the same scope reading the same
    weights (``shared/Gemm``, ``shared/Gemm_1``). Fold such a repeat back into a second call node of the
    first layer: same scope, class, config (but name) and bit-identical weights. Returns the new outputs."""
    def key(ls):  # cheap: the weights' bytes are compared only between layers alike in all else
        cfg = {k: v for k, v in ls.config.items() if k != "name"}
        shapes = tuple((w.shape, str(w.dtype)) for w in ls.weights or [])
        return b.scopes.get(ls.name), ls.class_name, ls.module, repr(sorted(cfg.items())), shapes
    groups: dict = {}
    for ls in b.layers:
        if ls.class_name != "InputLayer" and ls.weights and b.scopes.get(ls.name) is not None and len(ls.nodes) == 1:
            groups.setdefault(key(ls), []).append(ls)
    moved: dict[str, TensorRef] = {}  # (repeat layer) -> its call as a node of the first layer
    for members in (m for m in groups.values() if len(m) > 1):
        first: dict = {}
        for ls in members:
            weights = tuple(digest(w) for w in ls.weights)
            if weights not in first:
                first[weights] = ls
                continue
            owner = first[weights]
            owner.nodes.append(ls.nodes[0])
            moved[ls.name] = TensorRef(owner.name, len(owner.nodes) - 1)
            b.by_name.pop(ls.name, None)
            b.onnx_names.pop(ls.name, None)
    b.layers = [ls for ls in b.layers if ls.name not in moved]
    if not moved:
        return outputs

    def fix(ref: TensorRef) -> TensorRef:
        target = moved.get(ref.layer)
        return ref if target is None else TensorRef(target.layer, target.node, ref.index)
    for ls in b.layers:
        ls.nodes = [Node(args=map_refs(n.args, fix), kwargs=map_refs(n.kwargs, fix)) for n in ls.nodes]
    return [fix(r) for r in outputs]


def digest(array: np.ndarray) -> bytes:
    """A fingerprint of an array's bytes (not a copy of them: a big model's weights are not held twice)."""
    import hashlib
    return hashlib.blake2b(memoryview(np.ascontiguousarray(array)).cast("B"), digest_size=32).digest()


def _spec(b: Builder, graph: OnnxGraph, path: str) -> ModelSpec:
    outputs = []
    for name in graph.outputs:
        sym = b.env.get(name)
        if sym is None and (name in graph.consts or name in graph.dynamic):
            raise UnsupportedError(f"{path}: graph output '{name}' does not depend on the input's values (a Keras "
                                   f"model's outputs are computed from its inputs)")
        if sym is None:
            raise UnsupportedError(f"{path}: graph output '{name}' could not be computed")
        outputs.append(sym.ref)
    outputs = _merge_shared_layers(b, outputs)
    layers = keras_order(b.layers, outputs)
    name = sanitize(graph.model.graph.name or "model")
    spec = ModelSpec(name=name, layers=layers, inputs=[s.ref for s in (b.env[v.name] for v in graph.inputs)],
                     outputs=outputs, source=path)
    spec.onnx_names = {ls.name: b.onnx_names[ls.name] for ls in layers if ls.name in b.onnx_names}
    for ls in layers:
        if ls.weights is not None:
            ls.weights = [np.asarray(w) for w in ls.weights]
    if not spec.inputs:
        raise FormatError(f"{path}: the ONNX graph has no inputs")
    return spec


