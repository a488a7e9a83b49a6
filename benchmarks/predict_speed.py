"""Predict latency, side by side: kcompat (NumPy) vs Keras/TF vs ONNX Runtime, in one run.

Four models are built with real Keras 3 (seeded), saved as .keras and loaded with kcompat:
an MNIST-style CNN and a small ResNet-style Functional model (timed at batch 1 and 256), and
keras.applications ResNet50 and MobileNetV2 (weights=None, 224x224, logits; timed at batch 1
and 16). Each runtime is timed: a warm-up, then N repeats (N chosen so each cell takes about
--budget seconds); the table gives the median and the best, and every runtime's largest
difference from Keras ``model(x)``, so a fast wrong answer shows. kcompat's peak memory
(tracemalloc) is reported. Not a test: run ``python benchmarks/predict_speed.py``.
"""
from __future__ import annotations

import argparse
import os
import sys
import time

parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
parser.add_argument("--threads", type=int, default=None,
                    help="threads for every runtime (BLAS/OpenMP, TF intra-op, ORT intra-op); default: each its own")
parser.add_argument("--budget", type=float, default=2.0, help="seconds of timed repeats per cell (default 2.0)")
MODELS = ("cnn", "resnet", "resnet50", "mobilenetv2")
parser.add_argument("--models", default=",".join(MODELS), help=f"comma-separated subset of: {','.join(MODELS)}")
parser.add_argument("--batch", type=int, default=None,
                    help="the large batch for every model (default: 256 for cnn / resnet, 16 for resnet50 / mobilenetv2)")
RUNTIMES = ("kcompat before", "kcompat NumPy", "kcompat unfused", "Keras model(x)", "Keras predict", "ORT tf2onnx",
            "ORT kcompat")
parser.add_argument("--runtimes", default=None,
                    help=f"comma-separated rows to time (default: all): {','.join(RUNTIMES)}")
parser.add_argument("--before", default=None, metavar="DIR",
                    help="also time an older kcompat: DIR holds a copy of its package renamed kcompat_before "
                         "(git archive REV kcompat | tar -x -C DIR; mv DIR/kcompat DIR/kcompat_before)")
ARGS = parser.parse_args()
if not set(ARGS.models.split(",")) <= set(MODELS):
    parser.error(f"--models takes a comma-separated subset of {','.join(MODELS)}. Received: {ARGS.models}")
if ARGS.runtimes is not None and not set(ARGS.runtimes.split(",")) <= set(RUNTIMES):
    parser.error(f"--runtimes takes a comma-separated subset of {','.join(RUNTIMES)}. Received: {ARGS.runtimes}")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
if ARGS.before:
    sys.path.insert(0, ARGS.before)
if ARGS.threads is not None:  # before numpy / TF / ORT / kcompat are imported, so every pool sees it
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "TF_NUM_INTRAOP_THREADS",
                "KCOMPAT_NUM_THREADS"):
        os.environ[var] = str(ARGS.threads)
    os.environ["TF_NUM_INTEROP_THREADS"] = "1"

import statistics  # noqa: E402
import tempfile  # noqa: E402
import tracemalloc  # noqa: E402

import numpy as np  # noqa: E402

import kcompat  # noqa: E402
from kcompat.layers import REGISTRY  # noqa: E402



def build_cnn(keras):
    """Input(28,28,1) -> Conv32 -> Pool -> Conv64 -> Pool -> Flatten -> Dropout -> Dense(10, softmax)."""
    L = keras.layers
    return keras.Sequential([keras.Input((28, 28, 1)), L.Conv2D(32, 3, activation="relu"), L.MaxPooling2D(),
                             L.Conv2D(64, 3, activation="relu"), L.MaxPooling2D(), L.Flatten(), L.Dropout(0.5),
                             L.Dense(10, activation="softmax")], name="mnist_cnn")


def build_resnet(keras):
    """Conv16-BN-ReLU, a residual block (identity), a residual block (stride 2, 1x1 projection), GAP, Dense(10)."""
    L = keras.layers

    def block(x, filters, stride):
        y = L.Conv2D(filters, 3, strides=stride, padding="same")(x)
        y = L.ReLU()(L.BatchNormalization()(y))
        y = L.BatchNormalization()(L.Conv2D(filters, 3, padding="same")(y))
        if stride != 1 or x.shape[-1] != filters:
            x = L.BatchNormalization()(L.Conv2D(filters, 1, strides=stride)(x))  # projection shortcut
        return L.ReLU()(L.Add()([x, y]))

    inp = keras.Input((32, 32, 3))
    x = L.ReLU()(L.BatchNormalization()(L.Conv2D(16, 3, padding="same")(inp)))
    x = block(block(x, 16, 1), 32, 2)
    out = L.Dense(10)(L.GlobalAveragePooling2D()(x))
    return random_bn(keras, keras.Model(inp, out, name="small_resnet"))


def build_resnet50(keras):
    """keras.applications.ResNet50(weights=None), 224x224x3, logits (no softmax), random BN statistics."""
    return random_bn(keras, keras.applications.ResNet50(weights=None, classifier_activation=None))


def build_mobilenetv2(keras):
    """keras.applications.MobileNetV2(weights=None), 224x224x3, logits (no softmax), random BN statistics."""
    return random_bn(keras, keras.applications.MobileNetV2(weights=None, classifier_activation=None))


def random_bn(keras, model):
    """Seeded random BatchNormalization statistics: fresh ones are 0/1, which would hide a wrong formula."""
    rng = np.random.default_rng(1)
    for layer in model.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            gamma, beta, mean, var = layer.get_weights()
            layer.set_weights([rng.uniform(0.5, 1.5, gamma.shape), rng.normal(0, 0.1, beta.shape),
                               rng.normal(0, 0.1, mean.shape), rng.uniform(0.5, 1.5, var.shape)])
    return model


def time_round_robin(fns: dict, budget: float) -> dict:
    """Time every callable in turns: warm-ups, then rounds that call each once, for about ``budget``
    seconds per callable. Returns name -> (median s, best s, repeats, least CPU s). Taking turns gives every
    runtime the same share of whatever else the machine is doing; in one block each, a busy minute would
    land on whichever runtime happened to run then. CPU is the process's CPU time (every thread) during
    the call: on a loaded machine it moves far less than the wall time."""
    cost = {}
    for name, fn in fns.items():
        t0 = time.perf_counter()
        fn()
        if time.perf_counter() - t0 < budget / 4:
            fn()  # second warm-up: caches, lazy graph optimizations
        t0 = time.perf_counter()
        fn()
        cost[name] = time.perf_counter() - t0
    rounds = int(min(max(budget * len(fns) / max(sum(cost.values()), 1e-6), 3), 500))
    times: dict = {name: [] for name in fns}
    cpu: dict = {name: [] for name in fns}
    for _ in range(rounds):
        for name, fn in fns.items():
            c0, t0 = time.process_time(), time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - t0)
            cpu[name].append(time.process_time() - c0)
    return {name: (statistics.median(t), min(t), rounds, min(cpu[name])) for name, t in times.items()}


def wanted(runtime: str) -> bool:
    return ARGS.runtimes is None or runtime in ARGS.runtimes.split(",")


def ort_session(path: str):
    import onnxruntime as ort
    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    if ARGS.threads is not None:
        opts.intra_op_num_threads, opts.inter_op_num_threads = ARGS.threads, 1
    sess = ort.InferenceSession(path, opts, providers=["CPUExecutionProvider"])
    name = sess.get_inputs()[0].name
    return lambda x: sess.run(None, {name: x})[0]


def one_line(e: BaseException, tmp: str = "") -> str:
    """The first line of an error, without the temporary folder, at most 150 characters."""
    text = f"{type(e).__name__}: {e}".replace(f"{tmp}/", "").strip().splitlines()[0]
    return text if len(text) <= 150 else text[:147] + "..."


def bench_model(name, model, tf, tmp, big: int) -> list[dict]:
    """Every runtime on one model, in table order; a row per runtime (or an 'n/a' row with the reason)."""
    shape = model.input_shape[1:]
    batches = (1, big)
    x = np.random.default_rng(0).uniform(0, 1, (big, *shape)).astype(np.float32)
    reference = model(x, training=False).numpy()
    scale = float(np.max(np.abs(reference))) or 1.0
    runners: dict = {}  # runtime -> callable, or the one-line reason it is n/a

    keras_path = f"{tmp}/{name}.keras"
    model.save(keras_path)
    missing = sorted({type(l).__name__ for l in model.layers} - set(REGISTRY) - {"InputLayer"})
    km = None
    if ARGS.before:
        try:
            import kcompat_before
            old = kcompat_before.load(keras_path)
            runners["kcompat before"] = lambda b: old.predict(b)[0]
        except Exception as e:  # noqa: BLE001 - a benchmark reports, it does not stop
            runners["kcompat before"] = one_line(e, tmp)
    try:
        if missing:
            raise RuntimeError(f"layer {', '.join(missing)} not yet supported")
        km = kcompat.load(keras_path)
        runners["kcompat NumPy"] = lambda b: km.predict(b)[0]
        runners["kcompat unfused"] = lambda b: km.predict(b, fused=False)[0]
    except Exception as e:  # noqa: BLE001 - a benchmark reports, it does not stop
        runners["kcompat NumPy"] = str(e) if missing else one_line(e, tmp)
    runners["Keras model(x)"] = lambda b: model(b, training=False).numpy()
    runners["Keras predict"] = lambda b: model.predict(b, batch_size=len(b), verbose=0)
    try:
        if not wanted("ORT tf2onnx"):
            raise RuntimeError("not asked for (--runtimes)")
        import tf2onnx
        spec = (tf.TensorSpec((None, *shape), tf.float32, name="input"),)
        fn = tf.function(lambda t: model(t, training=False), input_signature=spec)
        tf2onnx.convert.from_function(fn, input_signature=spec, output_path=f"{tmp}/{name}_tf2onnx.onnx")
        runners["ORT tf2onnx"] = ort_session(f"{tmp}/{name}_tf2onnx.onnx")
    except Exception as e:  # noqa: BLE001
        runners["ORT tf2onnx"] = one_line(e, tmp)
    try:
        kcompat.save(km, f"{tmp}/{name}_kcompat.onnx")
        runners["ORT kcompat"] = ort_session(f"{tmp}/{name}_kcompat.onnx")
    except Exception as e:  # noqa: BLE001
        runners["ORT kcompat"] = "kcompat could not load the model" if km is None else one_line(e, tmp)

    runners = {k: v for k, v in runners.items() if wanted(k)}
    rows, live = [], {}
    for runtime, run in runners.items():  # check each against Keras first; a failure is an n/a row
        row = {"runtime": runtime}
        try:
            if isinstance(run, str):
                raise RuntimeError(run)
            out = np.asarray(run(x))
            row.update(diff=float(np.max(np.abs(out - reference))), big=big)
            row["rel"] = row["diff"] / scale
            if runtime == "kcompat NumPy":
                tracemalloc.start()
                run(x)
                row["peak"] = tracemalloc.get_traced_memory()[1] / 2**20
                tracemalloc.stop()
            live[runtime] = run
        except Exception as e:  # noqa: BLE001 - a benchmark reports, it does not stop
            row = {"runtime": runtime, "na": str(e) if isinstance(run, str) else one_line(e, tmp)}
        rows.append(row)
    for i, b in enumerate(batches):
        xb = np.ascontiguousarray(x[:b])
        timed = time_round_robin({r: (lambda run=run: run(xb)) for r, run in live.items()}, ARGS.budget)
        for row in rows:
            if row["runtime"] in timed:
                row[i] = timed[row["runtime"]]
        print(f"  {name}: batch {b} timed ({len(timed)} runtimes in turns)", file=sys.stderr, flush=True)
    return rows


def blas_summary() -> str:
    try:
        from threadpoolctl import threadpool_info
        pools = threadpool_info()
        return "; ".join(f"{p['internal_api']} {p.get('version')} ({p['num_threads']} threads)" for p in pools)
    except ImportError:
        pass
    try:
        deps = np.show_config(mode="dicts")["Build Dependencies"]
        blas = deps.get("blas", {})
        return f"{blas.get('name')} {blas.get('version')} (threadpoolctl not installed: thread count not shown)"
    except Exception:  # noqa: BLE001 - older numpy: no mode="dicts"
        return "unknown (np.show_config() prints the full build)"


def print_table(results: dict, env: list[str]) -> None:
    ms = lambda t: f"{t * 1e3:.2f}" if t * 1e3 < 100 else f"{t * 1e3:.0f}"  # noqa: E731
    head = ["model", "runtime", "b1 med", "b1 best", "bN", "bN med", "bN best", "bN cpu", "bN /s",
            "/Keras", "/ORT", "max|diff|", "rel", "peak MB", "reps"]
    body, notes = [], []
    for model, rows in results.items():
        base = {r["runtime"]: r[1][1] for r in rows if "na" not in r}  # bN best of each runtime
        for r in rows:
            if "na" in r:
                notes.append(f"[{len(notes) + 1}] {model} / {r['runtime']}: n/a ({r['na']})")
                body.append([model, r["runtime"], f"n/a [{len(notes)}]"] + [""] * (len(head) - 3))
                continue
            (m1, b1, n1, _), (mn, bn, nn, cn) = r[0], r[1]
            ratio = lambda name: f"{bn / base[name]:.2f}" if name in base else "-"  # noqa: E731
            body.append([model, r["runtime"], ms(m1), ms(b1), str(r["big"]), ms(mn), ms(bn), ms(cn), f"{r['big'] / mn:,.0f}",
                         ratio("Keras model(x)"), ratio("ORT kcompat"), f"{r['diff']:.1e}", f"{r['rel']:.1e}",
                         f"{r['peak']:.1f}" if "peak" in r else "-", f"{n1}/{nn}"])
    legend = ("times in ms (median and best of N repeats after warm-up) at batch 1 and at batch bN; bN cpu = the least "
              "process CPU time of one bN call (all its threads; with --threads 1 the load-independent cost); bN /s = samples "
              "per second at the bN median; /Keras, /ORT = bN best divided by the bN best of Keras model(x) and of "
              "ORT on kcompat's export (below 1: faster); max|diff| = max abs difference from Keras model(x) at "
              "batch bN, rel = the same over max |Keras output|; kcompat unfused = predict(fused=False), every "
              "layer as written; peak MB = tracemalloc peak of one kcompat predict at bN; reps = N at b1/bN")
    try:
        from rich.console import Console
        from rich.table import Table
    except ImportError:
        widths = [max(len(h), *(len(r[i]) for r in body)) for i, h in enumerate(head)]
        for r in [head] + body:
            print("  ".join(c.ljust(w) if i < 2 else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths))))
        print("\n".join(notes + [legend] + env))
        return
    table = Table(title="kcompat predict latency, side by side (lower is better)")
    for i, h in enumerate(head):
        table.add_column(h, justify="left" if i < 2 else "right", no_wrap=True)
    for i, row in enumerate(body):
        table.add_row(*row, end_section=i + 1 < len(body) and body[i + 1][0] != row[0])
    console = Console(width=max(150, Console().width), highlight=False)
    console.print(table)
    for line in notes + [legend] + env:
        console.print(line, soft_wrap=True)


def main() -> None:
    start = time.perf_counter()
    import keras
    import onnxruntime
    import tensorflow as tf
    if ARGS.threads is not None:
        tf.config.threading.set_intra_op_parallelism_threads(ARGS.threads)
        tf.config.threading.set_inter_op_parallelism_threads(1)
    builders = {"cnn": (build_cnn, 256), "resnet": (build_resnet, 256),
                "resnet50": (build_resnet50, 16), "mobilenetv2": (build_mobilenetv2, 16)}
    results = {}
    with tempfile.TemporaryDirectory(prefix="kcompat_bench_") as tmp:
        for key in ARGS.models.split(","):
            keras.utils.set_random_seed(0)
            build, big = builders[key]
            model = build(keras)
            results[key] = bench_model(key, model, tf, tmp, ARGS.batch or big)
    blas_env = ", ".join(f"{v}={os.environ.get(v, 'unset')}" for v in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS"))
    threads = (f"library defaults ({blas_env}; pass --threads N to pin)" if ARGS.threads is None
               else f"{ARGS.threads} for BLAS/OpenMP, kcompat, TF intra-op and ORT intra-op; inter-op 1")
    env = [f"CPUs: {os.cpu_count()} (usable {len(os.sched_getaffinity(0)) if hasattr(os, 'sched_getaffinity') else '?'})",
           f"threads: {threads}", f"numpy {np.__version__}, BLAS: {blas_summary()}",
           f"tensorflow {tf.__version__}, keras {keras.__version__}, onnxruntime {onnxruntime.__version__}",
           f"budget {ARGS.budget}s per cell, total {time.perf_counter() - start:.0f}s"]
    print_table(results, env)


if __name__ == "__main__":
    main()
