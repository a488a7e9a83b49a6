"""Multi-node ONNX patterns that are one Keras layer: activations written out as subgraphs,
TensorFlow's Reshape -> MatMul -> Reshape form of a Dense on a 3-D+ input,
Transpose -> Flatten (Keras's channels_first Flatten) and Unsqueeze -> Tile (RepeatVector).

Activation templates are made by running kcompat's own exporters (export/activations.py)
into a scratch graph, plus the forms other exporters write (PyTorch's gelu, x / (1 + |x|),
Split + Sigmoid + Mul for glu...). A template matches a graph node by unification from
its last node backwards: same op types and attributes, constants equal, commutative
inputs in either order, every inner tensor used only inside the match. Matching runs
twice: loosely (any constant, any axis) to find the input, then strictly against the
template made for that input's shape (sparsemax and glu depend on it).
"""
from __future__ import annotations

import functools
import math
from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from ..export import activations  # fills ACTIVATIONS: the templates are kcompat's own exports
from ..export.context import ExportContext
from ..export.registry import ACTIVATIONS

COMMUTATIVE = {"Add", "Mul", "Max", "Min", "Sum", "Equal", "And", "Or"}
X = "x"


@dataclass
class Template:
    """One form of one activation, as ONNX nodes reading tensor ``x``."""

    activation: str
    nodes: list
    consts: dict
    out: str
    producer: dict = field(default_factory=dict)  # tensor -> (node index, output index)
    tail_inputs: tuple = ()  # each input of the last node: "const", None (x) or the op type making it

    def __post_init__(self):
        for i, node in enumerate(self.nodes):
            for j, o in enumerate(node.output):
                self.producer[o] = (i, j)
        self.tail_inputs = tuple("const" if n in self.consts else None if n == X else
                                 self.nodes[self.producer[n][0]].op_type if n in self.producer else "?"
                                 for n in self.nodes[-1].input)


@dataclass
class Match:
    """A pattern found in the graph: its nodes, its input tensor, and how to lower it."""

    root: int
    nodes: set
    x: str
    emit: Callable  # emit(builder, x_sym) -> Sym


# ------------------------------------------------------------------ other exporters' forms
def _gelu_torch(ctx, x, shape):  # torch.onnx before opset 20: (x * (erf(x / sqrt 2) + 1)) * 0.5
    erf = ctx.op("Erf", ctx.op("Div", x, ctx.const(math.sqrt(2.0))))
    return ctx.op("Mul", ctx.op("Mul", x, ctx.op("Add", erf, ctx.const(1.0))), ctx.const(0.5))


def _gelu_mul_half_first(ctx, x, shape):  # 0.5 * x * (1 + erf(x * (1 / sqrt 2)))
    erf = ctx.op("Erf", ctx.op("Mul", x, ctx.const(1 / math.sqrt(2.0))))
    return ctx.op("Mul", ctx.op("Mul", ctx.const(0.5), x), ctx.op("Add", ctx.const(1.0), erf))


def _softsign(ctx, x, shape):  # x / (1 + |x|)
    return ctx.op("Div", x, ctx.op("Add", ctx.op("Abs", x), ctx.const(1.0)))


def _hard_sigmoid_tf(ctx, x, shape):  # relu6(x + 3) / 6
    clipped = ctx.op("Clip", ctx.op("Add", x, ctx.const(3.0)), ctx.const(0.0), ctx.const(6.0))
    return ctx.op("Div", clipped, ctx.const(6.0))


def _hard_sigmoid_tf_recip(ctx, x, shape):  # tf2onnx folds / 6 into * (1 / 6)
    clipped = ctx.op("Clip", ctx.op("Add", x, ctx.const(3.0)), ctx.const(0.0), ctx.const(6.0))
    return ctx.op("Mul", clipped, ctx.const(1 / 6))


def _hard_silu_tf(ctx, x, shape):
    return ctx.op("Mul", x, _hard_sigmoid_tf(ctx, x, shape))


def _hard_silu_tf_recip(ctx, x, shape):
    return ctx.op("Mul", x, _hard_sigmoid_tf_recip(ctx, x, shape))


def _glu_attr(ctx, x, shape):  # Split sizes as an attribute (opset < 13)
    half = shape[-1] // 2
    a, b = ctx.op("Split", x, outputs=2, axis=len(shape) - 1, split=[half, half])
    return ctx.op("Mul", a, ctx.op("Sigmoid", b))


def _glu_even(ctx, x, shape):  # Split into two equal parts, no sizes given
    a, b = ctx.op("Split", x, outputs=2, axis=len(shape) - 1)
    return ctx.op("Mul", a, ctx.op("Sigmoid", b))


def _glu_num_outputs(ctx, x, shape):  # opset 18+
    a, b = ctx.op("Split", x, outputs=2, axis=len(shape) - 1, num_outputs=2)
    return ctx.op("Mul", a, ctx.op("Sigmoid", b))


VARIANTS = {"gelu": [_gelu_torch, _gelu_mul_half_first], "softsign": [_softsign],
            "hard_sigmoid": [_hard_sigmoid_tf, _hard_sigmoid_tf_recip],
            "hard_silu": [_hard_silu_tf, _hard_silu_tf_recip],
            "glu": [_glu_attr, _glu_even, _glu_num_outputs]}
SHAPED = {"sparsemax", "glu"}  # templates that depend on the input's shape


def _forms(opset: int) -> list[tuple[str, Callable, int]]:
    """(activation, writer, opset to write at) for every multi-node form worth looking for."""
    forms = []
    for at in sorted({13, max(opset, 13)}):
        for name, fn in ACTIVATIONS.items():
            if name not in ("swish", "hard_swish"):  # aliases
                forms.append((name, fn, at))
    for name, fns in VARIANTS.items():
        forms.extend((name, fn, 13) for fn in fns)
    return forms


def make_template(name: str, fn: Callable, opset: int, shape: tuple, **params) -> Template | None:
    """Run a writer into a scratch context; None for single-node forms (lowered op by op)."""
    from onnx import numpy_helper
    ctx = ExportContext(opset)
    ctx.prefix = "t"
    out = fn(ctx, X, shape, **params)
    if len(ctx.nodes) < 2:
        return None
    consts = {t.name: numpy_helper.to_array(t) for t in ctx.initializers}
    return Template(name, ctx.nodes, consts, out)


@functools.lru_cache(maxsize=None)
def templates(opset: int) -> tuple:
    """Loose-phase templates at a nominal shape, indexed by the op type of their last node."""
    by_root: dict[str, list] = {}
    for name, fn, at in _forms(opset):
        for params in ([{}, {"approximate": True}] if fn is activations.gelu else [{}]):
            t = make_template(name, fn, at, (None, 4), **params)
            if t is not None:
                t_params = (name, fn, at, tuple(params.items()))
                by_root.setdefault(t.nodes[-1].op_type, []).append((t, t_params))
    return tuple((k, tuple(v)) for k, v in by_root.items())


# ------------------------------------------------------------------ unification
class _Unifier:
    def __init__(self, g, t: Template, strict: bool):
        self.g, self.t, self.strict = g, t, strict

    def tensor(self, tt: str, gt: str, bind: dict) -> dict | None:
        if tt == X:
            if bind.get(X, gt) != gt or gt in self.g.consts:
                return None
            return {**bind, X: gt}
        if tt in self.t.consts:
            if gt not in self.g.consts:
                return None
            return bind if not self.strict or _same_const(self.t.consts[tt], self.g.consts[gt]) else None
        hit, prod = self.t.producer.get(tt), self.g.producer.get(gt)
        if hit is None or prod is None or hit[1] != prod[1] or gt in self.g.consts:
            return None
        return self.node(hit[0], prod[0], bind)

    def node(self, ti: int, gi: int, bind: dict) -> dict | None:
        key = ("node", ti)
        if key in bind:
            return bind if bind[key] == gi else None
        if gi in bind.get("claimed", ()):
            return None
        tn, gn = self.t.nodes[ti], self.g.nodes[gi]
        if tn.op_type != gn.op_type or gn.domain not in ("", "ai.onnx") or not self._attrs_match(tn, gn, bind):
            return None
        bind = {**bind, key: gi, "claimed": bind.get("claimed", frozenset()) | {gi}}
        t_in = [i for i in tn.input]
        g_in = [i for i in gn.input]
        while g_in and g_in[-1] == "":
            g_in.pop()
        if len(t_in) != len(g_in):
            return None
        orders = [g_in] + ([g_in[::-1]] if tn.op_type in COMMUTATIVE and len(g_in) == 2 else [])
        for order in orders:
            b = bind
            for tt, gt in zip(t_in, order):
                b = self.tensor(tt, gt, b)
                if b is None:
                    break
            if b is not None:
                return b
        return None

    def _attrs_match(self, tn, gn, bind) -> bool:
        ta, ga = _attrs(tn), self.g.attributes(gn)
        if set(ta) != set(ga):
            return False
        for k, v in ta.items():
            w = ga[k]
            if k in ("axis", "axes", "split") and not self.strict:  # shape-dependent: checked in the strict pass
                continue
            if k in ("axis", "axes") and "rank" in bind:
                v, w = _norm_axes(v, bind["rank"]), _norm_axes(w, bind["rank"])
            if isinstance(v, float) or isinstance(w, float):
                if not math.isclose(float(v), float(w), rel_tol=1e-6, abs_tol=1e-7):
                    return False
            elif v != w:
                return False
        return True


def _attrs(node) -> dict:
    from onnx import helper
    out = {}
    for a in node.attribute:
        v = helper.get_attribute_value(a)
        out[a.name] = v.decode(errors="replace") if isinstance(v, bytes) else (list(v) if isinstance(v, (list, tuple)) else v)
    return out


def _norm_axes(v, rank: int):
    return [a % rank for a in v] if isinstance(v, list) else v % rank


def _same_const(a: np.ndarray, b: np.ndarray) -> bool:
    if a.size != b.size or (a.dtype.kind == "f") != (b.dtype.kind == "f"):
        return False
    if a.size > 1 and a.shape != b.shape and a.squeeze().shape != b.squeeze().shape:
        return False
    return bool(np.allclose(a.reshape(-1).astype(np.float64), b.reshape(-1).astype(np.float64),
                            rtol=1e-6, atol=1e-7))


def _unify(g, t: Template, root: int, strict: bool, rank: int | None = None) -> dict | None:
    start = {"rank": rank} if rank is not None else {}
    tail = len(t.nodes) - 1
    bind = _Unifier(g, t, strict).node(tail, root, start)
    if bind is None or X not in bind:
        return None
    inner = set(bind["claimed"])
    for gi in inner:  # every tensor made inside must be read only inside (or be the root's output)
        for out in g.nodes[gi].output:
            if gi == root or not out:
                continue
            readers = set(g.consumers.get(out, []))
            if out in g.outputs or not readers <= inner:
                return None
    return bind


def _input_kinds(g, root: int) -> tuple:
    """Each input of node ``root``: "const", or the op type making it (None: a graph input)."""
    return tuple("const" if n in g.consts else g.nodes[g.producer[n][0]].op_type if n in g.producer else None
                 for n in g.nodes[root].input if n)


def _inputs_could_match(t: Template, have: tuple) -> bool:
    """A quick test before unifying: the template's last node reads the same kinds of inputs (x matches any
    computed tensor), in some order for commutative ops."""
    want = t.tail_inputs
    if len(want) != len(have):
        return False
    orders = (have, have[::-1]) if len(have) == 2 and t.nodes[-1].op_type in COMMUTATIVE else (have,)
    return any(all(h == w or (w is None and h != "const") for w, h in zip(want, order)) for order in orders)


def match_activation(g, root: int) -> Match | None:
    """The activation pattern ending at node ``root``, if any."""
    for t, (name, fn, at, params) in _candidates(g.opset, g.nodes[root].op_type, _input_kinds(g, root)):
        loose = _unify(g, t, root, strict=False)
        if loose is None:
            continue
        x = loose[X]
        shape = g.shape(x)
        if shape is None or (name in SHAPED and (not shape or shape[-1] is None)):
            continue
        strict_t = make_template(name, fn, at, shape, **dict(params)) if name in SHAPED else t
        bind = _unify(g, strict_t, root, strict=True, rank=len(shape))
        if bind is not None:
            return Match(root, set(bind["claimed"]), bind[X], _emitter(name, dict(params)))
    return None


@functools.lru_cache(maxsize=4096)
def _candidates(opset: int, op: str, have: tuple) -> tuple:
    """The templates ending in ``op`` whose last node reads inputs of the kinds ``have``."""
    return tuple(entry for key, entries in templates(opset) if key == op
                 for entry in entries if _inputs_could_match(entry[0], have))


def _emitter(name: str, params: dict) -> Callable:
    def emit(b, x):
        if params.get("approximate"):
            return b.op("Gelu", [x], module="keras.src.ops.nn", approximate=True)
        return b.activation(x, name)
    return emit


# ------------------------------------------------------------------ TensorFlow's Dense on rank > 2
def match_tensordot(g, root: int) -> Match | None:
    """Reshape(x, [-1, in]) -> MatMul(W) -> Reshape(x.shape[:-1] + [units]) is Dense(x)."""
    r2 = g.nodes[root]
    if r2.op_type != "Reshape" or len(r2.input) < 2:
        return None
    mm_i = g.producer.get(r2.input[0], (None,))[0]
    if mm_i is None or g.nodes[mm_i].op_type != "MatMul" or not g.single_use(r2.input[0]):
        return None
    mm = g.nodes[mm_i]
    w = g.consts.get(mm.input[1])
    r1_i = g.producer.get(mm.input[0], (None,))[0]
    if w is None or w.ndim != 2 or r1_i is None or g.nodes[r1_i].op_type != "Reshape" \
            or not g.single_use(mm.input[0]):
        return None
    r1 = g.nodes[r1_i]
    x = r1.input[0]
    flat = g.consts.get(r1.input[1])
    x_shape = g.shape(x)
    if flat is None or x_shape is None or len(x_shape) < 3 or list(flat.reshape(-1)) != [-1, w.shape[0]]:
        return None
    for k in (0, 1):  # the second Reshape must give back x's leading dims, at both probe sizes
        xs = g.concrete_shape(x, k)
        target = g.dynamic.get(r2.input[1], (g.consts.get(r2.input[1]),) * 2)[k]
        if xs is None or target is None or list(np.asarray(target).reshape(-1)) != [*xs[:-1], w.shape[1]]:
            return None

    def emit(b, x_sym):
        return b.dense(x_sym, w)
    return Match(root, {r1_i, mm_i, root}, x, emit)


def match_flatten_channels_first(g, root: int) -> Match | None:
    """Transpose(perm=[0, 2, ..., 1]) -> Flatten(axis=1) is Keras's Flatten(data_format="channels_first")."""
    flat = g.nodes[root]
    if flat.op_type != "Flatten" or _attrs(flat).get("axis", 1) != 1:
        return None
    t_i = g.producer.get(flat.input[0], (None,))[0]
    if t_i is None or g.nodes[t_i].op_type != "Transpose" or not g.single_use(flat.input[0]):
        return None
    x = g.nodes[t_i].input[0]
    shape = g.shape(x)
    if shape is None or len(shape) < 3 or _attrs(g.nodes[t_i]).get("perm") != [0, *range(2, len(shape)), 1]:
        return None

    def emit(b, x_sym):
        return b.layer("Flatten", {"data_format": "channels_first"}, [x_sym])
    return Match(root, {t_i, root}, x, emit)


def match_repeat_vector(g, root: int) -> Match | None:
    """Unsqueeze(x, axes=[1]) -> Tile(repeats=[1, n, 1]) of a rank-2 x is Keras's RepeatVector(n)."""
    tile = g.nodes[root]
    if tile.op_type != "Tile" or len(tile.input) != 2:
        return None
    reps = g.consts.get(tile.input[1])
    u_i = g.producer.get(tile.input[0], (None,))[0]
    if reps is None or u_i is None or g.nodes[u_i].op_type != "Unsqueeze" or not g.single_use(tile.input[0]):
        return None
    u = g.nodes[u_i]
    axes = g.consts.get(u.input[1]) if len(u.input) > 1 else _attrs(u).get("axes")
    x = u.input[0]
    shape = g.shape(x)
    reps = [int(v) for v in np.reshape(reps, -1)]
    if axes is None or shape is None or len(shape) != 2 or [int(a) % 3 for a in np.reshape(axes, -1)] != [1] \
            or len(reps) != 3 or reps[0] != 1 or reps[2] != 1 or reps[1] < 1:
        return None

    def emit(b, x_sym):
        return b.layer("RepeatVector", {"n": reps[1]}, [x_sym])
    return Match(root, {u_i, root}, x, emit)


MATCHERS = (match_tensordot, match_flatten_channels_first, match_repeat_vector, match_activation)


def find_matches(g) -> dict[int, Match]:
    """Every pattern in the graph, by root node; later roots first so the widest match wins."""
    found: dict[int, Match] = {}
    claimed: set[int] = set()
    for root in range(len(g.nodes) - 1, -1, -1):
        if root in claimed or all(o in g.consts or o in g.dynamic for o in g.nodes[root].output if o):
            continue
        for matcher in MATCHERS:
            m = matcher(g, root)
            if m is not None and not (m.nodes & claimed):
                found[root] = m
                claimed |= m.nodes
                break
    return found
