"""Nested models expanded into one flat call graph, so run, verify and ONNX export see every inner layer.

A ModelSpec keeps a nested model as one LayerSpec (``layer.model`` is its own spec). ``expand`` turns
it into the graph ``kcompat.model.Model`` runs: each inner layer becomes a layer named ``outer/inner``
(``a/b/inner`` two levels down) whose call nodes are the inner nodes once per call of the nested
model, so a sub-model called twice (a siamese encoder) runs its layers twice with the same weights,
exactly as a layer used twice does. The nested model's inner InputLayers disappear (they pass the
call's tensors through), and the nested model itself stays in the graph as a pass-through node of the
same name whose call ``k`` returns the inner outputs of call ``k``: the outer layers still read
``(outer, k, i)`` as in the file, and its output keeps its name in verify and in ONNX.
Keras does the same when it runs a nested model: keras/src/models/functional.py (``call`` ->
``_run_through_graph``) and keras/src/models/sequential.py.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from .errors import FormatError
from .spec import LayerSpec, ModelSpec, Node, TensorRef, keras_layers, map_refs


@dataclass
class Expansion:
    """The flat graph of a spec and where each of its layers came from."""

    graph: ModelSpec
    origin: dict[str, LayerSpec] = field(default_factory=dict)  # flat name -> the LayerSpec it expands
    path: dict[str, tuple[str, ...]] = field(default_factory=dict)  # flat name -> names from the top: ("a", "x")
    frozen: set[str] = field(default_factory=set)  # flat names whose weights are all non-trainable
    children: dict[str, list[str]] = field(default_factory=dict)  # nested model -> its layers' flat names,
    # in Keras's ``layers`` order (what its weights are listed by)
    calls: dict[str, list[list[TensorRef]]] = field(default_factory=dict)  # nested model -> per call, the
    # flat tensors fed to its inputs

    @property
    def nested(self) -> list[str]:
        """Flat names of every nested model (outer ones first)."""
        return list(self.children)


def expand(spec: ModelSpec) -> Expansion:
    """The flat call graph of ``spec`` (``spec`` itself when nothing is nested)."""
    exp = Expansion(graph=spec)
    if not any(ls.model is not None for ls in spec.layers):
        for ls in spec.layers:
            exp.origin[ls.name], exp.path[ls.name] = ls, (ls.name,)
            if ls.config.get("trainable") is False:
                exp.frozen.add(ls.name)
        return exp
    flat: list[LayerSpec] = []
    _scope(spec, "", None, (), False, flat, exp)
    names = [ls.name for ls in flat]
    if len(set(names)) != len(names):
        dup = sorted({n for n in names if names.count(n) > 1})
        raise FormatError(f"{spec.source}: the names of nested models' layers collide with other layers: {dup}")
    exp.graph = dataclasses.replace(spec, layers=flat)
    return exp


def _scope(spec: ModelSpec, prefix: str, calls: list[list[TensorRef]] | None, path: tuple, frozen: bool,
           flat: list[LayerSpec], exp: Expansion) -> list[list[TensorRef]]:
    """Add the layers of ``spec`` (called once per entry of ``calls``, each the flat tensors fed to its inputs;
    None: the top-level model) to ``flat``; return each call's output tensors."""
    n_calls = 1 if calls is None else len(calls)
    inputs = {} if calls is None else {ref.layer: i for i, ref in enumerate(spec.inputs)}
    count = {ls.name: max(len(ls.nodes), 1) for ls in spec.layers}

    def rewrite(ref: TensorRef, call: int) -> TensorRef:
        if ref.layer in inputs:  # an inner InputLayer: the tensor the call passed
            return calls[call][inputs[ref.layer]]
        return TensorRef(prefix + ref.layer, call * count[ref.layer] + ref.node, ref.index)

    def nodes_of(ls: LayerSpec) -> list[Node]:
        return [Node(args=map_refs(n.args, lambda r: rewrite(r, c)), kwargs=map_refs(n.kwargs, lambda r: rewrite(r, c)))
                for c in range(n_calls) for n in ls.nodes]

    for ls in spec.layers:
        if ls.name in inputs or (calls is not None and ls.class_name == "InputLayer"):
            continue
        name, here = prefix + ls.name, path + (ls.name,)
        is_frozen = frozen or ls.config.get("trainable") is False
        exp.origin[name], exp.path[name] = ls, here
        if is_frozen:
            exp.frozen.add(name)
        if ls.model is None:
            flat.append(dataclasses.replace(ls, name=name, nodes=nodes_of(ls)))
            continue
        exp.children[name] = []
        inner_calls = exp.calls[name] = [_call_inputs(node, ls, spec.source) for node in nodes_of(ls)]
        outputs = _scope(ls.model, name + "/", inner_calls, here, is_frozen, flat, exp)
        exp.children[name] = [name + "/" + inner.name for inner in keras_layers(ls.model)
                              if name + "/" + inner.name in exp.origin]
        through = [Node(args=[outs[0] if len(outs) == 1 else list(outs)]) for outs in outputs]
        flat.append(LayerSpec(name=name, class_name=ls.class_name, config=ls.config, nodes=through, weights=[],
                              module=ls.module, registered_name=ls.registered_name))
    return [[rewrite(r, c) for r in spec.outputs] for c in range(n_calls)]


def _call_inputs(node: Node, ls: LayerSpec, source: str) -> list[TensorRef]:
    """The tensors one call of nested model ``ls`` passes to its inputs, in the order of its InputLayers."""
    names = [r.layer for r in ls.model.inputs]
    arg: Any = node.args[0] if node.args else node.kwargs.get("inputs")
    if isinstance(arg, dict):  # by input name, else as Keras flattens a dict (sorted keys)
        arg = [arg[k] for k in (names if set(arg) == set(names) else sorted(arg))]
    refs = [arg] if isinstance(arg, TensorRef) else list(arg) if isinstance(arg, (list, tuple)) else []
    if len(refs) != len(names) or not all(isinstance(r, TensorRef) for r in refs):
        raise FormatError(f"{source}: nested model '{ls.name}' has {len(names)} input(s) {names}; a call passes "
                          f"{len(refs)} tensor(s)")
    return refs


def legacy_weight_order(exp: Expansion, name: str, trainable: dict[str, list[bool]]) -> list[tuple[str, int]]:
    """(flat layer, weight index) for every weight of nested model ``name`` in the order a legacy .h5 lists
    them: Keras's ``layer.trainable_weights + layer.non_trainable_weights`` over its layers, so trainable
    ones of every inner layer first (none in a frozen model). ``trainable``: each flat layer's weights'
    trainability. Reference: keras/src/legacy/saving/legacy_h5_format.py ``_legacy_weights``."""
    every: list[tuple[str, int, bool]] = []

    def walk(nested: str) -> None:
        for child in exp.children[nested]:
            if child in exp.children:
                walk(child)
                continue
            for i, t in enumerate(trainable.get(child, [])):
                every.append((child, i, t and child not in exp.frozen))
    walk(name)
    return [(n, i) for n, i, t in every if t] + [(n, i) for n, i, t in every if not t]


def without_weights(spec: ModelSpec) -> ModelSpec:
    """A copy of ``spec`` with no weights anywhere (configs shared): shapes and counts only."""
    layers = [dataclasses.replace(ls, weights=None, model=None if ls.model is None else without_weights(ls.model))
              for ls in spec.layers]
    return dataclasses.replace(spec, layers=layers)


def weightless_to_empty(spec: ModelSpec) -> None:
    """Layers a file has nothing for (InputLayers, op nodes, layers without weights) hold ``[]``, at every depth."""
    for ls in spec.layers:
        if ls.model is not None:
            weightless_to_empty(ls.model)
        elif ls.weights is None:
            ls.weights = []
