"""verify on someone else's implementation: adapters (--candidate), per-node output files
(--candidate-outputs, run --all-layers), --reference kcompat without TensorFlow, isolated vs chained.

The models are built in real Keras and verified against real Keras. The user's implementation is
tests/numpy_candidate.py (correct, and with one planted bug each); a broken layer must be named,
and nothing downstream of it.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import numpy_candidate
from test_conformance import ACTIVATIONS

import kcompat
from kcompat.verify.candidate import OutputsCandidate, kcompat_call, load_adapter
from kcompat.verify.keras import KerasReference
from kcompat.verify.reference import StoredReference, flatten_outputs
from kcompat.verify.run import make_inputs, verify_file, verify_model

HERE = Path(__file__).resolve().parent
CANDIDATE = HERE / "numpy_candidate.py"
ENV = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "PYTHONPATH": str(HERE.parent), "COLUMNS": "100"}


def cli(*args, cwd=None, env=ENV):
    p = subprocess.run([sys.executable, "-m", "kcompat", *map(str, args)], capture_output=True, text=True,
                       cwd=cwd, env=env, timeout=600)
    return p.returncode, p.stdout, p.stderr


def seed_biases(model, seed=0):
    """Keras starts biases at 0, which hides a dropped bias: give them values."""
    rng = np.random.default_rng(seed)
    for layer in model.layers:
        if getattr(layer, "bias", None) is not None:
            layer.bias.assign(rng.normal(size=layer.bias.shape).astype(np.float32))


def every_activation(keras):
    """One branch per Keras activation, as Dense(activation=a) and as Activation(a), each read by a
    later layer; Flatten channels_last / channels_first at ranks 3-5, each followed by a Dense; Dropout."""
    L = keras.layers
    x = keras.Input((3, 4), name="x")
    outs = []
    for a in ACTIVATIONS:
        d = L.Dense(8, activation=a, name=f"dense_{a}")(x)  # glu twice: 8 -> 4 -> 2
        outs.append(L.Activation(a, name=f"act_{a}")(L.Dropout(0.5, name=f"drop_{a}")(d)))
    inputs = [x] + [keras.Input(shape, name=f"x{len(shape) + 1}") for shape in ((2, 3, 2), (2, 3, 2, 2))]
    for y in inputs:
        rank = len(y.shape)
        for fmt in ("channels_last", "channels_first"):
            flat = L.Flatten(data_format=fmt, name=f"flat_{fmt}_{rank}")(y)
            outs.append(L.Dense(3, name=f"after_{fmt}_{rank}", use_bias=False)(flat))
    model = keras.Model(inputs, outs)
    seed_biases(model)
    return model


@pytest.fixture(scope="module")
def activations_model(keras, tmp_path_factory):
    path = tmp_path_factory.mktemp("cand") / "activations.keras"
    every_activation(keras).save(path)
    model = kcompat.load(str(path))
    inputs, _ = make_inputs(model, 3, 0)
    result = KerasReference(str(path)).run(model, inputs)  # one Keras run shared by the tests below
    return str(path), model, inputs, StoredReference(result)


def _failing(report):
    return sorted(d.name for d in report.layers if not d.ok)


def test_correct_numpy_candidate_passes_every_activation_and_flatten(activations_model):
    path, model, inputs, ref = activations_model
    report = verify_model(model, ref, inputs, candidate=numpy_candidate.candidate)
    assert report.ok, report.render(all_rows=True)
    assert {d.status for d in report.layers} == {"ok"}
    assert all(d.isolated_max_abs_err is not None and d.max_abs_err is not None for d in report.layers)
    assert report.candidate == "candidate" and report.reference.startswith("keras 3")


def test_flatten_ignoring_channels_first_names_exactly_those_layers(activations_model):
    path, model, inputs, ref = activations_model
    report = verify_model(model, ref, inputs, candidate=numpy_candidate.flatten_ignores_channels_first)
    assert not report.ok and report.exit_code == 1
    assert _failing(report) == ["flat_channels_first_3", "flat_channels_first_4", "flat_channels_first_5"]
    after = next(d for d in report.layers if d.name == "after_channels_first_4")
    assert after.status == "ok" and after.chained_ok is False  # downstream: drift, not blamed
    assert report.first_mismatch == "flat_channels_first_3"


def test_dense_dropping_its_bias_names_exactly_the_dense_layers_with_one(activations_model):
    path, model, inputs, ref = activations_model
    report = verify_model(model, ref, inputs, candidate=numpy_candidate.dense_drops_bias)
    with_bias = sorted(f"dense_{a}" for a in ACTIVATIONS)
    assert _failing(report) == with_bias  # the Activation after each, and the bias-free Dense, are not blamed
    assert all(d.status == "ok" for d in report.layers if d.name.startswith("act_"))


def test_cli_candidate_exit_code_json_and_named_layers(tmp_path):
    """One CLI run against real Keras (the correct candidate's exit 0 runs in the no-TensorFlow test below)."""
    fixture = HERE.parent / "fixtures" / "keras3" / "faq_dense_first.keras"
    rc, out, err = cli("verify", fixture, "--candidate", f"{CANDIDATE}:dense_drops_bias", "--json", tmp_path / "r.json")
    assert rc == 1, out + err
    assert "numpy_candidate.py:dense_drops_bias vs keras 3" in out
    assert "MISMATCH: first mismatching layer 'D16' (Dense)" in out and "2 layers fail: 'D16', 'D4'" in out
    data = json.loads((tmp_path / "r.json").read_text())
    assert data["candidate"] == "numpy_candidate.py:dense_drops_bias" and data["first_mismatch"] == "D16"
    assert [row["status"] for row in data["layers"]] == ["ok", "mismatch", "ok", "ok", "mismatch"]


def test_keras_outputs_as_npz_pass_and_a_perturbed_layer_is_named(activations_model, tmp_path):
    path, model, inputs, ref = activations_model
    arrays = flatten_outputs(ref.result.outputs)  # Keras's own per-node outputs, the inputs included
    np.savez(tmp_path / "keras.npz", **arrays)
    report = verify_model(model, ref, candidate=OutputsCandidate(str(tmp_path / "keras.npz")))
    assert report.ok and {d.status for d in report.layers} == {"ok"}
    assert all(d.isolated_max_abs_err is None for d in report.layers if d.class_name != "InputLayer")
    arrays["act_tanh"] = arrays["act_tanh"] + np.float32(1e-3)
    arrays["dense_Relu"] = arrays.pop("drop_relu")  # a typo in the user's runtime
    np.savez(tmp_path / "bad.npz", **arrays)
    report = verify_model(model, ref, candidate=OutputsCandidate(str(tmp_path / "bad.npz")))
    assert _failing(report) == ["act_tanh"] and report.first_mismatch == "act_tanh"
    assert next(d for d in report.layers if d.name == "drop_relu").status == "missing"
    assert any("not compared, no call node of the model has these keys: 'dense_Relu'" in n for n in report.notes)
    strict = verify_model(model, ref, candidate=OutputsCandidate(str(tmp_path / "bad.npz")), strict=True)
    assert _failing(strict) == ["act_tanh", "drop_relu"]


def test_run_all_layers_writes_the_candidate_outputs_format(tmp_path):
    """kcompat run --all-layers: one array per call node, a shared layer's second call as 'name:1';
    verify --candidate-outputs reads the inputs from the same file."""
    from test_verify import two_outputs_shared
    import keras
    m = two_outputs_shared(keras)
    seed_biases(m)
    m.save(tmp_path / "shared.keras")
    np.save(tmp_path / "x.npy", np.random.default_rng(0).normal(size=(2, 3, 2)).astype(np.float32))
    rc, out, err = cli("run", "shared.keras", "-i", "x.npy", "-o", "all.npz", "--all-layers", cwd=tmp_path)
    assert rc == 0, err
    keys = set(np.load(tmp_path / "all.npz").files)
    assert {"x", "D16", "E16", "A", "A:1", "F", "F2", "D4", "D4:1"} == keys
    rc, out, err = cli("verify", "shared.keras", "--candidate-outputs", "all.npz", "--all", cwd=tmp_path)
    assert rc == 0, out + err
    assert "D4:1" in out and "A:1" in out
    rc, out, err = cli("run", "shared.keras", "-i", "x.npy", "-o", "all.npy", "--all-layers", cwd=tmp_path)
    assert rc == 2 and "give an .npz output" in err


def test_second_call_of_a_shared_layer_is_checked_isolated(keras, tmp_path):
    from test_verify import two_outputs_shared
    m = two_outputs_shared(keras)
    seed_biases(m)
    m.save(tmp_path / "shared.keras")

    def second_call_wrong(layer, weights, inputs):
        y = kcompat_call(layer, weights, inputs)
        return y + np.float32(0.01) if (layer["name"], layer["node"]) == ("D4", 1) else y
    report = verify_file(str(tmp_path / "shared.keras"), candidate=second_call_wrong)
    assert _failing(report) == ["D4:1"]
    row = next(d for d in report.layers if d.name == "D4:1")
    assert row.layer == "D4" and row.node == 1 and row.isolated_max_abs_err == pytest.approx(0.01, rel=1e-3)


def test_adapter_not_implemented_error_and_strict(keras, tmp_path):
    m = keras.Sequential([keras.Input((4,), name="x"), keras.layers.Dense(3, name="d"),
                          keras.layers.ReLU(name="r"), keras.layers.Dense(2, name="e")])
    path = str(tmp_path / "m.keras")
    m.save(path)
    seen = {}

    def partial(layer, weights, inputs):
        seen[layer["name"]] = (sorted(layer), [w.shape for w in weights], [np.shape(i) for i in inputs])
        if layer["class_name"] == "ReLU":
            raise NotImplementedError("no ReLU yet")
        if layer["name"] == "e":
            raise ValueError("kernel layout confused")
        return numpy_candidate.candidate(layer, weights, inputs)
    report = verify_file(path, candidate=partial)
    by = {d.name: d for d in report.layers}
    assert by["r"].status == "not_implemented" and by["r"].ok and by["r"].problem == "no ReLU yet"
    assert by["e"].status == "error" and not by["e"].ok and "ValueError: kernel layout confused" in by["e"].problem
    assert by["d"].status == "ok" and report.first_mismatch == "e" and not report.ok
    assert seen["d"] == (["args", "class_name", "config", "kwargs", "masks", "module", "name", "node"],
                         [(4, 3), (3,)], [(4, 4)])
    assert "chained run took the reference's output where partial gave none ('r', 'e')" in " ".join(report.notes)
    strict = verify_file(path, candidate=partial, strict=True)
    assert _failing(strict) == ["e", "r"] and strict.first_mismatch == "r"
    text = strict.render(console_width=100)
    assert "FAIL: layer 'r' (ReLU) is not implemented (--strict)" in text


def test_drift_alone_fails_on_the_final_output_and_blames_no_layer(keras, tmp_path):
    """A candidate 0.6 x atol off at every layer: each layer passes in isolation, the chain of ten drifts
    past the tolerance, and the report says so separately."""
    x = keras.Input((8,), name="x")
    y = x
    for i in range(10):
        y = keras.layers.Activation("linear", name=f"a{i}")(y)
    keras.Model(x, y).save(tmp_path / "chain.keras")

    def off(layer, weights, inputs):
        return inputs[0] + np.float32(6e-6)
    report = verify_file(str(tmp_path / "chain.keras"), candidate=off, rtol=0.0)
    assert all(d.ok for d in report.layers) and report.first_mismatch is None and not report.ok
    assert report.outputs[0].name == "a9" and not report.outputs[0].ok
    assert report.outputs[0].max_abs_err == pytest.approx(6e-5, rel=1e-2)
    assert "every layer matches in isolation, but the model output 'a9' drifts" in report.verdict()
    assert json.loads(json.dumps(report.to_json()))["outputs"][0]["ok"] is False


def test_load_adapter_errors(tmp_path):
    from kcompat.errors import KcompatError
    with pytest.raises(KcompatError, match="PATH.py:FUNC or package.module:FUNC"):
        load_adapter("no_function_given.py")
    with pytest.raises(KcompatError, match="no such file"):
        load_adapter(str(tmp_path / "absent.py") + ":f")
    (tmp_path / "broken.py").write_text("raise RuntimeError('import-time bug')\n")
    with pytest.raises(KcompatError, match="importing .* failed: RuntimeError: import-time bug"):
        load_adapter(f"{tmp_path / 'broken.py'}:f")
    with pytest.raises(KcompatError, match="has no function 'nope'"):
        load_adapter(f"{CANDIDATE}:nope")
    assert load_adapter("numpy_candidate:candidate").func is numpy_candidate.candidate  # package.module:FUNC


BLOCK_TF = """
import sys
class Block:
    def find_spec(self, name, path=None, target=None):
        if name.split('.')[0] in ('tensorflow', 'keras', 'tf_keras', 'onnxruntime'):
            raise ImportError('blocked for this test: ' + name)
sys.meta_path.insert(0, Block())
from kcompat.cli import main
code = main(sys.argv[1:])
assert not any(m.split('.')[0] in ('tensorflow', 'keras') for m in sys.modules), 'TensorFlow was imported'
sys.exit(code)
"""


@pytest.mark.parametrize("func, code", [("candidate", 0), ("dense_drops_bias", 1)])
def test_reference_kcompat_without_tensorflow(func, code):
    fixture = HERE.parent / "fixtures" / "keras3" / "faq_dense_first.keras"
    p = subprocess.run([sys.executable, "-c", BLOCK_TF, "verify", str(fixture), "--reference", "kcompat",
                        "--candidate", f"{CANDIDATE}:{func}"], capture_output=True, text=True, env=ENV, timeout=300)
    assert p.returncode == code, p.stdout + p.stderr
    assert "vs kcompat" in p.stdout
    if code:
        assert "2 layers fail: 'D16', 'D4'" in p.stdout


def test_readme_example_candidate_passes_and_its_planted_bug_names_flatten():
    example = HERE.parent / "examples" / "my_layers.py"
    fixture = str(HERE.parent / "fixtures" / "keras3" / "faq_dense_first.keras")
    good = verify_file(fixture, candidate=load_adapter(f"{example}:run"))
    assert good.ok and good.candidate == "my_layers.py:run"
    bad = verify_file(fixture, candidate=load_adapter(f"{example}:run_fortran_flatten"))
    assert _failing(bad) == ["F"] and not bad.outputs[0].ok  # D4 drifts chained, in isolation it is right


def test_a_node_with_no_input_on_either_side_is_missing_not_a_crash():
    """The reference lacks 'F' and the candidate cannot compute it: 'D4' has no inputs at all."""
    from kcompat.verify.kcompat_reference import KcompatReference
    from kcompat.verify.reference import Reference

    class WithoutF(Reference):
        name = "kcompat without F"

        def run(self, model, inputs):
            result = KcompatReference().run(model, inputs)
            del result.outputs["F"]
            return result

    def no_flatten(layer, weights, inputs):
        if layer["class_name"] == "Flatten":
            raise NotImplementedError("Flatten")
        return numpy_candidate.candidate(layer, weights, inputs)
    fixture = str(HERE.parent / "fixtures" / "keras3" / "faq_dense_first.keras")
    report = verify_file(fixture, reference=WithoutF(), candidate=no_flatten)
    by = {d.name: d for d in report.layers}
    assert by["F"].status == "not_implemented" and by["D4"].status == "missing" and report.ok
    assert by["D4"].problem == "not computed: an input has no value on either side"
    assert report.outputs[0].problem == "not compared: the candidate did not compute it"


@pytest.mark.parametrize("args, words", [
    (["--candidate-outputs", "absent.npz"], "absent.npz: no such file"),
    (["--candidate", "absent.py:run"], "--candidate absent.py:run: absent.py: no such file"),
    (["--candidate", "x.py:run", "--candidate-outputs", "y.npz"], "not allowed with argument"),
])
def test_bad_candidate_arguments_are_one_error_line(args, words, tmp_path):
    fixture = HERE.parent / "fixtures" / "keras3" / "faq_dense_first.keras"
    rc, out, err = cli("verify", fixture, *args, cwd=tmp_path)
    assert rc == 2 and out == "" and len(err.strip().splitlines()) == 1 and words in err, err
