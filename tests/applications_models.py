"""The models of tests/test_applications*.py, built by real Keras 3 or tf_keras: every keras.applications
architecture at its smallest input, the transfer-learning model with a nested base, the IMDB classifier and
a Transformer encoder block; seeded weights that make every weight count; the checks run on each.

Weights: kernels from Keras's own seeded initializers (their scale keeps deep nets' activations O(1));
every BatchNormalization gets random gamma / beta, then moving statistics calibrated on a batch of 32 (one
training-mode call with momentum 0), the mean moved by 0.1 of the channel's standard deviation and the
variance enlarged by up to 1.5x, so no BN is the identity and none divides by a variance unrelated to its
input. (Random variances, a calibration batch of 8 or mean shifts not scaled to the channel made
EfficientNet's and MobileNetV3's activations grow to 1e4 - 1e6 at 32x32, where a channel is one pixel and
float32 rounding alone, amplified through 200 layers, exceeds any sensible tolerance, in Keras as in kcompat.) biases, Normalization statistics and
ConvNeXt's LayerScale random too (LayerScale's 1e-6 default would make every block the identity).
"""
from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

RTOL = 1e-5  # relative, on every element
ATOL_SCALE = 3e-5  # absolute: 3e-5 of the largest |output| (float32 sums in another order, hundreds deep)

# name -> (smallest input side, constructor keywords): width multipliers at their smallest where there is one
SIDE = {"InceptionV3": 75, "InceptionResNetV2": 75, "Xception": 71}
WIDTH = {"MobileNet": {"alpha": 0.25}, "MobileNetV2": {"alpha": 0.35}, "MobileNetV3Small": {"alpha": 0.75},
         "MobileNetV3Large": {"alpha": 0.75}}


def architectures(keras) -> list[str]:
    return [n for n in dir(keras.applications) if n[0].isupper()]


def application(module, name: str, include_top: bool = True):
    """keras.applications.<name> (or tf_keras's) at its smallest input, 10 classes, logits out."""
    side = SIDE.get(name, 32)
    kw = dict(weights=None, input_shape=(side, side, 3), **WIDTH.get(name, {}))
    if include_top:
        kw.update(classes=10, classifier_activation=None)
    else:
        kw.update(include_top=False)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "input shape not 224: loading weights for 224"
        return getattr(module.applications, name)(**kw)


def transfer_learning(K, side: int = 32):
    """The Keras transfer-learning tutorial's model: augmentation, rescaling, a MobileNetV2 base called as a
    layer with training=False, pooling, dropout, one logit."""
    L = K.layers
    base = K.applications.MobileNetV2(input_shape=(side, side, 3), alpha=0.35, include_top=False, weights=None)
    base.trainable = False
    inp = K.Input((side, side, 3), name="image")
    x = L.RandomRotation(0.2, name="rotate")(L.RandomFlip("horizontal", name="flip")(inp))
    x = base(L.Rescaling(1 / 127.5, offset=-1, name="rescale")(x), training=False)
    x = L.Dropout(0.2, name="drop")(L.GlobalAveragePooling2D(name="pool")(x))
    return K.Model(inp, L.Dense(1, name="logit")(x), name="transfer_learning")


STEPS, VOCAB = 20, 50


def imdb(K):
    """The IMDB classifier of the Keras examples: masked embeddings, a bidirectional LSTM, a GRU."""
    L = K.layers
    ids = K.Input((STEPS,), dtype="int32", name="ids")
    x = L.Embedding(VOCAB, 8, mask_zero=True, name="embed")(ids)
    x = L.Bidirectional(L.LSTM(6, return_sequences=True), name="bilstm")(x)
    return K.Model(ids, L.Dense(1, activation="sigmoid", name="out")(L.GRU(4, name="gru")(x)), name="imdb")


def transformer(K, steps: int = 6, dim: int = 8):
    """A Functional Transformer encoder block (post-norm, as in the Keras text-classification example)."""
    L = K.layers
    x = K.Input((steps, dim), name="tokens")
    att = L.MultiHeadAttention(num_heads=2, key_dim=4, name="mha")(x, x)
    h = L.LayerNormalization(epsilon=1e-6, name="ln1")(L.Add(name="res1")([x, att]))
    ff = L.Dense(dim, name="ff2")(L.Dense(16, activation="gelu", name="ff1")(h))
    return K.Model(x, L.LayerNormalization(epsilon=1e-6, name="ln2")(L.Add(name="res2")([h, ff])), name="encoder")


def inputs(kmodel, batch: int = 2, seed: int = 1) -> list[np.ndarray]:
    """Unit-normal floats; for an integer input, token ids padded with 0 as Keras pads reviews: row i keeps
    the first STEPS, STEPS / 2, 0, 5 ... tokens (one row all padding from batch 3 on), row 0 has a hole."""
    rng = np.random.default_rng(seed)
    out = []
    for t in kmodel.inputs:
        shape = (batch, *t.shape[1:])
        if "int" in str(t.dtype):
            ids = rng.integers(1, VOCAB, shape).astype(np.int32)
            for i in range(batch):
                ids[i, [shape[1], shape[1] // 2, 0, 5][i % 4]:] = 0
            ids[0, 3:5] = 0
            out.append(ids)
        else:
            out.append(rng.normal(size=shape).astype(np.float32))
    return out


def _short(variable) -> str:
    return getattr(variable, "path", variable.name).split("/")[-1].split(":")[0]


def _is_model(layer) -> bool:
    return hasattr(layer, "layers") and hasattr(layer, "inputs")


def randomize(kmodel, seed: int = 0) -> None:
    """Seeded weights (module docstring), for a Keras 3 or tf_keras model; a nested model first, calibrated
    on its own (unit-normal) inputs, as it would have been trained before being reused."""
    rng = np.random.default_rng(seed)
    batchnorms = []
    for layer in kmodel.layers:
        if _is_model(layer):
            randomize(layer, int(rng.integers(1 << 30)))
            continue
        if not layer.weights:
            continue
        cls = type(layer).__name__
        values = []
        for v, w in zip(layer.weights, layer.get_weights()):
            short = _short(v)
            if cls == "LayerScale":
                w = rng.uniform(0.1, 0.5, w.shape)
            elif short in ("gamma", "variance"):
                w = rng.uniform(0.5, 1.5, w.shape)
            elif short in ("beta", "bias", "mean"):
                w = rng.normal(0, 0.2, w.shape)
            values.append(np.asarray(w, np.float32))
        layer.set_weights(values)
        if hasattr(layer, "finalize_state"):  # Keras's Normalization caches mean / variance when built
            layer.finalize_state()
        if cls == "BatchNormalization":
            batchnorms.append(layer)
    if batchnorms:
        _calibrate(kmodel, batchnorms, rng)


def _calibrate(kmodel, batchnorms, rng) -> None:
    """Moving statistics = the batch statistics of a calibration batch (training=True, momentum 0; a nested
    model's BNs momentum 1: kept), then each moved by a random amount: BN normalizes roughly, never exactly."""
    nested = [bn for layer in kmodel.layers if _is_model(layer) for bn in _all_layers(layer)
              if type(bn).__name__ == "BatchNormalization"]
    saved = [(bn, bn.momentum, bn.trainable) for bn in batchnorms + nested]
    for bn in batchnorms + nested:
        bn.momentum = 0.0 if bn in batchnorms else 1.0
    for bn in batchnorms:
        bn.trainable = True  # Keras runs a frozen BN in inference mode even with training=True
    xs = inputs(kmodel, batch=32, seed=99)
    try:
        kmodel(xs if len(xs) > 1 else xs[0], training=True)
    finally:
        for bn, momentum, trainable in saved:
            bn.momentum, bn.trainable = momentum, trainable
    for bn in batchnorms:
        names = [_short(v) for v in bn.weights]
        values = dict(zip(names, bn.get_weights()))
        spread = np.sqrt(values["moving_variance"])  # the channel's own scale: a shift of 0.1 standard deviations
        values["moving_mean"] = values["moving_mean"] + rng.normal(0, 0.1, spread.shape) * spread
        values["moving_variance"] = values["moving_variance"] * rng.uniform(1.0, 1.5, spread.shape)
        bn.set_weights([np.asarray(values[n], np.float32) for n in names])


def _all_layers(kmodel):
    for layer in kmodel.layers:
        if _is_model(layer):
            yield from _all_layers(layer)
        else:
            yield layer


def run_keras(kmodel, xs: list[np.ndarray]) -> list[np.ndarray]:
    out = kmodel(xs if len(xs) > 1 else xs[0], training=False)
    return [np.asarray(o) for o in (out if isinstance(out, (list, tuple)) else [out])]


def mismatch(got: list, want: list, rtol: float = RTOL, atol_scale: float = ATOL_SCALE) -> str | None:
    """None if every output matches within rtol and atol = atol_scale * max|want|, else what differs."""
    if len(got) != len(want):
        return f"{len(got)} outputs, Keras has {len(want)}"
    for i, (g, w) in enumerate(zip(got, want)):
        g, w = np.asarray(g, np.float32), np.asarray(w, np.float32)
        if g.shape != w.shape:
            return f"output {i}: shape {g.shape}, Keras {w.shape}"
        atol = atol_scale * max(float(np.abs(w).max()), 1.0)
        bad = np.abs(g - w) > atol + rtol * np.abs(w)
        if bad.any():
            return (f"output {i}: {int(bad.sum())} of {w.size} differ; max abs {np.abs(g - w).max():.3g} "
                    f"(atol {atol:.3g}, rtol {rtol:g})")
    return None


@dataclass
class Checks:
    """Every check of one model, run to the end; ``assert_all`` fails once, naming each failed check."""

    name: str
    failed: dict = field(default_factory=dict)
    passed: list = field(default_factory=list)

    def check(self, what: str, fn) -> object:
        try:
            result = fn()
        except Exception as e:  # noqa: BLE001 (a check that raises is a failed check, reported with the rest)
            self.failed[what] = f"{type(e).__name__}: {str(e).splitlines()[0][:300] if str(e) else ''}"
            return None
        if isinstance(result, str):
            self.failed[what] = result
            return None
        self.passed.append(what)
        return result

    def assert_all(self) -> None:
        assert not self.failed, f"{self.name}: " + "; ".join(f"[{k}] {v}" for k, v in self.failed.items())


def save_keras(kmodel, path: Path) -> Path:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # Keras's "HDF5 is legacy"
        kmodel.save(path)
    return path
