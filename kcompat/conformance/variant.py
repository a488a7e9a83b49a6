"""What one conformance case is, as data: the Keras layer (or Keras 3 op) under test, how it is built and
called, and what it is fed.

A ``Variant`` says everything ``build.py`` needs to make the case's model in real Keras, and it is
written into the case's manifest (``variant``, through ``to_json``) so a reader in any language sees how
the model came about; the model files themselves are the truth.

- ``build``: "layer" (a Functional model ``Input(s) -> [front layers] -> layer(<call>)``), "sequential"
  (``Sequential([Input, *front, layer])``: Keras then passes masks implicitly, as in a tf_keras file,
  instead of writing ``mask=`` into the graph), "eager" (Keras cannot put the layer in a model at all:
  the files hold it all the same and the expected output is Keras's eager call of the layer), or "op"
  (``keras.ops.<op>(<call>)``, a Keras 3 op node).
- ``call``: ``(args, kwargs)`` of the call with ``In(i)`` for input i (after its front layer); None:
  ``layer(x)`` for one input, ``layer([x0, x1, ...])`` for several, ``op(x0, x1, ...)`` for an op.
- ``front``: per input, None or a ``Sub`` layer applied first (``Embedding(mask_zero=True)`` makes the
  Keras mask a masked case needs).
- ``config`` values may be ``Sub`` (a layer given to the layer: Bidirectional's ``layer``, RNN's ``cell``).
- ``data``: one kind for every input or one per input: "normal" (standard normal float32), "wide" (normal
  * 4: crosses ReLU caps and clip points), "masked" (whole time steps set to 0.0, for Masking), "pos"
  (|normal| + 0.1), "ge1" (|normal| + 1), "unit" (uniform in (-0.9, 0.9)), "pixels" (whole numbers 0-255
  as float32), "special" (normal with nan, inf, -inf, 0.0 and -0.0 among the values), "bool",
  "int:K" (int32 in [0, K)), "ids:K" (int32 index sequences in [1, K) with 0 as padding: in the middle,
  at the end, a whole row), "<dtype>:L:H" (integers of dtype int8 / int32 / int64 / uint8 in [L, H)),
  "int64:wide" (small, negative and 19-digit int64: every hash length path).
- ``tol``: atol = rtol for this case when the default (1e-5, 1e-4) is too tight for float32 (dB values).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

BUILDS = ("layer", "sequential", "eager", "op")
BATCH = 3  # the batch of every case's inputs (an op case may name it: broadcast_to)


@dataclass(frozen=True)
class In:
    """Input ``index`` of the case (after its front layer) in a call template."""

    index: int


@dataclass(frozen=True)
class Sub:
    """A Keras layer ``<class_name>(**config)`` given to the layer under test or put in front of an input."""

    class_name: str
    config: dict = field(default_factory=dict)


def sub(class_name: str, **config) -> Sub:
    return Sub(class_name, config)


def call(*args, **kwargs) -> tuple:
    """A call template: positional arguments, then keyword arguments (``In(i)`` for the inputs)."""
    return args, kwargs


X, Y, Z, W = In(0), In(1), In(2), In(3)


@dataclass(frozen=True)
class Variant:
    """One case (see the module docstring for each field)."""

    config: dict = field(default_factory=dict)
    shapes: tuple = ((6,),)
    data: str | tuple = "normal"
    build: str = "layer"
    call: tuple | None = None
    front: tuple = ()
    op: str | None = None
    tol: float | None = None

    def kinds(self) -> tuple:
        """The data kind of each input."""
        return self.data if isinstance(self.data, tuple) else (self.data,) * len(self.shapes)

    def front_of(self, i: int) -> Sub | None:
        return self.front[i] if i < len(self.front) else None


def v(shapes, data: str | tuple = "normal", *, build: str = "layer", call: tuple | None = None,
      front: tuple | Sub | None = None, tol: float | None = None, **config) -> Variant:
    """A layer variant: input shape(s) (one tuple, or a list of tuples for several inputs) and the config."""
    shapes = tuple(tuple(s) for s in shapes) if isinstance(shapes, list) else (tuple(shapes),)
    fronts = () if front is None else (front,) if isinstance(front, Sub) else tuple(front)
    return Variant(config, shapes, data, build, call, fronts, None, tol)


def op(name: str, shapes, *args, data: str | tuple = "normal", **kwargs) -> Variant:
    """An op variant: ``keras.ops.<name>(*args, **kwargs)`` (default args: every input in order).
    ``name`` may be dotted (``linalg.det``), ``getitem`` (``x[key]``), or a class path
    ``keras.src.ops.<module>.<Class>`` (instantiated with no argument, then called)."""
    shapes = tuple(tuple(s) for s in shapes) if isinstance(shapes, list) else (tuple(shapes),)
    args = args or tuple(In(i) for i in range(len(shapes)))
    return Variant({}, shapes, data, "op", (args, kwargs), (), name, None)


# ------------------------------------------------------------------ the manifest's JSON form
def to_json(value: Any) -> Any:
    """A variant value as JSON: ``In(i)`` -> {"input": i}, ``Sub`` -> {"class_name", "config"}, a slice ->
    {"slice": [start, stop, step]}, ``...`` -> {"ellipsis": true}, an array -> {"array": [...], "dtype"}."""
    if isinstance(value, Variant):
        return {"build": value.build, "op": value.op, "config": to_json(value.config),
                "shapes": [list(s) for s in value.shapes], "data": to_json(value.data),
                "call": None if value.call is None else {"args": to_json(value.call[0]),
                                                         "kwargs": to_json(value.call[1])},
                "front": [to_json(value.front_of(i)) for i in range(len(value.shapes))], "tol": value.tol}
    if isinstance(value, In):
        return {"input": value.index}
    if isinstance(value, Sub):
        return {"class_name": value.class_name, "config": to_json(value.config)}
    if isinstance(value, slice):
        return {"slice": [value.start, value.stop, value.step]}
    if value is Ellipsis:
        return {"ellipsis": True}
    if isinstance(value, np.ndarray):
        return {"array": value.tolist(), "dtype": str(value.dtype)}
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, dict):
        return {str(k): to_json(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [to_json(v) for v in value]
    return value
