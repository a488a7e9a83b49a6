"""Keras 2 (tf_keras / tf.keras) -> Keras 3 layer configs: every dialect difference, one table.

Found by reading what Keras 2 writes (tf_keras/src/layers/**/*.py ``get_config``, engine/base_layer.py)
against what Keras 3 accepts (keras/src/layers/**/*.py ``__init__`` / ``from_config``) and what
Keras 3's own legacy loader already converts (keras/src/legacy/saving/saving_utils.py
``model_from_config``: ``batch_input_shape`` and one-element ``axis`` lists only). Paths in the rows:
K2 = site-packages/tf_keras/src/ (tf_keras 2.21), K3 = site-packages/keras/src/ (Keras 3.15).
docs/KERAS2_TO_3.md lists the same rows with their reasons.

Rows that only respell (a key Keras 3 refuses but that changes nothing) are applied silently; a
row whose value would change what Keras 3 computes makes the numbers identical or refuses by name.
``to_keras3`` runs on the writers' side only: kcompat's own layers run the Keras 2 config as read,
so a key dropped here is still honoured when running. ``from_keras2`` runs on the reader's side for
the one name whose MEANING changed (``hard_sigmoid``), so kcompat computes what Keras 2 computed. ``keras3_names``: Keras 2 allowed '/' in layer names
(``block1/dense``); Keras 3 refuses to load them (keras/src/layers/layer.py), so Keras writers rename them
(``block1_dense``), kept unique, with one note giving the mapping.
"""
from __future__ import annotations

import copy
import warnings
from dataclasses import dataclass
from typing import Any, Callable

from ...errors import UnsupportedError
from ...layers.activations import KERAS2_HARD_SIGMOID
from ...model import Model
from ...spec import ModelSpec, TensorRef, map_refs

NESTED_LAYER_KEYS = ("layer", "backward_layer", "cell", "cells")  # config keys holding a layer's own layers
ANY = "*"  # every layer class except InputLayer (whose dtype stays a plain string in Keras 3)
DROP = object()  # a rewrite's answer: remove the key


@dataclass(frozen=True)
class Row:
    """One Keras 2 config key of some classes: dropped, renamed, or rewritten (a rewrite may refuse)."""

    classes: tuple[str, ...]  # Keras 2 class names, or (ANY,)
    key: str  # config key; "*_constraint" matches by suffix
    action: str  # "drop" | "rename" | "rewrite"
    to: str | Callable[[Any, str], Any] | None = None  # new key (rename) or fn(value, where) (rewrite)
    source: str = ""  # the sources that justify the row

    def matches(self, class_name: str, key: str) -> bool:
        if class_name not in self.classes and not (ANY in self.classes and class_name != "InputLayer"):
            return False
        return key.endswith(self.key[1:]) if self.key.startswith("*") else key == self.key


def _refuse(where: str, what: str) -> UnsupportedError:
    return UnsupportedError(f"{where}: cannot be written for Keras 3: {what}")


def _dtype_policy(value: Any, where: str) -> Any:
    """"float32" -> Keras 3's DTypePolicy dict; tf_keras's mixed-precision ``Policy`` dict -> the same."""
    if isinstance(value, dict) and value.get("class_name") in ("Policy", "PolicyV1"):
        value = (value.get("config") or {}).get("name", "float32")
    if isinstance(value, str):
        return {"module": "keras", "class_name": "DTypePolicy", "config": {"name": value}, "registered_name": None}
    return value


def _single_axis(value: Any, where: str) -> Any:
    if isinstance(value, (list, tuple)):
        if len(value) != 1:
            raise _refuse(where, f"Keras 3's BatchNormalization normalizes over ONE axis; Keras 2's normalized "
                                 f"over several. Received: axis={list(value)}")
        return int(value[0])
    return value


def _default_only(key: str, default: Any, why: str) -> Callable[[Any, str], Any]:
    """Dropped at its default (what Keras 3 does anyway); any other value is refused."""
    def rewrite(value: Any, where: str) -> Any:
        if value != default:
            raise _refuse(where, f"Keras 3 has no '{key}' ({why}). Received: {key}={value!r}")
        return DROP
    return rewrite


def _activation(value: Any, where: str) -> Any:
    if value == KERAS2_HARD_SIGMOID:
        raise _refuse(where, "Keras 2's hard_sigmoid is clip(0.2 * x + 0.5, 0, 1); Keras 3's is relu6(x + 3) / 6, "
                             "and Keras 3 has no activation computing the Keras 2 one. Retrain with Keras 3's "
                             "hard_sigmoid, or export to .onnx (ONNX HardSigmoid has alpha=0.2, beta=0.5)")
    return value


def _keras3_constraint(value: Any, where: str) -> Any:
    if isinstance(value, dict) and value.get("class_name") == "RadialConstraint":
        return None  # applied after optimizer steps only: the loaded weights already obey it
    return value


DEPTHWISE = ("DepthwiseConv1D", "DepthwiseConv2D")
TRANSPOSED = ("Conv1DTranspose", "Conv2DTranspose", "Conv3DTranspose")
SEPARABLE = ("SeparableConv1D", "SeparableConv2D")
SPATIAL_DROPOUT = ("SpatialDropout1D", "SpatialDropout2D", "SpatialDropout3D")
RNNS = ("SimpleRNN", "LSTM", "GRU", "ConvLSTM1D", "ConvLSTM2D", "ConvLSTM3D", "RNN")

ROWS: tuple[Row, ...] = (
    Row((ANY,), "dtype", "rewrite", _dtype_policy,
        "K2 engine/base_layer.py:806 + mixed_precision/policy.py:533-539 write 'float32' or a Policy dict; "
        "K3 dtype_policies/__init__.py:43-61 knows DTypePolicy, not 'Policy' (same name -> same dtypes)"),
    Row((ANY,), "batch_input_shape", "drop", None,
        "K2 engine/base_layer.py:807-808 writes it on any layer built with input_shape; K3 layers/layer.py:279-296 "
        "takes only input_shape (and warns). The model's InputLayer carries the shape"),
    Row((ANY,), "rng_type", "drop", None,
        "K2 engine/base_layer.py:3935-3944 (BaseRandomLayer) writes it; K3 random layers refuse it; it picks "
        "the training-time random generator only"),
    Row((ANY,), "*activation", "rewrite", _activation,
        "K2 activations.py:426-450 + backend.py:5939-5944 hard_sigmoid = clip(0.2x + 0.5); K3 "
        "backend/tensorflow/nn.py:108-110 = relu6(x + 3) / 6 (from_keras2 marks the Keras 2 one). Also "
        "recurrent_activation: K2 rnn/conv_lstm*.py default it to hard_sigmoid, K3 to sigmoid"),
    Row((ANY,), "*_constraint", "rewrite", _keras3_constraint,
        "K2 constraints.py:259 RadialConstraint; K3 constraints/__init__.py:12-18 has no such class"),
    Row(("InputLayer",), "batch_input_shape", "rename", "batch_shape",
        "K2 engine/input_layer.py:281-293; K3 layers/core/input_layer.py:31-32 (also legacy_h5: "
        "legacy/saving/saving_utils.py:63-68)"),
    Row(("InputLayer",), "type_spec", "rewrite", _default_only("type_spec", None, "Input(type_spec=...)"),
        "K2 engine/input_layer.py:282-283 writes only name + type_spec; K3 input_layer.py has no type_spec"),
    Row(DEPTHWISE, "groups", "drop", None,
        "K2 convolutional/base_depthwise_conv.py:140-154 (filters=None, groups defaults to 1) and :212-228 "
        "(get_config keeps Conv's groups, base_conv.py:373); the depthwise op never reads it. "
        "K3 convolutional/base_depthwise_conv.py:83 has no groups (keras-team/keras#19151)"),
    Row(TRANSPOSED, "groups", "drop", None,
        "K2 convolutional/conv2d_transpose.py:171-188 passes no groups, base_conv.py:373 writes groups; the "
        "transposed op ignores it. K3 convolutional/base_conv_transpose.py:71 has no groups"),
    *(Row(SEPARABLE, key, "drop", None,
          "K2 convolutional/base_separable_conv.py:129-146 + :213-250 merges Conv.get_config (base_conv.py:365-391), "
          "whose kernel_* and groups a separable conv never uses (it has depthwise_* / pointwise_*). "
          "K3 convolutional/base_separable_conv.py:77 refuses them")
      for key in ("groups", "kernel_initializer", "kernel_regularizer", "kernel_constraint")),
    Row(("BatchNormalization",), "axis", "rewrite", _single_axis,
        "K2 normalization/batch_normalization.py:811 writes a list ([3]); K3 batch_normalization.py:182 "
        "int(axis); K3's legacy loader converts one-element lists the same way (saving_utils.py:70-75)"),
    Row(("BatchNormalization",), "virtual_batch_size", "rewrite",
        _default_only("virtual_batch_size", None, "ghost batches; Keras 2 gave the weights an extra axis"),
        "K2 batch_normalization.py:835-836 + :412-421 (param shape with the virtual batch axis); K3 has none"),
    Row(("LeakyReLU",), "alpha", "rename", "negative_slope",
        "K2 activation/leaky_relu.py:74-77 writes alpha; K3 activations/leaky_relu.py:38-42 renamed it "
        "negative_slope (alpha still accepted, with a deprecation warning)"),
    Row(("ThresholdedReLU",), "theta", "rename", "threshold",
        "K2 activation/thresholded_relu.py:51-71: x * (x > theta); K3 has no ThresholdedReLU; its ReLU "
        "(activations/activations.py:76-101) with threshold computes where(x > threshold, x, 0)"),
    Row(("Embedding",), "input_length", "drop", None,
        "K2 core/embedding.py:287-305 writes it (it only set the input shape); K3 core/embedding.py:121-125 "
        "pops it with a deprecation warning"),
    *(Row(SPATIAL_DROPOUT, key, "drop", None,
          "K2 regularization/dropout.py:128-135 (SpatialDropout inherits Dropout's config); K3 "
          "regularization/spatial_dropout.py:9,62,111,173 take rate, seed, data_format, name, dtype only; "
          "identity at inference") for key in ("trainable", "noise_shape")),
    Row(("Discretization",), "trainable", "drop", None,
        "K2 layers/preprocessing/discretization.py:394-405 + base layer; K3 preprocessing/discretization.py:88 "
        "has no **kwargs for it; the layer has no trainable weights"),
    Row(RNNS, "time_major", "rewrite", _default_only("time_major", False, "Keras 2 read inputs as (time, batch, ...)"),
        "K2 rnn/base_rnn.py:948-956 and rnn/base_cudnn_rnn.py:124; K3 rnn/rnn.py has no time_major"),
    Row(("MultiHeadAttention",), "softmax_robust_masking", "rewrite",
        _default_only("softmax_robust_masking", False, "a different masked softmax"),
        "K2 attention/multi_head_attention.py:252-270,305; K3 attention/multi_head_attention.py has none"),
    *(Row(("MultiHeadAttention",), key, "drop", None,
          "K2 attention/multi_head_attention.py:302-304,314-326 (used to build at load); K3 builds from the "
          "call's shapes") for key in ("query_shape", "key_shape", "value_shape")),
)

# Keras 2 classes Keras 3 does not have: the Keras 3 class that computes the same, or None (refused).
CLASSES: dict[str, tuple[str | None, str]] = {
    "ThresholdedReLU": ("ReLU", "K2 activation/thresholded_relu.py; removed in Keras 3: ReLU(threshold=theta)"),
    "TFOpLambda": (None, "a TensorFlow function called on a Keras 2 tensor (K2 layers/core/tf_op_layer.py); "
                         "Keras 3 has no TensorFlow op layers: rebuild that call with keras.ops"),
    "SlicingOpLambda": (None, "a tensor slice recorded by Keras 2 (K2 layers/core/tf_op_layer.py); rebuild it "
                              "with keras.ops or a Keras 3 layer"),
    "TensorFlowOpLayer": (None, "a raw TensorFlow op (tf.keras 2.0-2.3); rebuild it with keras.ops"),
    "CuDNNLSTM": (None, "tf.compat.v1 cuDNN layer (K2 layers/rnn/cudnn_lstm.py); Keras 3's LSTM uses cuDNN itself"),
    "CuDNNGRU": (None, "tf.compat.v1 cuDNN layer (K2 layers/rnn/cudnn_gru.py); Keras 3's GRU uses cuDNN itself"),
    "LocallyConnected1D": (None, "removed in Keras 3 (K2 layers/locally_connected/)"),
    "LocallyConnected2D": (None, "removed in Keras 3 (K2 layers/locally_connected/)"),
    "DenseFeatures": (None, "feature columns were removed in Keras 3 (K2 feature_column/)"),
    "RandomHeight": (None, "removed in Keras 3 (K2 layers/preprocessing/image_preprocessing.py)"),
    "RandomWidth": (None, "removed in Keras 3 (K2 layers/preprocessing/image_preprocessing.py)"),
}


def to_keras3(entry: dict) -> dict:
    """A layer entry (``class_name``, ``config``...) in Keras 3's dialect; UnsupportedError where it has none."""
    entry = copy.deepcopy(entry)
    class_name, cfg = entry["class_name"], entry["config"]
    where = f"layer '{cfg.get('name', '?')}' ({class_name})"
    if class_name in CLASSES and CLASSES[class_name][0] is None:
        raise _refuse(where, f"Keras 3 has no {class_name}: {CLASSES[class_name][1]}")
    for key in list(cfg):
        for row in ROWS:
            if key in cfg and row.matches(class_name, key):
                _apply(row, cfg, key, where)
    if class_name in CLASSES:
        entry["class_name"] = CLASSES[class_name][0]
    for key in NESTED_LAYER_KEYS:  # a wrapper's layers (Bidirectional, TimeDistributed, RNN cells) too
        inner = cfg.get(key)
        if isinstance(inner, dict) and isinstance(inner.get("config"), dict) and "class_name" in inner:
            cfg[key] = to_keras3(inner)
        elif isinstance(inner, list):
            cfg[key] = [to_keras3(i) if isinstance(i, dict) and isinstance(i.get("config"), dict) else i
                        for i in inner]
    return entry


def _apply(row: Row, cfg: dict, key: str, where: str) -> None:
    value = cfg.pop(key)
    if row.action == "rename":
        cfg.setdefault(row.to, value)
    elif row.action == "rewrite":
        value = row.to(value, where)
        if value is not DROP:
            cfg[key] = value


def from_keras2(layers: list) -> None:
    """Rewrite, in place, what a Keras 2 file says in words Keras 3 reads differently or not at all (LayerSpecs).

    ``hard_sigmoid`` (Keras 2: clip(0.2 x + 0.5, 0, 1)) becomes ``keras2:hard_sigmoid``, which kcompat
    computes and the Keras 3 writers refuse; ThresholdedReLU becomes the ReLU that computes the same."""
    for layer in layers:
        for key in _activation_keys(layer.config):
            if layer.config[key] == "hard_sigmoid":
                layer.config[key] = KERAS2_HARD_SIGMOID
        if layer.class_name in CLASSES and CLASSES[layer.class_name][0] is not None:
            entry = to_keras3({"class_name": layer.class_name, "config": layer.config})
            layer.class_name, layer.config = entry["class_name"], entry["config"]


def keras2_meanings(layers: list) -> list[str]:
    """Layers whose Keras 2 meaning Keras 3 would read differently (from_keras2's marks), one line each."""
    return [f"layer '{l.name}' ({l.class_name}) uses Keras 2's hard_sigmoid, which Keras 3 computes differently"
            for l in layers if any(l.config[k] == KERAS2_HARD_SIGMOID for k in _activation_keys(l.config))]


def _activation_keys(config: dict) -> list[str]:
    """``activation``, ``recurrent_activation``: the keys naming an activation function."""
    return [k for k in config if k.endswith("activation")]


def keras3_names(model: Model) -> Model:
    """The model with layer names Keras 3 accepts, in nested models too (the same model when nothing changes)."""
    if not _has_slash(model.spec):
        return model
    spec = copy.deepcopy(model.spec)
    renamed: dict[str, str] = {}
    _rename(spec, renamed, "")
    pairs = ", ".join(f"{a} -> {b}" for a, b in renamed.items())
    warnings.warn(f"renamed {len(renamed)} layer(s) for Keras 3, which does not allow '/' in names: {pairs}",
                  stacklevel=2)
    return Model(spec)


def _has_slash(spec: ModelSpec) -> bool:
    return any("/" in ls.name or (ls.model is not None and _has_slash(ls.model)) for ls in spec.layers)


def _rename(spec: ModelSpec, renamed: dict[str, str], prefix: str) -> None:
    """Rename the layers of one (possibly nested) model in place; ``renamed`` gathers old -> new, with paths."""
    taken = {ls.name for ls in spec.layers}
    here: dict[str, str] = {}
    for ls in spec.layers:
        if "/" in ls.name:
            base = new = ls.name.replace("/", "_")
            i = 0
            while new in taken:
                i += 1
                new = f"{base}_{i}"
            taken.add(new)
            here[ls.name] = new
            renamed[prefix + ls.name] = prefix + new
    fix = lambda r: TensorRef(here.get(r.layer, r.layer), r.node, r.index)  # noqa: E731
    for ls in spec.layers:
        ls.name = here.get(ls.name, ls.name)
        ls.config["name"] = ls.name
        for node in ls.nodes:
            node.args, node.kwargs = map_refs(node.args, fix), map_refs(node.kwargs, fix)
        if ls.model is not None:
            _rename(ls.model, renamed, f"{prefix}{ls.name}/")
    spec.inputs = [fix(r) for r in spec.inputs]
    spec.outputs = [fix(r) for r in spec.outputs]
