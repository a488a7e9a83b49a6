"""Every hostile file the fuzz harness (or a user) ever broke kcompat with, kept as a small file in
tests/regressions/ (written by make_regressions.py; cases.json says the command and the words): each
must now fail cleanly: exit 2, one ``kcompat: error:`` line naming the problem, no traceback, no file
left behind, in bounded time and memory (the fuzz harness's own checks)."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from fuzz_run import Case, Server, problems
from kcompat.cli import main

HERE = Path(__file__).resolve().parent / "regressions"
CASES = json.loads((HERE / "cases.json").read_text())


@pytest.fixture(scope="module")
def server():
    s = Server()
    yield s
    s.close()


@pytest.mark.parametrize("entry", CASES, ids=[c["file"] for c in CASES])
def test_regression_fails_cleanly(entry, server, tmp_path):
    inputs = {entry["file"], "faq.keras", "faq_input.npy"} | {a for a in entry["argv"] if (HERE / a).is_file()}
    for name in inputs:
        shutil.copyfile(HERE / name, tmp_path / name)
    result = server.run(entry["argv"], str(tmp_path))
    case = Case(tmp_path, entry["argv"], entry["file"], inputs)
    assert not problems(case, result), (problems(case, result), result["output"])
    assert result["code"] == 2, result["output"]
    line = result["output"].strip().splitlines()[-1]
    for word in entry["words"]:
        assert word in line, (word, line)
    assert any(name in line for name in inputs if name in entry["argv"]), line  # a file it read is named


def test_every_regression_file_is_listed():
    listed = {c["file"] for c in CASES} | {a for c in CASES for a in c["argv"]} | {"faq.keras", "faq_input.npy",
                                                                                 "cases.json", "make_regressions.py",
                                                                                 "no_samples.npy"}
    assert {p.name for p in HERE.iterdir()} <= listed


def test_a_batch_of_no_samples_runs_as_in_keras(keras, tmp_path):
    """no_samples.npy once ended in an internal error (Flatten's reshape of 0 values); Keras runs a batch
    of 0 and returns (0, ...) outputs, and so does kcompat."""
    assert main(["run", str(HERE / "faq.keras"), "-i", str(HERE / "no_samples.npy"), "-o", str(tmp_path / "o.npy")]) == 0
    want = keras.saving.load_model(HERE / "faq.keras", compile=False)(np.load(HERE / "no_samples.npy")).numpy()
    got = np.load(tmp_path / "o.npy")
    assert got.shape == want.shape and got.shape[0] == 0
