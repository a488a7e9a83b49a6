"""What Keras 3 accepts in a file that Keras 2 wrote differently.

Layer names: Keras 2 allowed '/' in names (``block1/dense``); Keras 3 refuses to load them, so Keras
writers rename them (``block1_dense``), kept unique, with one note giving the mapping.
Reference: keras/src/layers/layer.py (``Layer.__init__`` refuses '/' in ``name``).
"""
from __future__ import annotations

import copy
import warnings

from ...model import Model
from ...spec import TensorRef, map_refs


def keras3_names(model: Model) -> Model:
    """The model with layer names Keras 3 accepts (the same model when nothing changes)."""
    taken = {ls.name for ls in model.spec.layers}
    renamed: dict[str, str] = {}
    for ls in model.spec.layers:
        if "/" in ls.name:
            base = new = ls.name.replace("/", "_")
            i = 0
            while new in taken:
                i += 1
                new = f"{base}_{i}"
            taken.add(new)
            renamed[ls.name] = new
    if not renamed:
        return model
    spec = copy.deepcopy(model.spec)
    fix = lambda r: TensorRef(renamed.get(r.layer, r.layer), r.node, r.index)  # noqa: E731
    for ls in spec.layers:
        ls.name = renamed.get(ls.name, ls.name)
        ls.config["name"] = ls.name
        for node in ls.nodes:
            node.args, node.kwargs = map_refs(node.args, fix), map_refs(node.kwargs, fix)
    spec.inputs = [fix(r) for r in spec.inputs]
    spec.outputs = [fix(r) for r in spec.outputs]
    pairs = ", ".join(f"{a} -> {b}" for a, b in renamed.items())
    warnings.warn(f"renamed {len(renamed)} layer(s) for Keras 3, which does not allow '/' in names: {pairs}",
                  stacklevel=2)
    return Model(spec)
