"""A conformance run as one self-contained HTML page: summary, per-case tables, an inline SVG plot per case.

The plot shows, for each layer (call node) of a case and for its final outputs, the error that
decides pass / fail against the tolerance: the smallest ``atol`` under which the layer passes at
the case's ``rtol`` (metrics.py ``min_passing_atol``; a layer passes exactly when it is at most
``atol``), isolated (circle) and chained (square), on a log scale, with ``atol`` as a dashed line.
No script, no external file: the page opens anywhere and can be attached to a CI run.
"""
from __future__ import annotations

import html
import math

from ..verify.report_text import num
from .run import CaseResult, SuiteResult
from .text import worst_errors

FLOOR = 1e-12  # exact matches (error 0) are drawn here
STYLE = """body{font-family:system-ui,sans-serif;margin:2em;max-width:75em}table{border-collapse:collapse;margin:.5em 0}
td,th{border:1px solid #ccc;padding:.2em .5em;text-align:left}td.n{text-align:right;font-family:monospace}
.ok{color:#176f2c}.fail{color:#b00020;font-weight:bold}.skip{color:#8a6d00}svg{border:1px solid #eee}"""


def html_report(result: SuiteResult) -> str:
    """The whole page as text."""
    counts = result.counts()
    verdict = "PASS" if result.ok else "FAIL"
    index = result.index
    parts = [f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>kcompat conformance: {_e(verdict)}</title>"
             f"<style>{STYLE}</style></head><body>",
             f"<h1>kcompat conformance: <span class='{'ok' if result.ok else 'fail'}'>{verdict}</span></h1>",
             f"<p>Candidate <b>{_e(result.candidate)}</b> on suite <code>{_e(result.folder)}</code> "
             f"({_e(index.get('format'))}; expected outputs from Keras {_e(index.get('keras_version'))}, "
             f"TensorFlow {_e(index.get('tensorflow_version'))}).</p>",
             f"<p>{counts['cases']} case(s): {counts['passed']} passed, {counts['failed']} failed, "
             f"{counts['not_implemented']} not implemented, {counts['missing']} without candidate outputs.</p>",
             "<table><tr><th>case</th><th>layer class</th><th>status</th><th>worst isolated abs</th>"
             "<th>worst chained abs</th><th>verdict</th></tr>"]
    for case in result.cases:
        parts.append(_summary_row(case))
    parts.append("</table>")
    for case in result.cases:
        parts.append(_case_section(case))
    parts.append("</body></html>\n")
    return "\n".join(parts)


def _summary_row(case: CaseResult) -> str:
    report = case.report
    worst_iso, worst_chain = worst_errors(report)
    verdict = case.problem if report is None else report.verdict()
    return (f"<tr><td><a href='#{_e(case.name)}'>{_e(case.name)}</a></td><td>{_e(case.layer_class)}</td>"
            f"<td class='{_cls(case.status)}'>{_e(case.status)}</td><td class='n'>{num(worst_iso)}</td>"
            f"<td class='n'>{num(worst_chain)}</td><td>{_e(verdict)}</td></tr>")


def _case_section(case: CaseResult) -> str:
    parts = [f"<h2 id='{_e(case.name)}'>{_e(case.name)} <small>({_e(case.layer_class)})</small></h2>"]
    manifest = case.manifest or {}
    config = manifest.get("variant", {}).get("config")
    if config is not None:
        parts.append(f"<p>config: <code>{_e(config)}</code>; input shape(s) (no batch): "
                     f"<code>{_e(manifest['variant'].get('shapes'))}</code></p>")
    report = case.report
    if report is None:
        parts.append(f"<p class='skip'>{_e(case.problem)}</p>")
        return "\n".join(parts)
    parts.append(plot_svg(case))
    parts.append("<table><tr><th>layer</th><th>type</th><th>shape</th><th>isolated abs</th><th>isolated rel</th>"
                 "<th>isolated ULP</th><th>chained abs</th><th>chained rel</th><th>status</th><th>problem</th></tr>")
    for d in report.layers:
        parts.append(f"<tr><td>{_e(d.name)}</td><td>{_e(d.class_name)}</td><td>{_e(d.output_shape)}</td>"
                     f"<td class='n'>{num(d.isolated_max_abs_err)}</td><td class='n'>{num(d.isolated_max_rel_err)}</td>"
                     f"<td class='n'>{num(d.isolated_max_ulp, ulp=True)}</td><td class='n'>{num(d.max_abs_err)}</td>"
                     f"<td class='n'>{num(d.max_rel_err)}</td><td class='{_cls(d.status, d.ok)}'>{_e(d.status)}</td>"
                     f"<td>{_e(d.problem or '')}</td></tr>")
    for o in report.outputs:
        parts.append(f"<tr><td>output {_e(o.name)}</td><td>(chained)</td><td></td><td></td><td></td><td></td>"
                     f"<td class='n'>{num(o.max_abs_err)}</td><td class='n'>{num(o.max_rel_err)}</td>"
                     f"<td class='{_cls('ok' if o.ok else 'fail')}'>{'ok' if o.ok else 'fail'}</td>"
                     f"<td>{_e(o.problem or '')}</td></tr>")
    parts.append(f"</table><p>{_e(report.verdict())}</p>")
    return "\n".join(parts)


def plot_svg(case: CaseResult) -> str:
    """Inline SVG: per layer and final output, the smallest passing atol isolated / chained vs atol."""
    report = case.report
    points = [(d.name, d.isolated_min_passing_atol, d.min_passing_atol)
              for d in report.layers if d.class_name != "InputLayer"]
    points += [(f"output {o.name}", None, o.min_passing_atol) for o in report.outputs]
    values = [x for _, a, b in points for x in (a, b) if x is not None and math.isfinite(x) and x > 0]
    top = 10 ** math.ceil(math.log10(max(values + [report.atol * 100, 1e-3])))
    decades = int(round(math.log10(top / FLOOR)))
    left, right, top_pad, bottom = 70, 20, 30, 110
    step = 90
    width, height = max(left + right + step * len(points), 640), 340
    plot_h = height - top_pad - bottom

    def y(value: float | None) -> float:
        if value is None:
            return float("nan")
        if not math.isfinite(value) or value > top:
            return top_pad
        return top_pad + plot_h * (1 - math.log10(max(value, FLOOR) / FLOOR) / decades)

    out = [f"<svg xmlns='http://www.w3.org/2000/svg' width='{width}' height='{height}' role='img' "
           f"aria-label='{_e(case.name)}: errors against the tolerance'>",
           f"<text x='{left}' y='16' font-size='12'>smallest passing atol at rtol={report.rtol:g}: "
           f"isolated (circle), chained (square); dashed line: atol={report.atol:g}; 0 drawn at 1e-12</text>"]
    for d in range(0, decades + 1, 2):
        value = FLOOR * 10 ** d
        out.append(f"<line x1='{left}' x2='{width - right}' y1='{y(value):.1f}' y2='{y(value):.1f}' stroke='#eee'/>"
                   f"<text x='{left - 6}' y='{y(value) + 4:.1f}' font-size='10' text-anchor='end'>{value:.0e}</text>")
    out.append(f"<line x1='{left}' x2='{width - right}' y1='{y(report.atol):.1f}' y2='{y(report.atol):.1f}' "
               f"stroke='#b00020' stroke-dasharray='6 4'/>")
    for i, (name, iso, chain) in enumerate(points):
        x = left + step * i + step / 2
        for value, shape in ((iso, "circle"), (chain, "square")):
            if value is None:
                continue
            colour = "#176f2c" if value <= report.atol else "#b00020"
            cy = y(value)
            if shape == "circle":
                out.append(f"<circle cx='{x - 8:.1f}' cy='{cy:.1f}' r='5' fill='{colour}'>"
                           f"<title>{_e(name)} isolated: {num(value)}</title></circle>")
            else:
                out.append(f"<rect x='{x + 3:.1f}' y='{cy - 5:.1f}' width='10' height='10' fill='none' "
                           f"stroke='{colour}' stroke-width='2'><title>{_e(name)} chained: {num(value)}</title></rect>")
        label = name if len(name) <= 22 else name[:21] + "…"
        out.append(f"<text transform='translate({x:.1f},{height - bottom + 12}) rotate(35)' font-size='10'>"
                   f"{_e(label)}</text>")
    out.append("</svg>")
    return "".join(out)


def _cls(status: str, ok: bool = True) -> str:
    if status == "ok":
        return "ok"
    return "skip" if status in ("missing", "not_implemented") and ok else "fail"


def _e(value) -> str:
    return html.escape(str(value), quote=True)
