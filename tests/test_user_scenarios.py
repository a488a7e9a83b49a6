"""What a demanding user met: realistic models and plausible mistakes, each a bug once."""
from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest

import kcompat
from kcompat.model_diff import diff_models
from kcompat.errors import ShapeError
from kcompat.formats.keras.config import spec_from_config
from kcompat.model import Model
from kcompat.verify.run import make_inputs

ENV = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}


def cli(*args, cwd=None):
    p = subprocess.run([sys.executable, "-m", "kcompat", *map(str, args)], capture_output=True, text=True,
                       cwd=cwd, env=ENV, timeout=300)
    return p.returncode, p.stdout, p.stderr


def dense_model(names=("inp", "d1", "d2"), batch=None, dtype="float32", model_name="m") -> Model:
    """Input(5) -> Dense(3) -> Dense(2) (Sequential), seeded weights."""
    layers = [{"class_name": "InputLayer", "config": {"batch_shape": [batch, 5], "dtype": dtype, "name": names[0]}},
              {"class_name": "Dense", "config": {"name": names[1], "units": 3, "activation": "relu"}},
              {"class_name": "Dense", "config": {"name": names[2], "units": 2, "activation": "linear"}}]
    return Model(spec_from_config({"class_name": "Sequential", "config": {"name": model_name, "layers": layers}},
                                  "m")).init_weights(1)


def assert_one_error(rc, out, err, *words):
    assert rc == 2, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("kcompat: error: "), err
    assert "Traceback" not in err and out == ""
    for w in words:
        assert w in lines[0], lines[0]


def test_float64_input_exports_valid_onnx(tmp_path):
    """Input(dtype=float64): kcompat computes in float32, so the ONNX graph input is float32 (was float64 with
    float32 weights: an invalid graph, 'B has inconsistent type')."""
    import onnx
    path = tmp_path / "f64.onnx"
    kcompat.save(dense_model(dtype="float64"), str(path))
    m = onnx.load(str(path))
    onnx.checker.check_model(m, full_check=True)
    assert m.graph.input[0].type.tensor_type.elem_type == onnx.TensorProto.FLOAT


def test_onnx_round_trip_keeps_unicode_and_space_names(tmp_path):
    """Keras allows any layer name but '/': unicode, spaces and ':' survive .keras -> .onnx -> kcompat."""
    names = ("in put", "dénse ü", "out:0")
    path = tmp_path / "m.onnx"
    kcompat.save(dense_model(names=names, model_name="módel 日本"), str(path))
    back = kcompat.load(str(path))
    assert [ls.name for ls in back.spec.layers] == list(names)
    assert back.spec.name == "módel 日本"


def test_diff_fixed_batch_and_int_inputs():
    """A Sequential built by calling it on batch 1 has input (1, 5): diff fed batch 2 and failed."""
    m = dense_model(batch=1)
    result = diff_models(m, dense_model(batch=1))
    assert result.same, result.render()


def test_diff_ignores_initializers_and_normalises_negative_axis():
    a, b = dense_model(), dense_model()
    a.spec.layers[1].config["kernel_initializer"] = {"class_name": "GlorotUniform", "config": {}}
    a.spec.layers[1].config["gamma_initializer"] = {"class_name": "Ones", "config": {}}
    a.spec.layers[1].config["momentum"] = 0.99
    assert diff_models(a, b).same, diff_models(a, b).render()
    from kcompat.model_diff import _semantic
    assert _semantic({"axis": -1}, 2) == _semantic({"axis": 1}, 2)
    assert _semantic({"axis": -1}, None) != _semantic({"axis": 1}, None)


def test_diff_reports_a_weight_that_became_nan():
    """A NaN weight is a difference (``NaN > atol`` is False, so it used to pass); NaN in both is the same;
    the NaN reaches the outputs, which are reported too, whatever --atol."""
    a, b = dense_model(), dense_model()
    dense = next(i for i, ls in enumerate(b.spec.layers) if ls.weights)
    b.spec.layers[dense].weights[0][0, 0] = np.nan
    result = diff_models(a, b, atol=1e9)
    kinds = {kind for kind, _ in result.differences}
    assert not result.same and {"weights", "outputs"} <= kinds, result.render()
    assert any(b.spec.layers[dense].name in m and "kernel" in m for k, m in result.differences if k == "weights")
    a.spec.layers[dense].weights[0][0, 0] = np.nan
    assert not [k for k, _ in diff_models(a, b).differences if k == "weights"]


def test_unknown_non_batch_dimension_names_the_file():
    layers = [{"class_name": "InputLayer", "config": {"batch_shape": [None, None, 4], "name": "x"}},
              {"class_name": "Dense", "config": {"name": "d", "units": 2}}]
    m = Model(spec_from_config({"class_name": "Sequential", "config": {"name": "s", "layers": layers}}, "dyn.onnx"))
    with pytest.raises(ShapeError, match=r"^dyn.onnx: input 'x'"):
        make_inputs(m.init_weights(0))


def test_written_files_get_the_usual_mode(tmp_path):
    """mkstemp makes 0600 files; a converted model is readable by others as any file the user writes."""
    old = os.umask(0o022)
    try:
        for ext in (".keras", ".h5", ".json", ".onnx"):
            written = kcompat.save(dense_model(), str(tmp_path / f"m{ext}"))
            for f in written or [str(tmp_path / f"m{ext}")]:
                assert os.stat(f).st_mode & 0o777 == 0o644, f
    finally:
        os.umask(old)


def test_output_path_mistakes(tmp_path):
    src = tmp_path / "m.keras"
    kcompat.save(dense_model(), str(src))
    (tmp_path / "d.onnx").mkdir()
    assert_one_error(*cli("convert", src, "d.onnx", cwd=tmp_path), "d.onnx", "is a directory")
    assert_one_error(*cli("convert", src, "m.keras/x.onnx", cwd=tmp_path), "m.keras is a file, not a folder")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["d.onnx", "m.keras"]  # no .part left


def test_renamed_keras_file_says_what_it_is(tmp_path):
    src = tmp_path / "m.keras"
    kcompat.save(dense_model(), str(src))
    (tmp_path / "m.h5").write_bytes(src.read_bytes())
    assert_one_error(*cli("summary", "m.h5", cwd=tmp_path), "m.h5", ".keras (zip) archive", "rename it to m.keras")


def test_verify_bad_json_path_fails_before_the_table(tmp_path):
    src = tmp_path / "m.keras"
    kcompat.save(dense_model(), str(src))
    rc, out, err = cli("verify", src, "--reference", "onnxruntime", "--json", tmp_path / "no" / "v.json")
    assert_one_error(rc, out, err, "v.json", "does not exist")


def test_verify_model_keras_3_cannot_read(tmp_path, keras):
    """A Keras 2 layer name with '/': Keras 3 refuses it; exit 2 with Keras's reason, not an internal error."""
    path = tmp_path / "slash.h5"
    from kcompat.formats.keras.legacy_h5 import write_h5  # the writer itself: kcompat.save would rename the layer
    write_h5(dense_model(names=("inp", "block1/dense", "out")), str(path))
    assert_one_error(*cli("verify", path), "Keras could not read", "cannot contain character `/`",
                     "--reference onnxruntime")


@pytest.mark.parametrize("args", [("verify", "m.keras", "--seed", "abc"), ("verify", "m.keras", "--reference", "tf"),
                                  ("bogus",), ("diff", "m.keras", "m.keras", "--atol", "-1")])
def test_bad_options_give_one_error_line(tmp_path, args):
    """argparse's usage block and 'kcompat verify: error:' were several lines; diff took --atol -1."""
    kcompat.save(dense_model(), str(tmp_path / "m.keras"))
    assert_one_error(*cli(*args, cwd=tmp_path), args[-1])


def test_verify_input_of_wrong_shape_names_the_file(tmp_path):
    kcompat.save(dense_model(), str(tmp_path / "m.keras"))
    np.save(tmp_path / "x.npy", np.zeros((2, 9), np.float32))
    assert_one_error(*cli("verify", "m.keras", "--reference", "onnxruntime", "--input", "x.npy", cwd=tmp_path),
                     "x.npy: input 'inp' expected shape (None, 5); received (2, 9)")


def test_summary_width_too_small_says_width(tmp_path):
    kcompat.save(dense_model(), str(tmp_path / "m.keras"))
    assert_one_error(*cli("summary", "m.keras", "--width", "10", cwd=tmp_path), "Received: width=10")


def test_keras2_conv_transpose_groups_not_written_for_keras3():
    """tf.keras saves Conv2DTranspose with groups=1; Keras 3 refuses that keyword, so a converted .keras
    (or verify's re-write) would not load in Keras 3."""
    from kcompat.formats.keras.config import layer_config_json
    from kcompat.spec import LayerSpec
    cfg = {"name": "t", "filters": 2, "kernel_size": [3, 3], "groups": 1}
    assert "groups" not in layer_config_json(LayerSpec(name="t", class_name="Conv2DTranspose", config=cfg))
    assert layer_config_json(LayerSpec(name="c", class_name="Conv2D", config=cfg))["groups"] == 1
