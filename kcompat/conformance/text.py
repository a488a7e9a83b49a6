"""A conformance run as terminal text: the cases that fail (every case with ``all_rows``), then one
summary line with the counts. Fits 100 columns (cells never wrap)."""
from __future__ import annotations

import io
import shutil

from ..verify.report_text import fitted_table, num
from .run import SuiteResult


def render_suite(result: SuiteResult, console_width: int | None = None, all_rows: bool = False) -> str:
    """The run as text (no colour)."""
    from rich.console import Console

    buf = io.StringIO()
    width = console_width or shutil.get_terminal_size((100, 24)).columns
    console = Console(file=buf, width=width, color_system=None, force_terminal=False)
    shown = result.cases if all_rows else [c for c in result.cases if not c.ok]
    if shown:
        cells = []
        for c in shown:
            iso, chain = worst_errors(c.report)
            why = c.problem or ""
            if c.report is not None and c.report.failing:
                d = c.report.failing[0]
                detail = d.problem if d.problem and not d.problem.endswith("differ beyond tolerance") else None
                why = f"{d.name}: {d.status}" + (f" ({detail})" if detail else "")
            cells.append([c.name, c.status, num(iso), num(chain), why])
        columns = [("case", "left", 0.3), ("status", "left", 0), ("worst isolated", "right", 0),
                   ("worst chained", "right", 0), ("first failure", "left", 1)]
        console.print(fitted_table(f"conformance: {result.candidate}", width, columns, cells))
    counts = result.counts()
    verdict = "PASS" if result.ok else "FAIL"
    console.print(f"{verdict}: {counts['passed']}/{counts['cases']} case(s) pass, {counts['failed']} fail, "
                  f"{counts['not_implemented']} not implemented, {counts['missing']} without candidate outputs "
                  f"({result.candidate})",
                  markup=False, highlight=False, soft_wrap=True)
    return "".join(line.rstrip() + "\n" for line in buf.getvalue().splitlines())


def worst_errors(report) -> tuple[float | None, float | None]:
    """The worst isolated and chained abs error over a case's layers (input layers left out)."""
    if report is None:
        return None, None
    rows = [d for d in report.layers if d.class_name != "InputLayer"]
    iso = max((d.isolated_max_abs_err for d in rows if d.isolated_max_abs_err is not None), default=None)
    chain = max((d.max_abs_err for d in rows if d.max_abs_err is not None), default=None)
    return iso, chain
