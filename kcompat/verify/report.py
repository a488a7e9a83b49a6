"""The verification Report: one row per call node, the final outputs, a verdict, notes; as JSON or text.

A row's plain error fields are chained, its ``isolated_*`` fields isolated, its ``status`` one of
metrics.STATUSES (decided by the isolated error; metrics.py says why). The report is OK when no
row fails and every final model output the candidate computed agrees chained.
The text form lives in report_text.py.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from .metrics import LayerDiff
from .passes import OutputDiff
from .report_text import num, render_report

LAYER_KEYS = ("name", "class_name", "ok", "output_shape", "reference_output_shape", "params", "reference_params",
              "max_abs_err", "max_rel_err", "max_ulp")
EXTRA_LAYER_KEYS = ("compared", "min_passing_atol", "reference_declared_shape", "problem", "layer", "node",
                    "status", "isolated_max_abs_err", "isolated_max_rel_err", "isolated_max_ulp",
                    "isolated_min_passing_atol", "chained_ok")
OUTPUT_KEYS = ("name", "ok", "max_abs_err", "max_rel_err", "max_ulp", "min_passing_atol", "problem")


@dataclass
class Report:
    """Result of verifying one model (a candidate) against one reference."""

    ok: bool
    reference: str  # e.g. "keras 3.15.1 (tensorflow)"
    atol: float
    rtol: float
    first_mismatch: str | None  # first failing node (isolated verdict) in graph order
    layers: list[LayerDiff]
    notes: list[str] = field(default_factory=list)
    candidate: str = "kcompat"
    outputs: list[OutputDiff] = field(default_factory=list)  # final model outputs, chained
    strict: bool = False

    @property
    def exit_code(self) -> int:
        """0 when everything matches, 1 otherwise (the CLI's exit status; 2 is for errors)."""
        return 0 if self.ok else 1

    @property
    def failing(self) -> list[LayerDiff]:
        """The rows that fail, in graph order."""
        return [d for d in self.layers if not d.ok]

    @property
    def failing_outputs(self) -> list[OutputDiff]:
        return [o for o in self.outputs if not o.ok]

    @property
    def min_passing_atol(self) -> float | None:
        """Smallest atol (at this rtol) under which every row's verdict error and every final output
        pass; inf if none does; None if shapes differ."""
        needs = [d.verdict_atol for d in self.layers if d.compared and d.status in ("ok", "mismatch")]
        needs += [o.min_passing_atol for o in self.outputs if o.problem is None or not o.ok]
        if any(n is None for n in needs):
            return None
        return max(needs, default=0.0)

    def count(self, status: str) -> int:
        return sum(d.status == status and d.compared for d in self.layers)

    def to_json(self) -> dict:
        """The JSON document as a dict for ``json.dumps`` (keys: ok, reference, candidate, atol, rtol,
        first_mismatch, layers, outputs, notes, min_passing_atol). Non-finite numbers become null."""
        layers = []
        for d in self.layers:
            row = {k: _finite(getattr(d, k)) for k in LAYER_KEYS + EXTRA_LAYER_KEYS}
            for k in ("max_ulp", "isolated_max_ulp"):
                if row[k] is not None:
                    row[k] = int(row[k])
            layers.append(row)
        outputs = []
        for o in self.outputs:
            row = {k: _finite(getattr(o, k)) for k in OUTPUT_KEYS}
            if row["max_ulp"] is not None:
                row["max_ulp"] = int(row["max_ulp"])
            outputs.append(row)
        return {"ok": self.ok, "reference": self.reference, "candidate": self.candidate, "atol": self.atol,
                "rtol": self.rtol, "first_mismatch": self.first_mismatch, "layers": layers, "outputs": outputs,
                "notes": list(self.notes), "min_passing_atol": _finite(self.min_passing_atol)}

    def verdict(self) -> str:
        """One line: OK, or the first failing layer (or drifting output) and the tolerance that would pass."""
        tol = f"atol={self.atol:g}, rtol={self.rtol:g}"
        compared = [d for d in self.layers if d.compared and d.status in ("ok", "mismatch")]
        skipped = {s: self.count(s) for s in ("not_implemented", "missing")}
        aside = "".join(f", {n} {s.replace('_', ' ')}" for s, n in skipped.items() if n)
        if self.ok:
            iso = _worst(compared, "isolated_max_abs_err")
            chain = _worst(compared, "max_abs_err")
            where = "bit-identical" if not (iso or chain) else ""
            if iso:
                where = f"largest isolated abs error {num(iso.isolated_max_abs_err)} at '{iso.name}'"
            if chain:
                where += ("; " if where else "") + f"chained drift up to {num(chain.max_abs_err)} at '{chain.name}'"
            return f"OK: {len(compared)} layer(s) match {self.reference} within {tol} ({where}{aside})"
        failing = self.failing
        if not failing:
            o = self.failing_outputs[0]
            line = (f"MISMATCH: every layer matches in isolation, but the model output '{o.name}' drifts beyond "
                    f"tolerance when run chained: {o.problem}")
            if o.max_abs_err is not None:
                line += f" (max abs {num(o.max_abs_err)}, max rel {num(o.max_rel_err)})"
            return line + self._tolerance_hint()
        d = failing[0]
        if d.status == "mismatch":
            line = f"MISMATCH: first mismatching layer '{d.name}' ({d.class_name}): {d.problem}"
            abs_err, rel_err, ulp = ((d.isolated_max_abs_err, d.isolated_max_rel_err, d.isolated_max_ulp)
                                     if d.isolated_max_abs_err is not None else (d.max_abs_err, d.max_rel_err, d.max_ulp))
            if abs_err is not None:
                line += f" (max abs {num(abs_err)}, max rel {num(rel_err)}, max ULP {num(ulp, ulp=True)})"
        elif d.status == "error":
            line = f"FAIL: layer '{d.name}' ({d.class_name}) raised {d.problem}"
        else:
            line = f"FAIL: layer '{d.name}' ({d.class_name}) is {d.status.replace('_', ' ')} (--strict)"
        if len(failing) > 1:
            names = ", ".join(f"'{x.name}'" for x in failing[:8]) + (" ..." if len(failing) > 8 else "")
            line += f"; {len(failing)} layers fail: {names}"
        return line + self._tolerance_hint()

    def _tolerance_hint(self) -> str:
        if any(d.status in ("error", "not_implemented", "missing") for d in self.failing):
            return ""
        need = self.min_passing_atol
        if need is None or math.isinf(need):
            return "; no tolerance would pass (shape or NaN/inf mismatch)"
        if any(d.compared and d.reference_params is not None and d.reference_params != d.params for d in self.layers):
            return "; no tolerance would pass (parameter counts differ)"
        return f"; smallest atol that passes every layer with rtol={self.rtol:g}: {need:.3g}"

    def render(self, console_width: int | None = None, all_rows: bool = False) -> str:
        """The text report (report_text.py): by default failing rows, one line per layer class, the
        outputs, the verdict and notes; ``all_rows`` one row per call node instead."""
        return render_report(self, console_width, all_rows)


def _worst(rows: list[LayerDiff], key: str) -> LayerDiff | None:
    rows = [d for d in rows if getattr(d, key)]
    return max(rows, key=lambda d: getattr(d, key)) if rows else None


def _finite(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value
