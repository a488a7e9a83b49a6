"""Big models at small scale: weights mapped from the file, not read (summary reads none; run and the writers
read them once), ONNX export streamed into one file or into external data (onnx's own reader, ONNX
Runtime and kcompat agree on both), external data read lazily and only from the model's folder, and deep
graphs (5,000-node ONNX chains, 5,000-layer Keras models) loaded, summarised, run and converted.
benchmarks/big_models.py and benchmarks/big_graphs.py give the figures at 1-3 GiB and 20,000 nodes."""
from __future__ import annotations

import json
import mmap
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

import kcompat
from kcompat.formats.keras.config import spec_from_config
from kcompat.model import Model

ROOT = Path(__file__).resolve().parent.parent
MMAP = mmap.mmap  # (a test below replaces mmap.mmap)


def _dense_stack(units: int, layers: int, seed: int = 0) -> Model:
    config = [{"class_name": "InputLayer", "config": {"batch_shape": [None, units], "name": "x"}}]
    config += [{"class_name": "Dense", "config": {"name": f"d{i}", "units": units, "activation": "relu"}}
               for i in range(layers)]
    spec = spec_from_config({"class_name": "Sequential", "config": {"name": "stack", "layers": config}}, "stack")
    return Model(spec).init_weights(seed)


def _peak_mib(argv: list[str], cwd: Path) -> float:
    """Peak resident memory of ``python -m kcompat ...`` (a child started from this small helper process)."""
    code = ("import os, subprocess, sys; p = subprocess.Popen(sys.argv[1:], stdout=subprocess.DEVNULL); "
            "_, s, u = os.wait4(p.pid, 0); assert os.waitstatus_to_exitcode(s) == 0; print(u.ru_maxrss / 1024)")
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    out = subprocess.run([sys.executable, "-c", code, sys.executable, "-m", "kcompat", *argv], cwd=cwd, env=env,
                         capture_output=True, text=True, check=True)
    return float(out.stdout)


def _mapped(array: np.ndarray) -> bool:
    base = array
    while isinstance(base, np.ndarray):
        base = base.base
    return isinstance(base, MMAP)


@pytest.mark.parametrize("ext", [".keras", ".h5", ".json"])
def test_weights_are_mapped_not_read(tmp_path, ext):
    model = _dense_stack(64, 3)
    path = tmp_path / f"m{ext}"
    kcompat.save(model, str(path))
    loaded = kcompat.load(str(path))
    weights = [w for ls in loaded.spec.layers for w in ls.weights or []]
    assert weights and all(_mapped(w) for w in weights)  # a view of the file, read by the OS on use
    x = np.random.default_rng(0).standard_normal((2, 64)).astype(np.float32)
    np.testing.assert_array_equal(loaded.predict(x)[0], model.predict(x)[0])
    loaded.spec.layers[-1].weights[1][:] += 1.0  # copy-on-write: the model changes, the file does not
    assert not np.array_equal(loaded.predict(x)[0], model.predict(x)[0])
    np.testing.assert_array_equal(kcompat.load(str(path)).predict(x)[0], model.predict(x)[0])


def test_summary_reads_no_weights_and_run_reads_them_once(tmp_path):
    """32 MiB of weights: summary stays at the interpreter's size; run and convert add the weights once."""
    model = _dense_stack(1024, 8)  # 8 x 4 MiB
    kcompat.save(model, str(tmp_path / "m.keras"))
    np.save(tmp_path / "x.npy", np.ones((2, 1024), np.float32))
    weights = 8 * (1024 * 1024 + 1024) * 4 / 2**20
    small = _dense_stack(8, 1)
    kcompat.save(small, str(tmp_path / "small.keras"))
    base = _peak_mib(["summary", "small.keras"], tmp_path)
    assert _peak_mib(["summary", "m.keras"], tmp_path) < base + 0.25 * weights
    assert _peak_mib(["run", "m.keras", "-i", "x.npy", "-o", "y.npy"], tmp_path) < base + 1.2 * weights
    for dst in ("o.keras", "o.h5", "o.json"):
        assert _peak_mib(["convert", "m.keras", dst], tmp_path) < base + 1.2 * weights, dst


@pytest.mark.parametrize("external", [False, True], ids=["one_file", "external_data"])
def test_streamed_onnx_export_matches_onnx_and_onnxruntime(tmp_path, monkeypatch, external):
    """Initializers from 1 KiB on are spooled; the file is onnx's own format either way."""
    from kcompat.formats.onnx.export import store
    monkeypatch.setattr(store, "BIG_BYTES", 1024)
    model = _dense_stack(32, 3)
    path = tmp_path / "m.onnx"
    written = kcompat.save(model, str(path), external_data=external)
    assert written == ([str(path), str(path) + ".data"] if external else [str(path)])
    onnx.checker.check_model(str(path), full_check=True)
    proto = onnx.load(str(path))  # onnx reads the external data beside it too
    values = {t.name: numpy_helper.to_array(t) for t in proto.graph.initializer}
    kernels = [w for ls in model.spec.layers for w in ls.weights or [] if w.ndim == 2]
    assert all(any(v.shape == k.shape and np.array_equal(v, k) for v in values.values()) for k in kernels)
    x = np.random.default_rng(0).standard_normal((3, 32)).astype(np.float32)
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    np.testing.assert_allclose(session.run(None, {"x": x})[0], model.predict(x)[0], rtol=1e-5, atol=1e-6)
    back = kcompat.load(str(path))
    if external:  # read lazily: the arrays are views of the .data file
        assert all(_mapped(w) for ls in back.spec.layers for w in ls.weights or [] if w.size > 256)
    np.testing.assert_allclose(back.predict(x)[0], model.predict(x)[0], rtol=1e-5, atol=1e-6)


def test_external_data_automatic_past_the_limit(tmp_path, monkeypatch):
    from kcompat.formats.onnx.export import store
    monkeypatch.setattr(store, "BIG_BYTES", 1024)
    monkeypatch.setattr(store, "AUTO_EXTERNAL", 10_000)  # "2 GiB", scaled down
    written = kcompat.save(_dense_stack(32, 3), str(tmp_path / "m.onnx"))
    assert written == [str(tmp_path / "m.onnx"), str(tmp_path / "m.onnx.data")]
    with pytest.raises(kcompat.UnsupportedError, match="external data"):
        kcompat.save(_dense_stack(32, 3), str(tmp_path / "n.onnx"), external_data=False)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.onnx", "m.onnx.data"]


def test_cli_external_data_flag(tmp_path):
    kcompat.save(_dense_stack(64, 1), str(tmp_path / "m.keras"))  # a 16 KiB kernel: over onnx's 1 KiB threshold
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    run = subprocess.run([sys.executable, "-m", "kcompat", "convert", "m.keras", "m.onnx", "--external-data"],
                         cwd=tmp_path, env=env, capture_output=True, text=True)
    assert run.returncode == 0 and "m.onnx.data" in run.stderr, run.stderr
    run = subprocess.run([sys.executable, "-m", "kcompat", "convert", "m.keras", "m.h5", "--external-data"],
                         cwd=tmp_path, env=env, capture_output=True, text=True)
    assert run.returncode == 2 and "--external-data applies only to .onnx output" in run.stderr


@pytest.mark.parametrize("location", ["../outside.bin", "/etc/hostname", "sub/../../outside.bin", "fifo",
                                      "link_out"])
def test_external_data_only_from_the_models_folder(tmp_path, location):
    folder = tmp_path / "model"
    folder.mkdir()
    (tmp_path / "outside.bin").write_bytes(bytes(64))
    os.mkfifo(folder / "fifo")
    os.symlink(tmp_path / "outside.bin", folder / "link_out")
    w = helper.make_tensor("w", TensorProto.FLOAT, [4, 4], [0.0] * 16)
    w.ClearField("float_data")
    w.data_location = TensorProto.EXTERNAL
    for key, value in (("location", location), ("offset", "0"), ("length", "64")):
        entry = w.external_data.add()
        entry.key, entry.value = key, value
    graph = helper.make_graph([helper.make_node("MatMul", ["x", "w"], ["y"])], "g",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [None, 4])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [None, 4])], [w])
    path = folder / "m.onnx"
    path.write_bytes(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]).SerializeToString())
    words = "is missing (or not a regular file)" if location == "fifo" else "outside the model's folder"
    with pytest.raises(kcompat.FormatError, match=words.replace("(", r"\(").replace(")", r"\)")):
        kcompat.load(str(path))


def _onnx_chain(n: int, path: Path) -> None:
    nodes, x = [], "x"
    for i in range(n):
        op = ("Relu", "Neg")[i % 2]  # two ops, so each output differs from its input
        nodes.append(helper.make_node(op, [x], [f"t{i}"], name=f"{op.lower()}_{i}"))
        x = f"t{i}"
    graph = helper.make_graph(nodes, "chain", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [None, 4])],
                              [helper.make_tensor_value_info(x, TensorProto.FLOAT, [None, 4])])
    path.write_bytes(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]).SerializeToString())


def test_5000_node_onnx_chain(tmp_path):
    _onnx_chain(5000, tmp_path / "chain.onnx")
    model = kcompat.load(str(tmp_path / "chain.onnx"))
    assert len(model.spec.layers) == 5001 and len({ls.name for ls in model.spec.layers}) == 5001
    x = np.random.default_rng(0).standard_normal((2, 4)).astype(np.float32)
    expected = -np.maximum(x, 0)  # relu, neg, relu, neg...: -relu(x) after the first pair, then the same
    for _ in range(2499):
        expected = -np.maximum(expected, 0)
    np.testing.assert_array_equal(model.predict(x)[0], expected)
    from kcompat.summary import summary_text
    assert summary_text(model, width=120).count("(Activation)") + summary_text(model, width=120).count("(Negative)") \
        >= 2500


@pytest.mark.parametrize("n", [1000, pytest.param(5000, marks=pytest.mark.slow)])
def test_deep_keras_model_read_written_run(tmp_path, n):
    """A chain of n Dense layers through .keras, .h5 (past HDF5's 64 KiB attribute limit) and .onnx."""
    layers = [{"class_name": "InputLayer", "name": "in", "config": {"batch_shape": [None, 4], "name": "in"},
               "inbound_nodes": []}]
    for i in range(n):
        layers.append({"class_name": "Dense", "name": f"d{i}", "config": {"name": f"d{i}", "units": 4},
                       "inbound_nodes": [{"args": [{"class_name": "__keras_tensor__",
                                                    "config": {"keras_history": [layers[-1]["name"], 0, 0]}}],
                                          "kwargs": {}}]})
    config = {"class_name": "Functional", "config": {"name": "deep", "layers": layers, "input_layers": [["in", 0, 0]],
                                                      "output_layers": [[f"d{n - 1}", 0, 0]]}}
    (tmp_path / "deep.json").write_text(json.dumps(config))
    model = kcompat.load(str(tmp_path / "deep.json")).init_weights(0)
    x = np.ones((1, 4), np.float32)
    for ext in (".keras", ".h5", ".onnx"):
        kcompat.save(model, str(tmp_path / f"deep{ext}"))
        back = kcompat.load(str(tmp_path / f"deep{ext}"))
        assert back.total_params == n * 20
        np.testing.assert_allclose(back.predict(x)[0], model.predict(x)[0], rtol=1e-4, atol=1e-6)


def test_file_systems_without_mmap_read_the_weights(tmp_path, monkeypatch):
    """Where a file cannot be mapped, the weights are read into memory instead: the same model."""
    import kcompat.files
    model = _dense_stack(16, 2)
    kcompat.save(model, str(tmp_path / "m.keras"))

    def no_mmap(*args, **kwargs):
        raise OSError(19, "No such device")
    monkeypatch.setattr(kcompat.files.mmap, "mmap", no_mmap)
    loaded = kcompat.load(str(tmp_path / "m.keras"))
    assert not any(_mapped(w) for ls in loaded.spec.layers for w in ls.weights or [])
    x = np.ones((2, 16), np.float32)
    np.testing.assert_array_equal(loaded.predict(x)[0], model.predict(x)[0])
