"""A seeded generator of valid random Keras models, for conformance against kcompat.

``build(keras, seed)`` returns a real Keras model (Sequential or Functional) made from a
random walk over layer makers that fit the current tensor's rank. Used by
tests/test_random_models.py; a longer run is ``KCOMPAT_RANDOM_MODELS=300 pytest tests/test_random_models.py``.
"""
from __future__ import annotations

import random

ACTS = ["relu", "tanh", "sigmoid", "gelu", "elu", "selu", "softplus", "swish", "linear", "leaky_relu",
        "hard_sigmoid", "mish", "softsign", "relu6", "silu", "celu", "log_sigmoid", "squareplus"]


def _pad(r, n):
    return tuple(r.randint(0, 2) for _ in range(n))


def makers(L):
    """(class name, ranks it accepts (incl. batch), factory(r, shape) -> layer). ``L`` is keras.layers."""
    def spatial(shape):
        return shape[1:-1]

    def small_kernel(r, shape, n):
        return tuple(r.choice([1, 2, 3]) if d >= 3 else 1 for d in spatial(shape)[:n])

    return [
        ("Dense", (2, 3, 4, 5), lambda r, s: L.Dense(r.randint(1, 8), activation=r.choice(ACTS), use_bias=r.random() < .8)),
        ("Activation", (2, 3, 4, 5), lambda r, s: L.Activation(r.choice(ACTS))),
        ("Dropout", (2, 3, 4, 5), lambda r, s: L.Dropout(0.3)),
        ("Flatten", (3, 4, 5), lambda r, s: L.Flatten()),
        ("BatchNormalization", (2, 3, 4), lambda r, s: L.BatchNormalization(center=r.random() < .8, scale=r.random() < .8)),
        ("LayerNormalization", (2, 3, 4), lambda r, s: L.LayerNormalization()),
        ("UnitNormalization", (2, 3), lambda r, s: L.UnitNormalization()),
        ("ReLU", (2, 3, 4), lambda r, s: L.ReLU(max_value=r.choice([None, 6.0]), negative_slope=r.choice([0.0, 0.1]))),
        ("LeakyReLU", (2, 3, 4), lambda r, s: L.LeakyReLU(negative_slope=0.1)),
        ("PReLU", (2, 3, 4), lambda r, s: L.PReLU()),
        ("ELU", (2, 3, 4), lambda r, s: L.ELU()),
        ("Softmax", (2, 3, 4), lambda r, s: L.Softmax()),
        ("RepeatVector", (2,), lambda r, s: L.RepeatVector(r.randint(1, 4))),
        ("Reshape", (2,), lambda r, s: L.Reshape((s[1], 1))),
        ("Permute", (3,), lambda r, s: L.Permute((2, 1))),
        ("Rescaling", (2, 3, 4), lambda r, s: L.Rescaling(0.5, offset=0.1)),
        ("Conv1D", (3,), lambda r, s: L.Conv1D(r.randint(1, 6), small_kernel(r, s, 1), padding=r.choice(["valid", "same", "causal"]),
                                               activation=r.choice(ACTS))),
        ("Conv2D", (4,), lambda r, s: L.Conv2D(r.randint(1, 6), small_kernel(r, s, 2), padding=r.choice(["valid", "same"]),
                                               strides=r.choice([1, 1, 2]) if min(spatial(s)) >= 4 else 1)),
        ("DepthwiseConv2D", (4,), lambda r, s: L.DepthwiseConv2D(small_kernel(r, s, 2), padding="same")),
        ("SeparableConv2D", (4,), lambda r, s: L.SeparableConv2D(r.randint(1, 5), small_kernel(r, s, 2), padding="same")),
        ("Conv2DTranspose", (4,), lambda r, s: L.Conv2DTranspose(r.randint(1, 4), 2, strides=r.choice([1, 2]), padding=r.choice(["valid", "same"]))),
        ("MaxPooling1D", (3,), lambda r, s: L.MaxPooling1D(2, padding="same")),
        ("AveragePooling1D", (3,), lambda r, s: L.AveragePooling1D(2, padding="same")),
        ("MaxPooling2D", (4,), lambda r, s: L.MaxPooling2D(2, padding=r.choice(["valid", "same"]) if min(spatial(s)) >= 2 else "same")),
        ("AveragePooling2D", (4,), lambda r, s: L.AveragePooling2D(2, padding="same")),
        ("GlobalAveragePooling1D", (3,), lambda r, s: L.GlobalAveragePooling1D()),
        ("GlobalMaxPooling2D", (4,), lambda r, s: L.GlobalMaxPooling2D()),
        ("GlobalAveragePooling2D", (4,), lambda r, s: L.GlobalAveragePooling2D(keepdims=r.random() < .3)),
        ("ZeroPadding1D", (3,), lambda r, s: L.ZeroPadding1D(_pad(r, 2))),
        ("ZeroPadding2D", (4,), lambda r, s: L.ZeroPadding2D(1)),
        ("Cropping1D", (3,), lambda r, s: L.Cropping1D((1, 0)) if s[1] >= 3 else L.Identity()),
        ("UpSampling1D", (3,), lambda r, s: L.UpSampling1D(2) if s[1] <= 8 else L.Identity()),
        ("UpSampling2D", (4,), lambda r, s: L.UpSampling2D(2, interpolation=r.choice(["nearest", "bilinear"])) if max(spatial(s)) <= 8 else L.Identity()),
        ("GaussianNoise", (2, 3, 4), lambda r, s: L.GaussianNoise(0.1)),
        ("GaussianDropout", (2, 3, 4), lambda r, s: L.GaussianDropout(0.2)),
        ("AlphaDropout", (2, 3), lambda r, s: L.AlphaDropout(0.2)),
        ("ActivityRegularization", (2, 3), lambda r, s: L.ActivityRegularization(l1=0.01)),
        ("SpatialDropout1D", (3,), lambda r, s: L.SpatialDropout1D(0.2)),
        ("SpatialDropout2D", (4,), lambda r, s: L.SpatialDropout2D(0.2)),
        ("GroupNormalization", (3, 4), lambda r, s: L.GroupNormalization(groups=1 if s[-1] % 2 else r.choice([1, 2]))),
        ("RMSNormalization", (2, 3, 4), lambda r, s: L.RMSNormalization()),
        ("Conv1D", (3,), lambda r, s: L.Conv1D(r.randint(1, 4), small_kernel(r, s, 1), dilation_rate=r.choice([1, 2]) if s[1] >= 5 else 1,
                                               padding="same")),
        ("DepthwiseConv1D", (3,), lambda r, s: L.DepthwiseConv1D(small_kernel(r, s, 1), depth_multiplier=r.choice([1, 2]), padding="same")),
        ("SeparableConv1D", (3,), lambda r, s: L.SeparableConv1D(r.randint(1, 4), small_kernel(r, s, 1), padding="same")),
        ("Conv1DTranspose", (3,), lambda r, s: L.Conv1DTranspose(r.randint(1, 4), 3, strides=r.choice([1, 2]), padding=r.choice(["valid", "same"]))),
        # filters != width: Keras 3 on TensorFlow adds a channels_first bias along the last axis when they
        # are equal (a Keras bug that verify names; see test_verify.py), so the oracle would be wrong there
        ("Conv2D", (4,), lambda r, s: L.Conv2D(r.choice([f for f in (1, 2, 3, 4, 5) if f != s[3]]), small_kernel(r, s, 2),
                                               data_format="channels_first", padding="same")),
        ("MaxPooling2D", (4,), lambda r, s: L.MaxPooling2D(2, strides=1, padding="same", data_format=r.choice(["channels_last", "channels_first"]))),
        ("Cropping2D", (4,), lambda r, s: L.Cropping2D(((1, 0), (0, 1))) if min(spatial(s)) >= 3 else L.Identity()),
        ("Conv3D", (5,), lambda r, s: L.Conv3D(r.randint(1, 4), small_kernel(r, s, 3), padding=r.choice(["valid", "same"]))),
        ("Conv3DTranspose", (5,), lambda r, s: L.Conv3DTranspose(r.randint(1, 3), 2, strides=r.choice([1, 2]))),
        ("MaxPooling3D", (5,), lambda r, s: L.MaxPooling3D(2, padding="same")),
        ("AveragePooling3D", (5,), lambda r, s: L.AveragePooling3D(2, padding="same")),
        ("GlobalAveragePooling3D", (5,), lambda r, s: L.GlobalAveragePooling3D()),
        ("GlobalMaxPooling1D", (3,), lambda r, s: L.GlobalMaxPooling1D(keepdims=r.random() < .3)),
        ("ZeroPadding3D", (5,), lambda r, s: L.ZeroPadding3D(1)),
        ("UpSampling3D", (5,), lambda r, s: L.UpSampling3D(2) if max(spatial(s)) <= 4 else L.Identity()),
        ("Identity", (2, 3, 4, 5), lambda r, s: L.Identity()),
        # key_dim / head_dim >= 2: a (heads, 1) bias is added along the wrong axis by Keras on TensorFlow
        # (its ops.add turns into an NCHW bias_add; see test_layers_attention.py), so the oracle would be wrong
        ("MultiHeadAttention", (3,), lambda r, s: _SelfAttention(L.MultiHeadAttention(
            r.randint(1, 3), r.randint(2, 4), use_bias=r.random() < .8, output_shape=r.choice([None, r.randint(1, 6)])),
            causal=r.random() < .5)),
        ("MultiHeadAttention", (4,), lambda r, s: _SelfAttention(L.MultiHeadAttention(
            r.randint(1, 2), r.randint(2, 3), attention_axes=r.choice([None, 1, 2])), causal=False)),
        ("GroupQueryAttention", (3,), lambda r, s: _SelfAttention(L.GroupQueryAttention(
            r.randint(2, 3), 2, r.choice([1, 2])), causal=r.random() < .5)),
        # a leading ... over one axis only: over two, Keras declares them reversed (test_layers_attention.py)
        ("EinsumDense", (2, 3), lambda r, s: L.EinsumDense("...b,bc->...c", r.randint(1, 6), bias_axes=r.choice([None, "c"]),
                                                           activation=r.choice(ACTS))),
        ("EinsumDense", (3,), lambda r, s: L.EinsumDense("abc,cd->abd", (s[1], r.randint(1, 6)), bias_axes="d")),
        # output size 1 (or an axis of 1) crashes TensorFlow's two-pool method with SIGFPE: a window longer than the axis
        ("AdaptiveAveragePooling1D", (3,), lambda r, s: L.AdaptiveAveragePooling1D(r.randint(2, 6)) if s[1] >= 2 else L.Identity()),
        ("AdaptiveMaxPooling2D", (4,), lambda r, s: L.AdaptiveMaxPooling2D((r.randint(2, 5), r.randint(2, 5)))
         if min(spatial(s)) >= 2 else L.Identity()),
        ("Resizing", (4,), lambda r, s: L.Resizing(r.randint(2, 9), r.randint(2, 9),
                                                   interpolation=r.choice(["bilinear", "nearest", "bicubic", "area"]))),
        ("CenterCrop", (4,), lambda r, s: L.CenterCrop(r.randint(2, 6), r.randint(2, 6))),
        ("RandomFlip", (4,), lambda r, s: L.RandomFlip()),
        ("RandomRotation", (4,), lambda r, s: L.RandomRotation(0.2)),
        ("RandomContrast", (4,), lambda r, s: L.RandomContrast(0.2)),
        # recurrent layers on (batch, steps, features); few units so the random runs stay fast
        ("LSTM", (3,), lambda r, s: L.LSTM(r.randint(1, 5), return_sequences=r.random() < .6, go_backwards=r.random() < .3)),
        ("GRU", (3,), lambda r, s: L.GRU(r.randint(1, 5), return_sequences=r.random() < .6, reset_after=r.random() < .7)),
        ("SimpleRNN", (3,), lambda r, s: L.SimpleRNN(r.randint(1, 5), return_sequences=r.random() < .6,
                                                     activation=r.choice(["tanh", "relu", "sigmoid"]))),
        ("Bidirectional", (3,), lambda r, s: L.Bidirectional(
            r.choice([L.LSTM, L.GRU, L.SimpleRNN])(r.randint(1, 4), return_sequences=r.random() < .6),
            merge_mode=r.choice(["concat", "sum", "mul", "ave"]))),
        ("TimeDistributed", (3, 4), lambda r, s: L.TimeDistributed(L.Dense(r.randint(1, 5), activation=r.choice(ACTS)))),
        ("SpectralNormalization", (2, 3, 4), lambda r, s: L.SpectralNormalization(L.Dense(r.randint(1, 5)))),
        ("Pipeline", (2, 3, 4), lambda r, s: L.Pipeline([L.Dense(r.randint(1, 5), activation=r.choice(ACTS)),
                                                         L.Rescaling(r.choice([0.5, 2.0]))])),
    ]


class _SelfAttention:
    """Calls an attention layer on (x, x): the makers build one-argument layers."""

    def __init__(self, layer, causal: bool):
        self.layer, self.causal = layer, causal

    def __call__(self, x):
        return self.layer(x, x, use_causal_mask=self.causal)

    def get_config(self):
        return self.layer.get_config()


# Normalizing a last axis of size 1 leaves only rounding noise, which the next normalization magnifies:
# an ill-conditioned model where any two correct implementations differ. Not generated.
DEGENERATE_ON_ONE = {"LayerNormalization", "RMSNormalization", "UnitNormalization", "GroupNormalization", "Softmax"}

MERGES = ["Add", "Subtract", "Multiply", "Average", "Maximum", "Minimum", "Concatenate"]


def build(keras, seed: int, max_layers: int = 6, only: set[str] | None = None):
    """A random valid model over every maker (each must be a kcompat layer: test_random_models.py checks),
    or over the makers of the classes in ``only``; returns (model, classes used)."""
    r = random.Random(seed)
    L = keras.layers
    table = [m for m in makers(L) if only is None or m[0] in only]
    merges = [m for m in MERGES if only is None or m in only]
    rank = r.choice([2, 3, 4, 4, 5])
    shape = {2: (r.randint(2, 8),), 3: (r.randint(3, 8), r.randint(1, 4)), 4: (r.randint(4, 8), r.randint(4, 8), r.randint(1, 3)),
             5: (r.randint(2, 4), r.randint(2, 4), r.randint(2, 4), r.randint(1, 2))}[rank]
    inp = keras.Input(shape)
    x = inp
    used, chain = [], []
    functional = r.random() < 0.5
    for _ in range(r.randint(1, max_layers)):
        fits = [m for m in table if len(x.shape) in m[1] and (x.shape[-1] > 1 or m[0] not in DEGENERATE_ON_ONE)]
        if not fits:
            break
        name, _, make = r.choice(fits)
        try:
            layer = make(r, tuple(x.shape))
            y = layer(x)
        except Exception:  # a random config that Keras itself rejects for this shape: try another layer
            continue
        if any(d == 0 for d in y.shape[1:]):
            continue
        used.append(name)
        chain.append(layer)
        if layer.get_config().get("activation") == "linear" and (only is None or "BatchNormalization" in only) and r.random() < .6:
            # conv / Dense -> BatchNormalization (-> ReLU): the chain predict's plan folds (kcompat/plan.py)
            for extra in [L.BatchNormalization()] + ([L.ReLU(max_value=r.choice([None, 6.0]))] if r.random() < .6 else []):
                y = extra(y)
                used.append(extra.__class__.__name__)
                chain.append(extra)
        if functional and merges and r.random() < 0.4 and tuple(y.shape) == tuple(x.shape):
            merge = r.choice(merges)
            y = getattr(L, merge)()([x, y])
            used.append(merge)
        x = y
    if functional or not chain or any(isinstance(l, _SelfAttention) for l in chain):  # (x, x) calls: Functional
        model = keras.Model(inp, x, name=f"random_{seed}")
    else:
        fresh = [l.__class__.from_config(l.get_config()) for l in chain]  # unbuilt copies, called once by Sequential
        nest = random.Random(seed * 7 + 1)  # its own stream: the layers drawn above stay what they were
        if len(fresh) >= 2 and nest.random() < 0.3:  # a run of them as a nested Sequential (no Input of its own)
            i = nest.randrange(len(fresh) - 1)
            j = nest.randint(i + 1, len(fresh))
            fresh[i:j] = [keras.Sequential(fresh[i:j], name=f"nested_{seed}")]
            used.append("Sequential")
        model = keras.Sequential([keras.Input(shape)] + fresh, name=f"random_{seed}")
    _randomize(model, seed)
    return model, used


def _randomize(model, seed: int) -> None:
    """Seeded non-trivial weights: non-zero biases and BN statistics, so no output is all noise."""
    import numpy as np
    rng = np.random.default_rng(seed)
    for v in model.weights:
        value = np.asarray(v.numpy())
        if value.dtype.kind != "f" or value.size == 0:
            continue
        if "variance" in v.path:
            v.assign(rng.uniform(0.5, 1.5, value.shape).astype(value.dtype))
        elif np.all(value == value.flat[0]):  # constant-initialised: biases, gamma / beta, means, PReLU alpha
            v.assign((value + rng.normal(0.0, 0.5, value.shape)).astype(value.dtype))
