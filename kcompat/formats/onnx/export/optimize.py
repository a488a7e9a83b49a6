"""A graph pass over kcompat's ONNX export: cancel Transpose pairs and sink Transposes.

Each channels_last conv / pooling / BatchNormalization layer is exported as
``Transpose -> op -> Transpose`` so its output (named after the layer) is NHWC like Keras's.
Between two such layers the pair ``(0,2,3,1)`` then ``(0,3,1,2)`` is the identity. Rewrites,
repeated until none applies:

- Transpose of a Transpose: composed; the identity permutation disappears.
- Transpose into an elementwise op (Relu, Add of two same-permutation Transposes, Mul by a
  constant...), a reduction, Softmax, Concat, Pad, Slice or Resize: the op runs on the
  untransposed tensor (axes, pads, scales and constants permuted) and one Transpose follows it.
  Only done when at least one input Transpose then goes away, so the count never grows.

A CNN then runs NCHW inside, with Transposes only where a layout is observable: the model
input, Flatten / Reshape, graph outputs. Tensors named after layers may disappear: an
exporter that must keep every layer's output (the onnxruntime reference of ``verify``)
calls ``to_onnx(..., optimize=False)``.
Reference: onnxruntime's transpose optimizer (core/optimizer/transpose_optimization) does the
same at session start; doing it in the file keeps the saved graph readable and small.
"""
from __future__ import annotations

import numpy as np
from onnx import helper, numpy_helper

from ....spec import fresh_name

UNARY = {"Relu", "LeakyRelu", "Elu", "Selu", "Celu", "Sigmoid", "HardSigmoid", "HardSwish", "Tanh", "Softplus",
         "Softsign", "Mish", "Gelu", "Exp", "Log", "Neg", "Abs", "Sqrt", "Reciprocal", "Erf", "Floor", "Ceil",
         "Sign", "Sin", "Cos", "Identity", "Cast", "Clip", "Shrink", "Not", "Round", "IsNaN", "IsInf"}
NARY = {"Add", "Sub", "Mul", "Div", "Pow", "Max", "Min", "Sum", "Mean", "Equal", "Greater", "Less",
        "GreaterOrEqual", "LessOrEqual", "And", "Or", "Xor", "Where", "PRelu"}
REDUCE = {"ReduceMean", "ReduceMax", "ReduceMin", "ReduceSum", "ReduceProd", "ReduceL1", "ReduceL2",
          "ReduceLogSumExp", "ReduceSumSquare"}
AXIS_OPS = {"Softmax", "LogSoftmax", "Hardmax", "Concat"}


def _attr(node, name, default=None):
    for a in node.attribute:
        if a.name == name:
            return helper.get_attribute_value(a)
    return default


def _set_attr(node, name, value) -> None:
    for i, a in enumerate(node.attribute):
        if a.name == name:
            del node.attribute[i]
            break
    node.attribute.append(helper.make_attribute(name, value))


class _Graph:
    """Nodes, constants and the names that must survive (graph outputs)."""

    def __init__(self, nodes, initializers, keep: set[str], store=None):
        self.nodes = list(nodes)
        self.store = store  # spooled initializers are read back from it, big new ones written to it
        self.consts = {t.name: t for t in initializers}
        self.keep = keep
        self.names = {o for n in self.nodes for o in (*n.output, n.name)} | set(self.consts) | keep

    def unique(self, base: str) -> str:
        return fresh_name(base, self.names)

    def producers(self) -> dict:
        return {o: n for n in self.nodes for o in n.output}

    def consumers(self) -> dict:
        uses: dict[str, list] = {}
        for n in self.nodes:
            for i in n.input:
                uses.setdefault(i, []).append(n)
        return uses

    def array(self, name: str):
        if name not in self.consts:
            return None
        t = self.consts[name]
        return self.store.array(t) if self.store is not None and self.store.spooled(t) else numpy_helper.to_array(t)

    def new_const(self, base: str, value: np.ndarray) -> str:
        name = self.unique(base)
        value = np.ascontiguousarray(value)
        self.consts[name] = self.store.tensor(value, name) if self.store is not None else \
            numpy_helper.from_array(value, name)
        return name

    def dead_code(self) -> None:
        """Drop nodes none of whose outputs is read or kept (back to front)."""
        changed = True
        while changed:
            used = {i for n in self.nodes for i in n.input} | self.keep
            alive = [n for n in self.nodes if any(o in used for o in n.output)]
            changed = len(alive) != len(self.nodes)
            self.nodes = alive

    def initializers(self) -> list:
        used = {i for n in self.nodes for i in n.input} | self.keep
        return [t for name, t in self.consts.items() if name in used]


def optimize_transposes(nodes, initializers, keep: set[str], store=None):
    """Cancel and sink Transposes; returns (nodes, initializers) with ``keep`` tensor names intact."""
    g = _Graph(nodes, initializers, keep, store)
    g.dead_code()
    for _ in range(10 * len(g.nodes) + 100):  # every rewrite removes or sinks a Transpose: this is a backstop
        if not _step(g):
            break
        g.dead_code()
    return g.nodes, g.initializers()


def _step(g: _Graph) -> bool:
    producers, consumers = g.producers(), g.consumers()
    for node in g.nodes:
        if node.op_type == "Transpose" and _fold(g, node, producers, consumers):
            return True
        if node.op_type != "Transpose" and _sink(g, node, producers, consumers):
            return True
    return False


def _fold(g: _Graph, node, producers, consumers) -> bool:
    """Transpose(Transpose(x)) -> one Transpose of x; an identity permutation -> x itself."""
    perm = list(_attr(node, "perm", []))
    src = producers.get(node.input[0])
    if src is not None and src.op_type == "Transpose":
        inner = list(_attr(src, "perm", []))
        perm = [inner[p] for p in perm]  # out axis i = x axis inner[perm[i]]
        node.input[0] = src.input[0]
        _set_attr(node, "perm", perm)
        if perm != list(range(len(perm))):
            return True
    elif not perm or perm != list(range(len(perm))):
        return False
    out, x = node.output[0], node.input[0]
    if out in g.keep:  # a graph output keeps its name: an Identity carries it
        node.op_type = "Identity"
        del node.attribute[:]
        return True
    for n in consumers.get(out, []):
        for i, name in enumerate(n.input):
            if name == out:
                n.input[i] = x
    g.nodes.remove(node)
    return True


def _sink(g: _Graph, node, producers, consumers) -> bool:
    """Run ``node`` on untransposed inputs and Transpose its output instead, where that is exact."""
    op = node.op_type
    if len(node.output) != 1 or not (op in UNARY or op in NARY or op in REDUCE or op in AXIS_OPS
                                      or op in ("Pad", "Slice", "Resize")):
        return False
    elementwise = op in UNARY or op in NARY
    data = range(len(node.input)) if elementwise or op == "Concat" else [0]
    first = producers.get(node.input[0])
    if first is None or first.op_type != "Transpose":
        trans = [producers.get(node.input[i]) for i in data]
        first = next((t for t in trans if t is not None and t.op_type == "Transpose"), None)
        if first is None:
            return False
    perm = list(_attr(first, "perm"))
    r = len(perm)
    inv = [int(i) for i in np.argsort(perm)]
    new_inputs = list(node.input)
    removed = 0
    for i in data:
        name = node.input[i]
        src = producers.get(name)
        if name == "":
            continue
        if src is not None and src.op_type == "Transpose" and list(_attr(src, "perm")) == perm:
            new_inputs[i] = src.input[0]
            users = {id(n) for n in consumers.get(name, [])}
            removed += users == {id(node)} and name not in g.keep
        elif elementwise and name in g.consts and g.array(name).ndim <= r:
            c = g.array(name)
            if c.size == 1:
                continue  # a scalar (or all-ones shape) broadcasts the same either way
            c = c.reshape((1,) * (r - c.ndim) + c.shape).transpose(inv)  # t = c_x.transpose(perm)
            while c.ndim > 1 and c.shape[0] == 1:
                c = c[0]  # leading size-1 axes: ONNX broadcasting adds them back
            new_inputs[i] = g.new_const(f"{name}_nchw", c)
        else:
            return False
    if not removed and not _all_follow(g, first.output[0], perm, producers, consumers):
        return False
    old = list(node.input)
    node.input[:] = new_inputs
    out_perm = _rewrite(g, node, perm, inv, r)
    if out_perm is False:
        node.input[:] = old
        return False
    if out_perm is None:  # a reduction that left the kept axes in order: no Transpose after it
        return True
    out = node.output[0]
    node.output[0] = g.unique(f"{node.name}:untransposed")
    g.nodes.insert(g.nodes.index(node) + 1, helper.make_node(
        "Transpose", [node.output[0]], [out], name=g.unique(f"{node.name}/Transpose"), perm=out_perm))
    return True


def _all_follow(g: _Graph, t: str, perm: list, producers, consumers) -> bool:
    """True when every reader of Transpose output ``t`` can take the Transpose too (sinking it into one
    of them leaves it for the others, but they follow): ``x * sigmoid(x)`` after a conv, say."""
    users = consumers.get(t, [])
    if t in g.keep or len(users) < 2:
        return False
    single = UNARY | REDUCE | {"Softmax", "LogSoftmax", "Hardmax", "Pad", "Slice", "Resize"}
    followers = {u.output[0] for u in users if u.op_type in single and len(u.output) == 1}
    for u in users:
        if u.op_type in single and u.input[0] == t:
            continue
        if u.op_type not in NARY and u.op_type != "Concat":
            return False
        for name in u.input:
            src = producers.get(name)
            same = src is not None and src.op_type == "Transpose" and list(_attr(src, "perm")) == perm
            if not (name == t or name in followers or same or (name in g.consts and u.op_type != "Concat")):
                return False
    return True


def _rewrite(g: _Graph, node, perm: list, inv: list, r: int):
    """Adjust node's own axes / pads / scales for an untransposed input; returns the output's perm
    (None: none needed), or False when the node cannot be moved."""
    op = node.op_type
    if op in UNARY or op in NARY:
        return perm
    if op in ("Softmax", "LogSoftmax", "Hardmax", "Concat"):
        _set_attr(node, "axis", perm[_attr(node, "axis", -1) % r])
        return perm
    if op in REDUCE:
        from_input = len(node.input) > 1 and node.input[1] != ""
        axes = g.array(node.input[1]) if from_input else _attr(node, "axes")
        if from_input and axes is None:
            return False  # axes computed at run time
        if axes is None or len(axes) == 0:
            if _attr(node, "noop_with_empty_axes", 0):
                return False  # no axes here means no reduction at all
            axes = range(r)
        axes = [int(a) % r for a in axes]
        new = sorted(perm[a] for a in axes)
        if from_input:
            node.input[1] = g.new_const(f"{node.input[1]}_nchw", np.asarray(new, np.int64))
        else:
            _set_attr(node, "axes", new)
        if _attr(node, "keepdims", 1):
            return perm
        kept = [perm[i] for i in range(r) if i not in axes]  # x axes, in the transposed order
        out = [sorted(kept).index(k) for k in kept]
        return None if out == list(range(len(out))) else out
    if op == "Pad":
        pads = g.array(node.input[1]) if len(node.input) > 1 else None
        if pads is None or (len(node.input) > 3 and node.input[3]):
            return False
        new = np.zeros_like(pads)
        for i in range(r):
            new[perm[i]], new[r + perm[i]] = pads[i], pads[r + i]
        node.input[1] = g.new_const(f"{node.input[1]}_nchw", new)
        return perm
    if op == "Slice":
        if len(node.input) < 4 or g.array(node.input[3]) is None:
            return False
        axes = [perm[int(a) % r] for a in g.array(node.input[3])]
        node.input[3] = g.new_const(f"{node.input[3]}_nchw", np.asarray(axes, np.int64))
        return perm
    if op == "Resize":
        if (len(node.input) > 1 and node.input[1]) or _attr(node, "axes") is not None:
            return False
        given = [i for i in (2, 3) if len(node.input) > i and node.input[i]]
        if any(g.array(node.input[i]) is None for i in given):
            return False
        for i in given:  # x axis j is t axis inv[j]
            node.input[i] = g.new_const(f"{node.input[i]}_nchw", g.array(node.input[i])[inv])
        return perm
    return False
