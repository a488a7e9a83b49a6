"""Keras file formats: every committed fixture reproduces real Keras layer by layer; kcompat's
writes load in real Keras 3 with the same outputs and weights; bad files raise KcompatError
subclasses naming the file (and layer). Fixtures come from fixtures/make_fixtures.py."""
from __future__ import annotations

import json
import shutil
import subprocess
import sys
from contextlib import contextmanager
from pathlib import Path

import h5py
import numpy as np
import pytest

import kcompat
from kcompat.errors import FormatError, KcompatError, ShapeError, UnsupportedError
from kcompat.formats.keras import json_file as keras_json
from kcompat.formats.keras.config import parse_json_text, spec_from_config
from kcompat.formats.keras.legacy_h5 import read_h5, read_weights_file
from kcompat.formats.keras.json_file import read_json

from conftest import FIXTURES, ROOT

MODELS = sorted(p.name[: -len(".io.npz")] for p in FIXTURES.glob("*.io.npz"))
SOURCES = {  # label -> (model file, explicit weights file or None)
    "keras3.keras": ("keras3/{}.keras", None),
    "keras3.h5": ("keras3/{}.h5", None),
    "keras3.json": ("keras3/{}.json", None),  # finds keras3/{}.weights.h5 beside it
    "keras2.h5": ("keras2/{}.h5", None),
    "keras2.json": ("keras2/{}.json", None),  # finds keras2/{}.weights.h5 (tf_keras: positional layout)
    "keras2.json+legacy": ("keras2/{}.json", "keras2/{}_weights.h5"),  # legacy layer_names layout
}
WRITES = [".keras", ".h5", ".json"]


def read_json_architecture(name: str):
    """A fixture's architecture only (no weights)."""
    path = FIXTURES / f"keras3/{name}.json"
    return spec_from_config(parse_json_text(path.read_bytes(), str(path)), str(path))


def fixture_io(name: str) -> tuple[np.ndarray, dict]:
    """The fixture's input and its expected outputs (``layer:<name>``, ``output:<i>``, ``params``)."""
    data = dict(np.load(FIXTURES / f"{name}.io.npz"))
    (x,) = [v for k, v in data.items() if k.startswith("input:")]
    return x, data


def load_fixture(name: str, source: str) -> kcompat.Model:
    """A fixture read by kcompat."""
    model_file, weights_file = SOURCES[source]
    weights = None if weights_file is None else str(FIXTURES / weights_file.format(name))
    return kcompat.load(str(FIXTURES / model_file.format(name)), weights)


def test_fixtures_exist():
    assert {"faq_flatten_first", "faq_dense_first", "two_outputs"} <= set(MODELS)
    for name in MODELS:
        files = {f for pair in SOURCES.values() for f in pair if f} | {"keras3/{}.weights.h5", "keras2/{}.weights.h5"}
        for f in files:
            assert (FIXTURES / f.format(name)).is_file(), f.format(name)


# ---------------------------------------------------------------- reading: kcompat reproduces Keras

@pytest.mark.parametrize("source", SOURCES)
@pytest.mark.parametrize("name", MODELS)
def test_fixture_matches_keras(name, source):
    model = load_fixture(name, source)
    x, expected = fixture_io(name)
    outputs = model.layer_outputs(x)
    layer_keys = [k for k in expected if k.startswith("layer:")]
    assert layer_keys and {k[6:] for k in layer_keys} <= set(outputs)
    for key in layer_keys:
        got, want = outputs[key[6:]], expected[key]
        assert model.shapes[(key[6:], 0)] == (None, *want.shape[1:]), key
        assert got.shape == want.shape and got.dtype == np.float32, key
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5, err_msg=f"{source} {key}")
    for i, got in enumerate(model.predict(x)):
        np.testing.assert_allclose(got, expected[f"output:{i}"], rtol=1e-5, atol=1e-5)
    assert model.total_params == int(expected["params"])


@pytest.mark.parametrize("source", SOURCES)
def test_faq_dense_first_params(source):
    model = load_fixture("faq_dense_first", source)
    assert model.total_params == 244
    assert {n: model.info[n].params for n in ("D16", "A", "F", "D4")} == {"D16": 48, "A": 0, "F": 0, "D4": 196}
    assert model.shapes[("D16", 0)] == (None, 3, 16) and model.shapes[("F", 0)] == (None, 48)


def test_reading_never_imports_tensorflow():
    code = ("import sys, kcompat\n"
            f"for p in {[str(FIXTURES / m.format(n)) for n in MODELS for m, w in SOURCES.values() if w is None]!r}:\n"
            "    kcompat.load(p)\n"
            "bad = [m for m in ('tensorflow', 'keras', 'tf_keras') if m in sys.modules]\n"
            "assert not bad, bad\n")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert result.returncode == 0, result.stderr


def test_json_without_weights_has_no_weights(tmp_path):
    shutil.copy(FIXTURES / "keras3/faq_dense_first.json", tmp_path / "m.json")
    spec = read_json(str(tmp_path / "m.json"))
    assert all(layer.weights is None for layer in spec.layers) and not spec.has_weights


def test_keras2_weights_names_are_followed():
    with h5py.File(FIXTURES / "keras2/faq_dense_first_weights.h5") as f:
        assert [n.decode() if isinstance(n, bytes) else n for n in f["D4"].attrs["weight_names"]] == \
            ["D4/kernel:0", "D4/bias:0"]
    spec = read_weights_file(str(FIXTURES / "keras2/faq_dense_first_weights.h5"),
                             read_json_architecture("faq_dense_first"))
    assert [w.shape for w in spec.layer("D4").weights] == [(48, 4), (4,)]


# ---------------------------------------------------------------- writing: real Keras 3 loads kcompat's files

def keras_load(keras, path):
    if path.suffix == ".json":
        model = keras.models.model_from_json(path.read_text())
        model.load_weights(str(path.with_name(path.stem + ".weights.h5")))
        return model
    return keras.models.load_model(str(path), compile=False)


@pytest.mark.parametrize("ext", WRITES)
@pytest.mark.parametrize("source", SOURCES)
@pytest.mark.parametrize("name", MODELS)
def test_round_trip_through_keras3(keras, tmp_path, name, source, ext):
    model = load_fixture(name, source)
    x, expected = fixture_io(name)
    out = tmp_path / f"{name}{ext}"
    written = kcompat.save(model, str(out))
    assert written == ([str(out), str(tmp_path / f"{name}.weights.h5")] if ext == ".json" else [str(out)])
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(Path(p).name for p in written)

    kmodel = keras_load(keras, out)
    outputs = keras.tree.flatten(kmodel(x, training=False))
    for i, got in enumerate(outputs):
        np.testing.assert_allclose(np.asarray(got), expected[f"output:{i}"], rtol=1e-6, atol=1e-6)
    for layer in kmodel.layers:
        mine = model.weights_of(layer.name)
        theirs = layer.get_weights()
        assert len(theirs) == len(mine), layer.name
        assert all(np.array_equal(a, b) for a, b in zip(theirs, mine)), layer.name

    again = kcompat.load(str(out))
    assert [(l.name, l.class_name) for l in again.spec.layers] == [(l.name, l.class_name) for l in model.spec.layers]
    assert again.spec.sequential == model.spec.sequential
    for layer in model.spec.layers:
        reread = again.weights_of(layer.name)
        assert len(reread) == len(layer.weights)
        assert all(a.dtype == b.dtype and np.array_equal(a, b) for a, b in zip(reread, layer.weights)), layer.name


def test_write_json_is_atomic(tmp_path, monkeypatch):
    model = load_fixture("faq_dense_first", "keras3.keras")

    def broken(model, target):
        raise OSError("disk full")
    monkeypatch.setattr(keras_json, "write_positional_weights", broken)
    with pytest.raises(OSError):
        kcompat.save(model, str(tmp_path / "m.json"))
    assert list(tmp_path.iterdir()) == []


# ---------------------------------------------------------------- bad input

@contextmanager
def raises_naming(exc, path, *words):
    """The block raises ``exc`` (a KcompatError) whose message names ``path`` and holds every word."""
    assert issubclass(exc, KcompatError)
    with pytest.raises(exc) as info:
        yield
    message = str(info.value)
    for word in (str(path), *words):
        assert word in message, f"{word!r} not in {message!r}"


@pytest.mark.parametrize("ext", [".keras", ".h5", ".json"])
def test_missing_and_empty_files(tmp_path, ext):
    with raises_naming(FormatError, tmp_path / f"nope{ext}", "no such file"):
        kcompat.load(str(tmp_path / f"nope{ext}"))
    (tmp_path / f"empty{ext}").write_bytes(b"")
    with raises_naming(FormatError, tmp_path / f"empty{ext}", "empty"):
        kcompat.load(str(tmp_path / f"empty{ext}"))


@pytest.mark.parametrize("fixture", ["keras3/faq_dense_first.keras", "keras3/faq_dense_first.h5",
                                     "keras2/faq_dense_first.h5"])
def test_truncated_files(tmp_path, fixture):
    data = (FIXTURES / fixture).read_bytes()
    path = tmp_path / fixture.replace("/", "_")
    for cut in (len(data) // 2, len(data) - 20, 64):
        path.write_bytes(data[:cut])
        with raises_naming(FormatError, path, "truncated"):
            kcompat.load(str(path))


def test_corrupt_keras_zip(tmp_path):
    data = bytearray((FIXTURES / "keras3/faq_dense_first.keras").read_bytes())
    start = data.find(b'"class_name"')
    data[start:start + 12] = b"X" * 12  # corrupt config.json inside a valid zip directory
    path = tmp_path / "crc.keras"
    path.write_bytes(bytes(data))
    with raises_naming(FormatError, path, "config.json", "corrupt"):
        kcompat.load(str(path))
    path.write_bytes(b"PK\x03\x04" + bytes(range(256)) * 4)
    with raises_naming(FormatError, path, "zip"):
        kcompat.load(str(path))


@pytest.mark.parametrize("text, words", [
    ('{"class_name": "Sequential", "config": ', ["invalid JSON"]),
    ("[1, 2, 3]", ["class_name"]),
    ('{"hello": "world"}', ["class_name"]),
    ('{"class_name": "Sequential", "config": {}}', ["layers"]),
    ('{"class_name": "Dense", "config": {"units": 3, "layers": []}}', ["Dense"]),
    (b"\xff\xfe\x00garbage", ["UTF-8"]),
])
def test_bad_json(tmp_path, text, words):
    path = tmp_path / "bad.json"
    path.write_bytes(text if isinstance(text, bytes) else text.encode())
    with raises_naming(KcompatError, path, *words):
        kcompat.load(str(path))


LAMBDA = {"module": "keras.layers", "class_name": "Lambda", "name": "sneaky", "registered_name": None,
          "config": {"name": "sneaky", "function": {"class_name": "__lambda__",
                                                    "config": {"code": "this is not code", "defaults": None}}},
          "inbound_nodes": []}


@pytest.mark.parametrize("ext", [".json", ".h5"])
def test_lambda_layer_refused_without_running_it(tmp_path, ext):
    config = json.loads((FIXTURES / "keras3/faq_dense_first.json").read_text())
    config["config"]["layers"].insert(2, LAMBDA)
    path = tmp_path / f"lambda{ext}"
    if ext == ".json":
        path.write_text(json.dumps(config))
    else:
        shutil.copy(FIXTURES / "keras3/faq_dense_first.h5", path)
        with h5py.File(path, "a") as f:
            f.attrs["model_config"] = json.dumps(config).encode()
    with raises_naming(UnsupportedError, path, "'sneaky'", "Lambda", "never runs"):
        kcompat.load(str(path))


def test_chunked_layer_names_attribute(tmp_path):
    """Keras splits attributes over 64 KB into ``layer_names0``, ``layer_names1``...: read them joined."""
    path = tmp_path / "chunked.h5"
    shutil.copy(FIXTURES / "keras2/faq_dense_first_weights.h5", path)
    with h5py.File(path, "a") as f:
        names = list(f.attrs["layer_names"])
        del f.attrs["layer_names"]
        f.attrs["layer_names0"], f.attrs["layer_names1"] = names[:2], names[2:]
    spec = read_weights_file(str(path), read_json_architecture("faq_dense_first"))
    assert [w.shape for w in spec.layer("D16").weights] == [(2, 16), (16,)]


@pytest.mark.parametrize("fixture", ["keras3/faq_dense_first.weights.h5", "keras2/faq_dense_first_weights.h5",
                                     "keras2/faq_dense_first.weights.h5"])
def test_weights_only_h5_is_not_a_model(tmp_path, fixture):
    path = tmp_path / "weights_only.h5"
    shutil.copy(FIXTURES / fixture, path)
    with raises_naming(FormatError, path, "weights only", "no model architecture"):
        read_h5(str(path))


def json_with_weights(tmp_path, weights_fixture: str, edit) -> tuple:
    """keras3 faq_dense_first.json and a copy of a weights file edited by ``edit(h5py.File)``."""
    model = tmp_path / "m.json"
    shutil.copy(FIXTURES / "keras3/faq_dense_first.json", model)
    weights = tmp_path / "w.h5"
    shutil.copy(FIXTURES / weights_fixture, weights)
    with h5py.File(weights, "a") as f:
        edit(f)
    return str(model), str(weights)


def _drop_legacy_layer(f):
    del f["D4"]
    f.attrs["layer_names"] = [n for n in f.attrs["layer_names"] if n not in (b"D4", "D4")]


def _drop_positional_layer(f):
    del f["layers/dense_1"]  # D4 is the second Dense


def _legacy_shape(f):
    del f["D4/D4/kernel:0"]
    f["D4/D4"].create_dataset("kernel:0", data=np.zeros((47, 4), np.float32))


def _positional_shape(f):
    del f["layers/dense_1/vars/0"]
    f["layers/dense_1/vars"].create_dataset("0", data=np.zeros((47, 4), np.float32))


def _legacy_count(f):
    f["D4"].attrs["weight_names"] = [b"D4/kernel:0"]


def _positional_count(f):
    del f["layers/dense_1/vars/1"]


@pytest.mark.parametrize("fixture, edit, exc, words", [
    ("keras2/faq_dense_first_weights.h5", _drop_legacy_layer, FormatError, ["'D4'", "no weights"]),
    ("keras3/faq_dense_first.weights.h5", _drop_positional_layer, FormatError, ["layers/dense_1", "'D4'"]),
    ("keras2/faq_dense_first_weights.h5", _legacy_shape, ShapeError, ["'D4'", "kernel", "(48, 4)", "(47, 4)"]),
    ("keras3/faq_dense_first.weights.h5", _positional_shape, ShapeError, ["'D4'", "kernel", "(48, 4)", "(47, 4)"]),
    ("keras2/faq_dense_first_weights.h5", _legacy_count, ShapeError, ["'D4'", "expected 2", "received 1"]),
    ("keras3/faq_dense_first.weights.h5", _positional_count, ShapeError, ["'D4'", "expected 2", "received 1"]),
], ids=["legacy-missing-layer", "positional-missing-layer", "legacy-shape", "positional-shape",
        "legacy-count", "positional-count"])
def test_weights_mismatch(tmp_path, fixture, edit, exc, words):
    model, weights = json_with_weights(tmp_path, fixture, edit)
    with raises_naming(exc, weights, *words):
        kcompat.load(model, weights)


def test_weights_file_missing_or_not_weights(tmp_path):
    model = tmp_path / "m.json"
    shutil.copy(FIXTURES / "keras3/faq_dense_first.json", model)
    with raises_naming(FormatError, tmp_path / "none.h5", "no such file"):
        kcompat.load(str(model), str(tmp_path / "none.h5"))
    with h5py.File(tmp_path / "other.h5", "w") as f:
        f.create_dataset("data", data=np.zeros(3))
    with raises_naming(FormatError, tmp_path / "other.h5", "not a Keras weights file"):
        kcompat.load(str(model), str(tmp_path / "other.h5"))


def test_hdf5_that_makes_libhdf5_spin_gives_a_clean_error(tmp_path, monkeypatch):
    """libhdf5 can loop forever on a damaged object header (holding the GIL); the forked probe turns that
    into a FormatError naming the file. The spin is simulated so the test is fast and deterministic."""
    import time
    from kcompat.formats.keras import hdf5
    monkeypatch.setattr(hdf5, "_walk_h5", lambda source, tick: time.sleep(3600))
    monkeypatch.setattr(hdf5, "PROBE_SECONDS", 0.5)
    with pytest.raises(kcompat.FormatError, match=r"faq_dense_first\.h5: reading the HDF5 structure did not finish"):
        kcompat.load(str(FIXTURES / "keras3" / "faq_dense_first.h5"))


def _weight_bytes(path) -> dict:
    """(layer, weight index) -> (file offset, nbytes) of each contiguous weight dataset of a legacy .h5."""
    import h5py
    out = {}
    with h5py.File(path, "r") as f:
        group = f["model_weights"]
        for layer in group.attrs["layer_names"]:
            layer = layer.decode() if isinstance(layer, bytes) else layer
            for i, w in enumerate(group[layer].attrs["weight_names"]):
                ds = group[layer][w.decode() if isinstance(w, bytes) else w]
                out[(layer, i)] = (ds.id.get_offset(), ds.id.get_storage_size())
    return out


def test_zeroed_blocks_of_an_h5_give_the_file_contents_or_a_clean_error(tmp_path, monkeypatch):
    """Every 1 KiB block zeroed in turn: kcompat raises a KcompatError naming the file (no other exception, no
    hang: real libhdf5 spins on some of these, the probe stops it), or reads a model that is exactly what the
    file now holds: the original architecture, and weights changed only in bytes inside the zeroed block."""
    from kcompat.formats.keras import hdf5
    monkeypatch.setattr(hdf5, "PROBE_SECONDS", 2.0)
    source = FIXTURES / "keras3" / "faq_dense_first.h5"
    data = source.read_bytes()
    original = kcompat.load(str(source))
    where = _weight_bytes(source)
    loaded = 0
    for offset in range(0, len(data) - 1024, 1024):
        broken = bytearray(data)
        broken[offset:offset + 1024] = bytes(1024)
        path = tmp_path / f"z{offset}.h5"
        path.write_bytes(bytes(broken))
        try:
            model = kcompat.load(str(path))
        except kcompat.KcompatError as e:
            assert f"z{offset}.h5" in str(e)
            continue
        loaded += 1
        assert [(ls.name, ls.class_name) for ls in model.spec.layers] == \
            [(ls.name, ls.class_name) for ls in original.spec.layers]
        for ls, orig in zip(model.spec.layers, original.spec.layers):
            for i, (w, o) in enumerate(zip(ls.weights, orig.weights)):
                start, size = where[(ls.name, i)]
                changed = np.flatnonzero(w.view(np.uint8) != o.view(np.uint8)) + start  # file offsets
                assert w.shape == o.shape and np.all((changed >= offset) & (changed < offset + 1024)), \
                    f"block {offset}: weight {i} of '{ls.name}' changed outside the zeroed bytes"
    assert loaded, "no zeroed block left a readable file: the check of what loads never ran"
