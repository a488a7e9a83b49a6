"""Time and peak memory of kcompat on big models: a 1 GiB and a 3 GiB Dense stack.

    python benchmarks/big_models.py                 # 1 GiB and 3 GiB (about 25 GB of disk at the peak)
    python benchmarks/big_models.py --sizes 0.25    # a quick look
    python benchmarks/big_models.py --keras         # also check the 1 GiB model's outputs with real Keras

Each model is ``Input(8192) -> Dense(8192, relu) x N`` (N = 4 for 1 GiB, 12 for 3 GiB: 268 M and 805 M
parameters), written by kcompat's own .keras writer from seeded weights generated a layer at a time (no
TensorFlow). Every command runs in a child process (``python -m kcompat ...``); its wall time and peak
resident memory (``ru_maxrss`` from ``os.wait4``) are printed beside the size of the weights:

- ``summary`` of the source and of every converted file (config and dataset shapes only);
- ``run`` on a batch of 4 (weights read as the layers run);
- ``convert`` to .keras, .h5, .json (+ .weights.h5) and .onnx (inline under 2 GiB, external data past it),
  and ``convert --external-data``;
- ONNX Runtime loading and running each .onnx, its outputs compared with kcompat's own NumPy ``run``
  (and with Keras's ``predict`` on the .keras with ``--keras``: slow and memory-hungry at 3 GiB).

Files go to ``--dir`` (default: a temporary folder) and are deleted at the end unless ``--keep``.
"""
from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
UNITS = 8192
LAYER_BYTES = (UNITS * UNITS + UNITS) * 4


def build(folder: Path, n_layers: int) -> Path:
    """Write big.keras with kcompat's writer; weights made a layer at a time into a mapped scratch file."""
    sys.path.insert(0, str(ROOT))
    import kcompat
    from kcompat.formats.keras.config import spec_from_config
    layers = [{"class_name": "InputLayer", "config": {"batch_shape": [None, UNITS], "name": "input"}}]
    layers += [{"class_name": "Dense", "config": {"name": f"dense_{i}", "units": UNITS, "activation": "relu"}}
               for i in range(n_layers)]
    spec = spec_from_config({"class_name": "Sequential", "config": {"name": "big", "layers": layers}}, "big")
    scratch = folder / "weights.scratch"
    raw = np.memmap(scratch, np.float32, "w+", shape=(n_layers, UNITS * UNITS + UNITS))
    rng = np.random.default_rng(0)
    for i in range(n_layers):
        raw[i, :UNITS * UNITS] = rng.standard_normal(UNITS * UNITS, dtype=np.float32) * np.float32(1.5 / np.sqrt(UNITS))
        raw[i, UNITS * UNITS:] = rng.standard_normal(UNITS, dtype=np.float32) * np.float32(0.01)
        raw.flush()
    for i, ls in enumerate(spec.layers[1:]):
        ls.weights = [raw[i, :UNITS * UNITS].reshape(UNITS, UNITS), raw[i, UNITS * UNITS:]]
    spec.layers[0].weights = []
    path = folder / "big.keras"
    kcompat.save(kcompat.Model(spec), str(path))
    del raw, spec
    scratch.unlink()
    np.save(folder / "x.npy", np.random.default_rng(1).standard_normal((4, UNITS)).astype(np.float32))
    return path


def measure(argv: list[str], cwd: Path) -> tuple[float, float, str]:
    """(seconds, peak MiB, last stderr line) of one child process."""
    env = {**os.environ, "PYTHONPATH": str(ROOT), "TF_CPP_MIN_LOG_LEVEL": "3"}
    start = time.perf_counter()
    proc = subprocess.Popen(argv, cwd=cwd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    _, status, usage = os.wait4(proc.pid, 0)
    seconds = time.perf_counter() - start
    err = proc.stderr.read().strip().splitlines()
    proc.stderr.close()
    code = os.waitstatus_to_exitcode(status)
    return seconds, usage.ru_maxrss / 1024, ("" if code == 0 else f"exit {code}: ") + (err[-1] if err else "")


ORT_RUN = """
import sys, numpy as np, onnxruntime as ort
s = ort.InferenceSession(sys.argv[1], providers=["CPUExecutionProvider"])
x = np.load(sys.argv[2])
y = s.run(None, {s.get_inputs()[0].name: x})[0]
ref = np.load(sys.argv[3])
print(f"ONNX Runtime vs kcompat run: max |diff| {np.abs(y - ref).max():.3g}", file=sys.stderr)
"""

KERAS_RUN = """
import sys, numpy as np, keras
m = keras.models.load_model(sys.argv[1])
y = m.predict(np.load(sys.argv[2]), verbose=0)
ref = np.load(sys.argv[3])
print(f"Keras predict vs kcompat run: max |diff| {np.abs(y - ref).max():.3g}", file=sys.stderr)
"""


def bench(size_gib: float, folder: Path, keras: bool) -> list[tuple]:
    n_layers = max(1, round(size_gib * (1 << 30) / LAYER_BYTES))
    weights_mib = n_layers * LAYER_BYTES / (1 << 20)
    print(f"building {n_layers} x Dense({UNITS}): {weights_mib:.0f} MiB of weights in {folder}", file=sys.stderr)
    # in a child: a parent that held the weights would pass its peak memory on to every command it starts
    subprocess.run([sys.executable, __file__, "--build", str(folder), str(n_layers)], check=True)
    py = [sys.executable, "-m", "kcompat"]
    rows = []

    def row(label, argv):
        seconds, mib, note = measure(argv, folder)
        rows.append((f"{size_gib:g} GiB", label, seconds, mib, mib / weights_mib, note))
        print(f"  {label:34s} {seconds:7.2f} s {mib:8.0f} MiB  {mib / weights_mib:5.2f}x  {note}", file=sys.stderr)
    row("summary big.keras", py + ["summary", "big.keras"])
    row("run big.keras (batch 4)", py + ["run", "big.keras", "-i", "x.npy", "-o", "y.npy"])
    for dst in ("out.keras", "out.h5", "out.json", "out.onnx"):
        row(f"convert -> {dst}", py + ["convert", "big.keras", dst])
        row(f"summary {dst}", py + ["summary", dst])
        for f in [dst] if dst != "out.onnx" else []:
            (folder / f).unlink()
        if dst == "out.json":
            (folder / "out.weights.h5").unlink()
    row("convert -> ext.onnx --external-data", py + ["convert", "big.keras", "ext.onnx", "--external-data"])
    row("summary ext.onnx", py + ["summary", "ext.onnx"])
    row("run ext.onnx (kcompat)", py + ["run", "ext.onnx", "-i", "x.npy", "-o", "y_onnx.npy"])
    onnx_files = [f for f in ("out.onnx", "ext.onnx") if (folder / f).exists()]
    for f in onnx_files:
        row(f"ONNX Runtime load + run {f}", [sys.executable, "-c", ORT_RUN, f, "x.npy", "y.npy"])
    if keras:
        row("Keras load_model + predict", [sys.executable, "-c", KERAS_RUN, "big.keras", "x.npy", "y.npy"])
    return rows


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--sizes", default="1,3", help="model sizes in GiB, comma-separated (default 1,3)")
    p.add_argument("--dir", help="where to write the models (default: a temporary folder)")
    p.add_argument("--keep", action="store_true", help="keep the files")
    p.add_argument("--keras", action="store_true", help="also compare with real Keras (slow, needs TensorFlow)")
    p.add_argument("--build", nargs=2, metavar=("FOLDER", "LAYERS"), help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.build:
        build(Path(args.build[0]), int(args.build[1]))
        return
    base = Path(args.dir) if args.dir else Path(tempfile.mkdtemp(prefix="kcompat-big-"))
    rows = []
    try:
        for size in (float(s) for s in args.sizes.split(",")):
            folder = base / f"{size:g}GiB"
            folder.mkdir(parents=True, exist_ok=True)
            try:
                rows += bench(size, folder, args.keras)
            finally:
                if not args.keep:
                    shutil.rmtree(folder, ignore_errors=True)
    finally:
        if not args.keep and not args.dir:
            shutil.rmtree(base, ignore_errors=True)
    print(f"{'model':8s} {'command':36s} {'seconds':>8s} {'peak MiB':>9s} {'/ weights':>9s}  note")
    for size, label, seconds, mib, ratio, note in rows:
        print(f"{size:8s} {label:36s} {seconds:8.2f} {mib:9.0f} {ratio:8.2f}x  {note}")


if __name__ == "__main__":
    main()
