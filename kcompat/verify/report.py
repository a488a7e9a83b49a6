"""The verification Report: one row per layer, a verdict, notes; as JSON or a rich table."""
from __future__ import annotations

import io
import math
import shutil
from dataclasses import dataclass, field
from typing import Any

from .metrics import LayerDiff

LAYER_KEYS = ("name", "class_name", "ok", "output_shape", "reference_output_shape", "params", "reference_params",
              "max_abs_err", "max_rel_err", "max_ulp")
EXTRA_LAYER_KEYS = ("compared", "min_passing_atol", "reference_declared_shape", "problem")


@dataclass
class Report:
    """Result of verifying one model against one reference."""

    ok: bool
    reference: str  # e.g. "keras 3.15.1 (tensorflow)"
    atol: float
    rtol: float
    first_mismatch: str | None  # first failing layer in topological order
    layers: list[LayerDiff]
    notes: list[str] = field(default_factory=list)

    @property
    def exit_code(self) -> int:
        """0 when every layer matches, 1 otherwise (the CLI's exit status; 2 is for errors)."""
        return 0 if self.ok else 1

    @property
    def min_passing_atol(self) -> float | None:
        """Smallest atol (at this rtol) under which every layer passes; inf if none; None if shapes differ."""
        compared = [d for d in self.layers if d.compared]
        if any(d.min_passing_atol is None for d in compared):
            return None
        return max((d.min_passing_atol for d in compared), default=0.0)

    def to_json(self) -> dict:
        """The JSON document as a dict for ``json.dumps`` (keys: ok, reference, atol, rtol,
        first_mismatch, layers, notes, min_passing_atol). Non-finite numbers become null."""
        layers = []
        for d in self.layers:
            row = {k: _finite(getattr(d, k)) for k in LAYER_KEYS + EXTRA_LAYER_KEYS}
            if row["max_ulp"] is not None:
                row["max_ulp"] = int(row["max_ulp"])
            layers.append(row)
        return {"ok": self.ok, "reference": self.reference, "atol": self.atol, "rtol": self.rtol,
                "first_mismatch": self.first_mismatch, "layers": layers,
                "notes": list(self.notes), "min_passing_atol": _finite(self.min_passing_atol)}

    def verdict(self) -> str:
        """One line: OK, or the first diverging layer and the tolerance that would pass."""
        tol = f"atol={self.atol:g}, rtol={self.rtol:g}"
        compared = [d for d in self.layers if d.compared]
        if self.ok:
            worst = max(compared, key=lambda d: d.max_abs_err or 0.0, default=None)
            where = (f" (largest abs error {_num(worst.max_abs_err)} at '{worst.name}')" if worst and worst.max_abs_err
                     else " (bit-identical)")
            return f"OK: {len(compared)} layer(s) match {self.reference} within {tol}{where}"
        d = next(d for d in self.layers if d.name == self.first_mismatch)
        line = f"MISMATCH: first diverging layer '{d.name}' ({d.class_name}): {d.problem}"
        if d.max_abs_err is not None:
            line += f" (max abs {_num(d.max_abs_err)}, max rel {_num(d.max_rel_err)}, max ULP {_num(d.max_ulp, ulp=True)})"
        need = self.min_passing_atol
        if need is None or math.isinf(need):
            line += "; no tolerance would pass (shape or NaN/inf mismatch)"
        elif any(d.reference_params is not None and d.reference_params != d.params for d in compared):
            line += "; no tolerance would pass (parameter counts differ)"
        else:
            line += f"; smallest atol that passes every layer with rtol={self.rtol:g}: {need:.3g}"
        return line

    def render(self, console_width: int | None = None) -> str:
        """A rich table (one row per layer), the verdict line and the notes, as plain text."""
        from rich.console import Console
        from rich.table import Table

        table = Table(title=f"kcompat vs {self.reference}")
        for col, justify in (("layer", "left"), ("type", "left"), ("shape", "left"), ("ref shape", "left"),
                             ("params", "right"), ("ref params", "right"), ("max abs", "right"),
                             ("max rel", "right"), ("max ULP", "right"), ("ok", "center")):
            table.add_column(col, justify=justify, no_wrap=justify != "left", overflow="fold")
        for d in self.layers:
            status = "-" if not d.compared else ("ok" if d.ok else "FAIL")
            table.add_row(d.name, d.class_name, _shape(d.output_shape), _shape(d.reference_output_shape),
                          str(d.params), "?" if d.reference_params is None else str(d.reference_params),
                          _num(d.max_abs_err), _num(d.max_rel_err), _num(d.max_ulp, ulp=True), status)
        buf = io.StringIO()
        width = console_width or shutil.get_terminal_size((120, 24)).columns
        console = Console(file=buf, width=width, color_system=None, force_terminal=False)
        console.print(table)
        console.print(self.verdict(), markup=False, highlight=False, soft_wrap=True)
        for note in self.notes:
            console.print(f"note: {note}", markup=False, highlight=False, soft_wrap=True)
        return buf.getvalue()


def _finite(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def _num(value: float | None, ulp: bool = False) -> str:
    if value is None:
        return "-"
    if math.isinf(value):
        return "inf"
    if ulp:
        return str(int(value))
    return "0" if value == 0 else f"{value:.2e}"


def _shape(shape: Any) -> str:
    if shape is None:
        return "-"
    if shape and isinstance(shape[0], (list, tuple)):
        return "[" + ", ".join(_shape(s) for s in shape) + "]"
    return "(" + ", ".join(str(s) for s in shape) + ("," if len(shape) == 1 else "") + ")"
