"""A convert killed at any moment leaves the destination absent or whole, never half written: also the
JSON + weights pair and an ONNX model with external data, whose files are committed together
(kcompat/files.py atomic_paths: the old main file removed, companions renamed in, the main file last).

Two ways to kill: a process that SIGKILLs itself at each of its renames (every commit point, exactly),
and a convert SIGKILLed from outside at several moments of its write. After each kill the destination
must be absent, or load and compute exactly the old model or the new one (never a mix of the two)."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

import kcompat
from fuzz_run import Server
from kcompat.formats.keras.config import spec_from_config
from kcompat.model import Model

ROOT = Path(__file__).resolve().parent.parent
TARGETS = ["out.keras", "out.h5", "out.json", "out.onnx", "ext.onnx"]  # ext.onnx: --external-data
X = np.random.default_rng(3).standard_normal((2, 256)).astype(np.float32)


def _model(seed: int, units: int = 256) -> Model:
    layers = [{"class_name": "InputLayer", "config": {"batch_shape": [None, 256], "name": "x"}},
              {"class_name": "Dense", "config": {"name": "d1", "units": units, "activation": "relu"}},
              {"class_name": "Dense", "config": {"name": "d2", "units": 8}}]
    return Model(spec_from_config({"class_name": "Sequential", "config": {"name": "m", "layers": layers}},
                                  "m")).init_weights(seed)


@pytest.fixture(scope="module")
def sources(tmp_path_factory):
    """new.keras (what each convert writes) and old.keras (what the destination held before)."""
    folder = tmp_path_factory.mktemp("sources")
    for name, seed, units in (("new.keras", 1, 2048), ("old.keras", 2, 2048)):
        kcompat.save(_model(seed, units), str(folder / name))
    expected = {name: kcompat.load(str(folder / name)).predict(X)[0] for name in ("new.keras", "old.keras")}
    return folder, expected


def _argv(source: Path, target: str) -> list[str]:
    extra = ["--external-data"] if target == "ext.onnx" else []
    return [sys.executable, "-m", "kcompat", "convert", str(source), target, *extra]


def _check(folder: Path, target: str, expected: dict, old: bool) -> str:
    """'absent', 'new' or 'old'; fails on a destination that is there but not whole."""
    path = folder / target
    companions = {"out.json": ["out.weights.h5"], "ext.onnx": ["ext.onnx.data"]}.get(target, [])
    if not path.exists():
        return "absent"
    for c in companions:
        assert (folder / c).exists(), f"{target} is there without its {c}"
    got = kcompat.load(str(path)).predict(X)[0]  # a half-written file fails here
    for name in ("new.keras", "old.keras") if old else ("new.keras",):
        if np.array_equal(got, expected[name]):
            return name.split(".")[0]
    raise AssertionError(f"{target} holds neither the old model nor the new one")


def _prepare(folder: Path, sources: Path, target: str, old: bool) -> None:
    for p in folder.iterdir():
        p.unlink()
    if old:  # the destination already holds another model
        subprocess.run(_argv(sources / "old.keras", target), cwd=folder, check=True, capture_output=True)


@pytest.fixture(scope="module")
def server():
    s = Server()
    yield s
    s.close()


@pytest.mark.parametrize("target", TARGETS)
@pytest.mark.parametrize("old", [False, True], ids=["new", "overwrite"])
def test_killed_at_every_commit_point(sources, server, tmp_path, target, old):
    """SIGKILL at the 1st, 2nd, 3rd rename of the commit: the destination is absent, old or new, never mixed;
    a one-file destination is replaced in one rename, so it is never absent once it existed."""
    folder_src, expected = sources
    seen = set()
    for kill_at in range(3):
        for p in tmp_path.iterdir():
            p.unlink()
        if old:
            assert server.run(_argv(folder_src / "old.keras", target)[3:], str(tmp_path))["code"] == 0
        result = server.run(_argv(folder_src / "new.keras", target)[3:], str(tmp_path), kill_at_replace=kill_at)
        state = _check(tmp_path, target, expected, old)
        killed = result["code"] == -signal.SIGKILL
        assert (state in ("absent", "old")) if killed else state == "new", (kill_at, result, state)
        assert not (old and state == "absent" and target not in ("out.json", "ext.onnx")), state
        seen.add(state)
    assert "new" in seen and len(seen) > 1, seen  # killed before the commit, and a write that completed


@pytest.mark.parametrize("target,delays", [("out.json", (0.0, 0.1)),
                                           pytest.param("out.keras", (0.0, 0.05, 0.2, 3.0), marks=pytest.mark.slow),
                                           pytest.param("out.json", (0.02, 0.05, 0.2, 3.0), marks=pytest.mark.slow),
                                           pytest.param("ext.onnx", (0.0, 0.05, 0.2, 3.0), marks=pytest.mark.slow)])
def test_killed_from_outside_mid_write(sources, tmp_path, target, delays):
    """A convert SIGKILLed from outside while it writes (moments after its first temporary file appears):
    the destination that held an old model holds it still, or the new one, or (a pair) nothing."""
    folder_src, expected = sources
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    states = []
    for delay in delays:
        _prepare(tmp_path, folder_src, target, old=True)
        proc = subprocess.Popen(_argv(folder_src / "new.keras", target), cwd=tmp_path, env=env,
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 60
        while proc.poll() is None and not any(p.name.endswith(".part") for p in tmp_path.iterdir()):
            if time.monotonic() > deadline:
                break
            time.sleep(0.001)
        time.sleep(delay)
        if proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
        proc.wait()
        states.append(_check(tmp_path, target, expected, old=True))
    assert set(states) <= {"absent", "old", "new"}, states
