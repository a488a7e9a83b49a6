"""Layer base class and registry: ``@register("Dense")`` next to each layer's definition.

A layer knows its Keras config (validated in ``__init__``), the shapes of its weights in
Keras order (``weights``), its ``output_shape`` and its NumPy ``forward``. Shapes are
tuples with ``None`` for unknown dimensions (the batch). Plumbing lives here so each
layer body stays the math and nothing else (like onnx/reference/ops/op_relu.py).

Keras masks (keras/src/layers/layer.py ``__call__`` / ``_set_mask_metadata``): a layer says
whether it ``supports_masking`` (passes or transforms a mask; one that does not drops it),
which ``call_params`` it has (a ``mask`` / ``<arg>_mask`` parameter receives input masks),
and ``compute_mask`` gives its output mask. kcompat/masks.py applies these rules.
"""
from __future__ import annotations

import hashlib
import importlib.metadata
import importlib.util
import sys
import functools
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from ..errors import ConfigError, KcompatError, UnsupportedError
from ..schema import MAX_DIM, shown

Shape = tuple  # (None, 3, 2)

REGISTRY: dict[str, type["Layer"]] = {}
OP_REGISTRY: dict[str, type["Layer"]] = {}


def register(*class_names: str, op: bool = False):
    """Class decorator: make a layer available under its Keras class name(s) or registered name(s)
    ("MyPackage>MyScale"); the first name is its canonical one. A user's layer may not take a name
    that a built-in or another user's layer already has."""
    def wrap(cls):
        table = OP_REGISTRY if op else REGISTRY
        for name in class_names:
            old = table.get(name)
            if old is not None and not _builtin(cls) and _where(old) != _where(cls):
                what = "a built-in kcompat layer" if _builtin(old) else f"already registered by {_where(old)}"
                raise KcompatError(f"{_where(cls)}: cannot register {name!r}: it is {what}. Register the custom "
                                   f"class under its Keras registered name (e.g. 'MyPackage>{name}')")
        for name in class_names:
            table[name] = cls
        cls.class_name = class_names[0]
        return cls
    return wrap


def _builtin(cls: type) -> bool:
    return cls.__module__.startswith("kcompat.")


def _where(cls: type) -> str:
    return f"{cls.__module__}.{cls.__qualname__}"


@dataclass(frozen=True)
class Weight:
    """A weight's Keras name, shape and trainability (moving statistics are not trainable).

    ``name`` is the variable's Keras path below the layer (``kernel``; ``lstm_cell/kernel`` for a
    weight a sub-layer owns). ``group`` is the Keras 3 saving path of the object that owns it,
    relative to the layer ("" for the layer itself; ``cell``, ``forward_layer/cell``, ``layer``):
    positional weight files keep each owner's variables in ``<layer>/<group>/vars``.
    """

    name: str
    shape: tuple
    trainable: bool = True
    group: str = ""


def leaves(structure: Any) -> list:
    """Leaves of nested lists / tuples, None included (keras.tree.flatten): a mask structure's masks."""
    if isinstance(structure, (list, tuple)):
        return [leaf for item in structure for leaf in leaves(item)]
    return [structure]


def first_mask(mask: Any) -> Any:
    """The first mask of a mask structure (what an RNN uses: ``tree.flatten(mask)[0]``), or None."""
    return leaves(mask)[0] if isinstance(mask, (list, tuple)) and mask else mask


@functools.lru_cache(maxsize=1024)
def snake_case(name: str) -> str:
    """Keras's default names and .keras weight groups from a class name: keras.src.utils.naming.to_snake_case."""
    name = re.sub(r"\W+", "", name)
    name = re.sub("(.)([A-Z][a-z]+)", r"\1_\2", name)
    name = re.sub("([a-z])([A-Z])", r"\1_\2", name).lower()
    return name


def join_path(*parts: str) -> str:
    """Join saving / variable path parts, skipping empty ones: join_path("layer", "") == "layer"."""
    return "/".join(p for p in parts if p)


class Layer:
    """Base: one Keras layer. Subclasses override ``weights``, ``output_shape``, ``forward``."""

    class_name: ClassVar[str] = "Layer"
    # Facts other modules read (formats/, verify/): kept here, never as class-name lists elsewhere.
    has_activation: ClassVar[bool] = False  # an ``activation`` config key applied last (Dense, Conv*)
    tf_bias_add: ClassVar[bool] = False  # Keras 3 on TF adds the bias with ops.add, which becomes an NHWC
    # bias_add when the last axis has the bias's size: wrong for channels_first (verify names it)
    layout: ClassVar[str] = "logical"  # how kcompat/layout.py may move its axes: "logical" (it reads the
    # original layout), "elementwise", "axis" (an ``axis`` config to renumber), "spatial" (data_format),
    # "last_axis" (Dense), "flatten", "permute", "prelu", "getitem"
    inference_identity: ClassVar[bool] = False  # returns its input at inference (dropout, noise, augmentation)
    keras_class: ClassVar[str | None] = None  # Keras's Python class when the config's class name differs
    # (GroupQueryAttention is class GroupedQueryAttention): .keras weight groups are named after the class
    keras_modules: ClassVar[tuple] = ()  # for classes Keras defines outside keras.layers (applications'
    # LayerScale): the config modules that mean Keras's class; another module is a user's class of that name
    supports_masking: ClassVar[bool] = False  # Keras 3's supports_masking: keeps (compute_mask) an input mask
    keras2_supports_masking: ClassVar[bool | None] = None  # tf_keras's, where it differs (None: the same)
    creates_mask: ClassVar[bool] = False  # makes a mask from no mask (Masking; Embedding with mask_zero)
    call_params: ClassVar[tuple] = ("inputs",)  # Keras call() parameter names, in order: "mask" / "<arg>_mask"
    # among them receive the input masks as Keras passes them
    per_sample: ClassVar[bool] = False  # at inference, each sample's output comes from that sample alone, the
    # batch on axis 0 in and out: predict may run the batch in parts (kcompat/parts.py; see samples_apart)

    def __init__(self, config: dict, name: str | None = None):
        self.config = config
        self.name = name or config.get("name", self.class_name)

    # -- config helpers: Keras-style messages, "expected ... Received: units=-3"
    def get(self, key: str, default: Any = None) -> Any:
        """A config value, with ``default`` when the key is absent or None."""
        value = self.config.get(key)
        return default if value is None else value

    def fail(self, message: str) -> ConfigError:
        """A ConfigError naming this layer."""
        return ConfigError(f"layer '{self.name}' ({self.class_name}): {message}")

    def positive_int(self, key: str, default: Any = None, maximum: int = MAX_DIM) -> int:
        """A config value that must be an integer from 1 to ``maximum`` (a size no model has is refused
        here, before any shape or weight is computed from it)."""
        value = self.get(key, default)
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or not 1 <= value <= maximum:
            raise self.fail(f"'{key}' must be a positive integer (at most {maximum}). Received: {key}={shown(value)}")
        return int(value)

    def choice(self, key: str, options: tuple, default: Any = None) -> Any:
        """A config value that must be one of ``options``."""
        value = self.get(key, default)
        if isinstance(value, str):
            value = value.lower()
        if value not in options:
            raise UnsupportedError(
                f"layer '{self.name}' ({self.class_name}): '{key}' must be one of {list(options)}. "
                f"Received: {key}={value!r}")
        return value

    # -- the contract
    def saved_state(self) -> dict:
        """Named entries Keras's ``save_own_variables`` adds to the layer's .keras ``vars`` (not weights)."""
        return {}

    def weights(self, input_shape: Any) -> list[Weight]:
        """Weights in Keras order for this input shape (none by default)."""
        return []

    def output_shape(self, input_shape: Any) -> Any:
        """Output shape for an input shape (identity by default)."""
        return input_shape

    def forward(self, x: Any, *weights: np.ndarray) -> Any:
        """The NumPy computation."""
        raise NotImplementedError

    # -- how a call node is applied; op nodes override these to see every argument
    def call_node(self, args: list, kwargs: dict, weights: list[np.ndarray]) -> Any:
        """Run one call node: by default the first argument is the layer input."""
        return self.forward(args[0], *weights)

    def node_input_shape(self, args: list, kwargs: dict) -> Any:
        """The input shape used for ``weights`` / ``output_shape`` from shape-valued args."""
        return args[0]

    def node_output_shape(self, args: list, kwargs: dict) -> Any:
        """Output shape of one call node given shape-valued args."""
        return self.output_shape(self.node_input_shape(args, kwargs))

    def samples_apart(self, input_shape: Any) -> bool:
        """True when this call may run on parts of the batch (``per_sample``; a layer with an axis checks it)."""
        return self.per_sample

    def masking(self, keras2: bool = False) -> bool:
        """Keras 3's ``supports_masking``, or tf_keras's where it differs."""
        if keras2 and self.keras2_supports_masking is not None:
            return self.keras2_supports_masking
        return self.supports_masking

    def compute_mask(self, inputs: Any, mask: Any, keras2: bool = False) -> Any:
        """The output mask (a structure like the outputs) from the first input and its mask; called only
        when ``supports_masking``. Default: the input mask, unchanged (keras Layer.compute_mask)."""
        return mask

    def weight_groups(self) -> list[str]:
        """Keras 3 saving paths (see ``Weight.group``) of the objects that own weights, in weight order
        ("" = the layer's own ``vars``; MultiHeadAttention's ``query_dense``, an LSTM's ``cell``)."""
        return [""]

    def saved_vars(self, weights: list[Weight], values: list) -> list[tuple[Weight, Any]]:
        """(weight, value) pairs as Keras 3 saves them in the ``weight_groups`` of a .keras file, each in its
        ``Weight.group`` (SpectralNormalization saves the wrapped kernel twice). Default: the weights."""
        return list(zip(weights, values))

    def from_saved_vars(self, groups: list[list]) -> list:
        """The weights in ``weights`` order from the arrays of each ``weight_groups`` group, as a .keras file
        holds them (the inverse of ``saved_vars``). Default: the groups one after another."""
        return [a for g in groups for a in g]

    @classmethod
    def keras3_config(cls, config: dict) -> dict:
        """The config Keras 3 accepts for this layer, from a Keras 2 one (a copy when it changes): by default
        what Keras 3's legacy loader does, a one-element ``axis`` list becomes an int
        (keras/src/legacy/saving/saving_utils.py); layers drop the Keras 2 keys Keras 3 refuses."""
        axis = config.get("axis")
        if isinstance(axis, list) and len(axis) == 1:
            config = {**config, "axis": int(axis[0])}
        return config

    # -- what the predict plan (kcompat/plan.py) may fold; the defaults fold nothing
    def as_activation(self) -> str | None:
        """The Keras activation name that computes exactly this layer's forward, if there is one."""
        return None

    def as_affine(self, input_shape: Any, weights: list) -> tuple[int, np.ndarray, np.ndarray] | None:
        """(axis, scale, shift) when forward(x) is ``x * scale + shift`` along one axis (a folded BatchNormalization)."""
        return None

    def fold_affine(self, weights: list, axis: int, ndim: int, scale: np.ndarray, shift: np.ndarray) -> list | None:
        """Weights for this layer followed by ``y * scale + shift`` along output ``axis`` (None: cannot fold)."""
        return None

    def as_zero_padding(self) -> tuple | None:
        """(before, after) zero padding per spatial axis, when that is all this layer does."""
        return None

    def same_padding_config(self, pads: tuple, data_format: str, input_shape: Any) -> dict | None:
        """This layer's config reading the unpadded input, when zero ``pads`` then this layer equal 'same' padding."""
        return None

    def param_count(self, input_shape: Any) -> tuple[int, int]:
        """(trainable, non-trainable) parameter counts."""
        t = n = 0
        for w in self.weights(input_shape):
            size = weight_size(w)
            if w.trainable:
                t += size
            else:
                n += size
        return t, n

    def explain(self, input_shape: Any, output_shape: Any) -> str:
        """Shape and parameter arithmetic in words (overridden by layers with something to say)."""
        ws = self.weights(input_shape)
        if not ws:
            return f"{_fmt(input_shape)} -> {_fmt(output_shape)}; no weights, 0 params"
        parts = " + ".join(f"{w.name} {'x'.join(str(d) for d in w.shape)}" for w in ws)
        total = sum(self.param_count(input_shape))
        return f"{_fmt(input_shape)} -> {_fmt(output_shape)}; {parts} = {total} params"


def weight_size(w: Weight) -> int:
    """Elements of a weight, as an exact Python integer (np.prod would wrap around past 2**63)."""
    n = 1
    for d in w.shape:
        n *= int(d)
    return n


def _fmt(shape: Any) -> str:
    if isinstance(shape, list):
        return "[" + ", ".join(_fmt(s) for s in shape) + "]"
    return "(" + ", ".join("None" if d is None else str(d) for d in shape) + ("," if len(shape) == 1 else "") + ")"


def fmt_shape(shape: Any) -> str:
    """Keras's way of writing a shape: (None, 3, 16)."""
    return _fmt(shape)


KERAS_MODULES = ("keras", "tf_keras", "tensorflow")  # where Keras 3 and Keras 2 files say their own classes live


def is_custom(class_name: str, module: str | None = None, registered_name: str | None = None) -> bool:
    """A user's class: registered under a package ("MyPackage>MyScale"), or from a module outside Keras."""
    outside = bool(module) and module.split(".")[0] not in KERAS_MODULES
    return ">" in class_name or ">" in (registered_name or "") or outside


def lookup(class_name: str, is_op: bool = False, module: str | None = None,
           registered_name: str | None = None) -> type[Layer] | None:
    """The layer class for a Keras layer: by registered name, then class name (a custom class only among
    users' layers); installed ``kcompat.layers`` entry points are loaded on the first miss."""
    table = OP_REGISTRY if is_op else REGISTRY
    custom = is_custom(class_name, module, registered_name)
    for attempt in range(2):
        for key in (registered_name, class_name, class_name.rpartition(">")[2]):
            cls = table.get(key) if key else None
            if cls is not None and cls.keras_modules and module is not None and module not in cls.keras_modules:
                continue  # a user's class named like one Keras defines outside keras.layers (LayerScale)
            if cls is not None and (key == registered_name or not custom or not _builtin(cls)):
                return cls
        if attempt == 0 and not load_entry_points():
            break
    return None


def make_layer(class_name: str, config: dict, name: str, is_op: bool = False, source: str = "",
               module: str | None = None, registered_name: str | None = None) -> Layer:
    """Instantiate a registered layer; unknown classes are refused by name."""
    cls = lookup(class_name, is_op, module, registered_name)
    if cls is None:
        prefix = f"{source}: " if source else ""
        raise UnsupportedError(prefix + missing_class_message(class_name, [name], is_op, module, registered_name))
    return cls(config, name)


def missing_class_message(class_name: str, names: list[str], is_op: bool = False, module: str | None = None,
                          registered_name: str | None = None) -> str:
    """One sentence for every layer of a class kcompat has no implementation for (the class named once),
    and how to add one."""
    kind = "Keras op" if is_op else "layer class"
    key = registered_name if registered_name and registered_name.endswith(class_name.rpartition(">")[2]) \
        else class_name
    custom = is_custom(class_name, module, registered_name)
    where = f" (a custom class from module {module})" if custom and module else " (a custom class)" if custom else ""
    listed = ", ".join(repr(n) for n in names[:3]) + (", ..." if len(names) > 3 else "")
    count = f"{len(names)} layers" if len(names) > 1 else "1 layer"
    return (f"no NumPy implementation of {kind} {key!r}{where}, used by {count} ({listed}); add one: a "
            f"kcompat.layers.Layer subclass decorated with @register(that name{', op=True' if is_op else ''}), given "
            f"with --layers FILE.py "
            f"or installed as a 'kcompat.layers' entry point (README: Custom layers)")


# ------------------------------------------------------------------ users' layers
_loaded_files: dict[Path, str] = {}  # resolved path -> module name
_entry_points_loaded = False


def load_layer_file(path: str) -> None:
    """Run a user's Python file that defines kcompat layers (``@register``); each file once."""
    p = Path(path).expanduser()
    if not p.is_file():
        raise KcompatError(f"--layers {path}: no such file")
    real = p.resolve()
    if real in _loaded_files:
        return
    name = f"kcompat_user_layers.{p.stem}_{hashlib.sha1(str(real).encode()).hexdigest()[:8]}"
    spec = importlib.util.spec_from_file_location(name, real)
    if spec is None or spec.loader is None:
        raise KcompatError(f"--layers {path}: not a Python file")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except KcompatError as e:
        del sys.modules[name]
        raise KcompatError(f"--layers {path}: {e}") from None
    except Exception as e:  # the user's code: any error, reported with where it came from
        del sys.modules[name]
        raise KcompatError(f"--layers {path}: running it raised {type(e).__name__}: {e}") from None
    _loaded_files[real] = name


def load_entry_points() -> bool:
    """Import every installed ``kcompat.layers`` entry point once (a module that registers layers, or a
    function to call that does); True when this call loaded any."""
    global _entry_points_loaded
    if _entry_points_loaded:
        return False
    _entry_points_loaded = True
    found = list(importlib.metadata.entry_points(group="kcompat.layers"))
    for ep in found:
        try:
            obj = ep.load()
            if callable(obj) and not isinstance(obj, type):
                obj()
        except Exception as e:  # an installed package's code
            raise KcompatError(f"the installed 'kcompat.layers' entry point {ep.name!r} ({ep.value}) failed to "
                               f"load: {type(e).__name__}: {e}") from None
    return bool(found)
