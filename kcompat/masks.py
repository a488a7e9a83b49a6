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

from typing import Any

import numpy as np

from .layers.base import Layer
from .layers.base import leaves as flatten


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


def output_masks(layer: Layer, args: list, kwargs: dict, previous: Any, outputs: Any, keras2: bool = False) -> Any:
    """The mask of each output (a list for a multi-output layer), or None: Keras's _set_mask_metadata."""
    if not layer.masking(keras2):
        return None
    first = args[0] if args else kwargs.get(layer.call_params[0])
    flat = flatten(layer.compute_mask(first, previous, keras2))
    if isinstance(outputs, list):
        return [flat[i] if i < len(flat) else None for i in range(len(outputs))]
    return flat[0]
