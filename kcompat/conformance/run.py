"""``kcompat conformance run DIR``: check a candidate against every case of an exported suite.

Needs no TensorFlow: each case's expected outputs are read from its ``expected.npz`` (a stored
reference), its model from ``model.keras`` by kcompat's own reader, and every file is checked
against the sha256 in its manifest first (a changed suite is refused, exit 2). The candidate is
kcompat (default), a Python adapter (verify/candidate.py), or one .npz of outputs per case
(``<outputs dir>/<case>.npz``, keys as in expected.npz). Each case is a verify report.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import FormatError, KcompatError
from ..verify.candidate import Candidate, OutputsCandidate
from ..verify.progress import Progress
from ..verify.reference import ReferenceResult, StoredReference, unflatten_outputs
from ..verify.report import Report
from .export import CASE_FILES, FORMAT, OPTIONAL_FILES, sha256, suite_class


@dataclass
class CaseResult:
    """One case: its report, or why it could not run (``status`` "missing" when the candidate's
    outputs file is absent)."""

    name: str
    layer_class: str
    report: Report | None
    status: str  # "ok", "fail", "missing" (no outputs file), "not_implemented" (no layer implemented)
    problem: str | None = None
    manifest: dict | None = None
    strict: bool = False

    @property
    def ok(self) -> bool:
        return self.status == "ok" or (self.status in ("missing", "not_implemented") and not self.strict)


@dataclass
class SuiteResult:
    """Every case of a run, the candidate's name and the suite's versions."""

    folder: str
    candidate: str
    cases: list[CaseResult]
    index: dict

    @property
    def ok(self) -> bool:
        return all(c.ok for c in self.cases)

    @property
    def exit_code(self) -> int:
        return 0 if self.ok else 1

    def counts(self) -> dict[str, int]:
        """How many cases ran, passed, failed, and had no candidate outputs."""
        return {"cases": len(self.cases), "passed": sum(c.status == "ok" for c in self.cases),
                "failed": sum(not c.ok for c in self.cases),
                "not_implemented": sum(c.status == "not_implemented" and c.ok for c in self.cases),
                "missing": sum(c.status == "missing" and c.ok for c in self.cases)}

    def to_json(self) -> dict:
        return {"ok": self.ok, "suite": self.folder, "candidate": self.candidate, "format": self.index.get("format"),
                "keras_version": self.index.get("keras_version"),
                "tensorflow_version": self.index.get("tensorflow_version"), **self.counts(),
                "results": [{"case": c.name, "layer_class": c.layer_class, "status": c.status, "ok": c.ok,
                             "problem": c.problem, "report": c.report.to_json() if c.report else None}
                            for c in self.cases]}


def list_cases(folder: str) -> tuple[dict, list[Path]]:
    """The suite index (suite.json) and its case folders, checked to exist."""
    root = Path(folder)
    if not root.is_dir():
        raise KcompatError(f"{folder}: no such folder (make a suite with: kcompat conformance export {folder})")
    index_path = root / "suite.json"
    if not index_path.is_file():
        raise FormatError(f"{folder}: not a conformance suite (no suite.json)")
    try:
        index = json.loads(index_path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise FormatError(f"{index_path}: not valid JSON: {e}") from None
    if not isinstance(index, dict) or index.get("format") != FORMAT or not isinstance(index.get("cases"), list):
        raise FormatError(f"{index_path}: expected a {FORMAT} index with a 'cases' list")
    cases = []
    for name in index["cases"]:
        path = root / str(name)
        if not (path / "manifest.json").is_file():
            raise FormatError(f"{path}: case listed in suite.json has no manifest.json")
        cases.append(path)
    return index, cases


def run_suite(folder: str, candidate: Candidate | None = None, outputs_dir: str | None = None,
              strict: bool = False, layers: list[str] | None = None, progress: Progress | None = None) -> SuiteResult:
    """Run every case (or those of the classes in ``layers``: ``Dense``, ``ops.Mean``) against the candidate."""
    index, paths = list_cases(folder)
    if outputs_dir is not None and not Path(outputs_dir).is_dir():
        raise KcompatError(f"--candidate-outputs-dir {outputs_dir}: no such folder")
    manifests = [(path, _manifest(path)) for path in paths]
    if layers is not None:
        manifests = [(p, m) for p, m in manifests if suite_class(m) in layers]
    progress = progress or Progress()
    progress.phase(f"conformance: {len(manifests)} case(s)", len(manifests))
    results = []
    name = "kcompat" if candidate is None else candidate.name
    if outputs_dir is not None:
        name = f"outputs in {outputs_dir}"
    for path, manifest in manifests:
        results.append(run_case(path, manifest, candidate, outputs_dir, strict))
        progress.advance()
    return SuiteResult(str(folder), name, results, index)


def run_case(path: Path, manifest: dict, candidate: Candidate | None, outputs_dir: str | None,
             strict: bool) -> CaseResult:
    """One case folder through verify_model against its stored expected outputs."""
    import kcompat
    from ..arrays import read_arrays
    from ..verify.run import verify_model

    name, cls = manifest["case"], manifest["layer_class"]
    model = kcompat.load(str(path / "model.keras"))
    stored = read_arrays(str(path / "inputs.npz"))
    inputs = [stored[n] for n in model.input_names]
    expected = unflatten_outputs(read_arrays(str(path / "expected.npz")))
    reference = StoredReference(ReferenceResult(f"{manifest.get('reference', 'keras')} (stored)", expected,
                                                dict(manifest.get("params") or {})))
    if outputs_dir is not None:
        npz = Path(outputs_dir) / f"{name}.npz"
        if not npz.is_file():
            return CaseResult(name, cls, None, "missing", f"{npz}: no such file", manifest, strict)
        candidate = OutputsCandidate(str(npz))
    report = verify_model(model, reference, inputs, atol=manifest["atol"], rtol=manifest["rtol"],
                          candidate=candidate, strict=strict)
    layers = [d for d in report.layers if d.class_name != "InputLayer"]
    status = "ok" if report.ok else "fail"
    if report.ok and layers and all(d.status in ("not_implemented", "missing") for d in layers):
        status = "not_implemented" if any(d.status == "not_implemented" for d in layers) else "missing"
    return CaseResult(name, cls, report, status, None if report.ok else report.verdict(), manifest, strict)


def _manifest(path: Path) -> dict[str, Any]:
    """A case's manifest, with every file's sha256 checked."""
    try:
        manifest = json.loads((path / "manifest.json").read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise FormatError(f"{path / 'manifest.json'}: not valid JSON: {e}") from None
    files = manifest.get("files") if isinstance(manifest, dict) else None
    if not isinstance(files, dict) or not set(CASE_FILES) <= set(files) <= set(CASE_FILES + OPTIONAL_FILES):
        raise FormatError(f"{path / 'manifest.json'}: expected a 'files' table with the sha256 of {list(CASE_FILES)} "
                          f"(and of {list(OPTIONAL_FILES)} where the case has them)")
    for fname, digest in files.items():
        file = path / fname
        if not file.is_file():
            raise FormatError(f"{file}: missing from the case (listed in its manifest)")
        if sha256(file) != digest:
            raise FormatError(f"{file}: sha256 differs from the manifest; the suite was changed or damaged "
                              f"(export it again)")
    return manifest
