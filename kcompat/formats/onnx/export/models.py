"""A nested model's own node (kcompat/layers/models.py): its inner outputs passed through.

Its layers were exported as ``outer/inner`` already; the driver gives the tensor(s) returned here an
Identity named after the nested model, so its output keeps its name in the ONNX graph.
"""
from __future__ import annotations

from typing import Any

from .registry import layer_exporter


@layer_exporter("Functional")
def nested_model(ctx, layer, inputs: list, weights: list) -> Any:
    return inputs[0]  # one tensor name, or a list of them for several outputs
