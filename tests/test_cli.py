"""The CLI end to end, and every bad input: exit 2, one 'kcompat: error:' line naming the file, no traceback,
no partial output file. These tests need no TensorFlow: models are written by kcompat itself."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest

import kcompat
from kcompat.formats.keras.config import spec_from_config
from kcompat.model import Model

ENV = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}


def cli(*args, cwd=None):
    """Run ``python -m kcompat`` as a user would; returns (exit code, stdout, stderr)."""
    p = subprocess.run([sys.executable, "-m", "kcompat", *map(str, args)], capture_output=True, text=True,
                       cwd=cwd, env=ENV, timeout=300)
    return p.returncode, p.stdout, p.stderr


def faq_config(units=16, extra_layer=None):
    """Keras 3 Sequential config of the Flatten FAQ model: Input(3,2) -> Dense(16) -> relu -> Flatten -> Dense(4)."""
    layers = [
        {"class_name": "InputLayer", "config": {"batch_shape": [None, 3, 2], "dtype": "float32", "name": "inp"}},
        {"class_name": "Dense", "config": {"name": "D16", "units": units, "activation": "linear", "use_bias": True}},
        {"class_name": "Activation", "config": {"name": "A", "activation": "relu"}},
        {"class_name": "Flatten", "config": {"name": "F", "data_format": "channels_last"}},
        {"class_name": "Dense", "config": {"name": "D4", "units": 4, "activation": "linear", "use_bias": True}},
    ]
    if extra_layer:
        layers.insert(2, extra_layer)
    return {"class_name": "Sequential", "config": {"name": "faq", "layers": layers}}


@pytest.fixture
def faq_keras(tmp_path) -> Path:
    model = Model(spec_from_config(faq_config(), "faq")).init_weights(1)
    path = tmp_path / "faq.keras"
    kcompat.save(model, str(path))
    return path


def assert_clean_error(code, out, err, *needles):
    assert code == 2, (code, out, err)
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("kcompat: error: "), err
    assert "Traceback" not in err
    for needle in needles:
        assert needle in lines[0], (needle, lines[0])


def test_summary_json_counts_the_faq_arithmetic(faq_keras):
    code, out, err = cli("summary", faq_keras, "--json")
    assert code == 0, err
    s = json.loads(out)
    by_name = {l["name"]: l for l in s["layers"]}
    assert by_name["D16"]["output_shape"] == [None, 3, 16] and by_name["D16"]["params"] == 2 * 16 + 16
    assert by_name["F"]["output_shape"] == [None, 48]
    assert by_name["D4"]["params"] == 48 * 4 + 4
    assert s["total_params"] == 244 and s["trainable_params"] == 244 and s["non_trainable_params"] == 0


def test_summary_explain_says_why(faq_keras):
    code, out, err = cli("summary", faq_keras, "--explain")
    assert code == 0, err
    line = next(l for l in out.splitlines() if l.lstrip().startswith("D16"))
    assert "last axis" in line and "2 -> 16" in line and "48 params" in line


def test_run_npy_and_npz_roundtrip(faq_keras, tmp_path):
    x = np.random.default_rng(0).normal(size=(5, 3, 2)).astype(np.float32)
    np.save(tmp_path / "x.npy", x)
    np.savez(tmp_path / "x.npz", inp=x)
    assert cli("run", faq_keras, "-i", tmp_path / "x.npy", "-o", tmp_path / "y.npy")[0] == 0
    assert cli("run", faq_keras, "-i", tmp_path / "x.npz", "-o", tmp_path / "y.npz")[0] == 0
    expected = kcompat.load(str(faq_keras)).predict(x)[0]
    np.testing.assert_array_equal(np.load(tmp_path / "y.npy"), expected)
    with np.load(tmp_path / "y.npz") as z:
        assert z.files == ["D4"]
        np.testing.assert_array_equal(z["D4"], expected)


def test_convert_and_diff_same_and_different(faq_keras, tmp_path):
    for ext in (".h5", ".json", ".keras"):
        dst = tmp_path / f"copy{ext}"
        code, _, err = cli("convert", faq_keras, dst)
        assert code == 0, err
        code, out, err = cli("diff", faq_keras, dst)
        assert code == 0, (ext, out, err)
    other = Model(spec_from_config(faq_config(), "faq")).init_weights(2)
    kcompat.save(other, str(tmp_path / "other.keras"))
    code, out, _ = cli("diff", faq_keras, tmp_path / "other.keras")
    assert code == 1 and "D16" in out and "outputs" in out


# ------------------------------------------------------------------ bad input

def test_missing_file(tmp_path):
    assert_clean_error(*cli("summary", tmp_path / "nope.keras"), "nope.keras", "no such file")


def test_empty_file(tmp_path):
    for ext in (".keras", ".h5", ".json", ".onnx"):
        p = tmp_path / f"empty{ext}"
        p.write_bytes(b"")
        assert_clean_error(*cli("summary", p), f"empty{ext}", "empty")


def test_truncated_keras(faq_keras, tmp_path):
    p = tmp_path / "trunc.keras"
    p.write_bytes(faq_keras.read_bytes()[: faq_keras.stat().st_size // 2])
    assert_clean_error(*cli("summary", p), "trunc.keras")


def test_corrupt_files(tmp_path):
    for ext in (".keras", ".h5", ".onnx"):
        p = tmp_path / f"junk{ext}"
        p.write_bytes(os.urandom(2048))
        assert_clean_error(*cli("summary", p), f"junk{ext}")


def test_invalid_json(tmp_path):
    p = tmp_path / "bad.json"
    p.write_text('{"class_name": "Sequential", "config": {')
    assert_clean_error(*cli("summary", p), "bad.json", "invalid JSON")


def test_unknown_layer_class(tmp_path):
    cfg = faq_config(extra_layer={"class_name": "FancyLayer", "config": {"name": "fancy"}})
    p = tmp_path / "unknown.json"
    p.write_text(json.dumps(cfg))
    assert_clean_error(*cli("summary", p), "unknown.json", "fancy", "FancyLayer")


def test_impossible_config(tmp_path):
    p = tmp_path / "neg.json"
    p.write_text(json.dumps(faq_config(units=-3)))
    assert_clean_error(*cli("summary", p), "neg.json", "D16", "units=-3")


def test_lambda_refused_by_name(tmp_path):
    marker = tmp_path / "pwned"
    code_obj = {"class_name": "__lambda__", "config": {"code": f"open({str(marker)!r}, 'w')", "defaults": None}}
    cfg = faq_config(extra_layer={"class_name": "Lambda", "config": {"name": "lam", "function": code_obj}})
    p = tmp_path / "lambda.json"
    p.write_text(json.dumps(cfg))
    assert_clean_error(*cli("summary", p), "lambda.json", "lam", "Lambda")
    assert not marker.exists()


def test_weights_missing_and_wrong_shape(tmp_path, faq_keras):
    arch = tmp_path / "arch.json"
    arch.write_text(json.dumps(faq_config()))
    x = tmp_path / "x.npy"
    np.save(x, np.zeros((1, 3, 2), np.float32))
    # architecture only, no weights: run refuses clearly
    assert_clean_error(*cli("run", arch, "-i", x, "-o", tmp_path / "y.npy"), "arch.json", "weights")
    # weights of another architecture (units 8): shape mismatch names layer, expected and received
    small = Model(spec_from_config(faq_config(units=8), "small")).init_weights(0)
    kcompat.save(small, str(tmp_path / "small.json"))
    code, out, err = cli("run", arch, "--weights", tmp_path / "small.weights.h5", "-i", x, "-o", tmp_path / "y.npy")
    assert_clean_error(code, out, err, "D16", "(2, 16)", "(2, 8)")
    assert not (tmp_path / "y.npy").exists()


def test_wrong_input_shape_and_pickle(faq_keras, tmp_path):
    np.save(tmp_path / "x.npy", np.zeros((2, 3, 5), np.float32))
    assert_clean_error(*cli("run", faq_keras, "-i", tmp_path / "x.npy", "-o", tmp_path / "y.npy"),
                       "x.npy", "(None, 3, 2)", "(2, 3, 5)")
    np.save(tmp_path / "p.npy", np.array([{"a": 1}], dtype=object), allow_pickle=True)
    assert_clean_error(*cli("run", faq_keras, "-i", tmp_path / "p.npy", "-o", tmp_path / "y.npy"), "p.npy", "pickle")
    assert not (tmp_path / "y.npy").exists()
    assert not list(tmp_path.glob("*.part"))


def test_debug_shows_traceback(tmp_path):
    code, _, err = cli("--debug", "summary", tmp_path / "nope.keras")
    assert code != 0 and "Traceback" in err


def test_failed_convert_leaves_no_partial_file(tmp_path):
    arch = tmp_path / "arch.json"
    arch.write_text(json.dumps(faq_config()))
    code, out, err = cli("convert", arch, tmp_path / "out.keras")
    assert_clean_error(code, out, err, "weights")
    assert not (tmp_path / "out.keras").exists() and not list(tmp_path.glob(".*part"))


def test_keras_archive_not_extracted(faq_keras, tmp_path):
    """Reading a .keras file never writes its members to disk (zip slip cannot happen)."""
    evil = tmp_path / "evil.keras"
    with zipfile.ZipFile(faq_keras) as src, zipfile.ZipFile(evil, "w") as dst:
        for info in src.infolist():
            dst.writestr(info, src.read(info.filename))
        dst.writestr("../../escaped.txt", "x")
    code, _, err = cli("summary", evil, cwd=tmp_path)
    assert code == 0, err
    assert not (tmp_path.parent.parent / "escaped.txt").exists()


def test_no_tensorflow_for_read_run_summary_convert_diff(faq_keras, tmp_path):
    """Everything but verify works without importing TensorFlow / Keras."""
    np.save(tmp_path / "x.npy", np.zeros((2, 3, 2), np.float32))
    script = f"""
import sys
from kcompat.cli import main
p = {str(tmp_path)!r}
for args in (["summary", {str(faq_keras)!r}], ["summary", {str(faq_keras)!r}, "--explain"],
             ["run", {str(faq_keras)!r}, "-i", p + "/x.npy", "-o", p + "/y.npy"],
             ["convert", {str(faq_keras)!r}, p + "/m.onnx"], ["convert", p + "/m.onnx", p + "/m.h5"],
             ["convert", p + "/m.h5", p + "/m.json"], ["diff", {str(faq_keras)!r}, p + "/m.json"]):
    assert main(args) == 0, args
print(sorted(m for m in ("tensorflow", "keras", "tf_keras", "torch", "jax") if m in sys.modules))
"""
    p = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=ENV, timeout=300)
    assert p.returncode == 0, p.stderr
    assert p.stdout.strip().splitlines()[-1] == "[]"


def test_keras2_slash_names_are_renamed_for_keras3(tmp_path):
    """Keras 2 allowed '/' in layer names; Keras 3 refuses them. Writing Keras files renames them, with a note."""
    cfg = faq_config()
    cfg["config"]["layers"][1]["config"]["name"] = "block1/dense"
    arch = tmp_path / "slash.json"
    arch.write_text(json.dumps(cfg))
    code, out, err = cli("convert", arch, tmp_path / "out.keras", "--random-weights", "0")
    assert code == 0, err
    assert "kcompat: note: renamed 1 layer(s)" in err and "block1/dense -> block1_dense" in err
    model = kcompat.load(str(tmp_path / "out.keras"))
    assert "block1_dense" in model.layers and model.info["block1_dense"].params == 48
