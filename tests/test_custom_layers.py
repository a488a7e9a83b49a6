"""Users' custom layers against real Keras: a registered Keras class (``keras.saving.register_keras_serializable``)
defined here, and its kcompat NumPy twin in a user's file given with ``--layers`` (or installed as a
``kcompat.layers`` entry point): summary, run, verify, ONNX export, convert and diff; and, without an
implementation, one error line naming the class once with its layer count and how to add one."""
from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

import kcompat
from kcompat.formats.onnx.export import registry as onnx_registry
from kcompat.layers import REGISTRY, load_layer_file
from kcompat.summary import summary_text
from kcompat.verify.run import verify_file

ROOT = Path(__file__).resolve().parent.parent
ENV = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "PYTHONPATH": str(ROOT), "COLUMNS": "200"}  # tables unclipped
KEY = "KcompatTest>ScaleShift"

# The user's file: the kcompat layer (and its ONNX exporter) for the Keras class below.
PLUGIN = '''
import numpy as np
from kcompat.formats.onnx.export.registry import layer_exporter
from kcompat.layers import Layer, Weight, register


@register("KcompatTest>ScaleShift")
class ScaleShift(Layer):
    """x * scale + offset, one scale per feature (the last axis)."""

    def __init__(self, config, name=None):
        super().__init__(config, name)
        self.offset = float(self.get("offset", 0.0))

    def weights(self, input_shape):
        return [Weight("scale", (input_shape[-1],))]

    def forward(self, x, scale):
        return x * scale + np.float32(self.offset)  # (N, ..., F) * (F,)


@layer_exporter("KcompatTest>ScaleShift")
def export_scale_shift(ctx, layer, inputs, weights):
    y = ctx.op("Mul", inputs[0], ctx.const(weights[0], "scale"))
    return ctx.op("Add", y, ctx.const(np.float32(layer.offset), "offset"))
'''

# What Keras needs to read the same files (in a CLI run: a second --layers file).
KERAS_SIDE = '''
import keras


@keras.saving.register_keras_serializable(package="KcompatTest")
class ScaleShift(keras.layers.Layer):
    def __init__(self, offset=0.0, **kwargs):
        super().__init__(**kwargs)
        self.offset = offset

    def build(self, input_shape):
        self.scale = self.add_weight(shape=(input_shape[-1],), initializer="random_normal", name="scale")

    def call(self, x):
        return x * self.scale + self.offset

    def get_config(self):
        return {**super().get_config(), "offset": self.offset}
'''


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("custom")
    (tmp / "scale_layers.py").write_text(PLUGIN)
    (tmp / "keras_scale.py").write_text(KERAS_SIDE)
    return tmp


@pytest.fixture(scope="module")
def keras_class(keras, files):
    """The Keras class, registered in this process (as a user's own code would)."""
    namespace: dict = {}
    exec(compile(KERAS_SIDE, str(files / "keras_scale.py"), "exec"), namespace)
    return namespace["ScaleShift"]


@pytest.fixture(scope="module")
def plugin(files):
    """The user's kcompat file, loaded as --layers does; unregistered afterwards."""
    load_layer_file(str(files / "scale_layers.py"))
    yield REGISTRY[KEY]
    REGISTRY.pop(KEY)
    onnx_registry.LAYERS.pop(KEY)


@pytest.fixture(scope="module")
def saved(keras, keras_class, files):
    """A Functional model with three ScaleShift layers (one nested in a Sequential), seeded weights, as .keras."""
    L = keras.layers
    inp = keras.Input((5,), name="x")
    x = keras_class(offset=0.5, name="s1")(L.Dense(4, name="d1")(inp))
    block = keras.Sequential([keras.Input((4,)), keras_class(offset=-1.0, name="s2"), L.Dense(3, name="d2")],
                             name="block")
    out = keras_class(offset=0.25, name="s3")(block(x))
    kmodel = keras.Model(inp, out, name="custom")
    rng = np.random.default_rng(0)
    for w in kmodel.weights:
        w.assign(rng.normal(size=tuple(w.shape)).astype("float32"))
    path = files / "custom.keras"
    kmodel.save(path)
    x = rng.normal(size=(3, 5)).astype("float32")
    np.save(files / "x.npy", x)
    return kmodel, path, x, np.asarray(kmodel(x))


def cli(*args):
    p = subprocess.run([sys.executable, "-m", "kcompat", *map(str, args)], capture_output=True, text=True,
                       env=ENV, timeout=300)
    return p.returncode, p.stdout, p.stderr


def test_summary_and_run_match_keras(saved, plugin, monkeypatch):
    kmodel, path, x, want = saved
    model = kcompat.load(str(path))
    assert type(model.layers["s1"]) is plugin and model.total_params == kmodel.count_params()
    np.testing.assert_allclose(model.predict(x)[0], want, rtol=1e-5, atol=1e-6)
    monkeypatch.setenv("COLUMNS", "110")
    for expand in (False, True):
        text: list[str] = []
        kmodel.summary(expand_nested=expand, print_fn=text.append)
        assert summary_text(model, width=110, expand_nested=expand) == "".join(text)


def test_verify_against_keras(saved, plugin):
    report = verify_file(str(saved[1]))
    assert report.ok, report.render()
    assert {"s1", "block/s2", "s3"} <= {d.name for d in report.layers if d.compared}


def test_onnx_export_with_the_users_exporter(saved, plugin, tmp_path):
    import onnxruntime as ort
    _, path, x, want = saved
    kcompat.save(kcompat.load(str(path)), str(tmp_path / "m.onnx"))
    session = ort.InferenceSession(str(tmp_path / "m.onnx"), providers=["CPUExecutionProvider"])
    np.testing.assert_allclose(session.run(None, {"x": x})[0], want, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("ext", [".keras", ".h5", ".json"])
def test_convert_keeps_the_registration_keras_loads_it(keras, saved, plugin, tmp_path, ext):
    _, path, x, want = saved
    kcompat.save(kcompat.load(str(path)), str(tmp_path / f"m{ext}"))
    if ext == ".json":
        loaded = keras.models.model_from_json((tmp_path / "m.json").read_text())
        loaded.load_weights(tmp_path / "m.weights.h5")
    else:
        loaded = keras.models.load_model(tmp_path / f"m{ext}", compile=False)
    assert type(loaded.get_layer("s1")).__name__ == "ScaleShift"
    np.testing.assert_allclose(np.asarray(loaded(x)), want, rtol=1e-5, atol=1e-6)


def test_cli_every_command_takes_layers(saved, files, tmp_path):
    _, path, _, want = saved
    layers = ["--layers", files / "scale_layers.py"]
    code, out, err = cli("summary", path, "--expand", "--width", "100", *layers)
    assert code == 0 and "block/s2" not in out and "└ s2 (ScaleShift)" in out, err
    code, _, err = cli("run", path, "-i", files / "x.npy", "-o", tmp_path / "y.npy", *layers)
    assert code == 0, err
    np.testing.assert_allclose(np.load(tmp_path / "y.npy"), want, rtol=1e-5, atol=1e-6)
    code, out, err = cli("verify", path, "--reference", "onnxruntime", "--all", *layers)
    assert code == 0 and "block/s2" in out, err
    code, out, err = cli("verify", path, "--all", *layers, "--layers", files / "keras_scale.py")  # Keras learns it
    assert code == 0 and "keras" in out and "block/s2" in out, err
    code, _, err = cli("convert", path, tmp_path / "c.h5", *layers)
    assert code == 0, err
    code, out, err = cli("diff", path, tmp_path / "c.h5", *layers)
    assert code == 0, (out, err)


def test_without_an_implementation_one_line_names_the_class_once(saved):
    code, out, err = cli("summary", saved[1])
    assert code == 2 and out == "" and len(err.strip().splitlines()) == 1, err
    line = err.strip()
    assert line.count("ScaleShift") == 1 and "3 layers" in line and "--layers" in line, line
    assert "'s1', 'block/s2', 's3'" in line and "kcompat.layers" in line


def test_many_unknown_layers_one_sentence_per_class(tmp_path):
    """40 layers of one unknown class and 2 of another: two sentences, each class named once."""
    layers = [{"class_name": "InputLayer", "config": {"batch_shape": [None, 4], "name": "inp"}}]
    layers += [{"class_name": "Fancy", "config": {"name": f"f{i}"}} for i in range(40)]
    layers += [{"class_name": "Other", "config": {"name": f"o{i}"}, "module": "my.pkg", "registered_name": "My>Other"}
               for i in range(2)]
    path = tmp_path / "m.json"
    path.write_text(json_dumps({"class_name": "Sequential", "config": {"name": "s", "layers": layers}}))
    with pytest.raises(kcompat.UnsupportedError) as e:
        kcompat.load(str(path))
    message = str(e.value)
    assert message.count("Fancy") == 1 and "40 layers ('f0', 'f1', 'f2', ...)" in message
    assert message.count("Other") == 1 and "'My>Other' (a custom class from module my.pkg), used by 2 layers" in message


def test_built_in_refusals_are_grouped_by_class(tmp_path):
    layers = [{"class_name": "InputLayer", "config": {"batch_shape": [None, 8, 8, 3], "name": "inp"}}]
    layers += [{"class_name": "Conv2D", "config": {"name": f"c{i}", "filters": 3, "kernel_size": 1,
                                                   "padding": "reflect"}} for i in range(12)]
    path = tmp_path / "m.json"
    path.write_text(json_dumps({"class_name": "Sequential", "config": {"name": "s", "layers": layers}}))
    with pytest.raises(kcompat.UnsupportedError) as e:
        kcompat.load(str(path))
    message = str(e.value)
    assert message.count("'padding'") == 1 and "and 11 more Conv2D layer(s) refused: 'c1', 'c2', 'c3', ..." in message


def test_custom_class_never_falls_back_to_a_built_in(tmp_path):
    """A user's class called Dense (registered as Pkg>Dense) is not kcompat's Dense."""
    layers = [{"class_name": "InputLayer", "config": {"batch_shape": [None, 4], "name": "inp"}},
              {"class_name": "Dense", "module": "pkg.layers", "registered_name": "Pkg>Dense",
               "config": {"name": "mine", "units": 2}}]
    path = tmp_path / "m.json"
    path.write_text(json_dumps({"class_name": "Sequential", "config": {"name": "s", "layers": layers}}))
    with pytest.raises(kcompat.UnsupportedError, match="'Pkg>Dense'"):
        kcompat.load(str(path))


def test_a_users_layer_cannot_take_a_built_in_name(tmp_path):
    bad = tmp_path / "bad_layers.py"
    bad.write_text("from kcompat.layers import Layer, register\n\n@register('Dense')\nclass Mine(Layer):\n    pass\n")
    with pytest.raises(kcompat.KcompatError, match="bad_layers.py.*'Dense'.*built-in"):
        load_layer_file(str(bad))
    assert REGISTRY["Dense"].__module__ == "kcompat.layers.core"


def test_bad_layers_files_are_one_line_errors(saved, tmp_path):
    broken = tmp_path / "broken.py"
    broken.write_text("raise RuntimeError('boom')\n")
    code, _, err = cli("summary", saved[1], "--layers", broken)
    assert code == 2 and len(err.strip().splitlines()) == 1 and "broken.py" in err and "boom" in err, err
    code, _, err = cli("summary", saved[1], "--layers", tmp_path / "missing.py")
    assert code == 2 and "missing.py: no such file" in err, err


def test_installed_entry_point(saved, files, tmp_path):
    """A package that declares a 'kcompat.layers' entry point is used without --layers."""
    site = tmp_path / "site"
    (site / "scale_plugin-1.0.dist-info").mkdir(parents=True)
    (site / "scale_plugin-1.0.dist-info" / "METADATA").write_text("Metadata-Version: 2.1\nName: scale-plugin\n"
                                                                  "Version: 1.0\n")
    (site / "scale_plugin-1.0.dist-info" / "entry_points.txt").write_text("[kcompat.layers]\nscale = scale_plugin\n")
    (site / "scale_plugin.py").write_text(PLUGIN)
    env = {**ENV, "PYTHONPATH": f"{site}{os.pathsep}{ROOT}"}
    p = subprocess.run([sys.executable, "-m", "kcompat", "run", str(saved[1]), "-i", str(files / "x.npy"),
                        "-o", str(tmp_path / "y.npy")], capture_output=True, text=True, env=env, timeout=300)
    assert p.returncode == 0, p.stderr
    np.testing.assert_allclose(np.load(tmp_path / "y.npy"), saved[3], rtol=1e-5, atol=1e-6)


def json_dumps(obj) -> str:
    import json
    return json.dumps(obj)


def test_readme_example_runs(tmp_path):
    """The README's 'Custom layers' example file is valid and registers its layer."""
    text = (ROOT / "README.md").read_text()
    block = text.split("## Custom layers", 1)[1].split("```python", 1)[1].split("```", 1)[0]
    path = tmp_path / "my_layers.py"
    path.write_text(textwrap.dedent(block))
    code = ("import sys; from kcompat.layers import load_layer_file, REGISTRY; load_layer_file(sys.argv[1]); "
            "print(sorted(k for k in REGISTRY if '>' in k))")
    p = subprocess.run([sys.executable, "-c", code, str(path)], capture_output=True, text=True, env=ENV, timeout=120)
    assert p.returncode == 0 and "MyPackage>MyScale" in p.stdout, p.stderr
