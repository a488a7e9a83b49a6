"""Conformance of the preprocessing, augmentation, adaptive pooling, reversible embedding and
keras.applications layers against real Keras 3 at inference: values, output shapes, dtypes, params.

Rows follow tests/test_layers_misc.py (one Keras model per group). Resizing with the lanczos kernels
differs from TensorFlow by float32 summation order only (largest seen 2.4e-7 on unit-normal data).
InceptionResNetV2 (its own CustomScaleLayer, no nested model) is loaded and verified whole.
"""
from __future__ import annotations

import numpy as np
import pytest

from conftest import rand, to_kcompat
from test_layers_misc import BATCH, keras_reads_what_kcompat_writes, layer, row, table_tests

IMG, IMG_CF = (9, 13, 3), (3, 9, 13)


def uint8_images(seed, shape=IMG):
    return [np.random.default_rng(seed).integers(0, 256, (BATCH, *shape)).astype(np.uint8)]


def float_pixels(seed, shape=IMG):
    return [uint8_images(seed, shape)[0].astype(np.float32)]


IMAGE = [
    *[row(f"resize_{interp}_{h}x{w}", layer("Resizing", height=h, width=w, interpolation=interp), IMG)
      for interp in ("bilinear", "nearest", "bicubic", "area", "lanczos3", "lanczos5")
      for h, w in ((5, 7), (14, 20), (9, 4))],
    *[row(f"resize_{interp}_antialias", layer("Resizing", height=4, width=6, interpolation=interp, antialias=True), IMG)
      for interp in ("bilinear", "bicubic", "lanczos3")],
    row("resize_crop_to_aspect", layer("Resizing", height=6, width=6, crop_to_aspect_ratio=True), IMG),
    row("resize_pad_to_aspect_rows", layer("Resizing", height=6, width=6, pad_to_aspect_ratio=True, fill_value=2.0), IMG),
    row("resize_pad_to_aspect_columns", layer("Resizing", height=4, width=12, pad_to_aspect_ratio=True), IMG),
    row("resize_channels_first", layer("Resizing", height=5, width=7, data_format="channels_first"), IMG_CF),
    row("resize_uint8_rounds_and_saturates", layer("Resizing", height=5, width=7, interpolation="bicubic"), IMG,
        dtype="uint8", data=uint8_images),
    row("resize_uint8_nearest", layer("Resizing", height=11, width=7, interpolation="nearest"), IMG, dtype="uint8",
        data=uint8_images),
    row("center_crop", layer("CenterCrop", height=5, width=7), IMG),
    row("center_crop_larger_smart_resizes", layer("CenterCrop", height=12, width=7), IMG),
    row("center_crop_channels_first", layer("CenterCrop", height=4, width=4, data_format="channels_first"), IMG_CF),
    row("center_crop_uint8_casts", layer("CenterCrop", height=5, width=8), IMG, dtype="uint8", data=uint8_images),
    *[row(f"clahe_{rid}", layer("ContrastLimitedAdaptiveHistogramEqualization", **kw), shape, **extra)
      for rid, kw, shape, extra in (
          ("default_grid_pads_tiles", {}, (20, 13, 3), {"data": lambda s: float_pixels(s, (20, 13, 3))}),
          ("uint8_truncates", {"tile_grid_size": (3, 4)}, IMG, {"dtype": "uint8", "data": uint8_images}),
          ("no_clip", {"clip_limit": 0, "tile_grid_size": (2, 2)}, IMG, {"data": float_pixels}),
          ("unit_range", {"value_range": (0, 1), "tile_grid_size": (2, 3)}, IMG,
           {"data": lambda s: [np.random.default_rng(s).uniform(0, 1, (BATCH, *IMG)).astype(np.float32)]}),
          ("channels_first", {"data_format": "channels_first", "tile_grid_size": (2, 2)}, IMG_CF,
           {"data": lambda s: float_pixels(s, IMG_CF)}))],
    row("auto_contrast", layer("AutoContrast"), IMG),
    row("auto_contrast_unit_range", layer("AutoContrast", value_range=(0, 1)), IMG),
    row("auto_contrast_uint8", layer("AutoContrast"), IMG, dtype="uint8", data=uint8_images),
]

AUGMENTATION_CONFIGS = {
    "AugMix": {}, "CutMix": {}, "MixUp": {}, "RandAugment": {}, "RandomBrightness": {"factor": 0.3},
    "RandomColorDegeneration": {"factor": 0.3}, "RandomColorJitter": {"brightness_factor": 0.2},
    "RandomContrast": {"factor": 0.3}, "RandomElasticTransform": {"factor": 0.5}, "RandomErasing": {"factor": 0.5},
    "RandomFlip": {}, "RandomGaussianBlur": {"factor": 0.5}, "RandomGrayscale": {}, "RandomHue": {"factor": 0.2},
    "RandomInvert": {}, "RandomPerspective": {}, "RandomPosterization": {"factor": (1, 4)},
    "RandomRotation": {"factor": 0.2}, "RandomSaturation": {"factor": 0.3}, "RandomSharpness": {"factor": 0.3},
    "RandomShear": {"x_factor": 0.2}, "RandomTranslation": {"height_factor": 0.2, "width_factor": 0.2},
    "RandomZoom": {"height_factor": 0.2}, "Solarization": {"addition_factor": 0.2, "threshold_factor": 0.2},
    "MaxNumBoundingBoxes": {"max_number": 3},
}

AUGMENTATION = [
    *[row(f"{name}_float", layer(name, **config), IMG) for name, config in AUGMENTATION_CONFIGS.items()],
    *[row(f"{name}_uint8_dtype", layer(name, **config), IMG, dtype="uint8", data=uint8_images)
      for name, config in AUGMENTATION_CONFIGS.items()],
]

VOCAB = [12, 36, 1138, 42, 7]


def tokens(seed, shape=(6,), dtype=np.int64):
    choices = np.array(VOCAB + [0, 5, 3, 9, -4, 100])
    return [np.random.default_rng(seed).choice(choices, size=(BATCH, *shape)).astype(dtype)]


def small_ints(high, shape=(6,), dtype=np.int32):
    return lambda seed: [np.random.default_rng(seed).integers(0, high, (BATCH, *shape)).astype(dtype)]


def wide_ints(seed, shape=(6,)):
    """Small, negative and 19-digit integers: every FarmHash / SipHash length path."""
    rng = np.random.default_rng(seed)
    pool = np.array([0, 1, -1, 7, 42, 1234, -98765, 123456789, 10 ** 15, -(2 ** 62), 2 ** 63 - 1], np.int64)
    return [rng.choice(pool, size=(BATCH, *shape))]


def adapted_lookup(k, x):
    lookup = k.layers.IntegerLookup(num_oov_indices=2)
    lookup.adapt(np.array([[3, 3, 5, 9, 9, 9, 12]]))
    return lookup(x)


def adapted_discretization(k, x):
    disc = k.layers.Discretization(num_bins=4, output_mode="one_hot")
    disc.adapt(np.random.default_rng(0).normal(size=(200,)))
    return disc(x)


def lookup(**kw):
    return layer("IntegerLookup", vocabulary=VOCAB, **kw)


CATEGORICAL = [
    row("category_one_hot", layer("CategoryEncoding", num_tokens=8, output_mode="one_hot"), (6,), dtype="int32",
        data=small_ints(10)),
    row("category_one_hot_last_axis_1", layer("CategoryEncoding", num_tokens=8, output_mode="one_hot"), (1,),
        dtype="int32", data=small_ints(8, (1,))),
    row("category_one_hot_rank3", layer("CategoryEncoding", num_tokens=5, output_mode="one_hot"), (3, 2),
        dtype="int32", data=small_ints(5, (3, 2))),
    row("category_multi_hot_drops_out_of_range", layer("CategoryEncoding", num_tokens=8), (6,), dtype="int32",
        data=small_ints(10)),
    row("category_count", layer("CategoryEncoding", num_tokens=8, output_mode="count"), (6,), dtype="int32",
        data=small_ints(8)),
    *[row(f"discretization_{mode}", layer("Discretization", bin_boundaries=[-1.0, 0.0, 0.5, 1.0], output_mode=mode),
          (6,)) for mode in ("int", "one_hot", "multi_hot", "count")],
    row("discretization_adapted", adapted_discretization, (6,)),
    row("lookup_int", lookup(), (6,), dtype="int64", data=tokens),
    row("lookup_mask_token", lookup(mask_token=0), (6,), dtype="int64", data=tokens),
    row("lookup_three_oov_floormod", lookup(num_oov_indices=3), (6,), dtype="int64", data=tokens),
    row("lookup_one_hot", lookup(output_mode="one_hot"), (6,), dtype="int64", data=tokens),
    row("lookup_multi_hot_mask", lookup(output_mode="multi_hot", mask_token=0), (6,), dtype="int64", data=tokens),
    row("lookup_count_two_oov", lookup(output_mode="count", num_oov_indices=2), (6,), dtype="int64", data=tokens),
    row("lookup_tf_idf", lookup(output_mode="tf_idf", idf_weights=[0.5, 1.0, 2.0, 3.0, 4.0]), (6,), dtype="int64",
        data=tokens),
    row("lookup_pad_to_max_tokens", lookup(output_mode="multi_hot", max_tokens=10, pad_to_max_tokens=True), (6,),
        dtype="int64", data=tokens),
    row("lookup_invert", lookup(invert=True), (6,), dtype="int64", data=small_ints(9, dtype=np.int64)),
    row("lookup_invert_mask", lookup(invert=True, mask_token=0), (6,), dtype="int64", data=small_ints(9, dtype=np.int64)),
    row("hashing_int64", layer("Hashing", num_bins=7), (6,), dtype="int64", data=wide_ints),
    row("hashing_int32_mask_value", layer("Hashing", num_bins=5, mask_value=0), (6,), dtype="int32",
        data=lambda s: [small_ints(4)(s)[0] - 1]),
    row("hashing_salt_pair", layer("Hashing", num_bins=11, salt=[133, 7]), (6,), dtype="int64", data=wide_ints),
    row("hashing_salt_int_one_hot", layer("Hashing", num_bins=4, salt=42, output_mode="one_hot"), (1,),
        dtype="int64", data=lambda s: wide_ints(s, (1,))),  # (N, 6) inputs: see the declared-shape bug test
    row("hashing_float_truncated_multi_hot", layer("Hashing", num_bins=6, output_mode="multi_hot"), (6,)),
    row("hashing_count", layer("Hashing", num_bins=6, output_mode="count"), (6,), dtype="int64", data=wide_ints),
    row("hashed_crossing", layer("HashedCrossing", num_bins=9), (1,), (1,), dtype="int64",
        data=lambda s: wide_ints(s, (1,)) + wide_ints(s + 1, (1,))),
    row("hashed_crossing_one_hot", layer("HashedCrossing", num_bins=5, output_mode="one_hot"), (1,), (1,),
        dtype="int64", data=lambda s: wide_ints(s, (1,)) + wide_ints(s + 1, (1,))),
    row("lookup_adapted_vocabulary_in_assets", adapted_lookup, (6,), dtype="int64",
        data=lambda s: [np.random.default_rng(s).choice([3, 5, 9, 12, 1, 0, 40], (BATCH, 6)).astype(np.int64)]),
]


def pipeline(*layers):
    """A row builder: ``keras.layers.Pipeline`` of (class name[, config]) layers."""
    def build(k, x):
        return k.layers.Pipeline([getattr(k.layers, cls)(**(cfg[0] if cfg else {})) for cls, *cfg in layers])(x)
    return build


def reversible(tie=True, cap=None):
    def build(k, ids):
        emb = k.layers.ReversibleEmbedding(11, 4, tie_weights=tie, logit_soft_cap=cap)
        h = k.layers.Dense(4)(emb(ids))
        return emb(h, reverse=True)
    return build


OTHER = [
    *[row(f"adaptive_{kind}_{rank}d_{'_'.join(map(str, out))}",
          layer(f"Adaptive{kind.capitalize()}Pooling{rank}D", output_size=out), shape)
      for kind in ("average", "max")
      for rank, out, shape in ((1, (3,), (7, 2)), (1, (9,), (4, 2)), (2, (3, 2), (7, 5, 2)), (2, (5, 8), (4, 6, 1)),
                               (3, (2, 3, 2), (5, 4, 3, 2)))],
    row("adaptive_average_2d_channels_first", layer("AdaptiveAveragePooling2D", output_size=3,
                                                    data_format="channels_first"), (2, 7, 5)),
    row("reversible_embedding_tied", reversible(), (5,), dtype="int32", data=small_ints(11, (5,))),
    row("reversible_embedding_untied_soft_cap", reversible(tie=False, cap=2.0), (5,), dtype="int32",
        data=small_ints(11, (5,))),
    row("pipeline_batchnorm_before_dense", pipeline(("BatchNormalization",), ("Dense", {"units": 3}),
                                                    ("GaussianNoise", {"stddev": 0.3}), ("Rescaling", {"scale": 0.5}),
                                                    ("Dense", {"units": 2, "activation": "relu"})), (4,)),
    row("pipeline_image", pipeline(("Rescaling", {"scale": 1 / 255.0}), ("RandomFlip",),
                                   ("CenterCrop", {"height": 5, "width": 7})), IMG, dtype="uint8",
        data=uint8_images),
]


def applications_layer(module, cls, **kw):
    def build(k, *xs):
        import importlib
        obj = getattr(importlib.import_module(f"keras.src.applications.{module}"), cls)(**kw)
        return obj(list(xs)) if len(xs) > 1 else obj(xs[0])
    return build


APPLICATIONS = [
    row("layer_scale", applications_layer("convnext", "LayerScale", init_values=0.5, projection_dim=3), (4, 4, 3)),
    row("stochastic_depth", applications_layer("convnext", "StochasticDepth", drop_path_rate=0.3), (4, 3)),
    row("custom_scale_layer", applications_layer("inception_resnet_v2", "CustomScaleLayer", scale=0.17), (4, 3),
        (4, 3)),
]

def stft(**kw):  # window=None: Keras builds its window with scipy (not installed); the kernels are random anyway
    return layer("STFTSpectrogram", window=None, **kw)


def mel(**kw):
    return layer("MelSpectrogram", fft_length=64, sequence_stride=16, sampling_rate=8000, **kw)


AUDIO = [
    *[row(f"stft_{mode}", stft(mode=mode, frame_length=16, frame_step=8), (100, 2))
      for mode in ("log", "magnitude", "psd", "real", "imag", "angle", "stft")],
    row("stft_same_padding_fft_longer", stft(frame_length=10, frame_step=3, fft_length=16, padding="same"), (100, 2)),
    row("stft_expand_dims", stft(frame_length=16, expand_dims=True), (100, 2)),
    row("stft_channels_first", stft(frame_length=16, data_format="channels_first"), (2, 100)),
    row("stft_channels_first_expand_dims", stft(frame_length=16, data_format="channels_first", expand_dims=True),
        (2, 100)),
    row("mel_db", mel(num_mel_bins=20), (400,), tol=1e-4),  # dB of float32 FFTs: ~5e-5 on values up to 35
    row("mel_hamming_short_window_power", mel(sequence_length=40, window="hamming", num_mel_bins=10, power_to_db=False,
                                              mag_exp=1.0, max_freq=3000), (400,), tol=1e-4),
    row("mel_top_db_ref_power", mel(num_mel_bins=8, top_db=20.0, ref_power=2.0), (400,), tol=1e-4),
]

GROUPS = {"image": IMAGE, "augmentation": AUGMENTATION, "categorical": CATEGORICAL, "other": OTHER,
          "applications": APPLICATIONS, "audio": AUDIO}


# built(group): the group's results, cached; the two tests over every row
built, test_values_and_shape_match_keras, test_every_layer_shape_and_params_match_keras = table_tests(GROUPS)


def test_augmentation_dtypes_are_keras(built):
    """At inference an augmentation layer returns its input: as float32 when Keras casts, else as is."""
    for name in AUGMENTATION_CONFIGS:
        result = built("augmentation")[f"{name}_uint8_dtype"]
        assert result["kcompat"].dtype == result["keras"].dtype, name


def test_lookup_encodings_are_float32_as_keras_declares(built):
    """IntegerLookup one_hot / multi_hot / count: Keras declares float32 but computes int64 (a Keras bug);
    kcompat returns the declared float32, with the same values."""
    result = built("categorical")["lookup_one_hot"]
    assert result["keras"].dtype == np.int64
    assert result["kcompat"].dtype == np.float32


# ------------------------------------------------------------------------ Keras's own bugs
def test_random_crop_at_inference_is_the_documented_resize(keras, tmp_path):
    """Keras 3's RandomCrop returns its input unchanged at inference, although it declares (and documents)
    a (height, width) output; kcompat computes the documented centered crop + resize, which tf_keras computes."""
    import tf_keras
    import kcompat
    x = rand((BATCH, *IMG), 3)
    inp = keras.Input(IMG)
    model = keras.Model(inp, keras.layers.RandomCrop(6, 5)(inp))
    assert tuple(model.outputs[0].shape) == (None, 6, 5, 3)
    assert np.asarray(model(x, training=False)).shape == (BATCH, *IMG)  # the Keras 3 bug
    kc = to_kcompat(model, tmp_path)
    got = kc.predict(x)[0]
    want = np.asarray(tf_keras.layers.RandomCrop(6, 5)(x, training=False))
    np.testing.assert_allclose(got, want, atol=1e-5, rtol=1e-5)
    assert kc.shapes[(kc.spec.outputs[0].layer, 0)] == (None, 6, 5, 3)
    assert isinstance(kcompat.load(str(tmp_path / "m.keras")), kcompat.Model)


def test_mel_spectrogram_declares_one_frame_too_many(keras, tmp_path):
    """MelSpectrogram declares (T + stride + 1) // stride frames and computes 1 + T // stride: they differ
    when T % stride == stride - 1 (a Keras bug). kcompat declares what is computed."""
    inp = keras.Input((383,))
    model = keras.Model(inp, keras.layers.MelSpectrogram(fft_length=64, sequence_stride=16, num_mel_bins=8)(inp))
    x = rand((BATCH, 383), 4)
    want = np.asarray(model(x))
    assert tuple(model.outputs[0].shape) == (None, 8, 25) and want.shape == (BATCH, 8, 24)
    kc = to_kcompat(model, tmp_path)
    assert kc.shapes[(kc.spec.outputs[0].layer, 0)] == (None, 8, 24)
    np.testing.assert_allclose(kc.predict(x)[0], want, atol=1e-4, rtol=1e-4)


def test_hashing_one_hot_declares_the_last_axis_away(keras, tmp_path):
    """Hashing(output_mode='one_hot') on (N, 6) declares (None, bins) and computes (N, 6, bins) (a Keras bug:
    its compute_output_shape treats one_hot like multi_hot). kcompat declares what is computed."""
    inp = keras.Input((6,), dtype="int64")
    model = keras.Model(inp, keras.layers.Hashing(num_bins=4, output_mode="one_hot")(inp))
    x = wide_ints(0)[0]
    want = np.asarray(model(x))
    assert tuple(model.outputs[0].shape) == (None, 4) and want.shape == (BATCH, 6, 4)
    kc = to_kcompat(model, tmp_path)
    assert kc.shapes[(kc.spec.outputs[0].layer, 0)] == (None, 6, 4)
    np.testing.assert_array_equal(kc.predict(x)[0], want)


def test_equalization_is_identity_at_inference(keras):
    """Keras cannot put Equalization in a Functional model (its output spec is its input: a cycle);
    called directly at inference it returns its input, and so does kcompat's."""
    from kcompat.layers import make_layer
    x = np.random.default_rng(0).integers(0, 256, (BATCH, *IMG)).astype(np.float32)
    k_layer = keras.layers.Equalization()
    want = np.asarray(k_layer(x, training=False))
    got = make_layer("Equalization", k_layer.get_config(), "eq").forward(x)
    np.testing.assert_array_equal(got, want)


def test_category_encoding_count_weights(keras):
    from kcompat.layers import make_layer
    k_layer = keras.layers.CategoryEncoding(num_tokens=6, output_mode="count")
    ids = np.random.default_rng(0).integers(0, 6, (BATCH, 5)).astype(np.int32)
    w = rand((BATCH, 5), 1)
    want = np.asarray(k_layer(ids, count_weights=w))
    got = make_layer("CategoryEncoding", k_layer.get_config(), "ce").call_node([ids], {"count_weights": w}, [])
    np.testing.assert_allclose(got, want, atol=1e-6)


# ------------------------------------------------------------------------ keras.applications
@pytest.mark.slow
def test_inception_resnet_v2_loads_and_verifies(keras, tmp_path):
    """InceptionResNetV2 at its smallest input: its CustomScaleLayer blocks load; every layer matches Keras."""
    from kcompat.verify.run import verify_file
    model = keras.applications.InceptionResNetV2(weights=None, input_shape=(75, 75, 3))
    path = tmp_path / "irv2.keras"
    model.save(path)
    report = verify_file(str(path), batch=1)
    assert report.ok, report
    assert len(report.layers) == len(model.layers)


def test_custom_class_named_like_an_applications_layer_is_refused(keras, tmp_path):
    """A user's own ``LayerScale`` (module None in the config) is not Keras's: refused by name."""
    import kcompat
    from kcompat.errors import UnsupportedError

    class LayerScale(keras.layers.Layer):
        def __init__(self, init_values, projection_dim, **kw):
            super().__init__(**kw)
            self.init_values, self.projection_dim = init_values, projection_dim

        def call(self, x):
            return x + 1.0

        def get_config(self):
            return {**super().get_config(), "init_values": self.init_values, "projection_dim": self.projection_dim}

    inp = keras.Input((3,))
    path = tmp_path / "mine.keras"
    keras.Model(inp, LayerScale(0.1, 3)(inp)).save(path)
    with pytest.raises(UnsupportedError, match="LayerScale.*custom class"):
        kcompat.load(str(path))


def test_keras2_applications_layers_h5(tmp_path):
    """tf_keras names InceptionResNetV2's layer ``Custom>CustomScaleLayer`` and ConvNeXt's scale ``gamma``."""
    import kcompat
    import tf_keras
    from tf_keras.src.applications.convnext import LayerScale, StochasticDepth
    from tf_keras.src.applications.inception_resnet_v2 import CustomScaleLayer
    x = tf_keras.Input((4, 3))
    y = StochasticDepth(0.1)(LayerScale(0.5, 3)(CustomScaleLayer(0.3)([x, tf_keras.layers.Dense(3)(x)])))
    model = tf_keras.Model(x, y)
    model.set_weights([rand(w.shape, i) for i, w in enumerate(model.get_weights())])
    path = tmp_path / "k2.h5"
    model.save(path)
    data = rand((BATCH, 4, 3), 2)
    kc = kcompat.load(str(path))
    np.testing.assert_allclose(kc.predict(data)[0], np.asarray(model(data)), atol=1e-6)
    assert {ls.class_name for ls in kc.spec.layers} >= {"CustomScaleLayer", "LayerScale", "StochasticDepth"}


# ------------------------------------------------------------------------ writers
@pytest.mark.parametrize("ext", ["keras", "h5", "json"])
def test_converted_files_load_in_keras_with_the_same_outputs(keras, tmp_path, ext):
    """kcompat's .keras / .h5 / .json writers keep what these layers need: an asset vocabulary (now in the
    config), IntegerLookup's idf_weights entry, the STFT kernels, a layer called twice (ReversibleEmbedding)."""
    import kcompat
    from keras.src.applications.convnext import LayerScale
    L = keras.layers
    ids, img, sig = keras.Input((6,), dtype="int64"), keras.Input(IMG), keras.Input((64, 1))
    outs = [adapted_lookup(keras, ids), lookup(output_mode="tf_idf", idf_weights=[0.5, 1.0, 2.0, 3.0, 4.0])(keras, ids),
            L.Hashing(num_bins=5, salt=3)(ids), L.Resizing(4, 5, interpolation="lanczos3")(img),
            L.ContrastLimitedAdaptiveHistogramEqualization(tile_grid_size=(2, 2))(img), L.RandomFlip()(img),
            LayerScale(0.5, 3)(L.AdaptiveMaxPooling2D((3, 2))(img)),
            L.STFTSpectrogram(frame_length=16, window=None)(sig)]
    emb = L.ReversibleEmbedding(11, 4)
    small = L.Input((5,), dtype="int32")
    outs.append(emb(L.Dense(4)(emb(small)), reverse=True))
    model = keras.Model([ids, img, sig, small], outs)
    rng = np.random.default_rng(5)
    for w in model.weights:
        w.assign(rng.normal(0, 0.5, w.shape).astype(np.float32))
    data = [tokens(1)[0], float_pixels(2)[0], rand((BATCH, 64, 1), 3), small_ints(11, (5,))(4)[0]]
    want = [np.asarray(w) for w in model(data, training=False)]
    source = tmp_path / "m.keras"
    model.save(source)
    target = tmp_path / f"out.{ext}"
    kcompat.save(kcompat.load(str(source)), str(target))
    if ext == "json":
        back = keras.models.model_from_json(target.read_text())
        back.load_weights(tmp_path / "out.weights.h5")
    else:
        back = keras.models.load_model(target)
    for w, g in zip(want, back(data, training=False)):
        np.testing.assert_allclose(np.asarray(g), w, atol=1e-6, rtol=1e-6)


def _pipeline_model(keras):
    L = keras.layers
    inp = keras.Input((4,))
    x = L.Pipeline([L.BatchNormalization(), L.Dense(3), L.Identity(), L.Dense(2),
                    L.BatchNormalization()], name="pipe")(inp)
    model = keras.Model(inp, x)
    rng = np.random.default_rng(6)
    for w in model.weights:
        w.assign(rng.uniform(0.5, 1.5, w.shape).astype(np.float32))  # variances positive
    return model


@pytest.mark.parametrize("ext", ["keras", "h5", "json"])
def test_pipeline_files_load_in_keras_with_the_same_outputs(keras, tmp_path, ext):
    """A Pipeline's weights: a legacy .h5 lists them trainable first (the first BatchNormalization's moving
    statistics after the Dense kernels), a .keras file per layer under ``layers/<snake_case>[_N]``. kcompat
    reads both, and Keras reads what it writes (weights, in order, and outputs)."""
    def params(kc):
        assert (kc.info["pipe"].trainable_params, kc.info["pipe"].non_trainable_params) == (35, 12)
    keras_reads_what_kcompat_writes(keras, _pipeline_model(keras), rand((BATCH, 4), 7), tmp_path, ext, params)


def test_pipeline_adapted_normalization_from_h5_uses_the_stored_statistics(keras, tmp_path):
    """Keras bugs around a Normalization inside a Pipeline: built on a symbolic input it keeps tensors of a
    scratch graph (``model.predict`` fails: "out of scope"; eager calls work), and a legacy .h5 reloads it
    without ``finalize_state``, so Keras's own .h5 runs with mean 0 / variance 1 instead of the stored
    statistics. kcompat reads the statistics from both files and computes what Keras's .keras reload does."""
    import kcompat
    L = keras.layers
    norm = L.Normalization()
    norm.adapt(np.random.default_rng(1).normal(3.0, 2.0, (20, 4)).astype(np.float32))
    inp = keras.Input((4,))
    model = keras.Model(inp, L.Pipeline([norm, L.Dense(2)])(inp))
    data = rand((BATCH, 4), 8)
    model.save(tmp_path / "m.keras")
    model.save(tmp_path / "m.h5")
    want = np.asarray(keras.models.load_model(tmp_path / "m.keras")(data, training=False))
    np.testing.assert_allclose(np.asarray(model(data, training=False)), want, atol=1e-6)
    stale = np.asarray(keras.models.load_model(tmp_path / "m.h5")(data, training=False))
    assert np.abs(stale - want).max() > 0.1  # the bug
    for name in ("m.keras", "m.h5"):
        np.testing.assert_allclose(kcompat.load(str(tmp_path / name)).predict(data)[0], want, atol=1e-5, rtol=1e-5)
