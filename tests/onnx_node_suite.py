"""ONNX's backend node-test suite, generated offline from the installed onnx package, run through kcompat.

``onnx.backend.test.case.node.collect_testcases("")`` gives every node test ONNX backends report against
(a one-node model, inputs, expected outputs; ``_expanded`` cases are the same test as the op's function
body). Cases with sequence or optional inputs / outputs are left out; NumPy scalars are 0-d tensors.

How a case is run, the way a real file would hold it: the node's FIRST input stays the graph input and
every later input becomes an initializer (weights, shapes, indices, axes and second operands are
constants in real files). This holds whatever the first input is: where it is itself constant-like
(Range's ``start``, ConstantOfShape's ``input``, a Reshape whose data is an integer index), the case
then asks for an op computed from a data-dependent shape or scalar, which a Keras model cannot express,
and such a case ends in a clean "unsupported". The model is written to a temporary .onnx, read with
``kcompat.load`` and run with ``predict``.

Comparison, as onnx/backend/test/runner/__init__.py (``assert_similar_outputs``) does: same number of
outputs, same shapes, ``np.testing.assert_allclose`` at the case's rtol / atol (1e-3 / 1e-7 for every
node case; NaNs equal; rtol at least 2^-6 for a bfloat16 output, as the runner). dtypes: integer and
bool outputs must have exactly ONNX's dtype; a float output may be float32 where ONNX computes float64,
float16, bfloat16 or float8 (a Keras model computes in float32, and kcompat reads float inputs as
float32), and must be a float.

Each case ends as one of: ``pass``; ``exact`` (a case in NOISY whose stored outputs carry float32 noise
above their atol, matched against ONNX's reference run in float64 instead); ``wrong`` (runs, but an
output differs); ``internal`` (any exception that is not a KcompatError, or one the importer turned into
"cannot lower node": a kcompat bug); ``unsupported`` (a clean UnsupportedError); ``rejected`` (another
clean KcompatError: FormatError, ShapeError, ConfigError).

``python -m tests.onnx_node_suite`` prints the totals and the cases that are not ``pass`` or
``unsupported``; ``--table`` writes the per-op table to docs/ONNX_NODE_SUITE.md; ``--op Add`` runs the
cases of some ops only; ``-v`` lists every case that does not pass, with its reason.
"""
from __future__ import annotations

import argparse
import os
import re
import sys
import tempfile
import time
import warnings
from collections import Counter, defaultdict
from dataclasses import dataclass
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
TABLE = ROOT / "docs" / "ONNX_NODE_SUITE.md"
STATUSES = ("pass", "exact", "wrong", "internal", "unsupported", "rejected")
# cases whose stored outputs carry float32 rounding noise above their atol (ONNX Runtime misses them too):
# kcompat's answer is compared with ONNX's reference run in float64 on the same inputs instead ("exact")
NOISY = {"test_dft_inverse": "numpy's float32 FFT leaves ~2e-7 in parts that are 0 (atol is 1e-7)",
         "test_dft_inverse_opset19": "numpy's float32 FFT leaves ~2e-7 in parts that are 0 (atol is 1e-7)"}
EXPANDED = re.compile(r"_expanded(_ver\d+)?$")


@dataclass
class Case:
    """One node test: the model as a real file would hold it, its graph input and expected outputs."""

    name: str
    op: str  # the op type; "<Op> (expanded)" for the function-body form
    model: object  # onnx.ModelProto, inputs after the first as initializers
    inputs: list  # the graph input values (one array)
    outputs: list
    rtol: float
    atol: float


@dataclass
class Outcome:
    case: Case
    status: str
    detail: str = ""


def _array(value) -> np.ndarray | None:
    """A test value as an array (scalars 0-d; TensorProto decoded); None for sequences / optionals."""
    from onnx import TensorProto, numpy_helper
    if isinstance(value, TensorProto):
        return numpy_helper.to_array(value)
    if isinstance(value, (np.ndarray, np.generic)):
        return np.asarray(value)
    return None


def _tensor_typed(values) -> bool:
    return all(v.type.HasField("tensor_type") for v in values)


def _constant_inputs(model, names: list, values: list):
    """A copy of ``model`` with graph inputs ``names`` made initializers holding ``values``."""
    import onnx
    from onnx import numpy_helper
    out = onnx.ModelProto()
    out.CopyFrom(model)
    keep = [v for v in out.graph.input if v.name not in names]
    del out.graph.input[:]
    out.graph.input.extend(keep)
    for name, value in zip(names, values):
        out.graph.initializer.append(numpy_helper.from_array(value, name))
    if out.ir_version < 4:  # initializers outside graph.input need IR 4
        out.ir_version = 4
    return out


def collect(ops: list[str] | None = None) -> tuple[list[Case], int]:
    """The tensor-typed node cases (those of ``ops`` only, if given) and how many cases there are in all."""
    from onnx.backend.test.case.node import collect_testcases
    with warnings.catch_warnings(), np.errstate(all="ignore"):
        warnings.simplefilter("ignore")
        raw = collect_testcases("")
    op_of = {t.name: t.model.graph.node[0].op_type for t in raw if len(t.model.graph.node) == 1}
    cases = []
    for t in raw:
        graph = t.model.graph
        (inputs, outputs), = t.data_sets
        ins, outs = [_array(v) for v in inputs], [_array(v) for v in outputs]
        if not _tensor_typed(graph.input) or not _tensor_typed(graph.output) or any(
                v is None for v in ins + outs) or len(ins) != len(graph.input) or not ins:
            continue
        base = EXPANDED.sub("", t.name)
        op = op_of.get(base, graph.node[0].op_type) if base == t.name else f"{op_of.get(base, base[5:])} (expanded)"
        if ops and op.split(" ")[0] not in ops:
            continue
        names = [v.name for v in graph.input]
        model = _constant_inputs(t.model, names[1:], ins[1:])
        cases.append(Case(t.name, op, model, ins[:1], outs, t.rtol, t.atol))
    return cases, len(raw)


def with_dynamic_batch(case: Case) -> Case | None:
    """The case with its input's (and outputs') first axis made dynamic ("N"), as exporters write a batch axis;
    None for a scalar or 1-D input. kcompat must then give the same answer or refuse cleanly."""
    import onnx
    model = onnx.ModelProto()
    model.CopyFrom(case.model)
    dims = model.graph.input[0].type.tensor_type.shape.dim
    if len(dims) < 2:
        return None
    for value in [model.graph.input[0], *model.graph.output]:
        shape = value.type.tensor_type.shape.dim
        if len(shape):
            shape[0].Clear()
            shape[0].dim_param = "N"
    return Case(case.name, case.op, model, case.inputs, case.outputs, case.rtol, case.atol)


def compare(got: list, want: list, rtol: float, atol: float) -> str | None:
    """Why ``got`` does not match ``want`` (None when it does); see the module docstring."""
    if len(got) != len(want):
        return f"{len(got)} outputs, expected {len(want)}"
    for i, (g, w) in enumerate(zip(got, want)):
        g = np.asarray(g)
        if g.shape != w.shape:
            return f"output {i}: shape {g.shape}, expected {w.shape}"
        if w.dtype == object:
            if not np.array_equal(g, w):
                return f"output {i}: strings differ"
            continue
        float_ok = w.dtype.kind == "f" or w.dtype.name.startswith(("bfloat", "float"))  # ml_dtypes floats too
        float_ok = float_ok and g.dtype == np.float32
        if g.dtype != w.dtype and not float_ok:
            return f"output {i}: dtype {g.dtype}, expected {w.dtype}"
        if w.dtype.kind in "fc" or w.dtype.kind == "V":
            tol = max(rtol, 2**-6) if w.dtype.name == "bfloat16" else rtol  # the runner's: two bfloat16 ULPs
            try:
                np.testing.assert_allclose(g.astype(np.float64), w.astype(np.float64), rtol=tol, atol=atol)
            except AssertionError as e:
                lines = [ln.strip() for ln in str(e).splitlines() if ln.strip().startswith("Max")]
                return f"output {i}: values differ ({'; '.join(lines)})"
        elif not np.array_equal(g, w):
            return f"output {i}: values differ ({int((g != w).sum())} of {w.size})"
    return None


def run_case(case: Case, folder: str) -> Outcome:
    """Load the case's model with kcompat, predict, compare."""
    import onnx

    import kcompat
    path = os.path.join(folder, f"{case.name}.onnx")
    onnx.save(case.model, path)
    try:
        with warnings.catch_warnings(), np.errstate(all="ignore"):
            warnings.simplefilter("ignore")
            model = kcompat.load(path)
            got = model.predict(case.inputs)
    except kcompat.UnsupportedError as e:
        if "cannot lower node" in str(e):  # the importer caught a ValueError / TypeError / IndexError of a lowering
            return Outcome(case, "internal", _reason(str(e), path))
        return Outcome(case, "unsupported", _reason(str(e), path))
    except kcompat.KcompatError as e:
        return Outcome(case, "rejected", f"{type(e).__name__}: {_reason(str(e), path)}")
    except Exception as e:  # noqa: BLE001 (anything else is a kcompat bug: counted, never hidden)
        return Outcome(case, "internal", f"{type(e).__name__}: {e}")
    finally:
        os.unlink(path)
    why = compare(got, case.outputs, case.rtol, case.atol)
    if why is not None and case.name in NOISY:
        exact = compare(got, float64_reference(case), case.rtol, case.atol)
        return Outcome(case, "wrong", why) if exact else Outcome(case, "exact", NOISY[case.name])
    return Outcome(case, "pass" if why is None else "wrong", why or "")


def float64_reference(case: Case) -> list:
    """ONNX's reference evaluator on the case in float64 (float inputs and initializers widened), cast back."""
    import onnx
    from onnx import TensorProto, numpy_helper
    from onnx.reference import ReferenceEvaluator
    wide = onnx.ModelProto()
    wide.CopyFrom(case.model)
    for v in list(wide.graph.input) + list(wide.graph.output):
        if v.type.tensor_type.elem_type == TensorProto.FLOAT:
            v.type.tensor_type.elem_type = TensorProto.DOUBLE
    for t in wide.graph.initializer:
        if t.data_type == TensorProto.FLOAT:
            t.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(t).astype(np.float64), t.name))
    feeds = {v.name: x.astype(np.float64) if x.dtype == np.float32 else x
             for v, x in zip(wide.graph.input, case.inputs)}
    got = ReferenceEvaluator(wide).run(None, feeds)
    return [np.asarray(y).astype(w.dtype) for y, w in zip(got, case.outputs)]


def _reason(message: str, path: str) -> str:
    return message.replace(f"{path}: ", "").replace(path, "<model>")


def run_all(cases: list[Case]) -> list[Outcome]:
    with tempfile.TemporaryDirectory() as folder:
        return [run_case(c, folder) for c in cases]


def per_op(outcomes: list[Outcome]) -> dict[str, Counter]:
    table: dict[str, Counter] = defaultdict(Counter)
    for o in outcomes:
        table[o.case.op][o.status] += 1
    return dict(sorted(table.items(), key=lambda kv: kv[0].lower()))


def totals(outcomes: list[Outcome]) -> Counter:
    return Counter(o.status for o in outcomes)


def markdown(outcomes: list[Outcome], collected: int) -> str:
    """The per-op table of docs/ONNX_NODE_SUITE.md."""
    import onnx
    t = totals(outcomes)
    ops = per_op(outcomes)
    full = sum(1 for c in ops.values() if c["pass"] == sum(c.values()))
    lines = [
        "# ONNX backend node tests through kcompat",
        "",
        f"Generated by `python -m tests.onnx_node_suite --table` (onnx {onnx.__version__}); "
        "tests/test_onnx_node_suite.py fails when this file is out of date.",
        "",
        f"ONNX's node-test suite has {collected} cases; {len(outcomes)} use tensors only (sequence and "
        "optional cases left out). Each runs as a real file holds it: the node's first input is the "
        "graph input, every other input an initializer. kcompat loads the model, predicts and compares "
        "at the case's tolerance (rtol 1e-3, atol 1e-7), floats as float32 (see tests/onnx_node_suite.py).",
        "",
        f"**{t['pass']} pass**, {t['unsupported']} unsupported (a clean error naming the op and why), "
        f"{t['wrong']} wrong, {t['internal']} internal errors, {t['rejected']} rejected; "
        f"{full} of {len(ops)} ops pass every case. {t['exact']} more match ONNX's reference run in float64 but "
        f"not the stored outputs, which carry float32 noise above their atol (ONNX Runtime misses them too): "
        f"{', '.join(sorted(o.case.name for o in outcomes if o.status == 'exact')) or 'none'}.",
        "",
        "| op | cases | pass | unsupported | other | why unsupported (the most common reason) |",
        "|---|---:|---:|---:|---:|---|",
    ]
    reasons: dict[str, Counter] = defaultdict(Counter)
    for o in outcomes:
        if o.status == "unsupported":
            reasons[o.case.op][_short(o.detail)] += 1
    for op, c in ops.items():
        other = ", ".join(f"{c[k]} {k}" for k in ("exact", "wrong", "internal", "rejected") if c[k])
        why = reasons.get(op)
        text = "" if not why else why.most_common(1)[0][0] + (f" (+{len(why) - 1} other)" if len(why) > 1 else "")
        lines.append(f"| {op} | {sum(c.values())} | {c['pass']} | {c['unsupported']} | {other} | {text} |")
    lines.append(f"| **total** | {len(outcomes)} | {t['pass']} | {t['unsupported']} | "
                 f"{', '.join(f'{t[k]} {k}' for k in ('exact', 'wrong', 'internal', 'rejected') if t[k])} | |")
    return "\n".join(lines) + "\n"


def _short(detail: str) -> str:
    """An unsupported case's reason for the table: the refusal without the file's name and counts."""
    text = re.sub(r" x\d+(, |$)", r"\1", detail.replace("unsupported ONNX ops: ", ""))
    text = re.sub(r"'[^'\s]*'", "'…'", text).replace("|", "/")  # tensor names differ case by case
    if re.fullmatch(r"[\w.]+", text):
        text = f"{text}: no lowering"
    return text if len(text) <= 110 else text[:107] + "..."


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.onnx_node_suite", description=__doc__.splitlines()[0])
    parser.add_argument("--op", action="append", help="run the cases of this op only (repeatable)")
    parser.add_argument("--table", action="store_true", help=f"write the per-op table to {TABLE.relative_to(ROOT)}")
    parser.add_argument("-v", "--verbose", action="store_true", help="every case that does not pass, with why")
    args = parser.parse_args(argv)
    start = time.process_time()
    cases, collected = collect(args.op)
    outcomes = run_all(cases)
    seconds = time.process_time() - start
    for o in outcomes:
        if o.status in ("wrong", "internal", "rejected") or (args.verbose and o.status != "pass"):
            print(f"{o.status:11} {o.case.name} [{o.case.op}]: {o.detail[:300]}")
    t = totals(outcomes)
    ops = per_op(outcomes)
    full = sum(1 for c in ops.values() if c["pass"] == sum(c.values()))
    print(f"{len(outcomes)} tensor cases of {collected}: " + ", ".join(f"{t[s]} {s}" for s in STATUSES)
          + f"; {full} of {len(ops)} ops pass every case; {seconds:.0f} s CPU")
    if args.table:
        TABLE.write_text(markdown(outcomes, collected))
        print(f"wrote {TABLE}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
