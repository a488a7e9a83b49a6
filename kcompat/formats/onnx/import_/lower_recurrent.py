"""ONNX's RNN / LSTM / GRU -> kcompat's SimpleRNN / LSTM / GRU layers (Bidirectional for both directions).

One Keras layer per node (``return_sequences`` and ``return_state`` on, so every ONNX output has a source):
weights transposed from ONNX's (D, gates*U, F) to Keras's (F, gates*U), LSTM gates from ONNX's i, o, f, c
to Keras's i, f, c, o; the input and recurrent biases summed where Keras has one bias (GRU with
``linear_before_reset`` = ``reset_after`` keeps both). direction="reverse" is a ``go_backwards`` layer
whose outputs are flipped back to input order (ONNX's Y is in input order); "bidirectional" is a
Bidirectional with merge_mode None (its backward outputs are in input order too). ``sequence_lens``
becomes the Keras mask ``step < length`` with ``zero_output_for_mask`` (ONNX's Y is 0 past the length).
Layout 0 (time first, PyTorch's default) is transposed to Keras's (N, T, F) and back.

Refused, as no Keras cell computes them: ``clip``, ``input_forget``, non-zero peepholes, an LSTM whose g and h
activations differ, activations Keras 3 has no name for (HardSigmoid other than 1/6, 1/2: ONNX's default
0.2 is Keras 2's hard_sigmoid). Reference: onnx/docs/Operators.md; onnx/reference/ops/op_lstm.py.
"""
from __future__ import annotations

import numpy as np

from ....spec import TensorRef
from .builder import Sym
from .lowering import as_const, as_sym, close, lowering, refuse

CORE = "keras.src.ops.core"  # the module of Keras's Cast op node
WHOLE = {"class_name": "__slice__", "config": {"start": None, "stop": None, "step": None}}
DEFAULTS = {"LSTM": ["Sigmoid", "Tanh", "Tanh"], "GRU": ["Sigmoid", "Tanh"], "RNN": ["Tanh", "Tanh"]}
TAKES = {"affine": 2, "leakyrelu": 1, "thresholdedrelu": 1, "scaledtanh": 2, "hardsigmoid": 2, "elu": 1}  # alpha, beta
ALPHA_DEFAULTS = {"hardsigmoid": (0.2, 0.5), "leakyrelu": (0.01, None), "elu": (1.0, None),
                  "thresholdedrelu": (1.0, None)}
CLASS = {"LSTM": "LSTM", "GRU": "GRU", "RNN": "SimpleRNN"}


def keras_activations(op: str, names, alphas, betas, directions: int) -> list[list[str]]:
    """Per direction, the Keras names of the node's activations (ONNX's order: f, g[, h])."""
    per = len(DEFAULTS[op]) if op != "RNN" else 1
    names = [n.decode() if isinstance(n, bytes) else n for n in (names or [])]
    if not names:
        names = DEFAULTS[op][:per] * directions
    if len(names) != per * directions:
        raise refuse(f"activations={names} for {directions} direction(s)")
    alphas, betas = list(alphas or []), list(betas or [])
    out = []
    for name in names:
        key = name.lower()
        a, bb = ALPHA_DEFAULTS.get(key, (None, None))
        if TAKES.get(key, 0) >= 1 and alphas:
            a = alphas.pop(0)
        if TAKES.get(key, 0) >= 2 and betas:
            bb = betas.pop(0)
        out.append(_keras_name(key, a, bb))
    return [out[d * per:(d + 1) * per] for d in range(directions)]


def _keras_name(key: str, alpha, beta) -> str:
    simple = {"sigmoid": "sigmoid", "tanh": "tanh", "relu": "relu", "softsign": "softsign", "softplus": "softplus"}
    if key in simple:
        return simple[key]
    if key == "hardsigmoid" and close(alpha, 1 / 6) and close(beta, 0.5):
        return "hard_sigmoid"
    if key == "affine" and close(alpha, 1.0) and close(beta, 0.0):
        return "linear"
    if key == "elu" and close(alpha, 1.0):
        return "elu"
    raise refuse(f"activation {key} (alpha={alpha}, beta={beta}) has no Keras 3 name")


def _lstm_order(a: np.ndarray) -> np.ndarray:
    """ONNX's gate blocks i, o, f, c (first axis) -> Keras's i, f, c, o."""
    i, o, f, c = np.split(a, 4, axis=0)
    return np.concatenate([i, f, c, o], axis=0)


def keras_weights(op: str, w: np.ndarray, r: np.ndarray, bias: np.ndarray | None, reset_after: bool) -> list:
    """One direction's Keras weights from ONNX's W (gU, F), R (gU, U), B (2gU,)."""
    order = _lstm_order if op == "LSTM" else (lambda a: a)
    kernel = np.ascontiguousarray(order(w).T.astype(np.float32))  # (F, gU)
    recurrent = np.ascontiguousarray(order(r).T.astype(np.float32))  # (U, gU)
    if bias is None:
        return [kernel, recurrent]
    wb, rb = (order(part).astype(np.float32) for part in np.split(bias, 2))
    if op == "GRU" and reset_after:
        return [kernel, recurrent, np.stack([wb, rb])]  # (2, 3U)
    return [kernel, recurrent, wb + rb]


def _time_mask(b, xk: Sym, lens, steps: int | None) -> Sym | None:
    """The Keras mask (N, T) ``step < length`` from sequence_lens; None when every sample is full length."""
    if isinstance(lens, np.ndarray) and steps is not None and np.all(lens.astype(np.int64) >= steps):
        return None
    if steps is None:
        raise refuse("sequence_lens with an unknown number of timesteps")
    first = b.op("GetItem", [xk, [WHOLE, WHOLE, 0]], inner=True, suffix="steps")  # (N, T, F) -> (N, T)
    step = b.op("Add", [b.op("ZerosLike", [first], inner=True, suffix="zeros"), np.arange(steps, dtype=np.float32)],
                inner=True, suffix="step")
    if isinstance(lens, np.ndarray):
        length = lens.astype(np.float32).reshape(-1, 1)  # (N, 1)
    else:
        length = b.op("ExpandDims", [b.op("Cast", [lens], module=CORE, inner=True, suffix="lens", dtype="float32")],
                      inner=True, suffix="lens_col", axis=1)
    return b.op("Less", [step, length], inner=True, suffix="mask")


def _initial(b, value, d: int, layout: int, xk: Sym) -> Sym | None:
    """Direction d's initial state (N, U) from ONNX's (D, N, U) (layout 1: (N, D, U)); None for zeros."""
    if value is None:
        return None
    if isinstance(value, np.ndarray):
        state = value[d] if layout == 0 else value[:, d]
        if not np.any(state):
            return None
        zeros = b.op("ZerosLike", [b.op("GetItem", [xk, [WHOLE, 0, {"class_name": "__slice__", "config": {
            "start": 0, "stop": 1, "step": None}}]], inner=True, suffix="batch")], inner=True, suffix="batch_zeros")
        return b.op("Add", [zeros, state.astype(np.float32)], inner=True, suffix="initial_state")  # (N, 1) + (N, U)
    key = [d] if layout == 0 else [WHOLE, d]
    return b.op("GetItem", [value, key], inner=True, suffix=f"initial{d}")


def _recurrent(b, op, X, W, R, B, sequence_lens, initial_h, initial_c, P, activation_alpha, activation_beta,
               activations, clip, direction, hidden_size, input_forget, layout, linear_before_reset=0):
    x = as_sym(b, X, "X")
    w, r = as_const(W, "W"), as_const(R, "R")
    bias = None if B is None else as_const(B, "B")
    if clip is not None:
        raise refuse(f"clip={clip} (Keras's cells do not clip)")
    if input_forget:
        raise refuse("input_forget=1 (Keras's LSTM has no coupled gates)")
    if P is not None and np.any(as_const(P, "P")):
        raise refuse("peepholes (Keras's LSTM has none)")
    shape = b.shape(x)
    if shape is None or len(shape) != 3:
        raise refuse(f"an input of shape {shape} (rank 3 expected)")
    directions = 2 if direction == "bidirectional" else 1
    units = int(hidden_size or r.shape[-1])
    acts = keras_activations(op, activations, activation_alpha, activation_beta, directions)
    if op == "LSTM" and any(a[1] != a[2] for a in acts):
        raise refuse(f"activations g={acts[0][1]} and h={acts[0][2]} differ (Keras's LSTM uses one for both)")
    xk = x if layout else b.op("Transpose", [x], inner=True, suffix="batch_first", axes=[1, 0, 2])  # (N, T, F)
    steps = shape[0] if layout == 0 else shape[1]
    mask = None if sequence_lens is None else _time_mask(b, xk, sequence_lens, steps)
    configs, weights, states = [], [], []
    for d in range(directions):
        cfg = {"units": units, "activation": acts[d][-1 if op == "LSTM" else (1 if op == "GRU" else 0)],
               "use_bias": bias is not None, "return_sequences": True, "return_state": True,
               "go_backwards": direction == "reverse" or d == 1, "zero_output_for_mask": mask is not None}
        if op != "RNN":
            cfg["recurrent_activation"] = acts[d][0]
        if op == "GRU":
            cfg["reset_after"] = bool(linear_before_reset)
        configs.append(cfg)
        weights += keras_weights(op, w[d], r[d], None if bias is None else bias[d], bool(linear_before_reset))
        init = [_initial(b, initial_h, d, layout, xk)] + ([_initial(b, initial_c, d, layout, xk)] if op == "LSTM"
                                                          else [])
        states.append(init)
    kwargs = {}
    if any(s is not None for st in states for s in st):
        zero = None
        for st in states:
            for k, s in enumerate(st):
                if s is None:
                    zero = zero or b.op("ZerosLike", [b.op("GetItem", [xk, [WHOLE, 0, {"class_name": "__slice__",
                                        "config": {"start": 0, "stop": 1, "step": None}}]], inner=True, suffix="b1")],
                                        inner=True, suffix="b1_zeros")
                    st[k] = b.op("Add", [zero, np.zeros(units, np.float32)], inner=True, suffix="zero_state")
        kwargs["initial_state"] = [s for st in states for s in st]
    if mask is not None:
        kwargs["mask"] = mask
    count = 1 + (2 if op == "LSTM" else 1)  # per direction: sequence, h[, c]
    if directions == 2:
        base = {"LSTM": "lstm", "GRU": "gru", "RNN": "simple_rnn"}[op]
        names = [base, f"backward_{base}"]
        entries = [{"module": "keras.layers", "class_name": CLASS[op], "config": {"name": name, **cfg},
                    "registered_name": None} for name, cfg in zip(names, configs)]
        layer = b.layer("Bidirectional", {"merge_mode": None, "layer": entries[0], "backward_layer": entries[1]},
                        [xk], weights, inner=True, kwargs=kwargs)
        outs = [Sym(TensorRef(layer.ref.layer, 0, i), f"{layer.onnx}:{i}") for i in range(2 + 2 * (count - 1))]
        seqs = outs[:2]
        per_dir = [outs[2:2 + count - 1], outs[2 + count - 1:]]
    else:
        layer = b.layer(CLASS[op], configs[0], [xk], weights, inner=True, kwargs=kwargs)
        outs = [Sym(TensorRef(layer.ref.layer, 0, i), f"{layer.onnx}:{i}") for i in range(count)]
        seq = outs[0]
        if direction == "reverse":
            seq = b.op("Flip", [seq], inner=True, suffix="input_order", axis=1)  # Keras: processing order
        seqs = [seq]
        per_dir = [outs[1:]]
    results = []
    wanted = [o for o in b.node.output]
    # Y: (T, D, N, U) (layout 1: (N, T, D, U))
    if len(wanted) > 0 and wanted[0]:
        y = b.op("Stack", [seqs], inner=True, suffix="Y", axis=2)  # (N, T, D, U)
        if layout == 0:
            y = b.op("Transpose", [y], inner=True, suffix="Y_time_first", axes=[1, 2, 0, 3])
        results.append(y)
    else:
        results.append(None)
    for k in range(count - 1):  # Y_h, Y_c: (D, N, U) (layout 1: (N, D, U))
        if len(wanted) > k + 1 and wanted[k + 1]:
            results.append(b.op("Stack", [[s[k] for s in per_dir]], inner=True, suffix="Y_h" if k == 0 else "Y_c",
                                axis=0 if layout == 0 else 1))
        else:
            results.append(None)
    return results


@lowering("LSTM")
def LSTM(b, X, W, R, B=None, sequence_lens=None, initial_h=None, initial_c=None, P=None, activation_alpha=None,
         activation_beta=None, activations=None, clip=None, direction="forward", hidden_size=None, input_forget=0,
         layout=0):
    return _recurrent(b, "LSTM", X, W, R, B, sequence_lens, initial_h, initial_c, P, activation_alpha,
                      activation_beta, activations, clip, direction, hidden_size, input_forget, layout)


@lowering("GRU")
def GRU(b, X, W, R, B=None, sequence_lens=None, initial_h=None, activation_alpha=None, activation_beta=None,
        activations=None, clip=None, direction="forward", hidden_size=None, layout=0, linear_before_reset=0):
    return _recurrent(b, "GRU", X, W, R, B, sequence_lens, initial_h, None, None, activation_alpha,
                      activation_beta, activations, clip, direction, hidden_size, 0, layout, linear_before_reset)


@lowering("RNN")
def RNN(b, X, W, R, B=None, sequence_lens=None, initial_h=None, activation_alpha=None, activation_beta=None,
        activations=None, clip=None, direction="forward", hidden_size=None, layout=0):
    return _recurrent(b, "RNN", X, W, R, B, sequence_lens, initial_h, None, None, activation_alpha,
                      activation_beta, activations, clip, direction, hidden_size, 0, layout)
