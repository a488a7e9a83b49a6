"""Keras masks: which call argument receives which mask, and which mask each output carries.

Model.run_all keeps a mask beside each node's value (only when some layer ``creates_mask``) and
asks this module, per call node, for the call's mask arguments and the output masks.

Keras 3 (keras/src/layers/layer.py ``Layer.__call__`` step 6, ``_set_mask_metadata``):
- A layer whose call() has a ``mask`` parameter receives there the mask(s) of its ONLY tensor
  argument (a list of masks for a list input). With several tensor arguments (an RNN given
  ``initial_state`` tensors) only ``<argument>_mask`` parameters are filled (MultiHeadAttention's
  ``query_mask`` / ``value_mask`` / ``key_mask``), so an RNN then runs unmasked. A ``mask=``
  given in the graph is kept.
- The previous mask is that ``mask`` argument when set, else the first argument's mask(s).
- A layer that ``supports_masking`` gives its outputs ``compute_mask(first argument, previous
  mask)``, flattened and matched to the flattened outputs; any other layer drops the mask (Keras 3
  warns "will therefore destroy the mask information"). Keras op nodes (``x * 2``) carry none.
tf_keras (tf_keras/src/engine/base_layer.py ``_get_input_masks``): the ``mask`` parameter receives
the mask(s) of the first argument, also when it is the list ``[sequences, *initial_state]`` an RNN
with initial states is called on; ``<argument>_mask`` parameters are never filled; and a few layers
differ in ``supports_masking`` (``Layer.keras2_supports_masking``).
"""
from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np

from .errors import UnsupportedError
from .layers.base import Layer, make_layer
from .layers.base import leaves as flatten
from .spec import LayerSpec, ModelSpec, Node, TensorRef, map_refs


def _is_tensor(value: Any) -> bool:
    """A tensor argument in Keras's sense: an array, or a non-empty nest of arrays and Nones."""
    if isinstance(value, np.ndarray):
        return True
    if isinstance(value, (list, tuple)) and value:
        leaves = flatten(value)
        return all(v is None or isinstance(v, np.ndarray) for v in leaves) and any(v is not None for v in leaves)
    return False


def _any_mask(masks: Any) -> bool:
    return any(m is not None for m in flatten(masks))


def keras2_rules(spec: ModelSpec) -> bool:
    """True for a model written by Keras 2 / tf.keras (``keras_version`` 1.x or 2.x): tf_keras's mask rules."""
    return str(spec.keras_version or "").startswith(("1.", "2."))


def mask_arguments(layer: Layer, args: list, kwargs: dict, arg_masks: list, kwarg_masks: dict,
                   keras2: bool = False) -> tuple[dict, Any]:
    """(kwargs with the mask arguments Keras fills in, the previous mask) for one call node.

    ``arg_masks`` / ``kwarg_masks`` mirror ``args`` / ``kwargs`` with each tensor's mask (or None).
    """
    params = layer.call_params
    first = arg_masks[0] if arg_masks else kwarg_masks.get(params[0])
    out = dict(kwargs)
    if keras2:
        if "mask" in params and kwargs.get("mask") is None and _any_mask(first):
            out["mask"] = first
    else:
        bound = dict(zip(params, args)) | kwargs
        masks_of = dict(zip(params, arg_masks)) | kwarg_masks
        tensors = [name for name, value in bound.items() if _is_tensor(value)]
        if len(tensors) == 1:
            wanted = {"mask": tensors[0]}
        else:
            wanted = {f"{name}_mask": name for name in tensors}
        for param, source in wanted.items():
            if param in params and bound.get(param) is None and _any_mask(masks_of.get(source)):
                out[param] = masks_of[source]
    previous = out.get("mask") if out.get("mask") is not None else first
    return out, previous


class _Slot:
    """Input ``index`` of a call node, standing in for its tensor while masks are matched to inputs."""

    def __init__(self, index: int):
        self.index = index


def _slots(node: Node) -> tuple[list, dict]:
    """The node's args / kwargs with each tensor replaced by its ``_Slot`` (``Node.refs`` order)."""
    counter = iter(range(1 << 30))
    args = map_refs(node.args, lambda ref: _Slot(next(counter)))
    return args, map_refs(node.kwargs, lambda ref: _Slot(next(counter)))


def _masked_argument(param: str, params: tuple) -> str | None:
    """The argument a mask parameter masks: ``mask`` the first, ``<arg>_mask`` <arg>; None for others."""
    if param == "mask":
        return params[0] if params else None
    if param.endswith("_mask") and param[:-len("_mask")] in params:
        return param[:-len("_mask")]
    return None


def input_masks(layer: Layer, node: Node, args: list, kwargs: dict, arg_masks: list, kwarg_masks: dict,
                keras2: bool = False) -> list:
    """The mask Keras's call of ``node`` gets with each of its input tensors (``Node.refs`` order), None
    where it gets none: the mask arguments ``mask_arguments`` fills from propagated masks, or that the
    graph gives (Keras 3 writes ``mask=`` into a Functional's graph), matched to the tensors of the argument
    they mask (``mask``: the first argument, a list of masks for a list; ``<arg>_mask``: <arg>).
    ``args`` / ``kwargs`` hold the node's values, ``arg_masks`` / ``kwarg_masks`` their masks, as for
    ``mask_arguments``."""
    filled, _ = mask_arguments(layer, args, kwargs, arg_masks, kwarg_masks, keras2)
    slot_args, slot_kwargs = _slots(node)
    bound = dict(zip(layer.call_params, slot_args)) | slot_kwargs
    out: list = [None] * len(node.refs())
    for param, value in filled.items():
        source = _masked_argument(param, layer.call_params)
        if source is None or source not in bound or value is None:
            continue
        targets = [s for s in flatten(bound[source]) if isinstance(s, _Slot)]
        for slot, mask in zip(targets, flatten(value)):
            if isinstance(mask, np.ndarray):
                out[slot.index] = mask
    return out


def mask_kwargs(layer: Layer, node_args: list, node_kwargs: dict, masks: list) -> dict:
    """The inverse of ``input_masks``: the mask keyword arguments (``mask`` / ``<arg>_mask``) a call takes,
    from one mask (or None) per input; ``node_args`` / ``node_kwargs`` mark input i by any object with
    an int ``.index`` = i. A mask argument the call already has is kept."""
    bound = dict(zip(layer.call_params, node_args)) | node_kwargs
    out = {}
    for param in layer.call_params:
        source = _masked_argument(param, layer.call_params)
        if source is None or source not in bound or node_kwargs.get(param) is not None:
            continue
        argument = bound[source]
        found = [masks[i] if isinstance(i, int) and 0 <= i < len(masks) else None
                 for i in (getattr(s, "index", None) for s in flatten(argument))]
        if any(m is not None for m in found):
            out[param] = found if isinstance(argument, (list, tuple)) else found[0]
    return out


def output_masks(layer: Layer, args: list, kwargs: dict, previous: Any, outputs: Any, keras2: bool = False) -> Any:
    """The mask of each output (a list for a multi-output layer), or None: Keras's _set_mask_metadata."""
    if not layer.masking(keras2):
        return None
    first = args[0] if args else kwargs.get(layer.call_params[0])
    flat = flatten(layer.compute_mask(first, previous, keras2))
    if isinstance(outputs, list):
        return [flat[i] if i < len(flat) else None for i in range(len(outputs))]
    return flat[0]


# ------------------------------------------------------------- Keras 2 models written for Keras 3
def keras3_explicit_masks(spec: ModelSpec, shapes: dict) -> tuple[ModelSpec, dict]:
    """A tf_keras model about to be written as Keras 3, with the masks Keras 3 would not pass made explicit;
    and ``shapes`` (TensorRef -> shape) with the shapes of the mask tensors added.

    tf_keras masks an RNN called with initial states; Keras 3 does not (see the module docstring), so
    the call gets ``mask=`` computed as Keras 3 would write it: ``not_equal(indices, 0)`` for an
    Embedding with mask_zero, ``any(not_equal(x, mask_value), axis=-1)`` for Masking, traced back through
    layers that pass their mask on. A mask kcompat cannot trace that way is refused by name.
    """
    if not keras2_rules(spec) or spec.sequential:
        return spec, shapes
    specs = {ls.name: ls for ls in spec.layers}
    layers = {ls.name: make_layer(ls.class_name, ls.config, ls.name, ls.is_op) for ls in spec.layers}
    added: list[LayerSpec] = []
    new = {}
    for ls in spec.layers:
        for i, node in enumerate(ls.nodes):
            layer = layers[ls.name]
            if "initial_state" not in layer.call_params or node.kwargs.get("mask") is not None:
                continue
            if not node.args or node.kwargs.get("initial_state") is None:
                continue
            source = _mask_source(node.args[0], specs, layers)
            if source is None:
                continue
            nodes = new.setdefault(ls.name, list(ls.nodes))
            nodes[i] = Node(args=node.args, kwargs={**node.kwargs, "mask": _mask_ops(source, specs, added, shapes)})
    if not new:
        return spec, shapes
    layers_out = [dataclasses.replace(ls, nodes=new.get(ls.name, ls.nodes)) for ls in spec.layers]
    return dataclasses.replace(spec, layers=layers_out + added), shapes


def _mask_source(ref: Any, specs: dict, layers: dict) -> Any:
    """(mask-making LayerSpec, its node index) behind tensor ``ref`` in Keras 2, None if it carries no mask."""
    while isinstance(ref, TensorRef):
        ls, layer = specs[ref.layer], layers[ref.layer]
        node = ls.nodes[ref.node] if ls.nodes else None
        if layer.creates_mask and layer.class_name in ("Embedding", "Masking"):
            return ls, ref.node
        if not layer.masking(True) or node is None or not node.args:
            return None
        passes = type(layer).compute_mask is Layer.compute_mask or (
            ref.index == 0 and getattr(layer, "return_sequences", False))
        if not passes:
            raise UnsupportedError(f"layer '{ls.name}' ({ls.class_name}) changes the mask on the way to an RNN "
                                   f"given initial states; tf_keras masks that RNN, Keras 3 would not, and kcompat "
                                   f"cannot write that mask for Keras 3")
        ref = node.args[0]
    return None


def _mask_ops(source: tuple, specs: dict, added: list, shapes: dict) -> TensorRef:
    """The op nodes computing ``source``'s mask, added once (their shapes into ``shapes``); the mask's TensorRef."""
    ls, node_index = source
    name = f"{ls.name}_mask" if node_index == 0 else f"{ls.name}_mask_{node_index}"
    if name in specs or any(a.name == name for a in added):
        return TensorRef(name)
    inputs = ls.nodes[node_index].args[0]
    shape = shapes.get(inputs)
    numpy_ops = "keras.src.ops.numpy"
    if ls.class_name == "Embedding":
        added.append(LayerSpec(name, "NotEqual", {"name": name}, [Node(args=[inputs, 0])], [], numpy_ops))
        shapes[TensorRef(name)] = shape  # (N, T) indices -> (N, T)
        return TensorRef(name)
    value = ls.config.get("mask_value", 0.0)
    added.append(LayerSpec(f"{name}_values", "NotEqual", {"name": f"{name}_values"}, [Node(args=[inputs, value])],
                           [], numpy_ops))
    added.append(LayerSpec(name, "Any", {"name": name, "axis": -1, "keepdims": False},
                           [Node(args=[TensorRef(f"{name}_values")])], [], numpy_ops))
    shapes[TensorRef(f"{name}_values")] = shape
    shapes[TensorRef(name)] = None if shape is None else shape[:-1]  # (N, T, F) -> (N, T)
    return TensorRef(name)
