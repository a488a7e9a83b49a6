"""The portable conformance suite: export with real Keras, run kcompat and a user's candidate on it, JUnit XML,
HTML with a plot, JSON, exit codes, sha256 checks, per-case output files, and no TensorFlow needed to run."""
from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import pytest

from kcompat.conformance.cases import CASES, OPS
from kcompat.conformance.export import sha256
from kcompat.conformance.run import run_suite
from kcompat.layers.base import OP_REGISTRY, REGISTRY
from kcompat.verify.candidate import load_adapter
from test_verify_candidates import BLOCK_TF, CANDIDATE, ENV, HERE, cli

LAYERS = "Dense,Flatten,Activation,Dropout,BatchNormalization,Add,Embedding,Conv2D,LSTM,SimpleRNN,ops.GetItem"
N_CASES = 22  # two per class; LSTM_00 and SimpleRNN_00 masked (tables_sequence.py)
RNN_CANDIDATE = HERE / "numpy_rnn_candidate.py"


def test_the_case_tables_cover_every_layer_class_and_op_kcompat_implements():
    implemented = {cls.class_name for cls in REGISTRY.values()} - {"InputLayer", "Functional", "Sequential"}
    assert not sorted(implemented - set(CASES))  # (nested models are whole models, not a layer to exercise alone)
    assert set(CASES) <= implemented
    assert not sorted(set(OP_REGISTRY) - set(OPS)) and set(OPS) <= set(OP_REGISTRY)
    assert all(CASES[c] for c in CASES) and all(OPS[o] for o in OPS)


@pytest.fixture(scope="module")
def suite(tmp_path_factory):
    folder = tmp_path_factory.mktemp("suite") / "suite"
    rc, out, err = cli("conformance", "export", folder, "--layers", LAYERS, "--cases", "2", "--seed", "3")
    assert rc == 0, err
    return folder


def cases_of(folder: Path) -> list[str]:
    return json.loads((folder / "suite.json").read_text())["cases"]


def test_export_writes_one_folder_per_case_with_a_manifest(suite):
    import keras
    import tensorflow as tf
    names = cases_of(suite)
    assert len(names) == N_CASES and names[:2] == ["Dense_00", "Dense_01"] and "Dropout_01" in names
    assert names[-2:] == ["ops.GetItem_00", "ops.GetItem_01"]
    manifest = json.loads((suite / "Flatten_01" / "manifest.json").read_text())
    assert manifest["layer_class"] == "Flatten" and manifest["config"]["data_format"] == "channels_first"
    assert manifest["keras_version"] == keras.__version__ and manifest["tensorflow_version"] == tf.__version__
    assert manifest["atol"] == 1e-5 and manifest["rtol"] == 1e-4
    for name, digest in manifest["files"].items():
        assert sha256(suite / "Flatten_01" / name) == digest
    assert [layer["key"] for layer in manifest["layers"]] == ["x", "flatten"]
    expected = np.load(suite / "Flatten_01" / "expected.npz")
    x = np.load(suite / "Flatten_01" / "inputs.npz")["x"]
    np.testing.assert_array_equal(expected["flatten"], np.moveaxis(x, 1, -1).reshape(len(x), -1))
    embedding = json.loads((suite / "Embedding_00" / "manifest.json").read_text())
    assert np.load(suite / "Embedding_00" / "inputs.npz")["x"].dtype == np.int32
    assert embedding["layers"][1]["weights"] == ["embedding/0"]
    assert not embedding["masks"] and not (suite / "Embedding_00" / "masks.npz").exists()


def test_manifest_says_which_calls_get_masks_and_how_each_node_is_called(suite):
    """Functional: Keras writes the mask into the graph (NotEqual, mask=); Sequential: it passes it implicitly.
    Either way the manifest names the mask each call gets with each input, and masks.npz holds it."""
    lstm = json.loads((suite / "LSTM_00" / "manifest.json").read_text())
    ids = np.load(suite / "LSTM_00" / "inputs.npz")["x"]
    assert lstm["masks"] is True and "masks.npz" in lstm["files"] and (ids == 0).any()
    assert lstm["variant"]["build"] == "layer" and lstm["variant"]["front"][0]["class_name"] == "Embedding"
    node = lstm["layers"][-1]
    assert node["class_name"] == "LSTM" and node["inputs"] == ["front0_embedding", "not_equal"]
    assert node["args"] == [{"input": 0}] and node["kwargs"] == {"training": False, "mask": {"input": 1}}
    assert node["masks"] == ["lstm/0", None]
    np.testing.assert_array_equal(np.load(suite / "LSTM_00" / "masks.npz")["lstm/0"], ids != 0)
    rnn = json.loads((suite / "SimpleRNN_00" / "manifest.json").read_text())
    ids = np.load(suite / "SimpleRNN_00" / "inputs.npz")["x"]
    assert rnn["variant"]["build"] == "sequential" and rnn["masks"] is True
    node = rnn["layers"][-1]
    assert node["kwargs"] == {} and node["masks"] == ["simple_rnn/0"]  # nothing in the graph: Keras passes it
    np.testing.assert_array_equal(np.load(suite / "SimpleRNN_00" / "masks.npz")["simple_rnn/0"], ids != 0)
    plain = json.loads((suite / "LSTM_01" / "manifest.json").read_text())
    assert plain["masks"] is False and plain["layers"][-1]["masks"] == [None]
    op = json.loads((suite / "ops.GetItem_00" / "manifest.json").read_text())
    assert op["kind"] == "op" and op["layer_class"] == "GetItem" and op["layer"] == op["layers"][-1]["name"]
    assert op["variant"]["call"]["args"] == [{"input": 0}, [{"slice": [None, None, None]}, {"slice": [1, 3, None]}]]
    assert op["layers"][-1]["args"][0] == {"input": 0} and op["layers"][-1]["args"][1][1]["class_name"] == "__slice__"
    x = np.load(suite / "ops.GetItem_00" / "inputs.npz")["x"]
    np.testing.assert_array_equal(np.load(suite / "ops.GetItem_00" / "expected.npz")[op["layer"]], x[:, 1:3])


def test_an_adapter_gets_the_keras_masks_and_one_that_ignores_them_fails_exactly_the_masked_cases(suite):
    masked = {n for n in cases_of(suite) if json.loads((suite / n / "manifest.json").read_text())["masks"]}
    assert masked == {"LSTM_00", "SimpleRNN_00"}
    right = run_suite(str(suite), load_adapter(f"{RNN_CANDIDATE}:rnn"), layers=["LSTM", "SimpleRNN"])
    assert [(c.name, c.status) for c in right.cases] == [(n, "ok") for n in ("LSTM_00", "LSTM_01", "SimpleRNN_00",
                                                                              "SimpleRNN_01")]
    wrong = run_suite(str(suite), load_adapter(f"{RNN_CANDIDATE}:rnn_ignores_mask"), layers=["LSTM", "SimpleRNN"])
    failing = [(c.name, d.name, d.status) for c in wrong.cases for d in c.report.layers if not d.ok]
    assert failing == [("LSTM_00", "lstm", "mismatch"), ("SimpleRNN_00", "simple_rnn", "mismatch")]
    fallback = run_suite(str(suite), load_adapter(f"{RNN_CANDIDATE}:everything_by_kcompat"))
    assert fallback.ok and fallback.counts()["passed"] == N_CASES  # kcompat_call takes the masks from layer["masks"]


def test_kcompat_passes_and_writes_junit_html_json(suite, tmp_path):
    rc, out, err = cli("conformance", "run", suite, "--junit", tmp_path / "r.xml", "--html", tmp_path / "r.html",
                       "--json", tmp_path / "r.json")
    assert rc == 0, out + err
    assert f"PASS: {N_CASES}/{N_CASES} case(s) pass" in out
    root = ET.parse(tmp_path / "r.xml").getroot()
    assert root.tag == "testsuites" and root.get("failures") == "0" and len(root) == N_CASES
    manifests = [json.loads((suite / n / "manifest.json").read_text()) for n in cases_of(suite)]
    per_case = [len(m["layers"]) - len(m["inputs"]) + len(m["outputs"]) for m in manifests]  # its layers, its output
    assert int(root.get("tests")) == sum(per_case) and per_case[:2] == [2, 2] and max(per_case) == 4
    page = (tmp_path / "r.html").read_text()
    assert page.count("<svg") == N_CASES and "PASS" in page
    data = json.loads((tmp_path / "r.json").read_text())
    assert data["ok"] is True and data["passed"] == N_CASES
    assert data["results"][0]["report"]["layers"][1]["status"] == "ok"


def test_a_buggy_candidate_fails_exactly_its_cases_with_figures_in_junit(suite, tmp_path):
    rc, out, err = cli("conformance", "run", suite, "--candidate", f"{CANDIDATE}:flatten_ignores_channels_first",
                       "--layers", "Dense,Flatten,Activation,Dropout", "--junit", tmp_path / "r.xml",
                       "--html", tmp_path / "r.html")
    assert rc == 1, out + err
    assert "FAIL: 7/8 case(s) pass, 1 fail, 0 not implemented, 0 without candidate outputs" in out
    assert "Flatten_01" in out
    root = ET.parse(tmp_path / "r.xml").getroot()
    failures = [(s.get("name"), tc.get("name"), f.get("message")) for s in root for tc in s for f in tc
                if f.tag == "failure"]
    assert [(s, t) for s, t, _ in failures] == [("Flatten_01", "flatten (Flatten)"),
                                                ("Flatten_01", "output flatten (chained)")]
    assert "isolated max abs" in failures[0][2] and "tolerance atol=1e-05, rtol=0.0001" in failures[0][2]
    page = (tmp_path / "r.html").read_text()
    assert "<svg" in page and "flatten isolated:" in page and "FAIL" in page
    assert len(re.findall(r"<svg.*?</svg>", page, re.S)) == 8  # one plot per case
    section = page[page.index("id='Flatten_01'"):]
    plot = ET.fromstring(re.search(r"<svg.*?</svg>", section, re.S).group(0))  # well-formed SVG
    assert len(plot.findall("{http://www.w3.org/2000/svg}circle")) == 1  # isolated: the layer
    assert len(plot.findall("{http://www.w3.org/2000/svg}rect")) == 2  # chained: the layer and the model output
    rc, out, err = cli("conformance", "run", suite, "--candidate", f"{CANDIDATE}:candidate", "--layers",
                       "Dense,Flatten,Activation,Dropout,BatchNormalization", "--junit", tmp_path / "s.xml")
    assert rc == 0, out + err  # BatchNormalization: not implemented, reported as skipped
    assert "PASS: 8/10 case(s) pass, 0 fail, 2 not implemented" in out
    root = ET.parse(tmp_path / "s.xml").getroot()
    assert root.get("skipped") == "4" and root.get("failures") == "0"  # two cases: the layer and its output
    rc, out, err = cli("conformance", "run", suite, "--candidate", f"{CANDIDATE}:candidate", "--layers",
                       "BatchNormalization", "--strict", "--json", tmp_path / "strict.json")
    assert rc == 1 and "batch_normalization: not_imple" in out
    statuses = [r["report"]["layers"][1]["status"] for r in json.loads((tmp_path / "strict.json").read_text())["results"]]
    assert statuses == ["not_implemented", "not_implemented"]


def test_per_case_output_files_and_missing_ones(suite, tmp_path):
    import kcompat
    from kcompat.verify.kcompat_reference import node_outputs
    from kcompat.verify.reference import flatten_outputs
    outs = tmp_path / "outs"
    outs.mkdir()
    for name in cases_of(suite)[1:]:  # what `kcompat run --all-layers` writes, as a user's runtime would
        model = kcompat.load(str(suite / name / "model.keras"))
        outputs = node_outputs(model, dict(np.load(suite / name / "inputs.npz")))
        np.savez(outs / f"{name}.npz", **flatten_outputs(outputs))
    first = cases_of(suite)[0]
    rc, _, err = cli("run", suite / first / "model.keras", "-i", suite / first / "inputs.npz", "-o",
                     outs / f"{first}.npz", "--all-layers")
    assert rc == 0, err
    rc, out, err = cli("conformance", "run", suite, "--candidate-outputs-dir", outs)
    assert rc == 0, out + err
    (outs / "Add_01.npz").unlink()
    rc, out, err = cli("conformance", "run", suite, "--candidate-outputs-dir", outs)
    assert rc == 0 and f"PASS: {N_CASES - 1}/{N_CASES} case(s) pass, 0 fail, 0 not implemented, 1 without candidate " \
                       f"outputs" in out
    rc, out, err = cli("conformance", "run", suite, "--candidate-outputs-dir", outs, "--strict")
    assert rc == 1 and "Add_01" in out


def test_conformance_run_needs_no_tensorflow(suite):
    p = subprocess.run([sys.executable, "-c", BLOCK_TF, "conformance", "run", str(suite), "--candidate",
                        f"{CANDIDATE}:candidate", "--layers", "Dense,Flatten"], capture_output=True, text=True,
                       env=ENV, timeout=300)
    assert p.returncode == 0, p.stdout + p.stderr


def test_a_changed_suite_is_refused(suite, tmp_path):
    copy = tmp_path / "copy"
    shutil.copytree(suite, copy)
    data = dict(np.load(copy / "Dense_00" / "expected.npz"))
    data["dense"] = data["dense"] + 1
    np.savez(copy / "Dense_00" / "expected.npz", **data)
    rc, out, err = cli("conformance", "run", copy)
    assert rc == 2 and "Dense_00/expected.npz: sha256 differs from the manifest" in err
    rc, out, err = cli("conformance", "run", tmp_path / "nowhere")
    assert rc == 2 and "no such folder" in err
    rc, out, err = cli("conformance", "export", tmp_path / "x", "--layers", "Dense,NotALayer")
    assert rc == 2 and "no conformance cases for ['NotALayer']" in err


@pytest.mark.slow
def test_every_case_of_every_class_exports_and_passes(tmp_path):
    """The whole suite (every layer class and op, every variant): kcompat passes it; so does an adapter that
    calls kcompat through the adapter contract (the layer dict carries all a call needs, masks included);
    and the NumPy RNN that ignores masks fails exactly the masked LSTM / SimpleRNN cases it implements."""
    n = sum(map(len, CASES.values())) + sum(map(len, OPS.values()))
    rc, out, err = cli("conformance", "export", tmp_path / "all")
    assert rc == 0, err
    rc, out, err = cli("conformance", "run", tmp_path / "all", "--junit", tmp_path / "all.xml")
    assert rc == 0, out
    assert f"PASS: {n}/{n} case(s) pass" in out
    fallback = run_suite(str(tmp_path / "all"), load_adapter(f"{RNN_CANDIDATE}:everything_by_kcompat"))
    assert fallback.ok and fallback.counts()["passed"] == n, [c.problem for c in fallback.cases if not c.ok][:5]
    wrong = run_suite(str(tmp_path / "all"), load_adapter(f"{RNN_CANDIDATE}:rnn_ignores_mask"),
                      layers=["LSTM", "SimpleRNN"])
    implemented_masked = {c.name for c in wrong.cases if c.manifest["masks"] and c.status != "not_implemented"}
    assert len(implemented_masked) >= 6 and {c.name for c in wrong.cases if not c.ok} == implemented_masked
