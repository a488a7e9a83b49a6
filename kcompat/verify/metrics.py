"""Per-layer differences between a candidate's outputs and a reference's: shapes, params, errors.

Definitions (``a`` = the candidate, kcompat by default; ``b`` = the reference; elementwise, in float64):

- abs error   ``|a - b|``
- rel error   ``|a - b| / max(|b|, tiny)`` with ``tiny`` = the smallest normal float32
  (1.18e-38), so a zero reference gives a huge but finite number instead of a division by
  zero. It explodes near zero (relu outputs, cancellations); pass/fail therefore uses
  ``atol`` and ``rtol`` together, never rel error alone.
- ULP distance  the number of float32 values between ``a`` and ``b``: both are cast to
  float32, their bit patterns are mapped to integers that increase with the value
  (negative floats mirrored, so -0.0 and 0.0 are both 0) and subtracted. 1.0 and
  ``np.nextafter(np.float32(1), np.float32(2))`` are 1 ULP apart. Near zero the count is
  huge (there are ~1e9 floats between 1e-30 and 1e-3), so read it on values of order one.
- special values  equal values are 0 apart by every measure, including ``inf == inf``
  and ``NaN`` vs ``NaN``; ``NaN`` vs a number, or ``inf`` vs anything else, is a mismatch
  with infinite errors and no passing tolerance.
- pass/fail  numpy ``allclose`` semantics: ``|a - b| <= atol + rtol * |b|``.

Default tolerances for float32 (``ATOL = 1e-5``, ``RTOL = 1e-4``): float32 epsilon is
1.19e-7; a matmul or convolution reduces over K terms and accumulates about sqrt(K) * eps
relative error (a few 1e-6 for K in the thousands), and TensorFlow (oneDNN, blocked and
vectorised) orders its sums differently from NumPy; transcendental functions (exp, tanh,
erf) differ by a few ULP between libm, Eigen and MKL. ``rtol = 1e-4`` leaves roughly 100x
headroom over those effects on values of order one, ``atol = 1e-5`` covers results that
cancel to near zero, and both are still far below a real bug (a wrong weight layout,
activation or epsilon gives errors of 1e-3 and up).

Isolated and chained: every call node is measured twice. *Isolated*, the candidate is given the
reference's own inputs to that node: the error is this layer's alone. *Chained*, it runs on its own
previous outputs: the error is how far the model has drifted by that layer. Deep models drift
(float32 rounding through 100+ layers crosses 1e-5 in NASNet and DenseNet-121) without any layer
being wrong, so a layer's ``status`` is decided by its isolated error (the chained one where no
isolated run exists, e.g. a ``--candidate-outputs`` file), and the model's final outputs must
also agree chained.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

ATOL = 1e-5
RTOL = 1e-4
TINY = float(np.finfo(np.float32).tiny)


@dataclass
class Errors:
    """Elementwise error summary of one array pair (all 0 for identical arrays)."""

    max_abs_err: float
    max_rel_err: float
    max_ulp: float  # an integer count; inf for a NaN / inf mismatch
    min_passing_atol: float  # smallest atol that passes with the given rtol; inf if none does
    ok: bool


STATUSES = ("ok", "mismatch", "not_implemented", "missing", "error")


@dataclass
class LayerDiff:
    """One call node compared: the candidate's output against the reference's.

    The unprefixed error fields are CHAINED (the candidate on its own previous outputs); the
    ``isolated_`` ones are the candidate on the reference's inputs to this node (None when no
    isolated run exists). ``status`` is one of STATUSES; ``ok`` is False for "mismatch" and
    "error" (and, under ``strict``, for "not_implemented" and "missing").
    """

    name: str  # the node key: the layer name, or ``name:N`` for the layer's call N (reference.py)
    class_name: str
    ok: bool
    output_shape: Any  # the candidate's actual output shape (list of shapes for a multi-output layer)
    reference_output_shape: Any  # the reference's actual output shape; None if it gave no output
    params: int
    reference_params: int | None
    max_abs_err: float | None  # None when the shapes differ or there is no output to compare
    max_rel_err: float | None
    max_ulp: float | None
    min_passing_atol: float | None
    compared: bool = True  # False when the reference has no output for this node
    reference_declared_shape: Any = None  # what the reference *claims* (Keras's layer.output.shape)
    problem: str | None = None  # why the status is not "ok", in words
    status: str = "ok"
    layer: str | None = None  # the layer name (``name`` without ``:N``)
    node: int = 0
    isolated_max_abs_err: float | None = None
    isolated_max_rel_err: float | None = None
    isolated_max_ulp: float | None = None
    isolated_min_passing_atol: float | None = None
    chained_ok: bool | None = None  # the chained errors within tolerance (None: no chained output)

    def __post_init__(self):
        if self.layer is None:
            self.layer = self.name

    @property
    def verdict_atol(self) -> float | None:
        """The smallest atol that passes the error that decides the status (isolated, else chained)."""
        return self.min_passing_atol if self.isolated_min_passing_atol is None else self.isolated_min_passing_atol


def ordered_bits(x: np.ndarray) -> np.ndarray:
    """float32 bit patterns as int64 that increase with the value (-0.0 and 0.0 both map to 0)."""
    bits = np.ascontiguousarray(x, dtype=np.float32).view(np.int32).astype(np.int64)
    return np.where(bits < 0, -(bits & 0x7FFFFFFF), bits)


def ulp_distance(a: Any, b: Any) -> np.ndarray:
    """Elementwise float32 ULP distance (float64 array; NaN vs NaN is 0, NaN vs a number is inf)."""
    a32 = np.asarray(a, dtype=np.float32)
    b32 = np.asarray(b, dtype=np.float32)
    dist = np.abs(ordered_bits(a32) - ordered_bits(b32)).astype(np.float64)
    na, nb = np.isnan(a32), np.isnan(b32)
    dist[na & nb] = 0.0
    dist[na ^ nb] = np.inf
    return dist


def compare(a: Any, b: Any, atol: float = ATOL, rtol: float = RTOL) -> Errors:
    """Abs / rel / ULP errors and the allclose verdict for two arrays of the same shape."""
    a64 = np.asarray(a, dtype=np.float64)
    b64 = np.asarray(b, dtype=np.float64)
    if a64.size == 0:
        return Errors(0.0, 0.0, 0.0, 0.0, True)
    same = (a64 == b64) | (np.isnan(a64) & np.isnan(b64))  # exact matches, inf == inf, NaN == NaN
    finite = np.isfinite(a64) & np.isfinite(b64)
    bad = ~same & ~finite  # NaN vs number, inf vs anything else: no tolerance passes
    with np.errstate(invalid="ignore", over="ignore"):
        abs_err = np.where(same, 0.0, np.where(bad, np.inf, np.abs(a64 - b64)))
        rel_err = np.where(same, 0.0, np.where(bad, np.inf, abs_err / np.maximum(np.abs(b64), TINY)))
        need = np.where(same, 0.0, np.where(bad, np.inf, abs_err - rtol * np.abs(b64)))
    min_atol = max(float(np.max(need)), 0.0)
    ulp = float(np.max(ulp_distance(a64, b64)))
    return Errors(float(np.max(abs_err)), float(np.max(rel_err)), ulp, min_atol,
                  bool(not bad.any() and min_atol <= atol))


def _flat(value: Any) -> list[np.ndarray]:
    """A layer output as a list of arrays (a multi-output layer gives several)."""
    if isinstance(value, (list, tuple)):
        return [np.asarray(v) for v in value]
    return [np.asarray(value)]


def _shape_of(value: Any) -> Any:
    if isinstance(value, (list, tuple)):
        return [list(np.shape(v)) for v in value]
    return list(np.shape(value))


def diff_layer(name: str, class_name: str, ours: Any, theirs: Any, params: int, reference_params: int | None,
               atol: float = ATOL, rtol: float = RTOL) -> LayerDiff:
    """Compare one layer's output (an array or a list of arrays) with the reference's."""
    shape = _shape_of(ours)
    if theirs is None:
        return LayerDiff(name, class_name, True, shape, None, params, reference_params,
                         None, None, None, None, compared=False, status="missing",
                         problem="the reference has no output for it")
    ref_shape = _shape_of(theirs)
    params_ok = reference_params is None or reference_params == params
    problem = None if params_ok else f"params {params} != reference {reference_params}"
    if shape != ref_shape:
        return LayerDiff(name, class_name, False, shape, ref_shape, params, reference_params,
                         None, None, None, None, problem=f"output shape {shape} != reference {ref_shape}",
                         status="mismatch")
    parts = [compare(a, b, atol, rtol) for a, b in zip(_flat(ours), _flat(theirs))]
    ok = params_ok and all(p.ok for p in parts)
    if problem is None and not ok:
        problem = "values differ beyond tolerance"
    return LayerDiff(name, class_name, ok, shape, ref_shape, params, reference_params,
                     max((p.max_abs_err for p in parts), default=0.0),
                     max((p.max_rel_err for p in parts), default=0.0),
                     max((p.max_ulp for p in parts), default=0.0),
                     max((p.min_passing_atol for p in parts), default=0.0), problem=problem,
                     status="ok" if ok else "mismatch")


def listed_shape(shape: Any) -> Any:
    """A shape (or a list of shapes) as lists, as JSON writes them; None stays None."""
    if shape is None:
        return None
    if isinstance(shape, list) and shape and isinstance(shape[0], (list, tuple)):
        return [list(s) for s in shape]
    return list(shape)


def shape_matches(declared: Any, actual: Any) -> bool:
    """True when a declared shape (None = any size) fits an actual shape; lists compare item by item."""
    if declared is None or actual is None:
        return True
    if declared and isinstance(declared[0], (list, tuple)):
        return (isinstance(actual, list) and len(declared) == len(actual)
                and all(shape_matches(d, a) for d, a in zip(declared, actual)))
    return len(declared) == len(actual) and all(d is None or d == a for d, a in zip(declared, actual))


def first_mismatch(diffs: list[LayerDiff]) -> str | None:
    """The first failing node in the order given (topological), or None."""
    return next((d.name for d in diffs if not d.ok), None)
