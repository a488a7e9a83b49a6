"""The verify report for big models (no Keras needed): tables fit 100 columns without wrapped rows, the
default view (failing layers, one line per layer class) vs --all, the progress bar, --version, and a
stated default in every option's help."""
from __future__ import annotations

import argparse
import io
import subprocess
import sys

import pytest

from kcompat.cli import build_parser
from kcompat.verify.metrics import ATOL, RTOL, LayerDiff
from kcompat.verify.passes import OutputDiff
from kcompat.verify.progress import RichProgress
from kcompat.verify.report import Report

CLASSES = ["Conv2D", "BatchNormalization", "SeparableConv2D", "Activation", "GlobalAveragePooling2D"]


def big_report(n: int = 300, broken: int = 123) -> Report:
    """A synthetic 300-layer report with NASNet-length names; row ``broken`` fails in isolation."""
    rows = []
    for i in range(n):
        name = f"separable_conv_1_bn_reduction_right{i % 7}_stem_{i}"
        bad = i == broken
        rows.append(LayerDiff(name, CLASSES[i % len(CLASSES)], not bad, [2, 16, 16, 44], [2, 16, 16, 44], 176 * i,
                              176 * i, 3e-5 * (i % 5), 1e-4, 12.0, 0.0, status="mismatch" if bad else "ok",
                              isolated_max_abs_err=2e-3 if bad else 1e-7, isolated_max_ulp=3000.0 if bad else 2.0,
                              isolated_min_passing_atol=2e-3 if bad else 0.0, chained_ok=not bad and i % 5 < 1,
                              problem="isolated: values differ beyond tolerance" if bad else None))
    outputs = [OutputDiff("predictions", False, 4e-4, 1e-2, 900.0, 4e-4, "values differ beyond tolerance")]
    return Report(False, "keras 3.15.1 (tensorflow)", ATOL, RTOL, rows[broken].name, rows, ["a note"],
                  "my_impl.py:run", outputs)


def table_lines(text: str) -> list[str]:
    return [line for line in text.splitlines()
            if not line.startswith(("MISMATCH", "OK:", "FAIL", "note:", "output ", "  "))]


@pytest.mark.parametrize("all_rows", [False, True])
def test_tables_fit_100_columns_without_wrapped_rows(all_rows):
    report = big_report()
    text = report.render(console_width=100, all_rows=all_rows)
    lines = table_lines(text)
    assert max(len(line) for line in lines) <= 100
    body = [line for line in lines if line.startswith(" separable_conv")
            or any(line.startswith(f" {c[:12]}") for c in CLASSES)]
    expected = 300 if all_rows else 1 + len(CLASSES)  # every row, or the failing row and one line per class
    assert len(body) == expected


def test_default_view_shows_failing_layers_and_one_line_per_class():
    text = big_report().render(console_width=100)
    assert "failing layers: my_impl.py:run vs keras 3.15.1 (tensorflow)" in text
    assert "by layer class" in text and text.count("separable_conv_1_bn_reduction_right4_stem_123") >= 1
    conv_line = next(line for line in text.splitlines() if line.startswith(" Conv2D "))
    assert conv_line.split()[1:3] == ["60", "0"]  # 60 Conv2D rows, none failing
    assert "output 'predictions' (chained): max abs 4.00e-04, max rel 1.00e-02: FAIL" in text
    assert "MISMATCH: first mismatching layer 'separable_conv_1_bn_reduction_right4_stem_123'" in text
    assert "note: a note" in text
    everything = big_report().render(console_width=100, all_rows=True)
    assert "ok (drift)" in everything and "by layer class" not in everything


def test_progress_bar_shows_phases_on_a_terminal_and_nothing_otherwise():
    buf = io.StringIO()
    with RichProgress(force=True, file=buf) as progress:
        progress.phase("running the keras reference")
        progress.phase("kcompat: isolated + chained", 3)
        for _ in range(3):
            progress.advance()
    assert "isolated + chained" in buf.getvalue()
    quiet = io.StringIO()
    with RichProgress(file=quiet) as progress:  # a StringIO is not a terminal
        progress.phase("anything", 2)
        progress.advance(2)
    assert quiet.getvalue() == ""


def test_version():
    from kcompat import __version__
    p = subprocess.run([sys.executable, "-m", "kcompat", "--version"], capture_output=True, text=True, timeout=120)
    assert p.returncode == 0 and p.stdout.strip() == f"kcompat {__version__}"


def _options(parser: argparse.ArgumentParser, prefix: str = "kcompat"):
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield from _options(sub, f"{prefix} {name}")
        elif action.option_strings and not isinstance(action, (argparse._HelpAction, argparse._VersionAction)):
            yield prefix, action


def test_every_option_states_its_default():
    options = list(_options(build_parser()))
    assert len(options) > 30
    missing = [f"{where} {a.option_strings[-1]}" for where, a in options if "default" not in (a.help or "")
               and "required" not in (a.help or "")]
    assert missing == []
