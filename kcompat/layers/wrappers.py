"""Layer wrappers: Bidirectional (two recurrent layers, merged), TimeDistributed (a layer per timestep) and
SpectralNormalization (the wrapped layer as it is at inference).

References: keras/src/layers/rnn/bidirectional.py, time_distributed.py, keras/src/layers/core/wrapper.py;
tf_keras/src/layers/rnn/bidirectional.py (the backward copy flips ``go_backwards``; configs have no
``backward_layer`` unless one was given) and time_distributed.py (its ``compute_mask``);
keras/src/layers/normalization/spectral_normalization.py (and tf_keras's).

The wrapped layers are built through the layer registry from their nested configs
(``{"class_name", "config"}``); their weights are the wrapper's, named by Keras's variable paths
(``forward_lstm/lstm_cell/kernel``, ``dense/kernel``) and saved by Keras 3 under the wrapper's
attributes (``forward_layer/cell``, ``backward_layer/cell``, ``layer``).
"""
from __future__ import annotations

import copy
import dataclasses
from typing import Any

import numpy as np

from ..errors import ShapeError, UnsupportedError
from .base import Layer, Weight, first_mask, fmt_shape, join_path, make_layer, register
from .recurrent import Recurrent, initial_state_of

MERGE_MODES = ("concat", "sum", "mul", "ave", None)


def inner_layer(entry: Any, where: str, name: str | None = None, **overrides) -> Layer:
    """A wrapped layer from its nested config, through the registry."""
    if not isinstance(entry, dict) or not isinstance(entry.get("config"), dict):
        raise UnsupportedError(f"{where}: expected a nested layer config with 'class_name' and 'config'. "
                               f"Received: {entry!r}")
    config = {**copy.deepcopy(entry["config"]), **overrides}
    name = name or config.get("name") or entry.get("class_name")
    config["name"] = name
    try:
        return make_layer(str(entry.get("class_name")), config, name)
    except UnsupportedError as e:
        raise UnsupportedError(f"{where}: {e}") from None


def renamed(weights: list[Weight], scope: str, owner: str) -> list[Weight]:
    """A wrapped layer's weights as the wrapper's: variable path under ``scope``, saved under ``owner``."""
    return [dataclasses.replace(w, name=join_path(scope, w.name), group=join_path(owner, w.group)) for w in weights]


def nested_keras3(entry: Any) -> Any:
    """A nested layer config with its class's Keras 3 translation applied."""
    if not isinstance(entry, dict) or not isinstance(entry.get("config"), dict):
        return entry
    from .base import REGISTRY
    cls = REGISTRY.get(entry.get("class_name"))
    return {**entry, "config": cls.keras3_config(entry["config"]) if cls else entry["config"]}


def _removeprefix(name: str, prefix: str) -> str:
    return name[len(prefix):] if name.startswith(prefix) else name


@register("Bidirectional")
class Bidirectional(Layer):
    """The wrapped RNN forwards and a copy backwards over the same input; outputs merged by merge_mode."""

    supports_masking = True
    call_params = ("sequences", "initial_state", "mask", "training")

    def __init__(self, config, name=None):
        super().__init__(config, name)
        self.merge_mode = config.get("merge_mode", "concat")
        if self.merge_mode not in MERGE_MODES:
            raise self.fail(f"'merge_mode' must be one of {list(MERGE_MODES)}. Received: merge_mode={self.merge_mode!r}")
        where = f"layer '{self.name}' (Bidirectional)"
        entry = config.get("layer")
        base = entry.get("config", {}).get("name", "rnn") if isinstance(entry, dict) else "rnn"
        self.forward = inner_layer(entry, where, f"forward_{_removeprefix(str(base), 'forward_')}")
        back = config.get("backward_layer")
        if back is None:  # tf_keras flips go_backwards; Keras 3 sets it (and refuses a backwards layer)
            self.backward = inner_layer(entry, where, f"backward_{_removeprefix(str(base), 'backward_')}",
                                        go_backwards=not getattr(self.forward, "go_backwards", False))
        else:
            self.backward = inner_layer(back, where)
        for layer in (self.forward, self.backward):
            if not isinstance(layer, Recurrent):
                raise UnsupportedError(f"{where}: wraps {layer.class_name}; kcompat runs Bidirectional over "
                                       f"recurrent layers (SimpleRNN, LSTM, GRU, RNN, ConvLSTM*)")
            layer.zero_output_for_mask = layer.return_sequences  # Keras forces it on both directions
        if self.forward.go_backwards == self.backward.go_backwards:
            raise self.fail("the forward and backward layers must have different 'go_backwards'. Received: "
                            f"go_backwards={self.forward.go_backwards} for both")
        for key in ("stateful", "return_sequences", "return_state"):
            if getattr(self.forward, key) != getattr(self.backward, key):
                raise self.fail(f"the forward and backward layers must agree on '{key}'. Received: "
                                f"{getattr(self.forward, key)} and {getattr(self.backward, key)}")
        self.return_sequences = self.forward.return_sequences
        self.return_state = self.forward.return_state

    @classmethod
    def keras3_config(cls, config):
        """Both layers' configs, as Keras 3 writes them. A tf_keras config names only ``layer``; Keras 3 would
        then build the backward copy by serializing that layer a second time while loading, and its
        id()-keyed object sharing (keras/src/saving/serialization_lib.py) can mistake a new object for a
        freed one at the same address: now and then a "both go_backwards" error. So the copy is written."""
        config = dict(super().keras3_config(config))
        entry = config.get("layer")
        if config.get("backward_layer") is None and isinstance(entry, dict) and isinstance(entry.get("config"), dict):
            back = copy.deepcopy(entry)
            name = str(back["config"].get("name", "rnn"))
            back["config"]["name"] = f"backward_{_removeprefix(name, 'backward_')}"
            back["config"]["go_backwards"] = not back["config"].get("go_backwards", False)
            config["backward_layer"] = back
        for key in ("layer", "backward_layer"):
            if config.get(key) is not None:
                config[key] = nested_keras3(config[key])
        return config

    # -- weights and shapes
    def weights(self, input_shape):
        return (renamed(self.forward.weights(input_shape), self.forward.name, "forward_layer")
                + renamed(self.backward.weights(input_shape), self.backward.name, "backward_layer"))

    def weight_groups(self):
        return ([join_path("forward_layer", g) for g in self.forward.weight_groups()]
                + [join_path("backward_layer", g) for g in self.backward.weight_groups()])

    def output_shape(self, input_shape):
        out = self.forward.output_shape(input_shape)
        states = []
        if self.return_state:
            out, states = out[0], out[1:]
        if self.merge_mode == "concat":
            out = (*out[:-1], None if out[-1] is None else 2 * out[-1])
        outs = [out, out] if self.merge_mode is None else [out]
        if self.return_state:
            return outs + states + states
        return outs if self.merge_mode is None else out

    def compute_mask(self, inputs, mask, keras2=False):
        mask = first_mask(mask)
        if self.return_sequences:
            return [mask, mask] if self.merge_mode is None else mask
        return [None, None] if self.merge_mode is None else None

    # -- the call
    def call_node(self, args, kwargs, weights):
        x, initial = args[0], initial_state_of(args, kwargs)
        fwd_init = bwd_init = None
        if initial is not None:
            initial = list(initial) if isinstance(initial, (list, tuple)) else [initial]
            half = len(initial) // 2
            fwd_init, bwd_init = initial[:half], initial[half:]
        mask = first_mask(kwargs.get("mask"))
        n = len(self.forward.weights(np.shape(x)))  # the forward layer's weights come first
        y = self.forward.run(x, fwd_init, mask, weights[:n])
        y_rev = self.backward.run(x, bwd_init, mask, weights[n:])
        states = []
        if self.return_state:
            states = list(y[1:]) + list(y_rev[1:])
            y, y_rev = y[0], y_rev[0]
        if self.return_sequences:
            y_rev = np.flip(y_rev, axis=0 if self.forward.time_major else 1)  # back in input order
        if self.merge_mode == "concat":
            out = [np.concatenate([y, y_rev], axis=-1)]  # (..., U) + (..., U) -> (..., 2U)
        elif self.merge_mode == "sum":
            out = [y + y_rev]
        elif self.merge_mode == "ave":
            out = [(y + y_rev) / np.asarray(2, y.dtype)]
        elif self.merge_mode == "mul":
            out = [y * y_rev]
        else:
            out = [y, y_rev]
        out += states
        return out if len(out) > 1 else out[0]

    def explain(self, input_shape, output_shape):
        total = sum(self.param_count(input_shape))
        merge = {"concat": "concatenated (2x the units)", "sum": "summed", "mul": "multiplied", "ave": "averaged",
                 None: "returned as two outputs"}[self.merge_mode]
        return (f"{self.forward.class_name} forwards and a copy backwards over the same sequences, outputs {merge}; "
                f"two weight sets = {total} params")


@register("TimeDistributed")
class TimeDistributed(Layer):
    """The wrapped layer applied to every timestep: (N, T, ...) runs as (N*T, ...) through it."""

    supports_masking = True
    call_params = ("inputs", "training", "mask")

    def __init__(self, config, name=None):
        super().__init__(config, name)
        self.layer = inner_layer(config.get("layer"), f"layer '{self.name}' (TimeDistributed)")
        self.creates_mask = self.layer.creates_mask

    @classmethod
    def keras3_config(cls, config):
        config = dict(super().keras3_config(config))
        config["layer"] = nested_keras3(config.get("layer"))
        return config

    def child_shape(self, input_shape) -> tuple:
        if len(input_shape) < 3:
            raise ShapeError(f"layer '{self.name}' (TimeDistributed): expected an input of rank >= 3 (batch, "
                             f"timesteps, ...). Received: input_shape={fmt_shape(tuple(input_shape))}")
        return (input_shape[0], *input_shape[2:])

    def weights(self, input_shape):
        return renamed(self.layer.weights(self.child_shape(input_shape)), self.layer.name, "layer")

    def weight_groups(self):
        return [join_path("layer", g) for g in self.layer.weight_groups()]

    def random_weight(self, w, rng):
        inner = getattr(self.layer, "random_weight", None)
        if inner is None:
            return None
        return inner(dataclasses.replace(w, name=_removeprefix(w.name, self.layer.name + "/")), rng)

    def output_shape(self, input_shape):
        out = self.layer.output_shape(self.child_shape(input_shape))
        if isinstance(out, list):
            raise UnsupportedError(f"layer '{self.name}' (TimeDistributed): the wrapped layer has several outputs")
        return (out[0], input_shape[1], *out[1:])

    def call_node(self, args, kwargs, weights):
        x = args[0]
        n, t = x.shape[:2]
        inner_kwargs = {}
        mask = kwargs.get("mask")
        if mask is not None and "mask" in self.layer.call_params:
            inner_kwargs["mask"] = np.reshape(mask, (n * t, *np.shape(mask)[2:]))  # (N, T, ...) -> (N*T, ...)
        y = self.layer.call_node([x.reshape(n * t, *x.shape[2:])], inner_kwargs, weights)  # (N*T, ...) -> (N*T, ...)
        return y.reshape(n, t, *y.shape[1:])  # (N*T, ...) -> (N, T, ...)

    def compute_mask(self, inputs, mask, keras2=False):
        if not keras2:
            return mask  # Keras 3: the input mask, whatever the wrapped layer does
        n, t = inputs.shape[:2]  # tf_keras: the wrapped layer's mask of the (N*T, ...) batch, reshaped back
        inner_mask = None if mask is None else np.reshape(mask, (n * t, *np.shape(mask)[2:]))
        out = None
        if self.layer.masking(keras2):
            out = self.layer.compute_mask(inputs.reshape(n * t, *inputs.shape[2:]), inner_mask, keras2)
        if out is not None:
            return np.reshape(out, (n, t, *np.shape(out)[1:]))  # (N*T, ...) -> (N, T, ...)
        if mask is None or np.ndim(mask) == 2:
            return mask
        return np.any(mask, axis=tuple(range(2, np.ndim(mask))))  # (N, T, ...) -> (N, T)

    def explain(self, input_shape, output_shape):
        inner = self.layer.explain(self.child_shape(input_shape), self.layer.output_shape(self.child_shape(input_shape)))
        return f"applies {self.layer.class_name} '{self.layer.name}' to each of {input_shape[1]} timesteps: {inner}"


@register("SpectralNormalization")
class SpectralNormalization(Layer):
    """The wrapped layer (with a ``kernel`` or ``embeddings``) as it is: only training re-normalizes its kernel.

    Training divides the kernel by its spectral norm (power iteration on the non-trainable ``vector_u``, shape
    (1, kernel_shape[-1])); inference runs the wrapped layer on the stored kernel.

    Weights: the wrapped layer's (trainable), then ``vector_u``: Keras's legacy .h5 order. A .keras file saves
    the wrapper's own variables in its ``vars``, the wrapped kernel first (``self.kernel = self.layer.kernel``)
    then ``vector_u``, and the wrapped layer's in ``layer/vars``: the kernel is there twice, counted once.
    """

    supports_masking = False
    call_params = ("inputs", "training")

    def __init__(self, config, name=None):
        super().__init__(config, name)
        self.layer = inner_layer(config.get("layer"), f"layer '{self.name}' (SpectralNormalization)")
        iterations = self.get("power_iterations", 1)
        if isinstance(iterations, bool) or not isinstance(iterations, int) or iterations <= 0:
            raise self.fail(f"'power_iterations' should be greater than zero. Received: "
                            f"power_iterations={iterations!r}")

    @classmethod
    def keras3_config(cls, config):
        config = dict(super().keras3_config(config))
        config["layer"] = nested_keras3(config.get("layer"))
        return config

    def _kernel_index(self, inner: list[Weight]) -> int:
        names = [w.name for w in inner]
        for key in ("kernel", "embeddings"):
            if key in names:
                return names.index(key)
        raise UnsupportedError(f"layer '{self.name}' (SpectralNormalization): {self.layer.class_name} object has "
                               f"no attribute 'kernel' nor 'embeddings'")

    def weights(self, input_shape):
        inner = self.layer.weights(input_shape)
        kernel = inner[self._kernel_index(inner)]
        return renamed(inner, self.layer.name, "layer") + [Weight("vector_u", (1, kernel.shape[-1]), False)]

    def weight_groups(self):
        return ["", *(join_path("layer", g) for g in self.layer.weight_groups())]

    def saved_vars(self, weights, values):
        inner = [dataclasses.replace(w, name=_removeprefix(w.name, self.layer.name + "/")) for w in weights[:-1]]
        k = self._kernel_index(inner)
        own = [(dataclasses.replace(weights[k], group=""), values[k]), (weights[-1], values[-1])]
        return own + list(zip(weights[:-1], values[:-1]))

    def from_saved_vars(self, groups):
        own, inner = groups[0], [a for g in groups[1:] for a in g]
        return inner + own[1:]  # the wrapped layer's (its kernel: the one Keras loads last), then vector_u

    def random_weight(self, w, rng):
        inner = getattr(self.layer, "random_weight", None)
        if inner is None or w.name == "vector_u":
            return None
        return inner(dataclasses.replace(w, name=_removeprefix(w.name, self.layer.name + "/")), rng)

    def output_shape(self, input_shape):
        return self.layer.output_shape(input_shape)

    def call_node(self, args, kwargs, weights):
        x = args[0]
        y = self.layer.call_node([x], {}, weights[:-1])
        # Keras casts the output to the input's dtype: for integer ids (Embedding) that truncates every
        # embedding (a Keras bug: its declared output is float32); kcompat keeps the wrapped layer's floats
        return y.astype(x.dtype, copy=False) if np.asarray(x).dtype.kind == "f" else y

    def explain(self, input_shape, output_shape):
        inner = self.layer.explain(input_shape, output_shape)
        k = self.weights(input_shape)[-1].shape[-1]
        return (f"{self.layer.class_name} '{self.layer.name}' as it is at inference (training re-normalizes its "
                f"kernel): {inner}; + vector_u 1x{k} (non-trainable) = {sum(self.param_count(input_shape))} params")
