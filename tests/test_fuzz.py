"""Fuzzing every reader and the CLI's summary / run / convert / verify with mutated copies of the bundled
fixtures (tests/fuzz_mutate.py), each case in a forked, time- and memory-limited child (tests/fuzz_run.py).

Every run must exit 0 or 2 (1 for verify), with exactly one ``kcompat: error:`` line when it fails, no
traceback, no internal error, no NumPy 'Unable to allocate', no file left behind, no hang, and a failure in
under a few seconds with under 200 MiB. A short budget runs here; the long one is a documented command:

    KCOMPAT_FUZZ_CASES=5000 python -m pytest tests/test_fuzz.py        # ~30 minutes
    KCOMPAT_FUZZ_CASES=5000 KCOMPAT_FUZZ_SEED=100000 python -m pytest tests/test_fuzz.py   # other cases

A failing case's folder is kept (its path is in the failure message): shrink it, add it to
tests/regressions/make_regressions.py, fix kcompat.
"""
from __future__ import annotations

import os
import shutil

import pytest

from fuzz_run import Case, Server, make_case, problems

CASES = int(os.environ.get("KCOMPAT_FUZZ_CASES", "60"))
SEED = int(os.environ.get("KCOMPAT_FUZZ_SEED", "0"))


@pytest.fixture(scope="module")
def server():
    s = Server()
    yield s
    s.close()


def test_fuzzed_files_fail_cleanly(server, tmp_path):
    failures, kinds = [], set()
    for seed in range(SEED, SEED + CASES):
        case = make_case(seed, tmp_path)
        kinds.add(case.label.split(" ")[1].split(":")[0])
        result = server.run(case.argv, str(case.folder))
        found = problems(case, result)
        if found:
            failures.append(f"{case.folder}: {case.label}: {found}: {result['output'][-400:]}")
        else:
            shutil.rmtree(case.folder)
    assert not failures, "\n".join(failures)
    assert {"config", "hdf5", "onnx", "zip"} <= kinds | {k.split(":")[0] for k in kinds}, kinds


def test_the_harness_sees_hangs_tracebacks_and_leftovers(server, tmp_path):
    """The checks can fail: a child that hangs is killed and reported, and so are a traceback, a second
    error line, an internal error and a file left in the case folder."""
    result = server.run(["__sleep__"], str(tmp_path), timeout=0.5)
    assert result["timed_out"] and problems(Case(tmp_path, ["summary"], "sleep"), result)
    (tmp_path / "stray.part").write_text("x")
    case = Case(tmp_path, ["summary", "m.h5"], "fake")
    two_lines = {"code": 2, "output": "Traceback (most recent call last):\nkcompat: error: a\nkcompat: error: b\n",
                 "seconds": 9.0, "timed_out": False, "mib": 500}
    internal = {"code": 3, "output": "kcompat: error: internal error (KeyError: 1)", "seconds": 0.1,
                "timed_out": False, "mib": 1}
    found = " ".join(problems(case, two_lines) + problems(case, internal))
    for word in ("exit 3", "2 error lines", "Traceback", "internal error", "files left behind", "memory",
                 "slow failure"):
        assert word in found, (word, found)
