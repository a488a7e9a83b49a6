"""Keras masks in the ONNX export: which mask each call node receives, and which its outputs carry,
as ONNX bool tensors beside the values.

The rules are kcompat/masks.py's (what Model.run_all applies to arrays): ``mask_arguments`` says which
mask parameters of a call Keras fills (``mask``, MultiHeadAttention's ``query_mask``...) and a layer's
``compute_mask`` gives its output masks. Here they run on ONNX tensor names: most compute_mask methods
only pass a mask along (or drop it) and run as they are; the ones that compute on values (Embedding's
``x != 0``, Masking, the merging layers) have an ONNX form registered with ``@mask_exporter`` next to
their exporter. A Keras 3 Functional file carries its masks as op nodes already (``mask=`` call
arguments, which win); mask nodes nothing reads are dropped at the end (``prune``).
"""
from __future__ import annotations

from collections import defaultdict
from typing import Any

import numpy as np

from ....errors import UnsupportedError
from ....layers.base import leaves
from ....masks import mask_arguments
from .registry import MASKS


class MaskFlow:
    """Masks of every call node of one export (a no-op for a model where no layer makes a mask)."""

    def __init__(self, model):
        self.model = model
        self.on = model.uses_masks
        self.keras2 = model.keras2
        self.masks: dict = defaultdict(lambda: None)  # node key -> mask name, list of them, or None
        self.made: list = []  # ONNX nodes made for masks (dropped if nothing reads them)

    def arguments(self, key: tuple, layer, kwargs: dict, tensors: dict) -> tuple[dict, Any]:
        """(the call's kwargs with the masks Keras passes filled in, the mask compute_mask is given)."""
        if not self.on:
            return kwargs, None
        ph = np.zeros(0, np.float32)  # a tensor placeholder: mask_arguments tells tensors from options
        shapes = {k: [ph] * len(v) if isinstance(v, list) else ph for k, v in tensors.items()}
        args_ph, kwargs_ph = self.model.node_args(key, shapes)
        arg_masks, kwarg_masks = self.model.node_args(key, self.masks)
        filled, previous = mask_arguments(layer, args_ph, kwargs_ph, arg_masks, kwarg_masks, self.keras2)
        out = dict(kwargs)
        for param, value in filled.items():
            if kwargs_ph.get(param) is None and value is not None:
                out[param] = value  # ONNX mask name(s)
        if kwargs.get("mask") is not None:
            previous = kwargs["mask"]  # given in the graph: its ONNX name
        return out, previous

    def outputs(self, ctx, key: tuple, layer, inputs: list, kwargs: dict, previous: Any, out: Any) -> None:
        """Record the mask(s) of call node ``key``'s output(s)."""
        if not self.on or not layer.masking(self.keras2):
            return
        first = inputs[0] if inputs else kwargs.get(layer.call_params[0])
        start = len(ctx.nodes)
        fn = MASKS.get(layer.class_name)
        mask = fn(ctx, layer, first, previous, self.keras2) if fn else layer.compute_mask(first, previous, self.keras2)
        self.made += ctx.nodes[start:]
        flat = leaves(mask)
        if any(m is not None and not isinstance(m, str) for m in flat):
            raise UnsupportedError(f"layer '{layer.name}' ({layer.class_name}): its Keras mask has no ONNX form")
        self.masks[key] = [flat[i] if i < len(flat) else None for i in range(len(out))] if isinstance(out, list) \
            else flat[0]

    def prune(self, nodes: list, keep: set) -> list:
        """``nodes`` without the mask nodes whose outputs nothing reads."""
        made = {id(n) for n in self.made}
        while True:
            read = {i for n in nodes for i in n.input} | keep
            dead = {id(n) for n in nodes if id(n) in made and not set(n.output) & read}
            if not dead:
                return nodes
            nodes = [n for n in nodes if id(n) not in dead]


def as_bool_mask(ctx, mask: str) -> str:
    """A mask tensor as bool (Keras's masks are bool; a float one is nonzero-true)."""
    from onnx import TensorProto
    return mask if ctx.dtype(mask) == "bool" else ctx.op("Cast", mask, to=TensorProto.BOOL)
