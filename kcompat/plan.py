"""The predict plan: the model's spec with padding, BatchNormalization and activation layers folded
into the convolution (or Dense) next to them.

``Model.predict`` runs this plan; ``run_all`` / ``layer_outputs`` (what verify compares layer by
layer) run the spec as written. Each fold happens only where one layer's output feeds nothing but
the other (one call node each, one tensor between them, not a model output):

- ZeroPadding then a 'valid' convolution, when the pads are exactly the convolution's TF 'same'
  pads for that input size (MobileNet's ``correct_pad``): the convolution becomes 'same' and reads
  the unpadded input (the padding copy is gone; same values);
- a BatchNormalization after a Conv* / Dense with a linear activation: at inference it is
  ``y * scale + shift`` per channel, so it becomes ``kernel * scale`` and ``bias * scale + shift``
  (the layer gains a bias if it had none); scale and shift computed in float64, then in float32;
- an activation layer (Activation, ReLU / ReLU6) after a layer whose own activation is linear and
  applied last (Conv*, Dense, and Add: a residual sum then ReLU): it becomes that layer's activation,
  run in place on each output block.

Folding BatchNormalization moves results by float32 rounding only (a few ULPs); the other two folds
compute the same values. Reference: the same folds in ONNX Runtime's graph optimizers
(onnxruntime/core/optimizer/conv_bn_fusion.cc, conv_activation_fusion.cc, pad_fusion.cc).
"""
from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np

from .layers import Layer, make_layer
from .spec import LayerSpec, ModelSpec, Node, TensorRef, map_refs

NodeKey = tuple  # (layer name, node index)


def readers(spec: ModelSpec) -> dict[NodeKey, list[NodeKey]]:
    """For each call node, the call nodes that read it (once per reading node)."""
    out: dict[NodeKey, list[NodeKey]] = {}
    for ls in spec.layers:
        for i, node in enumerate(ls.nodes):
            for key in {(r.layer, r.node) for r in node.refs()}:
                out.setdefault(key, []).append((ls.name, i))
    return out


class _Folder:
    """Walks the spec once in topological order, folding each layer into its neighbour where it can."""

    def __init__(self, model: Any):
        self.model, self.spec = model, model.graph  # the flat graph (a nested model's layers as outer/inner)
        self.read_by = readers(self.spec)
        self.outputs = {(r.layer, r.node) for r in self.spec.outputs}
        self.by_name = {ls.name: ls for ls in self.spec.layers}
        self.merged: dict[str, str] = {}  # folded layer -> the layer that now computes its output
        self.bypassed: dict[str, TensorRef] = {}  # folded padding layer -> the tensor it padded
        self.changed: dict[str, LayerSpec] = {}  # layer -> its new spec (config, weights)

    def current(self, name: str) -> tuple[LayerSpec, Layer]:
        """A layer's spec and built layer as folded so far."""
        ls = self.changed.get(name, self.by_name[name])
        layer = self.model.layers[name] if name not in self.changed else make_layer(ls.class_name, ls.config, name,
                                                                                    ls.is_op)
        return ls, layer

    def sole_reader(self, name: str) -> LayerSpec | None:
        """The layer that alone reads node 0 of ``name``, through its only call, with that tensor as its only input."""
        key = (name, 0)
        if key in self.outputs or len(self.read_by.get(key, [])) != 1:
            return None
        reader, node = self.read_by[key][0]
        ls = self.by_name[reader]
        if node != 0 or len(ls.nodes) != 1 or ls.nodes[0].refs() != [TensorRef(name, 0, 0)]:
            return None
        return ls

    def fold_padding(self, ls: LayerSpec, layer: Layer) -> None:
        """ZeroPadding + 'valid' conv whose pads are exactly its 'same' pads -> a 'same' conv."""
        pads = layer.as_zero_padding()
        nxt = self.sole_reader(ls.name) if pads is not None and len(ls.nodes) == 1 else None
        if nxt is None or len(ls.nodes[0].refs()) != 1:
            return
        source = ls.nodes[0].refs()[0]
        conv_spec, conv = self.current(nxt.name)
        config = conv.same_padding_config(pads, layer.data_format, self.model.shapes[(source.layer, source.node)])
        if config is not None:
            self.bypassed[ls.name] = source
            self.changed[nxt.name] = dataclasses.replace(conv_spec, config=config)

    def fold_followers(self, ls: LayerSpec) -> None:
        """BatchNormalization, then an activation, after ``ls`` -> into ``ls``."""
        ls, layer = self.current(ls.name)
        weights, tail = list(ls.weights), ls.name
        while (nxt := self.sole_reader(tail)) is not None:
            shape = self.model.shapes[(tail, 0)]
            follower = self.model.layers[nxt.name]
            affine = follower.as_affine(shape, nxt.weights or [])
            activation = follower.as_activation()
            if affine is not None:
                axis, scale, shift = affine  # float64; the products are rounded to the weights' dtype once
                dtype = ls.weights[0].dtype if ls.weights else np.dtype(np.float32)
                folded = layer.fold_affine(weights, axis, len(shape), scale.astype(dtype), shift.astype(dtype))
                if folded is None:
                    return
                weights = [np.asarray(w, dtype) for w in folded]
                config = dict(ls.config, use_bias=True)
            elif activation is not None and getattr(layer, "activation_name", None) == "linear":  # WithActivation
                config = dict(ls.config, activation=activation)
            else:
                return
            ls = self.changed[ls.name] = dataclasses.replace(ls, config=config, weights=weights)
            layer = make_layer(ls.class_name, config, ls.name, ls.is_op)
            self.merged[nxt.name], tail = ls.name, nxt.name

    def remap(self, ref: TensorRef) -> TensorRef:
        if ref.layer in self.bypassed:
            return self.remap(self.bypassed[ref.layer])  # the padded tensor may itself be a folded layer's
        return TensorRef(self.merged[ref.layer], 0, ref.index) if ref.layer in self.merged else ref

    def spec_out(self) -> ModelSpec:
        if not self.merged and not self.bypassed:
            return self.spec
        gone = set(self.merged) | set(self.bypassed)
        layers = [dataclasses.replace(self.changed.get(ls.name, ls), nodes=[
            Node(map_refs(n.args, self.remap), map_refs(n.kwargs, self.remap)) for n in ls.nodes])
            for ls in self.spec.layers if ls.name not in gone]
        return dataclasses.replace(self.spec, layers=layers, inputs=list(self.spec.inputs),
                                   outputs=[self.remap(r) for r in self.spec.outputs])


def fused_spec(model: Any) -> ModelSpec:
    """``model.graph`` (``model.spec`` flattened) with the folds above applied (the same object when nothing folds).

    ``model`` is a kcompat Model with weights: its ``spec``, built ``layers`` and ``shapes`` are read.
    """
    folder = _Folder(model)
    for ls in model.graph.layers:
        if ls.name in folder.merged or ls.name in folder.bypassed or len(ls.nodes) != 1:
            continue
        folder.fold_padding(ls, model.layers[ls.name])
        if ls.weights is not None:
            folder.fold_followers(ls)
    return folder.spec_out()
