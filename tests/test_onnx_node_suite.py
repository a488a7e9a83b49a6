"""ONNX's backend node-test suite through kcompat's ONNX import (tests/onnx_node_suite.py runs it).

The whole suite runs here (about 1,850 small one-node models, ~30 s of CPU): no case may give a wrong
result, end in an internal error or be rejected with anything but a clean UnsupportedError; the pass
count may only grow, and docs/ONNX_NODE_SUITE.md must be the table this run produces. A seeded sample of
the passing cases also goes on to a .keras file that real Keras 3 loads and runs to ONNX's expected outputs.
"""
from __future__ import annotations

import random

import numpy as np
import pytest

import onnx_node_suite as suite

PASS_FLOOR = 1100  # the target of issue 10; the table below records where it stands
SAMPLE = 60
# Keras bugs that make real Keras compute something else than ONNX (and kcompat) for a case, by what they touch
KERAS_BUGS = {"uint64": "keras's result_type('uint64', 'uint64') is 'uint32' (keras/src/backend/common/dtypes.py): "
                        "real Keras computes binary ops on uint64 tensors in uint32"}


def _touches(case, dtype: str) -> bool:
    """The case reads or writes a tensor of ``dtype`` (an input, an output or an initializer)."""
    from onnx import numpy_helper
    arrays = list(case.inputs) + list(case.outputs) + [numpy_helper.to_array(t) for t in case.model.graph.initializer]
    return any(np.asarray(a).dtype == np.dtype(dtype) for a in arrays)


@pytest.fixture(scope="module")
def results():
    cases, collected = suite.collect()
    return suite.run_all(cases), collected


def test_no_case_is_wrong_or_an_internal_error(results):
    outcomes, _ = results
    bad = [f"{o.case.name} [{o.case.op}]: {o.status}: {o.detail}" for o in outcomes
           if o.status in ("wrong", "internal", "rejected")]
    assert not bad, "\n".join(bad)


def test_pass_count_and_table_are_current(results):
    outcomes, collected = results
    assert suite.totals(outcomes)["pass"] >= PASS_FLOOR
    assert len(outcomes) >= 1800  # the tensor cases of the installed onnx: the suite did not shrink unnoticed
    text = suite.markdown(outcomes, collected)
    assert suite.TABLE.read_text() == text, "docs/ONNX_NODE_SUITE.md is stale: python -m tests.onnx_node_suite --table"


def test_with_a_dynamic_batch_axis_no_case_goes_wrong(results):
    """The passing cases again with a dynamic first axis (as exporters write the batch): still right, or a clean
    refusal (a lowering that needs that size), never a wrong answer or an internal error."""
    outcomes, _ = results
    variants = [v for v in (suite.with_dynamic_batch(o.case) for o in outcomes if o.status == "pass") if v is not None]
    rerun = suite.run_all(random.Random(4).sample(variants, min(400, len(variants))))
    bad = [f"{o.case.name}: {o.status}: {o.detail}" for o in rerun if o.status in ("wrong", "internal", "rejected")]
    assert not bad, "\n".join(bad)
    assert sum(o.status == "pass" for o in rerun) >= 0.8 * len(rerun)


def test_unsupported_cases_name_the_op(results):
    """A clean refusal says which ONNX op (and, for a refused attribute, why)."""
    outcomes, _ = results
    for o in outcomes:
        if o.status == "unsupported" and "unsupported ONNX ops:" in o.detail:
            assert o.case.op.split(" ")[0] in o.detail or "expanded" in o.case.op, (o.case.name, o.detail)


def test_a_sample_of_passing_cases_converts_to_keras(results, keras, tmp_path):
    """kcompat's import of a passing case, saved as .keras, loads in real Keras and gives ONNX's outputs."""
    import onnx

    import kcompat
    outcomes, _ = results
    passing = [o.case for o in outcomes if o.status == "pass" and not any(_touches(o.case, k) for k in KERAS_BUGS)]
    sample = random.Random(10).sample(passing, min(SAMPLE, len(passing)))
    failures = []
    for case in sample:
        source, target = tmp_path / f"{case.name}.onnx", tmp_path / f"{case.name}.keras"
        onnx.save(case.model, str(source))
        model = kcompat.load(str(source))
        kcompat.save(model, str(target))
        feed = [np.asarray(x, dtype=np.float32 if x.dtype.kind == "f" or x.dtype.kind == "V" else x.dtype)
                for x in case.inputs]
        try:
            kmodel = keras.saving.load_model(str(target))
            got = kmodel(feed[0] if len(feed) == 1 else feed)
        except Exception as e:  # noqa: BLE001 (every case's failure is listed)
            failures.append(f"{case.name}: Keras: {type(e).__name__}: {str(e).splitlines()[0]}")
            continue
        got = [keras.ops.convert_to_numpy(g) for g in (got if isinstance(got, (list, tuple)) else [got])]
        why = suite.compare(got, case.outputs, case.rtol, case.atol)
        if why:
            failures.append(f"{case.name}: {why}")
    assert not failures, "\n".join(failures)


def test_the_keras_bugs_the_sample_leaves_out_are_still_there(keras):
    """When Keras fixes one, this fails: drop it from KERAS_BUGS so the sample covers those cases again."""
    x = keras.Input((3,), dtype="uint64", batch_size=2)
    y = keras.ops.add(x, np.array([1, 2, 3], np.uint64))
    assert y.dtype == "uint32", KERAS_BUGS["uint64"]
