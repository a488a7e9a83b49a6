"""Pipeline: a plain layer applying its ``layers`` in order (keras.layers.Pipeline).

Reference: keras/src/layers/preprocessing/pipeline.py (``call``: each layer gets the previous one's output,
its mask and ``training``; ``get_config``: ``layers`` as serialized layers, and ``name``). Keras 3 only.

Weights: Keras's ``weights`` are the sub-layers', one after another; a legacy .h5 lists them as
``trainable_weights + non_trainable_weights`` (a BatchNormalization's moving statistics after a later
Dense's kernel), which is the order here (``weights``). A .keras file keeps each sub-layer's in
``layers/<snake_case(class)>[_N]/vars`` (numbered as a model's layers are), including an empty group for a
sub-layer without weights; ``from_saved_vars`` puts them in the legacy order, knowing which are trainable
from each sub-layer's ``build_config`` input shape.
"""
from __future__ import annotations

from typing import Any

from ..errors import KcompatError
from .base import Layer, Weight, join_path, register, snake_case
from .wrappers import inner_layer, nested_keras3, renamed


@register("Pipeline")
class Pipeline(Layer):
    """The sub-layers in sequence; at inference augmentation layers among them are the identity."""

    call_params = ("inputs", "training", "mask")

    def __init__(self, config, name=None):
        super().__init__(config, name)
        entries = config.get("layers")
        if not isinstance(entries, (list, tuple)):
            raise self.fail(f"`Pipeline` config must contain a `layers` key mapping to a list of serialized "
                            f"layers. Received config with layers={entries!r}")
        where = f"layer '{self.name}' (Pipeline)"
        self.layers = [inner_layer(entry, where) for entry in entries]
        self.build_shapes = [_build_shape(entry) for entry in entries]
        used: dict[str, int] = {}
        self.keys = []  # each sub-layer's .keras group under ``layers``, as Keras numbers a list of layers
        for layer in self.layers:
            base = snake_case(layer.keras_class or layer.class_name)
            used[base] = used.get(base, -1) + 1
            self.keys.append(f"{base}_{used[base]}" if used[base] else base)
        self.frozen = self.config.get("trainable") is False

    @classmethod
    def keras3_config(cls, config):
        config = dict(super().keras3_config(config))
        if isinstance(config.get("layers"), list):
            config["layers"] = [nested_keras3(entry) for entry in config["layers"]]
        return config

    # -- weights: each sub-layer's, then in Keras's trainable-first order
    def _own(self, layer: Layer, key: str, ws: list[Weight]) -> list[Weight]:
        frozen = layer.config.get("trainable") is False  # Keras sets a frozen layer's variables non-trainable
        return [Weight(w.name, w.shape, w.trainable and not frozen, w.group)
                for w in renamed(ws, layer.name, join_path("layers", key))]

    def _by_layer(self, input_shape) -> list[list[Weight]]:
        out, shape = [], input_shape
        for layer, key in zip(self.layers, self.keys):
            out.append(self._own(layer, key, layer.weights(shape)))
            shape = layer.output_shape(shape)
        return out

    def _order(self, flags: list[bool]) -> list[int]:
        """Positions in sub-layer order, in weights order (Keras's trainable_weights + non_trainable_weights;
        a frozen Pipeline's non_trainable_weights are its weights, in sub-layer order)."""
        every = range(len(flags))
        if self.frozen:
            return list(every)
        return [i for i in every if flags[i]] + [i for i in every if not flags[i]]

    def weights(self, input_shape):
        flat = [w for ws in self._by_layer(input_shape) for w in ws]
        return [flat[i] for i in self._order([w.trainable for w in flat])]

    def weight_groups(self):
        return [join_path("layers", key, g) for layer, key in zip(self.layers, self.keys) for g in layer.weight_groups()]

    def from_saved_vars(self, groups):
        flat = [a for g in groups for a in g]
        flags: list[bool] = []
        shape = None
        try:
            for layer, key, built in zip(self.layers, self.keys, self.build_shapes):
                shape = built if built is not None else shape  # a layer without build() has no build_config
                if shape is None:
                    return flat  # no shape known (not a file Keras wrote): sub-layer order
                flags += [w.trainable for w in self._own(layer, key, layer.weights(shape))]
                shape = layer.output_shape(shape)
        except KcompatError:
            return flat  # the model build reports it
        if len(flags) != len(flat):
            return flat  # the weight count check names the layer
        return [flat[i] for i in self._order(flags)]

    def output_shape(self, input_shape):
        for layer in self.layers:
            input_shape = layer.output_shape(input_shape)
        return input_shape

    # -- the call
    def split(self, input_shape, weights: list) -> list[list]:
        """The weights (in ``weights`` order) as each sub-layer's list."""
        sizes = [len(ws) for ws in self._by_layer(input_shape)]
        flat: list[Any] = [None] * len(weights)
        for value, i in zip(weights, self._order([w.trainable for ws in self._by_layer(input_shape) for w in ws])):
            flat[i] = value
        out, start = [], 0
        for n in sizes:
            out.append(flat[start:start + n])
            start += n
        return out

    def call_node(self, args, kwargs, weights):
        x, mask = args[0], kwargs.get("mask")
        for layer, ws in zip(self.layers, self.split(x.shape, weights)):
            inner = {"mask": mask} if mask is not None and "mask" in layer.call_params else {}
            y = layer.call_node([x], inner, ws)
            mask = layer.compute_mask(x, mask) if layer.masking() or layer.creates_mask else None
            x = y
        return x

    def explain(self, input_shape, output_shape):
        names = ", ".join(f"{layer.class_name} '{layer.name}'" for layer in self.layers)
        return (f"{names} in sequence: {input_shape} -> {output_shape}; their weights = "
                f"{sum(self.param_count(input_shape))} params")


def _build_shape(entry: Any) -> tuple | None:
    """A serialized sub-layer's build input shape, when Keras wrote one."""
    build = entry.get("build_config") if isinstance(entry, dict) else None
    shape = build.get("input_shape") if isinstance(build, dict) else None
    if isinstance(shape, list) and all(d is None or isinstance(d, int) for d in shape):
        return tuple(shape)
    return None
