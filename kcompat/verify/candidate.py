"""Candidates: the implementation verify checks against the reference.

- ``KcompatCandidate``: kcompat's own NumPy layers (the default).
- ``AdapterCandidate``: the user's implementation behind a Python function, named on the command
  line (``--candidate PATH.py:FUNC`` or ``package.module:FUNC``) and called once per call node::

      FUNC(layer, weights, inputs) -> array | list[array]

  ``layer`` is ``{"name", "class_name", "config"}`` (the Keras config dict as stored in the file)
  plus ``"module"``, ``"node"`` (which call of the layer) and ``"args"`` / ``"kwargs"`` (the call's
  arguments, each input tensor replaced by ``InputSlot(i)``: op nodes such as ``x * 2`` keep their
  constants there) and ``"masks"``: one entry per input, None or the Keras mask the call gets with
  that input, as Keras passes ``mask=`` (or ``query_mask=``...): propagated from an
  Embedding(mask_zero=True) or a Masking layer, or given in the graph (then the mask is also one of
  the inputs); ``weights`` the layer's arrays in Keras order; ``inputs`` the input arrays in
  argument order (the reference's for the isolated run). ``NotImplementedError`` marks the layer
  "not_implemented"; any other exception marks it "error" with its message. Running the adapter
  is running the user's own code, by the user's choice; model files never run code.
- ``OutputsCandidate``: an implementation in any language, as an .npz of every call node's output
  on the inputs given (keys: reference.py; ``kcompat run MODEL -i X -o Y.npz --all-layers`` writes one).
  Compared chained only; a node absent from the file is "missing".
"""
from __future__ import annotations

import importlib
import importlib.util
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np

from ..errors import KcompatError
from ..masks import input_masks, mask_kwargs
from ..spec import TensorRef, map_nested, map_refs
from .reference import node_key, unflatten_outputs


class CandidateError(Exception):
    """The candidate gave something that is not an output (None, a string, ragged lists)."""


class Candidate:
    """Base: ``call(model, key, values)`` computes call node ``key`` from ``values`` (node key -> output)."""

    name = "candidate"
    precomputed = False  # True: outputs come from a file, there is nothing to call

    def call(self, model, key: tuple, values: Any, masks: dict | None = None) -> Any:
        """``masks``: node key -> Keras mask (Model.node_masks), for layers that use them."""
        raise NotImplementedError

    def output(self, key: str) -> Any:
        """A precomputed candidate's output for node key ``key`` (None if absent)."""
        return None


class KcompatCandidate(Candidate):
    """kcompat's own layers: ``Layer.call_node`` on the node's arguments."""

    name = "kcompat"

    def call(self, model, key: tuple, values: Any, masks: dict | None = None) -> Any:
        return model.call(key, values, dict(masks) if masks is not None else None)  # a copy: masks stay kcompat's


@dataclass(frozen=True)
class InputSlot:
    """Where input ``index`` goes in a call's ``args`` / ``kwargs`` (the adapter's ``layer`` dict)."""

    index: int

    def __repr__(self) -> str:
        return f"<input {self.index}>"


class AdapterCandidate(Candidate):
    """The user's function, called once per call node (see the module docstring)."""

    def __init__(self, func: Callable, name: str = "candidate"):
        self.func = func
        self.name = name
        self._layers: dict[tuple, dict] = {}
        self._model = None

    def layer_dict(self, model, key: tuple) -> dict:
        """What the adapter is told about call node ``key`` (built once per node of a model)."""
        if model is not self._model:
            self._layers, self._model = {}, model
        if key not in self._layers:
            ls = model.specs[key[0]]
            args, kwargs = [], {}
            if ls.nodes:
                counter = iter(range(1 << 30))
                node = ls.nodes[key[1]]
                args = map_refs(node.args, lambda ref: InputSlot(next(counter)))
                kwargs = map_refs(node.kwargs, lambda ref: InputSlot(next(counter)))
            self._layers[key] = {"name": ls.name, "class_name": ls.class_name, "config": ls.config,
                                 "module": ls.module, "node": key[1], "args": args, "kwargs": kwargs}
        return self._layers[key]

    def call(self, model, key: tuple, values: Any, masks: dict | None = None) -> Any:
        ls = model.specs[key[0]]
        inputs = [_tensor(values, ref) for ref in ls.nodes[key[1]].refs()] if ls.nodes else []
        layer = {**self.layer_dict(model, key), "masks": call_masks(model, key, values, masks)}
        return as_output(self.func(layer, list(ls.weights or []), inputs))


def call_masks(model, key: tuple, values: Any, masks: dict | None) -> list:
    """One entry per input of call node ``key``: the Keras mask its call gets with that input, or None
    (masks.py ``input_masks``); ``masks``: every node's Keras mask (Model.node_masks), None if none."""
    ls = model.specs[key[0]]
    if not ls.nodes:
        return []
    node = ls.nodes[key[1]]
    args, kwargs = model.node_args(key, values)
    arg_masks, kwarg_masks = model.node_args(key, masks if masks is not None else _NoMasks())
    return input_masks(model.layers[key[0]], node, args, kwargs, arg_masks, kwarg_masks, model.keras2)


class _NoMasks:
    """No node carries a mask (the model makes none): masks given in the graph still count."""

    def __getitem__(self, key: tuple) -> None:
        return None


class OutputsCandidate(Candidate):
    """Every call node's output read from an .npz (keys: reference.py ``node_key``, ``key[i]``)."""

    precomputed = True

    def __init__(self, path: str):
        from ..arrays import read_arrays
        self.path = str(path)
        self.name = f"outputs {Path(self.path).name}"
        self.outputs = unflatten_outputs(read_arrays(self.path))

    def output(self, key: str) -> Any:
        return self.outputs.get(key)

    def inputs_for(self, model) -> list[np.ndarray] | None:
        """The model inputs stored in the file (``--all-layers`` writes them), if all are there."""
        arrays = [self.outputs.get(node_key(name)) for name in model.input_names]
        return None if any(a is None for a in arrays) else arrays


def _tensor(values: Any, ref: TensorRef) -> Any:
    out = values[(ref.layer, ref.node)]
    return out[ref.index] if isinstance(out, list) else out


def as_output(value: Any) -> Any:
    """A candidate's return value as an array, or a list of arrays for a multi-output layer."""
    if value is None:
        raise CandidateError("returned None; expected an array or a list of arrays")
    if isinstance(value, (list, tuple)):
        if len(value) == 1:
            return _array(value[0])
        return [_array(v) for v in value]
    return _array(value)


def _array(value: Any) -> np.ndarray:
    try:
        array = np.asarray(value)
    except (ValueError, TypeError) as e:
        raise CandidateError(f"returned something that is not an array: {type(value).__name__} ({e})") from None
    if array.dtype.kind not in "biuf":
        raise CandidateError(f"returned an array of dtype {array.dtype}; expected numbers")
    return array


def kcompat_call(layer: dict, weights: list[np.ndarray], inputs: list[np.ndarray]) -> Any:
    """kcompat's own implementation with the adapter signature: an adapter can fall back to it
    for the layers it does not implement (``return kcompat_call(layer, weights, inputs)``)."""
    from ..layers import make_layer
    is_op = bool(layer.get("module")) and str(layer["module"]).startswith("keras.src.ops")
    impl = make_layer(layer["class_name"], layer["config"], layer["name"], is_op)

    def fill(obj: Any) -> Any:
        return map_nested(obj, InputSlot, lambda slot: inputs[slot.index])
    args = fill(layer.get("args")) or [inputs[0] if len(inputs) == 1 else inputs]
    kwargs = fill(layer.get("kwargs") or {})
    if any(m is not None for m in layer.get("masks") or []):  # the Keras masks the call gets, as mask= ...
        kwargs.update(mask_kwargs(impl, layer.get("args") or [], layer.get("kwargs") or {}, layer["masks"]))
    return impl.call_node(args, kwargs, weights)


def load_adapter(target: str) -> AdapterCandidate:
    """``PATH.py:FUNC`` or ``package.module:FUNC`` -> the user's function as a candidate."""
    where, sep, func_name = target.rpartition(":")
    if not sep or not where or not func_name.isidentifier():
        raise KcompatError(f"--candidate must be PATH.py:FUNC or package.module:FUNC. Received: {target!r}")
    if where.endswith(".py") or "/" in where or "\\" in where:
        path = Path(where)
        if not path.is_file():
            raise KcompatError(f"--candidate {target}: {where}: no such file")
        spec = importlib.util.spec_from_file_location(f"kcompat_candidate_{path.stem}", path)
        module = importlib.util.module_from_spec(spec)
        folder = str(path.resolve().parent)
        if folder not in sys.path:  # the adapter may import modules beside it
            sys.path.insert(0, folder)
        loader: Callable = lambda: spec.loader.exec_module(module)  # noqa: E731
    else:
        module = None
        loader = lambda: importlib.import_module(where)  # noqa: E731
    try:
        loaded = loader()
    except Exception as e:  # the user's module failed to import: their code, their message
        raise KcompatError(f"--candidate {target}: importing {where} failed: {type(e).__name__}: {e}") from None
    module = module if module is not None else loaded
    func = getattr(module, func_name, None)
    if not callable(func):
        raise KcompatError(f"--candidate {target}: {where} has no function {func_name!r}")
    return AdapterCandidate(func, f"{Path(where).name}:{func_name}")
