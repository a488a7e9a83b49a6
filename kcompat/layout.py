"""Channels-last: an NCHW model (PyTorch, Caffe2 exports, channels_first Keras) rewritten as the channels-last
Keras model that computes the same outputs, the way onnx2tf converts, without a Transpose per layer.

Every tensor of the original ("logical") model is carried as ``actual = transpose(logical, P)`` for a
permutation ``P`` chosen per tensor. A layer reads its inputs in the permutation it can work in and says
the permutation of its output, by the ``layout`` fact of its class (kcompat/layers/base.py):

- ``spatial``     convolution, pooling, padding, cropping, upsampling: switched to channels_last; it reads
                  (N, *spatial, C) and writes the same (a global pooling without keepdims: (N, C)).
- ``axis``        normalizations, Softmax, Concatenate: its ``axis`` renumbered to where that axis now is.
- ``elementwise`` activations, identities, merging layers and elementwise op nodes: any permutation, the
                  same for every tensor input (scalar constants only).
- ``last_axis``   Dense: any permutation that keeps the last axis last.
- ``flatten``     Flatten: keeps the original element order: when its output only reaches Dense layers
                  (through elementwise ones), the Dense kernels' rows are permuted instead (no transpose at
                  all); otherwise a Permute puts the axes back first.
- ``permute``     Permute / ops.transpose: disappears, folded into the permutation of its output.
- ``prelu``       PReLU: alpha and shared_axes permuted.
- ``getitem``     ``x[key]`` with slices and ints: the key reordered like the axes.
- ``logical``     everything else: reads the original layout.

A ``Permute`` layer is inserted where a tensor must change permutation, which pushes them to the edges:
after the inputs (unless ``inputs="channels_last"``, which makes rank-3+ inputs (N, *spatial, C)), and
before outputs, which always keep the original layout. kcompat's own ONNX export of a channels-last model
comes back as that model: the Transpose after the input cancels, no Permute is left.
Reference: onnx2tf (PINTO0309/onnx2tf) for the idea; Keras's Permute, Flatten and data_format semantics.
"""
from __future__ import annotations

import copy
from typing import Any

import numpy as np

from .errors import UnsupportedError
from .model import Model
from .spec import LayerSpec, ModelSpec, Node, TensorRef, fresh_name, map_refs

Perm = tuple  # (0, 2, 3, 1): actual axis i holds logical axis P[i]
WHOLE = {"class_name": "__slice__", "config": {"start": None, "stop": None, "step": None}}  # ``:`` in a key


def channels_last_perm(rank: int) -> Perm:
    """(0, 2, .., rank-1, 1): channels moved from axis 1 to the end."""
    return (0, *range(2, rank), 1) if rank > 2 else tuple(range(rank))


def identity(rank: int) -> Perm:
    return tuple(range(rank))


class _Tensor:
    """How an original tensor is carried: the new ref, its permutation, and, for a flattened tensor whose
    features come in another order, ``order[j]`` = the original feature index at position j."""

    def __init__(self, ref: TensorRef, perm: Perm, order: np.ndarray | None = None):
        self.ref, self.perm, self.order = ref, perm, order


class _Rewriter:
    def __init__(self, model: Model, inputs: str):
        self.m = model
        self.inputs = inputs
        self.layers: list[LayerSpec] = []
        self.names = {ls.name for ls in model.spec.layers}
        self.t: dict[TensorRef, _Tensor] = {}  # original tensor -> how it is carried
        self.permuted: dict[tuple, TensorRef] = {}  # (original tensor, perm) -> the Permute's output
        self.new: dict[str, LayerSpec] = {}  # rewritten layers by name
        self.perm_of: dict[TensorRef, Perm] = {}  # new tensor -> the permutation it carries
        self.out_perms: dict[str, list[Perm]] = {}  # layer -> its outputs' permutations (first call)
        self.readers = self._readers()
        self.prefer = self._preferences()

    # ------------------------------------------------------------------ helpers
    def _readers(self) -> dict[TensorRef, list[tuple[str, int]]]:
        out: dict[TensorRef, list] = {}
        for ls in self.m.spec.layers:
            for k, node in enumerate(ls.nodes):
                for r in node.refs():
                    out.setdefault(self._full(r), []).append((ls.name, k))
        return out

    FLEXIBLE = ("elementwise", "axis", "prelu", "getitem")  # layouts whose output follows their input

    def _preferences(self) -> dict[TensorRef, Perm | None]:
        """What the readers of each tensor would like to read it in (a backward pass): a channels_first
        spatial layer channels-last, a layer that needs the original layout that, a flexible layer whatever
        its own readers prefer; the majority wins, ties going to a moved layout."""
        wants: dict[TensorRef, list[Perm]] = {}

        def pick(r: TensorRef | None) -> Perm | None:
            votes = wants.get(r) or []
            return max(set(votes), key=lambda p: (votes.count(p), p != identity(len(p)))) if votes else None

        for name, k in reversed(self.m.order):
            ls = self.m.specs[name]
            if not ls.nodes:
                continue
            layer = self.m.layers[name]
            out = self._first_output(name, k)
            for r in ls.nodes[k].refs():
                r = self._full(r)
                rank = len(self.shape(r))
                if layer.layout == "spatial" and getattr(layer, "channels_first", False):
                    want = channels_last_perm(rank)
                elif layer.layout in self.FLEXIBLE and out is not None and len(self.shape(out)) == rank:
                    want = pick(out)
                elif layer.layout in ("last_axis", "flatten", "permute"):
                    want = None
                else:
                    want = identity(rank)
                if want is not None:
                    wants.setdefault(r, []).append(want)
        return {r: pick(r) for r in wants}

    def _first_output(self, name: str, k: int) -> TensorRef | None:
        shape = self.m.shapes[(name, k)]
        return None if isinstance(shape, list) else TensorRef(name, k)

    def _full(self, r: TensorRef) -> TensorRef:
        return TensorRef(r.layer, r.node, r.index)

    def shape(self, r: TensorRef) -> tuple:
        s = self.m.shapes[(r.layer, r.node)]
        return s[r.index] if isinstance(s, list) else s

    def unique(self, base: str) -> str:
        return fresh_name(base, self.names)

    def carried(self, r: TensorRef, want: Perm, for_layer: str) -> TensorRef:
        """The new ref holding original tensor ``r`` in permutation ``want`` (a Permute when needed)."""
        t = self.t[r]
        if t.order is not None:
            raise UnsupportedError(f"layer '{for_layer}' reads a flattened tensor in another feature order")
        if t.perm == want:
            return t.ref
        key = (r, want)
        if key not in self.permuted:
            dims = [t.perm.index(p) for p in want]  # actual_new = transpose(actual, dims)
            suffix = "to_channels_last" if want == channels_last_perm(len(want)) else "to_original_layout"
            name = self.unique(f"{r.layer}_{suffix}")
            ls = LayerSpec(name, "Permute", {"name": name, "dims": dims[1:], "trainable": True, "dtype": "float32"},
                           [Node(args=[t.ref])], [], "keras.layers")
            self.layers.append(ls)
            self.permuted[key] = TensorRef(name)
            self.perm_of[TensorRef(name)] = want
        return self.permuted[key]

    def emit(self, ls: LayerSpec, k: int, args: list, kwargs: dict, config: dict | None = None,
             weights: list | None = None) -> None:
        """Add call ``k`` of layer ``ls`` (the first call creates the rewritten layer)."""
        new = self.new.get(ls.name)
        if new is None:
            new = LayerSpec(ls.name, ls.class_name, config if config is not None else copy.deepcopy(ls.config), [],
                            ls.weights if weights is None else weights, ls.module, ls.build_config)
            self.new[ls.name] = new
            self.layers.append(new)
        new.nodes.append(Node(args=args, kwargs=kwargs))

    def outputs_of(self, ls: LayerSpec, k: int, perm_of) -> None:
        """Record the layer's outputs: ``perm_of(index, original shape) -> perm``."""
        shape = self.m.shapes[(ls.name, k)]
        shapes = shape if isinstance(shape, list) else [shape]
        for i, s in enumerate(shapes):
            new = TensorRef(ls.name, len(self.new[ls.name].nodes) - 1, i)
            self.t[TensorRef(ls.name, k, i)] = _Tensor(new, perm_of(i, s))
            self.perm_of[new] = perm_of(i, s)

    # ------------------------------------------------------------------ the pass
    def run(self) -> ModelSpec:
        spec = self.m.spec
        for name, k in self.m.order:
            ls = self.m.specs[name]
            if ls.class_name == "InputLayer":
                self._input(ls)
                continue
            self._call(ls, k)
        outputs = []
        for r in spec.outputs:
            r = self._full(r)
            outputs.append(self.carried(r, identity(len(self.shape(r))), "output"))
        inputs = [self.t[self._full(r)].ref for r in spec.inputs]
        names, layouts = self._onnx_names()
        return ModelSpec(spec.name, self.layers, inputs, outputs, False, spec.source, spec.keras_version,
                         names, layouts)

    def _onnx_names(self) -> tuple[dict | None, dict | None]:
        """The ONNX tensor behind each layer still there, with the permutation its output now has."""
        names = self.m.spec.onnx_names
        if names is None:
            return None, None
        old = self.m.spec.onnx_layouts or {}
        keep, layouts = {}, {}
        for layer, onnx in names.items():
            t = self.t.get(TensorRef(layer))
            if t is None or t.order is not None or t.ref.layer != layer:
                continue  # absorbed (a Permute), or a flattened tensor in another feature order
            keep[layer] = onnx
            before = old.get(layer, identity(len(t.perm)))
            perm = tuple(before[p] for p in t.perm)  # actual = transpose(transpose(onnx, before), t.perm)
            if perm != identity(len(perm)):
                layouts[layer] = perm
        return keep, layouts

    def _input(self, ls: LayerSpec) -> None:
        config = copy.deepcopy(ls.config)
        shape = tuple(config["batch_shape"])
        perm = identity(len(shape))
        if self.inputs == "channels_last" and len(shape) > 2:
            perm = channels_last_perm(len(shape))
            config["batch_shape"] = [shape[p] for p in perm]
        new = LayerSpec(ls.name, ls.class_name, config, [], ls.weights, ls.module, ls.build_config)
        self.new[ls.name] = new
        self.layers.append(new)
        self.t[TensorRef(ls.name)] = _Tensor(TensorRef(ls.name), perm)
        self.perm_of[TensorRef(ls.name)] = perm

    def _call(self, ls: LayerSpec, k: int) -> None:
        layer = self.m.layers[ls.name]
        node = ls.nodes[k]
        kind = layer.layout if not (len(ls.nodes) > 1 and ls.name in self.new) else "again"
        refs = [self._full(r) for r in node.refs()]
        handler = getattr(self, f"_{kind}", None)
        if handler is None or not handler(ls, k, layer, node, refs):
            self._logical(ls, k, layer, node, refs)

    def _logical(self, ls, k, layer, node, refs) -> bool:
        """Inputs in the original layout, outputs too."""
        fix = lambda r: self.carried(self._full(r), identity(len(self.shape(r))), ls.name)  # noqa: E731
        self.emit(ls, k, map_refs(node.args, fix), map_refs(node.kwargs, fix))
        shape = self.m.shapes[(ls.name, k)]
        self._record(ls, k, [identity(len(s)) for s in (shape if isinstance(shape, list) else [shape])])
        return True

    def _again(self, ls, k, layer, node, refs) -> bool:
        """A shared layer's later call: its inputs in the permutations its first call read."""
        perms = [self.perm_of[r] for r in self.new[ls.name].nodes[0].refs()]
        if len(perms) != len(refs) or any(self.t[r].order is not None for r in refs):
            return False
        it = iter(perms)
        fix = lambda r: self.carried(self._full(r), next(it), ls.name)  # noqa: E731
        self.emit(ls, k, map_refs(node.args, fix), map_refs(node.kwargs, fix))
        self._record(ls, k, self.out_perms[ls.name])
        return True

    def _record(self, ls, k, perms: list[Perm], order=None) -> None:
        self.outputs_of(ls, k, lambda i, s: perms[i])
        if order is not None:
            self.t[TensorRef(ls.name, k, 0)].order = order
        self.out_perms.setdefault(ls.name, perms)

    def _choose(self, refs: list[TensorRef], out: TensorRef | None = None) -> Perm:
        """The permutation for a flexible layer's inputs (and so its output): the one needing the fewest new
        Permutes now (one that exists already is free) and later (its readers' preference, ``prefer``),
        ties going to a moved layout (the conversion spreads channels-last)."""
        wanted = self.prefer.get(out) if out is not None else None
        if wanted is not None and len(wanted) != len(self.t[refs[0]].perm):
            wanted = None  # the output has another rank (an int index): no say
        candidates = list(dict.fromkeys([self.t[r].perm for r in refs] + ([wanted] if wanted else [])))

        def cost(p):
            new = sum(self.t[r].perm != p and (r, p) not in self.permuted for r in refs)
            return new + (wanted is not None and p != wanted), p == identity(len(p))
        return min(candidates, key=cost)

    # -- the layout kinds (see the module docstring)
    def _spatial(self, ls, k, layer, node, refs) -> bool:
        if len(refs) != 1:
            return False
        r = refs[0]
        rank = len(self.shape(r))
        if not layer.channels_first or not getattr(layer, "pointwise_activation", True):
            return False  # already channels_last; or a softmax-like activation along the (width) last axis
        x = self.carried(r, channels_last_perm(rank), ls.name)
        self.emit(ls, k, [x], {}, config={**copy.deepcopy(ls.config), "data_format": "channels_last"})
        out = self.shape(TensorRef(ls.name, k))
        self._record(ls, k, [channels_last_perm(len(out)) if len(out) == rank else identity(len(out))])
        return True

    def _elementwise(self, ls, k, layer, node, refs) -> bool:
        if not refs:
            return False
        ranks = {len(self.shape(r)) for r in refs}
        if len(ranks) != 1 or any(self.t[r].order is not None for r in refs[1:]):
            return False
        first = self.t[refs[0]]
        if first.order is not None:  # a flattened tensor in another feature order: elementwise on one input only
            if len(refs) > 1:
                return False
            self.emit(ls, k, [first.ref], copy.deepcopy(node.kwargs))
            self._record(ls, k, [first.perm], first.order)
            return True
        perm = self._choose(refs, TensorRef(ls.name, k))
        try:  # constants broadcast against the original layout: moved the same way
            args, kwargs = _moved_constants(node.args, perm), _moved_constants(node.kwargs, perm)
        except ValueError:
            return False
        fix = lambda r: self.carried(self._full(r), perm, ls.name)  # noqa: E731
        self.emit(ls, k, map_refs(args, fix), map_refs(kwargs, fix))
        self._record(ls, k, [perm])
        return True

    def _axis(self, ls, k, layer, node, refs) -> bool:
        axis = ls.config.get("axis", -1)
        single = axis[0] if isinstance(axis, list) and len(axis) == 1 else axis
        if not refs or isinstance(single, (list, tuple)) or not isinstance(single, int) or node.kwargs:
            return False
        ranks = {len(self.shape(r)) for r in refs}
        if len(ranks) != 1 or any(self.t[r].order is not None for r in refs):
            return False
        rank = ranks.pop()
        perm = self._choose(refs, TensorRef(ls.name, k))
        fix = lambda r: self.carried(self._full(r), perm, ls.name)  # noqa: E731
        new_axis = perm.index(single % rank)
        config = {**copy.deepcopy(ls.config), "axis": [new_axis] if isinstance(axis, list) else new_axis}
        self.emit(ls, k, map_refs(node.args, fix), {}, config=config)
        self._record(ls, k, [perm])
        return True

    def _last_axis(self, ls, k, layer, node, refs) -> bool:
        if len(refs) != 1:
            return False
        t = self.t[refs[0]]
        rank = len(t.perm)
        weights = ls.weights
        if t.order is not None:  # Dense after a Flatten whose features come in another order: permute rows
            weights = [w[t.order] if i == 0 else w for i, w in enumerate(ls.weights or [])]
            self.emit(ls, k, [t.ref], {}, weights=weights)
            self._record(ls, k, [identity(2)])
            return True
        perm = t.perm if t.perm[-1] == rank - 1 else identity(rank)
        self.emit(ls, k, [self.carried(refs[0], perm, ls.name)], {})
        self._record(ls, k, [perm])
        return True

    def _flatten(self, ls, k, layer, node, refs) -> bool:
        r = refs[0]
        shape = self.shape(r)
        rank = len(shape)
        want = channels_last_perm(rank) if layer.data_format == "channels_first" else identity(rank)
        t = self.t[r]
        config = {**copy.deepcopy(ls.config), "data_format": "channels_last"}
        if t.perm == want or rank <= 2 or None in shape[1:] or not self._only_dense(TensorRef(ls.name, k)):
            self.emit(ls, k, [self.carried(r, want, ls.name)], {}, config=config)
            self._record(ls, k, [identity(2)])
            return True
        sample = np.arange(int(np.prod(shape[1:]))).reshape(shape[1:])  # original element numbers
        wanted = np.transpose(sample, [p - 1 for p in want[1:]]).reshape(-1)  # the original Flatten's order
        got = np.transpose(sample, [p - 1 for p in t.perm[1:]]).reshape(-1)  # what Flatten now gives
        position = np.argsort(wanted)
        self.emit(ls, k, [t.ref], {}, config=config)
        self._record(ls, k, [identity(2)], order=position[got])
        return True

    def _only_dense(self, r: TensorRef) -> bool:
        """Every path from ``r`` goes through single-input elementwise layers into Dense layers."""
        if r in {self._full(o) for o in self.m.spec.outputs}:
            return False
        for name, k in self.readers.get(r, []):
            layer, ls = self.m.layers[name], self.m.specs[name]
            if len(ls.nodes) > 1 or len(ls.nodes[k].refs()) != 1:
                return False
            if layer.layout == "last_axis":
                continue
            if layer.layout != "elementwise" or not _scalar_constants([ls.nodes[k].args, ls.nodes[k].kwargs]):
                return False
            if not self._only_dense(TensorRef(name, k)):
                return False
        return True

    def _permute(self, ls, k, layer, node, refs) -> bool:
        if len(refs) != 1 or self.t[refs[0]].order is not None:
            return False
        t = self.t[refs[0]]
        rank = len(t.perm)
        dims = layer.permutation(rank)  # logical out axis i = logical in axis dims[i]
        out_perm = tuple(dims.index(q) for q in t.perm)  # actual stays as it is: out = transpose(L_out, out_perm)
        if out_perm[0] != 0:
            return False
        self.t[TensorRef(ls.name, k)] = _Tensor(t.ref, out_perm)
        return True

    def _getitem(self, ls, k, layer, node, refs) -> bool:
        """x[key] with slices and ints (no None): the key reordered like the axes; int axes drop out."""
        if len(refs) != 1 or len(node.args) != 2 or node.kwargs or self.t[refs[0]].order is not None:
            return False
        perm = self._choose(refs, TensorRef(ls.name, k))
        rank = len(perm)
        items = node.args[1] if isinstance(node.args[1], list) else [node.args[1]]
        if any(i is None for i in items):
            return False
        ellipsis = [n for n, i in enumerate(items) if isinstance(i, dict) and i.get("class_name") == "__ellipsis__"]
        explicit = [i for n, i in enumerate(items) if n not in ellipsis]
        if len(ellipsis) > 1 or len(explicit) > rank:
            return False
        at = ellipsis[0] if ellipsis else len(items)
        full = items[:at] + [WHOLE] * (rank - len(explicit)) + items[at + 1:]
        key = [full[p] for p in perm]
        dropped = [a for a, item in enumerate(full) if isinstance(item, int)]
        out = tuple(p - sum(d < p for d in dropped) for p in perm if p not in dropped)
        if out[:1] != (0,) and out:
            return False
        self.emit(ls, k, [self.carried(refs[0], perm, ls.name), key], {})
        self._record(ls, k, [out])
        return True

    def _prelu(self, ls, k, layer, node, refs) -> bool:
        if len(refs) != 1 or self.t[refs[0]].order is not None:
            return False
        perm = self._choose(refs, TensorRef(ls.name, k))
        alpha = np.transpose(ls.weights[0], [p - 1 for p in perm[1:]]) if ls.weights else None
        shared = sorted(perm.index(a) for a in layer.shared_axes)
        self.emit(ls, k, [self.carried(refs[0], perm, ls.name)], {},
                  config={**copy.deepcopy(ls.config), "shared_axes": shared or None},
                  weights=None if alpha is None else [np.ascontiguousarray(alpha)])
        self._record(ls, k, [perm])
        return True


def _moved_constants(obj: Any, perm: Perm) -> Any:
    """Call arguments with every array constant (NumPy, or Keras's serialized ``__numpy__``) padded to the
    tensors' rank with leading 1s, as broadcasting does, and transposed by ``perm``; ValueError if one cannot."""
    if isinstance(obj, TensorRef):
        return obj
    if isinstance(obj, list):
        return [_moved_constants(o, perm) for o in obj]
    if isinstance(obj, tuple):
        return tuple(_moved_constants(o, perm) for o in obj)
    if isinstance(obj, dict) and obj.get("class_name") not in ("__numpy__", "__tensor__"):
        return {k: _moved_constants(v, perm) for k, v in obj.items()}
    serialized = isinstance(obj, dict)
    if not serialized and not isinstance(obj, np.ndarray):
        return obj
    arr = np.asarray(obj["config"]["value"], obj["config"].get("dtype")) if serialized else obj
    if arr.size <= 1 or perm == identity(len(perm)):
        return obj
    if arr.ndim > len(perm):
        raise ValueError("constant of a higher rank than the tensors")
    moved = np.ascontiguousarray(np.transpose(arr.reshape((1,) * (len(perm) - arr.ndim) + arr.shape), perm))
    if not serialized:
        return moved
    return {**obj, "config": {**obj["config"], "value": moved.tolist()}}


def _scalar_constants(obj: Any) -> bool:
    """Every non-tensor argument is a Python number, bool, None or string (no array to permute)."""
    if isinstance(obj, TensorRef) or obj is None or isinstance(obj, (bool, int, float, str)):
        return True
    if isinstance(obj, (list, tuple)):
        return all(_scalar_constants(o) for o in obj)
    if isinstance(obj, dict):
        if obj.get("class_name") in ("__numpy__", "__tensor__"):
            return np.asarray(obj.get("config", {}).get("value")).size <= 1
        return all(_scalar_constants(v) for v in obj.values())
    return np.asarray(obj).size <= 1


def to_channels_last(model: Model, inputs: str = "keep") -> Model:
    """The channels-last model computing ``model``'s outputs. ``inputs``: "keep" (each input keeps its layout;
    a Permute follows it where needed) or "channels_last" (rank-3+ inputs become (N, *spatial, C))."""
    if inputs not in ("keep", "channels_last"):
        raise UnsupportedError(f"inputs must be 'keep' or 'channels_last'. Received: inputs={inputs!r}")
    spec = _Rewriter(model, inputs).run()
    return Model(spec)


LAYOUTS = ("auto", "onnx", "channels_last")


def _moves(model: Model) -> int:
    """Layout changes a model makes: Permute layers and transpose op nodes."""
    return sum(layer.layout == "permute" for layer in model.layers.values())


def _channels_first(model: Model) -> int:
    return sum(bool(getattr(layer, "channels_first", False)) for layer in model.layers.values())


def apply_layout(model: Model, layout: str = "auto", inputs: str = "keep") -> Model:
    """``layout``: "onnx" keeps the model as read; "channels_last" rewrites it (``to_channels_last``); "auto"
    rewrites an imported ONNX model only when that removes layout changes without adding any (kcompat's and
    tf2onnx's exports of channels-last Keras models come back as they were; a PyTorch NCHW model stays NCHW)."""
    if layout not in LAYOUTS:
        raise UnsupportedError(f"layout must be one of {list(LAYOUTS)}. Received: layout={layout!r}")
    if layout == "channels_last":
        return to_channels_last(model, inputs)
    if (layout == "onnx" or model.spec.onnx_names is None or not _moves(model) or not _channels_first(model)
            or not model.spec.has_weights):
        return model  # without a layout change to remove, the rewrite cannot win
    candidate = to_channels_last(model, inputs)
    return candidate if _moves(candidate) < _moves(model) else model
