"""How kcompat scales with graph size, beside ONNX Runtime: 20,000-node ONNX chains and 5,000-layer Keras models.

    python benchmarks/big_graphs.py                    # the default sizes
    python benchmarks/big_graphs.py --nodes 1000,4000,20000 --layers 5000

ONNX chains (written with onnx.helper, no weights to speak of):
  relu   Relu, Relu, ...                                  -> 20,000 Activation layers
  dense  MatMul(8x8) + Add + Relu, repeated               -> Dense layers with their bias and activation
  mixed  Add / Mul by a scalar constant, alternating      -> 20,000 op nodes (the worst case for the importer's
                                                             activation patterns: every node is a candidate)
Keras models (a Functional chain of Dense(8), written as .keras by kcompat's own writer).

Each row is one command run end to end in a child process (``python -m kcompat summary FILE``, ``run``,
``convert``): wall time, including Python's start and imports, beside ONNX Runtime's session load + run of
the same .onnx (also in a child). The last column is kcompat / ONNX Runtime. Figures depend on the machine's
load: compare rows of one run only.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent


def onnx_chain(kind: str, n: int, path: Path) -> None:
    import onnx
    from onnx import TensorProto, helper, numpy_helper
    rng = np.random.default_rng(0)
    nodes, inits, x, i = [], [], "x", 0
    while len(nodes) < n:
        if kind == "relu":
            nodes.append(helper.make_node("Relu", [x], [f"t{i}"], name=f"relu_{i}"))
            x = f"t{i}"
        elif kind == "dense":
            inits += [numpy_helper.from_array((rng.standard_normal((8, 8)) * 0.3).astype(np.float32), f"w{i}"),
                      numpy_helper.from_array(np.zeros(8, np.float32), f"b{i}")]
            nodes += [helper.make_node("MatMul", [x, f"w{i}"], [f"m{i}"], name=f"dense_{i}/MatMul"),
                      helper.make_node("Add", [f"m{i}", f"b{i}"], [f"a{i}"], name=f"dense_{i}/Add"),
                      helper.make_node("Relu", [f"a{i}"], [f"r{i}"], name=f"dense_{i}/Relu")]
            x = f"r{i}"
        else:
            inits.append(numpy_helper.from_array(np.asarray(1.0001, np.float32), f"c{i}"))
            nodes.append(helper.make_node("Mul" if i % 2 else "Add", [x, f"c{i}"], [f"t{i}"], name=f"op_{i}"))
            x = f"t{i}"
        i += 1
    graph = helper.make_graph(nodes, "chain", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 8])],
                              [helper.make_tensor_value_info(x, TensorProto.FLOAT, ["N", 8])], inits)
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(path))


def keras_chain(n: int, path: Path) -> None:
    sys.path.insert(0, str(ROOT))
    import kcompat
    layers = [{"class_name": "InputLayer", "name": "in", "config": {"batch_shape": [None, 8], "name": "in"},
               "inbound_nodes": []}]
    for i in range(n):
        layers.append({"class_name": "Dense", "name": f"d{i}", "config": {"name": f"d{i}", "units": 8},
                       "inbound_nodes": [{"args": [{"class_name": "__keras_tensor__", "config": {
                           "keras_history": [layers[-1]["name"], 0, 0]}}], "kwargs": {}}]})
    config = {"class_name": "Functional", "config": {"name": "chain", "layers": layers,
                                                      "input_layers": [["in", 0, 0]],
                                                      "output_layers": [[layers[-1]["name"], 0, 0]]}}
    json_path = path.with_suffix(".json")
    json_path.write_text(json.dumps(config))
    kcompat.save(kcompat.load(str(json_path)).init_weights(0), str(path))
    json_path.unlink()


ORT = """
import sys, time, numpy as np, onnxruntime as ort
s = ort.InferenceSession(sys.argv[1], providers=["CPUExecutionProvider"])
s.run(None, {"x": np.ones((2, 8), np.float32)})
"""


def timed(argv: list[str], cwd: Path) -> tuple[float, str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "TF_CPP_MIN_LOG_LEVEL": "3"}
    start = time.perf_counter()
    p = subprocess.run(argv, cwd=cwd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    seconds = time.perf_counter() - start
    return seconds, "" if p.returncode == 0 else f"exit {p.returncode}: {p.stderr.strip().splitlines()[-1]}"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--nodes", default="1000,4000,20000", help="ONNX chain lengths (default 1000,4000,20000)")
    ap.add_argument("--kinds", default="relu,dense,mixed", help="ONNX chain kinds (default relu,dense,mixed)")
    ap.add_argument("--layers", default="1000,5000", help="Keras chain lengths (default 1000,5000)")
    args = ap.parse_args()
    folder = Path(tempfile.mkdtemp(prefix="kcompat-graphs-"))
    py = [sys.executable, "-m", "kcompat"]
    np.save(folder / "x.npy", np.ones((2, 8), np.float32))
    rows = []
    try:
        t = timed([sys.executable, "-c", "import kcompat.cli, numpy, h5py, onnx, rich"], folder)[0]
        rows.append(("python + kcompat imports", "-", t, None, ""))
        for kind in args.kinds.split(","):
            for n in (int(v) for v in args.nodes.split(",")):
                path = folder / f"{kind}_{n}.onnx"
                onnx_chain(kind, n, path)
                ort_s, ort_note = timed([sys.executable, "-c", ORT, path.name], folder)
                for command in (["summary", path.name], ["run", path.name, "-i", "x.npy", "-o", "y.npy"]):
                    s, note = timed(py + command, folder)
                    rows.append((f"onnx {kind} x{n}", command[0], s, ort_s, note or ort_note))
                    print(f"{rows[-1][0]:24s} {command[0]:8s} {s:7.2f} s  (ONNX Runtime {ort_s:.2f} s)",
                          file=sys.stderr)
                path.unlink()
        for n in (int(v) for v in args.layers.split(",")):
            path = folder / f"keras_{n}.keras"
            keras_chain(n, path)
            for command in (["summary", path.name], ["run", path.name, "-i", "x.npy", "-o", "y.npy"],
                            ["convert", path.name, "out.h5"], ["convert", path.name, "out.onnx"],
                            ["summary", "out.onnx"]):
                s, note = timed(py + command, folder)
                ort_s = timed([sys.executable, "-c", ORT, "out.onnx"], folder)[0] if command[1] == "out.onnx" \
                    and command[0] == "summary" else None
                rows.append((f"keras dense x{n}", " ".join(command[:1] + command[2:3]), s, ort_s, note))
                print(f"{rows[-1][0]:24s} {rows[-1][1]:16s} {s:7.2f} s", file=sys.stderr)
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    print(f"{'model':24s} {'command':18s} {'kcompat s':>9s} {'ORT s':>7s} {'ratio':>6s}  note")
    for model, command, s, ort_s, note in rows:
        ort_text = "-" if ort_s is None else f"{ort_s:.2f}"
        ratio = "-" if ort_s is None else f"{s / ort_s:.1f}x"
        print(f"{model:24s} {command:18s} {s:9.2f} {ort_text:>7s} {ratio:>6s}  {note}")


if __name__ == "__main__":
    main()
