"""What Keras 3 accepts in a file that Keras 2 wrote differently.

Layer names: Keras 2 allowed '/' in names (``block1/dense``); Keras 3 refuses to load them, so Keras
writers rename them (``block1_dense``), kept unique, with one note giving the mapping.
Reference: keras/src/layers/layer.py (``Layer.__init__`` refuses '/' in ``name``).
"""
from __future__ import annotations

import copy
import warnings

from ...model import Model
from ...spec import ModelSpec, TensorRef, map_refs


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
