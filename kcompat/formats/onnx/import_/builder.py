"""The ModelSpec under construction while ONNX nodes are lowered to Keras layers.

Every ONNX tensor the importer has lowered is bound to a ``Sym`` (a Keras tensor: layer,
node, index). Layers are named after the ONNX node's scope (``D16/Gemm`` -> ``D16``,
``/fc1/Gemm`` -> ``fc1``, ``functional_1/d1_1/Tensordot/MatMul`` -> ``d1``, kcompat's
``conv1/Relu/Transpose`` (a Transpose its optimizer sank) -> ``conv1``, PyTorch's
``/layer1/layer1.0/conv1/Conv`` -> ``layer1.0.conv1`` as in its state_dict), else Keras's
own default (``dense``, ``dense_1``); a helper layer of one node's lowering (the ZeroPadding
before a Conv) takes the scope plus a suffix (``conv1_pad``). Two peepholes keep Keras's shape
of a model: a bias Add folds into the Dense before it, and an activation folds into the Dense or
convolution before it when both come from the same scope (the same Keras layer).
"""
from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np

from ....errors import UnsupportedError
from ....layers import REGISTRY
from ....spec import LayerSpec, Node, TensorRef
from ...keras.config import input_layer_spec
from ...keras.weights import snake_case

_KERAS_WRAPPER = re.compile(r"^(functional|sequential|model)(_\d+)?$")


def has_activation(class_name: str) -> bool:
    """The Keras layer class has an ``activation`` config key (a fact of the layer class)."""
    cls = REGISTRY.get(class_name)
    return cls is not None and cls.has_activation


@dataclass(frozen=True)
class Sym:
    """A Keras tensor standing for ONNX tensor ``onnx``."""

    ref: TensorRef
    onnx: str


def scope_of(node_name: str, producer: str = "") -> str | None:
    """The Keras layer / module a node comes from, by its name; None if the name says nothing."""
    parts = [p for p in node_name.strip("/").split("/") if p]
    if len(parts) < 2:
        return None
    path = parts[:-1]
    if producer == "kcompat":  # <layer>/<Op>, and <layer>/<Op>/Transpose after export/optimize.py's sinking
        return parts[0]
    if len(path) >= 2 and (producer == "tf2onnx" or _KERAS_WRAPPER.match(path[0])):
        return re.sub(r"_\d+$", "", path[1]) or path[1]  # TensorFlow: model_1/layer_1/op...: the Keras layer
    if producer == "pytorch":  # /layer1/layer1.0/conv1/Conv: the module's name in the state_dict, layer1.0.conv1
        name = ""
        for p in path:
            name = p if not name or p.startswith(name + ".") else f"{name}.{p}"
        return name
    return path[-1]


def float64(array: np.ndarray) -> dict:
    """A float64 constant argument kept float64 (op arguments are otherwise float32), for a float64 computation."""
    return {"class_name": "__numpy__", "config": {"value": np.asarray(array, np.float64).tolist(), "dtype": "float64"}}


def sanitize(name: str) -> str:
    """A name Keras accepts: no '/' (Keras 3's one rule) and no control characters; unicode, spaces
    and ':' are kept, so a kcompat export reads back with its layer names."""
    name = re.sub(r"[/\x00-\x1f\x7f]", "_", name).strip("_ ")
    return name or "layer"


class Builder:
    """Layers, bindings ONNX tensor -> Sym, and the layer -> ONNX tensor map for verification."""

    def __init__(self, graph):
        self.g = graph
        self.layers: list[LayerSpec] = []
        self.by_name: dict[str, LayerSpec] = {}
        self.env: dict[str, Sym] = {}
        self.onnx_names: dict[str, str] = {}
        self.scopes: dict[str, str | None] = {}
        self._suffix: dict[str, int] = {}  # base name -> last suffix tried (_unique)
        self._scope: tuple = (None, None)  # (node, its scope)
        self.node = None  # the ONNX node being lowered (its name gives the layer's)
        self.group: set[int] = set()  # node indices lowered together (a pattern), for use counts
        self.inner_shapes: dict[TensorRef, tuple] = {}  # shapes of inner steps, where a lowering recorded them

    def at(self, index: int, group: set[int] | None = None) -> None:
        """Lower node ``index`` next (with ``group``: a whole pattern rooted there)."""
        self.node = self.g.nodes[index]
        self.group = set(group or ()) | {index}

    # ------------------------------------------------------------ values
    def shape(self, x) -> tuple | None:
        """Keras shape of a Sym or constant."""
        if isinstance(x, Sym):
            return self.inner_shapes.get(x.ref) or self.g.shape(x.onnx)
        return tuple(np.shape(x))

    def like(self, y: Sym, x) -> Sym:
        """Record that the inner step ``y`` has x's shape (a Sym's, or a shape tuple), for a lowering that reads it."""
        self.inner_shapes[y.ref] = tuple(x) if isinstance(x, (tuple, list)) else self.shape(x)
        return y

    def dtype(self, x) -> np.dtype | None:
        """The ONNX element type of a Sym's tensor or a constant (None when unknown). In the Keras model every
        float is float32 (see Cast); integers and bools keep ONNX's dtype."""
        if isinstance(x, Sym):
            return self.g.dtype(x.onnx)
        return np.asarray(x).dtype if isinstance(x, np.ndarray) else None

    def rank(self, x) -> int:
        shape = self.shape(x)
        if shape is None:
            raise UnsupportedError(f"{self.node.op_type} on a tensor of unknown rank")
        return len(shape)

    # ------------------------------------------------------------ naming
    def _name(self, class_name: str, suffix: str | None = None) -> str:
        scope = self.scope()
        if scope and suffix:
            return self._unique(f"{sanitize(scope)}_{suffix}")
        return self._unique(sanitize(scope) if scope else snake_case(class_name))

    def scope(self) -> str | None:
        if self.node is None:
            return None
        if self._scope[0] is not self.node:  # once per node (a lowering asks several times)
            self._scope = (self.node, scope_of(self.node.name, self.g.producer_name))
        return self._scope[1]

    def _add(self, layer: LayerSpec, onnx_out: str | None) -> Sym:
        self.layers.append(layer)
        self.by_name[layer.name] = layer
        self.scopes[layer.name] = self.scope()
        if onnx_out:
            self.onnx_names[layer.name] = onnx_out
        return Sym(TensorRef(layer.name), onnx_out or layer.name)

    def _out(self) -> str | None:
        return self.node.output[0] if self.node is not None else None

    # ------------------------------------------------------------ emitting
    def input(self, name: str, batch_shape: tuple, dtype: str) -> Sym:
        """An InputLayer for graph input ``name``."""
        layer = input_layer_spec(self._unique(sanitize(name)), list(batch_shape), dtype)
        layer.weights = []
        self.layers.append(layer)
        self.by_name[layer.name] = layer
        self.onnx_names[layer.name] = name
        sym = Sym(TensorRef(layer.name), name)
        self.env[name] = sym
        return sym

    def _unique(self, base: str) -> str:
        """``base``, else ``base_1``, ``base_2``...: the counter per base is kept, so naming n layers of one
        base costs O(n), not O(n**2)."""
        name, i = base, self._suffix.get(base, 0)
        while name in self.by_name:
            i += 1
            name = f"{base}_{i}"
        self._suffix[base] = i
        return name

    def layer(self, class_name: str, config: dict, args: list, weights: list | None = None,
              inner: bool = False, suffix: str | None = None, kwargs: dict | None = None) -> Sym:
        """A Keras layer (module keras.layers) called on ``args`` (Syms and constants).

        ``inner``: a step inside one ONNX node's lowering; it stands for no ONNX tensor.
        ``suffix``: name it ``<scope>_<suffix>`` (a helper layer, leaving the scope's name to the main one).
        ``kwargs``: keyword arguments of the call (an RNN's ``initial_state`` and ``mask``).
        """
        name = self._name(class_name, suffix)
        cfg = {"name": name, "trainable": True, "dtype": "float32", **config}
        call_kwargs = {k: self._args([v], top=False)[0] for k, v in (kwargs or {}).items()}
        ls = LayerSpec(name=name, class_name=class_name, config=cfg, nodes=[Node(args=self._args(args),
                                                                                  kwargs=call_kwargs)],
                       weights=list(weights or []), module="keras.layers")
        return self._add(ls, None if inner else self._out())

    def op(self, class_name: str, args: list, module: str = "keras.src.ops.numpy", inner: bool = False,
           suffix: str | None = None, **config) -> Sym:
        """A Keras 3 op node (``ops.exp(x)``, ``x * 2``) serialized the way Keras does."""
        name = self._name(class_name, suffix)
        ls = LayerSpec(name=name, class_name=class_name, config={"name": name, **config},
                       nodes=[Node(args=self._args(args))], weights=[], module=module)
        return self._add(ls, None if inner else self._out())

    def op_outputs(self, class_name: str, args: list, count: int, module: str = "keras.src.ops.numpy",
                   **config) -> list[Sym]:
        """A Keras 3 op node with ``count`` outputs (``ops.top_k``: values, indices), as inner Syms."""
        first = self.op(class_name, args, module=module, inner=True, **config)
        return [first] + [Sym(TensorRef(first.ref.layer, 0, i), f"{first.onnx}:{i}") for i in range(1, count)]

    def claim(self, y: Sym) -> Sym:
        """Make ``y`` (the last step of a composition, built ``inner``) the node's output: it stands for the ONNX
        output tensor and its layer is compared against it by verify."""
        out = self._out()
        if out and not y.ref.index and y.ref.layer not in self.onnx_names:
            self.onnx_names[y.ref.layer] = out
        return Sym(y.ref, out) if out else y

    def _args(self, args: list, top: bool = True) -> list:
        out = []
        for a in args:
            if isinstance(a, Sym):
                out.append(a.ref)
            elif isinstance(a, list):
                out.append(self._args(a, top=False))
            elif isinstance(a, np.ndarray) and a.size == 1 and a.dtype.kind == "f" and top:  # a weak Python float
                out.append(float(a.reshape(())))
            elif isinstance(a, np.ndarray):
                if a.dtype.kind == "f":  # the Keras model computes floats in float32 (float64 would promote)
                    a = a.astype(np.float32)
                out.append({"class_name": "__numpy__", "config": {"value": a.tolist(), "dtype": str(a.dtype)}})
            elif isinstance(a, np.generic):  # a NumPy scalar: the Python number (JSON has no float32)
                out.append(a.item())
            elif a is None or isinstance(a, (bool, int, float, str, dict)):
                out.append(a)
            else:  # a value that follows the input's shape (lowering.Dynamic) has no place in a Keras config
                raise UnsupportedError(f"{self.node.op_type if self.node is not None else 'a node'} reads a value "
                                       f"computed from the input's shape")
        return out

    # ------------------------------------------------------------ Dense and its peepholes
    def dense(self, x: Sym, kernel: np.ndarray, bias: np.ndarray | None = None) -> Sym:
        """A Dense layer with Keras-order weights (kernel (in, units), bias (units,))."""
        weights = [kernel] + ([np.ascontiguousarray(bias)] if bias is not None else [])  # kernel: Gemm's
        # transposed (out, in) weight as a view; matmul reads it as is, and a 100M-entry copy costs seconds
        return self.layer("Dense", {"units": int(kernel.shape[1]), "activation": "linear",
                                    "use_bias": bias is not None}, [x], weights)

    def _dense_of(self, x, accept=lambda class_name: class_name == "Dense") -> LayerSpec | None:
        """The Dense (or a layer of ``classes``) behind Sym ``x`` if its output goes nowhere else in the ONNX graph."""
        if not isinstance(x, Sym) or x.ref.node or x.ref.index:
            return None
        ls = self.by_name.get(x.ref.layer)
        if ls is None or not accept(ls.class_name) or self.onnx_names.get(ls.name) != x.onnx:
            return None
        readers = set(self.g.consumers.get(x.onnx, []))
        if x.onnx in self.g.outputs or not readers <= self.group:
            return None
        return ls

    def add_bias(self, x, b) -> Sym | None:
        """Fold ``x + b`` into the bias-less Dense behind ``x``; None when that is not possible."""
        ls = self._dense_of(x)
        if ls is None or ls.config.get("use_bias") or ls.config.get("activation") != "linear":
            return None
        units = ls.config["units"]
        b = np.asarray(b)
        rank = len(self.shape(x) or ())
        if b.dtype != ls.weights[0].dtype or b.size != units or b.shape[-1:] != (units,) or b.ndim > rank:
            return None
        ls.config["use_bias"] = True
        ls.weights.append(np.ascontiguousarray(b.reshape(units)))
        return self._rebind(ls, x)

    def activation(self, x: Sym, name: str) -> Sym:
        """A Keras activation by name: folded into the Dense / convolution before it when from the same scope."""
        ls = self._dense_of(x, has_activation)
        scope = self.scope()
        if ls is not None and ls.config.get("activation") == "linear" and scope and self.scopes.get(ls.name) == scope:
            ls.config["activation"] = name
            return self._rebind(ls, x)
        return self.layer("Activation", {"activation": name}, [x])

    def _rebind(self, ls: LayerSpec, x: Sym) -> Sym:
        out = self._out()
        self.onnx_names[ls.name] = out
        return Sym(x.ref, out)
