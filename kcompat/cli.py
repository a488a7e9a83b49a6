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
_python_format_warning = warnings.formatwarning


def _load_model(path: str, weights: str | None, random_weights: int | None = None):
    from .formats import load_spec
    from .model import Model
    model = Model(load_spec(path, weights))
    if random_weights is not None and not model.spec.has_weights:
        model.init_weights(random_weights)
    return model


def cmd_summary(args) -> int:
    model = _load_model(args.model, args.weights)
    from . import summary
    if args.json:
        print(json.dumps(summary.summary_json(model), indent=2))
    elif args.explain:
        _print_text(summary.explain_text(model, line_length=args.line_length, width=args.width))
    else:
        _print_text(summary.summary_text(model, line_length=args.line_length, width=args.width))
    return EXIT_OK


def _print_text(text: str) -> None:
    print(text, end="" if text.endswith("\n") else "\n")


def cmd_run(args) -> int:
    from .arrays import read_inputs, write_outputs
    model = _load_model(args.model, args.weights)
    if not model.spec.has_weights:
        raise KcompatError(f"{args.model}: the model has no weights; give --weights FILE")
    inputs = read_inputs(args.input, model.input_names)
    try:
        outputs = model.predict(inputs)
    except KcompatError as e:
        raise type(e)(f"{args.input}: {e}") from None
    write_outputs(args.output, model.output_names, outputs)
    shapes = ", ".join(f"{n} {tuple(o.shape)}" for n, o in zip(model.output_names, outputs))
    print(f"wrote {args.output}: {shapes}", file=sys.stderr)
    return EXIT_OK


def cmd_verify(args) -> int:
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
    try:
        report = verify_file(args.model, weights=args.weights, reference=reference, inputs=inputs,
                             batch=args.batch, seed=args.seed, atol=args.atol, rtol=args.rtol)
    except ShapeError as e:
        if not args.input or str(e).startswith(args.input):
            raise
        raise ShapeError(f"{args.input}: {e}") from None  # the user's inputs do not fit the model
    print(report.render())
    if args.json:
        from .files import atomic_path
        with atomic_path(args.json) as tmp:
            Path(tmp).write_text(json.dumps(report.to_json(), indent=2) + "\n")
    return EXIT_OK if report.ok else EXIT_MISMATCH


def cmd_convert(args) -> int:
    from .formats import save
    model = _load_model(args.src, args.weights, args.random_weights)
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


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(prog="kcompat", description="Keras layers in NumPy; Keras/ONNX files; layer-by-layer "
                                "verification against real Keras and ONNX Runtime.")
    p.add_argument("--debug", action="store_true", help="show tracebacks")
    sub = p.add_subparsers(dest="command", required=True)

    s = sub.add_parser("summary", help="print the model summary Keras prints (shapes, params)")
    s.add_argument("model")
    s.add_argument("--weights", help="weights file for a .json architecture")
    s.add_argument("--json", action="store_true", help="machine-readable summary")
    s.add_argument("--explain", action="store_true", help="each layer's shape and parameter arithmetic in words")
    s.add_argument("--width", type=int, help="terminal width to render for (default: the terminal's)")
    s.add_argument("--line-length", type=int, help="table width, as Keras's summary(line_length=...)")
    s.set_defaults(func=cmd_summary)

    r = sub.add_parser("run", help="run the model on inputs from .npy/.npz")
    r.add_argument("model")
    r.add_argument("-i", "--input", required=True, help=".npy (one input) or .npz keyed by input layer names")
    r.add_argument("-o", "--output", required=True, help=".npy (one output) or .npz (every output, by name)")
    r.add_argument("--weights")
    r.set_defaults(func=cmd_run)

    v = sub.add_parser("verify", help="compare every layer against real Keras or ONNX Runtime")
    v.add_argument("model")
    v.add_argument("--weights")
    v.add_argument("--reference", choices=["keras", "onnxruntime"],
                   help="default: keras for Keras files, onnxruntime (on the original file) for .onnx")
    v.add_argument("--input", help=".npy/.npz inputs (default: seeded standard normal)")
    v.add_argument("--batch", type=int, default=4)
    v.add_argument("--seed", type=int, default=0)
    v.add_argument("--atol", type=float, default=None, help="absolute tolerance (default documented in README)")
    v.add_argument("--rtol", type=float, default=None, help="relative tolerance (default documented in README)")
    v.add_argument("--json", metavar="FILE", help="write the report as JSON")
    v.set_defaults(func=cmd_verify)

    c = sub.add_parser("convert", help="convert between .keras, .h5, .json(+weights) and .onnx")
    c.add_argument("src")
    c.add_argument("dst")
    c.add_argument("--weights")
    c.add_argument("--opset", type=int, help="ONNX opset for .onnx output (default: newest onnxruntime runs)")
    c.add_argument("--external-data", action="store_true",
                   help="write the .onnx weights to <dst>.data beside it (default: only past protobuf's 2 GB)")
    c.add_argument("--random-weights", type=int, metavar="SEED", help="seeded random weights for an architecture-only JSON")
    c.set_defaults(func=cmd_convert)

    d = sub.add_parser("diff", help="diff two models: config, shapes, params, weights, outputs")
    d.add_argument("a")
    d.add_argument("b")
    d.add_argument("--weights-a")
    d.add_argument("--weights-b")
    d.add_argument("--atol", type=float, default=0.0, help="weight/output difference still counted as the same")
    d.add_argument("--seed", type=int, default=0)
    d.add_argument("--json", action="store_true")
    d.set_defaults(func=cmd_diff)
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
