"""kcompat command line: parse, call the API, print, exit code. Nothing else lives here.

Exit codes: 0 success (verify: all layers match; diff: models the same), 1 a mismatch
or a difference, 2 bad input (one ``kcompat: error:`` line on stderr, no traceback
unless --debug), 3 an internal error (a kcompat bug; please report it).
"""
from __future__ import annotations

import argparse
import json
import sys
import warnings
from pathlib import Path

from .errors import KcompatError, ShapeError

EXIT_OK, EXIT_MISMATCH, EXIT_BAD_INPUT, EXIT_INTERNAL = 0, 1, 2, 3
WEIGHTS_HELP = "weights file (default: the model file's own; for a .json, <stem>.weights.h5 beside it)"
_python_format_warning = warnings.formatwarning


def _load_model(path: str, weights: str | None, random_weights: int | None = None, args=None):
    from . import load
    model = load(path, weights, args.layout, args.inputs) if args is not None else load(path, weights, "onnx")
    if random_weights is not None and not model.spec.has_weights:
        model.init_weights(random_weights)
    return model


def cmd_summary(args) -> int:
    model = _load_model(args.model, args.weights, args=args)
    from . import summary
    if args.json:
        print(json.dumps(summary.summary_json(model), indent=2))
    elif args.explain:
        _print_text(summary.explain_text(model, line_length=args.line_length, width=args.width))
    else:
        _print_text(summary.summary_text(model, line_length=args.line_length, width=args.width,
                                         expand_nested=args.expand))
    return EXIT_OK


def _print_text(text: str) -> None:
    print(text, end="" if text.endswith("\n") else "\n")


def cmd_run(args) -> int:
    from .arrays import read_inputs, write_outputs
    model = _load_model(args.model, args.weights, args=args)
    if not model.spec.has_weights:
        raise KcompatError(f"{args.model}: the model has no weights; give --weights FILE")
    inputs = read_inputs(args.input, model.input_names)
    if args.all_layers and Path(args.output).suffix.lower() != ".npz":
        raise KcompatError(f"{args.output}: --all-layers writes one array per call node; give an .npz output")
    try:
        if args.all_layers:
            from .verify.kcompat_reference import node_outputs
            from .verify.reference import flatten_outputs
            named = flatten_outputs(node_outputs(model, inputs))
            names, outputs = list(named), list(named.values())
        else:
            names, outputs = model.output_names, model.predict(inputs)
    except KcompatError as e:
        raise type(e)(f"{args.input}: {e}") from None
    write_outputs(args.output, names, outputs)
    if args.all_layers:
        print(f"wrote {args.output}: {len(names)} arrays, one per call node (the inputs included)", file=sys.stderr)
    else:
        shapes = ", ".join(f"{n} {tuple(o.shape)}" for n, o in zip(names, outputs))
        print(f"wrote {args.output}: {shapes}", file=sys.stderr)
    return EXIT_OK


def cmd_verify(args) -> int:
    from .verify.progress import RichProgress
    from .verify.run import verify_file
    if args.json:
        from .files import check_target
        check_target(args.json)  # before the run: a bad --json path prints no table
    inputs = None
    if args.input:
        from .arrays import read_inputs
        from .formats import load_spec
        spec = load_spec(args.model, args.weights)
        inputs = read_inputs(args.input, [r.layer for r in spec.inputs])
    reference = args.reference or ("onnxruntime" if Path(args.model).suffix.lower() == ".onnx" else "keras")
    candidate = _candidate(args.candidate, args.candidate_outputs)
    try:
        with RichProgress() as progress:
            report = verify_file(args.model, weights=args.weights, reference=reference, inputs=inputs,
                                 batch=args.batch, seed=args.seed, atol=args.atol, rtol=args.rtol,
                                 candidate=candidate, strict=args.strict, progress=progress,
                                 layout=args.layout, layout_inputs=args.inputs)
    except ShapeError as e:
        if not args.input or str(e).startswith(args.input):
            raise
        raise ShapeError(f"{args.input}: {e}") from None  # the user's inputs do not fit the model
    print(report.render(all_rows=args.all), end="")
    if args.json:
        from .files import atomic_path
        with atomic_path(args.json) as tmp:
            Path(tmp).write_text(json.dumps(report.to_json(), indent=2) + "\n")
    return EXIT_OK if report.ok else EXIT_MISMATCH


def _candidate(adapter: str | None, outputs: str | None):
    """The candidate named on the command line (None: kcompat's own layers)."""
    if adapter:
        from .verify.candidate import load_adapter
        return load_adapter(adapter)
    if outputs:
        from .verify.candidate import OutputsCandidate
        return OutputsCandidate(outputs)
    return None


def cmd_conformance_export(args) -> int:
    from .conformance.export import export_suite
    from .verify.progress import RichProgress
    with RichProgress() as progress:
        names = export_suite(args.dir, _class_list(args.layers), args.cases, args.seed, progress)
    print(f"wrote {len(names)} case(s) to {args.dir}", file=sys.stderr)
    return EXIT_OK


def cmd_conformance_run(args) -> int:
    from .conformance.run import run_suite
    from .conformance.text import render_suite
    from .files import atomic_path, check_target
    from .verify.progress import RichProgress
    for target in (args.junit, args.html, args.json):
        if target:
            check_target(target)
    candidate = _candidate(args.candidate, None)
    with RichProgress() as progress:
        result = run_suite(args.dir, candidate, args.candidate_outputs_dir, args.strict,
                           _class_list(args.layers), progress)
    print(render_suite(result, all_rows=args.all), end="")
    writers = []
    if args.junit:
        from .conformance.junit import junit_xml
        writers.append((args.junit, junit_xml))
    if args.html:
        from .conformance.html import html_report
        writers.append((args.html, html_report))
    if args.json:
        writers.append((args.json, lambda r: json.dumps(r.to_json(), indent=2, allow_nan=False) + "\n"))
    for target, write in writers:
        with atomic_path(target) as tmp:
            Path(tmp).write_text(write(result), encoding="utf-8")
    return result.exit_code


def _class_list(text: str | None) -> list[str] | None:
    return None if text is None else [c.strip() for c in text.split(",") if c.strip()]


def cmd_convert(args) -> int:
    from .formats import save
    model = _load_model(args.src, args.weights, args.random_weights, args=args)
    options = {"opset": args.opset} if args.opset is not None else {}
    if args.external_data:
        options["external_data"] = True
    if options and Path(args.dst).suffix.lower() != ".onnx":
        raise KcompatError(f"{args.dst}: {'--opset' if 'opset' in options else '--external-data'} applies only "
                           f"to .onnx output")
    written = save(model, args.dst, **options)
    print("wrote " + ", ".join(written), file=sys.stderr)
    return EXIT_OK


def cmd_diff(args) -> int:
    from .model_diff import diff_models
    if not 0 <= args.atol < float("inf"):
        raise KcompatError(f"atol must be a finite number >= 0. Received: atol={args.atol!r}")
    a = _load_model(args.a, args.weights_a)
    b = _load_model(args.b, args.weights_b)
    result = diff_models(a, b, atol=args.atol, seed=args.seed)
    print(json.dumps(result.to_json(), indent=2) if args.json else result.render())
    return EXIT_OK if result.same else EXIT_MISMATCH


class _Parser(argparse.ArgumentParser):
    """argparse with kcompat's error contract: one ``kcompat: error:`` line, exit 2 (no usage block)."""

    def error(self, message: str):
        self.exit(EXIT_BAD_INPUT, f"kcompat: error: {self.prog}: {_one_line(message)} (see {self.prog} --help)\n")


def _layout_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--layout", choices=["auto", "onnx", "channels_last"], default="auto",
                        help="auto (default): an ONNX export of a channels-last Keras model reads back channels-last, "
                             "an NCHW model as ONNX has it; onnx: as read; channels_last: an NCHW model rewritten "
                             "channels-last (kernels kept, Flatten order kept, transposes at the edges)")
    parser.add_argument("--inputs", choices=["keep", "channels_last"], default="keep",
                        help="with --layout channels_last: keep (default) the inputs' layout, or make rank-3+ "
                             "inputs (N, ..., C)")


def build_parser() -> argparse.ArgumentParser:
    from .verify.metrics import ATOL, RTOL
    from .verify.run import REFERENCES
    from .version import __version__
    p = _Parser(prog="kcompat", description="Keras layers in NumPy; Keras/ONNX files; layer-by-layer "
                                "verification of kcompat or your own implementation against real Keras.")
    p.add_argument("--version", action="version", version=f"kcompat {__version__}",
                   help="print the version and exit")
    p.add_argument("--debug", action="store_true", help="show tracebacks (default: one error line)")
    sub = p.add_subparsers(dest="command", required=True)

    s = sub.add_parser("summary", help="print the model summary Keras prints (shapes, params)")
    s.add_argument("model")
    s.add_argument("--weights", help=WEIGHTS_HELP)
    s.add_argument("--json", action="store_true", help="machine-readable summary (default: the table)")
    s.add_argument("--explain", action="store_true",
                   help="each layer's shape and parameter arithmetic in words (default: off)")
    s.add_argument("--width", type=int, help="terminal width to render for (default: the terminal's)")
    s.add_argument("--line-length", type=int, help="table width, as Keras's summary(line_length=...) "
                                                    "(default: Keras's, from the width)")
    s.add_argument("--expand", action="store_true", help="show nested models' layers, as Keras's "
                   "summary(expand_nested=True) (default: one row per nested model)")
    _layout_options(s)
    s.set_defaults(func=cmd_summary)

    r = sub.add_parser("run", help="run the model on inputs from .npy/.npz")
    r.add_argument("model")
    r.add_argument("-i", "--input", required=True,
                   help=".npy (one input) or .npz keyed by input layer names (required)")
    r.add_argument("-o", "--output", required=True,
                   help=".npy (one output) or .npz (every output, by name) (required)")
    r.add_argument("--weights", help=WEIGHTS_HELP)
    r.add_argument("--all-layers", action="store_true",
                   help="write every call node's output to the .npz, keyed by layer name ('name:N' for a "
                        "layer's call N, 'key[i]' for output i): the --candidate-outputs format "
                        "(default: the model outputs only)")
    _layout_options(r)
    r.set_defaults(func=cmd_run)

    v = sub.add_parser("verify", help="compare every layer, isolated and chained, against real Keras, ONNX "
                                      "Runtime or kcompat")
    v.add_argument("model")
    v.add_argument("--weights", help=WEIGHTS_HELP)
    v.add_argument("--reference", choices=list(REFERENCES),
                   help="the oracle (default: keras for Keras files, onnxruntime on the original file for .onnx)")
    who = v.add_mutually_exclusive_group()
    who.add_argument("--candidate", metavar="PATH.py:FUNC",
                     help="verify your implementation: FUNC(layer, weights, inputs) -> array, from a file or "
                          "package.module:FUNC, called once per call node (default: kcompat's NumPy layers)")
    who.add_argument("--candidate-outputs", metavar="OUT.npz",
                     help="verify outputs your implementation computed, one array per call node (format: "
                          "kcompat run --all-layers), compared chained (default: none)")
    v.add_argument("--strict", action="store_true",
                   help="layers not implemented by the candidate or missing from its outputs fail too "
                        "(default: reported, not failing)")
    v.add_argument("--input", help=".npy/.npz inputs (default: the inputs stored in --candidate-outputs, "
                                   "else seeded standard normal)")
    v.add_argument("--batch", type=int, default=4, help="batch size of the generated inputs (default: 4)")
    v.add_argument("--seed", type=int, default=0, help="seed of the generated inputs and weights (default: 0)")
    v.add_argument("--atol", type=float, default=None, help=f"absolute tolerance (default: {ATOL:g})")
    v.add_argument("--rtol", type=float, default=None, help=f"relative tolerance (default: {RTOL:g})")
    v.add_argument("--all", action="store_true",
                   help="one table row per call node (default: the failing layers and one line per layer class)")
    v.add_argument("--json", metavar="FILE", help="also write the report as JSON (default: none)")
    _layout_options(v)
    v.set_defaults(func=cmd_verify)

    c = sub.add_parser("convert", help="convert between .keras, .h5, .json(+weights) and .onnx")
    c.add_argument("src")
    c.add_argument("dst")
    c.add_argument("--weights", help=WEIGHTS_HELP)
    c.add_argument("--opset", type=int, help="ONNX opset for .onnx output (default: newest onnxruntime runs)")
    c.add_argument("--external-data", action="store_true",
                   help="write the .onnx weights to <dst>.data beside it (default: only past protobuf's 2 GB)")
    c.add_argument("--random-weights", type=int, metavar="SEED",
                   help="seeded random weights for an architecture-only JSON (default: none, an error)")
    _layout_options(c)
    c.set_defaults(func=cmd_convert)

    d = sub.add_parser("diff", help="diff two models: config, shapes, params, weights, outputs")
    d.add_argument("a")
    d.add_argument("b")
    d.add_argument("--weights-a", help="weights file for A (default: A's own)")
    d.add_argument("--weights-b", help="weights file for B (default: B's own)")
    d.add_argument("--atol", type=float, default=0.0,
                   help="weight/output difference still counted as the same (default: 0)")
    d.add_argument("--seed", type=int, default=0, help="seed of the inputs the outputs are compared on (default: 0)")
    d.add_argument("--json", action="store_true", help="machine-readable diff (default: text)")
    d.set_defaults(func=cmd_diff)
    for command in (s, r, v, c, d):
        command.add_argument("--layers", action="append", default=[], metavar="FILE.py", dest="layer_files",
                             help="a Python file defining kcompat layers for custom Keras classes (repeatable; "
                                  "README: Custom layers). It is run: give only files you trust (default: none)")

    k = sub.add_parser("conformance", help="the portable conformance suite: export it, run a candidate on it")
    ksub = k.add_subparsers(dest="action", required=True)
    e = ksub.add_parser("export", help="write one folder per case, expected outputs from real Keras")
    e.add_argument("dir")
    e.add_argument("--layers", metavar="Dense,Conv2D,...", help="layer classes to export, ops.<Class> for a Keras 3 "
                                                                 "op such as ops.Mean (default: every layer class "
                                                                 "and op kcompat implements)")
    e.add_argument("--cases", type=int, default=None, help="at most N cases per layer class (default: every "
                                                           "config in the table, 1-12 per class)")
    e.add_argument("--seed", type=int, default=0, help="seed of the weights and inputs (default: 0)")
    e.set_defaults(func=cmd_conformance_export)
    cr = ksub.add_parser("run", help="check a candidate on every case; exit 0 all pass, 1 a failure, 2 bad input")
    cr.add_argument("dir")
    cwho = cr.add_mutually_exclusive_group()
    cwho.add_argument("--candidate", metavar="PATH.py:FUNC", help="your implementation, as for verify "
                                                                  "(default: kcompat's NumPy layers)")
    cwho.add_argument("--candidate-outputs-dir", metavar="D",
                      help="one <case>.npz of every call node's output per case (default: none)")
    cr.add_argument("--layers", metavar="Dense,Conv2D,...", help="run only these classes' cases, ops.<Class> for "
                                                                 "an op (default: every case)")
    cr.add_argument("--strict", action="store_true", help="not implemented / missing layers and cases fail "
                                                          "(default: reported, not failing)")
    cr.add_argument("--junit", metavar="FILE", help="write JUnit XML, one testcase per case and layer (default: none)")
    cr.add_argument("--html", metavar="FILE", help="write one self-contained HTML page with a plot per case "
                                                   "(default: none)")
    cr.add_argument("--json", metavar="FILE", help="write every case's report as JSON (default: none)")
    cr.add_argument("--all", action="store_true", help="one line per case (default: the cases that fail)")
    cr.set_defaults(func=cmd_conformance_run)
    return p


def _format_warning(message, category, filename, lineno, line=None) -> str:
    """kcompat's own warnings as one ``kcompat: note:`` line; others as Python prints them."""
    if "kcompat" in Path(filename).parts:
        return f"kcompat: note: {_one_line(str(message))}\n"
    return _python_format_warning(message, category, filename, lineno, line)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    warnings.formatwarning = _format_warning
    if args.debug:
        import os
        os.environ["KCOMPAT_DEBUG"] = "1"  # keep TensorFlow's native stderr too
    try:
        if getattr(args, "layer_files", None):
            from .layers import load_layer_file
            for path in args.layer_files:
                load_layer_file(path)
        return args.func(args)
    except KcompatError as e:
        if args.debug:
            raise
        print(f"kcompat: error: {_one_line(str(e))}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except (OSError, MemoryError) as e:
        if args.debug:
            raise
        print(f"kcompat: error: {_one_line(str(e))}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except KeyboardInterrupt:
        return 130
    except Exception as e:  # a kcompat bug, not bad input: still one line, with a way to see more
        if args.debug:
            raise
        print(f"kcompat: error: internal error ({type(e).__name__}: {_one_line(str(e))}); "
              f"rerun with --debug for the traceback", file=sys.stderr)
        return EXIT_INTERNAL


def _one_line(text: str, limit: int = 2000) -> str:
    """The message on one line, its middle cut when a hostile file makes it huge (a 4,000-character name)."""
    text = " ".join(text.split())
    return text if len(text) <= limit else f"{text[:limit * 2 // 3]} [...] {text[-limit // 3:]}"
