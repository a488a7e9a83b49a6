"""The isolated and chained passes: a candidate over every call node, against a reference's outputs.

For each call node in graph order (``Model.order``):

- isolated: the candidate computes the node from the REFERENCE's outputs of the nodes it reads;
  its error is this layer's alone ("is this layer right?");
- chained: the candidate computes it from its OWN previous outputs; the error is the drift
  accumulated by here ("how far has the model drifted?"). Where the candidate gives no output
  (not implemented, an error) the chain goes on with the reference's output, and a note says so.

A node's status follows its isolated error (metrics.py explains why); the model's final outputs
are compared chained, separately (``OutputDiff``). A precomputed candidate (an .npz) has only
the chained side. Chained outputs are dropped once no later node reads them.
Reference: kcompat/model.py (``run_all``, the same walk for kcompat alone).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from .candidate import Candidate
from .metrics import LayerDiff, compare, diff_layer, listed_shape
from .progress import Progress
from .reference import ReferenceResult, node_key

SOFT = ("not_implemented", "missing")  # a failure only under strict


@dataclass
class Outcome:
    """What the candidate gave for one node in one pass: a value, or why not."""

    value: Any = None
    status: str | None = None  # None: computed; "not_implemented", "error", "missing", "unavailable"
    message: str | None = None


@dataclass
class OutputDiff:
    """One final model output, candidate (chained) against the reference."""

    name: str  # the output's key: node key, plus ``[i]`` for output i of a multi-output layer
    ok: bool
    max_abs_err: float | None
    max_rel_err: float | None
    max_ulp: float | None
    min_passing_atol: float | None
    problem: str | None = None


class _RefValues:
    """The reference's outputs addressed by (layer, node), as ``Model.node_args`` reads values."""

    def __init__(self, result: ReferenceResult):
        self.outputs = result.outputs

    def __getitem__(self, key: tuple) -> Any:
        return self.outputs[node_key(*key)]

    def __contains__(self, key: tuple) -> bool:
        return node_key(*key) in self.outputs


def run_passes(model, candidate: Candidate, result: ReferenceResult, inputs: list[np.ndarray],
               atol: float, rtol: float, strict: bool = False, progress: Progress | None = None
               ) -> tuple[list[LayerDiff], list[OutputDiff], list[str], dict]:
    """Both passes over every call node. Returns (rows in graph order, final output diffs, notes,
    {node key: the candidate's output} for the failing rows, for the notes that explain them)."""
    progress = progress or Progress()
    progress.phase(f"{candidate.name}: isolated + chained", len(model.order))
    ref = _RefValues(result)
    feed = model.feed(inputs)
    masks = model.node_masks(inputs)  # Keras masks (Embedding mask_zero...): kcompat's, for both passes
    chained: dict[tuple, Any] = {}
    own: set = set()  # nodes whose chained value is the candidate's own
    substituted: list[str] = []
    keep = {(r.layer, r.node) for r in model.spec.outputs}
    last_use = model.last_use()
    rows, failing = [], {}
    for step, key in enumerate(model.order):
        name, k = key
        nkey = node_key(name, k)
        ref_value = ref.outputs.get(nkey)
        if key in feed:
            chained[key], iso = feed[key], Outcome(feed[key])  # an input is given, so exact both ways
            chain = iso
            own.add(key)
        else:
            iso, chain = _compute(model, candidate, key, nkey, ref, chained, masks)
            if chain.value is not None:
                chained[key] = chain.value
                own.add(key)
            elif ref_value is not None and not candidate.precomputed:
                chained[key] = ref_value
                substituted.append(nkey)
        row = node_row(model, key, iso, chain, result, atol, rtol, strict)
        rows.append(row)
        if not row.ok:
            failing[nkey] = iso.value if iso is not None and iso.value is not None else chain.value
        for dep in set(model.node_deps(key)):
            if last_use.get(dep) == step and dep not in keep:
                chained.pop(dep, None)
        progress.advance()
    notes = []
    if substituted:
        shown = ", ".join(f"'{n}'" for n in substituted[:5]) + (f" and {len(substituted) - 5} more"
                                                                 if len(substituted) > 5 else "")
        notes.append(f"the chained run took the reference's output where {candidate.name} gave none "
                     f"({shown}), so chained errors after those layers measure the rest of the model only")
    return rows, output_diffs(model, chained, own, result, atol, rtol), notes, failing


def _compute(model, candidate: Candidate, key: tuple, nkey: str, ref: _RefValues,
             chained: dict, masks: dict | None = None) -> tuple[Outcome | None, Outcome]:
    """(isolated, chained) outcomes of one non-input node."""
    if candidate.precomputed:
        value = candidate.output(nkey)
        return None, Outcome(value) if value is not None else Outcome(status="missing",
                                                                       message="not in the candidate's outputs")
    deps = model.node_deps(key)
    iso = _call(model, candidate, key, ref, masks) if all(d in ref for d in deps) else Outcome(status="unavailable")
    if not all(d in chained for d in deps):
        return iso, Outcome(status="unavailable")
    if iso.status is None and all(chained[d] is ref[d] for d in deps):  # same inputs: same output
        return iso, iso
    return iso, _call(model, candidate, key, chained, masks)


def _call(model, candidate: Candidate, key: tuple, values: Any, masks: dict | None = None) -> Outcome:
    try:
        return Outcome(candidate.call(model, key, values, masks))
    except NotImplementedError as e:
        return Outcome(status="not_implemented", message=_message(e, "not implemented"))
    except Exception as e:  # the candidate's own failure: reported on its row, the run goes on
        return Outcome(status="error", message=f"{type(e).__name__}: {_message(e, 'no message')}")


def _message(e: Exception, default: str) -> str:
    lines = str(e).strip().splitlines()
    text = lines[0] if lines else default
    return text if len(text) <= 300 else text[:300] + "..."


def node_row(model, key: tuple, iso: Outcome | None, chain: Outcome, result: ReferenceResult,
             atol: float, rtol: float, strict: bool) -> LayerDiff:
    """One row: chained errors in the plain fields, isolated ones in ``isolated_*``, and the status."""
    name, k = key
    nkey = node_key(name, k)
    info = model.info[name]
    ref_value, ref_params = result.outputs.get(nkey), result.params.get(name)
    chained = None if chain.value is None else diff_layer(nkey, info.class_name, chain.value, ref_value,
                                                          info.params, ref_params, atol, rtol)
    isolated = None if iso is None or iso.value is None else diff_layer(
        nkey, info.class_name, iso.value, ref_value, info.params, ref_params, atol, rtol)
    base = chained or isolated or LayerDiff(nkey, info.class_name, True, None, _shape(ref_value), info.params,
                                            ref_params, None, None, None, None, compared=ref_value is not None)
    base.layer, base.node = name, k
    base.reference_output_shape = _shape(ref_value)
    base.reference_declared_shape = listed_shape(result.declared_shapes.get(name)) if k == 0 else None
    if isolated is not None:
        base.isolated_max_abs_err, base.isolated_max_rel_err = isolated.max_abs_err, isolated.max_rel_err
        base.isolated_max_ulp, base.isolated_min_passing_atol = isolated.max_ulp, isolated.min_passing_atol
    if chained is None:
        base.min_passing_atol = base.max_abs_err = base.max_rel_err = base.max_ulp = None
    base.chained_ok = None if chained is None or ref_value is None else chained.ok
    failed = next((o for o in (iso, chain) if o is not None and o.status in ("error", "not_implemented")), None)
    if failed is not None:
        base.status, base.problem = failed.status, failed.message
    elif ref_value is None:
        base.status, base.compared, base.problem = "missing", False, "the reference has no output for it"
    elif chain.status == "missing" and isolated is None:
        base.status, base.problem = "missing", chain.message
    elif isolated is None and chained is None:  # an input has neither a candidate nor a reference value
        base.status, base.problem = "missing", "not computed: an input has no value on either side"
    else:
        verdict = isolated if isolated is not None else chained
        base.status = verdict.status
        base.problem = None if verdict.ok else (f"isolated: {verdict.problem}" if verdict is isolated
                                                else verdict.problem)
    base.ok = base.status == "ok" or (base.status in SOFT and (not strict or not base.compared))
    return base


def output_diffs(model, chained: dict, own: set, result: ReferenceResult, atol: float, rtol: float
                 ) -> list[OutputDiff]:
    """Each final model output the candidate computed, chained, against the reference's."""
    diffs = []
    for ref in model.spec.outputs:
        key = (ref.layer, ref.node)
        value, theirs = chained.get(key), result.node_output(ref.layer, ref.node)
        is_list = isinstance(value, list) or isinstance(theirs, list)
        name = node_key(*key) + (f"[{ref.index}]" if is_list else "")
        if isinstance(value, list):
            value = value[ref.index]
        if isinstance(theirs, list):
            theirs = theirs[ref.index]
        if key not in own or theirs is None:
            why = "the candidate did not compute it" if key not in own else "the reference has no output for it"
            diffs.append(OutputDiff(name, True, None, None, None, None, problem=f"not compared: {why}"))
            continue
        if np.shape(value) != np.shape(theirs):
            diffs.append(OutputDiff(name, False, None, None, None, None,
                                    problem=f"shape {list(np.shape(value))} != reference {list(np.shape(theirs))}"))
            continue
        e = compare(value, theirs, atol, rtol)
        diffs.append(OutputDiff(name, e.ok, e.max_abs_err, e.max_rel_err, e.max_ulp, e.min_passing_atol,
                                None if e.ok else "values differ beyond tolerance"))
    return diffs


def _shape(value: Any) -> Any:
    if value is None:
        return None
    if isinstance(value, (list, tuple)):
        return [list(np.shape(v)) for v in value]
    return list(np.shape(value))
