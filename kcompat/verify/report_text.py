"""The verify report as terminal text (rich tables), made to read well on 771-layer models.

Default: the failing layers (at most ``MAX_FAILING`` rows), one line per layer class (how many,
how many fail, the worst isolated and chained error, how many not implemented / missing), the final
outputs, the verdict, the notes.
``all_rows``: one row per call node instead of the class lines. Error columns are max abs errors
("isolated": on the reference's inputs, "chained": on the candidate's own; "ULP": isolated). Every
table fits 100 columns: cells never wrap; long names end in an ellipsis.
"""
from __future__ import annotations

import io
import math
import shutil
from collections import defaultdict
from typing import Any

from .metrics import LayerDiff

MAX_FAILING = 40
OVERHEAD = 3  # characters rich adds per column (padding and separator) in a SIMPLE_HEAD table


def render_report(report: Any, console_width: int | None = None, all_rows: bool = False) -> str:
    """A report.Report as text (no colour)."""
    from rich.console import Console

    buf = io.StringIO()
    width = console_width or shutil.get_terminal_size((100, 24)).columns
    console = Console(file=buf, width=width, color_system=None, force_terminal=False)
    title = f"{report.candidate} vs {report.reference}"
    if all_rows:
        console.print(_row_table(report.layers, title, width))
    else:
        shown = [d for d in report.layers if not d.ok]
        if shown:
            extra = len(shown) - MAX_FAILING
            console.print(_row_table(shown[:MAX_FAILING], f"failing layers: {title}", width))
            if extra > 0:
                console.print(f"... and {extra} more (--all shows every layer)", markup=False, highlight=False)
        console.print(_class_table(report.layers, title, width))
    explained = [d for d in report.layers if d.problem and not d.ok
                 and not d.problem.endswith("values differ beyond tolerance")]
    for d in explained[:MAX_FAILING]:
        console.print(f"  {d.name}: {d.problem}", markup=False, highlight=False, soft_wrap=True)
    for o in report.outputs:
        state = "ok" if o.ok else "FAIL"
        figures = f"max abs {num(o.max_abs_err)}, max rel {num(o.max_rel_err)}" if o.max_abs_err is not None else o.problem
        console.print(f"output '{o.name}' (chained): {figures}: {state}", markup=False, highlight=False, soft_wrap=True)
    console.print(report.verdict(), markup=False, highlight=False, soft_wrap=True)
    for note in report.notes:
        console.print(f"note: {note}", markup=False, highlight=False, soft_wrap=True)
    return "".join(line.rstrip() + "\n" for line in buf.getvalue().splitlines())


def fitted_table(title: str, width: int, columns: list[tuple], rows: list[list[str]]):
    """A rich table whose columns fit ``width``: ``columns`` are (header, justify, weight); columns of
    weight 0 get their widest cell, the others (names, shapes) are cut to fit, the largest
    width * weight first (a lower weight keeps more of a column)."""
    from rich import box
    from rich.table import Table

    need = [max([len(c[0])] + [len(r[i]) for r in rows]) for i, c in enumerate(columns)]
    room = width - OVERHEAD * len(columns)
    flexible = [i for i, c in enumerate(columns) if c[2]]
    floor = {i: min(max(len(columns[i][0]), 6), need[i]) for i in flexible}
    widths = list(need)
    while sum(widths) > room:
        cut = [i for i in flexible if widths[i] > floor[i]]
        if not cut:
            break
        widths[max(cut, key=lambda i: widths[i] * columns[i][2])] -= 1
    table = Table(title=title, box=box.SIMPLE_HEAD, title_justify="left", pad_edge=False)
    for (header, justify, _), w in zip(columns, widths):
        table.add_column(header, justify=justify, no_wrap=True, overflow="ellipsis", width=w)
    for r in rows:
        table.add_row(*r)
    return table


def _row_table(rows: list[LayerDiff], title: str, width: int):
    """One row per call node: isolated and chained max abs errors side by side, and the status."""
    columns = [("layer", "left", 0.5), ("type", "left", 1), ("shape", "left", 1), ("params", "right", 0),
               ("isolated", "right", 0), ("ULP", "right", 0), ("chained", "right", 0), ("status", "left", 0)]
    cells = []
    for d in rows:
        params = str(d.params) if d.reference_params in (None, d.params) else f"{d.params}≠{d.reference_params}"
        cells.append([d.name, d.class_name, _shape(d.output_shape), params, num(d.isolated_max_abs_err),
                      num(d.isolated_max_ulp, ulp=True), num(d.max_abs_err), _status(d)])
    return fitted_table(title, width, columns, cells)


def _class_table(rows: list[LayerDiff], title: str, width: int):
    """One line per layer class: count, failing, worst isolated and chained abs error and where."""
    groups: dict[str, list[LayerDiff]] = defaultdict(list)
    for d in rows:
        groups[d.class_name].append(d)
    columns = [("type", "left", 1), ("layers", "right", 0), ("fail", "right", 0), ("worst isolated", "right", 0),
               ("at", "left", 1), ("worst chained", "right", 0), ("other", "left", 0.4)]
    cells = []
    for cls, ds in groups.items():
        iso = max((d for d in ds if d.isolated_max_abs_err is not None), key=lambda d: d.isolated_max_abs_err,
                  default=None)
        chain = max((d.max_abs_err for d in ds if d.max_abs_err is not None), default=None)
        other = ", ".join(f"{n} {s}" for s, n in _statuses(ds).items() if s not in ("ok", "mismatch"))
        cells.append([cls, str(len(ds)), str(sum(not d.ok for d in ds)), num(iso.isolated_max_abs_err) if iso else "-",
                      iso.name if iso else "-", num(chain), other])
    return fitted_table(f"by layer class: {title}", width, columns, cells)


def _statuses(rows: list[LayerDiff]) -> dict[str, int]:
    counts: dict[str, int] = defaultdict(int)
    for d in rows:
        counts[d.status.replace("_", " ") if d.compared else "not compared"] += 1
    return dict(counts)


def _status(d: LayerDiff) -> str:
    if not d.compared:
        return "-"
    if d.status == "ok" and d.chained_ok is False:
        return "ok (drift)"
    return d.status if d.ok or d.status in ("mismatch", "error") else d.status.upper()


def _shape(shape) -> str:
    if shape is None:
        return "-"
    if shape and isinstance(shape[0], (list, tuple)):
        return "[" + ", ".join(_shape(s) for s in shape) + "]"
    return "(" + ", ".join(str(s) for s in shape) + ("," if len(shape) == 1 else "") + ")"


def num(value: float | None, ulp: bool = False) -> str:
    """An error figure as the tables print it: '-' for none, 'inf', an integer ULP count, or 2.38e-07."""
    if value is None:
        return "-"
    if math.isinf(value):
        return "inf"
    if ulp:
        return str(int(value))
    return "0" if value == 0 else f"{value:.2e}"
