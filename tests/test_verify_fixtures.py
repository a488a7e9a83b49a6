"""`kcompat verify` passes on every bundled fixture, in every format (in-process CLI, real Keras)."""
from __future__ import annotations

import json

import pytest

from kcompat.cli import main

from conftest import FIXTURES

MODELS = sorted(p for d in ("keras3", "keras2") for p in (FIXTURES / d).iterdir()
                if p.suffix in (".keras", ".h5", ".json") and "weights" not in p.name)


@pytest.mark.parametrize("path", MODELS, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_verify_cli_passes_on_fixture(keras, path, tmp_path, capsys):
    report = tmp_path / "report.json"
    code = main(["verify", str(path), "--json", str(report)])
    out = capsys.readouterr().out
    assert code == 0, out
    data = json.loads(report.read_text())
    assert data["ok"] is True and data["first_mismatch"] is None and data["reference"].startswith("keras 3")
    assert all(layer["ok"] for layer in data["layers"])
    assert all(layer["params"] == layer["reference_params"] for layer in data["layers"])
