"""kcompat's .keras -> .onnx export beside tf2onnx's, on the committed fixture models.

Run: /work/venv/bin/python benchmarks/onnx_convert.py [fixtures/onnx/*.keras ...]
Default: the fixtures/onnx models, plus the CNN fixtures of fixtures/keras3 that exist
(conv_bn; mnist_cnn and small_resnet once make_fixtures.py has written them). For each model: node count and conversion time of each tool, then ONNX Runtime latency of
both exports (same input, batch 1 and 64). Each conversion runs in a fresh subprocess and
is timed from the outside, imports included, as a user meets it: kcompat imports no
TensorFlow, tf2onnx needs TensorFlow and Keras to load the model first. One run, no retries.
"""
from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
PYTHON = sys.executable
CNN_FIXTURES = ("conv_bn", "mnist_cnn", "small_resnet")  # in fixtures/keras3, written by make_fixtures.py
KCOMPAT = "import sys, kcompat; kcompat.save(kcompat.load(sys.argv[1]), sys.argv[2])"
TF2ONNX = """
import os, sys
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
import keras, tensorflow as tf, tf2onnx
model = keras.models.load_model(sys.argv[1], compile=False)
spec = tuple(tf.TensorSpec((None, *t.shape[1:]), tf.float32, name=t.name) for t in model.inputs)
call = tf.function(lambda *xs: model(list(xs) if len(xs) > 1 else xs[0], training=False), input_signature=spec)
tf2onnx.convert.from_function(call, input_signature=spec, opset=int(sys.argv[3]), output_path=sys.argv[2])
"""


def convert(code: str, *args: str) -> float:
    """Wall time of one conversion in a fresh interpreter (imports included)."""
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "PYTHONWARNINGS": "ignore"}
    start = time.perf_counter()
    done = subprocess.run([PYTHON, "-c", code, *args], capture_output=True, text=True, env=env)
    elapsed = time.perf_counter() - start
    if done.returncode:
        raise RuntimeError(f"conversion failed: {done.stderr.strip().splitlines()[-1:]}")
    return elapsed


def latency_us(path: str, batch: int, runs: int = 200) -> float:
    """Median onnxruntime latency (microseconds) of one call on a seeded input, one thread."""
    import onnxruntime as ort
    options = ort.SessionOptions()
    options.log_severity_level = 3
    options.intra_op_num_threads = 1
    session = ort.InferenceSession(path, options, providers=["CPUExecutionProvider"])
    rng = np.random.default_rng(0)
    feed = {}
    for value in session.get_inputs():
        dims = [batch if not isinstance(d, int) else d for d in value.shape]
        feed[value.name] = rng.standard_normal(dims).astype(np.float32)
    for _ in range(10):
        session.run(None, feed)
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        session.run(None, feed)
        times.append(time.perf_counter() - start)
    return float(np.median(times)) * 1e6


def node_count(path: str) -> int:
    import onnx
    return len(onnx.load(path).graph.node)


def main(sources: list[str]) -> None:
    from rich.console import Console
    from rich.table import Table

    from kcompat.formats.onnx.export.driver import default_opset
    cnns = [ROOT / "fixtures" / "keras3" / f"{name}.keras" for name in CNN_FIXTURES]
    sources = sources or (sorted(str(p) for p in (ROOT / "fixtures" / "onnx").glob("*.keras"))
                          + [str(p) for p in cnns if p.exists()])
    opset = default_opset()
    table = Table(title=f"kcompat vs tf2onnx: .keras -> .onnx (kcompat opset {opset}, tf2onnx opset 13; "
                        f"latency = median of 200 onnxruntime runs, 1 thread)")
    for col in ("model", "nodes", "convert s", "ORT b=1 µs", "ORT b=64 µs"):
        table.add_column(col + ("" if col == "model" else "\nkcompat / tf2onnx"), justify="left" if col == "model"
                         else "right")
    with tempfile.TemporaryDirectory(prefix="kcompat-bench-") as tmp:
        for src in sources:
            name = Path(src).name.split(".")[0]
            ours, theirs = os.path.join(tmp, f"{name}.kcompat.onnx"), os.path.join(tmp, f"{name}.tf2onnx.onnx")
            t_ours = convert(KCOMPAT, src, ours)
            t_theirs = convert(TF2ONNX, src, theirs, "13")
            row = [name, f"{node_count(ours)} / {node_count(theirs)}", f"{t_ours:.2f} / {t_theirs:.2f}"]
            for batch in (1, 64):
                row.append(f"{latency_us(ours, batch):.1f} / {latency_us(theirs, batch):.1f}")
            table.add_row(*row)
    Console(width=max(Console().width, 110)).print(table)


if __name__ == "__main__":
    main(sys.argv[1:])
