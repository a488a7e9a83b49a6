"""The fuzz harness's runner: seeded cases from the bundled fixtures, each run through the CLI in a forked,
time- and memory-limited child, and the checks every run must pass.

A fork server (this file run as ``python tests/fuzz_run.py --serve``) imports kcompat, numpy, h5py,
onnx and onnxruntime once, then forks one child per case: the child sets RLIMIT_AS, redirects its
output, runs ``kcompat.cli.main(argv)`` in the case's folder and exits with its code; the server kills
it at the timeout and reports its exit code, output, wall time and peak resident memory above the
server's own. Never TensorFlow: verify runs with ``--reference onnxruntime``.

Checks (``problems``): exit 0 or 2 (1 allowed for verify), exactly one ``kcompat: error:`` line when
it fails and no other line but notes / ``wrote ...``, no traceback, no 'internal error' or NumPy
'Unable to allocate', no file left in the case folder but the inputs and the outputs it said it wrote,
no hang, and a failing case done in FAIL_SECONDS with under FAIL_MIB of memory.
"""
from __future__ import annotations

import json
import os
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
FIXTURES = ROOT / "fixtures"
TIMEOUT = 30.0  # a hang
FAIL_SECONDS = float(os.environ.get("KCOMPAT_FUZZ_FAIL_SECONDS", "3"))  # a refused file is refused fast
FAIL_MIB = 200  # ... and small
RUN_MIB = 1024  # any case
ADDRESS_SPACE = 4 << 30  # RLIMIT_AS headroom above the server's own address space


# ------------------------------------------------------------------ the server (a separate process)
def _rss_kib() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") // 1024


def _vm_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[0]) * os.sysconf("SC_PAGE_SIZE")


def _child(case: dict, out: str) -> None:
    code = 98
    try:
        fd = os.open(out, os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
        os.dup2(fd, 1)
        os.dup2(fd, 2)
        os.chdir(case["cwd"])
        limit = _vm_bytes() + ADDRESS_SPACE
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
        if case["argv"] == ["__sleep__"]:  # the harness's own test: a child that hangs
            time.sleep(3600)
        if case.get("kill_at_replace") is not None:  # tests/test_interrupted_writes.py: die at a commit point
            _kill_at_replace(case["kill_at_replace"])
        from kcompat import cli
        code = cli.main(case["argv"])
    except SystemExit as e:
        code = e.code if isinstance(e.code, int) else 2
    except BaseException:  # noqa: BLE001 (anything escaping main is a finding)
        traceback.print_exc()
        code = 99
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)


def _kill_at_replace(calls: int) -> None:
    """SIGKILL this process at its ``calls``-th os.replace (0: the first), as a crash at that instant."""
    real = os.replace

    def replace(src, dst):
        nonlocal calls
        if calls == 0:
            os.kill(os.getpid(), signal.SIGKILL)
        calls -= 1
        return real(src, dst)
    os.replace = replace


def serve() -> None:
    """Read cases (JSON lines) on stdin, answer results (JSON lines) on stdout."""
    import h5py  # noqa: F401
    import onnx  # noqa: F401
    import onnxruntime  # noqa: F401
    import kcompat.cli  # noqa: F401
    from kcompat.formats import FORMATS
    for fmt in FORMATS.values():
        fmt.read()
        fmt.write() if fmt.writer else None
    from kcompat.formats.onnx.export.driver import default_opset
    default_opset()
    import kcompat.summary, kcompat.arrays, kcompat.verify.run, kcompat.verify.onnxruntime  # noqa: F401,E401
    scratch = tempfile.mkdtemp(prefix="kcompat-fuzz-out-")
    reply = sys.stdout
    for line in sys.stdin:
        case = json.loads(line)
        out = os.path.join(scratch, "out.txt")
        base = _rss_kib()
        sys.stdout.flush()
        sys.stderr.flush()
        start = time.monotonic()
        pid = os.fork()
        if pid == 0:
            _child(case, out)
        status, usage, timed_out = 0, None, False
        while True:
            done, status, usage = os.wait4(pid, os.WNOHANG)
            if done:
                break
            if time.monotonic() - start > case.get("timeout", TIMEOUT):
                os.kill(pid, signal.SIGKILL)
                _, status, usage = os.wait4(pid, 0)
                timed_out = True
                break
            time.sleep(0.002)
        seconds = time.monotonic() - start
        code = os.waitstatus_to_exitcode(status)
        text = Path(out).read_text(errors="replace") if os.path.exists(out) else ""
        reply.write(json.dumps({"code": code, "output": text[-65536:], "seconds": seconds, "timed_out": timed_out,
                                "mib": max(0, usage.ru_maxrss - base) / 1024}) + "\n")
        reply.flush()
    shutil.rmtree(scratch, ignore_errors=True)


class Server:
    """The client side: one server process, restarted if it dies."""

    def __init__(self):
        self.proc = None

    def start(self) -> None:
        env = {**os.environ, "OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1",
               "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""), "TF_CPP_MIN_LOG_LEVEL": "3"}
        self.proc = subprocess.Popen([sys.executable, __file__, "--serve"], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, text=True, env=env, cwd=str(ROOT))

    def run(self, argv: list[str], cwd: str, timeout: float = TIMEOUT, kill_at_replace: int | None = None) -> dict:
        if self.proc is None or self.proc.poll() is not None:
            self.start()
        self.proc.stdin.write(json.dumps({"argv": argv, "cwd": cwd, "timeout": timeout,
                                          "kill_at_replace": kill_at_replace}) + "\n")
        self.proc.stdin.flush()
        line = self.proc.stdout.readline()
        if not line:
            self.proc = None
            return {"code": -1, "output": "fuzz server died", "seconds": 0, "timed_out": False, "mib": 0}
        return json.loads(line)

    def close(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.stdin.close()
            self.proc.wait(timeout=30)


# ------------------------------------------------------------------ cases
@dataclass
class Case:
    """One fuzz case: a folder with the inputs, the command line, what was mutated."""

    folder: Path
    argv: list[str]
    label: str
    inputs: set[str] = field(default_factory=set)
    outputs: set[str] = field(default_factory=set)


SEEDS = sorted([p for p in FIXTURES.glob("keras3/*") if p.suffix in (".keras", ".h5", ".json")
                and not p.name.endswith(".weights.h5")]
               + [p for p in FIXTURES.glob("keras2/*") if p.suffix in (".h5", ".json")
                  and not p.name.endswith(("weights.h5"))]
               + list(FIXTURES.glob("onnx/*.onnx")))


_INPUTS: dict = {}


def _input_file(model_path: Path, folder: Path) -> str:
    """A valid input for the seed model (batch 2): .npy for one input, .npz for several."""
    if model_path not in _INPUTS:
        import kcompat
        model = kcompat.load(str(model_path))
        _INPUTS[model_path] = {n: np.random.default_rng(0).standard_normal([2 if d is None else d for d in s])
                               .astype(np.float32) for n, s in zip(model.input_names, model.input_shapes())}
    arrays = _INPUTS[model_path]
    if len(arrays) == 1:
        np.save(folder / "in.npy", next(iter(arrays.values())))
        return "in.npy"
    np.savez(folder / "in.npz", **arrays)
    return "in.npz"


def make_case(seed: int, root: Path) -> Case:
    """Case number ``seed``: a mutated copy of one fixture and a command over it."""
    from fuzz_mutate import mutate
    rng = np.random.default_rng(seed)
    src = SEEDS[int(rng.integers(len(SEEDS)))]
    folder = root / f"case{seed}"
    folder.mkdir(parents=True)
    model = folder / ("model" + src.suffix)
    shutil.copyfile(src, model)
    inputs = {model.name}
    if src.suffix == ".json":  # its weights beside it (Keras 3 positional, or Keras 2 legacy)
        weights = src.with_name(src.stem + ".weights.h5")
        if weights.exists():
            shutil.copyfile(weights, folder / "model.weights.h5")
            inputs.add("model.weights.h5")
    if src.suffix in (".keras", ".h5"):
        os.mkfifo(folder / "fifo")  # what an external link or external data may point to
        inputs.add("fifo")
    in_name = _input_file(src, folder)
    inputs.add(in_name)
    command = ["summary", "run", "convert", "verify", "npy"][int(rng.choice(5, p=[0.3, 0.22, 0.3, 0.08, 0.1]))]
    target = model
    if command == "npy" and in_name.endswith(".npy"):
        target = folder / in_name
    elif src.suffix == ".json" and "model.weights.h5" in inputs and rng.random() < 0.4:
        target = folder / "model.weights.h5"
    label = f"{src.parent.name}/{src.name} " + mutate(rng, target)
    outputs: set[str] = set()
    if command == "summary":
        argv = ["summary", model.name] + (["--json"] if rng.random() < 0.3 else [])
    elif command in ("run", "npy"):
        out = "out.npy" if in_name.endswith(".npy") and rng.random() < 0.5 else "out.npz"
        argv, outputs = ["run", model.name, "-i", in_name, "-o", out], {out}
    elif command == "convert":
        dst = "out" + [".keras", ".h5", ".json", ".onnx"][int(rng.integers(4))]
        argv, outputs = ["convert", model.name, dst], {dst}
        if dst == ".json" or dst.endswith(".json"):
            outputs.add("out.weights.h5")
    else:
        argv = ["verify", model.name, "--reference", "onnxruntime"]
    return Case(folder, argv, f"{label} | {' '.join(argv)}", inputs, outputs)


def problems(case: Case, result: dict) -> list[str]:
    """Everything wrong with one run (empty: the run was clean)."""
    found = []
    code, text = result["code"], result["output"]
    lines = [l for l in text.splitlines() if l.strip()]
    allowed = {0, 2} | ({1} if case.argv[0] in ("verify", "diff") else set())
    if result["timed_out"]:
        found.append(f"hang: killed after {result['seconds']:.1f} s")
    elif code not in allowed:
        found.append(f"exit {code}")
    errors = [l for l in lines if l.startswith("kcompat: error:")]
    if code == 2 and len(errors) != 1:
        found.append(f"{len(errors)} error lines")
    if any(len(line) > 2100 for line in errors):
        found.append("an error line over 2,000 characters")
    stray = [l for l in lines if not l.startswith(("kcompat: error:", "kcompat: note:", "wrote "))]
    if case.argv[0] in ("summary", "verify") and code in (0, 1):
        stray = []  # the table itself
    if any("Traceback" in l for l in lines) or (code == 2 and stray):
        found.append("stray output: " + " / ".join(s[:200] for s in stray[:3]))
    for bad in ("internal error", "Unable to allocate", "MemoryError", "RecursionError"):
        if bad in text:
            found.append(bad)
    left = {p.name for p in case.folder.iterdir()} - case.inputs - (case.outputs if code == 0 else set())
    if left:
        found.append(f"files left behind: {sorted(left)}")
    if code == 2 and result["seconds"] > FAIL_SECONDS:
        found.append(f"slow failure: {result['seconds']:.2f} s")
    limit = FAIL_MIB if code == 2 else RUN_MIB
    if result["mib"] > limit:
        found.append(f"memory: {result['mib']:.0f} MiB")
    return found


if __name__ == "__main__" and "--serve" in sys.argv:
    serve()
