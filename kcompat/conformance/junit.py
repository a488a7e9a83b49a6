"""A conformance run as JUnit XML, the format every CI shows (GitLab, Jenkins, GitHub test reporters).

One ``<testsuite>`` per case, one ``<testcase>`` per layer call node (input layers left out) and one
per final model output (chained): a mismatch is a ``<failure>`` whose message carries the isolated
and chained errors and the tolerance; a candidate exception an ``<error>``; a layer not implemented
or missing is ``<skipped>`` (a ``<failure>`` under --strict). A case without candidate outputs is
one skipped testcase.
Reference: the JUnit XML schema as read by Jenkins (https://llg.cubic.org/docs/junit/).
"""
from __future__ import annotations

import xml.etree.ElementTree as ET

from ..verify.report_text import num
from .run import CaseResult, SuiteResult


def junit_xml(result: SuiteResult) -> str:
    """The whole run as a JUnit XML document (UTF-8 text, with the XML declaration)."""
    root = ET.Element("testsuites", name=f"kcompat conformance: {result.candidate}")
    totals = {"tests": 0, "failures": 0, "errors": 0, "skipped": 0}
    for case in result.cases:
        suite = _suite(case)
        root.append(suite)
        for key in totals:
            totals[key] += int(suite.get(key))
    for key, value in totals.items():
        root.set(key, str(value))
    ET.indent(root)
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(root, encoding="unicode") + "\n"


def _suite(case: CaseResult) -> ET.Element:
    suite = ET.Element("testsuite", name=case.name)
    classname = f"kcompat.conformance.{case.name}"
    counts = {"tests": 0, "failures": 0, "errors": 0, "skipped": 0}

    def add(name: str, kind: str | None = None, message: str = "", text: str = "") -> None:
        tc = ET.SubElement(suite, "testcase", classname=classname, name=name, time="0")
        counts["tests"] += 1
        if kind is not None:
            child = ET.SubElement(tc, kind, message=message)
            if kind != "skipped":
                child.set("type", name.split(" ")[0] if kind == "error" else "mismatch")
                child.text = text or message
            counts[{"failure": "failures", "error": "errors", "skipped": "skipped"}[kind]] += 1

    if case.report is None:
        add(f"{case.layer_class} (whole case)", "failure" if case.strict else "skipped", case.problem or "")
    else:
        report = case.report
        tol = f"atol={report.atol:g}, rtol={report.rtol:g}"
        for d in report.layers:
            if d.class_name == "InputLayer":
                continue
            name = f"{d.name} ({d.class_name})"
            figures = (f"isolated max abs {num(d.isolated_max_abs_err)}, max rel {num(d.isolated_max_rel_err)}, "
                       f"max ULP {num(d.isolated_max_ulp, ulp=True)}; chained max abs {num(d.max_abs_err)}, "
                       f"max rel {num(d.max_rel_err)}; tolerance {tol}")
            if d.status == "error":
                add(name, "error", d.problem or "error", f"{d.problem}\n{figures}")
            elif d.status in ("not_implemented", "missing"):
                add(name, "skipped" if d.ok else "failure", f"{d.status.replace('_', ' ')}: {d.problem or ''}")
            elif not d.ok:
                add(name, "failure", f"{d.problem}: {figures}", f"{d.problem}\n{figures}\n"
                                                                  f"output shape {d.output_shape}, reference "
                                                                  f"{d.reference_output_shape}")
            else:
                add(name)
        for o in report.outputs:
            name = f"output {o.name} (chained)"
            if o.ok:
                add(name, "skipped" if o.max_abs_err is None else None, o.problem or "")
            else:
                add(name, "failure", f"{o.problem}: max abs {num(o.max_abs_err)}, max rel {num(o.max_rel_err)}; "
                                     f"tolerance {tol}")
    for key, value in counts.items():
        suite.set(key, str(value))
    suite.set("time", "0")
    return suite
