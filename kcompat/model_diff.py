"""Diff two models (``kcompat diff A B``): structure and config, shapes, parameter counts, weights, outputs.

Layers are matched by name, configs compared in Keras 3's dialect (formats/keras/dialect.py), so a Keras 2
file and its faithful Keras 3 conversion are the same. Config keys that do not change what a layer computes
at inference (initializers, regularizers, constraints, trainable, dtype policy) are ignored.
Weights and outputs are compared with verify's metrics (verify/metrics.py ``compare``): equal values,
inf == inf and NaN vs NaN are the same; NaN vs a number, or inf vs anything else, is a difference.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from .errors import KcompatError
from .formats.keras.dialect import to_keras3
from .layers.base import fmt_shape
from .model import Model
from .verify.metrics import compare

IGNORED_KEYS = {"name", "trainable", "dtype", "kernel_initializer", "bias_initializer", "kernel_regularizer",
                "bias_regularizer", "activity_regularizer", "kernel_constraint", "bias_constraint",
                "batch_input_shape", "quantization_config", "seed", "sparse", "ragged", "optional",
                "momentum", "renorm", "renorm_clipping", "renorm_momentum", "synchronized"}
IGNORED_SUFFIXES = ("_initializer", "_regularizer", "_constraint")  # gamma_initializer, embeddings_..., ...


@dataclass
class DiffResult:
    """Differences found, one line each, grouped by kind."""

    differences: list[tuple[str, str]] = field(default_factory=list)  # (kind, message)
    max_output_abs: float | None = None

    @property
    def same(self) -> bool:
        return not self.differences

    def add(self, kind: str, message: str) -> None:
        self.differences.append((kind, message))

    def to_json(self) -> dict:
        return {"same": self.same, "max_output_abs_err": self.max_output_abs,
                "differences": [{"kind": k, "message": m} for k, m in self.differences]}

    def render(self) -> str:
        if self.same:
            extra = f" (outputs agree, max abs diff {self.max_output_abs:.3g})" if self.max_output_abs is not None else ""
            return f"models are the same: config, shapes, params, weights and outputs{extra}"
        return "\n".join(f"{kind:8s} {msg}" for kind, msg in self.differences)


def _semantic(config: dict, rank: int | None = None) -> dict:
    """The keys that change what the layer computes; with ``rank`` (input rank = output rank), a
    negative ``axis`` counted from the front (Concatenate(axis=-1) on rank 2 is axis=1)."""
    out = {k: v for k, v in config.items() if k not in IGNORED_KEYS and not k.endswith(IGNORED_SUFFIXES)}
    axis = out.get("axis")
    if rank is not None and isinstance(axis, int) and not isinstance(axis, bool) and -rank <= axis < 0:
        out["axis"] = axis + rank
    return out


def _keras3(ls) -> tuple[str, dict]:
    """A layer's class and config in Keras 3's dialect, so a faithful Keras 2 -> 3 conversion (DepthwiseConv2D's
    dropped ``groups``, ThresholdedReLU as ReLU) compares equal; as read where Keras 3 has no form."""
    if ls.is_op:
        return ls.class_name, ls.config
    try:
        entry = to_keras3({"class_name": ls.class_name, "config": ls.config})
    except KcompatError:
        return ls.class_name, ls.config
    return entry["class_name"], entry["config"]


def _rank(info) -> int | None:
    """The rank a layer's ``axis`` counts in, when input and output ranks agree."""
    ins = info.input_shape if isinstance(info.input_shape, list) else [info.input_shape]
    out = info.output_shape
    if not isinstance(out, tuple) or not all(isinstance(s, tuple) and len(s) == len(out) for s in ins):
        return None
    return len(out)


def diff_models(a: Model, b: Model, atol: float = 0.0, seed: int = 0, batch: int = 2) -> DiffResult:
    """Compare two models; ``atol`` is the weight/output difference still counted as the same."""
    result = DiffResult()
    names_a = [l.name for l in a.graph.layers]  # nested models' layers as outer/inner
    names_b = [l.name for l in b.graph.layers]
    for n in names_a:
        if n not in names_b:
            result.add("layers", f"'{n}' only in A ({a.specs[n].class_name})")
    for n in names_b:
        if n not in names_a:
            result.add("layers", f"'{n}' only in B ({b.specs[n].class_name})")
    for la in a.graph.layers:
        if la.name not in names_b:
            continue
        lb = b.specs[la.name]
        (class_a, config_a), (class_b, config_b) = _keras3(la), _keras3(lb)
        if class_a != class_b:
            result.add("config", f"'{la.name}': class {la.class_name} vs {lb.class_name}")
            continue
        ia, ib = a.info[la.name], b.info[la.name]
        ca, cb = _semantic(config_a, _rank(ia)), _semantic(config_b, _rank(ib))
        for key in sorted(set(ca) | set(cb)):
            if ca.get(key) != cb.get(key):
                result.add("config", f"'{la.name}': {key} = {ca.get(key)!r} vs {cb.get(key)!r}")
        if ia.output_shape != ib.output_shape:
            result.add("shape", f"'{la.name}': {fmt_shape(ia.output_shape)} vs {fmt_shape(ib.output_shape)}")
        if ia.params != ib.params:
            result.add("params", f"'{la.name}': {ia.params} vs {ib.params}")
        _diff_weights(la, lb, ia, atol, result)
    _diff_outputs(a, b, atol, seed, batch, result)
    return result


def _diff_weights(la, lb, info, atol: float, result: DiffResult) -> None:
    wa, wb = la.weights, lb.weights
    if wa is None or wb is None:
        if (wa is None) != (wb is None):
            result.add("weights", f"'{la.name}': weights present in only one model")
        return
    names = [w.name for w in info.weights] or [str(i) for i in range(len(wa))]
    for i, (x, y) in enumerate(zip(wa, wb)):
        name = names[i] if i < len(names) else str(i)
        if x.shape != y.shape:
            result.add("weights", f"'{la.name}'/{name}: shape {fmt_shape(x.shape)} vs {fmt_shape(y.shape)}")
            continue
        errors = compare(x, y, atol=atol, rtol=0.0)
        if not errors.ok:
            result.add("weights", f"'{la.name}'/{name}: max abs diff {errors.max_abs_err:.6g}")
    if len(wa) != len(wb):
        result.add("weights", f"'{la.name}': {len(wa)} vs {len(wb)} weights")


def _diff_outputs(a: Model, b: Model, atol: float, seed: int, batch: int, result: DiffResult) -> None:
    if not (a.spec.has_weights and b.spec.has_weights):
        return
    shapes_a, shapes_b = a.input_shapes(), b.input_shapes()
    if shapes_a != shapes_b:
        result.add("inputs", f"input shapes {[fmt_shape(s) for s in shapes_a]} vs {[fmt_shape(s) for s in shapes_b]}")
        return
    if any(d is None for s in shapes_a for d in s[1:]):
        return
    from .verify.run import make_inputs  # a fixed batch size kept, integer inputs given integers
    xs, _ = make_inputs(a, batch, seed)
    ya, yb = a.predict(xs), b.predict(xs)
    if len(ya) != len(yb):
        result.add("outputs", f"{len(ya)} vs {len(yb)} outputs")
        return
    worst = 0.0
    for i, (p, q) in enumerate(zip(ya, yb)):
        if p.shape != q.shape:
            result.add("outputs", f"output {i}: shape {fmt_shape(p.shape)} vs {fmt_shape(q.shape)}")
            continue
        errors = compare(p, q, atol=atol, rtol=0.0)
        worst = max(worst, errors.max_abs_err)
        if not errors.ok:
            result.add("outputs", f"output {i} ('{a.output_names[i]}'): max abs diff {errors.max_abs_err:.6g} "
                                  f"on seeded inputs")
    result.max_output_abs = worst
